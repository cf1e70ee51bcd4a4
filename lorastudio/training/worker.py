"""``lorastudio train`` and ``lorastudio worker``: run :func:`trainer.train` as a process.

``train CONFIG [--jsonl] [--resume] [--dry-run]`` trains in the foreground: a progress bar on
a terminal, plain lines into a log or pipe, or with ``--jsonl`` only events on stdout.
``worker CONFIG [--resume]`` is what the GUI starts: the same events, and it also stops when
its stdin ends (the GUI is gone).

In JSON-lines mode stdout carries only events: the original stdout descriptor is duplicated
for them and everything else (fd 1 and 2, logging, warnings, progress bars) goes to
``run_dir/log.txt``. A bad config is reported before anything else happens (and before any
model loads); every failure ends with one ``error`` event and a non-zero exit status.

Exit status: 0 finished or stopped gracefully, 1 error, 2 bad config, 130 interrupted twice.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sys
import threading
import time
import traceback
from pathlib import Path

from lorastudio import run_folder
from lorastudio.config import ConfigError, load_config
from lorastudio.fileio import wait_for_writes
from lorastudio.training.events import EventSink, JsonlSink, NullSink, redirect_stdio
from lorastudio.training.stop import EVENTS_CLOSED, StopSignal
from lorastudio.training.terminal import TerminalSink, quiet_library_bars

#: Seconds a worker whose GUI is gone may take to save and exit before it ends itself
#: (``LORASTUDIO_ORPHAN_GRACE`` overrides; a checkpoint of a large model takes well under this).
ORPHAN_GRACE = 600.0
#: Seconds a process that must end at once still gives a save in progress to complete.
SAVE_GRACE = 60.0
#: The same after the launcher's SIGTERM: torchrun sends SIGKILL 30 s later, and the error
#: event must be out by then.
SIGTERM_SAVE_GRACE = 20.0


def _rank() -> int:
    """This process's rank under ``accelerate launch``/torchrun (0 when run alone)."""
    try:
        return int(os.environ.get("RANK", "0"))
    except ValueError:
        return 0


def _world() -> int:
    try:
        return max(1, int(os.environ.get("WORLD_SIZE", "1")))
    except ValueError:
        return 1


class RankErrors:
    """How a failure in one process of a multi-process run reaches the one event stream.

    Only rank 0 emits events. When another rank fails, rank 0 is typically inside a
    collective (the per-step all-reduce) waiting for it: with gloo it then fails with
    "Connection closed by peer", which says nothing about the cause; with NCCL it may wait
    until a timeout or until torchrun terminates it, and then no error event is written at
    all. So a failing rank writes ``run_dir/error.rank<N>.json`` (kind, message, its log)
    before it exits, and rank 0 watches for such files in a daemon thread: the first one
    found becomes *the* error event at once ("process 1 of 2 failed: …") and rank 0 exits,
    blocked collective or not. Rank 0's own failure prefers that message too.

    The file also names the step the failing rank was in. Every rank completed the steps
    before it, so before reporting, rank 0 lets its own loop reach that step: a checkpoint
    due after the last complete step is written even when the failure is seen first.
    """

    def __init__(self, run_dir: Path, rank: int, world: int, progress: StopSignal | None = None) -> None:
        self.run_dir, self.rank, self.world = run_dir, rank, world
        self.progress = progress or StopSignal()
        self.since = time.time() - 5.0  # files older than this run are an earlier run's
        self._lock = threading.Lock()
        self._reported = False
        if world > 1:
            with contextlib.suppress(OSError):
                self._path(rank).unlink()

    def _path(self, rank: int) -> Path:
        return self.run_dir / f"error.rank{rank}.json"

    def write(self, kind: str, message: str, log: str) -> None:
        if self.world > 1 and self.rank != 0:
            from lorastudio.fileio import atomic_write_text

            with contextlib.suppress(OSError):
                self.run_dir.mkdir(parents=True, exist_ok=True)
                atomic_write_text(self._path(self.rank), json.dumps({"rank": self.rank, "kind": kind,
                                                                     "message": message, "log": log,
                                                                     "step": self.progress.step}))

    def find(self) -> dict | None:
        for r in range(1, self.world):
            path = self._path(r)
            try:
                if path.stat().st_mtime >= self.since:
                    return json.loads(path.read_text(encoding="utf-8"))
            except (OSError, ValueError):
                continue
        return None

    def report(self, sink: EventSink, kind: str, message: str, log: str, wait: float = 0.0,
               save_grace: float = SAVE_GRACE, from_watcher: bool = False) -> bool:
        """Emit the run's one error event (another rank's, if one failed). False if already done.

        ``error`` is the last event, but rank 0's training thread may be writing a checkpoint
        when a watcher thread reports another rank's failure, or be about to write one for a
        step every rank completed. A watcher (``from_watcher``) first lets the training loop
        reach the failed rank's step; then the save in progress (with its ``checkpoint``
        event: the trainer holds ``fileio.writing()`` over both) completes. Both share
        ``save_grace`` seconds, so the GUI hears of every checkpoint it can resume from; then
        the error goes out and the sink takes no more events.
        """
        deadline = time.monotonic() + wait
        other = self.find()
        while other is None and time.monotonic() < deadline:
            time.sleep(0.1)
            other = self.find()
        grace_ends = time.monotonic() + save_grace
        if from_watcher and other is not None and isinstance(other.get("step"), int):
            self.progress.wait_for_step(other["step"], save_grace)
        wait_for_writes(max(0.0, grace_ends - time.monotonic()))
        if other is not None:
            kind = other.get("kind", "crash")
            message = f"process {other.get('rank')} of {self.world} failed: {other.get('message', '')}"
            log = other.get("log") or log
        # The emit happens under the lock: a thread that loses the race returns only once the
        # event is out, and may then end the process (it exits right after) without cutting it off.
        with self._lock:
            if self._reported:
                return False
            self._reported = True
            sink.emit("error", kind=kind, message=message, log=log)
        return True

    def on_sigterm(self, sink: EventSink, log: str) -> None:
        """Rank 0: when the launcher terminates the run (torchrun does, once another process
        has died), still end with one error event naming the cause, even while the main
        thread is blocked in a collective (where a Python signal handler would never run):
        SIGTERM is blocked in every thread and taken by a dedicated thread with sigwait."""
        if not hasattr(signal, "pthread_sigmask") or threading.current_thread() is not threading.main_thread():
            return
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})

        def run() -> None:
            signal.sigwait({signal.SIGTERM})
            self.report(sink, "crash", "the run was terminated (SIGTERM) by its launcher", log, wait=1.0,
                        save_grace=SIGTERM_SAVE_GRACE, from_watcher=True)
            wait_for_writes(SAVE_GRACE)  # a save started meanwhile completes (until the SIGKILL)
            os._exit(143)

        threading.Thread(target=run, name="lorastudio-sigterm", daemon=True).start()

    def watch(self, sink: EventSink, log: str, interval: float = 0.2) -> None:
        """Rank 0 of a multi-process run: report another rank's failure at once, then exit."""
        def run() -> None:
            while True:
                time.sleep(interval)
                if self.find() is not None:
                    if self.report(sink, "crash", "", log, from_watcher=True):
                        wait_for_writes(SAVE_GRACE)  # a save started meanwhile completes too
                        os._exit(1)
                    return

        threading.Thread(target=run, name="lorastudio-rank-errors", daemon=True).start()


def run(config_path: Path, *, jsonl: bool, resume: bool, stop_on_eof: bool) -> int:
    rank = _rank()
    try:
        config = load_config(config_path)
    except ConfigError as exc:
        sink: EventSink = JsonlSink(sys.stdout) if jsonl else TerminalSink()
        if rank == 0:
            sink.emit("error", kind="config", message=str(exc))
        return 2

    run_dir = config.output.run_dir
    log_path = run_folder.log_path(run_dir, rank)
    redirected = None
    stop = StopSignal()
    if jsonl or rank != 0:
        redirected = redirect_stdio(log_path)
        # The GUI gone (broken pipe) stops the run gracefully instead of crashing it.
        sink = (JsonlSink(redirected.events, on_broken=lambda: stop.request(EVENTS_CLOSED))
                if rank == 0 else NullSink())
    else:
        run_dir.mkdir(parents=True, exist_ok=True)
        sink = TerminalSink()
        quiet_library_bars()
    stop.install_sigint()
    rank_errors = RankErrors(run_dir, rank, _world(), progress=stop)
    if rank == 0 and rank_errors.world > 1:
        rank_errors.on_sigterm(sink, str(log_path))  # first: later threads inherit the signal mask
        rank_errors.watch(sink, str(log_path))
    if rank == 0:
        stop.watch_stdin(stop_on_eof=stop_on_eof)
    if stop_on_eof:  # the GUI's worker: also stop when the GUI process is gone, then never linger
        stop.watch_parent(grace=_orphan_grace())
    try:
        from lorastudio.training.trainer import train

        freeze_imports(config)
        train(config, sink, resume=resume, stop=stop)
        return 0
    except KeyboardInterrupt:
        _log_traceback(log_path)
        rank_errors.write("crash", "interrupted (a second Ctrl+C)", str(log_path))
        rank_errors.report(sink, "crash", "interrupted (a second Ctrl+C)", str(log_path))
        return 130
    except BaseException as exc:  # every failure becomes one error event
        from lorastudio.training.plan import classify

        _log_traceback(log_path)
        kind, message = classify(exc)
        disk = disk_full_message(exc, run_dir)
        if disk:
            message = disk
        rank_errors.write(kind, message, str(log_path))
        # In a multi-process run this may be only the echo of another rank's failure: give
        # its error file a moment to appear, and report the cause rather than the echo.
        rank_errors.report(sink, kind, message, str(log_path), wait=2.0 if rank_errors.world > 1 else 0.0)
        return 1
    finally:
        stop.restore_sigint()
        if redirected is not None:
            redirected.close()


def freeze_imports(config) -> None:
    """Import the model family's pipeline now (diffusers, transformers) and freeze the heap.

    This process runs one training, so every module it imports lives until it exits. The
    trainer runs full garbage collections to free the encoders and the previews' models at
    once; each walks every object tracked, over half a million after these imports (~0.3 s of
    CPU apiece). ``gc.freeze`` keeps what exists now out of those walks. A model folder that
    is not one is left to :func:`trainer.train`, which reports it.
    """
    import gc

    with contextlib.suppress(Exception):
        from lorastudio.training.families import detect_family

        detect_family(config.model.path, config.model.family).pipeline_class()
    gc.freeze()


def _orphan_grace() -> float:
    try:
        return float(os.environ.get("LORASTUDIO_ORPHAN_GRACE", ORPHAN_GRACE))
    except ValueError:
        return ORPHAN_GRACE


def disk_full_message(exc: BaseException, run_dir: Path) -> str | None:
    """A plain message for a full disk, or None when ``exc`` is something else.

    A full disk surfaces as ``OSError(ENOSPC)`` from Python, or as safetensors' own error
    ("I/O error: No space left on device (os error 28)") from its Rust writer; either way
    the artist needs to hear "the disk is full", where, and that nothing good was lost
    (checkpoints and the LoRA are written atomically: the previous ones are intact).
    """
    import errno

    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        text = str(current)
        if (isinstance(current, OSError) and current.errno == errno.ENOSPC) or "No space left on device" in text \
                or "os error 28" in text:
            return (f"The disk is full: saving to {run_dir.parent} failed (no space left on the device). "
                    "Free some space there, then press Resume: training continues from the last complete "
                    "checkpoint, and the previous LoRA file and checkpoints are intact.")
        current = current.__cause__ or current.__context__
    return None


def _log_traceback(log_path: Path) -> None:
    try:
        log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(log_path, "a", encoding="utf-8") as fh:
            fh.write(traceback.format_exc())
    except OSError:  # pragma: no cover
        pass


def dry_run_command(config_path: Path) -> int:
    from lorastudio.training.plan import TrainingError, describe_plan, make_plan

    try:
        config = load_config(config_path)
        plan = make_plan(config)
    except ConfigError as exc:
        print(f"config error: {exc}", file=sys.stderr)
        return 1
    except TrainingError as exc:
        print(f"{exc.kind} error: {exc.message}", file=sys.stderr)
        return 1
    for line in describe_plan(plan):
        print(line)
    print("dry run: nothing trained")
    return 0


def train_command(config_path: Path, jsonl: bool = False, resume: bool = False, dry_run: bool = False) -> int:
    if dry_run:
        return dry_run_command(config_path)
    return run(config_path, jsonl=jsonl, resume=resume, stop_on_eof=False)


def worker_command(config_path: Path, resume: bool = False) -> int:
    return run(config_path, jsonl=True, resume=resume, stop_on_eof=True)
