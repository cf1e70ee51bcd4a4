"""The Train page's settings panel fits its form: no sideways scrollbar, no fields cut off."""

from __future__ import annotations

from PySide6.QtCore import Qt

from lorastudio.ui.thumbnails import ThumbnailLoader
from lorastudio.ui.training_page import TrainingPage


def test_settings_panel_is_never_narrower_than_its_form(qtbot):
    loader = ThumbnailLoader(None)
    page = TrainingPage(loader)
    qtbot.addWidget(page)
    page.resize(1100, 800)
    page.show()
    qtbot.waitExposed(page)
    scroll = page.settings_scroll
    assert scroll.horizontalScrollBarPolicy() == Qt.ScrollBarPolicy.ScrollBarAlwaysOff
    # Even with the splitter dragged as far left as it goes, the form keeps its minimum width.
    page.splitter.setSizes([10, 1090])
    qtbot.wait(10)
    assert page.splitter.sizes()[0] > 0
    assert scroll.viewport().width() >= page.form.minimumSizeHint().width()
    loader.shutdown()
