"""Where training events go: a JSON-lines stream (``--jsonl`` / ``worker``); the terminal's
view of them is :mod:`lorastudio.training.terminal`.

In JSON-lines mode stdout must carry *only* events, one per line, or the GUI's reader
chokes. Python-level redirection (``sys.stdout = …``) is not enough: a C extension, a
tokenizer's Rust code or a CUDA library can write to file descriptor 1 directly. So
:func:`redirect_stdio` duplicates the original stdout descriptor for the event stream and
then points descriptors 1 and 2 (and ``sys.stdout``/``sys.stderr``, ``logging``,
``warnings``, tqdm's default stream) at ``run_dir/log.txt``. Whatever anything else
prints lands in the log; only :class:`JsonlSink` writes to the real stdout.
"""

from __future__ import annotations

import io
import logging
import os
import sys
import threading
import warnings
from pathlib import Path
from typing import Any, Callable, TextIO

from lorastudio import protocol


class EventSink:
    """Receives events; subclasses decide how to show them. Thread-safe.

    ``error`` is the last event of a failed run (the protocol's promise), so the sink ends
    with it: whatever is emitted afterwards is dropped. In a multi-process run rank 0's error
    is emitted by a watcher thread while the training thread may still be finishing a step or
    a save in the moment before the process exits; its events must not follow the error.
    """

    #: Keep every event in ``history`` (in-process callers and tests read it; the stream
    #: sinks do not, so a 100,000-step run does not hold 100,000 dicts).
    keep_history = False

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.history: list[dict[str, Any]] = []
        self.ended = False  # an ``error`` event went out: nothing more is written

    def emit(self, event: str, **fields: Any) -> dict[str, Any]:
        ev = protocol.make_event(event, **fields)
        with self._lock:
            if self.ended:
                return ev
            self.ended = event == protocol.ERROR
            if self.keep_history:
                self.history.append(ev)
            self._write(ev)
        return ev

    def _write(self, ev: dict[str, Any]) -> None:  # pragma: no cover - overridden
        pass


class NullSink(EventSink):
    """Collects events in ``history`` without showing them (in-process callers, tests)."""

    keep_history = True


class JsonlSink(EventSink):
    """One JSON object per line on ``stream``, flushed immediately.

    When the reader is gone (the GUI was killed: the pipe is broken) writing raises
    ``BrokenPipeError``. That must not become an exception in the middle of training, or the
    run would die without saving the checkpoint it is about to write. So the sink goes
    quiet instead, and calls ``on_broken`` once (the worker turns that into a graceful stop:
    checkpoint, LoRA, exit).
    """

    def __init__(self, stream: TextIO, on_broken: Callable[[], None] | None = None) -> None:
        super().__init__()
        self.stream = stream
        self.on_broken = on_broken
        self.broken = False

    def _write(self, ev: dict[str, Any]) -> None:
        if self.broken:
            return
        line = protocol.encode(ev) + "\n"
        try:
            self.stream.write(line)
            self.stream.flush()
        except (BrokenPipeError, ConnectionResetError, ValueError, OSError):
            # ValueError: the stream was closed. OSError: EPIPE/EINVAL on some platforms.
            self.broken = True
            if self.on_broken is not None:
                self.on_broken()


class _TolerantLog(io.TextIOBase):
    """The run log as ``sys.stdout``/``sys.stderr``/logging target, ignoring write errors.

    On a full disk every ``print`` or warning from a library would otherwise raise
    ``OSError`` at a random place inside training; losing a log line is better than losing
    the run (the save that hits the full disk reports it properly).
    """

    def __init__(self, raw: TextIO) -> None:
        super().__init__()
        self._raw = raw

    def write(self, text: str) -> int:  # type: ignore[override]
        try:
            return self._raw.write(text)
        except (OSError, ValueError):
            return len(text)

    def flush(self) -> None:
        try:
            self._raw.flush()
        except (OSError, ValueError):
            pass

    def fileno(self) -> int:
        return self._raw.fileno()

    def writable(self) -> bool:
        return True

    def isatty(self) -> bool:
        return False

    @property
    def encoding(self) -> str:  # type: ignore[override]
        return self._raw.encoding

    def close(self) -> None:
        try:
            self._raw.close()
        except (OSError, ValueError):
            pass
        super().close()


class RedirectedStdio:
    """The state :func:`redirect_stdio` changed, so it can be undone (tests run in-process)."""

    def __init__(self, events: TextIO, restore: list[Any]) -> None:
        self.events = events
        self._restore = restore

    def close(self) -> None:
        for fn in reversed(self._restore):
            try:
                fn()
            except Exception:  # pragma: no cover - best effort
                pass


def redirect_stdio(log_path: Path) -> RedirectedStdio:
    """Keep the real stdout for events; send everything else (fd 1 and 2 too) to ``log_path``.

    Returns the event stream (a text stream on a duplicate of the original fd 1).
    """
    log_path.parent.mkdir(parents=True, exist_ok=True)
    restore: list[Any] = []
    sys.stdout.flush()
    sys.stderr.flush()
    event_fd = os.dup(1)
    events = io.TextIOWrapper(os.fdopen(event_fd, "wb", buffering=0), encoding="utf-8",
                              line_buffering=False, write_through=True)
    log = _TolerantLog(open(log_path, "a", encoding="utf-8", buffering=1))  # noqa: SIM115 - lives for the run
    saved_fd1, saved_fd2 = os.dup(1), os.dup(2)
    os.dup2(log.fileno(), 1)
    os.dup2(log.fileno(), 2)

    def restore_fds() -> None:
        sys.stdout.flush()
        sys.stderr.flush()
        os.dup2(saved_fd1, 1)
        os.dup2(saved_fd2, 2)
        os.close(saved_fd1)
        os.close(saved_fd2)

    restore.append(restore_fds)
    old_out, old_err = sys.stdout, sys.stderr
    sys.stdout = log
    sys.stderr = log
    restore.append(lambda: (setattr(sys, "stdout", old_out), setattr(sys, "stderr", old_err)))

    handler = logging.StreamHandler(log)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    old_handlers = list(root.handlers)
    for h in old_handlers:
        root.removeHandler(h)
    root.addHandler(handler)
    if root.level > logging.INFO or root.level == logging.NOTSET:
        root.setLevel(logging.INFO)

    def restore_logging() -> None:
        root.removeHandler(handler)
        for h in old_handlers:
            root.addHandler(h)

    restore.append(restore_logging)
    old_showwarning = warnings.showwarning

    def showwarning(message, category, filename, lineno, file=None, line=None):  # type: ignore[no-untyped-def]
        log.write(warnings.formatwarning(message, category, filename, lineno, line))

    warnings.showwarning = showwarning
    restore.append(lambda: setattr(warnings, "showwarning", old_showwarning))
    # Progress bars (diffusers pipelines, transformers) default to sys.stderr, already the log;
    # disable them outright so the log is not filled with carriage returns.
    os.environ.setdefault("TQDM_DISABLE", "1")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    restore.append(log.close)
    restore.append(events.close)
    return RedirectedStdio(events, restore)
