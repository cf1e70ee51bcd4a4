"""Graceful stop: a ``stop`` line on stdin, end of stdin or a dead parent (worker only), or SIGINT.

The training loop polls :meth:`StopSignal.is_set` between steps, so a stop finishes at most
the current step, then the loop saves a checkpoint and the LoRA so far and ends with
``done`` (``stopped: true``). Stdin is read in a daemon thread so a blocked read never keeps
the process alive. A second SIGINT while stopping raises KeyboardInterrupt as usual.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
from typing import BinaryIO

from lorastudio.protocol import STOP_COMMAND

#: Stop reasons that mean nobody is listening any more (the GUI is gone).
STDIN_CLOSED = "stdin closed"
ORPHANED = "the app that started training is gone"
EVENTS_CLOSED = "the app stopped reading events"
APP_GONE = frozenset({STDIN_CLOSED, ORPHANED, EVENTS_CLOSED})
#: Exit status of a worker ended by :meth:`StopSignal.exit_if_orphaned_after`.
EXIT_ORPHAN_TIMEOUT = 3


class StopSignal:
    """The channel between the training thread and the threads that may end the run.

    Besides the stop request it carries the step the training loop is in (:meth:`begin_step`):
    a process told that another rank failed in step N waits (:meth:`wait_for_step`) until its
    own loop has begun step N, so the checkpoints of the steps that every rank completed are
    written before it reports the failure and exits, however the threads are scheduled.
    """

    def __init__(self) -> None:
        self._event = threading.Event()
        self.reason = ""
        self._old_sigint = None
        self._progress = threading.Condition()
        self.step = 0

    def begin_step(self, step: int) -> None:
        with self._progress:
            self.step = step
            self._progress.notify_all()

    def wait_for_step(self, step: int, timeout: float) -> bool:
        """Block until the training loop has begun ``step`` (True) or ``timeout`` passes (False)."""
        with self._progress:
            return self._progress.wait_for(lambda: self.step >= step, timeout)

    def request(self, reason: str) -> None:
        if not self._event.is_set():
            self.reason = reason
            self._event.set()

    def is_set(self) -> bool:
        return self._event.is_set()

    def wait(self, timeout: float | None = None) -> bool:
        return self._event.wait(timeout)

    def watch_stdin(self, stop_on_eof: bool, stream: BinaryIO | int | None = None) -> threading.Thread:
        """Read commands from stdin in a daemon thread; ``stop`` (and EOF if asked) stops.

        Reads the file descriptor with ``os.read``, not ``sys.stdin``: a daemon thread blocked
        inside a buffered reader holds its lock, and the interpreter aborts at exit
        ("could not acquire lock for <stdin>") when the main thread finishes first.
        """
        fd: int | None
        if stream is None:
            try:
                fd = sys.stdin.fileno() if sys.stdin is not None else None
            except (OSError, ValueError):
                fd = None
        else:
            fd = stream if isinstance(stream, int) else stream.fileno()

        def run() -> None:
            if fd is None:
                if stop_on_eof:
                    self.request(STDIN_CLOSED)
                return
            pending = b""
            try:
                while True:
                    chunk = os.read(fd, 4096)
                    if not chunk:
                        break
                    pending += chunk
                    *lines, pending = pending.split(b"\n")
                    for raw in lines:
                        if raw.decode("utf-8", errors="replace").strip().lower() == STOP_COMMAND:
                            self.request("stop command")
                            return
            except OSError:
                pass
            if pending.decode("utf-8", errors="replace").strip().lower() == STOP_COMMAND:
                self.request("stop command")
            elif stop_on_eof:
                self.request(STDIN_CLOSED)

        thread = threading.Thread(target=run, name="lorastudio-stdin", daemon=True)
        thread.start()
        return thread

    def watch_parent(self, interval: float = 0.5, grace: float | None = None) -> threading.Thread:
        """Stop when the process that started us is gone, even if stdin stays open.

        End of stdin is the first sign that the GUI is gone, but not a sure one: a pipe
        can be kept open by some other process that inherited it. So a daemon thread also
        watches the parent process id: when the parent dies the worker is re-parented (to
        init or a sub-reaper) and ``os.getppid()`` changes. Portable to every POSIX system;
        on Windows the parent id never changes, and stdin's end (plus the runner's job
        object) does the job. ``grace`` (seconds) arms :meth:`exit_if_orphaned_after`.
        """
        parent = os.getppid()

        def run() -> None:
            while not self._event.wait(interval):
                if os.getppid() != parent:
                    self.request(ORPHANED)
                    break
            if grace is not None and self.reason in APP_GONE:
                self.exit_if_orphaned_after(grace)

        thread = threading.Thread(target=run, name="lorastudio-parent-watch", daemon=True)
        thread.start()
        return thread

    @staticmethod
    def exit_if_orphaned_after(grace: float) -> None:
        """Last resort for a stop with nobody watching: if the process is still alive
        ``grace`` seconds later (stuck in a driver call, say), end it, so no orphan keeps
        the GPU. A normal graceful stop (checkpoint, LoRA) finishes long before."""
        time.sleep(grace)
        from lorastudio.fileio import wait_for_writes

        wait_for_writes(60.0)  # never cut a checkpoint or LoRA write short
        os._exit(EXIT_ORPHAN_TIMEOUT)

    def install_sigint(self) -> None:
        """First SIGINT requests a stop; a second one interrupts (KeyboardInterrupt)."""
        if threading.current_thread() is not threading.main_thread():
            return

        def handler(signum, frame):  # type: ignore[no-untyped-def]
            if self.is_set():
                raise KeyboardInterrupt
            self.request("SIGINT")

        self._old_sigint = signal.signal(signal.SIGINT, handler)

    def restore_sigint(self) -> None:
        if self._old_sigint is not None and threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGINT, self._old_sigint)
            self._old_sigint = None
