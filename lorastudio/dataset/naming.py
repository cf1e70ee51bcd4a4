"""The guide's naming convention: which role a file name plays in which set.

``NAME_start.ext`` is a set's first input, ``NAME_start1.ext`` its second,
``NAME_start2.ext`` its third …, ``NAME_end.ext`` its target and ``NAME.txt`` its caption.
Only the *last* ``_start``/``_startN``/``_end`` suffix counts, so ``my_start_photo_end.jpg``
is the target of the set ``my_start_photo``. Names are compared after Unicode NFC
normalisation: macOS stores ``é`` decomposed, other systems composed, and a caption copied
from one to the other must still find its images.

This module knows nothing about the disk; the scanner feeds it names.
"""

from __future__ import annotations

import enum
import re
import unicodedata
from dataclasses import dataclass

#: Files that operating systems and tools leave in folders; never part of a dataset.
CLUTTER_NAMES = frozenset({"thumbs.db", "ehthumbs.db", "desktop.ini", "icon\r"})

_ROLE = re.compile(r"^(?P<base>.+)_(?:(?P<start>start)(?P<index>[0-9]*)|(?P<end>end))$", re.IGNORECASE)
#: Names that look like an attempt at the convention but miss it: ``photo-start``,
#: ``photo start``, ``photo_start_1``, ``photo_end1`` …
_NEAR_MISS = re.compile(
    r"^(?P<base>.+?)(?:[ .\-](?P<role1>start|end)(?P<index1>[0-9]*)"
    r"|_(?P<role2>start|end)[ _.\-]+(?P<index2>[0-9]+)"
    r"|_(?P<role3>end)(?P<index3>[0-9]+))$",
    re.IGNORECASE,
)
_DIGITS = re.compile(r"([0-9]+)")


class Role(enum.Enum):
    #: ``_start`` / ``_startN``: an input ("before") image.
    INPUT = "input"
    #: ``_end``: the target ("after") image.
    TARGET = "target"
    #: No role suffix: a text-to-image picture, or a stray file in a paired folder.
    PLAIN = "plain"


@dataclass(frozen=True)
class ParsedName:
    #: The set this file belongs to (NFC-normalised).
    base: str
    role: Role
    #: Input position: 0 for ``_start``, N for ``_startN``; 0 for the other roles.
    index: int = 0


def normalize(name: str) -> str:
    """NFC form, so composed and decomposed spellings of a name group together."""
    return unicodedata.normalize("NFC", name)


def parse_stem(stem: str) -> ParsedName:
    """Role and set of an image file name without its extension.

    ``_start0`` is accepted as a spelling of ``_start`` (people who count from 0 name their
    inputs ``_start0, _start1, _start2``, which lines up with the guide's numbering).
    """
    stem = normalize(stem)
    match = _ROLE.match(stem)
    if match is None:
        return ParsedName(stem, Role.PLAIN)
    if match["end"]:
        return ParsedName(match["base"], Role.TARGET)
    digits = match["index"]
    return ParsedName(match["base"], Role.INPUT, int(digits) if digits else 0)


def role_suffix(index: int) -> str:
    """The suffix for input position ``index``: ``_start``, ``_start1``, ``_start2`` …"""
    return "_start" if index == 0 else f"_start{index}"


def suggested_name(stem: str) -> str | None:
    """The conventional spelling of a name that nearly follows the convention, else None.

    ``photo-start`` → ``photo_start``, ``photo_start_1`` → ``photo_start1``,
    ``photo end`` → ``photo_end``. Used to make messages about stray images helpful.
    """
    match = _NEAR_MISS.match(normalize(stem))
    if match is None:
        return None
    role = (match["role1"] or match["role2"] or match["role3"]).lower()
    index = match["index1"] or match["index2"] or ""
    if role == "end":
        return f"{match['base']}_end"
    return f"{match['base']}{role_suffix(int(index)) if index else '_start'}"


def is_clutter(name: str) -> bool:
    """Hidden files (``.DS_Store``, ``._photo.jpg`` AppleDouble, our own temp files) and the
    well-known system files (``Thumbs.db``, ``desktop.ini``)."""
    return name.startswith(".") or name.lower() in CLUTTER_NAMES or name.startswith("~$")


def natural_key(name: str) -> tuple:
    """Sort key that orders ``img2`` before ``img10`` and ignores letter case.

    ``re.split`` with a capturing group alternates text and digit runs, so the text parts
    sit at even positions and the numbers at odd ones and tuples always compare like with
    like. The name itself is the last element, to break ties deterministically.
    """
    parts = _DIGITS.split(name)
    key = tuple(int(part) if i % 2 else part.casefold() for i, part in enumerate(parts))
    return (key, name)
