"""A slim non-modal bar for a message and its buttons, used wherever the app has something to
say that must not block the artist: a caption conflict, a run's error or result, a folder
that vanished."""

from __future__ import annotations

from PySide6.QtWidgets import QFrame, QHBoxLayout, QLabel, QPushButton, QSizePolicy, QWidget


class MessageBar(QFrame):
    """A slim non-modal bar with a message and buttons (warning / error / info)."""

    def __init__(self, kind: str = "warning", parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setProperty("bar", kind)
        layout = QHBoxLayout(self)
        layout.setContentsMargins(10, 6, 6, 6)
        layout.setSpacing(8)
        self.label = QLabel(self)
        self.label.setWordWrap(True)
        self.label.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Preferred)
        layout.addWidget(self.label, 1)
        self._buttons_layout = layout
        self.hide()

    def set_kind(self, kind: str) -> None:
        self.setProperty("bar", kind)
        self.style().unpolish(self)
        self.style().polish(self)

    def add_button(self, text: str, slot, tooltip: str = "") -> QPushButton:
        b = QPushButton(text, self)
        if tooltip:
            b.setToolTip(tooltip)
        b.clicked.connect(slot)
        self._buttons_layout.addWidget(b)
        return b

    def show_message(self, text: str) -> None:
        self.label.setText(text)
        self.show()
