#!/usr/bin/env python3
"""How responsive the dataset browser is on a big folder: 2,000 sets of 1024-px JPEGs.

    python benchmarks/gui_responsiveness.py [--sets 2000] [--size 1024] [--data DIR] [--keep]

Generates the dataset (or reuses ``--data``), opens it in the real main window, scrolls
through the whole grid a page at a time, and prints:

- time until the folder is listed and the grid shows (the names-only first scan),
- time to the first screen of thumbnails (every visible cell painted from a real image),
- time to all thumbnails, cold (decoded from the JPEGs) and warm (from the disk cache,
  in a fresh loader with an empty memory cache),
- the longest stall of the UI thread: a 5 ms QTimer's worst lateness, while the folder
  opens (scan results landing in the model: one-off) and while scrolling and thumbnails
  stream in (what an artist would feel as a hitch).

Runs offscreen unless DISPLAY is set. Prints numbers only; asserts nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import statistics
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _make_set(args: tuple[str, int, int]) -> None:
    folder, i, size = args
    from PIL import Image, ImageDraw

    hue = (i * 37) % 255
    for role in ("start", "end"):
        im = Image.new("RGB", (size, size), (hue, 255 - hue, (hue * 3) % 255))
        d = ImageDraw.Draw(im)
        for k in range(12):  # some structure, so the JPEG is not trivially small
            x = (k * 89 + i * 31) % size
            y = (k * 53 + i * 17) % size
            d.ellipse((x, y, x + size // 6, y + size // 6), fill=((k * 40) % 255, (i * 7) % 255, 200 if role == "end"
                                                                  else 60))
        d.rectangle((0, int(size * 0.7), size, size), fill=(30, 30, 30) if role == "end" else (200, 180, 150))
        im.save(Path(folder) / f"set{i:05d}_{role}.jpg", quality=88)
    (Path(folder) / f"set{i:05d}.txt").write_text(f"make scene {i} dark\n", encoding="utf-8")


def generate(folder: Path, sets: int, size: int) -> float:
    folder.mkdir(parents=True, exist_ok=True)
    existing = len(list(folder.glob("*_end.jpg")))
    if existing >= sets:
        return 0.0
    t0 = time.perf_counter()
    with ProcessPoolExecutor(max_workers=os.cpu_count() or 2) as pool:
        list(pool.map(_make_set, [(str(folder), i, size) for i in range(sets)], chunksize=16))
    return time.perf_counter() - t0


class StallMeter:
    """A 5 ms timer: how late it fires is how long the UI thread was busy."""

    def __init__(self, interval_ms: int = 5) -> None:
        from PySide6.QtCore import QTimer

        self.interval = interval_ms / 1000
        self.timer = QTimer()
        self.timer.setInterval(interval_ms)
        self.timer.timeout.connect(self._tick)
        self.last = None
        self.lateness: list[float] = []

    def start(self) -> None:
        self.last = time.perf_counter()
        self.timer.start()

    def _tick(self) -> None:
        now = time.perf_counter()
        if self.last is not None:
            self.lateness.append(max(0.0, now - self.last - self.interval))
        self.last = now

    def reset(self) -> None:
        self.lateness.clear()
        self.last = time.perf_counter()

    def summary(self) -> str:
        if not self.lateness:
            return "n/a"
        worst = max(self.lateness)
        p99 = statistics.quantiles(self.lateness, n=100)[98] if len(self.lateness) >= 100 else worst
        return f"worst {worst * 1000:.0f} ms, p99 {p99 * 1000:.0f} ms over {len(self.lateness)} ticks"


def visible_loaded(window) -> tuple[int, int]:
    """(images in visible cells, of which already in memory)."""
    page = window.dataset_page
    grid = page.grid
    box = page.delegate.box()
    vp = grid.viewport().rect()
    total = loaded = 0
    for row in range(page.proxy.rowCount()):
        idx = page.proxy.index(row, 0)
        r = grid.visualRect(idx)
        if r.bottom() < 0:
            continue
        if r.top() > vp.bottom():
            break
        entry = page.model.entry(page.proxy.mapToSource(idx).row())
        for ref in entry.refs:
            total += 1
            loaded += window.loader.cached(ref, box) is not None
    return total, loaded


async def until(predicate, timeout: float) -> bool:
    t0 = time.perf_counter()
    while not predicate():
        if time.perf_counter() - t0 > timeout:
            return False
        await asyncio.sleep(0.005)
    return True


async def scroll_through(window, page_ms: int) -> None:
    """Scroll the grid to the end a page at a time (as a quick PgDown user would)."""
    bar = window.dataset_page.grid.verticalScrollBar()
    bar.setValue(0)
    while bar.value() < bar.maximum():
        bar.setValue(min(bar.maximum(), bar.value() + bar.pageStep()))
        await asyncio.sleep(page_ms / 1000)


async def run(data: Path, n_images: int, page_ms: int) -> None:
    from PySide6.QtWidgets import QApplication

    from lorastudio.ui.app import create_window
    from lorastudio.ui.thumbnails import ThumbnailLoader

    window = create_window()
    window.resize(1440, 900)
    window.show()
    app = QApplication.instance()
    meter = StallMeter()
    meter.start()
    await asyncio.sleep(0.3)
    meter.reset()

    def all_loaded(loader) -> bool:
        return loader.decoded + loader.from_disk >= n_images and loader.is_idle()

    async def one_pass(label: str) -> None:
        loader = window.loader
        t0 = time.perf_counter()
        window.open_path(data)
        await until(lambda: window.dataset_page.model.rowCount() > 0, 120)
        t_grid = time.perf_counter() - t0
        await until(lambda: (lambda t, l: t > 0 and t == l)(*visible_loaded(window)), 120)
        t_first = time.perf_counter() - t0
        await until(lambda: window.dataset is not None and "checking" not in window.dataset_status.text(), 300)
        t_scan = time.perf_counter() - t0
        opening = meter.summary()
        meter.reset()
        t_scroll0 = time.perf_counter()
        # Scroll until every set has been on screen and every thumbnail is in.
        while not all_loaded(loader):
            await scroll_through(window, page_ms)
            if all_loaded(loader):
                break
            await until(lambda: loader.is_idle(), 120)
        t_all = time.perf_counter() - t0
        print(f"{label}:")
        print(f"  grid shown (names-only scan) {t_grid:7.2f} s")
        print(f"  first screen of thumbnails   {t_first:7.2f} s")
        print(f"  full scan with image checks  {t_scan:7.2f} s")
        print(f"  all {n_images} thumbnails         {t_all:7.2f} s  (scrolling took {time.perf_counter() - t_scroll0:.2f} s;"
              f" decoded {loader.decoded}, from disk cache {loader.from_disk})")
        print(f"  UI stalls while opening      {opening}")
        print(f"  UI stalls while scrolling    {meter.summary()}")
        app.processEvents()

    await one_pass("cold (empty thumbnail cache)")
    # Warm: close the project, a fresh loader with an empty memory cache, same disk cache.
    window.close_project()
    window.loader.shutdown()
    fresh = ThumbnailLoader(window.loader._cache_dir.parent if window.loader._cache_dir else None, window)
    window.loader = fresh
    window.dataset_page.loader = fresh
    window.dataset_page.delegate._loader = fresh
    fresh.ready.connect(window.dataset_page.delegate._thumbnail_ready)
    window.dataset_page.detail.preview._loader = fresh
    fresh.ready.connect(window.dataset_page.detail.preview._maybe_update)
    meter.reset()
    await one_pass("warm (thumbnails from the disk cache)")
    window.ask = lambda *a: "keep"
    window.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sets", type=int, default=2000)
    parser.add_argument("--size", type=int, default=1024)
    parser.add_argument("--data", help="dataset folder to create or reuse")
    parser.add_argument("--keep", action="store_true", help="keep the generated dataset")
    parser.add_argument("--page-ms", type=int, default=15, help="time between page scrolls")
    args = parser.parse_args()

    if not os.environ.get("DISPLAY"):
        os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    work = Path(tempfile.mkdtemp(prefix="lorastudio-bench-"))
    os.environ["LORASTUDIO_CACHE_DIR"] = str(work / "cache")
    os.environ["LORASTUDIO_DATA_DIR"] = str(work / "data")
    os.environ["XDG_CONFIG_HOME"] = str(work / "config")
    data = Path(args.data) if args.data else work / "dataset"
    took = generate(data, args.sets, args.size)
    if took:
        print(f"generated {args.sets} sets of {args.size}-px JPEGs in {took:.1f} s → {data}")
    sys.path.insert(0, str(ROOT))
    from PySide6.QtWidgets import QApplication  # noqa: F401  (before qasync)

    import qasync

    from lorastudio.ui.app import make_app

    app = make_app([])
    loop = qasync.QEventLoop(app)
    asyncio.set_event_loop(loop)
    print(f"platform {app.platformName()}, {os.cpu_count()} CPUs, thumbnail threads "
          f"{max(2, min(4, os.cpu_count() or 2))}")
    with loop:
        loop.run_until_complete(run(data, args.sets * 2, args.page_ms))
    if not args.keep:
        shutil.rmtree(work, ignore_errors=True)
        if args.data is None:
            pass
    else:
        print(f"kept {work}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
