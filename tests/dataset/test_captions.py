"""Captions: read whatever editors write, write UTF-8 atomically, build the training caption."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from lorastudio import fileio
from lorastudio.dataset import (
    ImageSet,
    effective_caption,
    read_caption,
    read_caption_text,
    write_caption,
)


@pytest.mark.parametrize(
    "data, text",
    [
        (b"a red car", "a red car"),
        (b"\xef\xbb\xbfa red car\r\n", "a red car"),  # Notepad: BOM + CRLF
        (b"line one\r\nline two\r\n\r\n", "line one\nline two"),
        (b"old mac\rline", "old mac\nline"),
        (b"  keep leading, strip trailing \t \n\n", "  keep leading, strip trailing"),
        ("café, 猫, ünïcode".encode("utf-8"), "café, 猫, ünïcode"),
        ("\ufeffnotepad unicode\r\n".encode("utf-16"), "notepad unicode"),  # UTF-16 with BOM
        (b"", ""),
    ],
)
def test_read_caption(tmp_path, data, text):
    path = tmp_path / "x.txt"
    path.write_bytes(data)
    assert read_caption(path) == text


def test_not_utf8_falls_back_and_says_so(tmp_path):
    path = tmp_path / "x.txt"
    path.write_bytes("crème brûlée – “quoted”".encode("cp1252"))
    read = read_caption_text(path)
    assert read.text == "crème brûlée – “quoted”"
    assert read.encoding == "cp1252" and read.used_fallback
    path.write_bytes(b"\x81\x8d\xe9")  # bytes cp1252 leaves undefined: Latin-1 still reads them
    read = read_caption_text(path)
    assert read.encoding == "latin-1" and read.text == "\x81\x8dé"
    assert not read_caption_text(_write(tmp_path / "ok.txt", b"plain")).used_fallback


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


@pytest.mark.parametrize("text", ["a red car", "café 猫 🐈", "two\nlines", "ends with spaces   ", "crlf\r\nin\r\n"])
def test_write_then_read_round_trips(tmp_path, text):
    path = tmp_path / "x.txt"
    write_caption(path, text)
    data = path.read_bytes()
    assert not data.startswith(b"\xef\xbb\xbf")
    assert data.endswith(b"\n") and not data.endswith(b"\n\n") and b"\r" not in data
    expected = text.replace("\r\n", "\n").rstrip()
    assert data.decode("utf-8") == expected + "\n"
    assert read_caption(path) == expected


def test_writing_an_empty_caption_writes_an_empty_file(tmp_path):
    path = tmp_path / "x.txt"
    write_caption(path, "   \n")
    assert path.read_bytes() == b""


def test_write_replaces_a_bom_crlf_file_with_clean_utf8(tmp_path):
    path = tmp_path / "x.txt"
    path.write_bytes(b"\xef\xbb\xbfold\r\n")
    write_caption(path, read_caption(path) + ", new")
    assert path.read_bytes() == b"old, new\n"


def test_a_failed_rename_leaves_the_old_caption_intact(tmp_path, monkeypatch):
    path = tmp_path / "x.txt"
    path.write_bytes(b"the artist's careful caption\n")

    def fail(src, dst):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(fileio.os, "replace", fail)
    with pytest.raises(OSError, match="No space"):
        write_caption(path, "new text")
    assert path.read_bytes() == b"the artist's careful caption\n"
    assert sorted(os.listdir(tmp_path)) == ["x.txt"]  # no temp file left behind


def test_a_failed_write_midway_leaves_the_old_caption_intact(tmp_path, monkeypatch):
    path = tmp_path / "x.txt"
    path.write_bytes(b"original\n")
    real_fsync = os.fsync

    def crash(fd):
        raise KeyboardInterrupt  # e.g. the app is killed while flushing

    monkeypatch.setattr(fileio.os, "fsync", crash)
    with pytest.raises(KeyboardInterrupt):
        write_caption(path, "half written")
    monkeypatch.setattr(fileio.os, "fsync", real_fsync)
    assert path.read_bytes() == b"original\n"
    assert sorted(os.listdir(tmp_path)) == ["x.txt"]


def test_write_goes_through_a_temp_file_in_the_same_folder(tmp_path, monkeypatch):
    path = tmp_path / "x.txt"
    seen = []
    real = os.replace

    def spy(src, dst):
        seen.append((Path(src).parent, Path(dst)))
        real(src, dst)

    monkeypatch.setattr(fileio.os, "replace", spy)
    write_caption(path, "hello")
    assert seen == [(tmp_path, path)]


def _set(caption: str | None) -> ImageSet:
    return ImageSet(name="s", inputs=[], target=Path("s.jpg"), caption_path=Path("s.txt"), caption=caption)


@pytest.mark.parametrize(
    "caption, trigger, default, expected",
    [
        ("a red car", "", "", "a red car"),
        ("a red car", "zkw", "", "zkw, a red car"),
        ("zkw, a red car", "zkw", "", "zkw, a red car"),       # already there
        ("zkw a red car", "zkw", "", "zkw a red car"),
        ("zkw", "zkw", "", "zkw"),
        ("zkwx style", "zkw", "", "zkw, zkwx style"),          # a longer word is not the trigger
        (None, "zkw", "make it blue", "zkw, make it blue"),    # default caption fills in
        ("   ", "", "make it blue", "make it blue"),
        (None, "zkw", "", "zkw"),
        (None, "", "", ""),
        ("  spaced  ", " zkw ", "", "zkw, spaced"),
        ("two\nlines", "zkw", "", "zkw, two\nlines"),
    ],
)
def test_effective_caption(caption, trigger, default, expected):
    assert effective_caption(_set(caption), trigger=trigger, default_caption=default) == expected
