"""An icon drawn from SVG at exactly the size and device pixel ratio it is shown at.

Pre-rendered pixmaps at 1× and 2× look soft at 150 % (Qt scales the nearest one) and at
any size between the ones made; an icon engine that renders the SVG on request is crisp at
every scale. Rendered pixmaps are kept per size, scale and mode, so repaints cost nothing.
"""

from __future__ import annotations

from PySide6.QtCore import QByteArray, QRect, QRectF, QSize, Qt
from PySide6.QtGui import QIcon, QIconEngine, QPainter, QPixmap
from PySide6.QtSvg import QSvgRenderer


class SvgIconEngine(QIconEngine):
    """``svg`` for the normal look; ``disabled_svg`` (a muted colour) for disabled actions."""

    def __init__(self, svg: bytes, disabled_svg: bytes | None = None) -> None:
        super().__init__()
        self._svg = svg
        self._disabled_svg = disabled_svg
        self._renderers = {False: QSvgRenderer(QByteArray(svg))}
        if disabled_svg is not None:
            self._renderers[True] = QSvgRenderer(QByteArray(disabled_svg))
        self._pixmaps: dict[tuple[int, int, float, bool], QPixmap] = {}

    def is_valid(self) -> bool:
        return self._renderers[False].isValid()

    def _renderer(self, mode: QIcon.Mode) -> QSvgRenderer:
        return self._renderers.get(mode == QIcon.Mode.Disabled, self._renderers[False])

    def scaledPixmap(self, size: QSize, mode: QIcon.Mode, state: QIcon.State, scale: float) -> QPixmap:
        disabled = mode == QIcon.Mode.Disabled and True in self._renderers
        key = (size.width(), size.height(), scale, disabled)
        pm = self._pixmaps.get(key)
        if pm is None:
            pm = QPixmap(QSize(max(1, round(size.width() * scale)), max(1, round(size.height() * scale))))
            pm.fill(Qt.GlobalColor.transparent)
            painter = QPainter(pm)
            painter.setRenderHint(QPainter.RenderHint.Antialiasing)
            self._renderer(mode).render(painter, QRectF(pm.rect()))
            painter.end()
            pm.setDevicePixelRatio(scale)
            if len(self._pixmaps) > 64:
                self._pixmaps.clear()
            self._pixmaps[key] = pm
        return pm

    def pixmap(self, size: QSize, mode: QIcon.Mode, state: QIcon.State) -> QPixmap:
        return self.scaledPixmap(size, mode, state, 1.0)

    def paint(self, painter: QPainter, rect: QRect, mode: QIcon.Mode, state: QIcon.State) -> None:
        scale = painter.device().devicePixelRatioF() if painter.device() is not None else 1.0
        painter.drawPixmap(rect, self.scaledPixmap(rect.size(), mode, state, scale))

    def actualSize(self, size: QSize, mode: QIcon.Mode, state: QIcon.State) -> QSize:
        return size

    def clone(self) -> QIconEngine:
        return SvgIconEngine(self._svg, self._disabled_svg)


def svg_icon(svg: str, disabled_svg: str | None = None) -> QIcon:
    """A QIcon for this SVG text (a null icon if it does not parse)."""
    engine = SvgIconEngine(svg.encode("utf-8"), disabled_svg.encode("utf-8") if disabled_svg else None)
    return QIcon(engine) if engine.is_valid() else QIcon()
