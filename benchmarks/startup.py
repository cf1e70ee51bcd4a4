#!/usr/bin/env python3
"""How quickly things start: the app window, and a training run's first step.

    python benchmarks/startup.py [--rounds 3] [--workdir DIR]

1. **App window**: a fresh interpreter runs the real ``run_gui`` (qasync loop, theme, main
   window); the time is from just before the process is spawned (so interpreter start and
   every import count) to the first turn of the event loop after ``show()`` — empty (the
   welcome page) and with the demo dataset opened (until the grid is filled and the scan
   with image checks is done). Also says whether torch got imported (it must not).
2. **Worker**: ``lorastudio worker CONFIG`` on the demo project (tiny FLUX.1 Kontext, CPU),
   spawn → ``started`` → first ``status`` (caching) → first ``progress`` (step 1) → ``done``;
   cold (empty cache) and warm (latents and prompts cached by the previous run).

Medians over ``--rounds``. Prints numbers only; asserts nothing.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

#: Run in a fresh interpreter: argv = t_spawn target scroll(0/1) n_images
GUI_PROBE = textwrap.dedent(
    """
    import os, sys, time, json
    t_spawn = float(sys.argv[1]); target = sys.argv[2] or None; scroll = sys.argv[3] == "1"
    n_images = int(sys.argv[4])
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    from PySide6.QtCore import QTimer
    from lorastudio.ui import app as A

    made = A.create_window
    result = {}

    def rss_mb():
        import psutil
        p = psutil.Process()
        info = p.memory_info()
        peak = getattr(info, "peak_wset", None)
        if peak is None:
            import resource
            peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # KB on Linux
        return info.rss / 2**20, peak / 2**20

    def create_window(*args, **kwargs):
        w = made(*args, **kwargs)
        w.resize(1440, 900)
        QTimer.singleShot(0, lambda: result.__setitem__("shown", time.time() - t_spawn))
        state = {"scrolling": False}

        def finish():
            result["rss_mb"], result["peak_rss_mb"] = rss_mb()
            result["torch"] = "torch" in sys.modules
            result["training"] = any(m.startswith("lorastudio.training") for m in sys.modules)
            result["sets"] = w.dataset_page.model.rowCount() if target else 0
            if target and scroll:
                result["thumbnails"] = w.loader.decoded + w.loader.from_disk
            print("RESULT " + json.dumps(result), flush=True)
            w.ask = lambda *a: "keep"
            w.close()

        def check():
            if "shown" not in result:
                QTimer.singleShot(20, check); return
            if not target:
                QTimer.singleShot(300, finish); return
            if w.dataset is None or "checking" in w.dataset_status.text():
                QTimer.singleShot(20, check); return
            result.setdefault("loaded", time.time() - t_spawn)
            if not scroll:
                finish(); return
            bar = w.dataset_page.grid.verticalScrollBar()
            loader = w.loader
            if loader.decoded + loader.from_disk >= n_images and loader.is_idle():
                result["scrolled"] = time.time() - t_spawn
                finish(); return
            if bar.value() >= bar.maximum():
                if loader.is_idle():
                    bar.setValue(0)
            else:
                bar.setValue(min(bar.maximum(), bar.value() + bar.pageStep()))
            QTimer.singleShot(15, check)

        QTimer.singleShot(0, check)
        return w

    A.create_window = create_window
    code = A.run_gui(target)
    sys.exit(code)
    """
)


def bench_env(work: Path) -> dict[str, str]:
    return {**os.environ, "QT_QPA_PLATFORM": os.environ.get("QT_QPA_PLATFORM", "offscreen"),
            "LORASTUDIO_DATA_DIR": str(work / "data"), "LORASTUDIO_CACHE_DIR": str(work / "cache"),
            "XDG_CONFIG_HOME": str(work / "config"), "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
            "PYTHONUNBUFFERED": "1"}


def run_gui_probe(work: Path, target: Path | None = None, scroll: bool = False, n_images: int = 0,
                  timeout: float = 900) -> dict:
    """One fresh GUI process; returns what the probe measured (times in s, memory in MB)."""
    t_spawn = time.time()
    out = subprocess.run([sys.executable, "-c", GUI_PROBE, repr(t_spawn), str(target or ""), "1" if scroll else "0",
                          str(n_images)], capture_output=True, text=True, timeout=timeout, env=bench_env(work),
                         cwd=str(ROOT))
    for line in out.stdout.splitlines():
        if line.startswith("RESULT "):
            return json.loads(line[7:])
    raise RuntimeError(f"GUI probe failed (exit {out.returncode}): {out.stderr[-2000:]}")


def run_worker(work: Path, config: Path, poll_s: float = 0.02) -> dict:
    """``lorastudio worker CONFIG``: event times from spawn, and peak RSS (psutil polling)."""
    import psutil

    t0 = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "lorastudio", "worker", str(config)], stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, stdin=subprocess.PIPE, text=True, env=bench_env(work),
                            cwd=str(ROOT))
    ps = psutil.Process(proc.pid)
    peak = 0
    times: dict[str, float] = {}
    import threading

    def poll() -> None:
        nonlocal peak
        while proc.poll() is None:
            try:
                peak = max(peak, ps.memory_info().rss)
            except psutil.Error:
                break
            time.sleep(poll_s)

    poller = threading.Thread(target=poll, daemon=True)
    poller.start()
    assert proc.stdout is not None
    for line in proc.stdout:
        try:
            ev = json.loads(line)
        except json.JSONDecodeError:
            continue
        now = time.perf_counter() - t0
        kind = ev.get("event")
        if kind == "status":
            times.setdefault(f"status:{ev.get('phase')}", now)
        elif kind == "progress":
            times.setdefault("progress", now)
            times["last_progress"] = now
            times["rate"] = ev.get("rate") or 0.0
        else:
            times.setdefault(kind, now)
        if kind in ("done", "error"):
            break
    proc.stdin.close()  # type: ignore[union-attr]
    proc.wait(timeout=120)
    poller.join(timeout=5)
    times["exit"] = time.perf_counter() - t0
    times["peak_rss_mb"] = peak / 2**20
    return times


def demo(work: Path) -> Path:
    project = work / "demo" / "project.toml"
    if not project.exists():
        env = bench_env(work)
        subprocess.run([sys.executable, "-m", "lorastudio", "demo", str(work / "demo")], check=True, env=env,
                       capture_output=True, cwd=str(ROOT))
    return project


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--workdir", help="keep the demo and caches here (default: a temp folder)")
    args = parser.parse_args(argv)
    work = Path(args.workdir or tempfile.mkdtemp(prefix="lorastudio-startup-"))
    project = demo(work)
    dataset = project.parent / "dataset"
    print(f"{os.cpu_count()} CPUs, Python {sys.version.split()[0]}, medians of {args.rounds} rounds\n")

    empty = [run_gui_probe(work) for _ in range(args.rounds)]
    opened = [run_gui_probe(work, dataset) for _ in range(args.rounds)]
    print("App (fresh process, from spawn):")
    print(f"  window shown, welcome page        {median([r['shown'] for r in empty]):6.2f} s")
    print(f"  window shown, demo dataset        {median([r['shown'] for r in opened]):6.2f} s")
    print(f"  demo dataset listed and checked   {median([r['loaded'] for r in opened]):6.2f} s "
          f"({opened[0]['sets']} sets)")
    print(f"  torch imported by the GUI         {any(r['torch'] for r in empty + opened)}")

    import shutil

    cold, warm = [], []
    for _ in range(args.rounds):
        shutil.rmtree(project.parent / "output", ignore_errors=True)  # cold: no cache, no checkpoints
        cold.append(run_worker(work, project))
        warm.append(run_worker(work, project))  # same output folder: the cache is reused
    print("\nWorker on the demo (tiny FLUX.1 Kontext, CPU), from spawn:")
    for label, runs in (("cold cache", cold), ("warm cache", warm)):
        print(f"  {label}: started {median([r.get('started', float('nan')) for r in runs]):5.2f} s, "
              f"caching {median([r.get('status:caching', float('nan')) for r in runs]):5.2f} s, "
              f"first step {median([r.get('progress', float('nan')) for r in runs]):5.2f} s, "
              f"done {median([r.get('done', float('nan')) for r in runs]):5.2f} s "
              f"({median([r.get('rate', 0.0) for r in runs]):.1f} steps/s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
