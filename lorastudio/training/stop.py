"""Graceful stop: a ``stop`` line on stdin, end of stdin (worker only), or SIGINT.

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
from typing import BinaryIO

from lorastudio.protocol import STOP_COMMAND


class StopSignal:
    def __init__(self) -> None:
        self._event = threading.Event()
        self.reason = ""
        self._old_sigint = None

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
                    self.request("stdin closed")
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
                self.request("stdin closed")

        thread = threading.Thread(target=run, name="lorastudio-stdin", daemon=True)
        thread.start()
        return thread

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
