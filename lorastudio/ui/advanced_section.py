"""The Train tab's "Advanced" section: the training recipe (issue 15), collapsed by default.

Timestep sampling, the learning-rate schedule and warmup, EMA, caption dropout, logging,
held-out validation (issue 14: how often, and the optional early stop) and the edit models'
input-image size (``train.input_size``):
the choices experienced users of ai-toolkit, musubi-tuner, OneTrainer and SimpleTuner
expect, each with a one-line explanation under it. The values are ``train``/``dataset`` keys
as they are (``form_mapping`` carries them into the config); the defaults are today's recipe.
"""

from __future__ import annotations

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (QComboBox, QDoubleSpinBox, QFormLayout, QGroupBox, QLabel, QSpinBox, QToolButton,
                               QVBoxLayout, QWidget)

from lorastudio import catalog
from lorastudio.config import INPUT_SIZES, LOG_WITH, LR_SCHEDULES, TIMESTEP_SAMPLERS
from lorastudio.ui import theme

TIMESTEP_LABELS = {"logit_normal": "logit-normal (default)", "uniform": "uniform", "sigmoid": "sigmoid",
                   "shift": "resolution shift (musubi-tuner flux_shift / qwen_shift)"}
LR_SCHEDULE_LABELS = {"constant": "constant (default)", "linear": "linear decay to 0", "cosine": "cosine decay to 0"}
LOG_WITH_LABELS = {"": "off", "tensorboard": "TensorBoard (run folder/logs)"}
assert tuple(TIMESTEP_LABELS) == TIMESTEP_SAMPLERS and tuple(LR_SCHEDULE_LABELS) == LR_SCHEDULES
INPUT_SIZE_LABELS = {"auto": "auto: the model's measured best (default)",
                     "target": "the target's size (fewest tokens)",
                     "pipeline": "the pipeline's ~1 MP (as it sizes inputs at inference)"}
assert tuple(LOG_WITH_LABELS) == LOG_WITH and tuple(INPUT_SIZE_LABELS) == INPUT_SIZES
#: The families whose "auto" input size is the pipeline's ~1 MP (catalog ``default_input_size``).
_PIPELINE_SIZED = ", ".join(r.display_name for r in catalog.FAMILIES if r.edit and r.default_input_size == "pipeline")

#: One line under each field: what it changes.
EXPLAIN = {
    "timesteps": "Which noise levels the steps train at: the middle (logit-normal), all alike, or shifted "
                 "towards noise for large images as the model's scheduler does.",
    "timestep_mean": "Logit-normal only: below 0 trains more on fine detail, above 0 more on composition.",
    "timestep_scale": "How widely the noise levels spread (logit-normal, sigmoid, shift).",
    "timestep_shift": "Resolution shift only: 0 computes the shift from the image size; a number fixes it.",
    "lr_schedule": "How the learning rate changes over the run, after the warmup.",
    "warmup_steps": "Steps over which the learning rate rises from 0 to its value.",
    "ema_decay": "Average the LoRA over recent steps (e.g. 0.99): smoother results; the raw weights are "
                 "saved beside it as NAME.raw.safetensors.",
    "caption_dropout": "Share of steps trained without any caption; keep 0 for edit LoRAs.",
    "log_with": "Also log loss, learning rate and previews for TensorBoard (needs the tensorboard package).",
    "validate_every": "How often the held-out sets' loss is measured (only when sets are held out for "
                      "validation): with the previews, every N steps, or 0 = only at checkpoints.",
    "early_stop": "Stop (as the Stop button does) after this many validations without a new best; off = "
                  "train all the steps. The best checkpoint is kept either way.",
    "input_size": f"Edit models: the size input images train at. auto = ~1 MP for {_PIPELINE_SIZED} (measured: "
                  "the LoRA then works in the pipeline's default call), the target's size for the others. "
                  "~1 MP costs ~4,096 tokens per input image at any resolution (see the estimate).",
}

#: Fields whose config value may be unset (None): the spin box's lowest value stands for it.
UNSET_AT_MINIMUM = ("validate_every",)


def _combo(labels: dict[str, str]) -> QComboBox:
    combo = QComboBox()
    for value, label in labels.items():
        combo.addItem(label, value)
    return combo


def _spin(low: float, high: float, step: float, decimals: int, special: str = "") -> QDoubleSpinBox:
    spin = QDoubleSpinBox()
    spin.setRange(low, high)
    spin.setSingleStep(step)
    spin.setDecimals(decimals)
    if special:
        spin.setSpecialValueText(special)
    return spin


class AdvancedSection(QGroupBox):
    """Collapsed under an "Advanced" toggle; ``values()`` / ``set_values()`` as config keys."""

    changed = Signal()

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        outer = QVBoxLayout(self)
        self.toggle = QToolButton()
        self.toggle.setText("Advanced: timesteps, LR schedule, EMA, validation…")
        self.toggle.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextBesideIcon)
        self.toggle.setCheckable(True)
        self.toggle.setAutoRaise(True)
        self.toggle.setArrowType(Qt.ArrowType.RightArrow)
        self.toggle.toggled.connect(self.set_expanded)
        outer.addWidget(self.toggle)
        self.body = QWidget()
        form = QFormLayout(self.body)
        form.setContentsMargins(0, 0, 0, 0)
        self.fields = {
            "timesteps": _combo(TIMESTEP_LABELS),
            "timestep_mean": _spin(-3.0, 3.0, 0.1, 2),
            "timestep_scale": _spin(0.1, 5.0, 0.1, 2),
            "timestep_shift": _spin(0.0, 20.0, 0.5, 2, "from the resolution"),
            "lr_schedule": _combo(LR_SCHEDULE_LABELS),
            "warmup_steps": QSpinBox(),
            "ema_decay": _spin(0.0, 0.9999, 0.001, 4, "off"),
            "caption_dropout": _spin(0.0, 1.0, 0.05, 2),
            "log_with": _combo(LOG_WITH_LABELS),
            "validate_every": QSpinBox(),
            "early_stop": QSpinBox(),
            "input_size": _combo(INPUT_SIZE_LABELS),
        }
        self.fields["warmup_steps"].setRange(0, 1_000_000)
        self.fields["validate_every"].setRange(-1, 1_000_000)
        self.fields["validate_every"].setSpecialValueText("with the previews")
        self.fields["early_stop"].setRange(0, 1000)
        self.fields["early_stop"].setSpecialValueText("off")
        labels = {"timesteps": "Timesteps", "timestep_mean": "Timestep mean", "timestep_scale": "Timestep scale",
                  "timestep_shift": "Timestep shift", "lr_schedule": "LR schedule", "warmup_steps": "Warmup steps",
                  "ema_decay": "EMA decay", "caption_dropout": "Caption dropout", "log_with": "Logging",
                  "validate_every": "Validate every", "early_stop": "Early stop after",
                  "input_size": "Input image size"}
        for key, widget in self.fields.items():
            widget.setToolTip(EXPLAIN[key])
            note = QLabel(EXPLAIN[key])
            note.setWordWrap(True)
            theme.set_role(note, "muted")
            form.addRow(labels[key], widget)
            form.addRow("", note)
            if isinstance(widget, QComboBox):
                widget.currentIndexChanged.connect(self._changed)
            else:
                widget.valueChanged.connect(self._changed)
        outer.addWidget(self.body)
        self.fields["timesteps"].currentIndexChanged.connect(self._sampler_changed)
        self._sampler_changed()
        self.set_expanded(False)
        self._loading = False

    def set_expanded(self, expanded: bool) -> None:
        self.toggle.setArrowType(Qt.ArrowType.DownArrow if expanded else Qt.ArrowType.RightArrow)
        self.body.setVisible(expanded)
        if self.toggle.isChecked() != expanded:
            self.toggle.setChecked(expanded)

    def values(self) -> dict:
        """``train`` keys plus ``caption_dropout`` (a ``dataset`` key), as the config holds them."""
        out = {}
        for key, widget in self.fields.items():
            if isinstance(widget, QComboBox):
                out[key] = widget.currentData() or ""
            elif key in UNSET_AT_MINIMUM and widget.value() == widget.minimum():
                out[key] = None
            elif isinstance(widget, QSpinBox):
                out[key] = widget.value()
            else:
                out[key] = round(widget.value(), widget.decimals())
        return out

    def set_values(self, values: dict) -> None:
        self._loading = True
        try:
            for key, value in values.items():
                widget = self.fields[key]
                if isinstance(widget, QComboBox):
                    widget.setCurrentIndex(max(0, widget.findData(value)))
                elif value is None:
                    widget.setValue(widget.minimum())
                else:
                    widget.setValue(value)
        finally:
            self._loading = False

    def _sampler_changed(self, *_args) -> None:
        """The mean and the fixed shift apply to one sampler each."""
        kind = self.fields["timesteps"].currentData()
        self.fields["timestep_mean"].setEnabled(kind == "logit_normal")
        self.fields["timestep_shift"].setEnabled(kind == "shift")
        self.fields["timestep_scale"].setEnabled(kind != "uniform")

    def _changed(self, *_args) -> None:
        if not self._loading:
            self.changed.emit()
