"""The live loss curve, drawn with QPainter (no QtCharts: it is not in PySide6-Essentials).

Raw per-step losses are noisy (each step sees one random timestep), so the chart draws
them faintly and an exponential moving average on top: the line an artist should watch.
"""

from __future__ import annotations

import math

from PySide6.QtCore import QPointF, QRectF, QSize, Qt
from PySide6.QtGui import QColor, QFontMetrics, QPainter, QPainterPath, QPen
from PySide6.QtWidgets import QSizePolicy, QWidget

from lorastudio.ui import theme


def ema(values: list[float], alpha: float) -> list[float]:
    out: list[float] = []
    acc = None
    for v in values:
        acc = v if acc is None else alpha * v + (1 - alpha) * acc
        out.append(acc)
    return out


def nice_ticks(lo: float, hi: float, count: int = 4) -> list[float]:
    if not math.isfinite(lo) or not math.isfinite(hi) or hi <= lo:
        return [lo]
    raw = (hi - lo) / max(1, count)
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw)
    start = math.ceil(lo / step) * step
    ticks = []
    v = start
    while v <= hi + step * 1e-6 and len(ticks) < 50:
        ticks.append(round(v, 12))
        v += step
    return ticks


class LossChart(QWidget):
    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.steps: list[int] = []
        self.losses: list[float] = []
        self.total = 0
        self.resumed_from = 0
        self.setMinimumHeight(140)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Expanding)
        self.setToolTip("Training loss per step (faint) and its moving average (bold). It should trend down "
                        "and level off; a line that shoots up means the learning rate is too high.")

    def sizeHint(self) -> QSize:
        return QSize(480, 200)

    def clear(self, total: int = 0, resumed_from: int = 0) -> None:
        self.steps.clear()
        self.losses.clear()
        self.total = total
        self.resumed_from = resumed_from
        self.update()

    def resume_at(self, step: int, total: int) -> None:
        """A resumed run continues from ``step``: keep the curve up to there, drop what came after."""
        self.steps[:] = [s for s in self.steps if s <= step]
        del self.losses[len(self.steps):]
        self.total = total
        self.resumed_from = 0
        self.update()

    def add(self, step: int, loss: float | None, total: int | None = None) -> None:
        if total:
            self.total = total
        if loss is None or not math.isfinite(loss):
            return
        self.steps.append(int(step))
        self.losses.append(float(loss))
        self.update()

    def smoothed(self) -> list[float]:
        alpha = 2 / (min(100, max(10, len(self.losses) // 10)) + 1)
        return ema(self.losses, alpha)

    def paintEvent(self, _event) -> None:
        c = theme.colors()
        p = QPainter(self)
        p.setRenderHint(QPainter.RenderHint.Antialiasing)
        fm = QFontMetrics(self.font())
        left = fm.horizontalAdvance("0.0000") + 14
        bottom = fm.height() + 10
        plot = QRectF(left, 10, max(10, self.width() - left - 14), max(10, self.height() - bottom - 14))
        p.setPen(Qt.PenStyle.NoPen)
        p.setBrush(c.q("base"))
        p.drawRoundedRect(QRectF(self.rect()).adjusted(0.5, 0.5, -0.5, -0.5), 8, 8)

        if not self.losses:
            p.setPen(c.q("muted"))
            p.drawText(self.rect(), Qt.AlignmentFlag.AlignCenter, "The loss curve appears here once training starts.")
            return

        smooth = self.smoothed()
        x_lo = self.resumed_from if self.resumed_from else min(self.steps[0], 1)
        x_hi = max(self.total or 0, self.steps[-1], x_lo + 1)
        # Scale to the smoothed line (plus some of the noise), not to single outliers.
        ordered = sorted(self.losses)
        q_hi = ordered[min(len(ordered) - 1, int(len(ordered) * 0.98))]
        y_lo = min(min(smooth), ordered[int(len(ordered) * 0.02)])
        y_hi = max(max(smooth), q_hi)
        if y_hi - y_lo < 1e-9:
            y_hi, y_lo = y_hi + 0.05, max(0.0, y_lo - 0.05)
        pad = (y_hi - y_lo) * 0.08
        y_lo, y_hi = max(0.0, y_lo - pad), y_hi + pad

        def pt(step: float, loss: float) -> QPointF:
            x = plot.left() + (step - x_lo) / (x_hi - x_lo) * plot.width()
            y = plot.bottom() - (min(max(loss, y_lo), y_hi) - y_lo) / (y_hi - y_lo) * plot.height()
            return QPointF(x, y)

        # Grid and labels.
        grid = QColor(c.border)
        p.setFont(self.font())
        for t in nice_ticks(y_lo, y_hi, 4):
            y = pt(x_lo, t).y()
            p.setPen(QPen(grid, 1, Qt.PenStyle.DotLine))
            p.drawLine(QPointF(plot.left(), y), QPointF(plot.right(), y))
            p.setPen(c.q("muted"))
            p.drawText(QRectF(0, y - fm.height() / 2, left - 6, fm.height()),
                       Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter, f"{t:.4g}")
        for t in nice_ticks(x_lo, x_hi, 5):
            x = pt(t, y_lo).x()
            p.setPen(c.q("muted"))
            label = f"{int(t):,}"
            w = fm.horizontalAdvance(label)
            p.drawText(QRectF(x - w / 2 - 2, plot.bottom() + 4, w + 4, fm.height()), Qt.AlignmentFlag.AlignCenter,
                       label)

        # Raw losses, faint.
        raw = QColor(c.accent)
        raw.setAlpha(70)
        p.setPen(QPen(raw, 1))
        path = QPainterPath(pt(self.steps[0], self.losses[0]))
        stride = max(1, len(self.losses) // 2000)  # never more than ~2,000 segments
        for s, v in zip(self.steps[::stride], self.losses[::stride]):
            path.lineTo(pt(s, v))
        p.drawPath(path)
        # Smoothed line, bold.
        p.setPen(QPen(c.q("accent"), 2.2, Qt.PenStyle.SolidLine, Qt.PenCapStyle.RoundCap, Qt.PenJoinStyle.RoundJoin))
        path = QPainterPath(pt(self.steps[0], smooth[0]))
        for s, v in zip(self.steps[::stride], smooth[::stride]):
            path.lineTo(pt(s, v))
        path.lineTo(pt(self.steps[-1], smooth[-1]))
        p.drawPath(path)
        # Current value.
        last = pt(self.steps[-1], smooth[-1])
        p.setBrush(c.q("accent"))
        p.setPen(Qt.PenStyle.NoPen)
        p.drawEllipse(last, 3.5, 3.5)
        p.setPen(c.q("text"))
        text = f"smoothed {smooth[-1]:.4f}"
        tw = fm.horizontalAdvance(text)
        p.drawText(QRectF(plot.right() - tw - 4, plot.top(), tw + 4, fm.height()), Qt.AlignmentFlag.AlignRight, text)
        p.end()
