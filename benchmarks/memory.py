#!/usr/bin/env python3
"""Memory of the two processes: the GUI (which must stay light) and the training worker.

    python benchmarks/memory.py [--sets 2000] [--size 1024] [--data DIR] [--workdir DIR]

Measures, each in a fresh process:

- the GUI on its welcome page, with the demo dataset open, and with a generated dataset of
  ``--sets`` paired sets (1024-px JPEGs, as ``gui_responsiveness.py`` makes them) open and
  scrolled end to end so every thumbnail has been loaded — its current and peak RSS
  (peak: ``ru_maxrss`` on Linux/macOS, ``peak_wset`` on Windows). The goal: under 300 MB
  with 2,000 sets;
- the worker training the demo (tiny FLUX.1 Kontext on the CPU): peak RSS, sampled every
  20 ms with psutil.

Prints numbers only; asserts nothing.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from gui_responsiveness import generate  # noqa: E402
from startup import demo, run_gui_probe, run_worker  # noqa: E402

GOAL_MB = 300


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sets", type=int, default=2000)
    parser.add_argument("--size", type=int, default=1024)
    parser.add_argument("--data", help="the big dataset folder to create or reuse")
    parser.add_argument("--workdir", help="demo, caches and settings here (default: a temp folder)")
    args = parser.parse_args(argv)
    work = Path(args.workdir or tempfile.mkdtemp(prefix="lorastudio-memory-"))
    project = demo(work)
    big = Path(args.data) if args.data else work / f"dataset-{args.sets}"
    took = generate(big, args.sets, args.size)
    if took:
        print(f"generated {args.sets} sets of {args.size}-px JPEGs in {took:.0f} s → {big}")
    print(f"{os.cpu_count()} CPUs, Python {sys.version.split()[0]}\n")

    rows = [("welcome page", run_gui_probe(work)),
            ("demo dataset open", run_gui_probe(work, project.parent / "dataset")),
            (f"{args.sets} sets open", run_gui_probe(work, big)),
            (f"{args.sets} sets, all thumbnails seen", run_gui_probe(work, big, scroll=True, n_images=2 * args.sets))]
    print("GUI process (RSS, MB):")
    for label, r in rows:
        extra = f", {r['thumbnails']} thumbnails loaded" if "thumbnails" in r else ""
        print(f"  {label:34} now {r['rss_mb']:6.0f}   peak {r['peak_rss_mb']:6.0f}   "
              f"(sets {r['sets']}{extra}; torch imported: {r['torch']})")
    worst = max(r["peak_rss_mb"] for _, r in rows)
    print(f"  worst peak {worst:.0f} MB: {'under' if worst < GOAL_MB else 'OVER'} the {GOAL_MB} MB goal")

    w = run_worker(work, project)
    print("\nWorker training the demo (tiny FLUX.1 Kontext, CPU):")
    print(f"  peak RSS {w['peak_rss_mb']:.0f} MB (sampled every 20 ms), run {w.get('done', float('nan')):.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
