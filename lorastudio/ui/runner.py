"""Hosts the training worker: a QThread owns the subprocess and turns its lines into signals.

The worker (``lorastudio worker CONFIG``) prints one JSON event per line on stdout
(``lorastudio.protocol``) and stops gracefully on a ``stop`` line or the end of stdin. This
module starts it in its own process group/session (so the worker and any process it starts
can be ended at once), reads stdout line by line in a ``QThread``, keeps the
last lines of stderr in a bounded buffer, and re-emits each event as a Qt signal on the
UI thread. The UI only ever reacts to signals; nothing here blocks it.

Stopping: ``stop()`` writes ``stop`` and closes stdin; if the process has not exited
``kill_timeout`` seconds later, the whole tree is killed. So the UI never hangs on
"stopping". Every run ends with exactly one of ``finished`` (a ``done`` event arrived) or
``failed`` (an ``error`` event, a crash, a kill, or a process that could not start).
"""

from __future__ import annotations

import collections
import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from PySide6.QtCore import QObject, QThread, QTimer, Signal

from lorastudio import protocol, run_folder

#: Lines of stderr kept for the error display.
STDERR_LINES = 400


def _popen_kwargs() -> dict[str, Any]:
    if sys.platform == "win32":
        flags = getattr(subprocess, "CREATE_NEW_PROCESS_GROUP", 0) | getattr(subprocess, "CREATE_NO_WINDOW", 0)
        return {"creationflags": flags}
    return {"start_new_session": True}


def kill_tree(proc: subprocess.Popen) -> None:
    """Kill ``proc`` and every process in its group (it leads its own session)."""
    if sys.platform == "win32":  # pragma: no cover - Windows
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            subprocess.run(["taskkill", "/F", "/T", "/PID", str(proc.pid)], capture_output=True, timeout=10)
        with contextlib.suppress(OSError):
            proc.kill()
        return
    with contextlib.suppress(ProcessLookupError, PermissionError, OSError):
        os.killpg(proc.pid, signal.SIGKILL)
    with contextlib.suppress(OSError):
        proc.kill()


def tail_of_file(path: str | Path | None, lines: int = 60, max_bytes: int = 64 * 1024) -> str:
    """The last lines of a (log) file, reading at most ``max_bytes`` from its end."""
    if not path:
        return ""
    try:
        with open(path, "rb") as fh:
            fh.seek(0, os.SEEK_END)
            size = fh.tell()
            fh.seek(max(0, size - max_bytes))
            data = fh.read()
    except OSError:
        return ""
    return "\n".join(data.decode("utf-8", errors="replace").splitlines()[-lines:])


def describe_exit(returncode: int | None) -> str:
    if returncode is None:
        return "did not report an exit status"
    if returncode < 0:
        try:
            name = signal.Signals(-returncode).name
        except ValueError:
            name = f"signal {-returncode}"
        text = f"was killed by {name}"
        if -returncode == getattr(signal, "SIGKILL", 9):
            text += " (by another program, or by the system because memory ran out)"
        return text
    return f"exited with code {returncode}"


class _ProcessThread(QThread):
    """Owns one worker process: starts it, reads stdout line by line, waits for it."""

    line = Signal(str)
    stderr_line = Signal(str)
    spawned = Signal(int)
    spawn_failed = Signal(str)
    exited = Signal(object)  # return code (int) or None

    def __init__(self, argv: list[str], cwd: str | None, env: dict[str, str] | None, parent=None) -> None:
        super().__init__(parent)
        self.argv = argv
        self.cwd = cwd
        self.env = env
        self.lock = threading.Lock()
        self.proc: subprocess.Popen | None = None
        self.stop_requested = False
        self.stderr_tail: collections.deque[str] = collections.deque(maxlen=STDERR_LINES)

    def run(self) -> None:  # the thread
        try:
            proc = subprocess.Popen(
                self.argv, cwd=self.cwd, env=self.env, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                stderr=subprocess.PIPE, bufsize=0, **_popen_kwargs())
        except OSError as exc:
            self.spawn_failed.emit(f"could not start {self.argv[0]}: {exc}")
            return
        with self.lock:
            self.proc = proc
            stop_now = self.stop_requested
        self.spawned.emit(proc.pid)
        if stop_now:
            self.send_stop()

        err_thread = threading.Thread(target=self._read_stderr, args=(proc,), daemon=True)
        err_thread.start()
        # If the worker itself dies, children it left behind may still hold our stdout
        # open: end them so reading sees EOF and no orphan keeps the GPU.
        reaper = threading.Thread(target=self._reap, args=(proc,), daemon=True)
        reaper.start()

        assert proc.stdout is not None
        for raw in iter(proc.stdout.readline, b""):
            self.line.emit(raw.decode("utf-8", errors="replace").rstrip("\r\n"))
        returncode = proc.wait()
        err_thread.join(timeout=2.0)
        self.exited.emit(returncode)

    def _read_stderr(self, proc: subprocess.Popen) -> None:
        assert proc.stderr is not None
        for raw in iter(proc.stderr.readline, b""):
            text = raw.decode("utf-8", errors="replace").rstrip("\r\n")
            self.stderr_tail.append(text)
            self.stderr_line.emit(text)

    @staticmethod
    def _reap(proc: subprocess.Popen) -> None:
        proc.wait()
        if sys.platform != "win32":
            time.sleep(0.2)
            with contextlib.suppress(ProcessLookupError, PermissionError, OSError):
                os.killpg(proc.pid, signal.SIGKILL)

    def send_stop(self) -> None:
        """Write ``stop`` and close stdin (end of stdin means stop too). Never blocks long."""
        with self.lock:
            self.stop_requested = True
            proc = self.proc
        if proc is None or proc.stdin is None:
            return
        with contextlib.suppress(OSError, ValueError):
            proc.stdin.write((protocol.STOP_COMMAND + "\n").encode())
            proc.stdin.flush()
        with contextlib.suppress(OSError, ValueError):
            proc.stdin.close()

    def kill(self) -> None:
        with self.lock:
            proc = self.proc
        if proc is not None and proc.poll() is None:
            kill_tree(proc)
        elif proc is not None and sys.platform != "win32":
            with contextlib.suppress(ProcessLookupError, PermissionError, OSError):
                os.killpg(proc.pid, signal.SIGKILL)


#: Every thread whose worker may still run. A QThread destroyed while it runs aborts the whole
#: process ("QThread: Destroyed while thread is still running"), and a runner can be destroyed
#: mid-run (its window or dialog closed, the app quitting, a test tearing down): so no runner
#: owns its thread as a Qt child; each thread stays referenced here until it has finished.
_LIVE_THREADS: set[_ProcessThread] = set()


def _forget_finished_threads() -> None:
    _LIVE_THREADS.difference_update([t for t in _LIVE_THREADS if t.isFinished()])


class _ThreadSlot:
    """The runner's current thread, in a plain object that outlives the runner's Qt half, so the
    runner's ``destroyed`` signal can still end the worker it leaves behind."""

    def __init__(self) -> None:
        self.thread: _ProcessThread | None = None

    def end_orphaned_worker(self, *_args) -> None:
        """The runner is gone while its worker may run: end the worker and its children (nobody
        is left to show its events); the thread then reads EOF and finishes on its own."""
        thread = self.thread
        if thread is None:
            return
        with contextlib.suppress(RuntimeError):  # at interpreter exit its C++ half may be gone first
            if thread.isFinished():
                return
        thread.kill()  # plain Python: works on the process whatever became of the QThread


class WorkerRunner(QObject):
    """Runs one worker process at a time and re-emits its events as signals (UI thread)."""

    started = Signal(dict)
    status = Signal(dict)
    progress = Signal(dict)
    sample = Signal(dict)
    checkpoint = Signal(dict)
    #: The held-out sets' loss (``validation``: ``step``, ``loss``, ``per_sigma``).
    validation = Signal(dict)
    #: A drafted caption (``lorastudio caption``): ``set``, ``text``.
    caption = Signal(dict)
    #: The ``done`` event, once the process has exited (``returncode`` added).
    finished = Signal(dict)
    #: ``{"message", "kind", "log", "log_tail", "stderr", "returncode"}``; kind is a protocol error kind,
    #: or ``killed`` (did not stop in time) / ``start`` (could not be started).
    failed = Signal(dict)
    #: Every line that is not an event (stdout) and every stderr line, for the log view.
    log = Signal(str)
    #: "idle", "starting", "running", "stopping".
    state_changed = Signal(str)

    def __init__(self, parent: QObject | None = None, kill_timeout: float = 5.0) -> None:
        super().__init__(parent)
        self.kill_timeout = kill_timeout
        self._thread: _ProcessThread | None = None
        self._slot = _ThreadSlot()
        self.destroyed.connect(self._slot.end_orphaned_worker)
        self._state = "idle"
        self._done: dict | None = None
        self._error: dict | None = None
        self._started: dict | None = None
        self._last_checkpoint: dict | None = None
        self._killed = False
        self._stop_requested = False
        self._pid: int | None = None
        self._kill_timer = QTimer(self)
        self._kill_timer.setSingleShot(True)
        self._kill_timer.timeout.connect(self._escalate)
        self.last_event_time = 0.0

    # -- queries --------------------------------------------------------------------------

    @property
    def state(self) -> str:
        return self._state

    def is_running(self) -> bool:
        return self._state != "idle"

    @property
    def pid(self) -> int | None:
        return self._pid

    @property
    def last_checkpoint(self) -> dict | None:
        """The last ``checkpoint`` event of the current (or last) run: complete on disk."""
        return self._last_checkpoint

    @property
    def run_dir(self) -> str | None:
        return (self._started or {}).get("run_dir")

    def stderr_tail(self, lines: int = 60) -> str:
        if self._thread is None:
            return ""
        return "\n".join(list(self._thread.stderr_tail)[-lines:])

    # -- control --------------------------------------------------------------------------

    def start_training(self, config_path: str | Path, resume: bool = False) -> None:
        self.start(protocol.worker_command_line(config_path, resume=resume), cwd=str(Path(config_path).parent))

    def start(self, argv: list[str], cwd: str | None = None, env: dict[str, str] | None = None) -> None:
        if self.is_running():
            raise RuntimeError("a worker is already running")
        self._done = self._error = self._started = self._last_checkpoint = None
        self._killed = self._stop_requested = False
        self._pid = None
        env = dict(os.environ if env is None else env)
        env.setdefault("PYTHONUNBUFFERED", "1")
        env.setdefault("PYTHONIOENCODING", "utf-8")
        _forget_finished_threads()
        thread = _ProcessThread(list(argv), cwd, env)  # not a Qt child: see _LIVE_THREADS
        _LIVE_THREADS.add(thread)
        self._slot.thread = thread
        thread.line.connect(self._on_line)
        thread.stderr_line.connect(self._on_stderr)
        thread.spawned.connect(self._on_spawned)
        thread.spawn_failed.connect(self._on_spawn_failed)
        thread.exited.connect(self._on_exited)
        self._thread = thread
        self._set_state("starting")
        thread.start()

    def stop(self) -> None:
        """Ask the worker to stop (it saves a checkpoint and the LoRA so far); kill it if it lingers."""
        if not self.is_running() or self._thread is None:
            return
        if not self._stop_requested:
            self._stop_requested = True
            self._thread.send_stop()
            self._set_state("stopping")
            self._kill_timer.start(int(self.kill_timeout * 1000))

    def kill(self) -> None:
        """End the worker and its children now."""
        if self._thread is not None and self.is_running():
            self._killed = True
            self._thread.kill()

    def wait(self, timeout: float = 10.0) -> bool:
        """Block until the process thread has ended (for shutdown and tests only)."""
        if self._thread is None:
            return True
        return self._thread.wait(int(timeout * 1000))

    # -- internals ------------------------------------------------------------------------

    def _set_state(self, state: str) -> None:
        if state != self._state:
            self._state = state
            self.state_changed.emit(state)

    def _on_spawned(self, pid: int) -> None:
        self._pid = pid
        if self._state == "starting":
            self._set_state("running")

    def _on_spawn_failed(self, message: str) -> None:
        self._kill_timer.stop()
        self._thread = None
        self._set_state("idle")
        self.failed.emit({"message": message, "kind": "start", "log": None, "stderr": "", "returncode": None})

    def _on_stderr(self, text: str) -> None:
        self.log.emit(text)

    def _on_line(self, text: str) -> None:
        if not text.strip():
            return
        try:
            event = protocol.decode(text)
        except protocol.ProtocolError:
            self.log.emit(text)
            return
        self.last_event_time = time.monotonic()
        kind = event["event"]
        if kind == protocol.STARTED:
            self._started = event
            self.started.emit(event)
        elif kind == protocol.STATUS:
            self.status.emit(event)
        elif kind == protocol.PROGRESS:
            self.progress.emit(event)
        elif kind == protocol.SAMPLE:
            self.sample.emit(event)
        elif kind == protocol.CHECKPOINT:
            self._last_checkpoint = event
            self.checkpoint.emit(event)
        elif kind == protocol.VALIDATION:
            self.validation.emit(event)
        elif kind == protocol.CAPTION:
            self.caption.emit(event)
        elif kind == protocol.DONE:
            self._done = event
            self._arm_exit_deadline()
        elif kind == protocol.ERROR:
            self._error = event
            self.log.emit(f"error: {event.get('message', '')}")
            self._arm_exit_deadline()

    def _arm_exit_deadline(self) -> None:
        # The worker said its last word: it must exit now. If it lingers, end it.
        if not self._kill_timer.isActive():
            self._kill_timer.start(int(self.kill_timeout * 1000))

    def _escalate(self) -> None:
        if self._thread is not None and self.is_running():
            self.log.emit(f"the worker did not exit within {self.kill_timeout:g} s; ending it")
            self.kill()

    def _find_log(self) -> str | None:
        if self._error and self._error.get("log"):
            return str(self._error["log"])
        run_dir = self.run_dir
        if run_dir and Path(run_dir).is_dir():
            if run_folder.log_path(run_dir).is_file():  # the worker's log (library output, tracebacks)
                return str(run_folder.log_path(run_dir))
            logs = sorted(Path(run_dir).glob("*.log"), key=lambda p: p.stat().st_mtime, reverse=True)
            if logs:
                return str(logs[0])
        return None

    def _on_exited(self, returncode: int | None) -> None:
        self._kill_timer.stop()
        thread = self._thread
        stderr = self.stderr_tail()
        if thread is not None:
            thread.wait(2000)
        self._set_state("idle")
        if self._done is not None:
            self.finished.emit({**self._done, "returncode": returncode})
            return
        log = self._find_log()
        log_tail = tail_of_file(log)
        checkpoint = self._last_checkpoint
        fields = {"log": log, "log_tail": log_tail, "stderr": stderr, "returncode": returncode,
                  "checkpoint": checkpoint}
        if self._error is not None:
            err = self._error
            self.failed.emit({"message": err.get("message", "training failed"), "kind": err.get("kind", "crash"),
                              **fields})
            return
        where = f"the checkpoint at step {checkpoint['step']}" if checkpoint else "the last saved checkpoint"
        resume = f" Resume continues from the checkpoint at step {checkpoint['step']}." if checkpoint else ""
        if self._killed and self._stop_requested:
            message = (f"The training process did not stop within {self.kill_timeout:g} seconds and was ended. "
                       f"Resume continues from {where}.")
            kind = "killed"
        elif self._killed:
            message, kind = f"The training process was ended.{resume}", "killed"
        else:
            message = f"The training process {describe_exit(returncode)} before it finished.{resume}"
            kind = "crash"
        self.failed.emit({"message": message, "kind": kind, **fields})
