"""The Train tab: the settings (left, scrolling) and the run (right).

The form edits a ``Config``; the main window saves it as the project TOML and starts the
worker through ``RunControl``. The pieces: ``settings_form`` (the fields), ``run_panel``
(progress, loss curve, samples, log). Above them, an offer to hold sets out for validation
appears when none are (``holdout``).
"""

from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QFrame, QScrollArea, QSizePolicy, QSplitter, QVBoxLayout, QWidget

from lorastudio.ui.message_bar import MessageBar
from lorastudio.ui.run_panel import RunPanel
from lorastudio.ui.settings_form import SettingsForm
from lorastudio.ui.thumbnails import ThumbnailLoader


class TrainingPage(QWidget):
    def __init__(self, loader: ThumbnailLoader, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(0)
        #: "Hold out N sets for validation?" (hidden unless offered; ``holdout.HoldOut`` fills it).
        self.holdout_offer = MessageBar("info", self)
        layout.addWidget(self.holdout_offer)
        self.splitter = QSplitter(Qt.Orientation.Horizontal)
        layout.addWidget(self.splitter, 1)
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
