"""Which adapter types (``train.adapter``) exist, and which combinations no file can carry.

Pure Python (no torch): ``config`` validates with it before any model loads.
"""

from __future__ import annotations

from lorastudio import catalog

#: ``train.adapter``: which peft adapter trains (``lora``; ``dora``: LoRA with a learned
#: per-row magnitude, Liu et al. 2024; ``lokr``: LyCORIS' Kronecker-product adapter).
ADAPTERS = ("lora", "dora", "lokr")
#: Families whose ComfyUI layout fuses layers the trainer adapts separately (BFL's fused
#: q/k/v), where a LoKr cannot be written so that ComfyUI loads it fully, per format.
#: A Kronecker product over a fused layer is not the parts' products stacked, so the
#: ``comfyui`` (BFL-named) file cannot hold it; FLUX.1's ``diffusers``-named file loads in
#: ComfyUI (its key map narrows each name to its rows of the fused layer), FLUX.2's does not
#: (ComfyUI leaves its MLP/single-block keys unmapped, see ``formats``).
LOKR_UNLOADABLE: dict[str, tuple[str, ...]] = {
    "kontext": ("comfyui",), "flux": ("comfyui",),
    "flux2": ("diffusers", "comfyui"), "flux2-klein": ("diffusers", "comfyui"),
}


def adapter_key_problem(adapter: str, lokr_factor: int, quantization: str) -> str | None:
    """The message for a bad ``train.adapter``/``train.lokr_factor``, or None."""
    if adapter not in ADAPTERS:
        return f"train.adapter: must be one of {', '.join(ADAPTERS)}, got {adapter!r}"
    if lokr_factor == 0 or lokr_factor < -1:
        return f"train.lokr_factor: must be -1 (automatic) or a whole number from 1, got {lokr_factor}"
    if adapter == "lokr" and quantization != "none":
        return (f"train.adapter: \"lokr\" cannot train on quantized weights (train.quantization = {quantization!r}): "
                "peft's LoKr layers wrap only plain float layers; use \"lora\" or \"dora\", or set "
                "train.quantization = \"none\"")
    if lokr_factor != -1 and adapter != "lokr":
        return f"train.lokr_factor: only used with train.adapter = \"lokr\" (adapter is {adapter!r})"
    return None


def adapter_format_problem(adapter: str, fmt: str, family: str) -> str | None:
    """Refuse an adapter/format/family that no file could carry so that ComfyUI applies it
    fully (see LOKR_UNLOADABLE) — a file that half-applies is worse than no file."""
    if adapter == "lokr" and fmt in LOKR_UNLOADABLE.get(family, ()):
        other = [f for f in catalog.LORA_FORMATS if f not in LOKR_UNLOADABLE[family]]
        what = (f'use output.format = "{other[0]}" (ComfyUI and LoRA Studio load it)' if other
                else 'train a "lora" or "dora" adapter for this family')
        return (f"train.adapter: a LoKr for {family} cannot be written in the {fmt!r} format so that "
                "ComfyUI loads it fully (its layout fuses q/k/v into one layer, and a Kronecker "
                f"product cannot be split into parts); {what}")
    return None
