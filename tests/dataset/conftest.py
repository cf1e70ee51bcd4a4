"""Fixtures that build tiny datasets on disk: real images made with Pillow, captions, junk."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from PIL import Image

_FORMATS = {".jpg": "JPEG", ".jpeg": "JPEG", ".png": "PNG", ".webp": "WEBP", ".bmp": "BMP",
            ".tif": "TIFF", ".tiff": "TIFF"}


def write_image(path: Path, size: tuple[int, int] = (32, 32), color=(200, 40, 40), mode: str = "RGB",
                **save_args) -> Path:
    """A small real image; the format follows the extension (any letter case)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    image = Image.new(mode, size, color)
    image.save(path, _FORMATS[path.suffix.lower()], **save_args)
    return path


@pytest.fixture
def make_image() -> Callable[..., Path]:
    return write_image


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    """An empty dataset folder."""
    path = tmp_path / "dataset"
    path.mkdir()
    return path


@pytest.fixture
def make_files(folder: Path) -> Callable[..., Path]:
    """``make_files("a_start.jpg", "a_end.png", "a.txt", ...)``: images are real 32x32
    images, ``.txt`` files get a caption, anything else a few bytes."""

    def make(*names: str, size: tuple[int, int] = (32, 32)) -> Path:
        for name in names:
            path = folder / name
            suffix = path.suffix.lower()
            if suffix in _FORMATS:
                write_image(path, size)
            elif suffix == ".txt":
                path.write_text(f"caption of {path.stem}", encoding="utf-8")
            else:
                path.write_bytes(b"junk")
        return folder

    return make


def pairs(count: int, prefix: str = "photo", inputs: int = 1) -> list[str]:
    """File names of ``count`` well-formed sets with ``inputs`` inputs each."""
    names = []
    for i in range(count):
        base = f"{prefix}{i:03d}"
        names += [f"{base}_start.jpg"] + [f"{base}_start{k}.jpg" for k in range(1, inputs)] + [f"{base}_end.jpg"]
    return names


@pytest.fixture
def pair_names() -> Callable[..., list[str]]:
    return pairs
