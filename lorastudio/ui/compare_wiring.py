"""Keeps the Test tab in step with the project: the settings' model and run folder, the
dataset's sets and captions, and the LoRA a run just wrote."""

from __future__ import annotations

from lorastudio.dataset.model import Mode
from lorastudio.project import Project
from lorastudio.ui.compare_page import ComparePage
from lorastudio.ui.session_signals import SessionSignals
from lorastudio.ui.settings_form import SettingsForm


class CompareWiring:
    def __init__(self, signals: SessionSignals, form: SettingsForm, page: ComparePage) -> None:
        self.session = signals.session
        self.form = form
        self.page = page
        signals.project_changed.connect(self._project_changed)

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
        self.page.configure(self.form.model_path(), self.session.run_dir,
                            dataset is None or dataset.mode is Mode.PAIRED, dataset.sets if dataset else [],
                            trigger.strip(), default_caption.strip())

    def set_lora(self, path: str) -> None:
        """Test this LoRA (empty: none yet)."""
        self.page.set_lora(path)
        self.update()
