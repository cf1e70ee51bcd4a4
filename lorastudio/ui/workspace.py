"""A project's pages: an error banner over the Dataset · Train · Test tabs."""

from __future__ import annotations

from PySide6.QtWidgets import QTabWidget, QVBoxLayout, QWidget

from lorastudio.ui import theme
from lorastudio.ui.message_bar import MessageBar
from lorastudio.ui.compare_page import ComparePage
from lorastudio.ui.dataset_page import DatasetPage
from lorastudio.ui.thumbnails import ThumbnailLoader
from lorastudio.ui.training_page import TrainingPage

#: Tab label and icon name, in tab order.
TABS = (("Dataset", "dataset"), ("Train", "train"), ("Test", "test"))


class Workspace(QWidget):
    def __init__(self, loader: ThumbnailLoader, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.banner = MessageBar("error")
        self.tabs = QTabWidget()
        self.tabs.setDocumentMode(True)
        self.dataset_page = DatasetPage(loader)
        self.training_page = TrainingPage(loader)
        self.compare_page = ComparePage(loader)
        for page, (label, _icon) in zip((self.dataset_page, self.training_page, self.compare_page), TABS):
            self.tabs.addTab(page, label)
        # the grid's "Repeats per epoch…" edits dataset.repeats in the settings
        self.dataset_page.repeats_of = lambda name: self.training_page.form.repeats().get(name, 1)
        self.dataset_page.repeats_requested.connect(self.training_page.form.set_repeat)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(0)
        layout.addWidget(self.banner)
        layout.addWidget(self.tabs, 1)

    def set_running(self, running: bool) -> None:
        """Mark the Train tab while a run goes on (visible from the other tabs)."""
        self.tabs.setTabText(1, "Train ●" if running else "Train")

    def refresh_theme(self) -> None:
        for i, (_label, icon) in enumerate(TABS):
            self.tabs.setTabIcon(i, theme.icon(icon))
        self.dataset_page.refresh_theme()
        self.training_page.run.refresh_theme()
