"""Paints one image set as a grid cell: inputs → target side by side, name, problem badge,
and a green tint with a "held out" badge for a set held out for validation.

Every cell of a dataset has the same size (``QListView.setUniformItemSizes``): as many
input slots as the set with the most inputs, then the target. That keeps layout O(1) for
thousands of sets, and lines the targets up in columns so before/after reads at a glance.
Painting only looks up pixmaps in memory; missing ones are requested from the loader and
drawn as a same-size placeholder until ``ready`` arrives.
"""

from __future__ import annotations

from PySide6.QtCore import QModelIndex, QPointF, QRect, QRectF, QSize, Qt, QTimer
from PySide6.QtGui import QBrush, QColor, QFont, QFontMetrics, QPainter, QPen, QPolygonF
from PySide6.QtWidgets import QListView, QStyle, QStyledItemDelegate, QStyleOptionViewItem

from lorastudio.ui import theme
from lorastudio.ui.set_model import HasCaptionRole, HeldOutRole, ImagesRole, SetEntry
from lorastudio.ui.thumbnails import ImageRef, ThumbnailLoader, device_box

THUMB = 112        # px: every image fits in a THUMB × THUMB box
GAP = 6            # between input images
ARROW = 22         # the gap holding the → between inputs and target
MARGIN = 8         # inside the cell
NAME_HEIGHT = 22   # the name line under the images
RADIUS = 8


def cell_size(input_slots: int, paired: bool, thumb: int = THUMB) -> QSize:
    """The size of every cell of a dataset whose widest set has ``input_slots`` inputs."""
    if paired:
        slots = max(1, input_slots)
        width = 2 * MARGIN + slots * thumb + (slots - 1) * GAP + ARROW + thumb
    else:
        width = 2 * MARGIN + thumb
    return QSize(width, MARGIN + thumb + 4 + NAME_HEIGHT + MARGIN // 2)


def image_rects(cell: QRect, input_slots: int, paired: bool, thumb: int = THUMB) -> list[QRect]:
    """Boxes of the input slots, then the target, inside a cell (placeholders fill these)."""
    x, y = cell.left() + MARGIN, cell.top() + MARGIN
    if not paired:
        return [QRect(x, y, thumb, thumb)]
    rects = []
    for _ in range(max(1, input_slots)):
        rects.append(QRect(x, y, thumb, thumb))
        x += thumb + GAP
    x += ARROW - GAP
    rects.append(QRect(x, y, thumb, thumb))
    return rects


class SetDelegate(QStyledItemDelegate):
    def __init__(self, view: QListView, loader: ThumbnailLoader, thumb: int = THUMB) -> None:
        super().__init__(view)
        self._view = view
        self._loader = loader
        self.thumb = thumb
        self.input_slots = 1
        self.paired = True
        # Repaint at most every 40 ms however many thumbnails arrive in between.
        self._repaint = QTimer(self)
        self._repaint.setSingleShot(True)
        self._repaint.setInterval(40)
        self._repaint.timeout.connect(view.viewport().update)
        loader.ready.connect(self._thumbnail_ready)

    def configure(self, input_slots: int, paired: bool) -> None:
        self.input_slots = input_slots
        self.paired = paired

    def _thumbnail_ready(self, _key: str) -> None:
        if not self._repaint.isActive():
            self._repaint.start()

    def box(self) -> int:
        """Pixels requested from the loader (thumb size × device pixel ratio)."""
        return device_box(self._view, self.thumb)

    def sizeHint(self, option: QStyleOptionViewItem, index: QModelIndex) -> QSize:
        return cell_size(self.input_slots, self.paired, self.thumb)

    def image_rects(self, cell: QRect) -> list[QRect]:
        return image_rects(cell, self.input_slots, self.paired, self.thumb)

    def paint(self, painter: QPainter, option: QStyleOptionViewItem, index: QModelIndex) -> None:
        entry: SetEntry | None = index.data(ImagesRole)
        if entry is None:
            return
        c = theme.colors()
        painter.save()
        painter.setRenderHint(QPainter.RenderHint.Antialiasing)
        rect = QRectF(option.rect).adjusted(2, 2, -2, -2)
        selected = bool(option.state & QStyle.StateFlag.State_Selected)
        hover = bool(option.state & QStyle.StateFlag.State_MouseOver)
        held_out = bool(index.data(HeldOutRole))
        if held_out and not selected:  # tinted and outlined: it is not trained on
            painter.setPen(QPen(c.q("success"), 2))
            painter.setBrush(c.q("success_bg"))
            painter.drawRoundedRect(rect, RADIUS, RADIUS)
        elif selected:
            painter.setPen(QPen(c.q("accent"), 2))
            painter.setBrush(c.q("selection"))
            painter.drawRoundedRect(rect, RADIUS, RADIUS)
        elif hover:
            painter.setPen(Qt.PenStyle.NoPen)
            painter.setBrush(c.q("hover"))
            painter.drawRoundedRect(rect, RADIUS, RADIUS)

        s = entry.image_set
        rects = self.image_rects(option.rect)
        box = self.box()
        if self.paired:
            # Inputs fill the first slots (a set with fewer inputs leaves the rest empty).
            for i, r in enumerate(rects[:-1]):
                if i < len(s.inputs):
                    self._draw_image(painter, r, entry.refs[i], box)
                elif i == 0:
                    self._draw_missing(painter, r, "no _start")
            target_rect = rects[-1]
            arrow_x = target_rect.left() - ARROW / 2
            self._draw_arrow(painter, QPointF(arrow_x, target_rect.center().y()), c.q("muted"))
            if s.target is not None:
                self._draw_image(painter, target_rect, entry.refs[len(s.inputs)], box)
            else:
                self._draw_missing(painter, target_rect, "no _end")
        else:
            if entry.refs:
                self._draw_image(painter, rects[0], entry.refs[0], box)
            else:
                self._draw_missing(painter, rects[0], "no image")

        # Name line.
        name_rect = QRect(option.rect.left() + MARGIN, rects[0].bottom() + 5,
                          option.rect.width() - 2 * MARGIN, NAME_HEIGHT)
        has_caption = bool(index.data(HasCaptionRole))
        font = QFont(option.font)
        fm = QFontMetrics(font)
        note = "" if has_caption else "no caption"
        note_w = fm.horizontalAdvance(note) + 8 if note else 0
        painter.setFont(font)
        painter.setPen(c.q("text"))
        name = fm.elidedText(s.name, Qt.TextElideMode.ElideMiddle, name_rect.width() - note_w)
        painter.drawText(name_rect, Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignVCenter, name)
        if note:
            small = QFont(font)
            small.setItalic(True)
            painter.setFont(small)
            painter.setPen(c.q("muted"))
            painter.drawText(name_rect, Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter, note)

        if held_out:
            self._draw_badge(painter, QPointF(rects[0].topLeft()) + QPointF(4, 4), "held out", c.q("success"),
                             option.font, left_aligned=True, ink=QColor("#0d2a1a") if c.dark else None)

        # Problem badge on the top-right corner of the last image.
        worst = entry.worst
        if worst is not None:
            count = len(s.problems)
            color = {"error": c.q("error"), "warning": c.q("warning")}.get(worst.value, c.q("info"))
            self._draw_badge(painter, QPointF(rects[-1].topRight()) + QPointF(-4, 4), str(count), color, option.font)
        painter.restore()

    # -- pieces ------------------------------------------------------------------------------

    def _draw_image(self, painter: QPainter, r: QRect, ref: ImageRef, box: int) -> None:
        c = theme.colors()
        pm = self._loader.pixmap(ref, box)
        if pm is None:
            painter.setPen(Qt.PenStyle.NoPen)
            painter.setBrush(c.q("placeholder"))
            painter.drawRoundedRect(QRectF(r), 4, 4)
            if self._loader.error(ref, box) is not None:
                self._draw_broken(painter, r)
            return
        # Fast path: thumbnails are made to fit the box, so most are drawn 1:1 at integer
        # positions (no scaling, no clipping): cheap enough for thousands of cells.
        view_dpr = max(1.0, self._view.devicePixelRatioF())
        w, h = pm.width() / view_dpr, pm.height() / view_dpr
        if w > r.width() or h > r.height() or (w < r.width() and h < r.height()):
            scale = min(r.width() / w, r.height() / h)  # fit the box (small images grow to fill it)
            w, h = w * scale, h * scale
        x = r.left() + int((r.width() - w) / 2)
        y = r.top() + int((r.height() - h) / 2)
        if view_dpr == 1.0 and int(w) == pm.width() and int(h) == pm.height():
            painter.drawPixmap(x, y, pm)
        else:
            painter.setRenderHint(QPainter.RenderHint.SmoothPixmapTransform)
            painter.drawPixmap(QRect(x, y, int(round(w)), int(round(h))), pm)

    def _draw_missing(self, painter: QPainter, r: QRect, text: str) -> None:
        c = theme.colors()
        pen = QPen(c.q("error"), 1.2, Qt.PenStyle.DashLine)
        painter.setPen(pen)
        painter.setBrush(Qt.BrushStyle.NoBrush)
        painter.drawRoundedRect(QRectF(r).adjusted(1, 1, -1, -1), 4, 4)
        painter.setPen(c.q("error"))
        painter.drawText(r, Qt.AlignmentFlag.AlignCenter, text)

    def _draw_broken(self, painter: QPainter, r: QRect) -> None:
        c = theme.colors()
        painter.setPen(QPen(c.q("error"), 2))
        cx, cy = r.center().x(), r.center().y()
        painter.drawLine(cx - 10, cy - 10, cx + 10, cy + 10)
        painter.drawLine(cx - 10, cy + 10, cx + 10, cy - 10)

    def _draw_arrow(self, painter: QPainter, center: QPointF, color: QColor) -> None:
        painter.setPen(QPen(color, 1.6, Qt.PenStyle.SolidLine, Qt.PenCapStyle.RoundCap))
        painter.drawLine(QPointF(center.x() - 6, center.y()), QPointF(center.x() + 5, center.y()))
        painter.setBrush(color)
        painter.setPen(Qt.PenStyle.NoPen)
        painter.drawPolygon(QPolygonF([QPointF(center.x() + 7, center.y()), QPointF(center.x() + 2, center.y() - 4),
                                       QPointF(center.x() + 2, center.y() + 4)]))

    def _draw_badge(self, painter: QPainter, top_right: QPointF, text: str, color: QColor, font: QFont,
                    left_aligned: bool = False, ink: QColor | None = None) -> None:
        """A pill with ``text`` (white, or ``ink`` on a light colour); its top-right corner at
        ``top_right`` (top-left with ``left_aligned``)."""
        f = QFont(font)
        f.setBold(True)
        f.setPointSizeF(max(7.0, f.pointSizeF() * 0.85))
        fm = QFontMetrics(f)
        h = fm.height() + 2
        w = max(h, fm.horizontalAdvance(text) + 10)
        r = QRectF(top_right.x() - (0 if left_aligned else w), top_right.y(), w, h)
        painter.setPen(QPen(QColor(255, 255, 255, 220), 1.5))
        painter.setBrush(QBrush(color))
        painter.drawRoundedRect(r, h / 2, h / 2)
        painter.setFont(f)
        painter.setPen(ink or QColor("white"))
        painter.drawText(r, Qt.AlignmentFlag.AlignCenter, text)
