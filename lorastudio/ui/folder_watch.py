"""Reading the open project's folder off the UI thread, and noticing when it changes.

Folder scans run on the asyncio loop that qasync drives from the Qt event loop: the scan
itself goes to an executor thread and the coroutine resumes on the UI thread with the
result, so opening or rescanning 2,000 sets never freezes the window. A
``QFileSystemWatcher`` on the folder (and on the selected set's files: in-place edits don't
touch the folder's mtime) triggers a cheap snapshot; only a snapshot that differs from the
last scan's (``Session.folder_changed``) leads to a rescan.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Callable

import shiboken6
from PySide6.QtCore import QFileSystemWatcher, QObject, QTimer, Signal

from qasync import asyncSlot  # noqa: E402  (PySide6 is imported above, so qasync binds to it)

from lorastudio.dataset.model import Dataset
from lorastudio.session import Session, Snapshot, folder_snapshot
from lorastudio.ui.set_model import SetEntry, make_entries


def scan_job(root: Path, check_images: bool) -> tuple[Dataset, list[SetEntry], Snapshot]:
    """Runs in an executor thread: snapshot first (a change during the scan is seen next time)."""
    from lorastudio.dataset import scan_dataset

    snapshot = folder_snapshot(root)
    dataset = scan_dataset(root, check_images=check_images)
    return dataset, make_entries(dataset), snapshot


class FolderWatch(QObject):
    """Scans (coalesced: one at a time, the latest wins) and watches the session's project folder."""

    #: A scan finished: dataset, its grid entries, the snapshot taken before it, and whether
    #: images were checked (a first scan by names only comes first, then the full one).
    scanned = Signal(object, object, object, bool)
    #: One line for the status bar: "Reading folder…", "Folder unavailable".
    status = Signal(str)
    #: The folder cannot be read (a message for the banner).
    unreadable = Signal(str)
    #: The folder was looked at after a change notice (files shown may have changed on disk).
    looked = Signal()

    def __init__(self, session: Session, watched_files: Callable[[], list[Path]], parent: QObject | None = None,
                 settle_ms: int = 400) -> None:
        super().__init__(parent)
        self.session = session
        self._watched_files = watched_files
        self._scan_task: asyncio.Task | None = None
        self._check_task: asyncio.Task | None = None
        self._scan_again = False
        self.watcher = QFileSystemWatcher(self)
        self.watcher.directoryChanged.connect(self._touched)
        self.watcher.fileChanged.connect(self._touched)
        self._timer = QTimer(self)
        self._timer.setSingleShot(True)
        self._timer.setInterval(settle_ms)
        self._timer.timeout.connect(self.check_for_changes)

    # -- scanning ---------------------------------------------------------------------------

    def rescan(self) -> None:
        """Scan the project folder again (coalesced: one scan at a time, the latest wins)."""
        if self.session.project is None:
            return
        if self._scan_task is not None and not self._scan_task.done():
            self._scan_again = True
            return
        self._scan_task = self._scan()

    @asyncSlot()
    async def _scan(self) -> None:
        loop = asyncio.get_event_loop()
        session = self.session
        while session.project is not None:
            self._scan_again = False
            project = session.project
            root = project.dataset_dir
            self.status.emit("Reading folder…")
            first = session.dataset is None
            try:
                # A first look by names only shows the grid at once; then the full check.
                for check_images in ((False, True) if first else (True,)):
                    dataset, entries, snapshot = await loop.run_in_executor(None, scan_job, root, check_images)
                    if self._gone():
                        return
                    if session.project is not project:
                        break  # another project was opened meanwhile: scan that one instead
                    self.scanned.emit(dataset, entries, snapshot, check_images)
            except OSError as exc:
                if self._gone():
                    return
                if session.project is project:
                    self.unreadable.emit(f"Cannot read the dataset folder {root}: {exc.strerror or exc}")
                    self.status.emit("Folder unavailable")
            if session.project is not project:
                continue
            if not self._scan_again:
                return

    def _gone(self) -> bool:
        """The watch was deleted (its window closed) while a scan or look ran in the executor: the
        coroutine resumes afterwards, and emitting from a deleted object raises."""
        return not shiboken6.isValid(self)

    # -- watching ---------------------------------------------------------------------------

    def watch(self, folder: Path | None) -> None:
        """Watch ``folder`` (None: nothing)."""
        paths = self.watcher.directories() + self.watcher.files()
        if paths:
            self.watcher.removePaths(paths)
        if folder is not None and folder.is_dir():
            self.watcher.addPath(str(folder))

    def watch_current_set(self) -> None:
        """Also watch the selected set's files: in-place edits don't touch the folder's mtime."""
        files = self.watcher.files()
        if files:
            self.watcher.removePaths(files)
        wanted = [str(p) for p in self._watched_files() if p.exists()]
        if wanted:
            self.watcher.addPaths(wanted)

    def look_soon(self) -> None:
        """Check the folder once things settle (after a change notice, or when the app is active again)."""
        if self.session.project is not None:
            self._timer.start()

    def _touched(self, _path: str) -> None:
        self._timer.start()

    def check_for_changes(self) -> None:
        """Rescan if the folder's listing differs from the last scan (our own caption saves excluded)."""
        if self.session.project is None:
            return
        self._check_task = self._check()

    @asyncSlot()
    async def _check(self) -> None:
        session = self.session
        project = session.project
        if project is None:
            return
        loop = asyncio.get_event_loop()
        try:
            snapshot = await loop.run_in_executor(None, folder_snapshot, project.dataset_dir)
        except OSError:
            if not self._gone() and session.project is project:
                self.unreadable.emit(f"The dataset folder {project.dataset_dir} is no longer available.")
            return
        if self._gone() or session.project is not project:
            return
        self.looked.emit()
        if session.folder_changed(snapshot):
            self.rescan()
        else:
            self.watch_current_set()
