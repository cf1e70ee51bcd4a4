"""The app fits a 1280×720 laptop screen (the screen tests/conftest.py gives Qt).

The window opens at the size the app picks from the screen — the tests never resize it —
and on every page every visible widget lies inside the window (what sits inside a scroll
area counts only through the scroll area), so nothing is cut off; the controls an artist
cannot do without (Train/Stop, next/previous set, the Problems list) are fully visible
without scrolling. Dialogs fit the screen too.
"""

from __future__ import annotations

import sys

import pytest
from PySide6.QtCore import QRect
from PySide6.QtGui import QGuiApplication
from PySide6.QtWidgets import QApplication

from lorastudio.ui.app import create_window
from lorastudio.ui.window_geometry import default_geometry

from .conftest import FAKE_WORKER, SCREEN, make_dataset
from .layout_checks import fully_visible, widgets_cut_off
from .test_main_window import model_folder, open_and_wait


def screen_rect() -> QRect:
    return QGuiApplication.primaryScreen().availableGeometry()


@pytest.fixture
def window(qtbot):
    w = create_window(kill_timeout=2.0)
    w.ask = lambda *a: "keep" if "keep" in a[2] else "stop"
    qtbot.addWidget(w)
    w.show()
    qtbot.waitExposed(w)
    yield w
    w.close()


def settle(qtbot) -> None:
    qtbot.wait(50)
    QApplication.processEvents()


def test_the_test_screen_is_a_1280x720_laptop():
    screen = QGuiApplication.primaryScreen()
    assert (screen.geometry().width(), screen.geometry().height()) == (SCREEN["width"], SCREEN["height"])


def test_window_opens_inside_the_screen_at_the_size_the_app_picks(window):
    available = screen_rect()
    assert available.contains(window.frameGeometry())
    x, y, w, h = default_geometry((available.x(), available.y(), available.width(), available.height()))
    assert (window.width(), window.height()) == (w, h)
    assert window.minimumSizeHint().width() <= w and window.minimumSizeHint().height() <= h


def test_every_page_fits_and_the_key_controls_are_visible(qtbot, window, tmp_path, monkeypatch):
    assert widgets_cut_off(window) == [], "welcome page"
    root = make_dataset(tmp_path / "ds", sets=12, inputs=2, size=(640, 480), captions=8, missing_end=(3,))
    (root / "stray.txt").write_text("no image", encoding="utf-8")
    open_and_wait(qtbot, window, root)
    window.form.model.set_text(str(model_folder(tmp_path)))
    page = window.dataset_page
    page.select_set("set003")  # a set with problems: the detail panel shows them
    settle(qtbot)
    size = window.size()

    window.tabs.setCurrentWidget(page)
    settle(qtbot)
    assert widgets_cut_off(window) == [], "Dataset page"
    detail = page.detail
    for w in (detail.prev_button, detail.next_button, page.problems_panel, page.problems_panel.tree,
              detail.caption, detail.problems, page.grid):
        assert fully_visible(w), f"{type(w).__name__} on the Dataset page is cut off"

    window.tabs.setCurrentWidget(window.training_page)
    settle(qtbot)
    assert widgets_cut_off(window) == [], "Train page"
    rp = window.run_panel
    for w in (rp.train_button, rp.stop_button, rp.resume_button):
        assert fully_visible(w), f"{w.text()} on the Train page is cut off"

    # While a run shows its progress, samples and a finished bar, the buttons stay in view.
    from lorastudio.ui import runner as runner_module

    monkeypatch.setattr(runner_module.protocol, "worker_command_line",
                        lambda config, resume=False: [sys.executable, str(FAKE_WORKER), "normal", "20"])
    with qtbot.waitSignal(window.runner.finished, timeout=20000):
        assert window.start_training()
    settle(qtbot)
    assert widgets_cut_off(window) == [], "Train page after a run"
    for w in (rp.train_button, rp.stop_button, rp.done_bar):
        assert fully_visible(w), f"{type(w).__name__} on the Train page after a run is cut off"

    window.tabs.setCurrentWidget(window.compare_page)
    settle(qtbot)
    assert widgets_cut_off(window) == [], "Test page"
    assert window.size() == size, "no page grows the window"
    assert screen_rect().contains(window.frameGeometry())


def test_dialogs_fit_the_screen(qtbot, window, tmp_path):
    from lorastudio.ui.sample_gallery import Sample, SampleViewer

    root = make_dataset(tmp_path / "ds", sets=3, size=(640, 480))
    open_and_wait(qtbot, window, root)
    window.open_bulk_dialog()
    dialogs = [window.bulk_dialog]
    s = window.dataset.sets[0]
    sample = Sample(step=10, path=s.target, set_name=s.name, inputs=tuple(s.inputs), target=s.target)
    dialogs.append(SampleViewer(window.loader, [sample], 0, window))
    dialogs[-1].show()
    for dialog in dialogs:
        qtbot.waitExposed(dialog)
        settle(qtbot)
        assert screen_rect().contains(dialog.frameGeometry()), type(dialog).__name__
        assert widgets_cut_off(dialog) == [], type(dialog).__name__
        dialog.close()


def test_the_smallest_window_fits_a_laptop_and_squeezes_nothing(qtbot, window, tmp_path):
    """Made as small as it goes (its minimum comes from its pages' layouts), the window still
    fits a 1280×720 laptop with a task bar and its title bar, and no page is squeezed."""
    laptop = default_geometry((0, 0, 1280, 720 - 48))
    root = make_dataset(tmp_path / "ds", sets=6, inputs=2, size=(640, 480), captions=4, missing_end=(2,))
    open_and_wait(qtbot, window, root)
    window.dataset_page.select_set("set002")
    hint = window.minimumSizeHint()
    assert hint.width() <= laptop[2] and hint.height() <= laptop[3]
    window.resize(hint)
    for i in range(window.tabs.count()):
        window.tabs.setCurrentIndex(i)
        settle(qtbot)
        assert window.size() == hint
        assert widgets_cut_off(window) == [], window.tabs.tabText(i)
