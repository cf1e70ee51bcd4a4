""""Draft captions…": a local vision-language model proposes captions; the artist decides.

The dialog picks the model folder (checked at once, torch-free, with what each quantization
needs in GPU memory), the instruction and the sets; Start runs the drafting worker
(:class:`~lorastudio.ui.caption_drafts.DraftSession`), Cancel stops it. Each draft appears
beside its images as it arrives, in an editable box, with Accept and Reject. A set that
already has a caption shows it, and its button reads "Replace caption": an existing caption
is never replaced without that explicit choice.
"""

from __future__ import annotations

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (QButtonGroup, QComboBox, QDialog, QFileDialog, QFormLayout, QFrame, QHBoxLayout,
                               QLabel, QLineEdit, QPlainTextEdit, QProgressBar, QPushButton, QRadioButton,
                               QScrollArea, QVBoxLayout, QWidget)

from lorastudio.dataset.captions import has_caption
from lorastudio.dataset.model import Dataset, Mode
from lorastudio.drafting import DEFAULT_MAX_TOKENS, QUANTIZATION_LABELS, QUANTIZATIONS, default_instruction, memory_needed
from lorastudio.estimate import format_gib
from lorastudio.ui import theme
from lorastudio.ui.caption_drafts import DraftSession
from lorastudio.ui.image_strip import ImageStrip, StripItem
from lorastudio.ui.thumbnails import ThumbnailLoader
from lorastudio.vl_folder import VLFolder, VLFolderError, detect_vl_folder


class DraftRow(QFrame):
    """One set's draft: its images, the draft (editable), the caption it has, Accept / Reject."""

    def __init__(self, session: DraftSession, name: str, loader: ThumbnailLoader, parent: QWidget | None = None):
        super().__init__(parent)
        self.session, self.name = session, name
        draft = session.drafts[name]
        image_set = session.dataset.set_by_name(name)
        self.setFrameShape(QFrame.Shape.StyledPanel)
        layout = QHBoxLayout(self)
        self.strip = ImageStrip(loader, self, box=256)
        self.strip.setMinimumHeight(130)
        self.strip.setFixedWidth(360)
        items = [StripItem(f"input {i + 1}" if len(image_set.inputs) > 1 else "input", p)
                 for i, p in enumerate(image_set.inputs)]
        items.append(StripItem("result" if image_set.inputs else "image", image_set.target,
                               arrow_before=bool(image_set.inputs)))
        self.strip.set_items(items)
        layout.addWidget(self.strip)
        right = QVBoxLayout()
        title = QLabel(f"<b>{name}</b>")
        right.addWidget(title)
        self.text = QPlainTextEdit(draft.text)
        self.text.setToolTip("The draft: edit it before accepting if you like")
        self.text.setMaximumHeight(70)
        right.addWidget(self.text)
        self.existing = QLabel("")
        self.existing.setWordWrap(True)
        theme.set_role(self.existing, "muted")
        right.addWidget(self.existing)
        buttons = QHBoxLayout()
        self.accept_button = QPushButton("Accept")
        self.accept_button.clicked.connect(self._accept)
        self.reject_button = QPushButton("Reject")
        self.reject_button.clicked.connect(self._reject)
        self.note = QLabel("")
        self.note.setWordWrap(True)
        buttons.addWidget(self.accept_button)
        buttons.addWidget(self.reject_button)
        buttons.addWidget(self.note, 1)
        right.addLayout(buttons)
        layout.addLayout(right, 1)
        self._show_existing()

    def _show_existing(self) -> None:
        existing = self.session.drafts[self.name].existing
        if existing is None:
            self.existing.setText("No caption yet.")
            self.accept_button.setText("Accept")
        else:
            self.existing.setText(f"Current caption: “{existing}”")
            self.accept_button.setText("Replace caption")
            self.accept_button.setToolTip("Overwrite the current caption with the draft")

    def _accept(self) -> None:
        draft = self.session.drafts[self.name]
        error = self.session.accept(self.name, self.text.toPlainText(), replace=draft.existing is not None)
        if error:
            self.note.setText(error)
            theme.set_role(self.note, "error")
            self._show_existing()
            return
        self._decided("Written.")

    def _reject(self) -> None:
        self.session.reject(self.name)
        self._decided("Rejected: the caption file is unchanged.")

    def _decided(self, note: str) -> None:
        self.note.setText(note)
        theme.set_role(self.note, "muted")
        for w in (self.accept_button, self.reject_button, self.text):
            w.setEnabled(False)


class DraftCaptionsDialog(QDialog):
    """Non-modal (``open()``); closing it while drafting cancels the run."""

    #: A caption was written (set name, text): the main window refreshes the set.
    caption_written = Signal(str, str)

    def __init__(self, dataset: Dataset, loader: ThumbnailLoader, parent: QWidget | None = None, selected: str = "",
                 model: str = "", instruction: str = "", quantization: str = "none", trigger: str = "",
                 max_tokens: int = DEFAULT_MAX_TOKENS) -> None:
        super().__init__(parent)
        self.setWindowTitle("Draft captions")
        self.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        self.resize(900, 680)
        self.dataset, self.loader, self.trigger, self.max_tokens = dataset, loader, trigger, max_tokens
        self.paired = dataset.mode is Mode.PAIRED
        self.session = DraftSession(dataset, self)
        self.session.draft_added.connect(self._add_row)
        self.session.progress.connect(self._progress)
        self.session.status.connect(self._status)
        self.session.finished.connect(self._finished)
        self.session.failed.connect(self._failed)
        self.session.running_changed.connect(self._update_buttons)
        self.session.written.connect(self.caption_written)
        self.rows: dict[str, DraftRow] = {}
        self.folder: VLFolder | None = None

        layout = QVBoxLayout(self)
        form = QFormLayout()
        model_row = QHBoxLayout()
        self.model_edit = QLineEdit(model)
        self.model_edit.setPlaceholderText("A Qwen2.5-VL / Qwen3-VL folder, or a Qwen-Image-Edit(-Plus) folder")
        self.model_edit.textChanged.connect(self._check_model)
        browse = QPushButton("Browse…")
        browse.clicked.connect(self._browse)
        model_row.addWidget(self.model_edit, 1)
        model_row.addWidget(browse)
        form.addRow("Model folder", model_row)
        self.model_info = QLabel("")
        self.model_info.setWordWrap(True)
        form.addRow("", self.model_info)
        self.instruction = QPlainTextEdit(instruction or default_instruction(self.paired))
        self.instruction.setMaximumHeight(90)
        form.addRow("Instruction", self.instruction)
        self.quantization = QComboBox()
        for q in QUANTIZATIONS:
            self.quantization.addItem(QUANTIZATION_LABELS[q], q)
        self.quantization.setCurrentIndex(max(0, QUANTIZATIONS.index(quantization) if quantization in QUANTIZATIONS
                                              else 0))
        self.quantization.currentIndexChanged.connect(self._update_memory)
        self.memory = QLabel("")
        theme.set_role(self.memory, "muted")
        quant_row = QHBoxLayout()
        quant_row.addWidget(self.quantization)
        quant_row.addWidget(self.memory, 1)
        form.addRow("Load as", quant_row)
        self.scope_selected = QRadioButton()
        self.scope_missing = QRadioButton()
        self.scope = QButtonGroup(self)
        self.scope.addButton(self.scope_selected)
        self.scope.addButton(self.scope_missing)
        self.selected = selected if dataset.set_by_name(selected) else ""
        missing = [s.name for s in dataset.trainable_sets() if not has_caption(s)]
        self.scope_selected.setText(f"The selected set ({self.selected})" if self.selected else "The selected set")
        self.scope_selected.setEnabled(bool(self.selected))
        self.scope_missing.setText(f"All sets without a caption ({len(missing)})")
        self.scope_missing.setEnabled(bool(missing))
        (self.scope_missing if missing or not self.selected else self.scope_selected).setChecked(True)
        scope_box = QVBoxLayout()
        scope_box.addWidget(self.scope_selected)
        scope_box.addWidget(self.scope_missing)
        form.addRow("Sets", scope_box)
        layout.addLayout(form)

        bar = QHBoxLayout()
        self.start_button = QPushButton("Start")
        self.start_button.clicked.connect(self.start)
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.clicked.connect(self.session.cancel)
        self.progress_bar = QProgressBar()
        self.progress_bar.setRange(0, 1)
        self.progress_bar.setValue(0)
        bar.addWidget(self.start_button)
        bar.addWidget(self.cancel_button)
        bar.addWidget(self.progress_bar, 1)
        layout.addLayout(bar)
        self.status_label = QLabel("Drafts appear here as they are made; nothing is written until you accept one.")
        self.status_label.setWordWrap(True)
        theme.set_role(self.status_label, "muted")
        layout.addWidget(self.status_label)

        self.rows_widget = QWidget()
        self.rows_layout = QVBoxLayout(self.rows_widget)
        self.rows_layout.addStretch(1)
        scroll = QScrollArea()
        scroll.setWidgetResizable(True)
        scroll.setWidget(self.rows_widget)
        layout.addWidget(scroll, 1)
        close = QPushButton("Close")
        close.clicked.connect(self.close)
        layout.addWidget(close, 0, Qt.AlignmentFlag.AlignRight)
        self._check_model()

    # -- settings ---------------------------------------------------------------------------

    def _browse(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Vision-language model folder", self.model_edit.text())
        if folder:
            self.model_edit.setText(folder)

    def _check_model(self) -> None:
        path = self.model_edit.text().strip()
        self.folder = None
        if not path:
            self.model_info.setText("Choose a local folder: nothing is downloaded.")
            theme.set_role(self.model_info, "muted")
        else:
            try:
                self.folder = detect_vl_folder(path)
                self.model_info.setText(self.folder.describe())
                theme.set_role(self.model_info, "muted")
            except VLFolderError as exc:
                self.model_info.setText(str(exc))
                theme.set_role(self.model_info, "error")
        self._update_memory()
        self._update_buttons()

    def _update_memory(self) -> None:
        if self.folder is None:
            self.memory.setText("")
            return
        q = self.quantization.currentData()
        self.memory.setText(f"needs ≈ {format_gib(memory_needed(self.folder, q))} of GPU memory "
                            "(on a computer without a GPU it runs on the CPU: slow)")

    def _update_buttons(self, *_args) -> None:
        running = self.session.is_running()
        self.start_button.setEnabled(not running and self.folder is not None)
        self.cancel_button.setEnabled(running)

    # -- running ----------------------------------------------------------------------------

    def chosen_names(self) -> list[str] | None:
        """The selected set, or None for "every set without a caption"."""
        return [self.selected] if self.scope_selected.isChecked() else None

    def start(self) -> None:
        if self.folder is None or self.session.is_running():
            return
        self.progress_bar.setRange(0, 0)  # busy until the first set starts
        self.status_label.setText("Loading the model…")
        self.session.start(str(self.folder.root), self.chosen_names(), self.instruction.toPlainText(),
                           self.quantization.currentData(), self.trigger, self.max_tokens)

    def _progress(self, current: int, total: int, message: str) -> None:
        self.progress_bar.setRange(0, total)
        self.progress_bar.setValue(current)
        self.status_label.setText(f"{message} ({current + 1} of {total})")

    def _status(self, message: str, warning: bool) -> None:
        self.status_label.setText(message)
        theme.set_role(self.status_label, "warning" if warning else "muted")

    def _add_row(self, name: str) -> None:
        old = self.rows.pop(name, None)
        if old is not None:
            old.deleteLater()
        row = DraftRow(self.session, name, self.loader, self.rows_widget)
        self.rows[name] = row
        self.rows_layout.insertWidget(self.rows_layout.count() - 1, row)

    def _finished(self, drafted: int, stopped: bool) -> None:
        self.progress_bar.setRange(0, 1)
        self.progress_bar.setValue(1)
        how = "Cancelled" if stopped else "Done"
        self.status_label.setText(f"{how}: {drafted} draft(s). Accept, edit or reject each one below.")
        theme.set_role(self.status_label, "muted")

    def _failed(self, message: str) -> None:
        self.progress_bar.setRange(0, 1)
        self.progress_bar.setValue(0)
        self.status_label.setText(message)
        theme.set_role(self.status_label, "error")

    def closeEvent(self, event) -> None:  # noqa: N802 (Qt)
        """Closing cancels a run; the session outlives the dialog until its worker has exited
        (a QThread must not be destroyed while it runs), then deletes itself."""
        if self.session.is_running():
            session = self.session
            session.setParent(self.parent())
            session.runner.state_changed.connect(lambda state: session.deleteLater() if state == "idle" else None)
            session.cancel()
        super().closeEvent(event)
