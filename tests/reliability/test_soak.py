"""Soak: a long real run (sampling and checkpoints) with the GUI side attached, and memory flat
in both processes.

Opt-in (``--run-soak`` or ``-m soak``): 20,000 steps of the tiny Kontext model by default,
``LORASTUDIO_SOAK_STEPS`` to change it (a few hundred steps check the test itself in a minute).
The test process plays the app: the real ``WorkerRunner`` feeds the real training ``RunPanel``
(loss chart, sample gallery, log). Every 1 % of the run it records the resident memory (RSS)
of itself and of the worker; the series is written to ``rss.csv`` and summarised. Memory is
flat when the last quarter's mean is within ``LORASTUDIO_SOAK_GROWTH_MB`` (default 64 MB) of
the second quarter's (the first quarter is warm-up: first previews, first checkpoint, caches).
"""

from __future__ import annotations

import os
import statistics
from pathlib import Path

import pytest

from rel_helpers import rss_kb, worker_env, write_config

pytestmark = [pytest.mark.soak, pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads /proc")]


def test_soak_memory_is_flat_in_both_processes(qtbot, demo, tmp_path):
    from lorastudio import protocol
    from lorastudio.ui.runner import WorkerRunner
    from lorastudio.ui.thumbnails import ThumbnailLoader
    from lorastudio.ui.run_panel import RunPanel

    steps = int(os.environ.get("LORASTUDIO_SOAK_STEPS", "20000"))
    limit_mb = float(os.environ.get("LORASTUDIO_SOAK_GROWTH_MB", "64"))
    cfg = write_config(demo, tmp_path, steps=steps, sample_every=max(1, steps // 20),
                       checkpoint_every=max(1, steps // 10), sample_sets=1, sample_steps=1)
    loader = ThumbnailLoader(tmp_path / "thumbs")
    panel = RunPanel(loader)
    qtbot.addWidget(panel)
    runner = WorkerRunner(kill_timeout=60)
    panel.follow(runner)
    runner.sample.connect(panel.on_sample)
    every = max(1, steps // 100)
    series: list[tuple[int, int, int]] = []
    outcome: list[dict] = []

    def record(ev: dict) -> None:
        if ev["step"] % every == 0 and runner.pid:
            try:
                series.append((ev["step"], rss_kb(os.getpid()), rss_kb(runner.pid)))
            except OSError:
                pass

    runner.progress.connect(record)
    runner.finished.connect(outcome.append)
    runner.failed.connect(outcome.append)
    runner.start(protocol.worker_command_line(cfg), cwd=str(tmp_path), env=worker_env(tmp_path))
    qtbot.waitUntil(lambda: bool(outcome), timeout=int(max(600, steps * 0.5) * 1000))
    assert outcome[0].get("event") == "done" and outcome[0]["step"] == steps, outcome[0]

    csv = tmp_path / "rss.csv"
    csv.write_text("step,gui_rss_kb,worker_rss_kb\n" + "".join(f"{s},{g},{w}\n" for s, g, w in series))
    quarter = max(1, len(series) // 4)
    second, last = series[quarter: 2 * quarter], series[-quarter:]
    growth = {name: (statistics.mean(r[i] for r in last) - statistics.mean(r[i] for r in second)) / 1024
              for i, name in ((1, "gui"), (2, "worker"))}
    print(f"\nsoak: {steps} steps, {len(series)} RSS samples in {csv}")
    for i, name in ((1, "gui"), (2, "worker")):
        print(f"  {name:6s} RSS MB: start {series[0][i] / 1024:.0f}, peak {max(r[i] for r in series) / 1024:.0f}, "
              f"end {series[-1][i] / 1024:.0f}; last quarter vs second quarter {growth[name]:+.1f} MB")
    assert len(series) >= 8
    for name, mb in growth.items():
        assert mb < limit_mb, f"{name} memory grew {mb:.1f} MB over the run"
