"""Thumbnails: placeholder first, the real image after, a disk cache, and real cell geometry."""

from __future__ import annotations

import os

import pytest
from PySide6.QtCore import QRect
from PySide6.QtGui import QColor, QImage, QPainter
from PySide6.QtWidgets import QStyleOptionViewItem

from lorastudio.dataset import scan_dataset
from lorastudio.ui import theme
from lorastudio.ui.dataset_page import DatasetPage
from lorastudio.ui.set_delegate import ARROW, GAP, MARGIN, cell_size, image_rects
from lorastudio.ui.set_model import make_entries
from lorastudio.ui.thumbnails import ImageRef, ThumbnailLoader, decode_thumbnail, thumb_key

from .conftest import make_dataset, write_image


def near(c: QColor, rgb: tuple[int, int, int], tol: int = 40) -> bool:
    return all(abs(a - b) <= tol for a, b in zip((c.red(), c.green(), c.blue()), rgb))


def test_decode_fits_the_box_and_keeps_the_shape(tmp_path):
    path = write_image(tmp_path / "wide.jpg", (1000, 500))
    image, error = decode_thumbnail(str(path), 100)
    assert error == ""
    assert (image.width(), image.height()) == (100, 50)


def test_decode_reports_a_broken_file(tmp_path):
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"not a jpeg at all")
    image, error = decode_thumbnail(str(bad), 100)
    assert image.isNull() and error


def test_loader_placeholder_then_image_then_disk_cache(qtbot, tmp_path):
    path = write_image(tmp_path / "a.png", (300, 200), (10, 200, 30))
    ref = ImageRef.of(path)
    loader = ThumbnailLoader(tmp_path / "cache")
    assert loader.pixmap(ref, 96) is None  # not in memory yet: the caller paints a placeholder
    with qtbot.waitSignal(loader.ready, timeout=10000) as blocker:
        pass
    assert blocker.args[0] == thumb_key(ref, 96)
    pm = loader.pixmap(ref, 96)
    assert pm is not None and (pm.width(), pm.height()) == (96, 64)
    assert loader.decoded == 1 and loader.from_disk == 0
    cached = list((tmp_path / "cache" / "thumbs").rglob("*.jpg"))
    assert len(cached) == 1

    # A second loader (a new session) reads the disk cache instead of decoding.
    again = ThumbnailLoader(tmp_path / "cache")
    assert again.pixmap(ref, 96) is None
    qtbot.waitUntil(lambda: again.pixmap(ref, 96) is not None, timeout=10000)
    assert again.from_disk == 1 and again.decoded == 0
    loader.shutdown()
    again.shutdown()


def test_cache_key_changes_when_the_file_changes(tmp_path):
    path = write_image(tmp_path / "a.png", (30, 20))
    before = ImageRef.of(path)
    write_image(path, (40, 20))
    os.utime(path, ns=(before.mtime_ns + 10_000_000, before.mtime_ns + 10_000_000))
    after = ImageRef.of(path)
    assert thumb_key(before, 96) != thumb_key(after, 96)
    assert thumb_key(after, 96) != thumb_key(after, 128)


def test_broken_image_is_an_error_not_a_hang(qtbot, tmp_path):
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"\x89PNG broken")
    loader = ThumbnailLoader(None)
    ref = ImageRef.of(bad)
    loader.pixmap(ref, 64)
    qtbot.waitUntil(lambda: loader.error(ref, 64) is not None, timeout=10000)
    assert loader.pixmap(ref, 64) is None  # failed: not rescheduled
    assert loader.pending_count() == 0


@pytest.mark.parametrize("inputs", [1, 2, 3])
def test_cell_geometry_for_one_two_three_inputs(qtbot, tmp_path, inputs):
    root = make_dataset(tmp_path / f"ds{inputs}", sets=3, inputs=inputs, size=(80, 60))
    loader = ThumbnailLoader(tmp_path / "cache")
    page = DatasetPage(loader)
    qtbot.addWidget(page)
    page.resize(1400, 800)
    page.show()
    dataset = scan_dataset(root)
    page.set_dataset(dataset, make_entries(dataset))
    thumb = page.delegate.thumb
    expected_w = 2 * MARGIN + inputs * thumb + (inputs - 1) * GAP + ARROW + thumb
    size = cell_size(inputs, True, thumb)
    assert size.width() == expected_w
    index = page.proxy.index(0, 0)
    rect = page.grid.visualRect(index)
    assert rect.width() == expected_w
    assert rect.height() == size.height()
    assert page.delegate.sizeHint(QStyleOptionViewItem(), index) == size
    # Every set has the same cell (uniform item sizes), laid out side by side.
    second = page.grid.visualRect(page.proxy.index(1, 0))
    assert second.size() == rect.size()
    assert second.left() >= rect.right() or second.top() > rect.top()
    # inputs + target image slots, each exactly thumb × thumb, in order, inside the cell.
    boxes = image_rects(rect, inputs, True, thumb)
    assert len(boxes) == inputs + 1
    assert all(b.width() == thumb and b.height() == thumb for b in boxes)
    assert all(rect.contains(b) for b in boxes)
    assert boxes[-1].left() - boxes[-2].right() - 1 == ARROW
    loader.shutdown()


def _render_cell(page: DatasetPage, row: int = 0) -> tuple[QImage, QRect]:
    index = page.proxy.index(row, 0)
    size = page.delegate.sizeHint(QStyleOptionViewItem(), index)
    image = QImage(size, QImage.Format.Format_ARGB32)
    image.fill(QColor("white"))
    option = QStyleOptionViewItem()
    option.rect = QRect(0, 0, size.width(), size.height())
    option.font = page.font()
    painter = QPainter(image)
    page.delegate.paint(painter, option, index)
    painter.end()
    return image, QRect(option.rect)


def test_delegate_paints_placeholder_then_the_thumbnail(qtbot, tmp_path):
    root = make_dataset(tmp_path / "ds", sets=2, inputs=2, size=(90, 90), color=(250, 10, 10))
    loader = ThumbnailLoader(tmp_path / "cache")
    page = DatasetPage(loader)
    qtbot.addWidget(page)
    dataset = scan_dataset(root)
    page.set_dataset(dataset, make_entries(dataset))

    image, cell = _render_cell(page)
    boxes = image_rects(cell, 2, True, page.delegate.thumb)
    placeholder = theme.colors().q("placeholder")
    for box in boxes:  # all three slots: same-size placeholders while loading
        c = image.pixelColor(box.center())
        assert near(c, (placeholder.red(), placeholder.green(), placeholder.blue()), 4)

    qtbot.waitUntil(lambda: loader.is_idle() and loader.decoded + loader.from_disk >= 3, timeout=10000)
    qtbot.wait(50)
    image, cell = _render_cell(page)
    assert near(image.pixelColor(boxes[0].center()), (250, 10, 10))   # _start
    assert near(image.pixelColor(boxes[1].center()), (250, 10, 10))   # _start1
    assert near(image.pixelColor(boxes[2].center()), (40, 40, 200))   # _end
    loader.shutdown()


def test_missing_target_is_drawn_as_missing(qtbot, tmp_path):
    root = make_dataset(tmp_path / "ds", sets=3, missing_end=(0,))
    loader = ThumbnailLoader(None)
    page = DatasetPage(loader)
    qtbot.addWidget(page)
    dataset = scan_dataset(root)
    page.set_dataset(dataset, make_entries(dataset))
    entry = page.model.entry(0)
    assert entry.image_set.target is None
    assert entry.worst is not None and entry.worst.value == "error"
    image, _cell = _render_cell(page, 0)  # must not raise
    assert not image.isNull()
    loader.shutdown()


def test_idle_only_once_every_thumbnail_has_reached_the_ui_thread(qtbot, tmp_path):
    """A decode's result reaches the UI thread as a queued event after its pool thread is free:
    until that event is handled, ``ready`` has not fired and the loader is not idle (a CI run
    once read "idle" one thumbnail early). ``wait_for_done`` blocks without handling events, so
    the pool is finished and the result still queued, on any machine."""
    path = write_image(tmp_path / "a.png", (50, 50))
    loader = ThumbnailLoader(None, threads=1)
    order: list[str] = []
    loader.ready.connect(order.append)
    loader.pixmap(ImageRef.of(path), 32)
    assert loader.wait_for_done(10000)
    assert not loader.is_idle() and order == []
    qtbot.waitUntil(loader.is_idle, timeout=10000)
    assert order == [thumb_key(ImageRef.of(path), 32)]


def test_visible_rows_are_loaded_first(qtbot, tmp_path, monkeypatch):
    """The newest request is served first (what is on screen beats what scrolled past).

    The first decode is held until every request is queued, so the order does not depend on
    how fast this machine decodes compared with how fast the test queues.
    """
    import threading

    from lorastudio.ui import thumbnails

    paths = [write_image(tmp_path / f"{i}.png", (50, 50)) for i in range(40)]
    gate = threading.Event()
    real_load = thumbnails.load_thumbnail

    def held_load(ref, box, cache_dir):
        gate.wait(10)
        return real_load(ref, box, cache_dir)

    monkeypatch.setattr(thumbnails, "load_thumbnail", held_load)
    loader = ThumbnailLoader(None, threads=1)
    order: list[str] = []
    loader.ready.connect(order.append)
    loader.pixmap(ImageRef.of(paths[0]), 32)
    # The pool thread has taken the first request and is held in its decode.
    qtbot.waitUntil(lambda: loader.pending_count() == 1, timeout=10000)  # taken: 1 active, 0 queued
    for p in paths[1:]:
        loader.pixmap(ImageRef.of(p), 32)
    gate.set()
    qtbot.waitUntil(loader.is_idle, timeout=10000)
    keys = [thumb_key(ImageRef.of(p), 32) for p in paths]
    assert set(order) == set(keys)
    # The first request was already being decoded; after it, newest first, down to the second.
    assert order[0] == keys[0]
    assert order[1:] == list(reversed(keys[1:]))
    loader.shutdown()


def test_disk_cache_is_trimmed_oldest_first(tmp_path):
    from lorastudio.ui.thumbnails import prune_cache

    folder = tmp_path / "thumbs"
    (folder / "ab").mkdir(parents=True)
    for i in range(10):
        f = folder / "ab" / f"{i}.jpg"
        f.write_bytes(b"x" * 1000)
        os.utime(f, (1_000_000 + i, 1_000_000 + i))
    assert prune_cache(folder, max_bytes=20_000) == 0
    removed = prune_cache(folder, max_bytes=5_000)
    left = sorted(p.name for p in (folder / "ab").iterdir())
    assert removed == 6 and left == ["6.jpg", "7.jpg", "8.jpg", "9.jpg"]
