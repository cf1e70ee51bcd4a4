"""A run's LoRA file, written one way by the end of training and by ``lorastudio export``.

The trainer writes ``NAME.safetensors`` (and, with EMA, ``NAME.raw.safetensors``) from the
live model; ``export`` writes the same kind of file from any kept checkpoint. Both go through
:class:`RunLora`, so the two can never disagree about the header (family, base model, rank,
alpha, steps, learning rate, recipe, modelspec …), the key format or the atomic write. The
facts a file needs that the config alone does not hold (how many sets trained, edit or
text-to-image, the dtype the file is written in) are kept in every checkpoint's manifest
(:meth:`RunLora.manifest_facts`), so an export made later, on another machine, writes what
the run itself would have written at that step.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from lorastudio.config import Config
from lorastudio.training.lora import export_metadata, export_state_dict, save_lora_file
from lorastudio.training.plan import recipe_facts

#: The file's tensor dtype in a checkpoint manifest (``lora_dtype``): name → torch dtype.
FILE_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


@dataclass
class RunLora:
    config: Config
    #: The family id (``lorastudio.family``).
    family: str
    #: The resolved key format (``diffusers`` or ``comfyui``, never ``auto``).
    fmt: str
    #: How many sets the run trained on.
    sets: int
    #: An edit (paired) dataset, or text-to-image.
    edit: bool
    #: The training dtype: the file is written in it (float32 runs keep float32).
    dtype: torch.dtype = torch.float32
    #: The run averaged its weights (``train.ema_decay``): the header says which weights a file holds.
    ema: bool = False

    @property
    def alpha(self) -> float:
        return self.config.train.alpha or float(self.config.train.rank)

    def manifest_facts(self) -> dict[str, Any]:
        """What a checkpoint's manifest keeps so that :meth:`from_manifest` can write its file."""
        name = next(k for k, v in FILE_DTYPES.items() if v == self.dtype)
        return {"sets": self.sets, "edit": self.edit, "lora_dtype": name}

    @classmethod
    def from_manifest(cls, config: Config, manifest: dict[str, Any], fmt: str) -> RunLora:
        """The writer of a checkpoint's run (``fmt``: the resolved format to write in)."""
        return cls(config=config, family=manifest["family"], fmt=fmt, sets=int(manifest.get("sets", 0)),
                   edit=bool(manifest.get("edit", True)),
                   dtype=FILE_DTYPES.get(manifest.get("lora_dtype", "float32"), torch.float32),
                   ema=bool(manifest.get("ema_decay")))

    def metadata(self, step: int, weights: str = "raw") -> dict[str, str]:
        """The header of the file holding the weights of ``step`` (``weights``: ``raw`` or ``ema``)."""
        config, t = self.config, self.config.train
        meta = export_metadata(family=self.family, base_model=config.model.path.resolve().name, rank=t.rank,
                               alpha=self.alpha, steps=step, learning_rate=t.learning_rate, resolution=t.resolution,
                               sets=self.sets, trigger=config.dataset.trigger.strip(), fmt=self.fmt,
                               adapter=t.adapter, lokr_factor=t.lokr_factor, title=config.output.name,
                               edit=self.edit, model_dir=config.model.path, recipe=recipe_facts(config))
        return {**meta, "lorastudio.weights": weights} if self.ema else meta

    def write(self, path: Path, peft_state: dict[str, torch.Tensor], step: int, weights: str = "raw",
              transformer: torch.nn.Module | None = None) -> Path:
        """Write ``peft_state`` (peft's LoRA state dict) as the LoRA file ``path``, atomically.
        ``transformer``: the base model, needed only by a ``comfyui``-format DoRA (its row norms)."""
        t = self.config.train
        tensors = export_state_dict(peft_state, t.rank, self.alpha, self.family,
                                    dtype=self.dtype if self.dtype != torch.float32 else None, fmt=self.fmt,
                                    adapter=t.adapter, transformer=transformer)
        return save_lora_file(path, tensors, self.metadata(step, weights))

    def needs_base_weights(self) -> bool:
        """Whether :meth:`write` needs the base transformer (a ``comfyui``-format DoRA)."""
        return self.config.train.adapter == "dora" and self.fmt == "comfyui"
