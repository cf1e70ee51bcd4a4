"""Thumbnails decoded off the UI thread, kept in memory and cached on disk.

The grid asks ``ThumbnailLoader.pixmap(ref, box)`` while painting. A thumbnail already
in memory comes back at once; otherwise the request goes on a stack that a few pool
threads drain newest-first (what is on screen now beats what scrolled past), the view
paints a same-size placeholder, and ``ready`` fires when the image is there.

Decoding asks ``QImageReader`` for the reduced size up front (``setScaledSize``: JPEG
decodes at 1/2, 1/4, 1/8 scale straight from the DCT), so a 1024-px photo costs a few
milliseconds. Results go to the user cache folder keyed by path, box, file size and mtime,
so an edited image is decoded again and an unchanged one never is.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import os
import threading
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

from PySide6.QtCore import QObject, QRunnable, QSize, Qt, QThreadPool, Signal
from PySide6.QtGui import QImage, QImageIOHandler, QImageReader, QPixmap
from PySide6.QtWidgets import QWidget

CACHE_VERSION = "v1"
#: The disk cache is trimmed to this size (least recently used first) once per session.
CACHE_MAX_BYTES = 1024 * 1024 * 1024
#: Decoded thumbnails kept in memory (least recently shown dropped first; they come back
#: from the disk cache in milliseconds). 112 MB keeps the whole GUI process under 300 MB
#: with a 2,000-set dataset scrolled end to end (192 MB made it 320 MB: benchmarks/memory.py).
MEMORY_BUDGET = 112 * 1024 * 1024


class ImageRef(NamedTuple):
    """An image file as it is now: the cache key changes when the file does."""

    path: str
    mtime_ns: int
    size: int

    @classmethod
    def of(cls, path: str | os.PathLike[str]) -> "ImageRef":
        path = str(path)
        try:
            st = os.stat(path)
        except OSError:
            return cls(path, 0, -1)
        return cls(path, st.st_mtime_ns, st.st_size)


@functools.lru_cache(maxsize=65536)
def thumb_key(ref: ImageRef, box: int) -> str:
    raw = f"{CACHE_VERSION}\0{os.path.abspath(ref.path)}\0{box}\0{ref.mtime_ns}\0{ref.size}"
    return hashlib.sha1(raw.encode("utf-8", "surrogatepass")).hexdigest()


def device_box(widget: QWidget, box: int) -> int:
    """Pixels to decode for an image shown at most ``box`` logical pixels big on ``widget``:
    times its screen's device pixel ratio, so thumbnails stay sharp at 150 % and 200 %."""
    return round(box * max(1.0, widget.devicePixelRatioF()))


def _scaled_size(reader: QImageReader, box: int) -> QSize | None:
    """The size to decode at so the result fits ``box`` (in the raw, untransformed orientation)."""
    raw = reader.size()
    if not raw.isValid() or raw.isEmpty():
        return None
    w, h = raw.width(), raw.height()
    transposed = bool(reader.transformation() & QImageIOHandler.Transformation.TransformationRotate90)
    shown_w, shown_h = (h, w) if transposed else (w, h)
    scale = min(box / shown_w, box / shown_h, 1.0)
    return QSize(max(1, round(w * scale)), max(1, round(h * scale)))


def decode_thumbnail(path: str, box: int) -> tuple[QImage, str]:
    """Decode ``path`` to fit in ``box``×``box`` (EXIF rotation applied); (image, error)."""
    reader = QImageReader(path)
    reader.setAutoTransform(True)
    size = _scaled_size(reader, box)
    if size is not None:
        reader.setScaledSize(size)
    image = reader.read()
    if image.isNull():
        return QImage(), reader.errorString() or "cannot decode"
    if image.width() > box or image.height() > box:
        image = image.scaled(box, box, Qt.AspectRatioMode.KeepAspectRatio, Qt.TransformationMode.SmoothTransformation)
    return image, ""


def _cache_files(cache_dir: Path, key: str) -> tuple[Path, Path]:
    folder = cache_dir / key[:2]
    return folder / f"{key}.jpg", folder / f"{key}.png"


def load_thumbnail(ref: ImageRef, box: int, cache_dir: Path | None) -> tuple[QImage, str, bool]:
    """(image, error, from_cache): the disk cache first, else decode and store."""
    key = thumb_key(ref, box)
    if cache_dir is not None:
        for f in _cache_files(cache_dir, key):
            if f.is_file():
                image = QImage(str(f))
                if not image.isNull():
                    with contextlib.suppress(OSError):
                        os.utime(f)  # "recently used", for trimming
                    return image, "", True
    image, error = decode_thumbnail(ref.path, box)
    if not image.isNull() and cache_dir is not None:
        jpg, png = _cache_files(cache_dir, key)
        target = png if image.hasAlphaChannel() else jpg
        with contextlib.suppress(OSError):
            target.parent.mkdir(parents=True, exist_ok=True)
            tmp = target.with_name(f".{target.name}.{threading.get_ident()}.tmp")
            if image.save(str(tmp), "PNG" if target is png else "JPG", 90):
                os.replace(tmp, target)
            else:
                tmp.unlink(missing_ok=True)
    return image, error, False


def prune_cache(folder: Path, max_bytes: int = CACHE_MAX_BYTES) -> int:
    """Delete the least recently used cached thumbnails until the folder is under 80 % of
    ``max_bytes``; returns how many files went. Safe to run beside a loader."""
    files = []
    total = 0
    try:
        for sub in folder.iterdir():
            if not sub.is_dir():
                continue
            for f in sub.iterdir():
                try:
                    st = f.stat()
                except OSError:
                    continue
                files.append((st.st_mtime, st.st_size, f))
                total += st.st_size
    except OSError:
        return 0
    if total <= max_bytes:
        return 0
    removed = 0
    for _mtime, size, f in sorted(files):
        if total <= max_bytes * 0.8:
            break
        with contextlib.suppress(OSError):
            f.unlink()
            total -= size
            removed += 1
    return removed


@dataclass
class _Request:
    key: str
    ref: ImageRef
    box: int


class _Signals(QObject):
    # (key, image, error, from_cache): emitted from pool threads, delivered queued to the UI thread.
    done = Signal(str, QImage, str, bool)


class _Queue:
    """Pending requests, newest first, shared by the drainer threads."""

    def __init__(self, cache_dir: Path | None, max_pending: int) -> None:
        self.lock = threading.Lock()
        self.stack: list[_Request] = []
        self.keys: set[str] = set()
        self.active = 0
        self.cache_dir = cache_dir
        self.max_pending = max_pending
        self.signals = _Signals()
        self.stopped = False

    def pop(self) -> _Request | None:
        with self.lock:
            if self.stopped or not self.stack:
                self.active -= 1
                return None
            req = self.stack.pop()
            return req


class _Drainer(QRunnable):
    def __init__(self, queue: _Queue) -> None:
        super().__init__()
        self.queue = queue

    def run(self) -> None:  # pool thread
        q = self.queue
        while True:
            req = q.pop()
            if req is None:
                return
            try:
                image, error, cached = load_thumbnail(req.ref, req.box, q.cache_dir)
            except Exception as exc:  # never let a bad file kill a pool thread
                image, error, cached = QImage(), str(exc), False
            # The key stays pending until the UI thread has the image (_on_done): dropped here,
            # a paint in between would not find it in memory and schedule it a second time.
            q.signals.done.emit(req.key, image, error, cached)


class ThumbnailLoader(QObject):
    """Asynchronous, cached thumbnails for the grid, the preview and the sample gallery."""

    #: A thumbnail (or its failure) is now available: repaint whoever asked for ``key``.
    ready = Signal(str)

    def __init__(self, cache_dir: Path | None = None, parent: QObject | None = None,
                 threads: int | None = None, memory_budget: int = MEMORY_BUDGET,
                 max_pending: int = 6000) -> None:
        super().__init__(parent)
        self._cache_dir = Path(cache_dir) / "thumbs" if cache_dir is not None else None
        self._pool = QThreadPool(self)
        self._threads = threads or max(2, min(4, (os.cpu_count() or 2)))
        self._pool.setMaxThreadCount(self._threads)
        self._queue = _Queue(self._cache_dir, max_pending)
        self._queue.signals.done.connect(self._on_done, Qt.ConnectionType.QueuedConnection)
        self._memory: OrderedDict[str, QPixmap] = OrderedDict()
        self._memory_bytes = 0
        self._budget = memory_budget
        self._failed: dict[str, str] = {}
        #: Counters for tests and the benchmark.
        self.decoded = 0
        self.from_disk = 0
        if self._cache_dir is not None and self._cache_dir.is_dir():
            threading.Thread(target=prune_cache, args=(self._cache_dir,), daemon=True,
                             name="thumbnail-cache-trim").start()

    # -- queries (UI thread) ----------------------------------------------------------------

    def pixmap(self, ref: ImageRef, box: int) -> QPixmap | None:
        """The thumbnail if it is in memory; otherwise None, and it is scheduled."""
        key = thumb_key(ref, box)
        pm = self._memory.get(key)
        if pm is not None:
            self._memory.move_to_end(key)
            return pm
        if key not in self._failed:
            self._schedule(key, ref, box)
        return None

    def error(self, ref: ImageRef, box: int) -> str | None:
        """Why a thumbnail could not be made (None while loading or when it loaded)."""
        return self._failed.get(thumb_key(ref, box))

    def cached(self, ref: ImageRef, box: int) -> QPixmap | None:
        """The in-memory thumbnail, without scheduling anything."""
        return self._memory.get(thumb_key(ref, box))

    def pending_count(self) -> int:
        with self._queue.lock:
            return len(self._queue.stack) + self._queue.active

    def is_idle(self) -> bool:
        """Nothing queued or decoding, and every decoded thumbnail handed over to the UI thread
        (``ready`` emitted). A decode's result reaches the UI thread as a queued event after the
        pool thread is already free: counting the threads alone said "idle" one event early."""
        with self._queue.lock:
            return not self._queue.stack and self._queue.active == 0 and not self._queue.keys

    @property
    def memory_bytes(self) -> int:
        return self._memory_bytes

    # -- control ----------------------------------------------------------------------------

    def forget(self) -> None:
        """Drop pending requests (e.g. another folder was opened); memory stays as a cache."""
        with self._queue.lock:
            self._queue.stack.clear()
            self._queue.keys.clear()
        self._failed.clear()

    def clear_memory(self) -> None:
        self._memory.clear()
        self._memory_bytes = 0
        self._failed.clear()

    def shutdown(self, msecs: int = 3000) -> None:
        with self._queue.lock:
            self._queue.stopped = True
            self._queue.stack.clear()
            self._queue.keys.clear()
        self._pool.waitForDone(msecs)

    def wait_for_done(self, msecs: int = 30000) -> bool:
        return self._pool.waitForDone(msecs)

    # -- internals --------------------------------------------------------------------------

    def _schedule(self, key: str, ref: ImageRef, box: int) -> None:
        q = self._queue
        start = False
        with q.lock:
            if q.stopped or key in q.keys:
                return
            q.keys.add(key)
            q.stack.append(_Request(key, ref, box))
            if len(q.stack) > q.max_pending:  # scrolled far past: drop the oldest requests
                dropped = q.stack[: len(q.stack) - q.max_pending]
                del q.stack[: len(dropped)]
                for r in dropped:
                    q.keys.discard(r.key)
            if q.active < self._threads:
                q.active += 1
                start = True
        if start:
            self._pool.start(_Drainer(q))

    def _on_done(self, key: str, image: QImage, error: str, from_cache: bool) -> None:
        with self._queue.lock:
            self._queue.keys.discard(key)
        if image.isNull():
            self._failed[key] = error or "cannot decode"
        else:
            pm = QPixmap.fromImage(image)
            old = self._memory.pop(key, None)
            if old is not None:
                self._memory_bytes -= _bytes(old)
            self._memory[key] = pm
            self._memory_bytes += _bytes(pm)
            while self._memory_bytes > self._budget and len(self._memory) > 1:
                _k, evicted = self._memory.popitem(last=False)
                self._memory_bytes -= _bytes(evicted)
            if from_cache:
                self.from_disk += 1
            else:
                self.decoded += 1
        self.ready.emit(key)


def _bytes(pm: QPixmap) -> int:
    return max(1, pm.width() * pm.height() * max(1, pm.depth() // 8))
