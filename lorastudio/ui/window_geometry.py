"""Where the main window opens: sized from the screen it opens on, never larger, centred.

Artists run the app on anything from a 1280×720 laptop (or a 1920×1080 panel at 150 %,
which Qt sees as the same 1280×720 logical pixels) to a 4K monitor at 200 %. A fixed
window size hangs off the small screens, so the first size is a fraction of the screen's
*available* area (``QScreen.availableGeometry()``: without task bars and docks). A size
remembered from the last run is used only while it still fits a connected screen —
monitors get unplugged — otherwise the default applies.

The decisions are pure functions of rectangles ``(x, y, width, height)`` in logical
pixels, so they are tested without a display; ``place_window`` applies them to a window.
"""

from __future__ import annotations

from collections.abc import Iterable

from PySide6.QtCore import QByteArray, QDataStream, QIODevice, QRect
from PySide6.QtGui import QGuiApplication
from PySide6.QtWidgets import QWidget

Rect = tuple[int, int, int, int]  # x, y, width, height (logical pixels)

#: Share of the available area the first window takes: room around it on big screens.
FRACTION = 0.85
#: Below this the window would be cramped, so small screens are filled instead (up to all of it).
COMFORTABLE = (1200, 660)
#: Room for the title bar the window manager adds above the window's own geometry.
TITLE_BAR = 32


def default_geometry(available: Rect, fraction: float = FRACTION) -> Rect:
    """The first window: ``fraction`` of the available area, at least COMFORTABLE, never larger
    than the area (less the title bar), centred in it."""
    ax, ay, aw, ah = available
    room_w, room_h = aw, max(1, ah - TITLE_BAR)
    width = min(room_w, max(round(aw * fraction), COMFORTABLE[0]))
    height = min(room_h, max(round(ah * fraction), COMFORTABLE[1]))
    x = ax + (aw - width) // 2
    y = ay + TITLE_BAR + (room_h - height) // 2
    return x, y, width, height


def dialog_size(available: Rect, preferred: tuple[int, int], fraction: float = 0.9) -> tuple[int, int]:
    """A dialog's first size: what it prefers, but at most ``fraction`` of the available area
    (less the title bar), so on a small screen it never opens bigger than the screen."""
    _, _, aw, ah = available
    return min(preferred[0], round(aw * fraction)), min(preferred[1], round((ah - TITLE_BAR) * fraction))


def contains(outer: Rect, inner: Rect) -> bool:
    ox, oy, ow, oh = outer
    ix, iy, iw, ih = inner
    return iw > 0 and ih > 0 and ox <= ix and oy <= iy and ix + iw <= ox + ow and iy + ih <= oy + oh


def fits_a_screen(window: Rect, screens: Iterable[Rect]) -> bool:
    """True when the window lies wholly inside the available area of one connected screen."""
    return any(contains(screen, window) for screen in screens)


def _rect(r: QRect) -> Rect:
    return r.x(), r.y(), r.width(), r.height()


_GEOMETRY_MAGIC = 0x1D9D0CB  # QWidget::saveGeometry's record header


def saved_frame(saved: QByteArray) -> Rect | None:
    """The outer (frame) rectangle in a ``QWidget.saveGeometry()`` record, read before restoring
    it: ``restoreGeometry`` would quietly pull an off-screen window back, at its old size. The
    record starts with a magic number, two version numbers, then the frame geometry."""
    stream = QDataStream(saved, QIODevice.OpenModeFlag.ReadOnly)
    if stream.readUInt32() != _GEOMETRY_MAGIC:
        return None
    stream.readUInt16(), stream.readUInt16()  # format version
    frame = QRect()
    stream >> frame
    return _rect(frame) if stream.status() == QDataStream.Status.Ok and frame.isValid() else None


def size_dialog(dialog: QWidget, preferred: tuple[int, int]) -> None:
    """Resize a dialog to ``dialog_size`` on the screen it opens on (its parent's)."""
    parent = dialog.parentWidget()
    screen = (parent.screen() if parent is not None else None) or QGuiApplication.primaryScreen()
    if screen is None:
        dialog.resize(*preferred)
        return
    dialog.resize(*dialog_size(_rect(screen.availableGeometry()), preferred))


def place_window(window: QWidget, remembered: QByteArray | None) -> None:
    """Give a not-yet-shown window its first geometry: the remembered one if it still fits a
    connected screen, else the default on the screen the window opens on."""
    screen = window.screen() or QGuiApplication.primaryScreen()
    if screen is None:  # no screen at all (nothing to fit): Qt's own handling
        window.resize(*COMFORTABLE)
        return
    screens = [_rect(s.availableGeometry()) for s in QGuiApplication.screens()]
    frame = saved_frame(remembered) if remembered is not None else None
    if frame is not None and fits_a_screen(frame, screens) and window.restoreGeometry(remembered):
        return
    window.setGeometry(QRect(*default_geometry(_rect(screen.availableGeometry()))))


def restore_layout(window, settings, splitters: dict) -> None:
    """The window's place (``place_window``), its docks/toolbars and its splitters, as last left."""
    place_window(window, settings.geometry())
    state = settings.window_state()
    if state is not None:
        window.restoreState(state)
    for name, splitter in splitters.items():
        saved = settings.splitter(name)
        if isinstance(saved, QByteArray):
            splitter.restoreState(saved)


def remember_layout(window, settings, splitters: dict) -> None:
    """Save what ``restore_layout`` reads back, and flush it to disk now (the app is closing)."""
    settings.set_geometry(window.saveGeometry(), window.saveState())
    for name, splitter in splitters.items():
        settings.set_splitter(name, splitter.saveState())
    settings.sync()
