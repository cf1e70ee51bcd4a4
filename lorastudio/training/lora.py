"""LoRA layers on the transformer, and the exported ``.safetensors`` file.

File format (what ``lorastudio train`` writes to ``output.lora_path``):

- Weights in diffusers key format, exactly what ``FluxKontextPipeline.save_lora_weights``
  writes from peft's ``get_peft_model_state_dict``:
  ``transformer.<module>.lora_A.weight`` (rank × in) and ``transformer.<module>.lora_B.weight``
  (out × rank).
- One float32 scalar ``transformer.<module>.alpha`` per module. ComfyUI reads a LoRA's
  scale only from these tensors (``alpha / rank``; header metadata is ignored, and without
  them it uses scale 1.0), so a LoRA trained with alpha ≠ rank would otherwise be applied at
  the wrong strength there. diffusers' FLUX loader (``FluxLoraLoaderMixin.lora_state_dict``)
  pops floating ``…alpha`` keys into ``network_alphas`` and gives peft ``lora_alpha`` from
  them, so both apply ``alpha / rank``.
- No ``lora_adapter_metadata`` header entry (diffusers refuses a file that has both it and
  ``.alpha`` tensors). Our facts live under ``lorastudio.*`` header keys.

Qwen-Image: diffusers' ``QwenImageLoraLoaderMixin.lora_state_dict`` treats any file with
``.alpha`` keys as a "non-diffusers" LoRA, folds ``alpha / rank`` into the weights and then
*prepends* ``transformer.`` to every key; a ``transformer.``-prefixed file would come out as
``transformer.transformer.…`` and load nothing. For Qwen families the keys are therefore
written without the prefix (``<module>.lora_A.weight``, ``<module>.alpha``): diffusers then
produces the right names, and ComfyUI's Qwen key map accepts bare diffusers module names
as well as ``transformer.``-prefixed ones. See :data:`KEY_PREFIX`.

FLUX.2 and the ``comfyui`` format (kohya/BFL names, fused q/k/v): see ``formats``. Besides
our ``lorastudio.*`` header keys the file carries the common ``modelspec.*`` fields
(``modelspec``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterable

import torch

from lorastudio import catalog
from lorastudio.fileio import atomic_writer
from lorastudio.training.formats import DIFFUSERS_PREFIX

#: Key prefix of the diffusers-format weights per family: its key layout's (see ``formats``).
KEY_PREFIX: dict[str, str] = {record.id: DIFFUSERS_PREFIX[record.key_layout] for record in catalog.FAMILIES}
ADAPTER = "default"


def adapter_config(adapter: str, rank: int, alpha: float, targets: list[str], lokr_factor: int = -1):
    """peft's config for ``train.adapter`` (``lora``, ``dora``, ``lokr``): no hand-written layers.

    All three scale their delta by ``alpha / rank``; DoRA adds peft's per-output-row
    magnitude (``lora_magnitude_vector``), LoKr factors the delta as ``kron(w1, w2)`` with
    ``w2`` low-rank where the rank is small enough (LyCORIS' layout, same key names)."""
    from peft import LoKrConfig, LoraConfig

    if adapter == "lokr":
        return LoKrConfig(r=rank, alpha=alpha or rank, decompose_factor=lokr_factor, target_modules=targets)
    if adapter in ("lora", "dora"):
        return LoraConfig(r=rank, lora_alpha=alpha or rank, lora_dropout=0.0, init_lora_weights=True,
                          target_modules=targets, use_dora=adapter == "dora")
    raise ValueError(f"unknown adapter {adapter!r}")


def is_adapter_parameter(name: str) -> bool:
    """Whether a parameter name belongs to a peft adapter (LoRA/DoRA ``lora_*``, LoKr ``lokr_*``)."""
    return "lora_" in name or "lokr_" in name


def add_lora(transformer: torch.nn.Module, rank: int, alpha: float, target_modules: Iterable[str],
             adapter: str = "lora", lokr_factor: int = -1) -> list[torch.nn.Parameter]:
    """Inject peft adapter layers (in place) and return the trainable parameters (float32)."""
    from peft import inject_adapter_in_model

    config = adapter_config(adapter, rank, alpha, linear_targets(transformer, target_modules) or list(target_modules),
                            lokr_factor)
    for p in transformer.parameters():
        p.requires_grad_(False)
    if hasattr(transformer, "add_adapter"):  # diffusers ModelMixin: registers peft_config too
        transformer.add_adapter(config, adapter_name=ADAPTER)
    else:  # plain torch modules (unit tests)
        inject_adapter_in_model(config, transformer, adapter_name=ADAPTER)
        transformer.peft_config = {ADAPTER: config}
    params = [p for n, p in transformer.named_parameters() if is_adapter_parameter(n)]
    for p in params:
        p.requires_grad_(True)
        if p.dtype != torch.float32:
            p.data = p.data.float()
    if not params:
        raise RuntimeError(f"no LoRA layers: none of {list(target_modules)} matched a module of the transformer")
    return params


def linear_targets(model: torch.nn.Module, suffixes: Iterable[str]) -> list[str]:
    """Full names of the Linear layers whose names end with one of ``suffixes``.

    peft matches target names by suffix and refuses a match that is not a layer it can
    wrap; resolving to Linear layers first lets one suffix mean "that projection" even
    where a container shares the name (FLUX.2's single blocks have a Linear
    ``attn.to_out``, its double blocks a ModuleList ``attn.to_out`` holding ``to_out.0``).
    """
    suffixes = tuple(suffixes)
    return [name for name, module in model.named_modules()
            if isinstance(module, torch.nn.Linear)
            and any(name == s or name.endswith("." + s) for s in suffixes)]


def peft_state_dict(transformer: torch.nn.Module) -> dict[str, torch.Tensor]:
    """peft's state dict of the LoRA layers: ``<module>.lora_A.weight`` … (adapter name removed)."""
    from peft import get_peft_model_state_dict

    return {k: v.detach() for k, v in get_peft_model_state_dict(transformer, adapter_name=ADAPTER).items()}


def load_peft_state_dict(transformer: torch.nn.Module, state: dict[str, torch.Tensor]) -> None:
    from peft import set_peft_model_state_dict

    result = set_peft_model_state_dict(transformer, state, adapter_name=ADAPTER)
    unexpected = getattr(result, "unexpected_keys", None) or []
    if unexpected:
        raise RuntimeError(f"checkpoint LoRA keys do not match the model: {unexpected[:3]}…")


def export_state_dict(peft_state: dict[str, torch.Tensor], rank: int, alpha: float, family: str,
                      dtype: torch.dtype | None = None, fmt: str = "diffusers", adapter: str = "lora",
                      transformer: torch.nn.Module | None = None) -> dict[str, torch.Tensor]:
    """The exported tensors in ``fmt`` (``diffusers``: prefixed lora_A/lora_B weights plus one
    ``.alpha`` per module; ``comfyui``: kohya/BFL names) — see ``formats``; DoRA and LoKr
    files: see ``adapter_files`` (a ComfyUI DoRA needs the base weights, from ``transformer``)."""
    if adapter != "lora":
        from lorastudio.training.adapter_files import export_adapter_tensors

        return export_adapter_tensors(peft_state, rank, alpha, family, fmt=fmt, dtype=dtype, adapter=adapter,
                                      transformer=transformer)
    from lorastudio.training.formats import export_tensors

    return export_tensors(peft_state, rank, alpha, family, fmt=fmt, dtype=dtype)


def export_metadata(*, family: str, base_model: str, rank: int, alpha: float, steps: int, learning_rate: float,
                    resolution: int, sets: int, trigger: str, fmt: str = "diffusers", title: str = "",
                    edit: bool = True, model_dir: Path | None = None,
                    recipe: dict[str, str] | None = None, adapter: str = "lora",
                    lokr_factor: int = -1) -> dict[str, str]:
    """Our ``lorastudio.*`` facts plus the common ``modelspec.*`` fields (``modelspec``)."""
    from lorastudio import __version__
    from lorastudio.training.modelspec import modelspec_metadata

    meta = {
        "lorastudio.family": family,
        "lorastudio.base_model": base_model,
        "lorastudio.rank": str(rank),
        "lorastudio.alpha": repr(float(alpha or rank)),
        "lorastudio.steps": str(steps),
        "lorastudio.learning_rate": repr(float(learning_rate)),
        "lorastudio.resolution": str(resolution),
        "lorastudio.sets": str(sets),
        "lorastudio.version": __version__,
        "lorastudio.format": fmt,
        "lorastudio.adapter": adapter,
        "format": "pt",
    }
    if adapter == "lokr":
        meta["lorastudio.lokr_factor"] = str(lokr_factor)
    if trigger:
        meta["lorastudio.trigger"] = trigger
    meta.update({f"lorastudio.{k}": v for k, v in (recipe or {}).items()})  # timesteps, lr_schedule, …
    meta.update(modelspec_metadata(family=family, title=title or base_model, resolution=resolution,
                                   trigger=trigger, edit=edit, model_dir=model_dir))
    return meta


def save_lora_file(path: Path, tensors: dict[str, torch.Tensor], metadata: dict[str, str]) -> Path:
    """Write the LoRA atomically (temp file + rename): a crash never leaves half a file."""
    from safetensors.torch import save_file

    assert "lora_adapter_metadata" not in metadata, "diffusers refuses .alpha tensors with lora_adapter_metadata"
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_writer(path, clean_stale=True) as (_fh, tmp):
        save_file(tensors, str(tmp), metadata=metadata)  # by name; atomic_writer fsyncs and renames
    return path


def read_lora_file(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    from safetensors import safe_open
    from safetensors.torch import load_file

    with safe_open(str(path), framework="pt") as f:
        meta = dict(f.metadata() or {})
    return load_file(str(path)), meta
