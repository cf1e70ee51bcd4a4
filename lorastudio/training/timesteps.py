"""How each step's noise level σ is drawn (``train.timesteps``).

Flow matching trains at σ ∈ (0, 1) (0 = clean, 1 = pure noise); where the samples fall
decides which part of the denoising the LoRA learns best. The samplers, as the trainers
people compare us with name them:

- ``logit_normal`` (default; SD3 paper, diffusers' FLUX DreamBooth script):
  σ = sigmoid(mean + scale·u), u ~ N(0, 1). Defaults mean 0, scale 1.
- ``uniform``: σ ~ U(0, 1) (musubi-tuner's ``uniform``).
- ``sigmoid``: σ = sigmoid(scale·u) (musubi-tuner / kohya's ``sigmoid`` with ``sigmoid_scale``).
- ``shift``: σ = sigmoid(scale·u), then the model scheduler's own resolution-dependent time
  shift, as musubi-tuner's ``flux_shift`` (FLUX.1/Kontext) and ``qwen_shift`` (Qwen-Image)
  do: μ = diffusers' ``calculate_shift`` from the target's image sequence length and the
  ``base_shift``/``max_shift``/``base_image_seq_len``/``max_image_seq_len`` of the model
  folder's ``scheduler/scheduler_config.json`` (FLUX.1: 0.5…1.15 over 256…4096 tokens,
  Qwen-Image: 0.5…0.9 over 256…8192), then σ' = ``scheduler.time_shift(μ, 1, σ)``. FLUX.2's
  pipelines compute μ from the step count too (``compute_empirical_mu``): there we use
  their default of :data:`FLUX2_INFERENCE_STEPS` steps. ``train.timestep_shift = X`` replaces
  the computed shift by a fixed one: σ' = Xσ / (1 + (X - 1)σ), the scheduler's static shift
  (musubi-tuner's ``shift`` with ``discrete_flow_shift``). A scheduler that does not shift by
  resolution (``use_dynamic_shifting`` false: Z-Image-Turbo's, shift 3) is followed as it is:
  its own fixed ``shift``, as the pipeline's ``set_timesteps`` applies it.

Every sampler draws from the step's generator only after the noise (``batches.py``), so
the default draws exactly what earlier versions drew.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import torch

#: Families whose pipelines compute μ with ``compute_empirical_mu(seq_len, num_steps)``.
FLUX2_FAMILIES = ("flux2", "flux2-klein")
#: Flux2Pipeline's and Flux2KleinPipeline's default ``num_inference_steps``.
FLUX2_INFERENCE_STEPS = 50
#: Pixels per side of one transformer token in every family: VAE factor 8 × 2×2 patches.
TOKEN_PIXELS = 16


def image_seq_len(bucket: tuple[int, int]) -> int:
    """Image tokens of a target of ``bucket`` = (width, height) pixels (what the pipelines
    pass to ``calculate_shift`` / ``compute_empirical_mu``)."""
    width, height = bucket
    return (width // TOKEN_PIXELS) * (height // TOKEN_PIXELS)


class SchedulerConfigError(ValueError):
    """The model folder has no readable scheduler config (needed by ``shift``)."""


def read_scheduler(model_dir: Path):
    """The model folder's flow-matching scheduler (diffusers reads scheduler_config.json)."""
    from diffusers import FlowMatchEulerDiscreteScheduler

    path = Path(model_dir) / "scheduler" / "scheduler_config.json"
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise SchedulerConfigError(f"{path}: cannot read the scheduler config ({exc}); "
                                   "train.timesteps = \"shift\" needs it (or set train.timestep_shift)") from None
    return FlowMatchEulerDiscreteScheduler.from_config(config)


class TimestepSampler:
    """σ for a batch from a step's generator: ``sigmas(generator, batch, seq_len)``."""

    def __init__(self, kind: str = "logit_normal", mean: float = 0.0, scale: float = 1.0, shift: float = 0.0,
                 family: str = "", model_dir: Path | None = None) -> None:
        self.kind, self.mean, self.scale, self.fixed_shift, self.family = kind, mean, scale, shift, family
        self.scheduler = None
        if kind == "shift" and not shift:
            assert model_dir is not None, "the computed shift needs the model folder"
            self.scheduler = read_scheduler(model_dir)
        self._mu: dict[int, float] = {}

    @classmethod
    def from_config(cls, train_config, family: str, model_dir: Path) -> "TimestepSampler":
        t = train_config
        return cls(t.timesteps, t.timestep_mean, t.timestep_scale, t.timestep_shift, family, model_dir)

    @property
    def is_default(self) -> bool:
        return self.kind == "logit_normal" and self.mean == 0.0 and self.scale == 1.0

    def mu(self, seq_len: int) -> float:
        """μ of the scheduler's time shift for ``seq_len`` image tokens, as the family's pipeline computes it."""
        if seq_len not in self._mu:
            c = self.scheduler.config
            if self.family in FLUX2_FAMILIES:
                from diffusers.pipelines.flux2.pipeline_flux2 import compute_empirical_mu

                self._mu[seq_len] = compute_empirical_mu(seq_len, FLUX2_INFERENCE_STEPS)
            else:
                from diffusers.pipelines.flux.pipeline_flux import calculate_shift

                self._mu[seq_len] = calculate_shift(seq_len, c.base_image_seq_len, c.max_image_seq_len,
                                                    c.base_shift, c.max_shift)
        return self._mu[seq_len]

    def sigmas(self, generator: torch.Generator, batch: int, seq_len: int) -> torch.Tensor:
        if self.is_default:
            return torch.sigmoid(torch.randn(batch, generator=generator))  # today's formula, bit for bit
        if self.kind == "uniform":
            return torch.rand(batch, generator=generator)
        u = torch.randn(batch, generator=generator)
        if self.kind == "logit_normal":
            return torch.sigmoid(self.mean + self.scale * u)
        sigmas = torch.sigmoid(self.scale * u)
        if self.kind == "sigmoid":
            return sigmas
        x = self.fixed_shift or self.static_shift
        if x:
            return x * sigmas / (1 + (x - 1) * sigmas)
        return self.scheduler.time_shift(self.mu(seq_len), 1.0, sigmas)

    @property
    def static_shift(self) -> float:
        """The scheduler's own fixed shift when it does not shift by resolution
        (``use_dynamic_shifting`` false, as Z-Image-Turbo's: shift 3 at every size), else 0."""
        if self.scheduler is None or self.scheduler.config.use_dynamic_shifting:
            return 0.0
        return float(self.scheduler.config.shift)

    def describe(self, bucket: tuple[int, int] | None = None) -> str:
        """One line for the dry-run plan and the metadata."""
        if self.kind == "logit_normal":
            return f"logit_normal (mean {self.mean:g}, scale {self.scale:g})"
        if self.kind == "sigmoid":
            return f"sigmoid (scale {self.scale:g})"
        if self.kind == "uniform":
            return "uniform"
        if self.fixed_shift:
            return f"shift (scale {self.scale:g}, fixed shift {self.fixed_shift:g})"
        if self.static_shift:
            return f"shift (scale {self.scale:g}, the scheduler's fixed shift {self.static_shift:g})"
        text = f"shift (scale {self.scale:g}, μ from the resolution"
        if bucket is not None:
            mu = self.mu(image_seq_len(bucket))
            text += f"; {bucket[0]}x{bucket[1]}: μ {mu:.3f}, shift e^μ {math.exp(mu):.2f}"
        return text + ")"
