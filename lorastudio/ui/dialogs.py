"""The main window's small dialogs: file pickers, the quit question, tips and about, and
which dropped file the window can open."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import QMimeData
from PySide6.QtWidgets import QFileDialog, QMessageBox, QWidget

from lorastudio.ui import help_texts
from lorastudio.ui.settings import Settings

PROJECT_FILTER = "LoRA Studio project (*.toml)"
#: The answers ``ask_user`` offers: button label and role.
ANSWERS = {"keep": ("Keep my text", QMessageBox.ButtonRole.AcceptRole),
           "discard": ("Discard my edits", QMessageBox.ButtonRole.DestructiveRole),
           "stop": ("Stop training and quit", QMessageBox.ButtonRole.AcceptRole),
           "cancel": ("Cancel", QMessageBox.ButtonRole.RejectRole)}


def ask_user(parent: QWidget, title: str, text: str, choices: tuple[str, ...]) -> str:
    """A question with the ``choices`` (keys of ``ANSWERS``) as buttons; "cancel" when closed."""
    box = QMessageBox(QMessageBox.Icon.Question, title, text, parent=parent)
    buttons = {}
    for c in choices:
        label, role = ANSWERS[c]
        buttons[box.addButton(label, role)] = c
    box.exec()
    return buttons.get(box.clickedButton(), "cancel")


def choose_dataset_folder(parent: QWidget, settings: Settings) -> str:
    start = settings.last_dir("dataset") or str(Path.home())
    return QFileDialog.getExistingDirectory(parent, "Open a folder of training images", start)


def choose_project_file(parent: QWidget, settings: Settings) -> str:
    start = settings.last_dir("project") or str(Path.home())
    return QFileDialog.getOpenFileName(parent, "Open a project", start, PROJECT_FILTER)[0]


def choose_save_path(parent: QWidget, start: Path) -> Path | None:
    path, _ = QFileDialog.getSaveFileName(parent, "Save project as", str(start), PROJECT_FILTER)
    if not path:
        return None
    return Path(path if path.endswith(".toml") else path + ".toml")


def show_tips(parent: QWidget) -> None:
    QMessageBox.information(parent, "Training tips", help_texts.TRAINING_TIPS)


def show_about(parent: QWidget) -> None:
    from lorastudio import __version__

    QMessageBox.about(parent, "About LoRA Studio", help_texts.ABOUT.format(version=__version__))


def dropped_path(mime: QMimeData) -> Path | None:
    """The folder or project file dragged onto the window, if any."""
    if not mime.hasUrls():
        return None
    for url in mime.urls():
        if url.isLocalFile():
            p = Path(url.toLocalFile())
            if p.is_dir() or p.suffix.lower() == ".toml":
                return p
    return None
