"""Header probes (cheap, EXIF-aware) and full decodes into RGB (what the trainer uses)."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from PIL import Image, PngImagePlugin

from lorastudio.dataset import (
    IMAGE_EXTENSIONS,
    EmptyImageError,
    ImageError,
    ImageTooLargeError,
    image_size,
    load_image,
    probe_image,
)

ORIENTATION = 0x0112


def _exif(orientation: int) -> bytes:
    exif = Image.Exif()
    exif[ORIENTATION] = orientation
    return exif.tobytes()


def _noise_bytes(fmt: str, size=(64, 64), **save_args) -> bytes:
    buffer = io.BytesIO()
    Image.effect_noise(size, 60).convert("RGB").save(buffer, fmt, **save_args)
    return buffer.getvalue()


def test_image_extensions_cover_the_guides_formats():
    assert {".jpg", ".jpeg", ".png", ".webp"} <= IMAGE_EXTENSIONS
    assert all(ext == ext.lower() and ext.startswith(".") for ext in IMAGE_EXTENSIONS)


@pytest.mark.parametrize("suffix", [".jpg", ".png", ".webp", ".tif"])
@pytest.mark.parametrize("orientation, displayed", [(1, (60, 40)), (3, (60, 40)), (6, (40, 60)), (8, (40, 60))])
def test_size_applies_exif_rotation_like_load_image(tmp_path, make_image, suffix, orientation, displayed):
    path = make_image(tmp_path / f"photo{suffix}", (60, 40), exif=_exif(orientation))
    assert image_size(path) == displayed
    assert load_image(path).size == displayed


def test_load_image_turns_the_photo_upright(tmp_path):
    stored = Image.new("RGB", (60, 40), (0, 0, 255))
    stored.paste((255, 0, 0), (0, 0, 10, 10))  # red marker top-left as stored
    path = tmp_path / "rotated.png"
    stored.save(path, exif=_exif(6))  # viewers rotate 90° clockwise
    upright = load_image(path)
    assert upright.size == (40, 60)
    assert upright.getpixel((35, 5)) == (255, 0, 0)  # top-left moved to the top-right
    assert upright.getpixel((5, 5)) == (0, 0, 255)


def test_header_probe_never_decodes_a_healthy_png(tmp_path, make_image, monkeypatch):
    path = make_image(tmp_path / "a.png", (300, 200))

    def refuse(self):
        raise AssertionError("decoded pixels")

    monkeypatch.setattr(PngImagePlugin.PngImageFile, "load", refuse)
    assert image_size(path) == (300, 200)
    assert probe_image(path).size == (300, 200)


def test_header_probe_never_decodes_a_healthy_jpeg(tmp_path, monkeypatch):
    from PIL import JpegImagePlugin

    path = tmp_path / "a.jpg"
    path.write_bytes(_noise_bytes("JPEG"))
    def refuse(self):
        raise AssertionError("decoded pixels")

    monkeypatch.setattr(JpegImagePlugin.JpegImageFile, "load", refuse)
    info = probe_image(path)
    assert (info.size, info.format, info.mode) == ((64, 64), "JPEG", "RGB")


def test_jpeg_with_padding_or_appended_data_is_fine(tmp_path):
    data = _noise_bytes("JPEG")
    padded, appended = tmp_path / "padded.jpg", tmp_path / "motion.jpg"
    padded.write_bytes(data + b"\x00" * 300)
    appended.write_bytes(data + b"ftypmp42" + bytes(range(256)) * 20)  # like a motion photo's video
    assert probe_image(padded).size == (64, 64)
    assert probe_image(appended).size == (64, 64)


@pytest.mark.parametrize("fmt, suffix", [("JPEG", ".jpg"), ("PNG", ".png"), ("WEBP", ".webp")])
def test_cut_short_files_are_damaged(tmp_path, fmt, suffix):
    data = _noise_bytes(fmt)
    path = tmp_path / f"cut{suffix}"
    path.write_bytes(data[: len(data) // 2])
    for read in (probe_image, load_image):
        with pytest.raises(ImageError, match=r'"cut\.\w+" is damaged or incomplete .*export it again'):
            read(path)


def test_png_with_a_bad_checksum(tmp_path):
    """A flipped bit inside a whole-looking PNG is found when decoding; a cut-short one
    with data appended (no IEND at the end) is found by the probe's checksum pass."""
    data = bytearray(_noise_bytes("PNG"))
    data[data.index(b"IDAT") + 20] ^= 0xFF
    path = tmp_path / "flipped.png"
    path.write_bytes(bytes(data))
    assert probe_image(path).size == (64, 64)  # the probe reads only the ends of the file
    with pytest.raises(ImageError, match="damaged"):
        load_image(path)
    path.write_bytes(bytes(data[: len(data) - 12]) + b"trailing junk")
    with pytest.raises(ImageError, match="damaged"):
        probe_image(path)


def test_png_with_data_after_iend_is_fine(tmp_path):
    path = tmp_path / "extra.png"
    path.write_bytes(_noise_bytes("PNG") + b"appended by some tool")
    assert probe_image(path).size == (64, 64)


def test_probe_cost_does_not_grow_with_the_file(tmp_path, monkeypatch):
    """Only the header and the last few KB are read from a healthy big file."""
    import builtins

    path = tmp_path / "big.png"
    Image.effect_noise((1500, 1500), 80).convert("RGB").save(path, compress_level=1)
    size = path.stat().st_size
    assert size > 2_000_000
    read = 0
    real_open = builtins.open

    class Counting(io.FileIO):
        def read(self, n=-1):
            nonlocal read
            data = super().read(n)
            read += len(data)
            return data

        def readinto(self, buffer):
            nonlocal read
            n = super().readinto(buffer)
            read += n or 0
            return n

    def counting_open(file, mode="r", *args, **kwargs):
        if Path(str(file)) == path and "b" in mode:
            return io.BufferedReader(Counting(str(file), "rb"))
        return real_open(file, mode, *args, **kwargs)

    monkeypatch.setattr(builtins, "open", counting_open)
    assert probe_image(path).size == (1500, 1500)
    assert 0 < read < 200_000, f"read {read} of {size} bytes"


def test_webp_shorter_than_its_header_says_is_cut_short(tmp_path):
    data = bytearray(_noise_bytes("WEBP"))
    declared = int.from_bytes(data[4:8], "little")
    data[4:8] = (declared + 1000).to_bytes(4, "little")
    path = tmp_path / "short.webp"
    path.write_bytes(bytes(data))
    with pytest.raises(ImageError, match="cut short|damaged"):
        probe_image(path)


def test_not_an_image(tmp_path):
    path = tmp_path / "fake.png"
    path.write_text("hello, I am text", encoding="utf-8")
    with pytest.raises(ImageError, match='"fake.png" is not an image') as info:
        load_image(path)
    assert isinstance(info.value, ValueError)  # callers may catch ValueError
    assert info.value.path == path


def test_empty_file(tmp_path):
    path = tmp_path / "empty.jpg"
    path.touch()
    with pytest.raises(EmptyImageError, match="0 bytes"):
        probe_image(path)
    with pytest.raises(EmptyImageError):
        load_image(path)


def test_missing_file(tmp_path):
    with pytest.raises(ImageError, match="cannot be opened"):
        load_image(tmp_path / "gone.jpg")


def test_pixel_limit(tmp_path, make_image, monkeypatch):
    path = make_image(tmp_path / "big.png", (100, 100))
    with pytest.raises(ImageTooLargeError, match="100x100 pixels"):
        load_image(path, max_pixels=9999)
    assert load_image(path, max_pixels=10_000).size == (100, 100)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 4000)  # Pillow refuses > 8000 itself
    with pytest.raises(ImageTooLargeError):
        load_image(path, max_pixels=10**9)
    with pytest.raises(ImageTooLargeError):
        probe_image(path)


# -- every mode becomes 8-bit RGB -------------------------------------------------------------

def test_sixteen_bit_grey_is_scaled_not_clipped(tmp_path):
    grey = Image.new("I;16", (3, 1))
    for x, value in enumerate((0, 32768, 65535)):
        grey.putpixel((x, 0), value)
    path = tmp_path / "depth.png"
    grey.save(path)
    assert Image.open(path).mode in ("I;16", "I")
    rgb = load_image(path)
    assert rgb.mode == "RGB"
    assert [rgb.getpixel((x, 0)) for x in range(3)] == [(0, 0, 0), (128, 128, 128), (255, 255, 255)]


def test_transparency_is_composited_onto_white(tmp_path):
    rgba = Image.new("RGBA", (3, 1), (255, 0, 0, 0))
    rgba.putpixel((1, 0), (255, 0, 0, 255))
    rgba.putpixel((2, 0), (255, 0, 0, 128))
    path = tmp_path / "cutout.png"
    rgba.save(path)
    rgb = load_image(path)
    assert rgb.mode == "RGB"
    assert rgb.getpixel((0, 0)) == (255, 255, 255)
    assert rgb.getpixel((1, 0)) == (255, 0, 0)
    assert rgb.getpixel((2, 0))[0] == 255 and 120 <= rgb.getpixel((2, 0))[1] <= 135
    assert load_image(path, background=(0, 0, 0)).getpixel((0, 0)) == (0, 0, 0)


def test_grey_with_alpha(tmp_path):
    path = tmp_path / "la.png"
    Image.new("LA", (2, 2), (10, 0)).save(path)
    assert load_image(path).getpixel((0, 0)) == (255, 255, 255)


def test_palette_with_and_without_transparency(tmp_path):
    palette = Image.new("P", (2, 1))
    palette.putpalette([0, 0, 255, 0, 255, 0] + [0] * 762)
    palette.putpixel((1, 0), 1)
    plain = tmp_path / "plain.png"
    palette.save(plain)
    assert [load_image(plain).getpixel((x, 0)) for x in range(2)] == [(0, 0, 255), (0, 255, 0)]
    transparent = tmp_path / "transparent.png"
    palette.save(transparent, transparency=0)
    assert [load_image(transparent).getpixel((x, 0)) for x in range(2)] == [(255, 255, 255), (0, 255, 0)]


def test_cmyk_jpeg(tmp_path):
    path = tmp_path / "print.jpg"
    Image.new("CMYK", (8, 8), (255, 0, 0, 0)).save(path, quality=100)  # pure cyan
    red, green, blue = load_image(path).getpixel((4, 4))
    assert red < 30 and green > 225 and blue > 225


@pytest.mark.parametrize("mode, color", [("1", 1), ("L", 128), ("RGB", (1, 2, 3))])
def test_simple_modes(tmp_path, mode, color):
    path = tmp_path / f"{mode}.png"
    Image.new(mode, (4, 4), color).save(path)
    image = load_image(path)
    assert image.mode == "RGB" and image.size == (4, 4)
    expected = {"1": (255, 255, 255), "L": (128, 128, 128), "RGB": (1, 2, 3)}[mode]
    assert image.getpixel((0, 0)) == expected


def test_load_image_returns_a_detached_image(tmp_path, make_image):
    path = make_image(tmp_path / "a.png")
    image = load_image(path)
    Path(path).unlink()  # the file is closed and the pixels are in memory
    assert image.getpixel((0, 0)) == (200, 40, 40)
