"""Is anything cut off? Checks on a shown window's widgets, shared by the screen-size tests
(and the 200 % probe, which imports this file in a fresh interpreter)."""

from __future__ import annotations

from PySide6.QtCore import QPoint, QRect
from PySide6.QtWidgets import QAbstractScrollArea, QWidget


def in_scroll_content(widget: QWidget, top: QWidget) -> bool:
    """True when the widget sits inside a scroll area's viewport (it may scroll out of sight)."""
    p = widget.parentWidget()
    while p is not None and p is not top:
        area = p.parentWidget()
        if isinstance(area, QAbstractScrollArea) and p is area.viewport():
            return True
        p = area
    return False


def rect_in(widget: QWidget, top: QWidget) -> QRect:
    return QRect(widget.mapTo(top, QPoint(0, 0)), widget.size())


def squeezed(w: QWidget) -> bool:
    """Laid out smaller than its layout needs (a splitter or a too-small window squeezes
    children below their minimum: their own children then overlap or spill out)."""
    layout = w.layout()
    if layout is None or w.minimumSize().width() or w.minimumSize().height():
        return False
    need = layout.totalMinimumSize()
    return w.width() < need.width() or w.height() < need.height()


def widgets_cut_off(top: QWidget) -> list[str]:
    """Every visible widget of ``top`` that does not lie wholly inside it, or is squeezed."""
    bad = []
    for w in top.findChildren(QWidget):
        if not w.isVisible() or w.isWindow() or w.window() is not top or in_scroll_content(w, top):
            continue
        r = rect_in(w, top)
        if not top.rect().contains(r) or squeezed(w):
            text = getattr(w, "text", None)
            name = w.objectName() or (text() if callable(text) else "")
            bad.append(f"{type(w).__name__} {name!r} at {r.x()},{r.y()} {r.width()}×{r.height()}"
                       + (" (squeezed)" if squeezed(w) else ""))
    return bad


def fully_visible(widget: QWidget) -> bool:
    """Shown, and not clipped by any parent (a scroll area's viewport included) up to its window."""
    if not widget.isVisible() or widget.width() <= 0 or widget.height() <= 0:
        return False
    top = widget.window()
    p = widget.parentWidget()
    while p is not None:
        if not p.rect().contains(rect_in(widget, p)):
            return False
        if p is top:
            return True
        p = p.parentWidget()
    return True
