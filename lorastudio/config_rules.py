"""What a config's values may be: the checks ``load_config`` runs before anything else, so a
bad value is a one-line error naming its key before a dataset is scanned or a model loads.

Whether a named set exists (``dataset.repeats``, ``dataset.validation``) is checked against
the dataset in ``training/plan.py`` and ``dataset/held_out.py``; that a folder holds a model,
in ``model_folder.py``. Pure Python (no Qt, no torch).
"""

from __future__ import annotations

from lorastudio.adapter_rules import adapter_format_problem, adapter_key_problem
from lorastudio.config import (INPUT_SIZES, KNOWN_FAMILIES, LOG_WITH, LR_SCHEDULES, MIXED_PRECISION, OPTIMIZERS,
                               OUTPUT_FORMATS, QUANTIZATION, TIMESTEP_SAMPLERS, Config, ConfigError)


def validate(config: Config) -> None:
    """Every value check that needs no dataset and no model folder (ConfigError naming the key)."""
    t = config.train
    positive = {"steps": t.steps, "rank": t.rank, "resolution": t.resolution, "batch_size": t.batch_size,
                "sample_steps": t.sample_steps}
    for name, value in positive.items():
        if value <= 0:
            raise ConfigError(f"train.{name}: must be greater than 0, got {value}")
    for name in ("sample_every", "checkpoint_every", "warmup_steps", "sample_sets", "validate_every", "early_stop"):
        if (getattr(t, name) or 0) < 0:
            raise ConfigError(f"train.{name}: must be 0 or more, got {getattr(t, name)}")
    if not (0 < t.learning_rate < 1):
        raise ConfigError(f"train.learning_rate: must be between 0 and 1 (typical 1e-4 … 5e-4), got {t.learning_rate}")
    if t.alpha < 0:
        raise ConfigError(f"train.alpha: must be 0 (= rank) or positive, got {t.alpha}")
    if t.max_grad_norm < 0:
        raise ConfigError(f"train.max_grad_norm: must be 0 (off) or positive, got {t.max_grad_norm}")
    if t.resolution % 16:
        raise ConfigError(f"train.resolution: must be a multiple of 16, got {t.resolution}")
    if t.mixed_precision not in MIXED_PRECISION:
        raise ConfigError(f"train.mixed_precision: must be one of {', '.join(MIXED_PRECISION)}, got {t.mixed_precision!r}")
    if t.quantization not in QUANTIZATION:
        raise ConfigError(f"train.quantization: must be one of {', '.join(QUANTIZATION)}, got {t.quantization!r}")
    if t.optimizer not in OPTIMIZERS:
        raise ConfigError(f"train.optimizer: must be one of {', '.join(OPTIMIZERS)}, got {t.optimizer!r}")
    if t.cpu_offload and t.quantization != "none":
        raise ConfigError(f"train.cpu_offload: cannot be combined with train.quantization = {t.quantization!r}; "
                          "quantized weights stay on the GPU (they are small): use one or the other")
    _validate_recipe(config)
    problem = adapter_key_problem(t.adapter, t.lokr_factor, t.quantization)
    if problem:
        raise ConfigError(problem)
    if config.model.family:
        check_adapter_format(t.adapter, config.output.format, config.model.family)
    if config.model.family and config.model.family not in KNOWN_FAMILIES:
        raise ConfigError(f"model.family: unknown family {config.model.family!r}; "
                          f"known: {', '.join(KNOWN_FAMILIES)} (or leave it empty to detect)")
    if config.output.format not in OUTPUT_FORMATS:
        raise ConfigError(f"output.format: must be one of {', '.join(OUTPUT_FORMATS)}, got {config.output.format!r}")
    c = config.caption
    if c.max_tokens <= 0:
        raise ConfigError(f"caption.max_tokens: must be greater than 0, got {c.max_tokens}")
    if c.quantization not in QUANTIZATION:
        raise ConfigError(f"caption.quantization: must be one of {', '.join(QUANTIZATION)}, got {c.quantization!r}")
    name = config.output.name
    # The name becomes a file name inside output.dir: it may not point anywhere else.
    if (not name.strip() or name in (".", "..") or any(c in name for c in '/\\:*?"<>|\0')
            or name != name.strip() or name.startswith(".")):
        raise ConfigError(f"output.name: {name!r} is not a plain file name "
                          "(no slashes, no leading dot, none of : * ? \" < > |)")


def _validate_recipe(config: Config) -> None:
    """The recipe keys (issue 15) and held-out validation (issue 14). Whether a repeated or
    held-out set exists is checked against the dataset in ``training/plan.py`` (still before
    any model loads)."""
    t, d = config.train, config.dataset
    if t.timesteps not in TIMESTEP_SAMPLERS:
        raise ConfigError(f"train.timesteps: must be one of {', '.join(TIMESTEP_SAMPLERS)}, got {t.timesteps!r}")
    if t.input_size not in INPUT_SIZES:
        raise ConfigError(f"train.input_size: must be one of {', '.join(INPUT_SIZES)}, got {t.input_size!r}")
    if t.timestep_scale <= 0:
        raise ConfigError(f"train.timestep_scale: must be greater than 0, got {t.timestep_scale}")
    if t.timestep_shift < 0:
        raise ConfigError(f"train.timestep_shift: must be 0 (computed from the resolution) or positive, "
                          f"got {t.timestep_shift}")
    if t.timestep_shift and t.timesteps != "shift":
        raise ConfigError(f"train.timestep_shift: only used with train.timesteps = \"shift\" "
                          f"(it is {t.timesteps!r}); remove it or set train.timesteps = \"shift\"")
    if t.lr_schedule not in LR_SCHEDULES:
        raise ConfigError(f"train.lr_schedule: must be one of {', '.join(LR_SCHEDULES)}, got {t.lr_schedule!r}")
    if not (0 <= t.ema_decay < 1):
        raise ConfigError(f"train.ema_decay: must be 0 (off) or at least 0 and below 1 (typical 0.99 … 0.9999), "
                          f"got {t.ema_decay}")
    if t.log_with not in LOG_WITH:
        raise ConfigError(f"train.log_with: must be \"\" (off) or \"tensorboard\", got {t.log_with!r}")
    if not (0 <= d.caption_dropout <= 1):
        raise ConfigError(f"dataset.caption_dropout: must be between 0 and 1, got {d.caption_dropout}")
    for name, count in d.repeats.items():
        if count < 1:
            raise ConfigError(f"dataset.repeats: set {name!r} must repeat 1 or more times, got {count}")
    both = sorted(set(d.repeats) & set(d.validation))
    if both:
        raise ConfigError(f"dataset.repeats: {', '.join(both)} held out for validation (dataset.validation) "
                          "and never trained on, so repeats mean nothing there; remove one or the other")


def check_adapter_format(adapter: str, fmt: str, family: str) -> None:
    """ConfigError where no file could carry the adapter so that ComfyUI applies it fully."""
    problem = adapter_format_problem(adapter, fmt, family)
    if problem:
        raise ConfigError(problem)
