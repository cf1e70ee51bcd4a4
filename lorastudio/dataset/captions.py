"""Caption files: read them whatever editor wrote them, write them so nothing is ever lost.

Captions come from Notepad (UTF-8 with a BOM, CRLF line ends, or UTF-16), from TextEdit,
from scripts, from old tools that wrote Windows-1252. Reading accepts all of that and
returns clean text with ``\\n`` line ends. Writing always produces UTF-8 without a BOM and
with one trailing newline, through :mod:`lorastudio.fileio`'s atomic write: an artist's
hand-written captions survive a crash or a full disk in the middle of a save.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from lorastudio.dataset.model import ImageSet
from lorastudio.fileio import atomic_write_bytes

CAPTION_EXTENSION = ".txt"
UTF8 = "utf-8"
_UTF8_BOM = b"\xef\xbb\xbf"
_UTF16_BOMS = (b"\xff\xfe", b"\xfe\xff")
#: Tried in order when a file is not UTF-8; Latin-1 decodes any byte, so reading never fails.
_FALLBACK_ENCODINGS = ("cp1252", "latin-1")
#: Punctuation that may follow a trigger word that is already at the start of a caption.
_AFTER_TRIGGER = ",;:. \t\n"


@dataclass(frozen=True)
class CaptionText:
    """A caption as read, with the encoding it was decoded from."""

    text: str
    #: "utf-8", "utf-16", or a fallback ("cp1252", "latin-1") for a file that is not UTF-8.
    encoding: str

    @property
    def used_fallback(self) -> bool:
        """True when the file was not valid UTF-8/UTF-16 and a guess was used instead."""
        return self.encoding in _FALLBACK_ENCODINGS


def read_caption(path: str | os.PathLike[str]) -> str:
    """The caption text: BOM dropped, line ends as ``\\n``, trailing whitespace stripped."""
    return read_caption_text(path).text


def read_caption_text(path: str | os.PathLike[str]) -> CaptionText:
    """Like :func:`read_caption`, also telling which encoding was used (see :class:`CaptionText`).

    Raises ``OSError`` only when the file cannot be read at all.
    """
    return decode_caption(Path(path).read_bytes())


def decode_caption(data: bytes) -> CaptionText:
    """Decode caption bytes: UTF-8 (BOM optional), UTF-16 with BOM, else Windows-1252/Latin-1."""
    if data.startswith(_UTF8_BOM):
        data = data[len(_UTF8_BOM):]
    if data.startswith(_UTF16_BOMS):
        try:
            return CaptionText(_clean(data.decode("utf-16")), "utf-16")
        except UnicodeDecodeError:
            pass
    try:
        return CaptionText(_clean(data.decode(UTF8)), UTF8)
    except UnicodeDecodeError:
        pass
    for encoding in _FALLBACK_ENCODINGS:
        try:
            return CaptionText(_clean(data.decode(encoding)), encoding)
        except UnicodeDecodeError:
            continue
    raise AssertionError("latin-1 decodes every byte")  # pragma: no cover


def normalize_caption(text: str) -> str:
    """The canonical form of caption text: no BOM, ``\\n`` line ends, no trailing whitespace."""
    return _clean(text)


def write_caption(path: str | os.PathLike[str], text: str) -> None:
    """Write a caption atomically as UTF-8 (no BOM) ending in one newline.

    The text is normalised first (:func:`normalize_caption`); an empty caption writes an
    empty file. If anything fails, the previous file is left exactly as it was.
    """
    clean = normalize_caption(text)
    atomic_write_bytes(path, (clean + "\n").encode(UTF8) if clean else b"")


def caption_path_for(folder: Path, set_name: str) -> Path:
    """Where a set's caption lives: ``NAME.txt`` beside its images."""
    return folder / f"{set_name}{CAPTION_EXTENSION}"


def has_caption(image_set: ImageSet) -> bool:
    """True when the set has a caption with some text in it."""
    return bool(image_set.caption and image_set.caption.strip())


def starts_with_word(text: str, word: str) -> bool:
    """True when ``text`` begins with ``word`` as a whole word (``zkw, a cat`` / ``zkw``)."""
    return text.startswith(word) and (len(text) == len(word) or text[len(word)] in _AFTER_TRIGGER)


def ends_with_word(text: str, word: str) -> bool:
    """True when ``text`` ends with ``word`` as a whole word (``a cat, zkw`` / ``zkw.``)."""
    stripped = text.rstrip(".")
    return stripped.endswith(word) and (len(stripped) == len(word) or stripped[-len(word) - 1] in _AFTER_TRIGGER)


def effective_caption(image_set: ImageSet, trigger: str = "", default_caption: str = "") -> str:
    """The caption training uses for a set.

    The set's own caption, or ``default_caption`` where it has none (or only whitespace),
    with ``trigger`` in front as ``"trigger, caption"`` unless the caption already starts
    with it. Either part may be empty, and so may the result (the model then learns the
    edit from the images alone).
    """
    caption = (image_set.caption or "").strip() or default_caption.strip()
    trigger = trigger.strip()
    if not trigger or starts_with_word(caption, trigger):
        return caption
    return f"{trigger}, {caption}" if caption else trigger


def _clean(text: str) -> str:
    if text.startswith("\ufeff"):
        text = text[1:]
    return text.replace("\r\n", "\n").replace("\r", "\n").rstrip()
