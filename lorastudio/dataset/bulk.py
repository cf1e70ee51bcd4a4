"""Bulk caption edits with a preview: plan first, show the artist, then apply.

Each ``plan_*`` function only computes what *would* change (a list of
:class:`CaptionChange`, containing only captions whose text really changes), so the GUI can
show a before/after table and the artist can back out. :func:`apply_caption_changes` then
writes each file atomically, refuses to overwrite a caption that was edited elsewhere since
the preview, and carries on past a failing file so one read-only caption does not cost
the artist the other 200 edits. Rescan the folder afterwards to refresh the dataset.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from lorastudio.dataset.captions import (
    ends_with_word,
    has_caption,
    normalize_caption,
    read_caption,
    starts_with_word,
    write_caption,
)
from lorastudio.dataset.model import Dataset, ImageSet


@dataclass(frozen=True)
class CaptionChange:
    """One caption file going from ``old`` to ``new`` text."""

    set_name: str
    path: Path
    #: The caption text now, or None when the file does not exist yet.
    old: str | None
    new: str


@dataclass(frozen=True)
class CaptionWriteFailure:
    change: CaptionChange
    #: Why it was not written, in words for the artist.
    reason: str


@dataclass
class CaptionApplyResult:
    """What :func:`apply_caption_changes` did."""

    #: The changes now on disk.
    written: list[CaptionChange] = field(default_factory=list)
    #: The changes that were not written, each with the reason.
    failures: list[CaptionWriteFailure] = field(default_factory=list)

    @property
    def written_count(self) -> int:
        return len(self.written)

    @property
    def ok(self) -> bool:
        return not self.failures


def plan_add_trigger(dataset: Dataset, word: str,
                     position: Literal["prefix", "suffix"] = "prefix",
                     separator: str = ", ") -> list[CaptionChange]:
    """Put a trigger word at the start (``"zkw, a cat"``) or end of every caption.

    Captions that already start (or end) with the word are left alone, and so are sets
    without a caption: give those one first with :func:`plan_fill_empty` (or rely on the
    trigger setting of the training config, which adds the word at training time).
    """
    word = word.strip()
    if not word:
        raise ValueError("The trigger word is empty.")
    if position not in ("prefix", "suffix"):
        raise ValueError(f"position must be 'prefix' or 'suffix', not {position!r}")

    def add(text: str) -> str:
        if position == "prefix":
            return text if starts_with_word(text, word) else f"{word}{separator}{text}"
        return text if ends_with_word(text, word) else f"{text}{separator}{word}"

    return _plan(dataset, add, only_captioned=True)


def plan_find_replace(dataset: Dataset, find: str, replace: str, regex: bool = False,
                      case_sensitive: bool = True) -> list[CaptionChange]:
    """Replace text in every caption (plain text, or a regular expression with ``regex``).

    With ``regex`` the replacement may use ``\\1`` / ``\\g<name>`` groups; without it both
    strings are taken literally. Raises ``ValueError`` for an empty search or a broken
    regular expression (the message says where).
    """
    if not find:
        raise ValueError("The text to find is empty.")
    flags = 0 if case_sensitive else re.IGNORECASE
    try:
        pattern = re.compile(find if regex else re.escape(find), flags)
    except re.error as exc:
        raise ValueError(f"The search pattern is not a valid regular expression: {exc}") from exc
    if regex:
        try:
            pattern.sub(replace, "")  # surface a bad group reference now, not mid-way
        except (re.error, IndexError) as exc:
            raise ValueError(f"The replacement is not valid for this pattern: {exc}") from exc

    def substitute(text: str) -> str:
        return pattern.sub(replace, text) if regex else pattern.sub(lambda _m: replace, text)

    return _plan(dataset, substitute, only_captioned=True)


def plan_fill_empty(dataset: Dataset, default_caption: str) -> list[CaptionChange]:
    """Give every set without a caption (no ``.txt``, or an empty one) ``default_caption``."""
    default = normalize_caption(default_caption.strip())
    if not default:
        raise ValueError("The default caption is empty.")
    return [CaptionChange(s.name, s.caption_path, s.caption, default)
            for s in dataset.sets if not has_caption(s)]


def apply_caption_changes(changes: Iterable[CaptionChange]) -> CaptionApplyResult:
    """Write every change atomically; a failing file is reported and the others still written.

    A caption whose file no longer holds ``old`` (edited in another program since the
    preview, or created meanwhile) is not overwritten; it is reported as a failure so the
    artist can re-run the operation on fresh text.
    """
    result = CaptionApplyResult()
    for change in changes:
        try:
            current = _current_text(change.path)
        except OSError as exc:
            result.failures.append(CaptionWriteFailure(change, f"cannot read it: {exc.strerror or exc}"))
            continue
        if current != (None if change.old is None else normalize_caption(change.old)):
            result.failures.append(CaptionWriteFailure(
                change, "it changed on disk since the preview; nothing was overwritten"))
            continue
        try:
            write_caption(change.path, change.new)
        except OSError as exc:
            result.failures.append(CaptionWriteFailure(change, f"cannot write it: {exc.strerror or exc}"))
            continue
        result.written.append(change)
    return result


def _current_text(path: Path) -> str | None:
    try:
        return read_caption(path)
    except FileNotFoundError:
        return None


def _plan(dataset: Dataset, edit: Callable[[str], str], only_captioned: bool) -> list[CaptionChange]:
    changes = []
    for image_set in dataset.sets:
        if only_captioned and not has_caption(image_set):
            continue
        old = image_set.caption or ""
        new = normalize_caption(edit(old))
        if new != normalize_caption(old):
            changes.append(_change(image_set, new))
    return changes


def _change(image_set: ImageSet, new: str) -> CaptionChange:
    return CaptionChange(image_set.name, image_set.caption_path, image_set.caption, new)
