"""Keeps the Test tab in step with the project: the settings' model and run folder, the
dataset's sets and captions (held-out ones first in the grid), the run's final and best LoRA
and kept checkpoints, and the LoRA a run just wrote."""

from __future__ import annotations

from lorastudio.dataset.model import Mode
from lorastudio.project import Project
from lorastudio.ui.checkpoint_choice import lora_choices
from lorastudio.ui.run_control import RunControl
from lorastudio.ui.session_signals import SessionSignals
from lorastudio.ui.workspace import Workspace


class CompareWiring:
    def __init__(self, signals: SessionSignals, workspace: Workspace, runs: RunControl) -> None:
        self.session = signals.session
        self.form = workspace.training_page.form
        self.page = workspace.compare_page
        self._tabs = workspace.tabs
        signals.project_changed.connect(self._project_changed)
        signals.dataset_changed.connect(lambda _dataset: self.update())
        runs.finished.connect(self._run_finished)
        workspace.training_page.run.test_clicked.connect(self._test_clicked)
        workspace.tabs.currentChanged.connect(self._tab_changed)  # checkpoints kept since

    def _tab_changed(self, _index: int) -> None:
        if self._tabs.currentWidget() is self.page:
            self.update()

    def _run_finished(self, lora: str) -> None:
        if lora:
            self.set_lora(lora)
        else:
            self.update()

    def _test_clicked(self, lora: str) -> None:
        self.set_lora(lora)
        self._tabs.setCurrentWidget(self.page)

    def _project_changed(self, project: Project | None) -> None:
        if project is not None:  # the LoRA an earlier run left, if any
            lora = project.config.output.lora_path
            self.page.set_lora(str(lora) if lora.is_file() else "")

    def update(self) -> None:
        """The Test tab uses the settings' model and run folder, and the dataset's sets."""
        if self.session.project is None:
            return
        dataset = self.session.dataset
        trigger, default_caption = self.form.caption_context()
        run_dir = self.session.run_dir
        self.page.configure(self.form.model_path(), run_dir,
                            dataset is None or dataset.mode is Mode.PAIRED, dataset.sets if dataset else [],
                            trigger.strip(), default_caption.strip(),
                            self.form.values().input_size)  # inputs sized as the settings train them
        config = self.session.config
        if config is None or self.page.is_running():
            return
        self.page.set_choices(lora_choices(run_dir, config.output.lora_path, config.output.best_lora_path))
        if not self.page.grid_panel.is_running():
            names = [s.name for s in dataset.trainable_sets()] if dataset else []
            self.page.grid_panel.configure(run_dir, names, config.dataset.validation)

    def set_lora(self, path: str) -> None:
        """Test this LoRA (empty: none yet)."""
        self.page.set_lora(path)
        self.update()
