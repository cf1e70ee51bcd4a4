"""The Train tab: settings (left) and the run (right): progress, loss curve, samples, log.

The form edits a ``Config``; the main window saves it as the project TOML and starts the
worker through ``WorkerRunner``. This widget only shows what the runner's signals say.
"""

from __future__ import annotations

import math
import time
from pathlib import Path

from PySide6.QtCore import QLocale, Qt, QUrl, Signal
from PySide6.QtGui import QDesktopServices, QDoubleValidator, QGuiApplication, QTextCursor
from PySide6.QtWidgets import (QComboBox, QFileDialog, QFormLayout, QFrame, QGroupBox, QHBoxLayout, QLabel, QLineEdit,
                               QPlainTextEdit, QProgressBar, QPushButton, QScrollArea, QSizePolicy, QSpinBox, QSplitter,
                               QTabWidget, QVBoxLayout, QWidget)

from lorastudio.config import TYPICAL_LEARNING_RATE, Config, ConfigError
from lorastudio.ui import theme
from PySide6.QtWidgets import QCheckBox

from lorastudio import estimate as memory_estimate
from lorastudio.config import MEMORY_PRESETS, QUANTIZATION, memory_preset
from lorastudio.ui.caption_editor import MessageBar
from lorastudio.ui.loss_chart import LossChart
from lorastudio.ui.model_folder import ModelFolderInfo, detect_model_folder
from lorastudio.project import validate, with_changes
from lorastudio.ui.sample_gallery import Sample, SampleGallery
from lorastudio.ui.thumbnails import ThumbnailLoader

STEPS_TIP = ("<b>Steps</b>: how many times the model goes through a training example.<br>"
             "The balloon analogy: steps are <i>how many times you blow</i>. Too few and the model doesn't "
             "learn enough; too many and it overfits (memorizes instead of learning).<br>"
             "Starting point: for ~20 paired images, try <b>1,000</b> steps.")
LR_TIP = ("<b>Learning rate</b>: how much the model adjusts its weights with each step.<br>"
          "The balloon analogy: the learning rate is <i>how hard you blow each time</i>. Blow too softly "
          "(low) and you need more breaths; blow too hard (high) and you risk popping the balloon "
          "(training becomes unstable).<br>Typical values: <b>1e-4 to 5e-4</b>. Start with <b>1e-4</b>.")
RANK_TIP = ("<b>Rank</b>: the LoRA's capacity. 16 suits most edits; raise it (32–64) for complex concepts, "
            "lower it (4–8) for a small, simple style. Higher rank = bigger file, more memory.")
RES_TIP = ("<b>Resolution</b>: the training area in pixels (images are resized to about this many pixels "
           "squared, keeping their shape). 512 is quick; 1024 matches what the big models make.")
SEED_TIP = "Random seed: the same seed and settings give the same result."
SAMPLE_TIP = "Make preview images every N steps (0 = only at the end) to see the LoRA learn."
CKPT_TIP = "Save a checkpoint every N steps (0 = only when stopping and at the end); Resume continues from it."
TRIGGER_TIP = ("An optional word added to every caption (e.g. <i>sks_bgremove</i>). Use it in your prompt later "
               "to switch the effect on.")
DEFAULT_TIP = "The caption used for sets that have no .txt file."
NAME_TIP = "File name of the LoRA: OUTPUT/NAME.safetensors"
#: The LoRA file's key layout (config ``output.format``, one of ``config.OUTPUT_FORMATS``), as the
#: artist's tools name it.
OUTPUT_FORMAT_LABELS = {"diffusers": "diffusers (Python, diffusers pipelines)",
                        "comfyui": "ComfyUI / kohya (Forge, SwarmUI)"}
FORMAT_TIP = ("Which key names the LoRA file uses. “diffusers” loads with diffusers' load_lora_weights "
              "(ComfyUI also reads it for FLUX.1 and Qwen-Image). “ComfyUI / kohya” writes the names ComfyUI, "
              "Forge and kohya's scripts use (for FLUX the original BFL layout with fused q/k/v); diffusers "
              "loads it too.")

PRESET_TIP = ("<b>Fit to my GPU</b>: pick your card's memory. LoRA Studio chooses the resolution and the "
              "fastest memory savers that fit this model on it (worked out from the model folder), and shows "
              "the estimate below. Change any saver yourself and the choice becomes “Custom”.")
CHECKPOINTING_TIP = ("<b>Gradient checkpointing</b>: recompute each block's activations during the backward "
                     "pass instead of keeping them. Much less memory (especially at 1024 px), about a third "
                     "slower per step.")
QUANT_TIP = ("<b>Base weights</b>: store the frozen base model in 8 or 4 bits (bitsandbytes). 8-bit halves the "
             "biggest memory item with little quality cost; 4-bit (NF4) quarters it. The LoRA itself always "
             "trains and is saved in full precision, in the normal format.")
QUANT_LABELS = {"none": "full precision (bf16)", "int8": "8-bit", "int4": "4-bit (NF4)"}
assert tuple(QUANT_LABELS) == QUANTIZATION
OFFLOAD_TIP = ("<b>CPU offload</b>: keep the base model's blocks in system RAM and copy each one to the GPU only "
               "while it runs. Fits models much bigger than the card, but every step waits for those copies "
               "(several seconds). Turns gradient checkpointing on; not combined with 8/4-bit weights.")
ADAM8_TIP = ("<b>8-bit AdamW</b>: keep the optimizer's running averages in 8 bits (bitsandbytes). Saves 6 bytes "
             "per LoRA parameter; training is the same for practical purposes.")

ADVICE = {
    "oom": "The GPU ran out of memory. Pick your card in “Fit to my GPU” (GPU memory) and check the estimate, "
           "lower the resolution or rank, or close other programs that use the GPU.",
    "nan": "The loss became NaN: the learning rate is probably too high — the balloon popped. "
           "Try a lower learning rate (1e-4).",
    "data": "A problem with the training data: check the Problems list in the Dataset tab.",
    "config": "A setting or the model folder is not right: check the settings on the left.",
    "killed": "The last saved checkpoint is kept: Resume continues from it.",
    "crash": "See the log below for details. The last saved checkpoint is kept: Resume continues from it.",
    "start": "The training program could not be started. Is LoRA Studio installed completely?",
}


def format_duration(seconds: float | None) -> str:
    if seconds is None or not math.isfinite(seconds) or seconds < 0:
        return "—"
    seconds = int(round(seconds))
    h, rem = divmod(seconds, 3600)
    m, s = divmod(rem, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


def format_lr(value: float) -> str:
    text = f"{value:.0e}" if value < 0.01 else f"{value:g}"
    return text.replace("e-0", "e-")


def parse_lr(text: str) -> float | None:
    try:
        value = float(text.strip().replace(",", "."))
    except ValueError:
        return None
    return value if math.isfinite(value) and value > 0 else None


class PathField(QWidget):
    """A line edit with a Browse… button (native folder dialog)."""

    changed = Signal(str)

    def __init__(self, placeholder: str, dialog_title: str, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        layout = QHBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(6)
        self.edit = QLineEdit()
        self.edit.setPlaceholderText(placeholder)
        self.edit.textChanged.connect(self.changed)
        self.button = QPushButton("Browse…")
        self.button.clicked.connect(self._browse)
        self._title = dialog_title
        layout.addWidget(self.edit, 1)
        layout.addWidget(self.button)

    def text(self) -> str:
        return self.edit.text().strip()

    def set_text(self, text: str) -> None:
        self.edit.setText(text)

    def _browse(self) -> None:
        start = self.text() or str(Path.home())
        folder = QFileDialog.getExistingDirectory(self, self._title, start)
        if folder:
            self.edit.setText(folder)


class SettingsForm(QWidget):
    """The project's training settings. ``config()`` builds a Config from it."""

    changed = Signal()

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._base: Config | None = None
        self._loading = False
        layout = QVBoxLayout(self)
        layout.setContentsMargins(12, 8, 12, 12)
        layout.setSpacing(10)

        # Base model.
        box = QGroupBox("Base model")
        form = QFormLayout(box)
        form.setFieldGrowthPolicy(QFormLayout.FieldGrowthPolicy.AllNonFixedFieldsGrow)
        self.model = PathField("A local diffusers model folder (with model_index.json)", "Choose the base model folder")
        self.model.setToolTip("The base model to train a LoRA for: a local diffusers folder such as "
                              "FLUX.1-Kontext-dev or Qwen-Image-Edit-2509. Nothing is downloaded.")
        self.family = QLabel("")
        self.family.setWordWrap(True)
        form.addRow("Folder", self.model)
        form.addRow("Family", self.family)
        layout.addWidget(box)

        # Training.
        box = QGroupBox("Training")
        form = QFormLayout(box)
        self.steps = QSpinBox()
        self.steps.setRange(1, 1_000_000)
        self.steps.setSingleStep(100)
        self.steps.setGroupSeparatorShown(True)
        self.steps.setToolTip(STEPS_TIP)
        self.lr = QComboBox()
        self.lr.setEditable(True)
        self.lr.addItems(["1e-4", "2e-4", "3e-4", "5e-4"])
        validator = QDoubleValidator(1e-8, 0.99, 10, self.lr)
        validator.setNotation(QDoubleValidator.Notation.ScientificNotation)
        validator.setLocale(QLocale.c())
        self.lr.setValidator(validator)
        self.lr.setToolTip(LR_TIP)
        self.lr_note = QLabel("")
        theme.set_role(self.lr_note, "warning")
        self.lr_note.setWordWrap(True)
        self.lr_note.hide()
        self.rank = QComboBox()
        self.rank.addItems(["4", "8", "16", "32", "64", "128"])
        self.rank.setEditable(True)
        self.rank.setToolTip(RANK_TIP)
        self.resolution = QComboBox()
        self.resolution.addItems(["256", "512", "768", "1024"])
        self.resolution.setEditable(True)
        self.resolution.setToolTip(RES_TIP)
        self.seed = QSpinBox()
        self.seed.setRange(0, 2_147_483_647)
        self.seed.setToolTip(SEED_TIP)
        self.sample_every = QSpinBox()
        self.sample_every.setRange(0, 1_000_000)
        self.sample_every.setSingleStep(50)
        self.sample_every.setSpecialValueText("only at the end")
        self.sample_every.setToolTip(SAMPLE_TIP)
        self.checkpoint_every = QSpinBox()
        self.checkpoint_every.setRange(0, 1_000_000)
        self.checkpoint_every.setSingleStep(50)
        self.checkpoint_every.setSpecialValueText("only at the end")
        self.checkpoint_every.setToolTip(CKPT_TIP)
        steps_label = QLabel("Steps")
        steps_label.setToolTip(STEPS_TIP)
        lr_label = QLabel("Learning rate")
        lr_label.setToolTip(LR_TIP)
        form.addRow(steps_label, self.steps)
        form.addRow(lr_label, self.lr)
        form.addRow("", self.lr_note)
        form.addRow("Rank", self.rank)
        form.addRow("Resolution", self.resolution)
        form.addRow("Seed", self.seed)
        form.addRow("Samples every", self.sample_every)
        form.addRow("Checkpoint every", self.checkpoint_every)
        layout.addWidget(box)

        # GPU memory: "Fit to my GPU" presets, the savers, and the estimate.
        box = QGroupBox("GPU memory")
        form = QFormLayout(box)
        self.preset = QComboBox()
        self.preset.addItem("Custom", "")
        for p in MEMORY_PRESETS:
            self.preset.addItem(p.label, p.id)
        self.preset.setToolTip(PRESET_TIP)
        self.checkpointing = QCheckBox("Gradient checkpointing")
        self.checkpointing.setToolTip(CHECKPOINTING_TIP)
        self.quantization = QComboBox()
        for value, label in QUANT_LABELS.items():
            self.quantization.addItem(label, value)
        self.quantization.setToolTip(QUANT_TIP)
        self.offload = QCheckBox("CPU offload of the model's blocks (slow)")
        self.offload.setToolTip(OFFLOAD_TIP)
        self.adam8 = QCheckBox("8-bit AdamW")
        self.adam8.setToolTip(ADAM8_TIP)
        self.estimate_label = QLabel("")
        self.estimate_label.setWordWrap(True)
        self.estimate_label.setTextFormat(Qt.TextFormat.RichText)  # line breaks; the parts are escaped
        theme.set_role(self.estimate_label, "muted")
        self.estimate_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        preset_label = QLabel("Fit to my GPU")
        preset_label.setToolTip(PRESET_TIP)
        form.addRow(preset_label, self.preset)
        form.addRow("Base weights", self.quantization)
        form.addRow("", self.checkpointing)
        form.addRow("", self.adam8)
        form.addRow("", self.offload)
        form.addRow("Estimate", self.estimate_label)
        layout.addWidget(box)
        self._applying_preset = False
        self._facts_cache: tuple[str, object] | None = None

        # Captions.
        box = QGroupBox("Captions")
        form = QFormLayout(box)
        self.trigger = QLineEdit()
        self.trigger.setPlaceholderText("optional, e.g. sks_style")
        self.trigger.setToolTip(TRIGGER_TIP)
        self.default_caption = QLineEdit()
        self.default_caption.setPlaceholderText("for sets without a caption")
        self.default_caption.setToolTip(DEFAULT_TIP)
        form.addRow("Trigger word", self.trigger)
        form.addRow("Default caption", self.default_caption)
        layout.addWidget(box)

        # Output.
        box = QGroupBox("Output")
        form = QFormLayout(box)
        self.output_dir = PathField("Folder for the LoRA and its run files", "Choose the output folder")
        self.output_name = QLineEdit()
        self.output_name.setToolTip(NAME_TIP)
        self.output_file = QLabel("")
        theme.set_role(self.output_file, "muted")
        self.output_file.setWordWrap(True)
        self.output_file.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.output_format = QComboBox()
        for fmt, label in OUTPUT_FORMAT_LABELS.items():
            self.output_format.addItem(label, fmt)
        self.output_format.setToolTip(FORMAT_TIP)
        form.addRow("Folder", self.output_dir)
        form.addRow("Name", self.output_name)
        form.addRow("Format", self.output_format)
        form.addRow("", self.output_file)
        layout.addWidget(box)

        self.error = QLabel("")
        theme.set_role(self.error, "error")
        self.error.setWordWrap(True)
        self.error.hide()
        layout.addWidget(self.error)
        self.project_label = QLabel("")
        theme.set_role(self.project_label, "muted")
        self.project_label.setWordWrap(True)
        self.project_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        layout.addWidget(self.project_label)
        layout.addStretch(1)

        for w in (self.steps, self.seed, self.sample_every, self.checkpoint_every):
            w.valueChanged.connect(self._changed)
        for combo in (self.lr, self.rank, self.resolution):
            combo.currentTextChanged.connect(self._changed)
        for edit in (self.trigger, self.default_caption, self.output_name):
            edit.textChanged.connect(self._changed)
        self.model.changed.connect(self._changed)
        self.preset.currentIndexChanged.connect(self._preset_chosen)
        for w in (self.checkpointing, self.offload, self.adam8):
            w.toggled.connect(self._memory_changed)
        self.quantization.currentIndexChanged.connect(self._memory_changed)
        self.output_dir.changed.connect(self._changed)
        self.output_format.currentIndexChanged.connect(self._changed)
        self.model_info: ModelFolderInfo = detect_model_folder("")
        self._dataset_mode = None

    # -- load / read ----------------------------------------------------------------------

    def load(self, config: Config, project_path: Path | None) -> None:
        self._loading = True
        try:
            self._base = config
            model = str(config.model.path)
            self.model.set_text("" if model in ("", ".") else model)
            t = config.train
            self.steps.setValue(t.steps)
            self.lr.setEditText(format_lr(t.learning_rate))
            self.rank.setEditText(str(t.rank))
            self.resolution.setEditText(str(t.resolution))
            self.seed.setValue(t.seed)
            self.sample_every.setValue(t.sample_every)
            self.checkpoint_every.setValue(t.checkpoint_every)
            self.checkpointing.setChecked(t.gradient_checkpointing)
            self.quantization.setCurrentIndex(max(0, self.quantization.findData(t.quantization)))
            self.offload.setChecked(t.cpu_offload)
            self.adam8.setChecked(t.optimizer == "adamw8bit")
            self.preset.setCurrentIndex(0)
            self.trigger.setText(config.dataset.trigger)
            self.default_caption.setText(config.dataset.default_caption)
            self.output_dir.set_text(str(config.output.dir))
            self.output_name.setText(config.output.name)
            self.output_format.setCurrentIndex(max(0, self.output_format.findData(config.output.format)))
            self.set_project_path(project_path)
        finally:
            self._loading = False
        self._update_derived()

    def set_project_path(self, path: Path | None) -> None:
        self.project_label.setText(f"Project file: {path}" if path else
                                   "Project not saved yet: it is saved beside the dataset folder when you "
                                   "train or press Ctrl+S.")

    def config(self) -> Config:
        """The settings as a validated Config (raises ConfigError naming the field)."""
        assert self._base is not None, "no project loaded"
        lr = parse_lr(self.lr.currentText())
        if lr is None:
            raise ConfigError(f"train.learning_rate: “{self.lr.currentText()}” is not a number (e.g. 1e-4)")
        rank = _int(self.rank.currentText(), "train.rank")
        resolution = _int(self.resolution.currentText(), "train.resolution")
        out_dir = self.output_dir.text()
        if not out_dir:
            raise ConfigError("output.dir: choose an output folder")
        config = with_changes(
            self._base,
            model={"path": Path(self.model.text()) if self.model.text() else Path("")},
            dataset={"trigger": self.trigger.text().strip(), "default_caption": self.default_caption.text().strip()},
            train={"steps": self.steps.value(), "learning_rate": lr, "rank": rank, "resolution": resolution,
                   "seed": self.seed.value(), "sample_every": self.sample_every.value(),
                   "checkpoint_every": self.checkpoint_every.value(), **self.memory_values()},
            output={"dir": Path(out_dir).expanduser(), "name": self.output_name.text().strip(),
                    "format": self.output_format.currentData() or "diffusers"},
        )
        return validate(config)

    def valid_config(self) -> Config | None:
        """The settings as a Config, or None while they are not valid (the form shows why)."""
        try:
            return self.config()
        except ConfigError:
            return None

    def show_error(self, message: str) -> None:
        self.error.setText(message)
        self.error.show()

    def model_path(self) -> str:
        return self.model.text()

    def caption_context(self) -> tuple[str, str]:
        """The trigger word and the default caption, as typed."""
        return self.trigger.text(), self.default_caption.text()

    def set_dataset_mode(self, mode) -> None:
        """The dataset's mode (paired / single), to warn about a model of the other kind."""
        self._dataset_mode = getattr(mode, "value", mode)
        self._update_derived()

    def set_enabled_for_run(self, running: bool) -> None:
        for w in self.findChildren(QGroupBox):
            w.setEnabled(not running)

    # -- internals ------------------------------------------------------------------------

    def _changed(self, *_args) -> None:
        self._update_derived()
        if not self._loading:
            self.changed.emit()

    def _update_derived(self) -> None:
        if self.model.text() != getattr(self, "_model_checked", None) or not self.model_info.supported:
            self._model_checked = self.model.text()
            self.model_info = detect_model_folder(self.model.text())
        info = self.model_info
        summary = info.summary
        note = info.dataset_note(self._dataset_mode or "")
        if note:
            summary += f"<br>Note: {note}"
        self.family.setText(summary)
        theme.set_role(self.family, "ok" if info.supported else ("muted" if not self.model.text() else "error"))
        lr = parse_lr(self.lr.currentText())
        lo, hi = TYPICAL_LEARNING_RATE
        if lr is None:
            self.lr_note.setText("Enter a number such as 1e-4.")
            self.lr_note.show()
        elif lr < lo * 0.999 or lr > hi * 1.001:
            self.lr_note.setText(f"{format_lr(lr)} is outside the typical range 1e-4 … 5e-4. "
                                 + ("Too soft: it needs many more steps." if lr < lo else
                                    "Too hard: the balloon may pop (unstable training)."))
            self.lr_note.show()
        else:
            self.lr_note.hide()
        name = self.output_name.text().strip() or "?"
        out = self.output_dir.text() or "?"
        self.output_file.setText(f"→ {Path(out) / (name + '.safetensors')}")
        try:
            if self._base is not None:
                self.config()
            self.error.hide()
        except ConfigError as exc:
            self.error.setText(str(exc))
            self.error.setVisible(bool(self.model.text()) or "model.path" not in str(exc))
        self._update_estimate()


    # -- GPU memory -----------------------------------------------------------------------

    def memory_values(self) -> dict:
        """The memory savers as ``train`` keys."""
        return {"gradient_checkpointing": self.checkpointing.isChecked(),
                "quantization": self.quantization.currentData() or "none",
                "cpu_offload": self.offload.isChecked(),
                "optimizer": "adamw8bit" if self.adam8.isChecked() else "adamw"}

    def model_facts(self):
        """The model folder's counts for the estimate (read once per folder), or an error text."""
        folder = self.model.text()
        if self._facts_cache is None or self._facts_cache[0] != folder:
            try:
                facts = memory_estimate.model_facts(folder) if folder else "choose a base model for an estimate"
            except memory_estimate.EstimateError as exc:
                facts = f"no estimate: {exc}"
            self._facts_cache = (folder, facts)
        return self._facts_cache[1]

    def _preset_chosen(self, index: int) -> None:
        preset_id = self.preset.itemData(index)
        if not preset_id or self._loading:
            return
        preset = memory_preset(preset_id)
        facts = self.model_facts()
        rank = _safe_int(self.rank.currentText(), 16)
        if isinstance(facts, memory_estimate.ModelFacts):
            options, _est, _fits = memory_estimate.fit_options(facts, preset.vram_gb, resolution=preset.resolution,
                                                               rank=rank)
            values = {"gradient_checkpointing": options.gradient_checkpointing,
                      "quantization": options.quantization, "cpu_offload": options.cpu_offload,
                      "optimizer": options.optimizer}
        else:
            values = preset.option_dict()
        self._applying_preset = True
        try:
            self.resolution.setEditText(str(preset.resolution))
            self.checkpointing.setChecked(values["gradient_checkpointing"])
            self.quantization.setCurrentIndex(max(0, self.quantization.findData(values["quantization"])))
            self.offload.setChecked(values["cpu_offload"])
            self.adam8.setChecked(values["optimizer"] == "adamw8bit")
        finally:
            self._applying_preset = False
        self._changed()

    def _memory_changed(self, *_args) -> None:
        if self._applying_preset:
            return
        if self.sender() is self.offload and self.offload.isChecked():
            self.quantization.setCurrentIndex(0)  # offload streams full-precision blocks
            self.checkpointing.setChecked(True)
        if not self._loading:
            self.preset.blockSignals(True)
            self.preset.setCurrentIndex(0)  # a hand-picked saver: "Custom"
            self.preset.blockSignals(False)
        self._changed()

    def _update_estimate(self) -> None:
        self.checkpointing.setEnabled(not self.offload.isChecked())
        facts = self.model_facts()
        if not isinstance(facts, memory_estimate.ModelFacts):
            self.estimate_label.setText(_html(str(facts)))
            theme.set_role(self.estimate_label, "muted")
            return
        values = self.memory_values()
        options = memory_estimate.MemoryOptions(**values)
        est = memory_estimate.estimate(facts, resolution=_safe_int(self.resolution.currentText(), 512),
                                       rank=_safe_int(self.rank.currentText(), 16), options=options)
        text = _html(est.summary())
        preset_id = self.preset.currentData()
        if preset_id:
            card = memory_preset(preset_id).vram_gb
            text += (f"<br>Fits a {card:g} GB card." if est.fits(card) else
                     f"<br>Does not fit a {card:g} GB card: lower the resolution or rank.")
        steps = self.steps.value()
        text += f"<br>{steps:,} steps {memory_estimate.approx_seconds(est.step_seconds * steps)} on that GPU."
        if facts.edit:
            text += " (Counted with one input image per set.)"
        self.estimate_label.setText(text)
        theme.set_role(self.estimate_label, "muted")


def _safe_int(text: str, default: int) -> int:
    try:
        value = int(text.strip().replace(",", ""))
    except ValueError:
        return default
    return value if value > 0 else default


def _int(text: str, key: str) -> int:
    try:
        return int(text.strip().replace(",", ""))
    except ValueError:
        raise ConfigError(f"{key}: “{text}” is not a whole number") from None


class RunPanel(QWidget):
    """Train/Stop/Resume, progress, the loss chart, samples and the log."""

    train_clicked = Signal()
    stop_clicked = Signal()
    resume_clicked = Signal()
    test_clicked = Signal(str)
    sample_clicked = Signal(object)

    def __init__(self, loader: ThumbnailLoader, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.lora_path: str = ""
        self.log_path: str | None = None
        self._started_at = 0.0
        layout = QVBoxLayout(self)
        layout.setContentsMargins(12, 8, 12, 12)
        layout.setSpacing(8)

        buttons = QHBoxLayout()
        self.train_button = QPushButton("Train")
        theme.set_role(self.train_button, "primary")
        self.train_button.setToolTip("Start training with these settings (Ctrl+Return)")
        self.stop_button = QPushButton("Stop")
        self.stop_button.setToolTip("Stop gracefully: saves a checkpoint and the LoRA so far (Esc or Ctrl+.)")
        self.resume_button = QPushButton("Resume")
        self.resume_button.setToolTip("Continue from the last checkpoint (Ctrl+Shift+Return)")
        self.train_button.clicked.connect(self.train_clicked)
        self.stop_button.clicked.connect(self.stop_clicked)
        self.resume_button.clicked.connect(self.resume_clicked)
        for b in (self.train_button, self.stop_button, self.resume_button):
            b.setMinimumWidth(96)
        buttons.addWidget(self.train_button)
        buttons.addWidget(self.stop_button)
        buttons.addWidget(self.resume_button)
        buttons.addStretch(1)
        self.phase = QLabel("Ready to train.")
        theme.set_role(self.phase, "muted")
        buttons.addWidget(self.phase)
        layout.addLayout(buttons)

        self.progress = QProgressBar()
        self.progress.setRange(0, 1)
        self.progress.setValue(0)
        self.progress.setFormat("")
        self.progress.setTextVisible(True)
        layout.addWidget(self.progress)
        stats = QHBoxLayout()
        self.step_label = QLabel("Step —")
        self.rate_label = QLabel("— it/s")
        self.eta_label = QLabel("ETA —")
        self.loss_label = QLabel("loss —")
        for w in (self.step_label, self.rate_label, self.eta_label, self.loss_label):
            theme.set_role(w, "stat")
            stats.addWidget(w)
            stats.addSpacing(12)
        stats.addStretch(1)
        layout.addLayout(stats)

        self.error_bar = MessageBar("error", self)
        self.error_bar.add_button("Show log", self.show_log)
        self.error_resume = self.error_bar.add_button("Resume", self.resume_clicked.emit)
        layout.addWidget(self.error_bar)

        self.done_bar = MessageBar("ok", self)
        self.done_bar.label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.show_folder_button = self.done_bar.add_button("Show in folder", self.show_in_folder)
        self.copy_button = self.done_bar.add_button("Copy path", self.copy_path)
        self.test_button = self.done_bar.add_button("Test it", lambda: self.test_clicked.emit(self.lora_path))
        layout.addWidget(self.done_bar)

        self.tabs = QTabWidget()
        self.tabs.setDocumentMode(True)
        self.chart = LossChart()
        self.gallery = SampleGallery(loader)
        self.gallery.sample_activated.connect(self.sample_clicked)
        self.log_view = QPlainTextEdit()
        self.log_view.setReadOnly(True)
        self.log_view.setMaximumBlockCount(5000)
        self.log_view.setLineWrapMode(QPlainTextEdit.LineWrapMode.NoWrap)
        font = QGuiApplication.font()
        font.setFamily("monospace")
        font.setStyleHint(font.StyleHint.Monospace)
        self.log_view.setFont(font)
        self.split = QSplitter(Qt.Orientation.Vertical)
        chart_box = QWidget()
        cl = QVBoxLayout(chart_box)
        cl.setContentsMargins(0, 0, 0, 0)
        t = QLabel("Loss")
        theme.set_role(t, "heading")
        cl.addWidget(t)
        cl.addWidget(self.chart, 1)
        samples_box = QWidget()
        sl = QVBoxLayout(samples_box)
        sl.setContentsMargins(0, 6, 0, 0)
        t = QLabel("Samples")
        theme.set_role(t, "heading")
        self.samples_hint = QLabel("Previews appear here as training goes (click one to compare with the target).")
        theme.set_role(self.samples_hint, "muted")
        head = QHBoxLayout()
        head.addWidget(t)
        head.addWidget(self.samples_hint, 1)
        sl.addLayout(head)
        sl.addWidget(self.gallery, 1)
        self.split.addWidget(chart_box)
        self.split.addWidget(samples_box)
        self.tabs.addTab(self.split, "Progress")
        self.tabs.addTab(self.log_view, "Log")
        layout.addWidget(self.tabs, 1)
        self.set_state("idle", can_resume=False, can_train=True)

    # -- state ----------------------------------------------------------------------------

    def set_state(self, state: str, can_resume: bool, can_train: bool) -> None:
        running = state != "idle"
        self.train_button.setEnabled(not running and can_train)
        self.stop_button.setEnabled(state in ("starting", "running"))
        self.resume_button.setEnabled(not running and can_resume and can_train)
        self.error_resume.setVisible(can_resume)
        if state == "stopping":
            self.phase.setText("Stopping: saving a checkpoint and the LoRA so far…")
        elif state == "starting":
            self.phase.setText("Starting the trainer…")

    def reset(self) -> None:
        """A project was opened: no curve, no samples, no message from an earlier run."""
        self.chart.clear()
        self.gallery.clear_samples()
        self.error_bar.hide()
        self.done_bar.hide()
        self.phase.setText("Ready to train.")

    def samples(self) -> list[Sample]:
        return self.gallery.samples

    def refresh_theme(self) -> None:
        self.chart.update()

    def begin(self, resume: bool) -> None:
        self.error_bar.hide()
        self.done_bar.hide()
        self._started_at = time.monotonic()
        if not resume:
            self.chart.clear()
            self.gallery.clear_samples()
        self.progress.setRange(0, 0)
        self.progress.setFormat("")
        self.log(f"— {'resuming' if resume else 'starting'} training {time.strftime('%H:%M:%S')} —")

    # -- runner signals -------------------------------------------------------------------

    def on_started(self, e: dict) -> None:
        total = int(e.get("total") or 0)
        resumed = int(e.get("resumed_from") or 0)
        if resumed:
            self.chart.resume_at(resumed, total)
        else:
            self.chart.clear(total)
        family = e.get("family", "")
        sets = e.get("sets", "?")
        self.phase.setText(f"Training {family} on {sets} sets" + (f", resumed from step {resumed:,}" if resumed else ""))
        self.progress.setRange(0, max(1, total))
        self.progress.setValue(resumed)
        self.step_label.setText(f"Step {resumed:,} / {total:,}")

    def on_status(self, e: dict) -> None:
        message = e.get("message") or e.get("phase", "")
        current, total = e.get("current"), e.get("total")
        if e.get("phase") != "training":
            if isinstance(current, int) and isinstance(total, int) and total > 0:
                self.progress.setRange(0, total)
                self.progress.setValue(current)
                self.progress.setFormat(f"{message} %v / %m")
            elif self.progress.maximum() <= 1:
                self.progress.setRange(0, 0)
        self.phase.setText(message[:1].upper() + message[1:] if message else "")

    def on_progress(self, e: dict) -> None:
        step, total = int(e.get("step", 0)), int(e.get("total") or 0)
        if total:
            if self.progress.maximum() != total:
                self.progress.setRange(0, total)
            self.progress.setValue(step)
            self.progress.setFormat(f"{100 * step / total:.0f}%")
        self.step_label.setText(f"Step {step:,} / {total:,}")
        rate = e.get("rate")
        if isinstance(rate, (int, float)) and rate > 0:
            self.rate_label.setText(f"{rate:.2f} it/s" if rate >= 1 else f"{1 / rate:.1f} s/it")
        self.eta_label.setText(f"ETA {format_duration(e.get('eta'))}")
        loss = e.get("loss")
        self.loss_label.setText(f"loss {loss:.4f}" if isinstance(loss, (int, float)) else "loss —")
        self.chart.add(step, loss, total)
        if self.phase.text().startswith(("Starting", "Caching", "Loading")):
            self.phase.setText("Training")

    def on_sample(self, e: dict, inputs: tuple[Path, ...] = ()) -> None:
        path = e.get("path")
        if not path:
            return
        self.gallery.add_sample(Sample(int(e.get("step", 0)), Path(path), str(e.get("set", "")),
                                       Path(e["target"]) if e.get("target") else None, inputs))
        self.samples_hint.setText(f"{len(self.gallery.samples)} previews · click one to compare with its target")

    def on_checkpoint(self, e: dict) -> None:
        self.log(f"checkpoint saved at step {e.get('step')}: {e.get('path')}")

    def on_finished(self, e: dict) -> None:
        self.lora_path = str(e.get("lora") or "")
        self.eta_label.setText("ETA —")
        step = e.get("step")
        self.progress.setRange(0, max(1, self.progress.maximum()))
        if not e.get("stopped"):
            self.progress.setValue(self.progress.maximum())
            self.progress.setFormat("Done")
            self.phase.setText(f"Finished in {format_duration(time.monotonic() - self._started_at)}")
            head = "<b>Your LoRA is ready.</b>"
        else:
            self.progress.setFormat(f"Stopped at step {step:,}" if isinstance(step, int) else "Stopped")
            self.phase.setText("Stopped")
            head = (f"<b>Stopped at step {step:,}.</b> The LoRA so far is saved; Resume continues."
                    if isinstance(step, int) else "<b>Stopped.</b> The LoRA so far is saved.")
        self.done_bar.show_message(f"{head}<br>{_html(self.lora_path)}")
        self.log(f"done: {self.lora_path}")

    def on_failed(self, e: dict) -> None:
        kind = e.get("kind", "crash")
        self.eta_label.setText("ETA —")
        self.log_path = e.get("log")
        self.progress.setRange(0, max(1, self.progress.maximum()))
        self.progress.setFormat("Failed")
        self.phase.setText("Training failed" if kind != "killed" else "Training ended")
        advice = ADVICE.get(kind, "")
        text = f"<b>{_html(e.get('message', 'Training failed.'))}</b>"
        if advice:
            text += f"<br>{_html(advice)}"
        if self.log_path:
            text += f"<br>Log: {_html(str(self.log_path))}"
        self.error_bar.show_message(text)
        stderr = e.get("stderr") or ""
        if stderr:
            self.log("— last lines of the trainer's output —\n" + stderr)
        if e.get("log_tail"):
            self.log(f"— last lines of {self.log_path} —\n" + e["log_tail"])

    def log(self, text: str) -> None:
        self.log_view.appendPlainText(text)
        self.log_view.moveCursor(QTextCursor.MoveOperation.End)

    # -- actions --------------------------------------------------------------------------

    def show_log(self) -> None:
        self.tabs.setCurrentWidget(self.log_view)
        if self.log_path and Path(self.log_path).is_file():
            QDesktopServices.openUrl(QUrl.fromLocalFile(str(self.log_path)))

    def show_in_folder(self) -> None:
        if self.lora_path:
            show_in_folder(Path(self.lora_path))

    def copy_path(self) -> None:
        if self.lora_path:
            QGuiApplication.clipboard().setText(self.lora_path)
            self.phase.setText("Path copied")


def show_in_folder(path: Path) -> None:
    """Open the file manager at ``path`` (selecting the file where the platform allows)."""
    import subprocess
    import sys

    try:
        if sys.platform == "win32":  # pragma: no cover
            subprocess.Popen(["explorer", "/select,", str(path)])
            return
        if sys.platform == "darwin":  # pragma: no cover
            subprocess.Popen(["open", "-R", str(path)])
            return
    except OSError:
        pass
    QDesktopServices.openUrl(QUrl.fromLocalFile(str(path.parent if path.is_file() or not path.exists() else path)))


class TrainingPage(QWidget):
    def __init__(self, loader: ThumbnailLoader, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        layout = QHBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        self.splitter = QSplitter(Qt.Orientation.Horizontal)
        layout.addWidget(self.splitter)
        self.form = SettingsForm()
        scroll = QScrollArea()
        scroll.setWidgetResizable(True)
        scroll.setFrameShape(QFrame.Shape.NoFrame)
        scroll.setWidget(self.form)
        # The settings scroll up and down only: the panel is never narrower than the form, so a
        # sideways scrollbar (and fields cut off at the right edge) cannot appear.
        scroll.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        form_width = (self.form.minimumSizeHint().width() + scroll.verticalScrollBar().sizeHint().width()
                      + 2 * scroll.frameWidth() + 4)
        scroll.setMinimumWidth(form_width)
        self.settings_scroll = scroll
        scroll.setSizePolicy(QSizePolicy.Policy.Preferred, QSizePolicy.Policy.Expanding)
        self.run = RunPanel(loader)
        self.splitter.addWidget(scroll)
        self.splitter.addWidget(self.run)
        self.splitter.setCollapsible(0, False)
        self.splitter.setStretchFactor(0, 0)
        self.splitter.setStretchFactor(1, 1)
        self.splitter.setSizes([max(440, form_width), 860])

    def splitters(self) -> dict[str, QSplitter]:
        """The splitters whose positions are remembered between runs, by settings name."""
        return {"train": self.splitter}


def _html(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
