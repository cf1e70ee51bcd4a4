"""EMA of the LoRA weights (``train.ema_decay``), kept on the CPU.

An exponential moving average of the weights smooths out the last steps' noise; ai-toolkit,
SimpleTuner and OneTrainer all offer it. The average is diffusers' ``EMAModel`` (the one its
training scripts use), whose decay warms up as ``min(decay, (1 + n) / (10 + n))`` after n
updates, so the first steps do not freeze the average at the random initialisation. Its
shadow weights live on the CPU: the LoRA's parameters are copied there once per step (they
are a few MB), so EMA costs no GPU memory.

When on, previews are drawn with the averaged weights and the LoRA file holds them; the raw
(last-step) weights are written beside it as ``NAME.raw.safetensors``.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Any, Iterator

import torch


def _cpu_leaf(p: torch.Tensor) -> torch.Tensor:
    """``p`` on the CPU, marked trainable: ``EMAModel.step`` averages only parameters that
    require grad (and copies the others)."""
    return p.detach().to("cpu").requires_grad_(True)


class LoraEMA:
    def __init__(self, params: list[torch.nn.Parameter], decay: float) -> None:
        from diffusers.training_utils import EMAModel

        self.params = params
        self.model = EMAModel([p.detach().to("cpu", copy=True) for p in params], decay=decay)

    def step(self) -> None:
        self.model.step([_cpu_leaf(p) for p in self.params])

    @contextmanager
    def applied(self) -> Iterator[None]:
        """The averaged weights in the model for the block's duration (previews, export)."""
        self.model.store(self.params)
        self.model.copy_to(self.params)
        try:
            yield
        finally:
            self.model.restore(self.params)

    # -- checkpoints: the shadow weights as tensors, the update count as a number -----------

    def tensors(self) -> dict[str, torch.Tensor]:
        return {f"ema.{i}": s.detach().contiguous() for i, s in enumerate(self.model.shadow_params)}

    def info(self) -> dict[str, Any]:
        return {"ema_updates": self.model.optimization_step}

    def load(self, tensors: dict[str, torch.Tensor], manifest: dict[str, Any]) -> None:
        shadow = [tensors[f"ema.{i}"] for i in range(len(self.params))]
        for s, p in zip(shadow, self.params):
            if s.shape != p.shape:
                raise RuntimeError(f"the checkpoint's EMA weights do not match the LoRA ({tuple(s.shape)} vs "
                                   f"{tuple(p.shape)})")
        self.model.shadow_params = [s.to("cpu", torch.float32).clone() for s in shadow]
        self.model.optimization_step = int(manifest.get("ema_updates", 0))
