"""Where the main window opens: a fraction of the screen, never larger, centred; a remembered
geometry only while it still fits a connected screen."""

from __future__ import annotations

import pytest
from PySide6.QtCore import QRect
from PySide6.QtGui import QGuiApplication

from lorastudio.ui.app import create_window
from lorastudio.ui.settings import Settings
from lorastudio.ui.window_geometry import (COMFORTABLE, FRACTION, TITLE_BAR, contains, default_geometry, dialog_size,
                                           fits_a_screen, saved_frame)

LAPTOP = (0, 0, 1280, 720)
LAPTOP_WITH_TASKBAR = (0, 0, 1280, 672)
FULL_HD_150 = (0, 0, 1280, 720)       # 1920×1080 at 150 %: the same logical pixels
UHD_200 = (0, 0, 1920, 1080)          # 3840×2160 at 200 %
BIG = (0, 0, 2560, 1440)
SECOND_MONITOR = (2560, 200, 1920, 1080)  # to the right, lower


@pytest.mark.parametrize("screen", [LAPTOP, LAPTOP_WITH_TASKBAR, UHD_200, BIG, SECOND_MONITOR, (0, 0, 1024, 600)])
def test_default_is_inside_the_screen_centred_with_room_for_the_title_bar(screen):
    x, y, w, h = default_geometry(screen)
    sx, sy, sw, sh = screen
    assert contains(screen, (x, y - TITLE_BAR, w, h + TITLE_BAR)), "window and title bar on the screen"
    assert abs((x - sx) - (sx + sw - (x + w))) <= 1, "centred across"
    assert abs((y - TITLE_BAR - sy) - (sy + sh - (y + h))) <= 1, "centred down (title bar included)"


def test_big_screens_get_a_fraction_small_ones_nearly_all_of_it():
    assert default_geometry(BIG)[2:] == (round(2560 * FRACTION), round(1440 * FRACTION))
    assert default_geometry(UHD_200)[2:] == (round(1920 * FRACTION), round(1080 * FRACTION))
    # On a laptop 85 % would be cramped: the comfortable size, as far as the screen allows.
    assert default_geometry(LAPTOP)[2:] == COMFORTABLE
    assert default_geometry(LAPTOP_WITH_TASKBAR)[2:] == (COMFORTABLE[0], 672 - TITLE_BAR)
    assert default_geometry((0, 0, 1024, 600))[2:] == (1024, 600 - TITLE_BAR)


def test_a_remembered_geometry_counts_only_while_it_fits_a_connected_screen():
    screens = [BIG, SECOND_MONITOR]
    on_second = (2700, 300, 1500, 900)
    assert fits_a_screen(on_second, screens)
    assert not fits_a_screen(on_second, [BIG]), "the second monitor was unplugged"
    assert not fits_a_screen((0, 30, 1800, 1000), [LAPTOP]), "saved on a 4K monitor, now on a laptop"
    assert not fits_a_screen((2400, 300, 400, 400), screens), "straddling two screens fits neither"


def test_a_damaged_record_is_no_remembered_geometry():
    from PySide6.QtCore import QByteArray

    assert saved_frame(QByteArray(b"not a geometry")) is None
    assert saved_frame(QByteArray()) is None


def test_dialogs_keep_their_size_unless_the_screen_is_smaller():
    assert dialog_size(LAPTOP, (820, 560)) == (820, 560)
    w, h = dialog_size((0, 0, 1024, 600), (1100, 560))
    assert w <= 1024 and h + TITLE_BAR <= 600


def _rect(r: QRect) -> tuple[int, int, int, int]:
    return r.x(), r.y(), r.width(), r.height()


def test_the_window_restores_what_fits_and_ignores_what_no_longer_does(qtbot):
    available = _rect(QGuiApplication.primaryScreen().availableGeometry())
    first = create_window()
    qtbot.addWidget(first)
    assert _rect(first.geometry()) == default_geometry(available)
    first.show()
    first.setGeometry(30, 40, 1100, 600)
    first.close()
    again = create_window()
    qtbot.addWidget(again)
    assert _rect(again.geometry()) == (30, 40, 1100, 600)
    again.show()
    again.setGeometry(900, 300, 1100, 600)  # hangs off the right and bottom of the 1280×720 screen
    again.close()
    assert saved_frame(Settings().geometry())[0] > 800, "saved where it was left"
    third = create_window()
    qtbot.addWidget(third)
    assert _rect(third.geometry()) == default_geometry(available)
    third.close()
