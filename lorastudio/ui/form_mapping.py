"""The Train tab's settings as plain values, and their mapping to and from a ``Config``.

The form widget only moves ``FormValues`` in and out of its fields; what a value means for
the config (parsing, the field a bad value is reported under, the memory savers' keys)
is here, without Qt.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from lorastudio import catalog
from lorastudio.config import Config, ConfigError
from lorastudio.project import validate, with_changes
from lorastudio.ui.learning_rate import format_lr, parse_lr

#: The ``train`` keys of the Advanced section (issue 15's recipe, issue 14's validation and input size).
RECIPE_TRAIN_KEYS = ("timesteps", "timestep_mean", "timestep_scale", "timestep_shift", "lr_schedule",
                     "warmup_steps", "ema_decay", "log_with", "validate_every", "early_stop", "input_size")


@dataclass
class FormValues:
    """What the fields hold; the combo boxes that can be typed into hold text."""

    model: str
    steps: int
    learning_rate: str
    rank: str
    resolution: str
    seed: int
    sample_every: int
    checkpoint_every: int
    gradient_checkpointing: bool
    quantization: str
    cpu_offload: bool
    adam8: bool
    trigger: str
    default_caption: str
    output_dir: str
    output_name: str
    output_format: str
    # -- recipe (issue 15): the Advanced section's keys (ui/advanced_section.py) ----------
    #: ``train`` keys (advanced_section.TRAIN_KEYS) plus ``caption_dropout`` (a ``dataset``
    #: key); empty = leave the base config's values.
    recipe: dict = field(default_factory=dict)
    adapter: str = "lora"
    lokr_factor: int = -1

    @property
    def input_size(self) -> str:
        """``train.input_size`` as the Advanced section holds it (what the estimate counts)."""
        return self.recipe.get("input_size") or catalog.AUTO_INPUT_SIZE

    def memory_values(self) -> dict:
        """The memory savers as ``train`` keys."""
        return {"gradient_checkpointing": self.gradient_checkpointing, "quantization": self.quantization or "none",
                "cpu_offload": self.cpu_offload, "optimizer": "adamw8bit" if self.adam8 else "adamw"}


def values_from_config(config: Config) -> FormValues:
    t = config.train
    model = str(config.model.path)
    return FormValues(
        model="" if model in ("", ".") else model, steps=t.steps, learning_rate=format_lr(t.learning_rate),
        rank=str(t.rank), resolution=str(t.resolution), seed=t.seed, sample_every=t.sample_every,
        checkpoint_every=t.checkpoint_every, gradient_checkpointing=t.gradient_checkpointing,
        quantization=t.quantization, cpu_offload=t.cpu_offload, adam8=t.optimizer == "adamw8bit",
        trigger=config.dataset.trigger, default_caption=config.dataset.default_caption,
        output_dir=str(config.output.dir), output_name=config.output.name, output_format=config.output.format,
        recipe=recipe_values(config), adapter=t.adapter, lokr_factor=t.lokr_factor)


def recipe_values(config: Config) -> dict:
    """The Advanced section's values from a config."""
    values = {key: getattr(config.train, key) for key in RECIPE_TRAIN_KEYS}
    return {**values, "caption_dropout": config.dataset.caption_dropout}


def _recipe_changes(recipe: dict) -> tuple[dict, dict]:
    """(train changes, dataset changes) of the Advanced section's values. The fixed shift
    applies to the resolution-shift sampler only: with another sampler it is reset to 0
    rather than kept as an error the artist cannot see in the collapsed section."""
    train = {k: v for k, v in recipe.items() if k in RECIPE_TRAIN_KEYS}
    if train and train.get("timesteps") != "shift":
        train["timestep_shift"] = 0.0
    dataset = {"caption_dropout": recipe["caption_dropout"]} if "caption_dropout" in recipe else {}
    return train, dataset


def config_from_values(values: FormValues, base: Config) -> Config:
    """``base`` with the form's values, validated (raises ConfigError naming the field)."""
    lr = parse_lr(values.learning_rate)
    if lr is None:
        raise ConfigError(f"train.learning_rate: “{values.learning_rate}” is not a number (e.g. 1e-4)")
    rank = whole_number(values.rank, "train.rank")
    resolution = whole_number(values.resolution, "train.resolution")
    if not values.output_dir:
        raise ConfigError("output.dir: choose an output folder")
    recipe_train, recipe_dataset = _recipe_changes(values.recipe)
    config = with_changes(
        base,
        model={"path": Path(values.model) if values.model else Path("")},
        dataset={"trigger": values.trigger.strip(), "default_caption": values.default_caption.strip(),
                 **recipe_dataset},
        train={"steps": values.steps, "learning_rate": lr, "rank": rank, "resolution": resolution,
               "seed": values.seed, "sample_every": values.sample_every,
               "checkpoint_every": values.checkpoint_every, **values.memory_values(), **recipe_train,
               "adapter": values.adapter, "lokr_factor": values.lokr_factor},
        output={"dir": Path(values.output_dir).expanduser(), "name": values.output_name.strip(),
                "format": values.output_format or catalog.AUTO_FORMAT},
    )
    return validate(config)


def whole_number(text: str, key: str) -> int:
    try:
        return int(text.strip().replace(",", ""))
    except ValueError:
        raise ConfigError(f"{key}: “{text}” is not a whole number") from None


def whole_number_or(text: str, default: int) -> int:
    """A positive whole number, or ``default`` (for an estimate while the field is being typed)."""
    try:
        value = int(text.strip().replace(",", ""))
    except ValueError:
        return default
    return value if value > 0 else default
