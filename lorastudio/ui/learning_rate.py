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


def lr_advice(text: str) -> str:
    """What to say about the typed learning rate ("" when it is a usual value)."""
    lr = parse_lr(text)
    lo, hi = TYPICAL_LEARNING_RATE
    if lr is None:
        return "Enter a number such as 1e-4."
    if lr < lo * 0.999 or lr > hi * 1.001:
        return (f"{format_lr(lr)} is outside the typical range 1e-4 … 5e-4. "
                + ("Too soft: it needs many more steps." if lr < lo else
                   "Too hard: the balloon may pop (unstable training)."))
    return ""
