"""The Train tab's settings as plain values, and their mapping to and from a ``Config``.

The form widget only moves ``FormValues`` in and out of its fields; what a value means for
the config (parsing, the field a bad value is reported under, the memory savers' keys)
is here, without Qt.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from lorastudio import catalog
from lorastudio.config import Config, ConfigError
from lorastudio.project import validate, with_changes
from lorastudio.ui.learning_rate import format_lr, parse_lr


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
        output_dir=str(config.output.dir), output_name=config.output.name, output_format=config.output.format)


def config_from_values(values: FormValues, base: Config) -> Config:
    """``base`` with the form's values, validated (raises ConfigError naming the field)."""
    lr = parse_lr(values.learning_rate)
    if lr is None:
        raise ConfigError(f"train.learning_rate: “{values.learning_rate}” is not a number (e.g. 1e-4)")
    rank = whole_number(values.rank, "train.rank")
    resolution = whole_number(values.resolution, "train.resolution")
    if not values.output_dir:
        raise ConfigError("output.dir: choose an output folder")
    config = with_changes(
        base,
        model={"path": Path(values.model) if values.model else Path("")},
        dataset={"trigger": values.trigger.strip(), "default_caption": values.default_caption.strip()},
        train={"steps": values.steps, "learning_rate": lr, "rank": rank, "resolution": resolution,
               "seed": values.seed, "sample_every": values.sample_every,
               "checkpoint_every": values.checkpoint_every, **values.memory_values()},
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
