"""The page shown with no project: the built-in demo, Open Folder, Open Project, recent projects.

The demo (a tiny random-weight model and a small paired dataset from ``lorastudio demo``)
is created on first use in the user data folder by a child process, with a busy
indicator, so a new artist can press Train on any machine with no GPU and no downloads.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from PySide6.QtCore import QObject, QProcess, QSize, Qt, Signal
from PySide6.QtWidgets import (QFrame, QHBoxLayout, QLabel, QListWidget, QListWidgetItem, QProgressBar, QPushButton,
                               QSizePolicy, QVBoxLayout, QWidget)

from lorastudio import protocol
from lorastudio.ui import theme


class DemoMaker(QObject):
    """Runs ``lorastudio demo DIR`` once; ``ready(project.toml)`` or ``failed(message)``."""

    ready = Signal(str)
    failed = Signal(str)

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._proc: QProcess | None = None
        self._out: Path | None = None
        self._log = b""

    @staticmethod
    def project_file(out_dir: Path) -> Path:
        return out_dir / "project.toml"

    def is_running(self) -> bool:
        return self._proc is not None

    def make(self, out_dir: Path) -> bool:
        """Start creating the demo; returns False if it already exists (``ready`` is emitted at once)."""
        out_dir = Path(out_dir)
        if self.project_file(out_dir).is_file():
            self.ready.emit(str(self.project_file(out_dir)))
            return False
        if self._proc is not None:
            return True
        if out_dir.exists():  # a half-made demo from an interrupted run
            shutil.rmtree(out_dir, ignore_errors=True)
        out_dir.parent.mkdir(parents=True, exist_ok=True)
        self._out = out_dir
        self._log = b""
        argv = protocol.lorastudio_command_line("demo", str(out_dir))
        proc = QProcess(self)
        proc.setProcessChannelMode(QProcess.ProcessChannelMode.MergedChannels)
        proc.readyReadStandardOutput.connect(self._read)
        proc.finished.connect(self._finished)
        proc.errorOccurred.connect(self._error)
        self._proc = proc
        proc.start(argv[0], argv[1:])
        return True

    def cancel(self) -> None:
        if self._proc is not None:
            self._proc.kill()
            self._proc.waitForFinished(3000)

    def _read(self) -> None:
        if self._proc is not None:
            self._log = (self._log + bytes(self._proc.readAllStandardOutput().data()))[-8000:]

    def _error(self, error: QProcess.ProcessError) -> None:
        if error == QProcess.ProcessError.FailedToStart:
            self._proc = None
            self.failed.emit("Could not start `lorastudio demo`.")

    def _finished(self, code: int, status: QProcess.ExitStatus) -> None:
        proc, self._proc = self._proc, None
        if proc is not None:
            self._log = (self._log + bytes(proc.readAllStandardOutput().data()))[-8000:]
            proc.deleteLater()
        assert self._out is not None
        project = self.project_file(self._out)
        if status == QProcess.ExitStatus.NormalExit and code == 0 and project.is_file():
            self.ready.emit(str(project))
            return
        tail = "\n".join(self._log.decode("utf-8", "replace").strip().splitlines()[-10:])
        self.failed.emit(f"Creating the demo failed (exit code {code}).\n{tail}".strip())


class WelcomePage(QWidget):
    demo_requested = Signal()
    open_folder_requested = Signal()
    open_project_requested = Signal()
    recent_requested = Signal(str)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        outer = QHBoxLayout(self)
        outer.addStretch(1)
        column = QVBoxLayout()
        column.setSpacing(14)
        outer.addLayout(column, 0)
        outer.addStretch(1)
        column.addStretch(1)

        head = QHBoxLayout()
        self.logo = QLabel()
        self.logo.setFixedSize(64, 64)
        head.addWidget(self.logo)
        titles = QVBoxLayout()
        title = QLabel("LoRA Studio")
        theme.set_role(title, "title")
        subtitle = QLabel("Train your own LoRA on your own GPU, offline.")
        theme.set_role(subtitle, "muted")
        titles.addWidget(title)
        titles.addWidget(subtitle)
        head.addLayout(titles, 1)
        column.addLayout(head)

        steps = QLabel("1  Open a folder of images (<i>photo001_start.jpg</i> + <i>photo001_end.jpg</i>, "
                       "optional <i>photo001.txt</i>)<br>"
                       "2  Check the sets and fix captions<br>"
                       "3  Set steps and learning rate, press <b>Train</b><br>"
                       "4  Get your <i>.safetensors</i> and test it")
        steps.setTextFormat(Qt.TextFormat.RichText)
        theme.set_role(steps, "muted")
        column.addWidget(steps)

        card = QFrame()
        card.setProperty("role", "card")
        card_layout = QVBoxLayout(card)
        card_layout.setContentsMargins(18, 16, 18, 16)
        card_layout.setSpacing(10)
        self.demo_button = QPushButton("Try the demo")
        theme.set_role(self.demo_button, "primary")
        self.demo_button.setToolTip("A tiny model and a small example dataset: press Train and watch it work, "
                                    "no GPU and no downloads needed.")
        self.demo_button.clicked.connect(self.demo_requested)
        self.demo_note = QLabel("")
        theme.set_role(self.demo_note, "muted")
        self.demo_note.setWordWrap(True)
        self.busy = QProgressBar()
        self.busy.setRange(0, 0)
        self.busy.setTextVisible(False)
        self.busy.setMaximumHeight(8)
        self.busy.hide()
        self.demo_error = QLabel("")
        theme.set_role(self.demo_error, "error")
        self.demo_error.setWordWrap(True)
        self.demo_error.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.demo_error.hide()
        row = QHBoxLayout()
        self.open_button = QPushButton("Open a folder…")
        self.open_button.setToolTip("Open a folder of training images (Ctrl+O). You can also drop a folder here.")
        self.open_button.clicked.connect(self.open_folder_requested)
        self.project_button = QPushButton("Open a project…")
        self.project_button.setToolTip("Open a saved project (.toml)")
        self.project_button.clicked.connect(self.open_project_requested)
        row.addWidget(self.demo_button)
        row.addWidget(self.open_button)
        row.addWidget(self.project_button)
        row.addStretch(1)
        card_layout.addLayout(row)
        card_layout.addWidget(self.demo_note)
        card_layout.addWidget(self.busy)
        card_layout.addWidget(self.demo_error)
        column.addWidget(card)

        recent_title = QLabel("Recent")
        theme.set_role(recent_title, "heading")
        column.addWidget(recent_title)
        self.recent = QListWidget()
        self.recent.setMinimumHeight(120)
        self.recent.setMaximumHeight(240)
        self.recent.setIconSize(QSize(18, 18))
        self.recent.itemActivated.connect(self._recent_activated)
        self.recent.itemClicked.connect(self._recent_activated)
        column.addWidget(self.recent)
        self.recent_empty = QLabel("Nothing yet. Drop a folder anywhere in this window to open it.")
        theme.set_role(self.recent_empty, "muted")
        column.addWidget(self.recent_empty)
        column.addStretch(2)
        card.setSizePolicy(QSizePolicy.Policy.Preferred, QSizePolicy.Policy.Fixed)
        self.set_demo_busy(False)
        for w in (card, self.recent):
            w.setMinimumWidth(620)
        self.refresh_icons()

    def refresh_icons(self) -> None:
        self.logo.setPixmap(theme.icon("app").pixmap(64, 64))
        self.demo_button.setIcon(theme.icon("demo", theme.colors().accent_text))
        self.open_button.setIcon(theme.icon("open"))
        self.project_button.setIcon(theme.icon("project"))

    def set_recent(self, paths: list[str]) -> None:
        self.recent.clear()
        for p in paths:
            path = Path(p)
            item = QListWidgetItem(theme.icon("project" if path.suffix == ".toml" else "open"),
                                   f"{path.name}    —    {path.parent}")
            item.setData(Qt.ItemDataRole.UserRole, p)
            item.setToolTip(p if path.exists() else f"{p}\n(not found)")
            if not path.exists():
                item.setForeground(theme.colors().q("muted"))
            self.recent.addItem(item)
        self.recent.setVisible(bool(paths))
        self.recent_empty.setVisible(not paths)

    def set_demo_busy(self, busy: bool, message: str = "") -> None:
        self.busy.setVisible(busy)
        self.demo_button.setEnabled(not busy)
        self.demo_error.hide()
        if busy:
            self.demo_note.setText(message or "Creating the demo: a tiny model and example pairs…")
        else:
            self.demo_note.setText("A tiny model and a small set of example pairs, made on this computer on "
                                   "first use: press Train and watch it learn — no GPU, no downloads.")

    def show_demo_error(self, message: str) -> None:
        self.set_demo_busy(False)
        self.demo_error.setText(message)
        self.demo_error.show()

    def _recent_activated(self, item: QListWidgetItem) -> None:
        self.recent_requested.emit(item.data(Qt.ItemDataRole.UserRole))
