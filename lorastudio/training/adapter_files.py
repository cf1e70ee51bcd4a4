"""DoRA and LoKr files (``train.adapter``), and reading any file we write back into peft.

Training produces peft's state dict; ``formats`` turns a plain LoRA's into each loader's
layout. This module does the same for the other two adapters, per ``output.format``:

DoRA (``LoraConfig(use_dora=True)``: ``W' = m ⊙ (W + s·BA) / ‖W + s·BA‖``, norms per output
row, ``s = alpha / rank``):

* ``diffusers``: peft's keys with diffusers' ``transformer.`` prefix for every family
  (``transformer.<module>.lora_A.weight``, ``.lora_B.weight`` with ``s`` folded in, and
  ``.lora_magnitude_vector``, the key diffusers' peft loader recognises as DoRA) and no
  ``.alpha``: with ``.alpha`` tensors diffusers' Qwen loader takes the file for a kohya one
  and stops at the magnitude keys. ``load_lora_weights`` loads it for FLUX.1, FLUX.2 and
  Qwen (tested). ComfyUI ignores ``lora_magnitude_vector``: for ComfyUI use ``comfyui``.
* ``comfyui``: the LoRA file of ``formats`` (kohya/BFL names, q/k/v fused where ComfyUI
  fuses them) plus ``<name>.dora_scale`` of shape (out, 1). ComfyUI's
  ``comfy/weight_adapter/base.py:weight_decompose`` with a scale on the output axis divides
  by the row norms of the *base* weight ``‖W‖``, not of ``W + ΔW`` as peft does, so the file
  carries ``m · ‖W‖ / ‖W + s·BA‖``: ComfyUI then applies exactly peft's weight. Rows of a
  fused layer are the parts' rows, so the parts' scales are concatenated in row order.

LoKr (``LoKrConfig``: ``ΔW = s · kron(w1, w2)``, ``w2 = w2_a @ w2_b`` when the rank is small
enough; peft's names are LyCORIS' ``lokr_w1``, ``lokr_w2``, ``lokr_w2_a``, ``lokr_w2_b``):
``s`` is folded into ``lokr_w1`` and no ``.alpha`` is written, so every loader applies
``kron(w1, w2)`` as it is (ComfyUI's ``comfy/weight_adapter/lokr.py`` uses scale 1.0 without
an alpha; diffusers' ``_bake_lokr_alpha_`` likewise). Names: ``diffusers`` = the diffusers
module names with the family's prefix (ComfyUI maps them for FLUX.1 and Qwen, narrowing
FLUX.1's q/k/v to their rows of the fused layer); ``comfyui`` = kohya names (Qwen only: a
Kronecker product of a fused BFL layer cannot hold separate q/k/v factors, which
``config_rules.check_adapter_format`` refuses before a run starts).

:func:`peft_state_from_file` inverts all of this for ``lorastudio sample`` and the Test tab,
which load DoRA and LoKr files through peft directly.
"""

from __future__ import annotations

import torch

from lorastudio.training.formats import (BFL_RULES, DIFFUSERS_PREFIX, FormatError, architecture, bfl_name,
                                         comfyui_tensors, diffusers_tensors, kohya_name)

LOKR_KEYS = ("lokr_w1", "lokr_w1_a", "lokr_w1_b", "lokr_w2", "lokr_w2_a", "lokr_w2_b", "lokr_t2")


def base_weight(transformer: torch.nn.Module, module: str) -> torch.Tensor:
    """The frozen base weight of ``module`` in float32 on the CPU (dequantized if quantized)."""
    layer = transformer.get_submodule(module)
    layer = layer.get_base_layer() if hasattr(layer, "get_base_layer") else layer
    from peft.utils.integrations import dequantize_module_weight

    return dequantize_module_weight(layer).detach().float().cpu()


def _row_norm(weight: torch.Tensor) -> torch.Tensor:
    return weight.reshape(weight.shape[0], -1).norm(dim=1, keepdim=True)


def comfy_dora_scale(magnitude: torch.Tensor, weight: torch.Tensor, delta: torch.Tensor) -> torch.Tensor:
    """ComfyUI's ``dora_scale`` (out, 1) for peft's magnitude: ``m · ‖W‖ / ‖W + ΔW‖`` (see module doc)."""
    return magnitude.float().reshape(-1, 1) * _row_norm(weight) / _row_norm(weight + delta)


def peft_magnitude(dora_scale: torch.Tensor, weight: torch.Tensor, delta: torch.Tensor) -> torch.Tensor:
    """The inverse of :func:`comfy_dora_scale`: peft's ``lora_magnitude_vector`` (out,)."""
    return (dora_scale.float().reshape(-1, 1) * _row_norm(weight + delta) / _row_norm(weight)).reshape(-1)


def _cast(tensor: torch.Tensor, dtype: torch.dtype | None) -> torch.Tensor:
    return (tensor.to(dtype) if dtype is not None else tensor).contiguous()


def _by_module(peft_state: dict[str, torch.Tensor], names: tuple[str, ...]) -> dict[str, dict[str, torch.Tensor]]:
    out: dict[str, dict[str, torch.Tensor]] = {}
    for key, value in peft_state.items():
        for name in names:
            if key.endswith("." + name):
                out.setdefault(key[: -len(name) - 1], {})[name] = value.detach().cpu()
    return out


def _comfy_names(modules, arch: str) -> dict[str, list[tuple[int, int, str]]]:
    """File name (kohya/BFL) → [(part, parts, diffusers module)] in row order."""
    out: dict[str, list[tuple[int, int, str]]] = {}
    for module in modules:
        if arch in BFL_RULES:
            target, part, n = bfl_name(module, arch)
        else:
            target, part, n = module, 0, 1
        out.setdefault(kohya_name(target), []).append((part, n, module))
    return {k: sorted(v) for k, v in out.items()}


def export_adapter_tensors(peft_state: dict[str, torch.Tensor], rank: int, alpha: float, family: str,
                           fmt: str = "diffusers", dtype: torch.dtype | None = None, adapter: str = "dora",
                           transformer: torch.nn.Module | None = None) -> dict[str, torch.Tensor]:
    """The file's tensors for a DoRA or LoKr (see the module docstring)."""
    arch = architecture(family)
    scale = float(alpha or rank) / rank
    if adapter == "dora":
        magnitudes = _by_module(peft_state, ("lora_magnitude_vector",))
        lora_state = {k: v for k, v in peft_state.items() if not k.endswith(".lora_magnitude_vector")}
        if fmt == "diffusers":
            out = {}
            for module, parts in sorted(_by_module(lora_state, ("lora_A.weight", "lora_B.weight")).items()):
                out[f"transformer.{module}.lora_A.weight"] = _cast(parts["lora_A.weight"], dtype)
                out[f"transformer.{module}.lora_B.weight"] = _cast(parts["lora_B.weight"] * scale, dtype)
                out[f"transformer.{module}.lora_magnitude_vector"] = _cast(
                    magnitudes[module]["lora_magnitude_vector"], dtype)
            return out
        if fmt != "comfyui":
            raise FormatError(f"unknown LoRA format {fmt!r}")
        if transformer is None:
            raise FormatError("a DoRA in the comfyui format needs the base weights (ComfyUI's DoRA normalises by them)")
        out = comfyui_tensors(lora_state, rank, alpha, family, dtype)
        pairs = _by_module(lora_state, ("lora_A.weight", "lora_B.weight"))
        for name, parts in sorted(_comfy_names(magnitudes, arch).items()):
            scales = []
            for _, _, module in parts:
                delta = scale * pairs[module]["lora_B.weight"].float() @ pairs[module]["lora_A.weight"].float()
                scales.append(comfy_dora_scale(magnitudes[module]["lora_magnitude_vector"],
                                               base_weight(transformer, module), delta))
            out[f"{name}.dora_scale"] = _cast(torch.cat(scales, dim=0), dtype)
        return out
    if adapter != "lokr":
        raise FormatError(f"unknown adapter {adapter!r}")
    factors = _by_module(peft_state, LOKR_KEYS)
    if fmt == "diffusers":
        names = {module: DIFFUSERS_PREFIX[arch] + module for module in factors}
    elif fmt == "comfyui":
        names = {}
        for name, parts in _comfy_names(factors, arch).items():
            if len(parts) != 1 or parts[0][1] != 1:
                raise FormatError(f"{name} is one fused layer in the ComfyUI layout; a LoKr of its parts cannot be "
                                  "written there: save in the diffusers format")
            names[parts[0][2]] = name
    else:
        raise FormatError(f"unknown LoRA format {fmt!r}")
    out = {}
    for module, parts in sorted(factors.items()):
        for key, value in parts.items():
            if key in ("lokr_w1", "lokr_w1_a"):
                value = value * scale  # s folded into the left factor: kron is linear in it
            out[f"{names[module]}.{key}"] = _cast(value, dtype)
    return out


def peft_state_from_file(tensors: dict[str, torch.Tensor], transformer: torch.nn.Module, family: str, fmt: str,
                         adapter: str, rank: int, targets: list[str]) -> dict[str, torch.Tensor]:
    """peft's state dict (for ``alpha = rank``, i.e. scale 1) of a file this app wrote.

    ``targets`` are the transformer's adapted Linear module names (diffusers names)."""
    arch = architecture(family)
    if fmt == "diffusers":
        prefix = "transformer." if all(k.startswith("transformer.") for k in tensors) else ""
        state = {k[len(prefix):]: v.float() for k, v in tensors.items() if k.startswith(prefix)}
        alphas = {k[: -len(".alpha")]: v.item() for k, v in state.items() if k.endswith(".alpha")}
        for module, value in alphas.items():  # scale folded into B: the config uses alpha = rank
            state[f"{module}.lora_B.weight"] = state[f"{module}.lora_B.weight"] * (value / rank)
            del state[f"{module}.alpha"]
        return state
    if fmt != "comfyui":
        raise FormatError(f"unknown LoRA format {fmt!r}")
    state: dict[str, torch.Tensor] = {}
    for name, parts in _comfy_names(targets, arch).items():
        if adapter == "lokr":
            for key in LOKR_KEYS:
                if f"{name}.{key}" in tensors:
                    state[f"{parts[0][2]}.{key}"] = tensors[f"{name}.{key}"].float()
            continue
        if f"{name}.lora_down.weight" not in tensors:
            continue
        down, up = tensors[f"{name}.lora_down.weight"].float(), tensors[f"{name}.lora_up.weight"].float()
        alpha = tensors[f"{name}.alpha"].item() if f"{name}.alpha" in tensors else down.shape[0]
        scale = alpha / down.shape[0]
        r = down.shape[0] // len(parts)
        dora = tensors.get(f"{name}.dora_scale")
        row = 0
        for i, (_, _, module) in enumerate(parts):
            base = base_weight(transformer, module)
            out_features = base.shape[0]
            a = down[i * r:(i + 1) * r]
            b = up[row:row + out_features, i * r:(i + 1) * r] * scale
            state[f"{module}.lora_A.weight"], state[f"{module}.lora_B.weight"] = a, b
            if dora is not None:
                state[f"{module}.lora_magnitude_vector"] = peft_magnitude(
                    dora[row:row + out_features], base, b @ a)
            row += out_features
    return state
