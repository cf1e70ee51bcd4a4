"""Issue 14 in the dataset grid and on the Train page: holding sets out for validation
(``dataset.validation``), the mark on their thumbnails, what is refused, and the one-click offer."""

from __future__ import annotations

import pytest
from PySide6.QtCore import QItemSelectionModel, QModelIndex
from PySide6.QtGui import QImage, QPainter
from PySide6.QtWidgets import QStyleOptionViewItem

from lorastudio.config import load_config
from lorastudio.ui import theme
from lorastudio.ui.app import create_window
from lorastudio.ui.holdout import spread_pick, suggested_count
from lorastudio.ui.set_model import HeldOutRole

from .conftest import make_dataset
from .test_main_window import model_folder, open_and_wait


@pytest.fixture
def window(qtbot):
    w = create_window(kill_timeout=2.0)
    w.ask = lambda *a: "keep" if "keep" in a[2] else "stop"
    qtbot.addWidget(w)
    w.resize(1280, 720)
    w.show()
    yield w
    w.close()


def test_the_offer_picks_about_ten_percent_spread_across_the_dataset():
    assert [suggested_count(n) for n in (12, 19, 25, 40)] == [2, 2, 3, 4]
    names = [f"s{i:02d}" for i in range(20)]
    assert spread_pick(names, 2) == ["s05", "s15"]
    assert spread_pick(names, 4) == ["s02", "s07", "s12", "s17"]
    assert spread_pick(names, 4) == spread_pick(list(names), 4)  # deterministic
    assert spread_pick(names[:1], 2) == ["s00"]


def _cell_image(page, name: str) -> QImage:
    """The grid cell of set ``name`` painted by the set delegate."""
    index = page.proxy.mapFromSource(page.model.index_of(name))
    option = QStyleOptionViewItem()
    option.initFrom(page.grid)
    size = page.delegate.sizeHint(option, index)
    option.rect = page.grid.visualRect(index).translated(-page.grid.visualRect(index).topLeft())
    option.rect.setSize(size)
    image = QImage(size, QImage.Format.Format_ARGB32)
    image.fill(0)
    painter = QPainter(image)
    page.delegate.paint(painter, option, index)
    painter.end()
    return image


def _count_color(image: QImage, color) -> int:
    return sum(image.pixelColor(x, y) == color for y in range(0, image.height(), 2) for x in range(0, image.width(), 2))


def test_holding_out_sets_marks_them_and_goes_into_the_config(qtbot, window, tmp_path):
    root = make_dataset(tmp_path / "ds", sets=5)
    open_and_wait(qtbot, window, root)
    window.form.model.set_text(str(model_folder(tmp_path)))
    page = window.dataset_page
    assert not window.training_page.holdout_offer.isVisible()  # 5 sets: no offer
    # select two sets (Ctrl+click in the grid) and use the context menu
    for name in ("set001", "set003"):
        page.grid.selectionModel().select(page.proxy.mapFromSource(page.model.index_of(name)),
                                          QItemSelectionModel.SelectionFlag.Select)
    assert page.selected_names() == ["set000", "set001", "set003"]
    page.grid.selectionModel().select(page.proxy.mapFromSource(page.model.index_of("set000")),
                                      QItemSelectionModel.SelectionFlag.Deselect)
    menu = page.grid_menu("set001")
    texts = [a.text() for a in menu.actions()]
    assert texts[0] == "Hold out for validation (2 sets)" and "Draft Captions…" in " ".join(texts)
    green = theme.colors().q("success")
    plain = _count_color(_cell_image(page, "set001"), green)
    menu.actions()[0].trigger()
    assert window.form.held_out() == ["set001", "set003"]
    assert window.form.config().dataset.validation == ["set001", "set003"]
    assert window.isWindowModified()
    assert page.model.index_of("set001").data(HeldOutRole) and not page.model.index_of("set000").data(HeldOutRole)
    assert _count_color(_cell_image(page, "set001"), green) > plain + 50  # the tint, outline and badge
    assert "2 held out" in page.count_label.text()
    page.set_filter("held_out")  # the filter finds them among many
    assert page.proxy.rowCount() == 2 and page.count_label.text().startswith("2 of 5 sets")
    page.set_filter("all")
    assert "held out" in page.model.index_of("set001").data(0x0003).lower()  # the tooltip says so
    # saving writes dataset.validation into the project file
    assert window.save_project()
    assert load_config(window.project.path, check_paths=False).dataset.validation == ["set001", "set003"]
    # held-out sets have no repeats; the menu says why
    repeats = [a for a in page.grid_menu("set003").actions() if a.text().startswith("Repeats")][0]
    assert not repeats.isEnabled() and "held out" in repeats.text()
    # and back to training
    page.grid.selectionModel().clearSelection()
    menu = page.grid_menu("set003")
    assert menu.actions()[0].text() == "Use for training"
    menu.actions()[0].trigger()
    assert window.form.held_out() == ["set001"]


def test_refused_hold_outs_say_why(qtbot, window, tmp_path):
    root = make_dataset(tmp_path / "ds", sets=3)
    open_and_wait(qtbot, window, root)
    messages = []
    window.hold_out.message.connect(lambda text, _ms: messages.append(text))
    assert not window.hold_out.request(["set000", "set001", "set002"], True)
    assert "at least one set must stay in training" in messages[-1] and window.form.held_out() == []
    window.form.set_repeat("set002", 3)
    assert not window.hold_out.request(["set002"], True)
    assert "set002 (×3)" in messages[-1] and "Repeats per epoch" in messages[-1]
    assert window.hold_out.request(["set000", "set001"], True)
    assert not window.hold_out.request(["set002"], True) and window.form.held_out() == ["set000", "set001"]
    assert window.statusBar().currentMessage() == messages[-1]


def test_the_offer_appears_at_twelve_sets_and_waits_for_a_click(qtbot, window, tmp_path):
    root = make_dataset(tmp_path / "ds", sets=11)
    open_and_wait(qtbot, window, root)
    offer = window.training_page.holdout_offer
    window.tabs.setCurrentWidget(window.training_page)
    assert not offer.isVisible()
    make_dataset(root, sets=20)  # the folder grows to 20 sets
    with qtbot.waitSignal(window.dataset_loaded, timeout=15000):
        window.rescan()
    assert offer.isVisible() and "Hold out 2 sets (about 10 %, at least 2) for validation" in offer.label.text()
    assert window.form.held_out() == [] and not window.isWindowModified()  # nothing happens by itself
    window.hold_out.offer_button.click()
    assert window.form.held_out() == ["set005", "set015"] and not offer.isVisible()
    # giving them back brings the offer back; "Not now" puts it away
    window.hold_out.request(["set005", "set015"], False)
    assert offer.isVisible()
    [b for b in offer.findChildren(type(window.hold_out.offer_button)) if b.text() == "Not now"][0].click()
    assert not offer.isVisible() and window.form.held_out() == []
