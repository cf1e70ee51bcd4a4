"""The training configuration: one TOML file shared by the CLI, the worker and the GUI.

The GUI saves a project as exactly this file and the CLI trains from it, so there is one
schema and one validator. Validation happens before any model is loaded: a typo in a key
must cost the artist a second, not the minutes it takes to load a 12B transformer. Unknown
keys are errors (a misspelt ``learning_rte`` silently ignored would train with the default).

Pure Python: no Qt, no torch.
"""

from __future__ import annotations

import dataclasses
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lorastudio import catalog
from lorastudio.fileio import atomic_write_text

try:  # Python 3.11+
    import tomllib
except ModuleNotFoundError:  # pragma: no cover - Python 3.10
    import tomli as tomllib  # type: ignore[no-redef]

#: The guide's starting points ("Set steps: Start with 1,000"; "Start with 1e-4").
DEFAULT_STEPS = 1000
DEFAULT_LEARNING_RATE = 1e-4
DEFAULT_RANK = 16
#: The guide's typical learning-rate range; outside it we warn, we do not refuse.
TYPICAL_LEARNING_RATE = (1e-4, 5e-4)
#: The range for the demo's tiny model (``lorastudio demo``, recognized by its model folder):
#: a 1 MB model learns its edit in tens of steps only at a
#: far higher rate (the demo's 2e-2, ``training/demo.py``), so the demo's own choice is a
#: usual value for it, not a warning.
DEMO_LEARNING_RATES = (1e-2, 5e-2)

#: Names of the model families the trainer knows (``[model] family`` override).
KNOWN_FAMILIES = catalog.FAMILY_IDS
#: ``output.format``: "auto" (the family's default, see ``catalog.resolve_format``) or a key layout.
OUTPUT_FORMATS = (catalog.AUTO_FORMAT, *catalog.LORA_FORMATS)
MIXED_PRECISION = ("auto", "no", "bf16", "fp16")
#: ``train.quantization``: how the frozen base transformer's block weights are stored
#: (bitsandbytes: LLM.int8 / NF4); the LoRA itself always trains and saves in float.
QUANTIZATION = ("none", "int8", "int4")
#: ``train.optimizer``: AdamW, or bitsandbytes' 8-bit AdamW (optimizer states in 8 bits).
OPTIMIZERS = ("adamw", "adamw8bit")

# -- the training recipe (issue 15: timesteps, LR schedule, EMA, caption dropout, repeats, logging)
#: ``train.timesteps``: how each step's noise level σ is drawn (``training/timesteps.py``).
TIMESTEP_SAMPLERS = ("logit_normal", "uniform", "sigmoid", "shift")
#: ``train.lr_schedule``: diffusers' ``get_scheduler`` names, each after ``warmup_steps``.
LR_SCHEDULES = ("constant", "linear", "cosine")
#: ``train.log_with``: "" (no tracker) or an accelerate tracker.
LOG_WITH = ("", "tensorboard")
#: ``train.input_size``: "auto" (the family's measured best) or one of catalog.INPUT_SIZE_RULES.
INPUT_SIZES = (catalog.AUTO_INPUT_SIZE, *catalog.INPUT_SIZE_RULES)


class ConfigError(ValueError):
    """A config problem, phrased for the person who wrote the file (names the key)."""


@dataclass
class ModelConfig:
    #: A local diffusers folder; the family is read from its ``model_index.json``.
    path: Path
    #: Optional override of the detected family (one of ``KNOWN_FAMILIES``).
    family: str = ""


@dataclass
class DatasetConfig:
    path: Path
    #: Optional word added in front of every caption.
    trigger: str = ""
    #: Used where a set has no ``.txt``.
    default_caption: str = ""
    # -- recipe (issue 15) -------------------------------------------------------------
    #: Probability of training a step's set on the empty caption (no trigger either).
    caption_dropout: float = 0.0
    #: Per-set weight: ``{"set_a" = 3}`` shows set_a three times per epoch.
    repeats: dict[str, int] = field(default_factory=dict)
    #: Held-out sets (issue 14): never trained on; their validation loss picks the best checkpoint.
    validation: list[str] = field(default_factory=list)


@dataclass
class TrainConfig:
    steps: int = DEFAULT_STEPS
    learning_rate: float = DEFAULT_LEARNING_RATE
    rank: int = DEFAULT_RANK
    #: LoRA alpha; 0 means "same as rank" (scale 1.0), the usual default.
    alpha: float = 0.0
    seed: int = 42
    #: Training area in pixels: images are bucketed to about resolution² pixels.
    resolution: int = 512
    #: Preview images every N steps (0 = only at the end).
    sample_every: int = 250
    #: Checkpoint every N steps (0 = only when stopping and at the end).
    checkpoint_every: int = 250
    batch_size: int = 1
    warmup_steps: int = 0
    max_grad_norm: float = 1.0
    # -- memory savers (see lorastudio.memory_presets; lorastudio.estimate says what each saves) ----
    #: Recompute each transformer block's activations in the backward pass instead of
    #: keeping them: activation memory drops from ~all blocks' to ~one block's, for about
    #: a third more compute per step. Applies to every family's transformer.
    gradient_checkpointing: bool = False
    #: "none" | "int8" | "int4": store the frozen base transformer's block weights in 8 or 4
    #: bits (bitsandbytes LLM.int8 / NF4). Halves / quarters the biggest memory item (a 12B
    #: FLUX.1 transformer: 24 GB in bf16 → ~12 / ~7 GB). The LoRA layers on top train and
    #: are saved in float as usual, in the same key format.
    quantization: str = "none"
    #: Keep the frozen block weights in CPU RAM and copy each block to the GPU only while it
    #: runs (forward, and again in the backward recompute). Turns gradient checkpointing on.
    #: Fits a model far bigger than the card, at the cost of PCIe transfers every step.
    #: Not combined with ``quantization`` (quantized weights are small enough to stay).
    cpu_offload: bool = False
    #: "adamw" | "adamw8bit" (bitsandbytes' AdamW8bit: the two optimizer states in 8 bits,
    #: 16 → 10 bytes per LoRA parameter). Falls back to AdamW, with a warning event, where
    #: bitsandbytes cannot run.
    optimizer: str = "adamw"
    #: "auto" = bf16 on a GPU that supports it, fp32 on the CPU.
    mixed_precision: str = "auto"
    # -- adapter type (peft) -----------------------------------------------------------
    #: "lora" | "dora" | "lokr" (see ADAPTERS; README's config reference says who uses which).
    adapter: str = "lora"
    #: LoKr only: the Kronecker factor size (peft's/LyCORIS' ``decompose_factor``); -1 splits
    #: each dimension as close to its square root as it can.
    lokr_factor: int = -1
    #: Denoising steps used for sample previews.
    sample_steps: int = 8
    #: How many sets get a preview at each sampling point.
    sample_sets: int = 2
    # -- recipe (issue 15; README "Training recipe") ----------------------------------
    #: σ sampler: "logit_normal" (mean, scale), "uniform", "sigmoid" (scale), "shift".
    timesteps: str = "logit_normal"
    #: logit_normal's mean (of the normal before the sigmoid).
    timestep_mean: float = 0.0
    #: logit_normal / sigmoid / shift: the normal's scale before the sigmoid.
    timestep_scale: float = 1.0
    #: shift only: 0 = μ from the image sequence length as the family's scheduler computes
    #: it; X > 0 = a fixed shift σ' = Xσ / (1 + (X - 1)σ).
    timestep_shift: float = 0.0
    #: "constant" | "linear" | "cosine" (decay to 0 at the last step), after warmup_steps.
    lr_schedule: str = "constant"
    #: EMA of the LoRA weights (0 = off, else in (0, 1)); previews and the LoRA use it.
    ema_decay: float = 0.0
    #: "" or "tensorboard": log loss, learning rate and previews with accelerate's tracker.
    log_with: str = ""
    # -- held-out validation (issue 14; README "Held-out validation") -------------------
    #: Validation loss every N steps; unset = with the previews (sample_every); 0 = only at checkpoints.
    validate_every: int | None = None
    #: Stop (as Stop does) after K validations without a new best; 0 = off.
    early_stop: int = 0
    #: Edit families: the size input images are trained at (and previews show them at):
    #: "target" (the target's bucket), "pipeline" (what the family's pipeline uses at
    #: inference: about 1 MP) or "auto" (the family's default; README "Input image size").
    input_size: str = catalog.AUTO_INPUT_SIZE


@dataclass
class OutputConfig:
    dir: Path
    name: str = "my_lora"
    #: ``auto`` (default: per family, the layout that loads fully both in diffusers and in
    #: ComfyUI), ``diffusers`` or ``comfyui`` key names. A saved explicit choice is kept.
    format: str = catalog.AUTO_FORMAT

    @property
    def lora_path(self) -> Path:
        return self.dir / f"{self.name}.safetensors"

    @property
    def raw_lora_path(self) -> Path:
        """With ``train.ema_decay``: the last step's (not averaged) weights, beside the LoRA."""
        return self.dir / f"{self.name}.raw.safetensors"

    @property
    def best_lora_path(self) -> Path:  # held-out validation: the best checkpoint's LoRA
        return self.dir / f"{self.name}.best.safetensors"

    @property
    def run_dir(self) -> Path:
        """Everything else a run writes (log, samples, checkpoints, caches) lives here."""
        return self.dir / f"{self.name}.run"


@dataclass
class CaptionConfig:
    """``lorastudio caption PROJECT.toml`` (and the app's "Draft captions…"): drafting captions
    with a local vision-language model (see ``lorastudio.drafting``)."""

    #: A Qwen2.5-VL / Qwen3-VL model folder or a Qwen-Image-Edit(-Plus) folder; unset: ``model.path``.
    model: Path | None = None
    #: What the model is asked; empty: the default for the dataset's mode (edit or description).
    instruction: str = ""
    #: New tokens a draft may take.
    max_tokens: int = 80
    #: "none" | "int8" | "int4": the model's linear layers in 8 or 4 bits (bitsandbytes).
    quantization: str = "none"


@dataclass
class Config:
    model: ModelConfig
    dataset: DatasetConfig
    train: TrainConfig = field(default_factory=TrainConfig)
    output: OutputConfig = field(default_factory=lambda: OutputConfig(dir=Path("output")))
    caption: CaptionConfig = field(default_factory=CaptionConfig)
    #: Where the config was read from (relative paths were resolved against its folder).
    source: Path | None = None

    def to_toml_dict(self, relative_to: Path | None = None) -> dict[str, Any]:
        """The TOML structure of this config; paths relative to ``relative_to`` where possible."""

        def portable(p: Path) -> str:
            if relative_to is not None:
                try:
                    return Path(os.path.relpath(p, relative_to)).as_posix()
                except ValueError:  # another drive on Windows
                    pass
            return str(p)

        def section(obj: Any) -> dict[str, Any]:
            out: dict[str, Any] = {}
            for f in dataclasses.fields(obj):
                value = getattr(obj, f.name)
                if value is None:  # TOML has no null: an unset optional key is left out
                    continue
                out[f.name] = portable(value) if isinstance(value, Path) else value
            return out

        tables = {
            "model": section(self.model),
            "dataset": section(self.dataset),
            "train": section(self.train),
            "output": section(self.output),
        }
        if self.caption != CaptionConfig():  # only projects that use it carry the table
            tables["caption"] = section(self.caption)
        return tables


_SECTIONS: dict[str, type] = {
    "model": ModelConfig,
    "dataset": DatasetConfig,
    "train": TrainConfig,
    "output": OutputConfig,
    "caption": CaptionConfig,
}
_REQUIRED = {("model", "path"), ("dataset", "path")}


def _check_type(key: str, value: Any, annotation: str) -> Any:
    """Coerce ``value`` to the annotated type or raise a ConfigError naming ``key``."""
    kind = annotation.replace(" ", "")
    if kind in ("Path", "Path|None"):
        if not isinstance(value, str) or not value.strip():
            raise ConfigError(f"{key}: expected a path (a non-empty string), got {value!r}")
        return Path(value)
    if kind == "str":
        if not isinstance(value, str):
            raise ConfigError(f"{key}: expected text in quotes, got {value!r}")
        return value
    if kind == "bool":
        if not isinstance(value, bool):
            raise ConfigError(f"{key}: expected true or false, got {value!r}")
        return value
    if kind in ("int", "int|None"):
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{key}: expected a whole number, got {value!r}")
        return value
    if kind == "list[str]":
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise ConfigError(f"{key}: expected a list of set names (e.g. [\"set_a\", \"set_b\"]), got {value!r}")
        return list(value)
    if kind == "dict[str,int]":
        if not isinstance(value, dict) or not all(
                isinstance(k, str) and isinstance(v, int) and not isinstance(v, bool) for k, v in value.items()):
            raise ConfigError(f"{key}: expected a table of set names to whole numbers "
                              f"(e.g. {{\"set_a\" = 3}}), got {value!r}")
        return dict(value)
    if kind == "float":
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{key}: expected a number, got {value!r}")
        value = float(value)
        if not math.isfinite(value):
            raise ConfigError(f"{key}: expected a finite number, got {value!r}")
        return value
    raise AssertionError(f"unhandled annotation {annotation!r}")  # pragma: no cover


def config_from_dict(data: dict[str, Any], base_dir: Path, source: Path | None = None) -> Config:
    """Build and validate a Config from parsed TOML; relative paths resolve against ``base_dir``."""
    if not isinstance(data, dict):
        raise ConfigError("the config must be a TOML table")
    unknown_sections = sorted(set(data) - set(_SECTIONS))
    if unknown_sections:
        raise ConfigError(f"unknown section [{unknown_sections[0]}]; expected "
                          f"{', '.join('[' + s + ']' for s in _SECTIONS)}")
    for section, key in sorted(_REQUIRED):
        if key not in data.get(section, {}):
            raise ConfigError(f"{section}.{key}: required but missing")

    sections: dict[str, Any] = {}
    for section, cls in _SECTIONS.items():
        raw = data.get(section, {})
        if not isinstance(raw, dict):
            raise ConfigError(f"[{section}] must be a table")
        fields = {f.name: f for f in dataclasses.fields(cls)}
        kwargs: dict[str, Any] = {}
        for key, value in raw.items():
            if key not in fields:
                raise ConfigError(f"{section}.{key}: unknown key; known keys in [{section}]: "
                                  f"{', '.join(fields)}")
            coerced = _check_type(f"{section}.{key}", value, str(fields[key].type))
            if isinstance(coerced, Path) and not coerced.is_absolute():
                coerced = (base_dir / coerced)
            kwargs[key] = coerced
        if section == "output" and "dir" not in kwargs:
            kwargs["dir"] = base_dir / "output"
        sections[section] = cls(**kwargs)

    config = Config(**sections, source=source)
    from lorastudio.config_rules import validate  # it reads this module's names

    validate(config)
    return config


def load_config(path: str | os.PathLike[str], check_paths: bool = True) -> Config:
    """Read and validate a config file. With ``check_paths`` the dataset and model must exist."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise ConfigError(f"{path}: config file not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read the config ({exc})") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML ({exc})") from None
    config = config_from_dict(data, base_dir=path.resolve().parent, source=path)
    if check_paths:
        if not config.dataset.path.is_dir():
            raise ConfigError(f"dataset.path: folder not found: {config.dataset.path}")
        if not config.model.path.is_dir():
            raise ConfigError(f"model.path: folder not found: {config.model.path} "
                              "(a local diffusers model folder with model_index.json)")
    return config


def save_config(config: Config, path: str | os.PathLike[str], relative: bool = True) -> None:
    """Write ``config`` as TOML atomically, with paths relative to the file where possible
    (``relative=False``: absolute, as a run folder's own copy keeps them)."""
    import tomli_w

    path = Path(path)
    text = tomli_w.dumps(config.to_toml_dict(relative_to=path.resolve().parent if relative else None))
    atomic_write_text(path, text)
