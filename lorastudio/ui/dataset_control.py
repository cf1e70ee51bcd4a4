"""The open project's folder, shown: scans (``FolderWatch``) land in the session, the Dataset
tab's grid and the status line; the caption editor's own saves are not mistaken for changes."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import QObject, Signal
from PySide6.QtWidgets import QLabel, QWidget

from lorastudio.dataset.model import Dataset
from lorastudio.project import Project
from lorastudio.session import dataset_summary
from lorastudio.ui.bulk_dialog import BulkCaptionDialog
from lorastudio.ui.message_bar import MessageBar
from lorastudio.ui.dataset_page import DatasetPage
from lorastudio.ui.folder_watch import FolderWatch
from lorastudio.ui.session_signals import SessionSignals
from lorastudio.ui.set_model import SetEntry


class DatasetControl(QObject):
    #: A scan with every image checked is shown.
    loaded = Signal()
    #: A status-bar message (text, milliseconds).
    message = Signal(str, int)

    def __init__(self, signals: SessionSignals, page: DatasetPage, status: QLabel, banner: MessageBar,
                 parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.session = session = signals.session
        self.page = page
        self.editor = page.caption_editor
        self._status = status
        self._banner = banner
        self.folder = FolderWatch(session, self._current_set_files, self)
        self.folder.scanned.connect(self._show)
        self.folder.status.connect(status.setText)
        self.folder.unreadable.connect(banner.show_message)
        self.folder.looked.connect(self.editor.check_disk)
        page.current_set_changed.connect(lambda _name: self.folder.watch_current_set())
        self.editor.saved.connect(self._caption_saved)
        signals.project_changed.connect(self._project_changed)

    def _project_changed(self, project: Project | None) -> None:
        """Another project (or none): nothing of the last one's folder stays on screen."""
        self.editor.set_image_set(None)
        self._banner.hide()
        self.page.set_dataset(None, [])
        self.folder.watch(project.dataset_dir if project is not None else None)

    def rescan(self) -> None:
        self.folder.rescan()

    def look_soon(self) -> None:
        """Check the folder for changes once things settle (the app became active again)."""
        self.folder.look_soon()

    def open_bulk_dialog(self, parent: QWidget, trigger: str, default_caption: str) -> BulkCaptionDialog | None:
        """The bulk caption dialog (non-modal) for the dataset shown; None while none is."""
        if self.session.dataset is None:
            return None
        self.editor.flush()
        dialog = BulkCaptionDialog(self.session.dataset, parent, trigger=trigger, default_caption=default_caption)
        dialog.applied.connect(self._bulk_applied)
        dialog.open()
        return dialog

    def open_draft_dialog(self, parent: QWidget, loader, trigger: str, model: str, caption) -> QWidget | None:
        """"Draft captions…" (non-modal) for the selected set or the sets without a caption;
        ``caption`` is the project's ``[caption]`` table. None while no dataset is shown."""
        if self.session.dataset is None:
            return None
        from lorastudio.ui.caption_dialog import DraftCaptionsDialog

        self.editor.flush()
        dialog = DraftCaptionsDialog(self.session.dataset, loader, parent, selected=self.page.current_name(),
                                     model=model, instruction=caption.instruction, quantization=caption.quantization,
                                     trigger=trigger, max_tokens=caption.max_tokens)
        dialog.caption_written.connect(self._draft_written)
        dialog.open()
        return dialog

    def _draft_written(self, name: str, text: str) -> None:
        self.page.update_caption(name, text)
        self.editor.check_disk()
        self.rescan()

    def _bulk_applied(self, result) -> None:
        self.message.emit(f"Updated {result.written_count} captions", 6000)
        for change in result.written:
            self.page.update_caption(change.set_name, change.new)
        self.editor.check_disk()
        self.rescan()

    def _current_set_files(self) -> list[Path]:
        entry = self.page.current_entry()
        return [] if entry is None else [*entry.image_set.images, entry.image_set.caption_path]

    def _show(self, dataset: Dataset, entries: list[SetEntry], snapshot: dict, final: bool) -> None:
        self._banner.hide()
        self.session.set_dataset(dataset, snapshot)
        self.page.set_dataset(dataset, entries)
        self.folder.watch_current_set()
        self.editor.check_disk()
        self._status.setText(dataset_summary(dataset, final))
        if final:
            self.loaded.emit()

    def _caption_saved(self, name: str, _text: str) -> None:
        if self.session.project is None:
            return
        entry = self.page.current_entry()
        if entry is not None and entry.name == name and entry.image_set.caption_path is not None:
            self.session.note_written(entry.image_set.caption_path)
        self.folder.watch_current_set()
