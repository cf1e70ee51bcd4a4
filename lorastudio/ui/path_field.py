"""A folder path the artist can type or pick: the model and output folders of the Train page."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import Signal
from PySide6.QtWidgets import QFileDialog, QHBoxLayout, QLineEdit, QPushButton, QWidget


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
