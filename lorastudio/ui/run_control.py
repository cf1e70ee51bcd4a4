"""One training run at a time: starting and stopping the worker, and routing its events.

``WorkerRunner`` turns the worker's JSON lines into signals; this object wires them to the
run panel and the session (whose run state decides what the toolbar allows), adds what only
the open dataset knows (a sample's input images and target), and stops the worker when the
app quits.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Callable

from PySide6.QtCore import QObject, Signal
from PySide6.QtWidgets import QApplication, QLabel

from lorastudio.ui.runner import WorkerRunner
from lorastudio.ui.session_signals import SessionSignals
from lorastudio.ui.workspace import Workspace


class RunControl(QObject):
    #: A run ended: the LoRA file ("" when it stopped before writing one).
    finished = Signal(str)
    #: A status-bar message (text, milliseconds).
    message = Signal(str, int)
    #: Something happened that the artist should look at (the window asks for attention).
    attention = Signal()

    def __init__(self, signals: SessionSignals, runner: WorkerRunner, workspace: Workspace, status: QLabel,
                 parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.session = session = signals.session
        self.runner = runner
        self.workspace = workspace
        self.form = workspace.training_page.form
        self.panel = panel = workspace.training_page.run
        self._status = status
        r = runner
        panel.follow(r)
        r.progress.connect(self._progress_status)
        r.sample.connect(self._on_sample)
        r.checkpoint.connect(lambda _e: session.refresh())  # Resume may be possible now
        r.finished.connect(self._on_finished)
        r.failed.connect(self._on_failed)
        r.state_changed.connect(session.set_run_state)
        signals.run_state_changed.connect(self._show_state)
        signals.project_changed.connect(self._project_changed)

    def start(self, resume: bool, save_project: Callable[[], bool]) -> bool:
        """Start the worker on the saved project (the settings were checked already)."""
        info = self.form.model_info
        if not info.supported:
            self._show_page()
            self.form.show_error(info.message)
            return False
        blocker = self.session.training_blocker()
        if blocker:
            self.panel.on_failed({"message": blocker, "kind": "data"})
            self._show_page()
            return False
        if not save_project():
            return False
        project = self.session.project
        assert project is not None and project.path is not None
        self.panel.begin(resume)
        self._show_page()
        self.runner.start_training(project.path, resume=resume)
        return True

    def _show_page(self) -> None:
        self.workspace.tabs.setCurrentWidget(self.workspace.training_page)

    def stop(self) -> None:
        if self.runner.is_running():
            self.runner.stop()

    def shutdown(self) -> None:
        """Stop the worker gracefully, and end it if it lingers (the app is quitting)."""
        runner = self.runner
        if not runner.is_running():
            return
        runner.stop()
        deadline = time.monotonic() + runner.kill_timeout + 3
        while runner.is_running() and time.monotonic() < deadline:
            QApplication.processEvents()
            time.sleep(0.02)
        if runner.is_running():
            runner.kill()
            runner.wait(3)

    # -- events -----------------------------------------------------------------------------

    def _project_changed(self, project) -> None:
        if project is not None:
            self.panel.reset()  # no curve, samples or message from the last project's run

    def _show_state(self, state: str) -> None:
        running = state != "idle"
        self.form.set_enabled_for_run(running)  # settings are locked while training
        self.workspace.set_running(running)
        self._status.setText({"idle": "", "stopping": "Stopping…"}.get(state, "Training…"))

    def _progress_status(self, e: dict) -> None:
        self._status.setText(f"Training {e.get('step', 0):,} / {e.get('total', 0):,}")

    def _on_sample(self, e: dict) -> None:
        inputs: tuple[Path, ...] = ()
        dataset = self.session.dataset
        if dataset is not None:
            s = dataset.set_by_name(str(e.get("set", "")))
            if s is not None:
                inputs = tuple(s.inputs)
                if not e.get("target") and s.target is not None:
                    e = {**e, "target": str(s.target)}
        self.panel.on_sample(e, inputs)

    def _on_finished(self, e: dict) -> None:
        self.panel.on_finished(e)
        lora = str(e.get("lora") or "")
        self.finished.emit(lora)
        self.session.refresh()
        if lora:
            self.message.emit(f"LoRA saved: {lora}", 10000)
        else:
            self.message.emit("Training stopped before the first step: no LoRA was written", 10000)
        self.attention.emit()

    def _on_failed(self, e: dict) -> None:
        self.panel.on_failed(e)
        self.session.refresh()
        self.attention.emit()

