"""The live loss curve, drawn with QPainter (no QtCharts: it is not in PySide6-Essentials).

Raw per-step losses are noisy (each step sees one random timestep), so the chart draws
them faintly and an exponential moving average on top: the line an artist should watch.
The held-out sets' validation loss (fixed noise, so it is not noisy) is a second series of
points; ``overfitting`` says when it climbs while the training loss still falls.
"""

from __future__ import annotations

import bisect
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


def overfitting(train_steps: list[int], train_smoothed: list[float], val_steps: list[int],
                val_losses: list[float]) -> tuple[int, int] | None:
    """``(N, M)`` when the validation loss has risen for two evaluations in a row (since step
    N, where the climb began) while the smoothed training loss fell over the same steps; M is
    the step of the lowest validation loss so far. None otherwise.

    A falling training loss with a rising held-out loss is the textbook sign of overfitting:
    the LoRA keeps memorising its training sets and gets worse at the ones it never saw."""
    if len(val_losses) < 3 or not train_steps:
        return None
    if not (val_losses[-3] < val_losses[-2] < val_losses[-1]):
        return None
    start = len(val_losses) - 3
    while start > 0 and val_losses[start - 1] < val_losses[start]:
        start -= 1

    def smoothed_at(step: int) -> float:
        i = bisect.bisect_right(train_steps, step) - 1
        return train_smoothed[max(0, i)]

    if not smoothed_at(val_steps[-1]) < smoothed_at(val_steps[start]):
        return None
    best = min(range(len(val_losses)), key=lambda i: (val_losses[i], val_steps[i]))
    return val_steps[start], val_steps[best]


def overfitting_message(found: tuple[int, int] | None) -> str:
    if found is None:
        return ""
    since, best = found
    return (f"Held-out loss rising since step {since:,}: the LoRA may be overfitting; "
            f"the best so far is step {best:,}.")


class LossChart(QWidget):
    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.steps: list[int] = []
        self.losses: list[float] = []
        #: The held-out sets' loss at each evaluation (``validation`` events).
        self.val_steps: list[int] = []
        self.val_losses: list[float] = []
        self.total = 0
        self.resumed_from = 0
        self.setMinimumHeight(140)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Expanding)
        self.setToolTip("Training loss per step (faint) and its moving average (bold). It should trend down "
                        "and level off; a line that shoots up means the learning rate is too high. Green points: the "
                        "loss on the sets held out for validation (never trained on); when they climb while the "
                        "training loss falls, the LoRA is overfitting.")

    def sizeHint(self) -> QSize:
        return QSize(480, 200)

    def clear(self, total: int = 0, resumed_from: int = 0) -> None:
        self.steps.clear()
        self.losses.clear()
        self.val_steps.clear()
        self.val_losses.clear()
        self.total = total
        self.resumed_from = resumed_from
        self.update()

    def resume_at(self, step: int, total: int) -> None:
        """A resumed run continues from ``step``: keep the curve up to there, drop what came after."""
        self.steps[:] = [s for s in self.steps if s <= step]
        del self.losses[len(self.steps):]
        self.val_steps[:] = [s for s in self.val_steps if s <= step]
        del self.val_losses[len(self.val_steps):]
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

    def add_validation(self, step: int, loss: float | None) -> None:
        """A ``validation`` event: the held-out loss at ``step`` (a repeated step replaces its point)."""
        if loss is None or not math.isfinite(loss):
            return
        if self.val_steps and self.val_steps[-1] >= step:
            keep = bisect.bisect_left(self.val_steps, step)
            del self.val_steps[keep:], self.val_losses[keep:]
        self.val_steps.append(int(step))
        self.val_losses.append(float(loss))
        self.update()

    def overfitting(self) -> tuple[int, int] | None:
        """(rising since step N, best step M), or None: see ``overfitting``."""
        return overfitting(self.steps, self.smoothed(), self.val_steps, self.val_losses)

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
        x_hi = max(self.total or 0, self.steps[-1], *self.val_steps, x_lo + 1)
        # Scale to the smoothed line (plus some of the noise), not to single outliers.
        ordered = sorted(self.losses)
        q_hi = ordered[min(len(ordered) - 1, int(len(ordered) * 0.98))]
        y_lo = min(min(smooth), ordered[int(len(ordered) * 0.02)], *self.val_losses)
        y_hi = max(max(smooth), q_hi, *self.val_losses)
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
        if self.val_losses:
            self._draw_validation(p, pt, QRectF(plot.right() - tw - 4, plot.top() + fm.height(), tw + 4, fm.height()))
        p.end()

    def _draw_validation(self, p: QPainter, pt, legend: QRectF) -> None:
        """The held-out loss: a line through a dot per evaluation, and its last value."""
        color = theme.colors().q("success")
        points = [pt(s, v) for s, v in zip(self.val_steps, self.val_losses)]
        p.setPen(QPen(color, 1.8, Qt.PenStyle.SolidLine, Qt.PenCapStyle.RoundCap, Qt.PenJoinStyle.RoundJoin))
        p.setBrush(Qt.BrushStyle.NoBrush)
        if len(points) > 1:
            path = QPainterPath(points[0])
            for q in points[1:]:
                path.lineTo(q)
            p.drawPath(path)
        p.setBrush(color)
        p.setPen(Qt.PenStyle.NoPen)
        for q in points[-200:]:
            p.drawEllipse(q, 3.2, 3.2)
        text = f"held-out {self.val_losses[-1]:.4f}"
        fm = QFontMetrics(self.font())
        p.setPen(color)
        p.drawText(QRectF(legend.right() - fm.horizontalAdvance(text) - 4, legend.top(),
                          fm.horizontalAdvance(text) + 4, legend.height()), Qt.AlignmentFlag.AlignRight, text)
