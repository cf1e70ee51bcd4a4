"""Independent "real client" check: would ComfyUI load a LoRA completely, at the strength diffusers applies?

Covers FLUX.1 / Kontext, Qwen-Image / -Edit / -Edit-Plus, FLUX.2 / FLUX.2 [klein] and Z-Image transformers, LoRA files in
diffusers names (lora_A / lora_B) or kohya / BFL names (lora_down / lora_up), with or without ".alpha" tensors.
For FLUX.2 (which this ComfyUI cannot build from diffusers weights) the model is converted with the exact inverse
of diffusers' own FLUX.2 converter, checked by a bit-exact round trip; Z-Image (which this ComfyUI loads only in the
original checkpoint's layout, q/k/v fused) likewise with the inverse of diffusers' Z-Image single-file converter.
(This is LoRA Studio's copy of the shared checker, extended for Z-Image; it holds no ComfyUI code.) --diffusers-ref FILE compares ComfyUI's
weight changes with those diffusers itself applies (load_lora_weights + fuse_lora) for FILE.


Usage:
    PYTHONPATH=<dir with einops, scipy, torchsde, pyyaml, trampoline[, comfy-kitchen]> \
        python comfy_check.py COMFY_DIR MODEL_DIR LORA_FILE [--json OUT.json] [--ignore-scale]

    COMFY_DIR  an extracted ComfyUI source tree (the folder holding comfy/, nodes.py, ...). Supplied at run
               time; no ComfyUI code is part of this repository.
    MODEL_DIR  a local diffusers folder of the base model (pipeline folder with transformer/, or the
               transformer folder itself): FluxTransformer2DModel (FLUX.1 / Kontext) or
               QwenImageTransformer2DModel (Qwen-Image / -Edit / -Edit-2509).
    LORA_FILE  the LoRA .safetensors (e.g. pytorch_lora_weights.safetensors written by save_lora_weights).

Exit status: 0 = every LoRA key is consumed by ComfyUI and ComfyUI's alpha scale equals the diffusers one;
             1 = some key would be reported "lora key not loaded" / "NOT LOADED" (or the model could not be built);
             2 = all keys load but ComfyUI applies a different scale than diffusers (alpha lost) -- pass
                 --ignore-scale to turn this into 0.

What runs (all of it is ComfyUI's own code, nothing re-implemented):
  * model: the diffusers transformer weights are loaded with comfy.utils.load_torch_file, then exactly the
    steps of comfy/sd.py load_diffusion_model_state_dict():
      - comfy/model_detection.py convert_diffusers_mmdit(sd, "")   (Flux: diffusers -> BFL keys, uses
        comfy/utils.py flux_to_diffusers; Qwen is already in ComfyUI's native key layout -> None)
      - comfy/model_detection.py detect_unet_config(sd, "")
      - comfy/model_detection.py model_config_from_unet_config(unet_config, sd)   (-> supported_models.Flux /
        FluxInpaint / QwenImage ...)
      - model_config.get_model(sd, "")  -> comfy/model_base.py Flux / QwenImage wrapping
        comfy/ldm/flux/model.py Flux or comfy/ldm/qwen_image/model.py QwenImageTransformer2DModel
      - model.load_model_weights(sd, "")  and comfy/model_patcher.py ModelPatcher(model, cpu, cpu)
    ONE deviation, needed only for tiny test models: detect_unet_config hard-codes the full-size head layout
    (Flux: num_heads=24, axes_dim=[16,56,56]; Qwen: head_dim 128 x 24 heads, joint_attention_dim 3584, ...),
    so values that differ from the diffusers config.json are overridden from config.json before the model is
    constructed. Every override is printed; for the real FLUX.1-Kontext-dev / Qwen-Image checkpoints the
    override set is empty. Key mapping itself only depends on the module names, block counts and hidden
    size, which ComfyUI detects from the weights.
  * LoRA: the path of ComfyUI's LoraLoader / LoraLoaderModelOnly node (nodes.py):
      - comfy/utils.py load_torch_file(lora, safe_load=True)
      - comfy/sd.py load_lora_for_models(model, None, lora, 1.0, 0.0), which calls
        comfy/lora.py model_lora_keys_unet(model.model, {})   (for Flux it adds "transformer.<diffusers name>"
        from comfy/utils.py flux_to_diffusers, incl. the (key, offset) slices of the fused qkv / linear1;
        for QwenImage it adds "transformer.<native name>"),
        comfy/lora_convert.py convert_lora(lora), comfy/lora.py load_lora(lora, key_map)
        (logs "lora key not loaded: K" for every unconsumed key) and ModelPatcher.add_patches
        (logs "NOT LOADED K" for patches whose target is not a model weight).
      The script captures those log records; unmapped keys = those records.
  * scale: for every patched weight, comfy/lora.py calculate_weight(patches, W, key) (the function ComfyUI
    uses when it patches weights) is evaluated and compared with W + s * (B @ A) summed over the LoRA modules
    mapped onto that weight (placed at the qkv offset ComfyUI uses), where s is the scale DIFFUSERS applies:
    alpha/r from a "<module>.alpha" tensor if present, else lora_alpha/r from the safetensors metadata
    "lora_adapter_metadata" (written by save_lora_weights(..., transformer_lora_adapter_metadata=...);
    alpha_pattern / use_rslora honoured), else 1.0. ComfyUI itself only ever reads "<module>.alpha" tensors
    (comfy/lora.py load_lora); with no alpha tensor it uses scale 1.0 (weight_adapter/lora.py
    LoRAAdapter.calculate_weight) and ignores the metadata.

Results with ComfyUI 3cd7b32f1b7e (tiny random models, plain diffusers/peft training, diffusers 0.42.1 / peft 0.21.2):
  * diffusers-format Kontext LoRA (64 keys, to_q/k/v, add_*_proj, to_out/to_add_out, ff*, proj_mlp): all map
    (ComfyUI fuses them into 18 patched weights: qkv / linear1 slices); renamed keys -> "not loaded", exit 1.
  * Qwen-Image-Edit-Plus LoRA (16 keys default targets; 48 keys incl. add_*_proj / img_mlp / txt_mlp): all map.
  * save_lora_weights stores lora_alpha only in the "lora_adapter_metadata" header, which ComfyUI ignores:
    alpha != r (e.g. r=4, alpha=8) -> ComfyUI applies half the diffusers strength (exit 2). Writing
    "<module>.alpha" tensors fixes ComfyUI, but diffusers then refuses the file if the metadata header is also
    present ("Both `network_alphas` and `metadata` cannot be specified."): write alpha tensors WITHOUT the
    metadata (checked: diffusers fuse delta = 2.0 x B@A, ComfyUI = 2.0 x B@A), or keep alpha == r.

Minimal import path (found for ComfyUI 3cd7b32f, Jan 2026): put COMFY_DIR first on sys.path, set
comfy.options.enable_args_parsing(False) (the default: cli_args parses [] instead of sys.argv), then
`import comfy.cli_args; comfy.cli_args.args.cpu = True` BEFORE anything imports comfy.model_management, so
the device probe picks the CPU (no GPU needed). `import comfy.sd` then pulls in the rest (comfy.lora,
comfy.model_detection, comfy.model_patcher, all ldm/ + text_encoders modules). Third-party imports needed
beyond torch/transformers/safetensors/numpy/Pillow/tqdm/psutil: einops, scipy, torchsde, pyyaml
(comfy-kitchen is optional: without it quant_ops only logs an error). torchaudio is optional (warnings only).
"""

from __future__ import annotations

import argparse
import glob
import json
import logging
import os
import re
import sys


# --------------------------------------------------------------------------------------------------
def import_comfy(comfy_dir: str):
    comfy_dir = os.path.abspath(comfy_dir)
    if not os.path.isdir(os.path.join(comfy_dir, "comfy")):
        sys.exit(f"COMFY_DIR {comfy_dir} has no comfy/ package")
    sys.path.insert(0, comfy_dir)
    import comfy.options

    comfy.options.enable_args_parsing(False)
    import comfy.cli_args

    comfy.cli_args.args.cpu = True  # must precede comfy.model_management's import-time device probe
    import comfy.lora
    import comfy.lora_convert
    import comfy.model_detection
    import comfy.model_management
    import comfy.model_patcher
    import comfy.sd
    import comfy.utils

    return comfy


class _Capture(logging.Handler):
    def __init__(self):
        super().__init__(level=logging.DEBUG)
        self.records = []

    def emit(self, record):
        try:
            self.records.append(record.getMessage())
        except Exception:
            pass


def find_transformer_dir(model_dir: str) -> str:
    for d in (os.path.join(model_dir, "transformer"), model_dir):
        if os.path.isfile(os.path.join(d, "config.json")) and glob.glob(os.path.join(d, "*.safetensors")):
            return d
    sys.exit(f"no transformer config.json + *.safetensors under {model_dir}")


# config.json value -> ComfyUI unet_config key (only layout values ComfyUI cannot infer from shapes)
FLUX_OVERRIDES = {"num_attention_heads": "num_heads", "axes_dims_rope": "axes_dim"}
QWEN_OVERRIDES = {
    "attention_head_dim": "attention_head_dim",
    "num_attention_heads": "num_attention_heads",
    "joint_attention_dim": "joint_attention_dim",
    "axes_dims_rope": "axes_dims_rope",
    "patch_size": "patch_size",
    "out_channels": "out_channels",
}
FLUX2_OVERRIDES = {"num_attention_heads": "num_heads", "axes_dims_rope": "axes_dim", "rope_theta": "theta",
                   "mlp_ratio": "mlp_ratio"}

# diffusers Flux2Transformer2DModel -> BFL/ComfyUI names: the inverse of diffusers'
# convert_flux2_transformer_checkpoint_to_diffusers (loaders/single_file_utils.py). ComfyUI 3cd7b32 has NO
# diffusers->BFL conversion for FLUX.2 (convert_diffusers_mmdit treats any x_embedder model as FLUX.1 and
# needs x_embedder.bias), it only loads BFL-layout FLUX.2 checkpoints, so this is the second deviation.
_F2_TOP = {"x_embedder": "img_in", "context_embedder": "txt_in",
           "time_guidance_embed.timestep_embedder.linear_1": "time_in.in_layer",
           "time_guidance_embed.timestep_embedder.linear_2": "time_in.out_layer",
           "time_guidance_embed.guidance_embedder.linear_1": "guidance_in.in_layer",
           "time_guidance_embed.guidance_embedder.linear_2": "guidance_in.out_layer",
           "double_stream_modulation_img.linear": "double_stream_modulation_img.lin",
           "double_stream_modulation_txt.linear": "double_stream_modulation_txt.lin",
           "single_stream_modulation.linear": "single_stream_modulation.lin",
           "proj_out": "final_layer.linear"}
_F2_DOUBLE = {"attn.norm_q": "img_attn.norm.query_norm", "attn.norm_k": "img_attn.norm.key_norm",
              "attn.to_out.0": "img_attn.proj", "ff.linear_in": "img_mlp.0", "ff.linear_out": "img_mlp.2",
              "attn.norm_added_q": "txt_attn.norm.query_norm", "attn.norm_added_k": "txt_attn.norm.key_norm",
              "attn.to_add_out": "txt_attn.proj", "ff_context.linear_in": "txt_mlp.0",
              "ff_context.linear_out": "txt_mlp.2"}
_F2_SINGLE = {"attn.to_qkv_mlp_proj": "linear1", "attn.to_out": "linear2", "attn.norm_q": "norm.query_norm",
              "attn.norm_k": "norm.key_norm"}
_F2_QKV = {("attn.to_q", "attn.to_k", "attn.to_v"): "img_attn.qkv",
           ("attn.add_q_proj", "attn.add_k_proj", "attn.add_v_proj"): "txt_attn.qkv"}


def flux2_diffusers_to_bfl(sd):
    import torch
    out, used = {}, set()

    def norm_param(name, ptype):  # BFL RMSNorm params are ".scale"
        return "scale" if ".norm." in name or name.endswith(("query_norm", "key_norm")) else ptype

    for k, v in sd.items():
        mod, ptype = k.rsplit(".", 1)
        if mod == "norm_out.linear":
            shift_or_scale = v.chunk(2, dim=0)  # diffusers (scale, shift) -> BFL (shift, scale)
            out[f"final_layer.adaLN_modulation.1.{ptype}"] = torch.cat([shift_or_scale[1], shift_or_scale[0]], 0)
            used.add(k)
        elif mod in _F2_TOP:
            out[f"{_F2_TOP[mod]}.{ptype}"] = v
            used.add(k)
        else:
            m = re.fullmatch(r"(transformer_blocks|single_transformer_blocks)\.(\d+)\.(.+)", mod)
            if not m:
                continue
            kind, idx, inner = m.groups()
            table = _F2_DOUBLE if kind == "transformer_blocks" else _F2_SINGLE
            pre = "double_blocks" if kind == "transformer_blocks" else "single_blocks"
            if inner in table:
                tgt = table[inner]
                out[f"{pre}.{idx}.{tgt}.{norm_param(tgt, ptype)}"] = v
                used.add(k)
    for parts, tgt in _F2_QKV.items():
        for k in list(sd):
            m = re.fullmatch(r"transformer_blocks\.(\d+)\." + re.escape(parts[0]) + r"\.(weight|bias)", k)
            if not m:
                continue
            idx, ptype = m.groups()
            keys = [f"transformer_blocks.{idx}.{p}.{ptype}" for p in parts]
            out[f"double_blocks.{idx}.{tgt}.{ptype}"] = torch.cat([sd[x] for x in keys], 0)
            used.update(keys)
    left = sorted(set(sd) - used)
    if left:
        raise RuntimeError(f"FLUX.2 diffusers keys with no BFL counterpart: {left[:10]}")
    return out


def verify_flux2_roundtrip(sd, bfl):
    """diffusers' OWN BFL->diffusers converter applied to our BFL dict must give back sd exactly."""
    from diffusers.loaders.single_file_utils import convert_flux2_transformer_checkpoint_to_diffusers
    back = convert_flux2_transformer_checkpoint_to_diffusers({k: v.clone() for k, v in bfl.items()})
    import torch
    bad = sorted(set(sd) ^ set(back)) + [k for k in sd if k in back and not torch.equal(sd[k], back[k])]
    return {"keys": len(back), "mismatches": bad[:10], "ok": not bad}


# diffusers ZImageTransformer2DModel -> the original (ComfyUI) Z-Image layout: the inverse of diffusers'
# convert_z_image_transformer_checkpoint_to_diffusers (loaders/single_file_utils.py). ComfyUI 3cd7b32 detects a
# diffusers Z-Image folder as Lumina 2 (cap_embedder.1.weight) but builds its own module names, so, as for FLUX.2,
# the weights are converted first and the conversion is checked by a bit-exact round trip through diffusers.
_ZI_RENAME = (("all_final_layer.2-1.", "final_layer."), ("all_x_embedder.2-1.", "x_embedder."),
              (".attention.to_out.0.", ".attention.out."), (".attention.norm_k.", ".attention.k_norm."),
              (".attention.norm_q.", ".attention.q_norm."))


def zimage_diffusers_to_native(sd):
    import torch
    out = {}
    for k, v in sd.items():
        if re.search(r"\.attention\.to_[kv]\.weight$", k):
            continue
        if k.endswith(".attention.to_q.weight"):
            base = k[: -len("to_q.weight")]
            out[base + "qkv.weight"] = torch.cat([sd[base + p + ".weight"] for p in ("to_q", "to_k", "to_v")], 0)
            continue
        for a, b in _ZI_RENAME:
            k = k.replace(a, b)
        out[k] = v
    return out


def verify_zimage_roundtrip(sd, native):
    from diffusers.loaders.single_file_utils import convert_z_image_transformer_checkpoint_to_diffusers
    back = convert_z_image_transformer_checkpoint_to_diffusers({k: v.clone() for k, v in native.items()})
    import torch
    bad = sorted(set(sd) ^ set(back)) + [k for k in sd if k in back and not torch.equal(sd[k], back[k])]
    return {"keys": len(back), "mismatches": bad[:10], "ok": not bad}


# Z-Image's layout values ComfyUI's detect_unet_config sets only for the real width (dim 3840); for any other
# width (the tiny model) they come from config.json (and the Z-Image constants below), each one printed.
ZIMAGE_OVERRIDES = {"n_heads": "n_heads", "n_kv_heads": "n_kv_heads", "axes_dims": "axes_dims",
                    "axes_lens": "axes_lens", "rope_theta": "rope_theta", "n_refiner_layers": "n_refiner_layers",
                    "in_channels": "in_channels"}
ZIMAGE_CONSTANTS = {"ffn_dim_multiplier": 8.0 / 3.0, "z_image_modulation": True, "time_scale": 1000.0,
                    "pad_tokens_multiple": 32}


QWEN_DEFAULTS = dict(attention_head_dim=128, num_attention_heads=24, joint_attention_dim=3584,
                     axes_dims_rope=(16, 56, 56), patch_size=2, out_channels=16)  # QwenImageTransformer2DModel


def build_comfy_model(comfy, tdir: str):
    cfg = json.load(open(os.path.join(tdir, "config.json")))
    cls = cfg.get("_class_name", "?")
    sd = {}
    for f in sorted(glob.glob(os.path.join(tdir, "*.safetensors"))):
        sd.update(comfy.utils.load_torch_file(f, safe_load=True))
    n_diffusers = len(sd)

    md = comfy.model_detection
    flux2_conv = None
    if cls == "ZImageTransformer2DModel":
        if cfg.get("siglip_feat_dim") is not None:
            raise RuntimeError("this ComfyUI has no Z-Image Omni model (no SigLIP branch): it cannot load this "
                               "transformer at all")
        orig = {k: v.clone() for k, v in sd.items()}
        new_sd = zimage_diffusers_to_native(sd)
        flux2_conv = verify_zimage_roundtrip(orig, new_sd)
        if not flux2_conv["ok"]:
            raise RuntimeError(f"Z-Image diffusers->original conversion does not round-trip: {flux2_conv}")
    elif cls == "Flux2Transformer2DModel":
        orig = {k: v.clone() for k, v in sd.items()}
        new_sd = flux2_diffusers_to_bfl(sd)
        flux2_conv = verify_flux2_roundtrip(orig, new_sd)
        if not flux2_conv["ok"]:
            raise RuntimeError(f"FLUX.2 diffusers->BFL conversion does not round-trip: {flux2_conv}")
    else:
        new_sd = md.convert_diffusers_mmdit(sd, "")  # same fallback order as comfy.sd.load_diffusion_model_state_dict
    if new_sd is None:
        new_sd = sd
    unet_config = md.detect_unet_config(new_sd, "")
    if unet_config is None:
        raise RuntimeError(f"ComfyUI's detect_unet_config does not recognise {cls}")

    overrides = {}
    if unet_config.get("image_model") == "flux2":
        table = FLUX2_OVERRIDES
        if "axes_dims_rope" in cfg:
            cfg["axes_dims_rope"] = list(cfg["axes_dims_rope"])
        current = unet_config
    elif unet_config.get("image_model") == "flux":
        table = FLUX_OVERRIDES
        if "axes_dims_rope" in cfg:
            cfg["axes_dims_rope"] = list(cfg["axes_dims_rope"])
        current = unet_config
    elif unet_config.get("image_model") == "lumina2" and cls == "ZImageTransformer2DModel":
        table, current = ZIMAGE_OVERRIDES, unet_config
        for key in ("axes_dims", "axes_lens"):
            cfg[key] = list(cfg[key])
        for key, value in ZIMAGE_CONSTANTS.items():
            if unet_config.get(key) != value:
                overrides[key] = {"comfy_detected": unet_config.get(key), "z_image_constant": value}
                unet_config[key] = value
        if cfg["dim"] < 1024:
            # ComfyUI's timestep MLP is 256 -> min(dim, 1024) -> 256, diffusers' 256 -> 1024 -> min(dim, 256):
            # the same layers only for dim >= 1024 (the real 3840). A narrower (tiny) model's t_embedder weights
            # are left out of ComfyUI's copy (it keeps its own init); no LoRA targets them.
            dropped = sorted(k for k in new_sd if k.startswith("t_embedder."))
            new_sd = {k: v for k, v in new_sd.items() if k not in dropped}
            overrides["t_embedder"] = {"left_out_of_comfy_weights": dropped, "why": "dim < 1024 (tiny model)"}
    elif unet_config.get("image_model") == "qwen_image":
        table = QWEN_OVERRIDES
        current = {k: unet_config.get(k, QWEN_DEFAULTS[k]) for k in QWEN_DEFAULTS}
        if "axes_dims_rope" in cfg:
            cfg["axes_dims_rope"] = tuple(cfg["axes_dims_rope"])
    else:
        table, current = {}, unet_config
    for dk, ck in table.items():
        if dk in cfg:
            have = current.get(ck if table in (FLUX_OVERRIDES, FLUX2_OVERRIDES, ZIMAGE_OVERRIDES) else dk)
            want = cfg[dk]
            if (list(have) if isinstance(have, (list, tuple)) else have) != (
                list(want) if isinstance(want, (list, tuple)) else want
            ):
                overrides[ck] = {"comfy_detected": have, "diffusers_config": want}
                unet_config[ck] = want

    model_config = md.model_config_from_unet_config(unet_config, new_sd)
    if model_config is None:
        raise RuntimeError(f"no ComfyUI model config matches {unet_config}")
    import torch

    model_config.set_inference_dtype(torch.float32, None)  # as comfy.sd does (unet_dtype on CPU = fp32)
    model = model_config.get_model(new_sd, "")
    native_keys = set(new_sd)
    cap = _Capture()
    logging.getLogger().addHandler(cap)
    try:
        model.load_model_weights(dict(new_sd), "")
    finally:
        logging.getLogger().removeHandler(cap)
    model_keys = {k[len("diffusion_model."):] for k in model.state_dict() if k.startswith("diffusion_model.")}
    load_problems = [m for m in cap.records if m.startswith("unet missing") or m.startswith("unet unexpected")]
    dev = torch.device("cpu")
    patcher = comfy.model_patcher.ModelPatcher(model, load_device=dev, offload_device=dev)
    info = {
        "diffusers_class": cls,
        "diffusers_tensors": n_diffusers,
        "comfy_supported_model": type(model_config).__name__,
        "comfy_model_base": type(model).__name__,
        "comfy_diffusion_model": type(model.diffusion_model).__module__ + "." + type(model.diffusion_model).__name__,
        "unet_config": {k: (list(v) if isinstance(v, tuple) else v) for k, v in unet_config.items()
                        if isinstance(v, (int, float, str, list, tuple, bool, type(None)))},
        "tiny_overrides": overrides,
        "diffusers_to_comfy_layout_roundtrip": flux2_conv,
        "weights_not_matching_model": {
            "missing_in_weights": len(model_keys - native_keys),
            "unexpected_in_weights": len(native_keys - model_keys),
            "load_log": load_problems[:3],
        },
    }
    info["_convert"] = (lambda d: flux2_diffusers_to_bfl(d)) if cls == "Flux2Transformer2DModel" else (
        (lambda d: zimage_diffusers_to_native(d)) if cls == "ZImageTransformer2DModel" else
        (lambda d: (md.convert_diffusers_mmdit(d, "") or d)))
    return patcher, info


# --------------------------------------------------------------------------------------------------
def diffusers_scales(lora: dict, metadata: dict | None, bases: list[str]):
    """Scale diffusers/peft applies per LoRA module base name, and where it came from."""
    meta = {}
    if metadata and "lora_adapter_metadata" in metadata:
        try:
            meta = json.loads(metadata["lora_adapter_metadata"])
        except Exception:
            meta = {}
    out = {}
    for x in bases:
        r = lora[x + ".lora_A.weight"].shape[0] if x + ".lora_A.weight" in lora else None
        if x + ".alpha" in lora and r:
            out[x] = (float(lora[x + ".alpha"]) / r, "alpha tensor")
            continue
        comp = x.split(".", 1)[0]  # "transformer"
        la = meta.get(f"{comp}.lora_alpha")
        if la is not None and r:
            mod = x.split(".", 1)[1] if "." in x else x
            for pat, a in (meta.get(f"{comp}.alpha_pattern") or {}).items():
                if re.fullmatch(rf"(.*\.)?{pat}", mod):
                    la = a
                    break
            denom = r ** 0.5 if meta.get(f"{comp}.use_rslora") else r
            out[x] = (float(la) / denom, "metadata lora_alpha")
        else:
            out[x] = (1.0, "default (no alpha info)")
    return out


def diffusers_reference(model_dir, ref_lora, convert_fn, msd, new_patcher, comfy):
    import torch
    from diffusers import DiffusionPipeline

    pipe = DiffusionPipeline.from_pretrained(model_dir, torch_dtype=torch.float32)
    base = {k: v.detach().clone().float() for k, v in pipe.transformer.state_dict().items()}
    pipe.load_lora_weights(ref_lora)
    pipe.fuse_lora(components=["transformer"], lora_scale=1.0)
    pipe.unload_lora_weights()
    fused = {k: v.detach().float() for k, v in pipe.transformer.state_dict().items()}
    delta = {k: fused[k] - base[k] for k in base}
    changed_diffusers = sorted(k for k, d in delta.items() if d.abs().max() > 0)
    delta_c = convert_fn({k: v.clone() for k, v in delta.items()})
    want = {k: v for k, v in delta_c.items() if v.abs().max() > 0}
    worst, ratios, only_diffusers, only_comfy, rows, zero_patches = 0.0, [], [], [], {}, []
    for key in sorted(set(want) | {k[len("diffusion_model."):] for k in new_patcher.patches
                                   if k.startswith("diffusion_model.")}):
        mkey = "diffusion_model." + key
        exp = want.get(key)
        if mkey not in new_patcher.patches:
            only_diffusers.append(key)
            continue
        w = msd[mkey].float()
        got = comfy.lora.calculate_weight(new_patcher.patches[mkey], w.clone(), mkey) - w
        if exp is None:
            if got.abs().max() > 0:  # a patch with an all-zero delta (untrained lora_B) changes nothing
                only_comfy.append(key)
            else:
                zero_patches.append(key)
            continue
        err = float((got - exp).abs().max() / (exp.abs().max() + 1e-12))
        rows[key] = round(err, 7)
        worst = max(worst, err)
        nz = exp.abs() > 1e-6 * exp.abs().max()
        ratios.append(float((got[nz] / exp[nz]).median()))
    ok = not only_diffusers and not only_comfy and worst < 1e-4
    return {"ref_lora": os.path.abspath(ref_lora), "pipeline": type(pipe).__name__,
            "diffusers_weights_changed": len(changed_diffusers),
            "comfy_weights_compared": len(rows),
            "changed_by_diffusers_not_by_comfy": only_diffusers,
            "changed_by_comfy_not_by_diffusers": only_comfy,
            "comfy_patches_with_zero_delta": zero_patches,
            "comfy_over_diffusers_delta_ratio": sorted({round(r, 4) for r in ratios}),
            "max_rel_err": round(worst, 7), "match": ok}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("comfy_dir")
    ap.add_argument("model_dir")
    ap.add_argument("lora_file")
    ap.add_argument("--json", default=None, help="also write the report here")
    ap.add_argument("--diffusers-ref", default=None, metavar="REF_LORA",
                    help="load REF_LORA with the family pipeline's load_lora_weights + fuse_lora (diffusers), map its "
                         "transformer weight deltas to ComfyUI's layout and compare with ComfyUI's deltas for LORA_FILE")
    ap.add_argument("--ignore-scale", action="store_true", help="exit 0 when all keys map even if the scale differs")
    args = ap.parse_args()

    logging.basicConfig(level=logging.WARNING, format="  [comfy log] %(message)s")
    comfy = import_comfy(args.comfy_dir)
    import torch
    from safetensors import safe_open

    report = {"comfy_dir": os.path.abspath(args.comfy_dir), "lora_file": os.path.abspath(args.lora_file)}
    try:
        patcher, info = build_comfy_model(comfy, find_transformer_dir(args.model_dir))
    except Exception as e:  # noqa: BLE001
        report["error"] = f"building ComfyUI model failed: {type(e).__name__}: {e}"
        print(json.dumps(report, indent=1))
        return 1
    convert_fn = info.pop("_convert")
    report["model"] = info

    # ---- exactly what LoraLoaderModelOnly does
    lora = comfy.utils.load_torch_file(args.lora_file, safe_load=True)
    with safe_open(args.lora_file, "pt") as f:
        metadata = f.metadata()
    lora_keys = sorted(lora)
    cap = _Capture()
    logging.getLogger().addHandler(cap)
    try:
        new_patcher, _ = comfy.sd.load_lora_for_models(patcher, None, dict(lora), 1.0, 0.0)
    finally:
        logging.getLogger().removeHandler(cap)
    not_loaded = [m[len("lora key not loaded: "):] for m in cap.records if m.startswith("lora key not loaded: ")]
    not_patched = [m[len("NOT LOADED "):] for m in cap.records if m.startswith("NOT LOADED ")]
    unmapped = sorted(set(not_loaded))

    alpha_keys = [k for k in lora_keys if k.endswith(".alpha")]
    meta_alpha = None
    if metadata and "lora_adapter_metadata" in metadata:
        try:
            m = json.loads(metadata["lora_adapter_metadata"])
            meta_alpha = {k: m[k] for k in m if k.endswith((".lora_alpha", ".r", ".use_rslora"))
                          or (k.endswith(("alpha_pattern", "rank_pattern")) and m[k])}
        except Exception:
            meta_alpha = "unparseable"
    report.update(
        lora_keys=len(lora_keys),
        lora_keys_mapped=len(lora_keys) - len(unmapped),
        lora_keys_unmapped=len(unmapped),
        unmapped_first10=unmapped[:10],
        patches_not_applied=len(not_patched),
        patches_not_applied_first10=not_patched[:10],
        comfy_patched_weights=len(new_patcher.patches),
        alpha_tensors_present=len(alpha_keys),
        metadata_alpha=meta_alpha,
    )

    # ---- scale: ComfyUI's calculate_weight vs W + s_diffusers * B@A
    key_map = comfy.lora.model_lora_keys_unet(patcher.model, {})
    conv = comfy.lora_convert.convert_lora(dict(lora))
    # kohya names (lora_down = A, lora_up = B) are aliased so the same scale check covers them;
    # their scale is alpha / rank (rank = lora_down rows), the convention of ComfyUI and diffusers' kohya converters
    for k in list(conv):
        if k.endswith(".lora_down.weight"):
            b = k[: -len(".lora_down.weight")]
            conv.setdefault(b + ".lora_A.weight", conv[k])
            if b + ".lora_up.weight" in conv:
                conv.setdefault(b + ".lora_B.weight", conv[b + ".lora_up.weight"])
    bases = sorted({k[: -len(".lora_A.weight")] for k in conv if k.endswith(".lora_A.weight")})
    s_diff = diffusers_scales(conv, metadata, bases)
    msd = patcher.model.state_dict()
    expected = {}
    for x in bases:
        if x not in key_map or x + ".lora_B.weight" not in conv:
            continue
        tgt = key_map[x]
        key, offset = (tgt if isinstance(tgt, tuple) else (tgt, None))
        if key not in msd:
            continue
        d = expected.setdefault(key, torch.zeros_like(msd[key], dtype=torch.float32))
        upd = s_diff[x][0] * (conv[x + ".lora_B.weight"].float() @ conv[x + ".lora_A.weight"].float())
        if offset is not None:
            d.narrow(offset[0], offset[1], offset[2]).add_(upd.reshape(d.narrow(offset[0], offset[1], offset[2]).shape))
        else:
            d.add_(upd.reshape(d.shape))
    worst = 0.0
    ratios = []
    checked = 0
    for key, exp in expected.items():
        if key not in new_patcher.patches:
            continue
        w = msd[key].float()
        got = comfy.lora.calculate_weight(new_patcher.patches[key], w.clone(), key) - w
        err = float((got - exp).abs().max() / (exp.abs().max() + 1e-12))
        worst = max(worst, err)
        nz = exp.abs() > 1e-8
        if nz.any():
            ratios.append(float((got[nz] / exp[nz]).median()))
        checked += 1
    sources = sorted({v[1] for v in s_diff.values()})
    dscales = sorted({round(v[0], 6) for v in s_diff.values()})
    comfy_over_diffusers = sorted({round(r, 4) for r in ratios})
    scale_ok = checked > 0 and worst < 1e-4
    report["scale_check"] = {
        "patched_weights_checked": checked,
        "diffusers_scale_values": dscales,
        "diffusers_scale_source": sources,
        "comfy_effective_scale_over_diffusers_scale": comfy_over_diffusers,
        "max_rel_err_comfy_vs_diffusers_delta": round(worst, 6),
        "scale_matches": scale_ok,
    }

    if args.diffusers_ref:
        report["diffusers_ref"] = diffusers_reference(args.model_dir, args.diffusers_ref, convert_fn, msd,
                                                      new_patcher, comfy)

    all_mapped = len(unmapped) == 0 and len(not_patched) == 0 and len(lora_keys) > 0
    rc = 0 if all_mapped and (scale_ok or args.ignore_scale) else (1 if not all_mapped else 2)
    ref = report.get("diffusers_ref")
    if ref and rc == 0 and not ref["match"]:  # ComfyUI's weights differ from what diffusers applies
        coverage = ref["changed_by_diffusers_not_by_comfy"] or ref["changed_by_comfy_not_by_diffusers"]
        rc = 1 if coverage else 2
    report["verdict"] = {0: "PASS: every key loads in ComfyUI at the diffusers scale",
                         1: "FAIL: ComfyUI would not load some keys",
                         2: "FAIL(scale): all keys load but ComfyUI applies a different strength than diffusers"}[rc]
    report["exit_code"] = rc
    txt = json.dumps(report, indent=1, default=str)
    print(txt)
    if args.json:
        with open(args.json, "w") as f:
            f.write(txt)
    return rc


if __name__ == "__main__":
    sys.exit(main())
