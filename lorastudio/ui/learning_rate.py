"""The learning rate as the artist types it, and advice when it is outside the usual range.

Plain Python (no Qt): the settings form shows ``lr_advice``'s text under the field.
"""

from __future__ import annotations

import math

from lorastudio.config import TYPICAL_LEARNING_RATE


def format_lr(value: float) -> str:
    text = f"{value:.0e}" if value < 0.01 else f"{value:g}"
    return text.replace("e-0", "e-")


def parse_lr(text: str) -> float | None:
    try:
        value = float(text.strip().replace(",", "."))
    except ValueError:
        return None
    return value if math.isfinite(value) and value > 0 else None


def lr_advice(text: str, typical: tuple[float, float] = TYPICAL_LEARNING_RATE) -> str:
    """What to say about the typed learning rate ("" when it is a usual value); ``typical`` is
    the model's usual range (``ModelFolderInfo.typical_learning_rate``: the demo's tiny model
    has its own)."""
    lr = parse_lr(text)
    lo, hi = typical
    if lr is None:
        return f"Enter a number such as {format_lr(lo)}."
    if lr < lo * 0.999 or lr > hi * 1.001:
        return (f"{format_lr(lr)} is outside the typical range {format_lr(lo)} … {format_lr(hi)}"
                + (" for the demo's tiny model" if typical != TYPICAL_LEARNING_RATE else "") + ". "
                + ("Too soft: it needs many more steps." if lr < lo else
                   "Too hard: the balloon may pop (unstable training)."))
    return ""
