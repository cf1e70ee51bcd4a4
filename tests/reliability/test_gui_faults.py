"""GUI faults: the app process dies (while the worker trains, while a caption is typed), and
two windows edit the same caption.

The app is played by small scripts run as real processes (``gui_host.py``,
``caption_typist.py``) so that SIGKILL hits a real Qt process with the real runner and editor.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from rel_helpers import HERE, pid_gone, worker_env, write_config

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="process checks read /proc")


class Host:
    """A helper script as a process, its stdout lines collected in a thread."""

    def __init__(self, *args: str, env: dict[str, str]) -> None:
        self.proc = subprocess.Popen([sys.executable, *args], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, env=env, text=True, start_new_session=True)
        self.lines: list[tuple[float, str]] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append((time.time(), line.rstrip("\n")))

    def wait_line(self, prefix: str, timeout: float = 180) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for _, line in list(self.lines):
                if line.startswith(prefix):
                    return line
            if self.proc.poll() is not None:
                break
            time.sleep(0.05)
        err = self.proc.stderr.read()[-3000:] if self.proc.poll() is not None else ""
        raise AssertionError(f"no {prefix!r} line; got {self.lines[-5:]}; stderr: {err}")

    def kill(self) -> None:
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(10)


def _wait_gone(pid: int, timeout: float) -> float:
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        if pid_gone(pid):
            return time.monotonic() - t0
        time.sleep(0.05)
    os.kill(pid, signal.SIGKILL)  # do not leave it behind, but fail
    raise AssertionError(f"worker {pid} still runs {timeout} s after the app died")


def _stopped_cleanly(run_dir: Path) -> int:
    """The checkpoint the worker saved when it noticed it was alone; its step."""
    from lorastudio.training import checkpoint as ckpt

    from rel_helpers import assert_checkpoint_loadable

    cp = ckpt.latest_checkpoint(run_dir)
    assert cp is not None, f"no checkpoint in {run_dir}"
    assert_checkpoint_loadable(cp.path)
    return cp.step


def test_app_killed_while_training_worker_saves_and_exits(demo, tmp_path):
    """SIGKILL the app: the worker sees stdin end (and a broken event pipe), saves its
    checkpoint and the LoRA so far, and exits; no orphan keeps running."""
    from lorastudio.config import load_config

    cfg = write_config(demo, tmp_path, steps=100000, checkpoint_every=0)
    config = load_config(cfg)
    host = Host(str(HERE / "gui_host.py"), "runner", str(cfg), env=worker_env(tmp_path))
    try:
        worker_pid = int(host.wait_line("worker ").split()[1])
        host.kill()
        gone_after = _wait_gone(worker_pid, 60)
    finally:
        host.kill()
    print(f"\nworker exited {gone_after:.2f} s after the app was killed")
    step = _stopped_cleanly(config.output.run_dir)
    assert step >= 2
    from lorastudio.training.lora import read_lora_file

    _, meta = read_lora_file(config.output.lora_path)  # the LoRA so far
    assert meta["lorastudio.steps"] == str(step)
    log = (config.output.run_dir / "log.txt").read_text(encoding="utf-8", errors="replace")
    assert "Traceback" not in log, log[-3000:]


def test_orphaned_worker_stops_even_when_stdin_stays_open(demo, tmp_path):
    """The parent-process watchdog: another process holds the worker's stdin open and its
    events go to a file, so only the parent's death tells the worker that the app is gone."""
    from lorastudio.config import load_config

    cfg = write_config(demo, tmp_path, steps=100000, checkpoint_every=0)
    config = load_config(cfg)
    events = tmp_path / "events.jsonl"
    host = Host(str(HERE / "gui_host.py"), "plain", str(cfg), str(events), env=worker_env(tmp_path))
    holder_pid = None
    try:
        worker_pid = int(host.wait_line("worker ").split()[1])
        holder_pid = int(host.wait_line("holder ").split()[1])
        deadline = time.monotonic() + 180
        while '"event":"progress"' not in events.read_text(errors="replace") and time.monotonic() < deadline:
            time.sleep(0.1)
        host.kill()
        gone_after = _wait_gone(worker_pid, 60)
    finally:
        host.kill()
        if holder_pid:
            os.kill(holder_pid, signal.SIGKILL)
    print(f"\norphaned worker exited {gone_after:.2f} s after the app was killed")
    _stopped_cleanly(config.output.run_dir)
    text = events.read_text()
    assert '"stopped":true' in text and "the app that started training is gone" in text, text[-2000:]


def test_app_killed_while_typing_loses_at_most_the_last_second(tmp_path):
    """Type without pausing, SIGKILL the app: all but the last second of typing is on disk."""
    from PIL import Image

    from lorastudio.dataset import read_caption

    ds = tmp_path / "ds"
    ds.mkdir()
    for part in ("start", "end"):
        Image.new("RGB", (32, 32), "red").save(ds / f"cat_{part}.png")
    (ds / "cat.txt").write_text("a cat", encoding="utf-8")
    env = {**os.environ, "QT_QPA_PLATFORM": "offscreen"}
    typist = Host(str(HERE / "caption_typist.py"), str(ds), "cat", env=env)
    try:
        typist.wait_line("typed 60 ", timeout=120)  # 60 keystrokes ≈ 2.4 s of typing, no pause
        killed_at = time.time()
        typist.kill()
    finally:
        typist.kill()
    from caption_typist import TEXT

    on_disk = read_caption(ds / "cat.txt")
    typed = [(t, int(line.split()[1])) for t, line in typist.lines if line.startswith("typed ")]
    assert on_disk.startswith("a cat") and TEXT.startswith(on_disk[len("a cat"):]), on_disk
    saved = len(on_disk) - len("a cat")
    # Keystrokes older than a second (plus scheduling slack on a busy machine) must be saved.
    old_enough = max((n for t, n in typed if t <= killed_at - 1.5), default=0)
    lost_seconds = killed_at - next((t for t, n in typed if n > saved), killed_at)
    print(f"\ntyped {typed[-1][1]} characters, {saved} on disk; unsaved typing covered {lost_seconds:.2f} s")
    assert saved >= old_enough > 0, (saved, old_enough, typed[-1])


def test_two_editors_on_one_caption_never_overwrite_each_other(qtbot, tmp_path):
    """Two windows (two CaptionEditors) on the same set: the second save sees the first
    one's file — even with identical size and timestamp — and asks instead of overwriting."""
    from PIL import Image

    from lorastudio.dataset import scan_dataset
    from lorastudio.ui.caption_editor import CaptionEditor

    ds = tmp_path / "ds"
    ds.mkdir()
    for part in ("start", "end"):
        Image.new("RGB", (32, 32), "red").save(ds / f"cat_{part}.png")
    caption = ds / "cat.txt"
    caption.write_text("a cat\n", encoding="utf-8")
    original = caption.stat()
    a, b = CaptionEditor(delay_ms=50), CaptionEditor(delay_ms=50)
    for editor in (a, b):
        qtbot.addWidget(editor)
        editor.set_image_set(scan_dataset(ds).sets[0])
    a.edit.setPlainText("a dog")  # same length as "a cat"
    assert a.flush() and caption.read_text(encoding="utf-8") == "a dog\n"
    # A file system with coarse timestamps: A's save looks like the old file by size and time.
    os.utime(caption, ns=(original.st_atime_ns, original.st_mtime_ns))
    b.edit.setPlainText("a cow")
    assert b.flush() is False and b.has_conflict() and not b.conflict_bar.isHidden()
    assert caption.read_text(encoding="utf-8") == "a dog\n", "B overwrote A's caption silently"
    assert b.text() == "a cow", "B's text must stay in its editor"
    b.keep_mine()  # the person chose: B's text wins, knowingly
    assert caption.read_text(encoding="utf-8") == "a cow\n"
    a.edit.setPlainText("a dog, sitting")
    assert a.flush() is False and a.has_conflict(), "A must now see B's save"
    assert caption.read_text(encoding="utf-8") == "a cow\n"
