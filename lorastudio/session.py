"""The app's state without Qt or torch: the open project, its dataset, its run, and what the
toolbar may do now.

The window shows this state; it does not own it. Keeping it plain Python (observer lists of
callables instead of Qt signals, like napari's ``ViewerModel`` or Anki's ``pylib``) means the
rules — when Train, Resume, Stop or Close are allowed, when the folder needs a rescan, why
a project cannot be opened — are tested without a window (``tests/test_session.py``).
``lorastudio.ui.session_signals`` re-emits the changes as Qt signals for the widgets.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from lorastudio import run_folder
from lorastudio.config import Config, ConfigError
from lorastudio.dataset.model import Dataset, Mode, Severity
from lorastudio.project import Project

#: What the worker runner reports: no run, launching, training, saving before it stops.
RUN_STATES = ("idle", "starting", "running", "stopping")

#: Name → (mtime_ns, size) of each entry of a folder: what a rescan is decided on.
Snapshot = dict[str, tuple[int, int]]


class Callbacks:
    """An observer list: ``connect`` plain callables; calling the list calls each in order."""

    def __init__(self) -> None:
        self._callbacks: list[Callable] = []

    def connect(self, callback: Callable) -> None:
        self._callbacks.append(callback)

    def disconnect(self, callback: Callable) -> None:
        self._callbacks.remove(callback)

    def __call__(self, *args) -> None:
        for callback in list(self._callbacks):
            callback(*args)


@dataclass(frozen=True)
class Actions:
    """What may be done now; the menus, the toolbar and the run panel's buttons show this."""

    run_state: str = "idle"
    has_project: bool = False
    #: A dataset was read: the bulk caption dialog has something to edit.
    has_dataset: bool = False
    #: The settings name a model folder of a supported family (Train is possible at all).
    model_supported: bool = False
    #: The run folder holds a complete checkpoint and nothing runs (Resume is offered).
    resumable: bool = False

    @property
    def running(self) -> bool:
        return self.run_state != "idle"

    @property
    def can_train(self) -> bool:
        return self.has_project and self.model_supported and not self.running

    @property
    def can_resume(self) -> bool:
        return self.can_train and self.resumable

    @property
    def can_stop(self) -> bool:
        return self.run_state in ("starting", "running")

    @property
    def can_close(self) -> bool:
        return self.has_project and not self.running

    @property
    def can_bulk_edit(self) -> bool:
        return self.has_project and self.has_dataset


class CannotOpen(Exception):
    """A folder or project file that cannot be opened; the message says why, for the artist."""

    def __init__(self, message: str, missing: bool = False) -> None:
        super().__init__(message)
        #: The path does not exist (any "recent" entry for it is stale).
        self.missing = missing


def folder_snapshot(root: Path) -> Snapshot:
    """Name → (mtime_ns, size) of every entry in the folder (cheap: one scandir)."""
    snap = {}
    with os.scandir(root) as it:
        for e in it:
            try:
                st = e.stat()
            except OSError:
                continue
            snap[e.name] = (st.st_mtime_ns, st.st_size)
    return snap


def project_for_path(path: Path, model_path: str = "") -> Project:
    """The project a dataset folder or a project ``.toml`` opens (raises ``CannotOpen``).

    A new project for a folder starts with ``model_path``, the model last used."""
    path = Path(path).expanduser()
    if not path.exists():
        raise CannotOpen(f"Not found: {path}", missing=True)
    try:
        return Project.for_folder(path, model_path=model_path) if path.is_dir() else Project.load(path)
    except (ConfigError, OSError) as exc:
        raise CannotOpen(f"Cannot open {path.name}: {exc}") from exc


def dataset_summary(dataset: Dataset, final: bool) -> str:
    """The status bar's line: sets, mode, and (once images were checked) problems and trainable sets."""
    n = len(dataset.sets)
    parts = [f"{n} set{'s' * (n != 1)}", "paired (before → after)" if dataset.mode is Mode.PAIRED else
             "text-to-image"]
    if not final:
        parts.append("checking images…")
        return " · ".join(parts)
    errors = dataset.error_count
    warnings = sum(p.severity is Severity.WARNING for p in dataset.problems)
    if errors:
        parts.append(f"{errors} error{'s' * (errors != 1)}")
    if warnings:
        parts.append(f"{warnings} warning{'s' * (warnings != 1)}")
    parts.append(f"{len(dataset.trainable_sets())} trainable")
    return " · ".join(parts)


class Session:
    """The open project (or none), the dataset last read from its folder, and its run.

    Observers: ``project_changed(project | None)``, ``dataset_changed(dataset | None)``,
    ``run_state_changed(state)`` and ``actions_changed(Actions)``; every change that can alter
    what may be done ends with ``actions_changed``.
    """

    def __init__(self) -> None:
        self.project: Project | None = None
        self.dataset: Dataset | None = None
        self.run_state = "idle"
        #: The folder's listing when it was last read (plus our own caption writes since).
        self.snapshot: Snapshot = {}
        #: The settings as edited now, when they are valid (else the project's saved ones count).
        self.settings: Config | None = None
        self.model_supported = False
        self.project_changed = Callbacks()
        self.dataset_changed = Callbacks()
        self.run_state_changed = Callbacks()
        self.actions_changed = Callbacks()

    # -- project ----------------------------------------------------------------------------

    def open(self, project: Project) -> None:
        """Make ``project`` the open one (its dataset is read afterwards: ``set_dataset``)."""
        if self.running:
            raise CannotOpen("Stop the training before opening another project.")
        self.project = project
        self.dataset = None
        self.snapshot = {}
        self.settings = None
        self.model_supported = False
        self.project_changed(project)
        self.refresh()

    def close(self) -> None:
        if self.running:
            raise CannotOpen("Stop the training before closing the project.")
        self.project = None
        self.dataset = None
        self.snapshot = {}
        self.settings = None
        self.model_supported = False
        self.project_changed(None)
        self.refresh()

    def set_settings(self, config: Config | None, model_supported: bool) -> None:
        """The form's settings (None while they are not valid) and whether its model folder is usable."""
        self.settings = config
        self.model_supported = model_supported
        self.refresh()

    @property
    def config(self) -> Config | None:
        """The settings a run would use: the edited ones when valid, else the project's."""
        if self.settings is not None:
            return self.settings
        return self.project.config if self.project is not None else None

    @property
    def run_dir(self) -> Path | None:
        config = self.config
        return config.output.run_dir if config is not None else None

    # -- dataset ----------------------------------------------------------------------------

    def set_dataset(self, dataset: Dataset, snapshot: Snapshot) -> None:
        """A scan of the open project's folder finished (``snapshot`` taken just before it)."""
        self.dataset = dataset
        self.snapshot = dict(snapshot)
        self.dataset_changed(dataset)
        self.refresh()

    def folder_changed(self, snapshot: Snapshot) -> bool:
        """Whether the folder's listing differs from the last scan (so it should be read again)."""
        return snapshot != self.snapshot

    def note_written(self, path: Path) -> None:
        """We wrote ``path`` ourselves (a caption save): not a change that needs a rescan."""
        try:
            st = path.stat()
        except OSError:
            return
        self.snapshot[path.name] = (st.st_mtime_ns, st.st_size)

    def training_blocker(self) -> str | None:
        """Why training cannot start with this dataset (None when it can)."""
        if self.dataset is not None and not self.dataset.trainable_sets():
            return "No set can be trained yet."
        return None

    # -- run --------------------------------------------------------------------------------

    @property
    def running(self) -> bool:
        return self.run_state != "idle"

    def set_run_state(self, state: str) -> None:
        if state not in RUN_STATES:
            raise ValueError(f"unknown run state {state!r}")
        changed = state != self.run_state
        self.run_state = state
        if changed:
            self.run_state_changed(state)
        self.refresh()

    # -- what may be done -------------------------------------------------------------------

    def actions(self) -> Actions:
        has_project = self.project is not None
        run_dir = self.run_dir
        return Actions(run_state=self.run_state, has_project=has_project, has_dataset=self.dataset is not None,
                       model_supported=has_project and self.model_supported,
                       resumable=(has_project and not self.running and run_dir is not None
                                  and run_folder.has_checkpoint(run_dir)))

    def refresh(self) -> None:
        """Tell the observers what may be done now (call after the run folder may have changed)."""
        self.actions_changed(self.actions())
