"""Aspect-ratio buckets: area ≈ resolution², aspect kept, sides multiples of the family's factor."""

from __future__ import annotations

import pytest
from PIL import Image

from lorastudio.training.buckets import bucket_size, resize_to


@pytest.mark.parametrize("size", [(512, 512), (1024, 768), (768, 1024), (1920, 1080), (300, 1200), (33, 47)])
@pytest.mark.parametrize("resolution,multiple", [(512, 16), (1024, 16), (64, 16), (512, 32)])
def test_bucket_keeps_area_aspect_and_multiples(size, resolution, multiple):
    w, h = bucket_size(*size, resolution, multiple)
    assert w % multiple == 0 and h % multiple == 0
    area = resolution * resolution
    # rounding each side to the multiple moves the area by at most about one row/column
    assert abs(w * h - area) <= multiple * (w + h) / 2 + multiple * multiple
    aspect, got = size[0] / size[1], w / h
    assert abs(got - aspect) / aspect < 0.1 + multiple / min(w, h)


def test_square_is_exact():
    assert bucket_size(1000, 1000, 512, 16) == (512, 512)
    assert bucket_size(64, 64, 64, 16) == (64, 64)


def test_bucket_never_zero():
    assert min(bucket_size(10000, 10, 64, 16)) == 16


def test_resize_covers_and_crops_without_stretching():
    im = Image.new("RGB", (200, 100), (255, 0, 0))
    im.paste((0, 0, 255), (0, 0, 20, 100))  # a blue band on the left edge gets cropped a little
    out = resize_to(im, (96, 64))
    assert out.size == (96, 64)
    same = Image.new("RGB", (64, 48))
    assert resize_to(same, (64, 48)) is same


def test_bad_size_refused():
    with pytest.raises(ValueError):
        bucket_size(0, 10, 64)
