"""The "Fit to my GPU" presets: a card size, the resolution to train at on it, and the memory
savers (``train`` keys) that get a 12B model there. Torch-free: the panel and the estimate read them."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class MemoryPreset:
    """A "Fit to my GPU" choice: a card size and the resolution to train at on it.

    Which memory savers a preset needs depends on the model (a 12B FLUX.1 and a 20B
    Qwen-Image fit a 16 GB card differently), so the option set is worked out from the model
    folder by ``lorastudio.estimate.fit_options``; ``options`` here is the fallback used when
    no model folder is chosen yet (sized for FLUX.1's 12B transformer, an input image at the
    target's size; Kontext's default ~1 MP input needs 4-bit on the 16 GB card, which the fit
    works out once the model is chosen).
    """

    id: str
    label: str
    vram_gb: float
    resolution: int
    options: tuple[tuple[str, Any], ...]

    def option_dict(self) -> dict[str, Any]:
        return dict(self.options)


#: The presets the training panel offers, largest card first.
MEMORY_PRESETS: tuple[MemoryPreset, ...] = (
    MemoryPreset("max-speed", "48 GB+ · 1024 px (max speed)", 48.0, 1024,
                 (("gradient_checkpointing", True), ("quantization", "none"), ("cpu_offload", False),
                  ("optimizer", "adamw"))),
    MemoryPreset("24gb-1024", "24 GB · 1024 px", 24.0, 1024,
                 (("gradient_checkpointing", True), ("quantization", "int8"), ("cpu_offload", False),
                  ("optimizer", "adamw8bit"))),
    MemoryPreset("16gb-512", "16 GB · 512 px", 16.0, 512,
                 (("gradient_checkpointing", True), ("quantization", "int8"), ("cpu_offload", False),
                  ("optimizer", "adamw8bit"))),
    MemoryPreset("12gb-512", "12 GB · 512 px", 12.0, 512,
                 (("gradient_checkpointing", True), ("quantization", "int4"), ("cpu_offload", False),
                  ("optimizer", "adamw8bit"))),
)
#: The ``train`` keys a memory preset sets.
MEMORY_KEYS = ("gradient_checkpointing", "quantization", "cpu_offload", "optimizer")


def memory_preset(preset_id: str) -> MemoryPreset:
    for preset in MEMORY_PRESETS:
        if preset.id == preset_id:
            return preset
    raise KeyError(f"unknown memory preset {preset_id!r}; known: {', '.join(p.id for p in MEMORY_PRESETS)}")
