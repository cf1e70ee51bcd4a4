"""The key layouts a LoRA file can be written in, per family: ``diffusers`` and ``comfyui``.

Training always produces peft's state dict on the diffusers transformer
(``<module>.lora_A.weight`` (rank × in), ``<module>.lora_B.weight`` (out × rank)); this
module turns it into what a loader expects.

``diffusers`` (the default) — loadable with the family pipeline's ``load_lora_weights``:

* FLUX.1 (Kontext, dev): ``transformer.<module>.lora_A/B.weight`` plus a float32
  ``transformer.<module>.alpha`` per module (diffusers' FLUX loader turns them into
  ``network_alphas``; ComfyUI reads them too and maps the ``transformer.`` names onto its
  fused layers).
* Qwen-Image(-Edit): the same without the ``transformer.`` prefix (diffusers' Qwen loader
  treats any file with ``.alpha`` keys as non-diffusers and adds the prefix itself).
* FLUX.2: ``transformer.<module>.lora_A/B.weight`` with **no** ``.alpha`` tensors: the
  FLUX.2 loader passes no ``network_alphas`` and refuses a file whose keys are not all
  LoRA weights, so ``alpha / rank`` is folded into ``lora_B`` and both loaders apply
  scale 1.0, which is the trained strength.

``comfyui`` — kohya-style names (``lora_unet_<module with _>.lora_down.weight``,
``.lora_up.weight``, ``.alpha``), the layout ComfyUI's ``model_lora_keys_unet`` maps for
every model (``lora_unet_`` + its own ``diffusion_model.`` key with dots as
underscores), which sd-scripts/musubi-tuner write, and which diffusers also loads:

* FLUX.1 and FLUX.2: the module names are the BFL checkpoint's (``double_blocks.N.img_attn.qkv``
  …), where attention q/k/v (and, in FLUX.1's single blocks, q/k/v plus the MLP input)
  are ONE fused linear layer. The separate diffusers LoRAs of the parts become one LoRA
  of the fused layer: ``lora_down`` = the parts' A matrices stacked (rank n·r),
  ``lora_up`` = their B matrices block-diagonal, so ``up @ down`` is exactly the parts'
  deltas stacked; the alpha becomes n·alpha so that ``alpha / rank`` (every loader
  divides by the file's rank, now n·r) stays ``alpha / r``. The mapping from diffusers
  module names to BFL names is :data:`BFL_RULES` (checked against diffusers' own
  single-file converter in the tests).
* Qwen-Image(-Edit): ComfyUI's Qwen model uses the diffusers module names as they are,
  so only the kohya naming changes (``lora_unet_transformer_blocks_0_attn_to_q``).
* Z-Image: ``diffusion_model.<diffusers module>.lora_down/lora_up.weight`` and ``.alpha``
  (see :data:`COMFYUI_PREFIX`); its diffusers-format file is FLUX.2's layout (``transformer.``
  names, alpha folded into ``lora_B``), because diffusers' Z-Image loader treats any file
  with ``.alpha`` tensors as non-diffusers and prefixes ``transformer.`` itself.

Exception: FLUX.1's final layer (``proj_out`` → ``final_layer.linear``). diffusers' kohya
FLUX.1 converter ignores that module's alpha, so its ``alpha / rank`` is folded into
``lora_up`` and its alpha written equal to its rank: scale 1.0 in every loader.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import torch

from lorastudio import catalog

FORMATS = catalog.LORA_FORMATS

#: Family id → architecture of the transformer (which key rules apply): the catalog's ``key_layout``.
ARCHITECTURE = {record.id: record.key_layout for record in catalog.FAMILIES}

#: The diffusers-format key prefix per architecture (see the module docstring).
DIFFUSERS_PREFIX = {"flux1": "transformer.", "flux2": "transformer.", "qwen": "", "zimage": "transformer."}
#: Architectures whose diffusers-format file carries ``.alpha`` tensors (else: folded).
DIFFUSERS_ALPHA = {"flux1": True, "flux2": False, "qwen": True, "zimage": False}
#: Architectures whose comfyui-format names are the diffusers module names behind this prefix
#: (with ``lora_down``/``lora_up``/``.alpha``) rather than ``lora_unet_`` + underscores.
#: Z-Image: ComfyUI's own names are the original checkpoint's, with q/k/v fused
#: (``lora_unet_layers_0_attention_qkv``), which diffusers' Z-Image converter cannot read,
#: while ComfyUI's Z-Image LoRA map also takes ``diffusion_model.<diffusers name>`` and puts
#: ``to_q/k/v`` on its fused layer's slices itself; diffusers strips that prefix and applies
#: the alphas (the layout ai-toolkit and musubi-tuner write for Z-Image).
COMFYUI_PREFIX = {"zimage": "diffusion_model."}


@dataclass(frozen=True)
class Rule:
    """diffusers module names matching ``pattern`` (full match; group 1 = block index, group
    2 = the part, if fused) belong to the BFL module ``target``; ``parts`` lists a fused
    layer's parts in the order of its output rows."""

    pattern: str
    target: str
    parts: tuple[str, ...] = ()


_QKV = ("q", "k", "v")

#: diffusers → BFL module names (FLUX.1: ``FluxTransformer2DModel``; FLUX.2:
#: ``Flux2Transformer2DModel``), as in diffusers' ``convert_flux_transformer_checkpoint_to_diffusers``
#: and ``_convert_kohya_flux2_lora_to_diffusers``, read in reverse.
BFL_RULES: dict[str, tuple[Rule, ...]] = {
    "flux1": (
        Rule(r"transformer_blocks\.(\d+)\.attn\.to_(q|k|v)", "double_blocks.{}.img_attn.qkv", _QKV),
        Rule(r"transformer_blocks\.(\d+)\.attn\.add_(q|k|v)_proj", "double_blocks.{}.txt_attn.qkv", _QKV),
        Rule(r"transformer_blocks\.(\d+)\.attn\.to_out\.0", "double_blocks.{}.img_attn.proj"),
        Rule(r"transformer_blocks\.(\d+)\.attn\.to_add_out", "double_blocks.{}.txt_attn.proj"),
        Rule(r"transformer_blocks\.(\d+)\.ff\.net\.0\.proj", "double_blocks.{}.img_mlp.0"),
        Rule(r"transformer_blocks\.(\d+)\.ff\.net\.2", "double_blocks.{}.img_mlp.2"),
        Rule(r"transformer_blocks\.(\d+)\.ff_context\.net\.0\.proj", "double_blocks.{}.txt_mlp.0"),
        Rule(r"transformer_blocks\.(\d+)\.ff_context\.net\.2", "double_blocks.{}.txt_mlp.2"),
        Rule(r"single_transformer_blocks\.(\d+)\.(attn\.to_q|attn\.to_k|attn\.to_v|proj_mlp)",
             "single_blocks.{}.linear1", ("attn.to_q", "attn.to_k", "attn.to_v", "proj_mlp")),
        Rule(r"single_transformer_blocks\.(\d+)\.proj_out", "single_blocks.{}.linear2"),
        Rule(r"proj_out", "final_layer.linear"),
    ),
    "flux2": (
        Rule(r"transformer_blocks\.(\d+)\.attn\.to_(q|k|v)", "double_blocks.{}.img_attn.qkv", _QKV),
        Rule(r"transformer_blocks\.(\d+)\.attn\.add_(q|k|v)_proj", "double_blocks.{}.txt_attn.qkv", _QKV),
        Rule(r"transformer_blocks\.(\d+)\.attn\.to_out\.0", "double_blocks.{}.img_attn.proj"),
        Rule(r"transformer_blocks\.(\d+)\.attn\.to_add_out", "double_blocks.{}.txt_attn.proj"),
        Rule(r"transformer_blocks\.(\d+)\.ff\.linear_in", "double_blocks.{}.img_mlp.0"),
        Rule(r"transformer_blocks\.(\d+)\.ff\.linear_out", "double_blocks.{}.img_mlp.2"),
        Rule(r"transformer_blocks\.(\d+)\.ff_context\.linear_in", "double_blocks.{}.txt_mlp.0"),
        Rule(r"transformer_blocks\.(\d+)\.ff_context\.linear_out", "double_blocks.{}.txt_mlp.2"),
        Rule(r"single_transformer_blocks\.(\d+)\.attn\.to_qkv_mlp_proj", "single_blocks.{}.linear1"),
        Rule(r"single_transformer_blocks\.(\d+)\.attn\.to_out", "single_blocks.{}.linear2"),
        Rule(r"proj_out", "final_layer.linear"),
    ),
}

#: BFL modules whose alpha diffusers' kohya converter ignores (see the module docstring).
_FOLD_ALPHA = {"flux1": ("final_layer.linear",)}


class FormatError(ValueError):
    """A LoRA that cannot be written in the asked format (message says why)."""


def architecture(family: str) -> str:
    try:
        return ARCHITECTURE[family]
    except KeyError:
        raise FormatError(f"no LoRA key layout known for family {family!r}") from None


def bfl_name(module: str, arch: str) -> tuple[str, int, int]:
    """(BFL module name, part index, number of parts) of a diffusers module name.

    Raises FormatError for a module with no BFL counterpart (an embedder, a norm …), which
    LoRA Studio never trains."""
    for rule in BFL_RULES[arch]:
        match = re.fullmatch(rule.pattern, module)
        if match is None:
            continue
        target = rule.target.format(*match.groups()[:1])
        if not rule.parts:
            return target, 0, 1
        return target, rule.parts.index(match.group(2)), len(rule.parts)
    raise FormatError(f"the {arch} module {module!r} has no counterpart in the ComfyUI/BFL layout")


def kohya_name(module: str) -> str:
    """``lora_unet_`` + the module name with dots as underscores (ComfyUI's generic map)."""
    return "lora_unet_" + module.replace(".", "_")


def comfyui_name(module: str, arch: str) -> str:
    """The comfyui-format name of a module that keeps its diffusers name there (no BFL rule)."""
    prefix = COMFYUI_PREFIX.get(arch)
    return prefix + module if prefix is not None else kohya_name(module)


def _modules(peft_state: dict[str, torch.Tensor]) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """Module name → (A, B) from peft's state dict."""
    out = {}
    for key, value in peft_state.items():
        if key.endswith(".lora_A.weight"):
            module = key[: -len(".lora_A.weight")]
            b = peft_state.get(module + ".lora_B.weight")
            if b is None:
                raise FormatError(f"LoRA module {module} has lora_A but no lora_B")
            out[module] = (value.detach().to("cpu"), b.detach().to("cpu"))
    return out


def _cast(tensor: torch.Tensor, dtype: torch.dtype | None) -> torch.Tensor:
    return (tensor.to(dtype) if dtype is not None else tensor).contiguous()


def _alpha(value: float) -> torch.Tensor:
    return torch.tensor(float(value), dtype=torch.float32)


def diffusers_tensors(peft_state: dict[str, torch.Tensor], rank: int, alpha: float, family: str,
                      dtype: torch.dtype | None = None) -> dict[str, torch.Tensor]:
    arch = architecture(family)
    prefix = DIFFUSERS_PREFIX[arch]
    scale = float(alpha or rank) / rank
    out: dict[str, torch.Tensor] = {}
    for module, (a, b) in sorted(_modules(peft_state).items()):
        if DIFFUSERS_ALPHA[arch]:
            out[f"{prefix}{module}.lora_A.weight"] = _cast(a, dtype)
            out[f"{prefix}{module}.lora_B.weight"] = _cast(b, dtype)
            out[f"{prefix}{module}.alpha"] = _alpha(alpha or rank)
        else:
            out[f"{prefix}{module}.lora_A.weight"] = _cast(a, dtype)
            out[f"{prefix}{module}.lora_B.weight"] = _cast(b * scale, dtype)
    return out


def comfyui_tensors(peft_state: dict[str, torch.Tensor], rank: int, alpha: float, family: str,
                    dtype: torch.dtype | None = None) -> dict[str, torch.Tensor]:
    arch = architecture(family)
    alpha = float(alpha or rank)
    modules = _modules(peft_state)
    out: dict[str, torch.Tensor] = {}
    if arch not in BFL_RULES:  # same module names in ComfyUI: rename only
        for module, (a, b) in sorted(modules.items()):
            name = comfyui_name(module, arch)
            out[f"{name}.lora_down.weight"] = _cast(a, dtype)
            out[f"{name}.lora_up.weight"] = _cast(b, dtype)
            out[f"{name}.alpha"] = _alpha(alpha)
        return out

    groups: dict[str, dict[int, tuple[str, torch.Tensor, torch.Tensor]]] = {}
    sizes: dict[str, int] = {}
    for module, (a, b) in modules.items():
        target, part, n = bfl_name(module, arch)
        groups.setdefault(target, {})[part] = (module, a, b)
        sizes[target] = n
    for target in sorted(groups):
        parts, n = groups[target], sizes[target]
        if len(parts) != n:
            have = ", ".join(m for m, _, _ in parts.values())
            raise FormatError(f"{target} is one fused layer of {n} parts in the ComfyUI layout, but the LoRA "
                              f"trains only {have}; train all of its parts or save in the diffusers format")
        ordered = [parts[i] for i in range(n)]
        down = torch.cat([a for _, a, _ in ordered], dim=0)
        up = torch.block_diag(*[b for _, _, b in ordered])
        fused_alpha = alpha * n
        if target in _FOLD_ALPHA.get(arch, ()):
            up = up * (fused_alpha / down.shape[0])
            fused_alpha = float(down.shape[0])
        name = kohya_name(target)
        out[f"{name}.lora_down.weight"] = _cast(down, dtype)
        out[f"{name}.lora_up.weight"] = _cast(up, dtype)
        out[f"{name}.alpha"] = _alpha(fused_alpha)
    return out


def export_tensors(peft_state: dict[str, torch.Tensor], rank: int, alpha: float, family: str,
                   fmt: str = "diffusers", dtype: torch.dtype | None = None) -> dict[str, torch.Tensor]:
    """The tensors of the LoRA file in ``fmt`` (one of :data:`FORMATS`)."""
    if fmt == "diffusers":
        return diffusers_tensors(peft_state, rank, alpha, family, dtype)
    if fmt == "comfyui":
        return comfyui_tensors(peft_state, rank, alpha, family, dtype)
    raise FormatError(f"unknown LoRA format {fmt!r}; choose one of {', '.join(FORMATS)}")


def peft_state_from_comfyui(tensors: dict[str, torch.Tensor], linear_out_features: dict[str, int],
                            family: str) -> dict[str, torch.Tensor]:
    """The inverse of :func:`comfyui_tensors`: peft's ``<module>.lora_A/B.weight`` for a
    model whose Linear layers (name → out_features) are given, with each module's
    ``alpha / rank`` folded into ``lora_B`` (so it loads at scale 1.0).

    A fused layer's ``lora_down`` is split back into its parts' A matrices (rank n·r → n × r)
    and ``lora_up``'s diagonal blocks are the parts' B matrices. Raises FormatError naming
    the keys that match no module of this model."""
    arch = architecture(family)
    groups: dict[str, dict[int, tuple[str, int]]] = {}
    sizes: dict[str, int] = {}
    for module, out_features in linear_out_features.items():
        if arch in BFL_RULES:
            try:
                target, part, n = bfl_name(module, arch)
            except FormatError:
                continue  # an embedder, a norm …: never in our files
        else:
            target, part, n = module, 0, 1
        name = kohya_name(target) if arch in BFL_RULES else comfyui_name(target, arch)
        groups.setdefault(name, {})[part] = (module, out_features)
        sizes[name] = n
    out: dict[str, torch.Tensor] = {}
    used: set[str] = set()
    for name, parts in groups.items():
        down, up = tensors.get(f"{name}.lora_down.weight"), tensors.get(f"{name}.lora_up.weight")
        if down is None or up is None:
            continue
        n = sizes[name]
        if len(parts) != n or down.shape[0] % n or up.shape != (sum(o for _, o in parts.values()), down.shape[0]):
            raise FormatError(f"{name}: its shapes {tuple(down.shape)} / {tuple(up.shape)} do not fit this model")
        alpha = tensors.get(f"{name}.alpha")
        scale = float(alpha) / down.shape[0] if alpha is not None else 1.0
        rank, row = down.shape[0] // n, 0
        for i in range(n):
            module, out_features = parts[i]
            out[f"{module}.lora_A.weight"] = down[i * rank:(i + 1) * rank].float()
            out[f"{module}.lora_B.weight"] = up[row:row + out_features, i * rank:(i + 1) * rank].float() * scale
            row += out_features
        used |= {f"{name}.lora_down.weight", f"{name}.lora_up.weight", f"{name}.alpha"}
    left = sorted(set(tensors) - used)
    if left:
        raise FormatError(f"{len(left)} key(s) match no module of this model, e.g. {', '.join(left[:3])}")
    return out
