"""Reading training images: cheap header probes for the scanner, full decodes for the trainer.

Two needs pull in opposite directions. Scanning a folder of thousands of photos must be
quick, so :func:`probe_image` reads only the header (size, format, EXIF orientation) plus a
few cheap integrity checks, never the pixels of a healthy file. Training needs the pixels,
exactly as the artist sees them in a viewer, so :func:`load_image` decodes fully, applies
the EXIF orientation and turns every mode (16-bit, palette, CMYK, alpha …) into plain RGB.

Both report problems as :class:`ImageError` (a ``ValueError``) whose message names the
file and says what to do, so the scanner and the trainer can show it to the artist as is.
Images bigger than Pillow's decompression-bomb limit are refused with
:class:`ImageTooLargeError` instead of being decoded (a 40,000 × 40,000 "photo" would
otherwise take gigabytes of memory).
"""

from __future__ import annotations

import contextlib
import io
import os
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from PIL import Image, ImageOps, UnidentifiedImageError

#: File extensions (lower case) that count as images. Matching is case-insensitive.
IMAGE_EXTENSIONS: frozenset[str] = frozenset({".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff"})

#: The colour transparent pixels are composited onto (see :func:`load_image`).
WHITE = (255, 255, 255)

_EXIF_ORIENTATION = 0x0112
#: EXIF orientations that rotate by 90° and so swap width and height.
_SWAPS_SIDES = frozenset({5, 6, 7, 8})
#: How much of a file's end we read to find its end marker, and the markers.
_TAIL_BYTES = 4096
_JPEG_END = b"\xff\xd9"
_PNG_END = b"IEND\xaeB`\x82"


class ImageError(ValueError):
    """An image that cannot be used; the message names the file and what to do."""

    def __init__(self, path: str | os.PathLike[str], message: str) -> None:
        super().__init__(message)
        self.path = Path(path)


class EmptyImageError(ImageError):
    """The file has zero bytes (an interrupted copy or download)."""


class ImageTooLargeError(ImageError):
    """More pixels than the decompression-bomb limit allows."""


@dataclass(frozen=True)
class ImageInfo:
    """What a header tells us about an image."""

    #: (width, height) as displayed, i.e. after the EXIF orientation is applied.
    size: tuple[int, int]
    #: Pillow's format name ("JPEG", "PNG", …).
    format: str
    #: Pillow's mode before conversion ("RGB", "I;16", "P", "CMYK", …).
    mode: str


def is_image_name(name: str) -> bool:
    """True when the file name has one of :data:`IMAGE_EXTENSIONS` (any letter case)."""
    return os.path.splitext(name)[1].lower() in IMAGE_EXTENSIONS


def pixel_limit() -> int | None:
    """The largest pixel count accepted: Pillow's ``Image.MAX_IMAGE_PIXELS`` (about 89 MP).

    Pillow only *warns* between this limit and twice it; we treat that range as an error
    too, because an image that large is almost certainly a mistake in a training folder
    and would be downscaled to the training resolution anyway.
    """
    return Image.MAX_IMAGE_PIXELS


def image_size(path: str | os.PathLike[str]) -> tuple[int, int]:
    """(width, height) as displayed, read from the header (EXIF rotation applied).

    A phone photo stored landscape with "rotate 90°" in its EXIF reports portrait size,
    the same size :func:`load_image` returns. Raises :class:`ImageError`.
    """
    return probe_image(path, thorough=False).size


def probe_image(path: str | os.PathLike[str], *, thorough: bool = True,
                max_pixels: int | None = None, quiet: bool = True) -> ImageInfo:
    """Read an image's header and check, cheaply, that the file is whole.

    With ``thorough`` (what the scanner uses) a JPEG or PNG must end with its end marker,
    which catches files cut short by an interrupted copy; one that does not is examined in
    full to decide (a PNG's checksums, a JPEG's decode). Pillow's WebP reader checks the
    whole container when it opens the file. Healthy files are never decoded, so the cost
    does not grow with the image size. Bit rot in the middle of a healthy-looking file is
    only found by :func:`load_image`.

    ``quiet=False`` skips silencing Pillow's decompression-bomb warning, for callers that
    already hold :class:`quiet_bomb_warning` around many probes (the warnings filter is
    process-wide, so changing it from many threads at once is not safe).
    """
    path = Path(path)
    _refuse_empty(path)
    limit = pixel_limit() if max_pixels is None else max_pixels
    with _as_image_errors(path):
        with open(path, "rb") as fh, (quiet_bomb_warning() if quiet else contextlib.nullcontext()):
            with Image.open(fh) as im:
                _refuse_too_many_pixels(path, im.size, limit)
                info = ImageInfo(size=_displayed_size(im), format=im.format or "?", mode=im.mode)
                if thorough:
                    _check_whole(fh, im)
    return info


def load_image(path: str | os.PathLike[str], max_pixels: int | None = None,
               background: tuple[int, int, int] = WHITE) -> Image.Image:
    """Decode an image fully into 8-bit RGB, as a viewer shows it.

    - The EXIF orientation is applied (``ImageOps.exif_transpose``), so a rotated phone
      photo trains upright and has the size :func:`image_size` reports.
    - Transparency (RGBA, LA, palette with transparency) is composited onto ``background``
      (white by default). The pixels under a fully transparent area are undefined, often
      black or leftovers of an edit; a background-removal LoRA trained on them would learn
      garbage, while white is what most viewers and exports show.
    - 16-bit greyscale (``I;16``, ``I``) is scaled down to 8 bits rather than clipped, so it
      is not rendered almost white. CMYK is converted through its embedded ICC profile when
      it has one, else with Pillow's plain formula.

    ``max_pixels`` defaults to :func:`pixel_limit`; it can be raised up to twice that (Pillow
    refuses anything larger outright). Raises :class:`ImageError` with a message naming the
    file and what to do.
    """
    path = Path(path)
    _refuse_empty(path)
    limit = pixel_limit() if max_pixels is None else max_pixels
    with _as_image_errors(path):
        with open(path, "rb") as fh, quiet_bomb_warning():
            with Image.open(fh) as im:
                _refuse_too_many_pixels(path, im.size, limit)
                im.load()
                upright = _exif_transpose(im)
                return to_rgb(upright, background)


def to_rgb(im: Image.Image, background: tuple[int, int, int] = WHITE) -> Image.Image:
    """Convert any Pillow mode to 8-bit RGB (alpha composited onto ``background``)."""
    mode = im.mode
    if mode == "RGB":
        return im.copy()
    if mode in ("I;16", "I;16L", "I;16B", "I;16N", "I", "F"):
        return _high_bit_depth_grey_to_rgb(im)
    if mode == "CMYK":
        return _cmyk_to_rgb(im)
    if mode == "P":
        im = im.convert("RGBA" if "transparency" in im.info else "RGB")
        mode = im.mode
        if mode == "RGB":
            return im
    if mode in ("RGBA", "RGBa", "LA", "La", "PA"):
        rgba = im.convert("RGBA")
        flat = Image.new("RGB", rgba.size, background)
        flat.paste(rgba, mask=rgba.getchannel("A"))
        return flat
    if mode == "L" and "transparency" in im.info:
        return to_rgb(im.convert("LA"), background)
    return im.convert("RGB")


# -- internals ------------------------------------------------------------------------------

class quiet_bomb_warning(warnings.catch_warnings):  # noqa: N801 (used like a function)
    """Silence Pillow's DecompressionBombWarning: :func:`_refuse_too_many_pixels` decides instead.

    The warning fires between the limit and twice it; we turn that range into an error
    ourselves, so letting the warning print as well would only add noise to the console.
    """

    def __enter__(self):  # type: ignore[override]
        result = super().__enter__()
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        return result


@contextlib.contextmanager
def _as_image_errors(path: Path) -> Iterator[None]:
    """Turn whatever Pillow or the OS raises for a bad file into one :class:`ImageError`.

    Pillow signals broken files with many exception types (``OSError``, ``SyntaxError``,
    ``struct.error``, ``ValueError`` …); callers should only need to catch one.
    """
    try:
        yield
    except ImageError:
        raise
    except Image.DecompressionBombError as exc:
        raise _too_large(path, None) from exc
    except UnidentifiedImageError as exc:
        raise ImageError(path, f"{_quoted(path)} is not an image LoRA Studio can read (or it is damaged). "
                               "Open it in an image editor and export it again as PNG or JPEG.") from exc
    except (FileNotFoundError, PermissionError, IsADirectoryError) as exc:
        raise ImageError(path, f"{_quoted(path)} cannot be opened ({exc.strerror or exc}). "
                               "Check that the file is still there and that you may read it.") from exc
    except MemoryError as exc:
        raise ImageError(path, f"{_quoted(path)} is too large to load in the memory available. "
                               "Scale it down (a few megapixels is plenty for training).") from exc
    except Exception as exc:
        raise _damaged(path, exc) from exc


def _quoted(path: Path) -> str:
    """The file name in quotes, as every message names it (the scanner's messages match)."""
    return f'"{path.name}"'


def _refuse_empty(path: Path) -> None:
    try:
        size = path.stat().st_size
    except OSError:
        return  # opening it reports the real reason
    if size == 0:
        raise EmptyImageError(path, f"{_quoted(path)} is empty (0 bytes), probably an interrupted copy or "
                                    "download. Copy the image again or remove it.")


def _refuse_too_many_pixels(path: Path, size: tuple[int, int], limit: int | None) -> None:
    if limit is not None and size[0] * size[1] > limit:
        raise _too_large(path, size, limit)


def _too_large(path: Path, size: tuple[int, int] | None, limit: int | None = None) -> ImageTooLargeError:
    limit = pixel_limit() if limit is None else limit
    # Pillow refuses more than twice its limit while opening, before the size is known to us.
    what = f"is {size[0]}x{size[1]} pixels" if size else "has far too many pixels"
    cap = f" (the limit is {limit / 1e6:.0f} megapixels)" if limit else ""
    return ImageTooLargeError(
        path, f"{_quoted(path)} {what}{cap}, too large to load safely. Scale it down in an image "
              "editor; training uses a few megapixels at most.")


def _damaged(path: Path, exc: BaseException) -> ImageError:
    detail = str(exc).strip() or type(exc).__name__
    return ImageError(path, f"{_quoted(path)} is damaged or incomplete ({detail}). Open it in an image "
                            "editor and export it again, or copy it again from the original.")


def _displayed_size(im: Image.Image) -> tuple[int, int]:
    width, height = im.size
    # Pillow's TIFF plugin already reports the rotated size (and rotates when loading).
    if im.format != "TIFF" and _orientation(im) in _SWAPS_SIDES:
        return height, width
    return width, height


def _orientation(im: Image.Image) -> int:
    """The EXIF orientation from what the header already holds, without decoding pixels.

    ``PngImageFile.getexif`` decodes the whole image when the header has no EXIF, so the
    base-class method is called instead; it reads the EXIF, raw-profile and XMP data the
    header parse already collected (an eXIf chunk after the pixel data is missed, which
    real files practically never have).
    """
    try:
        value = Image.Image.getexif(im).get(_EXIF_ORIENTATION, 1)
        return int(value)
    except Exception:  # a broken EXIF block must not make a good image unreadable
        return 1


def _exif_transpose(im: Image.Image) -> Image.Image:
    try:
        return ImageOps.exif_transpose(im)
    except Exception:  # broken EXIF: keep the pixels as stored, as _orientation does
        return im


def _check_whole(fh, im: Image.Image) -> None:
    """Cheap per-format checks that the file is not cut short.

    A healthy JPEG ends with its end-of-image marker and a healthy PNG with its IEND
    chunk, so reading the last few kilobytes tells a whole file from one cut short by an
    interrupted copy or download, whatever the image's size. Only a file that does not end
    that way (rare: data appended after the image, as in motion photos) is examined fully.
    """
    if im.format == "PNG":
        if not _ends_with(fh, _PNG_END):
            im.verify()  # chunk checksums up to IEND, no decompression
    elif im.format == "JPEG":
        if not _ends_with(fh, _JPEG_END):
            im.load()
    # WebP needs nothing more: Pillow's WebP reader validates the whole container on open.


def _ends_with(fh, marker: bytes) -> bool:
    fh.seek(0, os.SEEK_END)
    size = fh.tell()
    fh.seek(max(0, size - _TAIL_BYTES))
    tail = fh.read().rstrip(b"\x00")  # some cameras and tools pad with zeros
    return tail.endswith(marker)


def _high_bit_depth_grey_to_rgb(im: Image.Image) -> Image.Image:
    """16-bit (or 32-bit int / float) greyscale → 8-bit RGB, scaled instead of clipped."""
    if im.mode == "F":
        low, high = im.getextrema()
        scale = 255.0 if high <= 1.0 else (1.0 if high <= 255 else 255.0 / high)
        return im.point(lambda v: v * scale).convert("L").convert("RGB")
    wide = im if im.mode == "I" else im.convert("I")
    high = wide.getextrema()[1]
    if high > 255:
        divisor = 256.0 if high <= 65535 else high / 255.0
        wide = wide.point(lambda v: v / divisor)
    return wide.convert("L").convert("RGB")


def _cmyk_to_rgb(im: Image.Image) -> Image.Image:
    icc = im.info.get("icc_profile")
    if icc:
        try:
            from PIL import ImageCms

            source = ImageCms.ImageCmsProfile(io.BytesIO(icc))
            srgb = ImageCms.createProfile("sRGB")
            converted = ImageCms.profileToProfile(im, source, srgb, outputMode="RGB")
            if converted is not None:
                return converted
        except Exception:  # no littleCMS or a broken profile: the plain formula still works
            pass
    return im.convert("RGB")
