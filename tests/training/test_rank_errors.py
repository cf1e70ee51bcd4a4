"""How another rank's failure becomes the one ``error`` event of a multi-process run
(``worker.RankErrors``), without processes: the error file, the wait for due checkpoints, and
two threads reporting at once (the watcher and the SIGTERM thread wake together)."""

from __future__ import annotations

import json
import threading

from lorastudio.training.events import EventSink
from lorastudio.training.stop import StopSignal
from lorastudio.training.worker import RankErrors


class _SlowSink(EventSink):
    """Records events; the first ``error`` emit blocks until released."""

    def __init__(self) -> None:
        super().__init__()
        self.order: list[str] = []
        self.emitting, self.release = threading.Event(), threading.Event()

    def _write(self, event: dict) -> None:
        if event["event"] == "error":
            self.emitting.set()
            self.release.wait(30)
            self.order.append("error emitted")


def test_a_thread_that_loses_the_race_returns_only_after_the_error_is_out(tmp_path):
    """Rank 0's watcher and SIGTERM threads both report; the loser exits the process at once.
    It must not get there while the winner is still writing the error event (a CI run lost the
    event that way)."""
    errors = RankErrors(tmp_path, rank=0, world=2)
    sink = _SlowSink()
    winner = threading.Thread(target=errors.report, args=(sink, "crash", "first", "log"))
    winner.start()
    assert sink.emitting.wait(30)

    def lose() -> None:
        returned = errors.report(sink, "crash", "second", "log")
        sink.order.append(f"loser returned {returned}")

    loser = threading.Thread(target=lose)
    loser.start()
    loser.join(0.5)  # without the fix it returns here, before the event is out
    sink.release.set()
    winner.join(30)
    loser.join(30)
    assert sink.order == ["error emitted", "loser returned False"]


def test_the_error_file_names_the_step_and_the_watcher_waits_for_it(tmp_path):
    """Rank 1 failed in step 3, so every rank finished step 2: rank 0's watcher reports only once
    its own loop has begun step 3 (its checkpoint of step 2 is then written)."""
    progress1 = StopSignal()
    progress1.begin_step(3)
    RankErrors(tmp_path, rank=1, world=2, progress=progress1).write("crash", "IndexError: boom", "log1")
    assert json.loads((tmp_path / "error.rank1.json").read_text())["step"] == 3

    progress0 = StopSignal()
    progress0.begin_step(2)
    errors = RankErrors(tmp_path, rank=0, world=2, progress=progress0)
    sink = _SlowSink()
    sink.release.set()
    reporter = threading.Thread(target=errors.report, args=(sink, "crash", "", "log0"),
                                kwargs={"from_watcher": True})
    reporter.start()
    reporter.join(0.5)
    assert sink.order == []  # still waiting for step 3
    progress0.begin_step(3)
    reporter.join(30)
    assert sink.order == ["error emitted"]
