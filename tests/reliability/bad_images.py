"""Generators of the bad, odd and hostile image files the reliability tests feed LoRA Studio.

Every function writes one file and returns its path. Nothing here is large on disk: the
decompression bomb and the 20,000-pixel photo are small files whose headers claim huge
sizes, as real hostile or mistaken files do.
"""

from __future__ import annotations

import io
import struct
import zlib
from pathlib import Path

from PIL import Image


def picture(size=(48, 48), mode="RGB") -> Image.Image:
    """A picture whose halves differ (left red, right blue), so orientation is testable."""
    im = Image.new("RGB", size, (220, 30, 30))
    im.paste((30, 30, 220), (size[0] // 2, 0, size[0], size[1]))
    return im if mode == "RGB" else im.convert(mode)


def save(path: Path, image: Image.Image, **kw) -> Path:
    image.save(path, **kw)
    return path


def truncated(path: Path, fmt: str, keep: float = 0.6) -> Path:
    buf = io.BytesIO()
    picture((64, 64)).save(buf, format=fmt, **({"quality": 95} if fmt == "JPEG" else {}))
    data = buf.getvalue()
    path.write_bytes(data[: int(len(data) * keep)])
    return path


def corrupt_middle(path: Path, fmt: str) -> Path:
    """A file of the right length and with its end marker, garbage in the middle (bit rot)."""
    buf = io.BytesIO()
    picture((64, 64)).save(buf, format=fmt, **({"quality": 95} if fmt == "JPEG" else {}))
    data = bytearray(buf.getvalue())
    start, end = len(data) // 3, 2 * len(data) // 3
    data[start:end] = bytes((i * 37 + 11) % 256 for i in range(end - start))
    path.write_bytes(bytes(data))
    return path


def empty(path: Path) -> Path:
    path.write_bytes(b"")
    return path


def _png_with_size(width: int, height: int) -> bytes:
    """A real, small PNG whose header claims ``width`` × ``height`` (a decompression bomb:
    a few hundred bytes that would decode to gigabytes)."""
    buf = io.BytesIO()
    Image.new("L", (8, 8), 0).save(buf, format="PNG")
    data = bytearray(buf.getvalue())
    ihdr = data.index(b"IHDR")
    data[ihdr + 4: ihdr + 12] = struct.pack(">II", width, height)
    crc = zlib.crc32(bytes(data[ihdr: ihdr + 17])) & 0xFFFFFFFF
    data[ihdr + 17: ihdr + 21] = struct.pack(">I", crc)
    return bytes(data)


def bomb(path: Path, side: int = 30000) -> Path:
    path.write_bytes(_png_with_size(side, side))
    return path


def png16(path: Path) -> Path:
    """16-bit greyscale: left half full white (65535), right half black."""
    im = Image.new("I;16", (48, 48), 0)
    im.paste(65535, (0, 0, 24, 48))
    im.save(path)
    return path


def palette_with_transparency(path: Path) -> Path:
    """Palette PNG: index 0 fully transparent (left half), index 1 blue (right half)."""
    im = Image.new("P", (48, 48), 0)
    im.putpalette([0, 0, 0, 30, 30, 220] + [0] * 762)
    im.paste(1, (24, 0, 48, 48))
    im.save(path, transparency=0)
    return path


def cmyk_jpeg(path: Path) -> Path:
    """CMYK JPEG: left half white (no ink), right half full cyan."""
    im = Image.new("CMYK", (48, 48), (0, 0, 0, 0))
    im.paste((255, 0, 0, 0), (24, 0, 48, 48))
    im.save(path, quality=95)
    return path


def rgba_png(path: Path) -> Path:
    """RGBA: left half transparent red (must come out white), right half opaque blue."""
    im = Image.new("RGBA", (48, 48), (255, 0, 0, 0))
    im.paste((30, 30, 220, 255), (24, 0, 48, 48))
    im.save(path)
    return path


def exif_rotated_jpeg(path: Path) -> Path:
    """Stored landscape 64×32 (left red, right blue) with EXIF orientation 6 ("rotate 90° CW"
    to view): a viewer shows it portrait 32×64 with red on top."""
    im = picture((64, 32))
    exif = Image.Exif()
    exif[0x0112] = 6
    im.save(path, exif=exif.tobytes(), quality=95)
    return path


def one_pixel(path: Path) -> Path:
    return save(path, Image.new("RGB", (1, 1), (10, 200, 10)))


def panorama(path: Path, width: int = 20000, height: int = 16) -> Path:
    """A 20,000-pixel-wide image (small on disk)."""
    return save(path, picture((width, height)))
