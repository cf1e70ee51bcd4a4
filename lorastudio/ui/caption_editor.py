"""The caption editor: a plain-text editor that saves by itself and never loses a keystroke.

Typing starts a short timer (``delay_ms``, 500 ms); when it fires the caption is written
atomically through the dataset core (``write_caption``). A pause is not needed, though: a
second timer (``max_delay_ms``, 1 s), started by the first unsaved keystroke and *not*
restarted by the next ones, saves during continuous typing too. Leaving the editor,
switching to another set and quitting flush at once, so the worst a crash can cost is the
last second of typing.

What is on disk is compared with what was loaded (inode, mtime, size, then text) before every
write; the inode counts because every save replaces the file (atomic rename), so another
window's save is seen even on a file system with coarse timestamps. If another program changed the file meanwhile, nothing is written: a bar offers
*Reload* (take theirs) or *Keep mine* (write ours). An unedited caption that changes on disk
is simply reloaded. The file is never overwritten silently.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from PySide6.QtCore import QEvent, QObject, Qt, QTimer, Signal
from PySide6.QtGui import QTextCursor
from PySide6.QtWidgets import QHBoxLayout, QLabel, QPlainTextEdit, QVBoxLayout, QWidget

from lorastudio.dataset import effective_caption, read_caption, write_caption
from lorastudio.dataset.captions import normalize_caption
from lorastudio.dataset.model import ImageSet
from lorastudio.ui import theme
from lorastudio.ui.message_bar import MessageBar


@dataclass(frozen=True)
class DiskState:
    exists: bool
    mtime_ns: int = 0
    size: int = 0
    #: The file's identity: an atomic save (temp file + rename) always makes a new one.
    inode: int = 0


def disk_state(path: Path) -> DiskState:
    try:
        st = os.stat(path)
    except OSError:
        return DiskState(False)
    return DiskState(True, st.st_mtime_ns, st.st_size, st.st_ino)


def read_disk_caption(path: Path) -> str | None:
    """The caption on disk (None when there is no file), read through the dataset core."""
    try:
        return read_caption(path)
    except FileNotFoundError:
        return None


def write_disk_caption(path: Path, text: str) -> None:
    write_caption(path, text)


class CaptionEditor(QWidget):
    #: A caption was written: (set name, text).
    saved = Signal(str, str)
    #: The state line changed (for tests and the status bar).
    state_changed = Signal(str)

    def __init__(self, parent: QWidget | None = None, delay_ms: int = 500, max_delay_ms: int = 1000) -> None:
        super().__init__(parent)
        self._set: ImageSet | None = None
        self._path: Path | None = None
        self._disk_text: str | None = None
        self._disk: DiskState = DiskState(False)
        self._conflict = False
        self._loading = False
        self._state = ""
        #: Edits that could not be saved when their set was left: path → (text, the disk text
        #: they were based on). Restored when the set is shown again.
        self._held: dict[Path, tuple[str, str | None]] = {}
        self._trigger = ""
        self._default = ""

        self._timer = QTimer(self)
        self._timer.setSingleShot(True)
        self._timer.setInterval(delay_ms)
        self._timer.timeout.connect(self.flush)
        #: Saves during continuous typing: started by the first unsaved keystroke, never
        #: restarted, so no edit stays unsaved longer than this.
        self._max_timer = QTimer(self)
        self._max_timer.setSingleShot(True)
        self._max_timer.setInterval(max(delay_ms, max_delay_ms))
        self._max_timer.timeout.connect(self.flush)

        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(6)

        head = QHBoxLayout()
        self.title = QLabel("Caption")
        theme.set_role(self.title, "heading")
        self.state_label = QLabel("")
        theme.set_role(self.state_label, "muted")
        head.addWidget(self.title)
        head.addStretch(1)
        head.addWidget(self.state_label)
        layout.addLayout(head)

        self.conflict_bar = MessageBar("warning", self)
        self.conflict_bar.add_button("Reload", self.reload_from_disk,
                                     "Replace your text with the version on disk (Undo brings yours back)")
        self.conflict_bar.add_button("Keep mine", self.keep_mine, "Overwrite the file on disk with your text")
        layout.addWidget(self.conflict_bar)

        self.error_bar = MessageBar("error", self)
        self.error_bar.add_button("Retry", self.flush)
        layout.addWidget(self.error_bar)

        self.edit = QPlainTextEdit(self)
        self.edit.setObjectName("captionEdit")
        self.edit.setPlaceholderText("Describe the edit, e.g. “Remove the background and keep the subject”.\n"
                                     "Optional: sets without a caption use the default caption.")
        self.edit.setTabChangesFocus(True)
        self.edit.setToolTip("The caption for this set (saved automatically as NAME.txt beside the images).")
        self.edit.textChanged.connect(self._text_changed)
        self.edit.installEventFilter(self)
        self.edit.setEnabled(False)
        layout.addWidget(self.edit, 1)

        self.hint = QLabel("")
        theme.set_role(self.hint, "muted")
        self.hint.setWordWrap(True)
        self.hint.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        layout.addWidget(self.hint)

    # -- public ---------------------------------------------------------------------------

    @property
    def image_set(self) -> ImageSet | None:
        return self._set

    @property
    def path(self) -> Path | None:
        return self._path

    @property
    def delay_ms(self) -> int:
        return self._timer.interval()

    def text(self) -> str:
        return self.edit.toPlainText()

    def is_dirty(self) -> bool:
        if self._path is None:
            return False
        return normalize_caption(self.text()) != (self._disk_text or "")

    def has_conflict(self) -> bool:
        return self._conflict

    def has_unsaved(self) -> bool:
        return self.is_dirty() or bool(self._held)

    def state(self) -> str:
        return self._state

    def set_paired(self, paired: bool) -> None:
        """Edit datasets describe the change; text-to-image datasets describe the picture."""
        if paired:
            self.edit.setPlaceholderText("Describe the edit, e.g. “Remove the background and keep the subject”.\n"
                                         "Optional: sets without a caption use the default caption.")
        else:
            self.edit.setPlaceholderText("Describe the image, e.g. “a watercolor fox in a snowy forest”.\n"
                                         "Images without a caption use the default caption.")

    def set_caption_context(self, trigger: str, default_caption: str) -> None:
        """Trigger word and default caption from the training settings (shown as a hint)."""
        self._trigger, self._default = trigger.strip(), default_caption.strip()
        self._update_hint()

    def set_image_set(self, image_set: ImageSet | None) -> None:
        """Show another set's caption (saving the current one first)."""
        if image_set is not None and self._set is not None and image_set.caption_path == self._path:
            self._set = image_set  # the same set after a rescan: keep the text, check the disk
            self.check_disk()
            return
        self._leave_current()
        self._set = image_set
        self._path = image_set.caption_path if image_set is not None else None
        self._conflict = False
        self.conflict_bar.hide()
        self.error_bar.hide()
        if image_set is None:
            self._disk_text, self._disk = None, DiskState(False)
            self._set_text("", reset_undo=True)
            self.edit.setEnabled(False)
            self.title.setText("Caption")
            self._set_state("")
            self._update_hint()
            return
        self.edit.setEnabled(True)
        self.title.setText(f"Caption · {image_set.name}")
        self._load_from_disk()
        held = self._held.pop(self._path, None)
        if held is not None and normalize_caption(held[0]) != (self._disk_text or ""):
            text, based_on = held
            self._set_text(text, reset_undo=False)
            if based_on == self._disk_text:  # the file is as we left it: just save again
                self._set_state("Not saved yet")
                self._timer.start()
            else:
                self._show_conflict()
        self._update_hint()

    def flush(self) -> bool:
        """Save now if there are edits. False if it could not (conflict or write error)."""
        self._timer.stop()
        self._max_timer.stop()
        if self._path is None or not self.is_dirty():
            return True
        if self._conflict:
            return False
        now = disk_state(self._path)
        if now != self._disk:
            on_disk = self._safe_read()
            if on_disk != self._disk_text:
                self._show_conflict()
                return False
            self._disk = now
        return self._write(self.text())

    def check_disk(self) -> None:
        """Look for a change made on disk by another program (after a rescan, on activation)."""
        if self._path is None or self._conflict:
            return
        now = disk_state(self._path)
        if now == self._disk:
            return
        on_disk = self._safe_read()
        if on_disk == self._disk_text:
            self._disk = now
            return
        if not self.is_dirty():
            self._disk_text, self._disk = on_disk, now
            self._set_text(on_disk or "", reset_undo=False)
            self._set_state("Reloaded: changed by another program")
            self._caption_changed_externally()
            return
        self._show_conflict()

    def reload_from_disk(self) -> None:
        if self._path is None:
            return
        self._disk = disk_state(self._path)
        self._disk_text = self._safe_read()
        self._set_text(self._disk_text or "", reset_undo=False)
        self._conflict = False
        self.conflict_bar.hide()
        self._set_state("Reloaded from disk")
        self._caption_changed_externally()

    def keep_mine(self) -> None:
        self._conflict = False
        self.conflict_bar.hide()
        self._write(self.text())

    def flush_all(self) -> list[Path]:
        """Save the current caption and any held edits; returns the paths still not saved."""
        problems = []
        if not self.flush() and self._path is not None:
            problems.append(self._path)
        for path, (text, based_on) in list(self._held.items()):
            on_disk = self._read_path(path)
            if on_disk == normalize_caption(text):
                self._held.pop(path)
                continue
            if on_disk == based_on:  # unchanged on disk: retry the write
                try:
                    write_disk_caption(path, text)
                    self._held.pop(path)
                    continue
                except OSError:
                    pass
            problems.append(path)
        return problems

    def force_save_held(self) -> None:
        """On quit after asking: write every held edit and the current one (keep mine)."""
        for path, (text, _based_on) in list(self._held.items()):
            try:
                write_disk_caption(path, text)
                self._held.pop(path)
            except OSError:
                pass
        if self._path is not None and self.is_dirty():
            self._conflict = False
            self._write(self.text())

    def discard_unsaved(self) -> None:
        self._held.clear()
        self._timer.stop()
        self._max_timer.stop()
        if self._path is not None:
            self._set_text(self._disk_text or "", reset_undo=True)
        self._conflict = False
        self.conflict_bar.hide()

    # -- Qt -------------------------------------------------------------------------------

    def eventFilter(self, watched: QObject, event: QEvent) -> bool:
        if watched is self.edit and event.type() == QEvent.Type.FocusOut:
            self.flush()
        return super().eventFilter(watched, event)

    # -- internals ------------------------------------------------------------------------

    def _leave_current(self) -> None:
        if self._path is None:
            return
        if not self.flush() and self.is_dirty():
            self._held[self._path] = (self.text(), self._disk_text)

    def _load_from_disk(self) -> None:
        assert self._path is not None
        self._disk = disk_state(self._path)
        self._disk_text = self._safe_read()
        self._set_text(self._disk_text or "", reset_undo=True)
        self._set_state("" if self._disk_text is not None else "No caption file yet")

    def _safe_read(self) -> str | None:
        return self._read_path(self._path) if self._path else None

    def _read_path(self, path: Path) -> str | None:
        try:
            return read_disk_caption(path)
        except (OSError, UnicodeDecodeError, ValueError):
            return None

    def _write(self, text: str) -> bool:
        assert self._path is not None and self._set is not None
        try:
            write_disk_caption(self._path, text)
        except OSError as exc:
            self.error_bar.show_message(f"Can't save this caption: {exc.strerror or exc}. "
                                        "Your text stays here and is saved as soon as that works.")
            self._set_state("Not saved")
            return False
        self.error_bar.hide()
        self._disk_text = normalize_caption(text)
        self._disk = disk_state(self._path)
        self._set.caption = self._disk_text
        self._set_state("Saved")
        self.saved.emit(self._set.name, self._disk_text)
        return True

    def _show_conflict(self) -> None:
        self._timer.stop()
        self._max_timer.stop()
        self._conflict = True
        self.conflict_bar.show_message("This caption was changed on disk by another program while you were "
                                       "editing it. Reload the file, or keep your text and overwrite it?")
        self._set_state("Not saved: changed on disk")

    def _caption_changed_externally(self) -> None:
        if self._set is not None:
            self._set.caption = self._disk_text
            self.saved.emit(self._set.name, self._disk_text or "")

    def _set_text(self, text: str, reset_undo: bool) -> None:
        self._loading = True
        try:
            if reset_undo:
                self.edit.setPlainText(text)
            elif text != self.edit.toPlainText():
                # Replace through a cursor so Undo can bring the previous text back.
                cursor = QTextCursor(self.edit.document())
                cursor.beginEditBlock()
                cursor.select(QTextCursor.SelectionType.Document)
                cursor.insertText(text)
                cursor.endEditBlock()
        finally:
            self._loading = False
        self._update_hint()

    def _text_changed(self) -> None:
        if self._loading or self._path is None:
            return
        self._update_hint()
        if self._conflict:
            return
        if self.is_dirty():
            self._set_state("Editing…")
            self._timer.start()
            if not self._max_timer.isActive():
                self._max_timer.start()
        else:
            self._timer.stop()
            self._max_timer.stop()

    def _set_state(self, state: str) -> None:
        self._state = state
        self.state_label.setText(state)
        self.state_changed.emit(state)

    def _update_hint(self) -> None:
        if self._set is None:
            self.hint.setText("Select a set to see and edit its caption.")
            return
        text = normalize_caption(self.text()).strip()
        probe = ImageSet(self._set.name, [], None, self._set.caption_path, text or None)
        used = effective_caption(probe, self._trigger, self._default)
        if not used:
            self.hint.setText("No caption: this set trains on its images alone. Add one, or set a default "
                              "caption in the Train tab.")
        elif not text:
            self.hint.setText(f"No caption: training uses “{used}”.")
        elif used != text:
            self.hint.setText(f"Training uses: “{used}”")
        else:
            name = self._path.name if self._path else ""
            self.hint.setText(f"{len(text)} characters · saved automatically as {name}")
