"""Aspect-ratio buckets: the training size of each image.

``train.resolution`` is a training *area*: a target image of any aspect ratio is trained
at about ``resolution²`` pixels, with its aspect ratio kept and both sides multiples of the
family's ``size_multiple`` (VAE factor × patch size). Sets whose targets land on the same
size share a bucket and may share a batch.

Resizing covers the bucket and centre-crops the excess (at most ``size_multiple / 2``
pixels per side from rounding), so images are never stretched.
"""

from __future__ import annotations

import math

from PIL import Image


def bucket_size(width: int, height: int, resolution: int, multiple: int = 16) -> tuple[int, int]:
    """(width, height) with area ≈ resolution², aspect ≈ width/height, sides multiples of ``multiple``."""
    if width <= 0 or height <= 0:
        raise ValueError(f"image size must be positive, got {width}x{height}")
    aspect = width / height
    area = float(resolution * resolution)
    w = math.sqrt(area * aspect)
    h = area / w
    bw = max(multiple, int(round(w / multiple)) * multiple)
    bh = max(multiple, int(round(h / multiple)) * multiple)
    return bw, bh


def resize_to(image: Image.Image, size: tuple[int, int]) -> Image.Image:
    """Scale ``image`` to cover ``size`` (keeping its aspect) and centre-crop to exactly ``size``."""
    tw, th = size
    w, h = image.size
    if (w, h) == (tw, th):
        return image
    scale = max(tw / w, th / h)
    nw, nh = max(tw, round(w * scale)), max(th, round(h * scale))
    resized = image.resize((nw, nh), Image.Resampling.LANCZOS)
    left, top = (nw - tw) // 2, (nh - th) // 2
    return resized.crop((left, top, left + tw, top + th))
