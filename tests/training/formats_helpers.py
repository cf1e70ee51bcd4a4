"""Test helpers: the BFL (original checkpoint / ComfyUI) layout of the tiny FLUX transformers.

ComfyUI runs FLUX with BFL's module layout (``double_blocks.N.img_attn.qkv`` … with q/k/v
fused), so the ``comfyui`` LoRA format is checked against a BFL-layout copy of the tiny
diffusers transformer. The copy is made by :func:`to_bfl` (written here from diffusers'
single-file converters, read in reverse) and every test first checks that diffusers'
OWN converter (``convert_flux_transformer_checkpoint_to_diffusers`` /
``convert_flux2_transformer_checkpoint_to_diffusers``) turns it back into exactly the
diffusers weights — so the BFL layout is diffusers', not ours.

diffusers' FLUX.1 converters hard-code the real model's widths (3072, MLP 12288) for the
single blocks' fused ``linear1``; :func:`diffusers_converter` returns them with those
numbers replaced by the tiny model's, the code otherwise untouched.
"""

from __future__ import annotations

import inspect
import textwrap

import torch


def _swap_halves(weight: torch.Tensor) -> torch.Tensor:
    """BFL's final adaLN is (shift, scale), diffusers' (scale, shift): swapping is its own inverse."""
    a, b = weight.chunk(2, dim=0)
    return torch.cat([b, a], dim=0)


def _flux1_modules(n_double: int, n_single: int) -> list[tuple[str, list[str]]]:
    m = [("time_in.in_layer", ["time_text_embed.timestep_embedder.linear_1"]),
         ("time_in.out_layer", ["time_text_embed.timestep_embedder.linear_2"]),
         ("vector_in.in_layer", ["time_text_embed.text_embedder.linear_1"]),
         ("vector_in.out_layer", ["time_text_embed.text_embedder.linear_2"]),
         ("guidance_in.in_layer", ["time_text_embed.guidance_embedder.linear_1"]),
         ("guidance_in.out_layer", ["time_text_embed.guidance_embedder.linear_2"]),
         ("txt_in", ["context_embedder"]), ("img_in", ["x_embedder"]),
         ("final_layer.linear", ["proj_out"])]
    for i in range(n_double):
        d, b = f"double_blocks.{i}.", f"transformer_blocks.{i}."
        m += [(d + "img_mod.lin", [b + "norm1.linear"]), (d + "txt_mod.lin", [b + "norm1_context.linear"]),
              (d + "img_attn.qkv", [b + "attn.to_q", b + "attn.to_k", b + "attn.to_v"]),
              (d + "txt_attn.qkv", [b + "attn.add_q_proj", b + "attn.add_k_proj", b + "attn.add_v_proj"]),
              (d + "img_attn.norm.query_norm", [b + "attn.norm_q"]), (d + "img_attn.norm.key_norm", [b + "attn.norm_k"]),
              (d + "txt_attn.norm.query_norm", [b + "attn.norm_added_q"]),
              (d + "txt_attn.norm.key_norm", [b + "attn.norm_added_k"]),
              (d + "img_mlp.0", [b + "ff.net.0.proj"]), (d + "img_mlp.2", [b + "ff.net.2"]),
              (d + "txt_mlp.0", [b + "ff_context.net.0.proj"]), (d + "txt_mlp.2", [b + "ff_context.net.2"]),
              (d + "img_attn.proj", [b + "attn.to_out.0"]), (d + "txt_attn.proj", [b + "attn.to_add_out"])]
    for i in range(n_single):
        s, b = f"single_blocks.{i}.", f"single_transformer_blocks.{i}."
        m += [(s + "modulation.lin", [b + "norm.linear"]),
              (s + "linear1", [b + "attn.to_q", b + "attn.to_k", b + "attn.to_v", b + "proj_mlp"]),
              (s + "norm.query_norm", [b + "attn.norm_q"]), (s + "norm.key_norm", [b + "attn.norm_k"]),
              (s + "linear2", [b + "proj_out"])]
    return m


def _flux2_modules(n_double: int, n_single: int) -> list[tuple[str, list[str]]]:
    m = [("img_in", ["x_embedder"]), ("txt_in", ["context_embedder"]),
         ("time_in.in_layer", ["time_guidance_embed.timestep_embedder.linear_1"]),
         ("time_in.out_layer", ["time_guidance_embed.timestep_embedder.linear_2"]),
         ("guidance_in.in_layer", ["time_guidance_embed.guidance_embedder.linear_1"]),
         ("guidance_in.out_layer", ["time_guidance_embed.guidance_embedder.linear_2"]),
         ("double_stream_modulation_img.lin", ["double_stream_modulation_img.linear"]),
         ("double_stream_modulation_txt.lin", ["double_stream_modulation_txt.linear"]),
         ("single_stream_modulation.lin", ["single_stream_modulation.linear"]),
         ("final_layer.linear", ["proj_out"])]
    for i in range(n_double):
        d, b = f"double_blocks.{i}.", f"transformer_blocks.{i}."
        m += [(d + "img_attn.qkv", [b + "attn.to_q", b + "attn.to_k", b + "attn.to_v"]),
              (d + "txt_attn.qkv", [b + "attn.add_q_proj", b + "attn.add_k_proj", b + "attn.add_v_proj"]),
              (d + "img_attn.norm.query_norm", [b + "attn.norm_q"]), (d + "img_attn.norm.key_norm", [b + "attn.norm_k"]),
              (d + "txt_attn.norm.query_norm", [b + "attn.norm_added_q"]),
              (d + "txt_attn.norm.key_norm", [b + "attn.norm_added_k"]),
              (d + "img_attn.proj", [b + "attn.to_out.0"]), (d + "txt_attn.proj", [b + "attn.to_add_out"]),
              (d + "img_mlp.0", [b + "ff.linear_in"]), (d + "img_mlp.2", [b + "ff.linear_out"]),
              (d + "txt_mlp.0", [b + "ff_context.linear_in"]), (d + "txt_mlp.2", [b + "ff_context.linear_out"])]
    for i in range(n_single):
        s, b = f"single_blocks.{i}.", f"single_transformer_blocks.{i}."
        m += [(s + "linear1", [b + "attn.to_qkv_mlp_proj"]), (s + "linear2", [b + "attn.to_out"]),
              (s + "norm.query_norm", [b + "attn.norm_q"]), (s + "norm.key_norm", [b + "attn.norm_k"])]
    return m


def to_bfl(state: dict[str, torch.Tensor], arch: str) -> dict[str, torch.Tensor]:
    """The BFL-layout state dict of a diffusers FLUX.1 (``flux1``) / FLUX.2 (``flux2``)
    transformer state dict (fused projections concatenated in diffusers' split order)."""
    n_double = len({k.split(".")[1] for k in state if k.startswith("transformer_blocks.")})
    n_single = len({k.split(".")[1] for k in state if k.startswith("single_transformer_blocks.")})
    table = (_flux1_modules if arch == "flux1" else _flux2_modules)(n_double, n_single)
    out: dict[str, torch.Tensor] = {}
    for bfl, parts in table:
        for param in ("weight", "bias"):
            keys = [f"{p}.{param}" for p in parts]
            if not all(k in state for k in keys):
                continue
            name = f"{bfl}.scale" if bfl.endswith("_norm") else f"{bfl}.{param}"
            out[name] = torch.cat([state[k] for k in keys], dim=0).clone()
    for param in ("weight", "bias"):
        if f"norm_out.linear.{param}" in state:
            out[f"final_layer.adaLN_modulation.1.{param}"] = _swap_halves(state[f"norm_out.linear.{param}"])
    return out


def _patched(function, replacements: dict[str, str]):
    """``function`` re-compiled with literal numbers in its source replaced."""
    source = textwrap.dedent(inspect.getsource(function))
    for old, new in replacements.items():
        assert old in source, (function.__name__, old)
        source = source.replace(old, new)
    namespace = dict(function.__globals__)
    exec(compile(source, inspect.getsourcefile(function), "exec"), namespace)  # noqa: S102 - diffusers' own code
    return namespace[function.__name__]


def diffusers_converter(arch: str, inner_dim: int):
    """diffusers' BFL → diffusers transformer converter for ``arch``, sized for the model."""
    from diffusers.loaders import single_file_utils as sfu

    if arch == "flux2":
        return sfu.convert_flux2_transformer_checkpoint_to_diffusers
    return _patched(sfu.convert_flux_transformer_checkpoint_to_diffusers, {"inner_dim = 3072": f"inner_dim = {inner_dim}"})


def diffusers_kohya_flux1_converter(inner_dim: int):
    """diffusers' kohya FLUX.1 LoRA converter (what ``load_lora_weights`` uses on
    ``lora_unet_…`` files), sized for the model."""
    from diffusers.loaders import lora_conversion_utils as lcu

    mlp = 4 * inner_dim
    return _patched(lcu._convert_kohya_flux_lora_to_diffusers,
                    {"dims=[3072, 3072, 3072, 12288]": f"dims=[{inner_dim}, {inner_dim}, {inner_dim}, {mlp}]"})


def comfy_key_map(bfl_state: dict[str, torch.Tensor]) -> dict[str, str]:
    """ComfyUI's generic ``model_lora_keys_unet`` map for a model with these weights:
    ``lora_unet_<key with _>`` and the bare ``diffusion_model.<key>`` → the weight's key."""
    out = {}
    for key in bfl_state:
        if key.endswith(".weight"):
            module = key[: -len(".weight")]
            out["lora_unet_" + module.replace(".", "_")] = key
            out["diffusion_model." + module] = key
    return out


def apply_comfy_lora(bfl_state: dict[str, torch.Tensor], lora: dict[str, torch.Tensor],
                     strength: float = 1.0) -> tuple[dict[str, torch.Tensor], list[str]]:
    """Merge a kohya-format LoRA into BFL weights as ComfyUI does
    (``W += strength · alpha/rank · up @ down``, rank = down's rows); returns the new
    weights and the LoRA keys it did not load (ComfyUI's "lora key not loaded")."""
    key_map = comfy_key_map(bfl_state)
    out = {k: v.clone() for k, v in bfl_state.items()}
    loaded: set[str] = set()
    for name, target in key_map.items():
        down, up = lora.get(f"{name}.lora_down.weight"), lora.get(f"{name}.lora_up.weight")
        if down is None or up is None:
            continue
        alpha_key = f"{name}.alpha"
        scale = lora[alpha_key].item() / down.shape[0] if alpha_key in lora else 1.0
        out[target] = out[target] + strength * scale * (up.float() @ down.float()).to(out[target].dtype)
        loaded |= {f"{name}.lora_down.weight", f"{name}.lora_up.weight"} | ({alpha_key} & lora.keys())
    return out, sorted(set(lora) - loaded)
