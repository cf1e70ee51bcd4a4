"""A row of labelled images scaled to fit: the large before → after preview of a set, the
sample-vs-target comparison and the base-vs-LoRA test result all use it.

Images come from the thumbnail loader at a large box, so nothing decodes on the UI thread.
Double-click an image to open it in the system's image viewer.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from PySide6.QtCore import QPointF, QRectF, QSize, Qt, QUrl, Signal
from PySide6.QtGui import QDesktopServices, QFont, QFontMetrics, QMouseEvent, QPainter, QPainterPath, QPen, QPolygonF
from PySide6.QtWidgets import QSizePolicy, QWidget

from lorastudio.ui import theme
from lorastudio.ui.thumbnails import ImageRef, ThumbnailLoader, device_box, thumb_key

LABEL_H = 24
GAP = 12
ARROW_W = 28


@dataclass
class StripItem:
    label: str
    path: Path | None
    #: Text drawn in the slot when there is no image ("missing", "generating…").
    empty_text: str = "missing"
    #: Draw an arrow before this item (inputs → target).
    arrow_before: bool = False
    #: A missing image is a problem (red), not just "not there yet" (grey).
    missing_is_error: bool = True


class ImageStrip(QWidget):
    image_activated = Signal(str)

    def __init__(self, loader: ThumbnailLoader, parent: QWidget | None = None, box: int = 768,
                 empty_message: str = "") -> None:
        super().__init__(parent)
        self._loader = loader
        self._box = box  # logical pixels; decoded at device_box() for the screen's pixel ratio
        self._keys_box = 0
        self._items: list[StripItem] = []
        self._refs: list[ImageRef | None] = []
        self._rects: list[QRectF] = []
        self._last_aspect = 1.0
        self._keys: set[str] = set()
        self.empty_message = empty_message
        loader.ready.connect(self._maybe_update)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Expanding)
        self.setMinimumHeight(160)

    def sizeHint(self) -> QSize:
        return QSize(640, 320)

    def set_fit_height(self, fit: bool, max_height: int = 720) -> None:
        """Take just the height the images need at the current width (the preview above the caption)."""
        self._fit = fit
        self._max_height = max_height
        sp = self.sizePolicy()
        sp.setHeightForWidth(fit)
        sp.setVerticalPolicy(QSizePolicy.Policy.Preferred if fit else QSizePolicy.Policy.Expanding)
        self.setSizePolicy(sp)
        self.updateGeometry()

    def hasHeightForWidth(self) -> bool:
        return getattr(self, "_fit", False)

    def heightForWidth(self, width: int) -> int:
        n = len(self._items) or 2
        arrows = sum(1 for i in self._items if i.arrow_before)
        avail_w = width - 16 - (n - 1) * GAP - arrows * (ARROW_W - GAP)
        slot_h = max(60.0, avail_w / n / self._aspect())
        return int(min(slot_h + LABEL_H + 16, getattr(self, "_max_height", 720)))

    def set_items(self, items: list[StripItem]) -> None:
        self._items = list(items)
        self._refs = [ImageRef.of(i.path) if i.path else None for i in self._items]
        self._remember_keys()
        self.updateGeometry()
        self.update()

    def _remember_keys(self) -> None:
        """The loader keys of the images shown, to repaint when one arrives."""
        self._keys_box = device_box(self, self._box)
        self._keys = {thumb_key(r, self._keys_box) for r in self._refs if r is not None}

    def items(self) -> list[StripItem]:
        return list(self._items)

    def image_rects(self) -> list[QRectF]:
        return list(self._rects)

    def _maybe_update(self, key: str) -> None:
        if key in self._keys and self.isVisible():
            before = self._last_aspect
            if getattr(self, "_fit", False) and abs(self._aspect() - before) > 0.01:
                self.updateGeometry()
            self.update()

    def _aspect(self) -> float:
        """Width/height of the slots: the loaded images' average shape (square until known)."""
        ratios = []
        for ref in self._refs:
            pm = self._loader.cached(ref, self._keys_box) if ref is not None else None
            if pm is not None and pm.height() > 0:
                ratios.append(pm.width() / pm.height())
        if not ratios:
            return self._last_aspect
        self._last_aspect = max(0.4, min(2.5, sum(ratios) / len(ratios)))
        return self._last_aspect

    def _layout(self) -> list[QRectF]:
        n = len(self._items)
        if n == 0:
            return []
        arrows = sum(1 for i in self._items if i.arrow_before)
        w = self.width() - 2 * 8
        avail_w = w - (n - 1) * GAP - arrows * (ARROW_W - GAP)
        h = self.height() - LABEL_H - 2 * 8
        aspect = self._aspect()
        slot_w = max(16.0, min(avail_w / n, h * aspect))
        slot_h = slot_w / aspect
        total = n * slot_w + (n - 1) * GAP + arrows * (ARROW_W - GAP)
        x = 8 + (w - total) / 2
        y = 8 + (h - slot_h) / 2
        rects = []
        for item in self._items:
            if item.arrow_before:
                x += ARROW_W - GAP
            rects.append(QRectF(x, y, slot_w, slot_h))
            x += slot_w + GAP
        return rects

    def paintEvent(self, _event) -> None:
        c = theme.colors()
        p = QPainter(self)
        p.setRenderHint(QPainter.RenderHint.Antialiasing)
        p.setRenderHint(QPainter.RenderHint.SmoothPixmapTransform)
        if self._keys_box != device_box(self, self._box):  # moved to a screen with another pixel ratio
            self._remember_keys()
        box = self._keys_box
        self._rects = self._layout()
        if not self._items:
            if self.empty_message:
                p.setPen(c.q("muted"))
                p.drawText(self.rect(), Qt.AlignmentFlag.AlignCenter | Qt.TextFlag.TextWordWrap, self.empty_message)
            return
        font = QFont(self.font())
        fm = QFontMetrics(font)
        for item, ref, r in zip(self._items, self._refs, self._rects):
            if item.arrow_before:
                cx, cy = r.left() - ARROW_W / 2, r.center().y()
                p.setPen(QPen(c.q("muted"), 2, Qt.PenStyle.SolidLine, Qt.PenCapStyle.RoundCap))
                p.drawLine(QPointF(cx - 7, cy), QPointF(cx + 5, cy))
                p.setPen(Qt.PenStyle.NoPen)
                p.setBrush(c.q("muted"))
                p.drawPolygon(QPolygonF([QPointF(cx + 8, cy), QPointF(cx + 2, cy - 5), QPointF(cx + 2, cy + 5)]))
            pm = self._loader.pixmap(ref, box) if ref is not None else None
            if pm is None:
                p.setPen(Qt.PenStyle.NoPen)
                p.setBrush(c.q("placeholder"))
                p.drawRoundedRect(r, 6, 6)
                err = self._loader.error(ref, box) if ref is not None else None
                text = item.empty_text if ref is None else ("cannot open this image" if err else "")
                if text:
                    bad = (ref is None and item.missing_is_error) or bool(err)
                    p.setPen(c.q("error") if bad else c.q("muted"))
                    p.drawText(r, Qt.AlignmentFlag.AlignCenter | Qt.TextFlag.TextWordWrap, text)
            else:
                scale = min(r.width() / pm.width(), r.height() / pm.height())
                tw, th = pm.width() * scale, pm.height() * scale
                target = QRectF(r.left() + (r.width() - tw) / 2, r.top() + (r.height() - th) / 2, tw, th)
                path = QPainterPath()
                path.addRoundedRect(target, 6, 6)
                p.save()
                p.setClipPath(path)
                p.drawPixmap(target, pm, QRectF(pm.rect()))
                p.restore()
            label_rect = QRectF(r.left(), r.bottom() + 4, r.width(), LABEL_H - 4)
            p.setPen(c.q("muted"))
            p.setFont(font)
            p.drawText(label_rect, Qt.AlignmentFlag.AlignHCenter | Qt.AlignmentFlag.AlignTop,
                       fm.elidedText(item.label, Qt.TextElideMode.ElideMiddle, int(r.width())))
        p.end()

    def mouseDoubleClickEvent(self, event: QMouseEvent) -> None:
        for item, r in zip(self._items, self._rects):
            if item.path is not None and r.contains(event.position()):
                self.image_activated.emit(str(item.path))
                QDesktopServices.openUrl(QUrl.fromLocalFile(str(item.path)))
                return
        super().mouseDoubleClickEvent(event)
