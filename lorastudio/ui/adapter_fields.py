"""The Train page's collapsed "Advanced: adapter type" block (``train.adapter``, ``train.lokr_factor``).

Kept apart from the other advanced options (timestep/LR/EMA) so each block stays one job;
collapsed by default because plain LoRA is the right choice for most artists.
"""

from __future__ import annotations

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import QComboBox, QFormLayout, QLabel, QSpinBox, QToolButton, QVBoxLayout, QWidget

#: train.adapter → (label, one-line explanation).
ADAPTER_CHOICES = {
    "lora": ("LoRA", "The standard low-rank adapter; loads everywhere."),
    "dora": ("DoRA", "LoRA plus a learned strength per output row; often a little more faithful, a bit slower."),
    "lokr": ("LoKr", "A Kronecker-product adapter (LyCORIS); SimpleTuner finds it often beats LoRA on Kontext."),
}


class AdapterFields(QWidget):
    """A toggle button that shows/hides the adapter choice and the LoKr factor."""

    changed = Signal()

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        self.toggle = QToolButton(text="Advanced: adapter type", checkable=True, checked=False)
        self.toggle.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextBesideIcon)
        self.toggle.setArrowType(Qt.ArrowType.RightArrow)
        self.toggle.toggled.connect(self._show)
        self.body = QWidget()
        form = QFormLayout(self.body)
        self.adapter = QComboBox()
        for value, (label, tip) in ADAPTER_CHOICES.items():
            self.adapter.addItem(label, value)
            self.adapter.setItemData(self.adapter.count() - 1, tip, Qt.ItemDataRole.ToolTipRole)
        self.explanation = QLabel("")
        self.explanation.setWordWrap(True)
        self.lokr_factor = QSpinBox()
        self.lokr_factor.setRange(-1, 64)
        self.lokr_factor.setSpecialValueText("automatic")
        self.lokr_factor.setToolTip("LoKr only: the size of the Kronecker factor (automatic: as square as possible)")
        form.addRow("Adapter", self.adapter)
        form.addRow("", self.explanation)
        form.addRow("LoKr factor", self.lokr_factor)
        layout.addWidget(self.toggle)
        layout.addWidget(self.body)
        self.body.hide()
        self.adapter.currentIndexChanged.connect(self._adapter_changed)
        self.lokr_factor.valueChanged.connect(lambda *_: self.changed.emit())
        self._adapter_changed()

    def _show(self, shown: bool) -> None:
        self.body.setVisible(shown)
        self.toggle.setArrowType(Qt.ArrowType.DownArrow if shown else Qt.ArrowType.RightArrow)

    def _adapter_changed(self, *_args) -> None:
        value = self.value()
        self.explanation.setText(ADAPTER_CHOICES[value][1])
        self.lokr_factor.setEnabled(value == "lokr")
        if value != "lokr":
            self.lokr_factor.setValue(-1)  # the factor is only a LoKr setting (config refuses it otherwise)
        self.changed.emit()

    def value(self) -> str:
        return self.adapter.currentData() or "lora"

    def set_values(self, adapter: str, lokr_factor: int) -> None:
        self.adapter.setCurrentIndex(max(0, self.adapter.findData(adapter)))
        self.lokr_factor.setValue(lokr_factor if lokr_factor == -1 or lokr_factor >= 1 else -1)
        if adapter != "lora":  # a project that uses it shows it
            self.toggle.setChecked(True)
