"""The folder watch's scans and looks run in an executor thread and resume on the UI thread: one
that resumes after its window closed (the watch deleted with it) ends quietly. A CI run once
failed a GUI test with "Signal source has been deleted" from a look that outlived its window."""

from __future__ import annotations

import threading

import shiboken6

from lorastudio.project import Project
from lorastudio.session import Session
from lorastudio.ui import folder_watch
from lorastudio.ui.folder_watch import FolderWatch

from .conftest import make_dataset


def _held(monkeypatch, name: str):
    """Hold ``folder_watch.<name>`` (run in the executor) until released; (started, release)."""
    started, release = threading.Event(), threading.Event()
    real = getattr(folder_watch, name)

    def held(*args):
        started.set()
        release.wait(10)
        return real(*args)

    monkeypatch.setattr(folder_watch, name, held)
    return started, release


def _open(tmp_path) -> Session:
    session = Session()
    session.open(Project.for_folder(make_dataset(tmp_path / "data", sets=2)))
    return session


def test_a_look_that_ends_after_its_window_closed_emits_nothing(qtbot, tmp_path, monkeypatch):
    started, release = _held(monkeypatch, "folder_snapshot")
    watch = FolderWatch(_open(tmp_path), lambda: [])
    looked: list[int] = []
    watch.looked.connect(lambda: looked.append(1))
    watch.check_for_changes()
    task = watch._check_task
    qtbot.waitUntil(started.is_set, timeout=10000)
    shiboken6.delete(watch)  # its window closed while the snapshot was being taken
    release.set()
    qtbot.waitUntil(task.done, timeout=10000)
    assert task.exception() is None and looked == []


def test_a_scan_that_ends_after_its_window_closed_emits_nothing(qtbot, tmp_path, monkeypatch):
    started, release = _held(monkeypatch, "scan_job")
    watch = FolderWatch(_open(tmp_path), lambda: [])
    scanned: list[object] = []
    watch.scanned.connect(lambda *args: scanned.append(args))
    watch.rescan()
    task = watch._scan_task
    qtbot.waitUntil(started.is_set, timeout=10000)
    shiboken6.delete(watch)
    release.set()
    qtbot.waitUntil(task.done, timeout=10000)
    assert task.exception() is None and scanned == []
