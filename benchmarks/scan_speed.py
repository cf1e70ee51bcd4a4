"""How fast does ``scan_dataset`` group and validate a big folder?

Builds a paired dataset of ``--files`` real files (small JPEG inputs, PNG targets, a caption
for every other set) in a temporary folder, then times a names-only scan and a full scan
(every image header read and checked). Prints the figures; it asserts nothing, because
timings depend on the machine (DESIGN.md: benchmarks measure, tests never time).

    python benchmarks/scan_speed.py            # 10,000 files
    python benchmarks/scan_speed.py --files 50000 --keep /tmp/big_dataset
"""

from __future__ import annotations

import argparse
import io
import random
import shutil
import sys
import tempfile
import time
from pathlib import Path

from PIL import Image

from lorastudio.dataset import scan_dataset

#: Distinct image payloads; sets reuse them (the scanner reads each file anyway).
_VARIANTS = 16


def encoded_images(size: int, fmt: str) -> list[bytes]:
    rng = random.Random(fmt)
    payloads = []
    for _ in range(_VARIANTS):
        im = Image.effect_noise((size, size), rng.uniform(20, 80)).convert("RGB")
        buffer = io.BytesIO()
        im.save(buffer, fmt, **({"quality": 85} if fmt == "JPEG" else {}))
        payloads.append(buffer.getvalue())
    return payloads


def build_folder(folder: Path, files: int, size: int) -> int:
    """Write about ``files`` files: per set a JPEG input, a PNG target, every other a caption."""
    jpegs, pngs = encoded_images(size, "JPEG"), encoded_images(size, "PNG")
    written = i = 0
    while written < files:
        name = f"sample{i:05d}"
        (folder / f"{name}_start.jpg").write_bytes(jpegs[i % _VARIANTS])
        written += 1
        if written < files:
            (folder / f"{name}_end.png").write_bytes(pngs[i % _VARIANTS])
            written += 1
        if written < files and i % 2 == 0:
            (folder / f"{name}.txt").write_text(f"zkw, make sample {i} brighter\n", encoding="utf-8")
            written += 1
        i += 1
    return written


def timed_scan(folder: Path, check_images: bool, repeats: int) -> tuple[float, object]:
    best, dataset = float("inf"), None
    for _ in range(repeats):
        start = time.perf_counter()
        dataset = scan_dataset(folder, check_images=check_images)
        best = min(best, time.perf_counter() - start)
    return best, dataset


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=10_000, help="how many files to create (default 10000)")
    parser.add_argument("--size", type=int, default=256, help="image side in pixels (default 256)")
    parser.add_argument("--repeats", type=int, default=3, help="scans per measurement; the best is shown")
    parser.add_argument("--keep", type=Path, help="build the folder here and keep it (default: a temp dir)")
    args = parser.parse_args(argv)

    folder = args.keep or Path(tempfile.mkdtemp(prefix="lorastudio-scan-bench-"))
    folder.mkdir(parents=True, exist_ok=True)
    try:
        start = time.perf_counter()
        files = build_folder(folder, args.files, args.size)
        print(f"built {files} files ({args.size}x{args.size} px) in {time.perf_counter() - start:.1f} s: {folder}")

        names_s, _ = timed_scan(folder, check_images=False, repeats=args.repeats)
        full_s, dataset = timed_scan(folder, check_images=True, repeats=args.repeats)
        print(f"names only  : {names_s:6.2f} s  ({files / names_s:8.0f} files/s)")
        print(f"with headers: {full_s:6.2f} s  ({files / full_s:8.0f} files/s)")
        print(f"-> {len(dataset.sets)} sets, {len(dataset.trainable_sets())} trainable, "
              f"{len(dataset.problems)} problems (warm file cache; best of {args.repeats})")
    finally:
        if args.keep is None:
            shutil.rmtree(folder, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
