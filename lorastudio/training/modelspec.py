"""``modelspec.*`` header fields, so other tools show a LoRA Studio LoRA properly.

The Stability AI ModelSpec (https://github.com/Stability-AI/ModelSpec, version 1.0.1 as
kohya's sd-scripts write it) is what A1111/Forge, SwarmUI, ComfyUI-Manager-style browsers
and Civitai read from a ``.safetensors`` header to name, sort and filter models: the
architecture (``<base>/lora``), a title, the training resolution, the trigger phrase
and the date. ComfyUI itself ignores header metadata when loading (it reads only tensors);
diffusers ignores these keys too — so they are safe beside ours.

Architecture ids are the ones those tools match: SwarmUI's model classes
(``Flux.1-dev/lora`` — used for Kontext LoRAs as well, as SwarmUI and musubi-tuner do,
since Kontext is a FLUX.1-dev architecture — ``qwen-image/lora``,
``flux.2-dev/lora``, ``flux.2-klein-4b/lora``, ``flux.2-klein-9b/lora``) and
musubi-tuner's ``Qwen-Image-Edit-Plus`` for the edit model.
"""

from __future__ import annotations

import datetime as _dt
import json
from pathlib import Path

from lorastudio import catalog

SPEC_VERSION = "1.0.1"


def architecture(family: str, model_dir: Path | None = None) -> str:
    """``<architecture>/lora`` for ``family`` (the catalog's ``modelspec_architecture``); a
    family that comes in sizes (FLUX.2 [klein] 4B/9B) is told apart by the transformer's
    width in ``model_dir`` when that can be read."""
    record = catalog.find(family)
    if record is None:
        return f"{family}/lora"
    arch = record.modelspec_architecture
    sizes = dict(record.modelspec_size_tags)
    if sizes and model_dir is not None:
        try:
            config = json.loads((Path(model_dir) / "transformer" / "config.json").read_text(encoding="utf-8"))
            width = int(config["num_attention_heads"]) * int(config["attention_head_dim"])
        except (OSError, ValueError, KeyError, TypeError):
            width = 0
        if width in sizes:
            arch = f"{arch}-{sizes[width]}"
    return f"{arch}/lora"


def modelspec_metadata(*, family: str, title: str, resolution: int, trigger: str = "", edit: bool = True,
                       model_dir: Path | None = None, date: _dt.date | None = None,
                       description: str = "") -> dict[str, str]:
    """The ``modelspec.*`` header entries (all strings, as safetensors headers must be)."""
    meta = {
        "modelspec.sai_model_spec": SPEC_VERSION,
        "modelspec.architecture": architecture(family, model_dir),
        "modelspec.implementation": record.modelspec_implementation if (record := catalog.find(family))
        else "diffusers",
        "modelspec.title": title,
        "modelspec.resolution": f"{int(resolution)}x{int(resolution)}",
        "modelspec.date": (date or _dt.date.today()).isoformat(),
        "modelspec.description": description or (
            ("Image-editing" if edit else "Text-to-image") + " LoRA trained with LoRA Studio"),
    }
    if trigger:
        meta["modelspec.trigger_phrase"] = trigger
    return meta
