"""Keeps the Test tab in step with the project: the settings' model and run folder, the
dataset's sets and captions, and the LoRA a run just wrote."""

from __future__ import annotations

from lorastudio.dataset.model import Mode
from lorastudio.session import Session
from lorastudio.ui.compare_page import ComparePage
from lorastudio.ui.settings_form import SettingsForm


class CompareWiring:
    def __init__(self, session: Session, form: SettingsForm, page: ComparePage) -> None:
        self.session = session
        self.form = form
        self.page = page

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
