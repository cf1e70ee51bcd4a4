"""The runner and the whole window against the real training worker on the tiny demo model.

The demo is made once per session with ``python -m lorastudio demo DIR``, exactly as the
app makes it.
"""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest

from lorastudio.ui.runner import WorkerRunner

pytestmark = pytest.mark.slow


def _collect(runner: WorkerRunner) -> dict[str, list]:
    got: dict[str, list] = {k: [] for k in ("started", "status", "progress", "sample", "checkpoint", "finished",
                                             "failed", "log")}
    for name in got:
        getattr(runner, name).connect(got[name].append)
    return got


def test_real_worker_progress_sample_and_graceful_stop(qtbot, demo_project, runners):
    runner = runners(WorkerRunner(kill_timeout=30))
    got = _collect(runner)
    runner.start_training(demo_project)
    # Loading the tiny model and caching takes a few seconds on the CPU.
    qtbot.waitUntil(lambda: bool(got["sample"] or got["failed"]), timeout=240_000)
    assert not got["failed"], got["failed"] and got["failed"][0]
    assert got["started"] and got["started"][0]["total"] == 1000
    assert got["progress"], "progress events arrive before the first sample"
    p = got["progress"][-1]
    assert 1 <= p["step"] <= 1000 and p["total"] == 1000
    assert isinstance(p["loss"], float)
    sample = got["sample"][0]
    assert Path(sample["path"]).is_file()
    with qtbot.waitSignal(runner.finished, timeout=60_000) as blocker:  # a hang on stop fails here
        runner.stop()
    done = blocker.args[0]
    assert done["stopped"] is True
    assert Path(done["lora"]).is_file()
    assert not got["failed"]
    assert not runner.is_running()


def test_real_worker_killed_becomes_failed(qtbot, demo_project, runners):
    runner = runners(WorkerRunner(kill_timeout=10))
    got = _collect(runner)
    runner.start_training(demo_project)
    qtbot.waitUntil(lambda: bool(got["progress"] or got["failed"]), timeout=240_000)
    assert not got["failed"]
    pid = runner.pid
    with qtbot.waitSignal(runner.failed, timeout=30_000) as blocker:
        os.kill(pid, signal.SIGKILL)
    failure = blocker.args[0]
    assert failure["kind"] == "crash"
    assert "SIGKILL" in failure["message"]
    assert not got["finished"]
    assert not runner.is_running()


def test_full_gui_workflow_never_imports_torch(demo_project, tmp_path):
    """Open the demo, edit a caption, train, stop — the GUI process never loads torch.

    Run in a fresh interpreter: this test session may have imported torch elsewhere."""
    from .test_startup import run_workflow

    result = run_workflow(demo_project, "", "real", tmp_path)
    assert result["caption_saved"] and result["train_started"], result
    assert not result["error"], result["error"]
    assert result["progress_steps"] > 0 and result["finished"], result
    assert result["stop_seconds"] < 30, result
    assert result["heavy"] == [], f"the GUI imported {result['heavy']}"
    assert result["training_modules"] == [], result
