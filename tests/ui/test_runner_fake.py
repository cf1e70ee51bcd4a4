"""The worker runner against a fake worker: parsing, stop, kill escalation, crashes."""

from __future__ import annotations

import os
import sys
import time

import pytest

from lorastudio.ui.runner import WorkerRunner

from .conftest import FAKE_WORKER


def fake(mode: str, steps: int = 5) -> list[str]:
    return [sys.executable, str(FAKE_WORKER), mode, str(steps)]


def collect(runner: WorkerRunner) -> dict[str, list]:
    got: dict[str, list] = {k: [] for k in ("started", "status", "progress", "sample", "checkpoint", "finished",
                                             "failed", "log", "state")}
    for name in ("started", "status", "progress", "sample", "checkpoint", "finished", "failed", "log"):
        getattr(runner, name).connect(got[name].append)
    runner.state_changed.connect(got["state"].append)
    return got


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie still answers kill(0); treat it as gone.
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().split()[2] != "Z"
    except OSError:
        return False


def test_events_become_signals_and_other_lines_are_logged(qtbot, tmp_path, runners):
    runner = runners(WorkerRunner())
    got = collect(runner)
    with qtbot.waitSignal(runner.finished, timeout=20000) as blocker:
        runner.start(fake("normal", 5), cwd=str(tmp_path))
    done = blocker.args[0]
    assert done["lora"] == "fake.safetensors" and done["stopped"] is False and done["returncode"] == 0
    assert got["started"][0]["total"] == 5
    assert [e["step"] for e in got["progress"]] == [1, 2, 3, 4, 5]
    assert got["progress"][-1]["loss"] == pytest.approx(0.2)
    assert got["sample"][0]["set"] == "set000"
    assert got["status"][0]["phase"] == "caching"
    assert "this line is not an event" in got["log"]
    assert not got["failed"]
    assert got["state"][0] == "starting" and got["state"][-1] == "idle"
    assert not runner.is_running()


def test_stop_is_graceful(qtbot, tmp_path, runners):
    runner = runners(WorkerRunner(kill_timeout=10))
    got = collect(runner)
    runner.start(fake("normal", 100000), cwd=str(tmp_path))
    qtbot.waitUntil(lambda: len(got["progress"]) >= 3, timeout=20000)
    with qtbot.waitSignal(runner.finished, timeout=10000) as blocker:  # a hang on stop fails here
        runner.stop()
        assert runner.state == "stopping"
    assert blocker.args[0]["stopped"] is True
    assert got["checkpoint"], "a graceful stop saves a checkpoint first"
    assert not got["failed"]


def test_worker_that_ignores_stop_is_killed_with_its_children(qtbot, tmp_path, runners):
    runner = runners(WorkerRunner(kill_timeout=0.8))
    got = collect(runner)
    runner.start(fake("ignore_stop"), cwd=str(tmp_path))
    qtbot.waitUntil(lambda: any("child" in (e.get("message") or "") for e in got["status"]), timeout=20000)
    child_pid = int(next(e["message"].split()[1] for e in got["status"] if "child" in (e.get("message") or "")))
    worker_pid = runner.pid
    t0 = time.monotonic()
    with qtbot.waitSignal(runner.failed, timeout=10000) as blocker:
        runner.stop()
    elapsed = time.monotonic() - t0
    assert elapsed > 0.7, f"killed {elapsed:.2f} s after Stop, before its 0.8 s grace ran out"
    failure = blocker.args[0]
    assert failure["kind"] == "killed"
    assert "did not stop" in failure["message"]
    assert not runner.is_running()
    qtbot.waitUntil(lambda: not pid_alive(worker_pid) and not pid_alive(child_pid), timeout=5000)


def test_crash_becomes_failed_with_stderr(qtbot, tmp_path, runners):
    runner = runners(WorkerRunner())
    with qtbot.waitSignal(runner.failed, timeout=20000) as blocker:
        runner.start(fake("crash"), cwd=str(tmp_path))
    failure = blocker.args[0]
    assert failure["kind"] == "crash"
    assert failure["returncode"] == 3
    assert "exited with code 3" in failure["message"]
    assert "RuntimeError: fake crash" in failure["stderr"]
    assert not runner.is_running()


def test_error_event_becomes_failed_with_its_kind(qtbot, tmp_path, runners):
    runner = runners(WorkerRunner())
    with qtbot.waitSignal(runner.failed, timeout=20000) as blocker:
        runner.start(fake("error"), cwd=str(tmp_path))
    assert blocker.args[0]["kind"] == "nan"
    assert blocker.args[0]["message"] == "loss is NaN"


def test_worker_that_lingers_after_done_is_ended_and_still_finishes(qtbot, tmp_path, runners):
    runner = runners(WorkerRunner(kill_timeout=0.5))
    with qtbot.waitSignal(runner.finished, timeout=10000) as blocker:
        runner.start(fake("linger", 3), cwd=str(tmp_path))
    assert blocker.args[0]["lora"] == "fake.safetensors"
    assert not runner.is_running()


def test_external_kill_becomes_failed(qtbot, tmp_path):
    import signal

    runner = WorkerRunner()
    got = collect(runner)
    runner.start(fake("normal", 100000), cwd=str(tmp_path))
    qtbot.waitUntil(lambda: len(got["progress"]) >= 2, timeout=20000)
    with qtbot.waitSignal(runner.failed, timeout=10000) as blocker:
        os.kill(runner.pid, signal.SIGKILL)
    assert blocker.args[0]["kind"] == "crash"
    assert "SIGKILL" in blocker.args[0]["message"]


def test_program_that_cannot_start(qtbot, tmp_path, runners):
    runner = runners(WorkerRunner())
    with qtbot.waitSignal(runner.failed, timeout=10000) as blocker:
        runner.start([str(tmp_path / "no-such-program")], cwd=str(tmp_path))
    assert blocker.args[0]["kind"] == "start"
    assert not runner.is_running()


def test_stop_before_the_process_is_up_and_start_twice(qtbot, tmp_path, runners):
    runner = runners(WorkerRunner(kill_timeout=5))
    with qtbot.waitSignal(runner.finished, timeout=20000):
        runner.start(fake("stdin_eof", 3), cwd=str(tmp_path))
        with pytest.raises(RuntimeError):
            runner.start(fake("normal"), cwd=str(tmp_path))
        runner.stop()


def test_failure_carries_the_tail_of_the_run_log(qtbot, tmp_path):
    from lorastudio.ui.runner import tail_of_file

    log = tmp_path / "log.txt"
    log.write_text("".join(f"line {i}\n" for i in range(500)) + "Traceback: the real reason\n", encoding="utf-8")
    assert tail_of_file(log, lines=2) == "line 499\nTraceback: the real reason"
    assert tail_of_file(tmp_path / "missing.txt") == ""
    runner = WorkerRunner()
    with qtbot.waitSignal(runner.failed, timeout=20000) as blocker:
        runner.start(fake("crash"), cwd=str(tmp_path))  # the fake reports run_dir = its cwd
    assert blocker.args[0]["log"] == str(log)
    assert "the real reason" in blocker.args[0]["log_tail"]


def test_a_runner_destroyed_mid_run_ends_its_worker_and_the_app_lives_on(qtbot, tmp_path):
    """Closing the window (or dialog) that owns a running runner destroys the runner: the app must
    not abort ("QThread: Destroyed while thread is still running") and the worker must not be
    left running with nobody to show its events."""
    import shiboken6
    from PySide6.QtCore import QObject

    from lorastudio.ui import runner as runner_module

    owner = QObject()
    runner = WorkerRunner(owner)
    got = collect(runner)
    runner.start(fake("normal", 100000), cwd=str(tmp_path))
    qtbot.waitUntil(lambda: len(got["progress"]) >= 2, timeout=20000)
    pid = runner.pid
    thread = runner._thread
    shiboken6.delete(owner)  # what closing a window with WA_DeleteOnClose does to its children
    del runner
    qtbot.waitUntil(lambda: not pid_alive(pid), timeout=20000)
    qtbot.waitUntil(thread.isFinished, timeout=20000)
    # A later run prunes the finished thread; the process is still here to start it.
    later = WorkerRunner()
    with qtbot.waitSignal(later.finished, timeout=20000):
        later.start(fake("normal", 2), cwd=str(tmp_path))
    assert thread not in runner_module._LIVE_THREADS
