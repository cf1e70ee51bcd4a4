"""The Train tab's settings: base model, training, GPU memory, captions, output, advanced.

The widget builds the fields and keeps the derived lines under them up to date (the
model's family, learning-rate advice, the estimate, the output file, the first error);
``form_mapping`` turns the fields into a ``Config`` and back, ``memory_presets`` and
``estimate_cache`` do the "Fit to my GPU" and estimate work, ``help_texts`` has the tooltips.
"""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import QLocale, Qt, Signal
from PySide6.QtGui import QDoubleValidator
from PySide6.QtWidgets import (QCheckBox, QComboBox, QFormLayout, QGroupBox, QLabel, QLineEdit, QSpinBox, QVBoxLayout,
                               QWidget)

from lorastudio import catalog
from lorastudio.config import QUANTIZATION, Config, ConfigError
from lorastudio.memory_presets import MEMORY_PRESETS
from lorastudio.model_folder import ModelFolderInfo, detect_model_folder
from lorastudio.project import with_changes
from lorastudio.ui import theme
from lorastudio.ui.adapter_fields import AdapterFields
from lorastudio.ui.advanced_section import AdvancedSection
from lorastudio.ui.estimate_cache import ModelFactsCache, estimate_html
from lorastudio.ui.form_mapping import FormValues, config_from_values, values_from_config, whole_number_or
from lorastudio.ui.help_texts import (ADAM8_TIP, CHECKPOINTING_TIP, CKPT_TIP, DEFAULT_TIP, FORMAT_TIP, LR_TIP, NAME_TIP,
                                      OFFLOAD_TIP, PRESET_TIP, QUANT_TIP, RANK_TIP, RES_TIP, SAMPLE_TIP, SEED_TIP,
                                      STEPS_TIP, TRIGGER_TIP)
from lorastudio.ui.learning_rate import lr_advice
from lorastudio.ui.path_field import PathField
from lorastudio.ui.memory_presets import preset_savers

#: The LoRA file's key layout (config ``output.format``, one of ``config.OUTPUT_FORMATS``), as the
#: artist's tools name it.
OUTPUT_FORMAT_LABELS = {catalog.AUTO_FORMAT: "Automatic (recommended)",
                        "diffusers": "diffusers (Python, diffusers pipelines)",
                        "comfyui": "ComfyUI / kohya (Forge, SwarmUI)"}
QUANT_LABELS = {"none": "full precision (bf16)", "int8": "8-bit", "int4": "4-bit (NF4)"}
assert tuple(QUANT_LABELS) == QUANTIZATION


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
        self._facts = ModelFactsCache()

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
        self.format_note = QLabel("")  # when the chosen format will not load fully in ComfyUI
        theme.set_role(self.format_note, "warning")
        self.format_note.setWordWrap(True)
        self.format_note.hide()
        form.addRow("Folder", self.output_dir)
        form.addRow("Name", self.output_name)
        form.addRow("Format", self.output_format)
        form.addRow("", self.format_note)
        form.addRow("", self.output_file)
        layout.addWidget(box)

        # Advanced: the training recipe (collapsed; ui/advanced_section.py).
        self.advanced = AdvancedSection()
        self.advanced.changed.connect(self._changed)
        layout.addWidget(self.advanced)
        self.adapter_fields = AdapterFields()  # train.adapter / lokr_factor (adapter_fields.py)
        layout.addWidget(self.adapter_fields)

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
        self.adapter_fields.changed.connect(self._changed)
        self.model_info: ModelFolderInfo = detect_model_folder("")
        self._dataset_mode = None

    # -- load / read ----------------------------------------------------------------------

    def load(self, config: Config, project_path: Path | None) -> None:
        self._loading = True
        try:
            self._base = config
            self.set_values(values_from_config(config))
            self.preset.setCurrentIndex(0)
            self.set_project_path(project_path)
        finally:
            self._loading = False
        self._update_derived()

    def values(self) -> FormValues:
        """What the fields hold now."""
        return FormValues(
            model=self.model.text(), steps=self.steps.value(), learning_rate=self.lr.currentText(),
            rank=self.rank.currentText(), resolution=self.resolution.currentText(), seed=self.seed.value(),
            sample_every=self.sample_every.value(), checkpoint_every=self.checkpoint_every.value(),
            gradient_checkpointing=self.checkpointing.isChecked(),
            quantization=self.quantization.currentData() or "none", cpu_offload=self.offload.isChecked(),
            adam8=self.adam8.isChecked(), trigger=self.trigger.text(), default_caption=self.default_caption.text(),
            output_dir=self.output_dir.text(), output_name=self.output_name.text(),
            output_format=self.output_format.currentData() or catalog.AUTO_FORMAT, recipe=self.advanced.values(),
            adapter=self.adapter_fields.value(), lokr_factor=self.adapter_fields.lokr_factor.value())

    def set_values(self, v: FormValues) -> None:
        self.model.set_text(v.model)
        self.steps.setValue(v.steps)
        self.lr.setEditText(v.learning_rate)
        self.rank.setEditText(v.rank)
        self.resolution.setEditText(v.resolution)
        self.seed.setValue(v.seed)
        self.sample_every.setValue(v.sample_every)
        self.checkpoint_every.setValue(v.checkpoint_every)
        self._set_savers(v.memory_values())
        self.trigger.setText(v.trigger)
        self.default_caption.setText(v.default_caption)
        self.output_dir.set_text(v.output_dir)
        self.output_name.setText(v.output_name)
        self.output_format.setCurrentIndex(max(0, self.output_format.findData(v.output_format)))
        if v.recipe:
            self.advanced.set_values(v.recipe)
        self.adapter_fields.set_values(v.adapter, v.lokr_factor)

    def _set_savers(self, savers: dict) -> None:
        """The memory saver fields from ``train`` keys."""
        self.checkpointing.setChecked(savers["gradient_checkpointing"])
        self.quantization.setCurrentIndex(max(0, self.quantization.findData(savers["quantization"])))
        self.offload.setChecked(savers["cpu_offload"])
        self.adam8.setChecked(savers["optimizer"] == "adamw8bit")

    def repeats(self) -> dict[str, int]:
        """``dataset.repeats``: set from the dataset grid's context menu, kept in the base config."""
        return dict(self._base.dataset.repeats) if self._base else {}

    def set_repeat(self, name: str, count: int) -> None:
        if self._base is None:
            return
        repeats = {**self._base.dataset.repeats, name: count}
        if count <= 1:
            repeats.pop(name)
        self._base = with_changes(self._base, dataset={"repeats": repeats})
        self._changed()

    def held_out(self) -> list[str]:
        """``dataset.validation``: the sets held out from the dataset grid, kept in the base config."""
        return list(self._base.dataset.validation) if self._base else []

    def set_held_out(self, names: list[str]) -> None:
        if self._base is not None:
            self._base = with_changes(self._base, dataset={"validation": list(names)})
            self._changed()

    def set_project_path(self, path: Path | None) -> None:
        self.project_label.setText(f"Project file: {path}" if path else
                                   "Project not saved yet: it is saved beside the dataset folder when you "
                                   "train or press Ctrl+S.")

    def config(self) -> Config:
        """The settings as a validated Config (raises ConfigError naming the field)."""
        assert self._base is not None, "no project loaded"
        return config_from_values(self.values(), self._base)

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
        advice = lr_advice(self.lr.currentText(), info.typical_learning_rate)
        self.lr_note.setText(advice)
        self.lr_note.setVisible(bool(advice))
        fmt = self.output_format.currentData() or catalog.AUTO_FORMAT
        warning = catalog.comfyui_warning(fmt, info.family, self.adapter_fields.value()) if info.supported else ""
        self.format_note.setText(warning)
        self.format_note.setVisible(bool(warning))
        self.output_format.setToolTip(FORMAT_TIP + (f"<br><br>{catalog.describe_format(fmt, info.family)}."
                                                    if info.supported else ""))
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
        return self.values().memory_values()

    def _preset_chosen(self, index: int) -> None:
        preset_id = self.preset.itemData(index)
        if not preset_id or self._loading:
            return
        resolution, savers = preset_savers(preset_id, self._facts.get(self.model.text()),
                                           whole_number_or(self.rank.currentText(), 16), self.values().input_size)
        self._applying_preset = True
        try:
            self.resolution.setEditText(str(resolution))
            self._set_savers(savers)
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
        self.estimate_label.setText(estimate_html(self._facts.get(self.model.text()), self.values(),
                                                  self.preset.currentData() or ""))
        theme.set_role(self.estimate_label, "muted")
