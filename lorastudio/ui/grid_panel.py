"""The Test tab's checkpoint grid: rows = sets, columns = base model, checkpoints, target.

Runs ``lorastudio grid RUN_DIR --sets … --steps … --out PNG --jsonl`` as a child process
(``QProcess``, as the Test tab runs ``lorastudio sample``), so the models load only in that
process. Its ``status`` events drive the progress bar; ``done`` carries the PNG (``grid``);
``error`` explains a failure. Cancel writes ``stop`` on its stdin (the grid then ends without
writing a PNG) and, like the training runner, kills it if it has not ended after a grace
period.
"""

from __future__ import annotations

import time
from functools import partial
from html import escape
from pathlib import Path

from PySide6.QtCore import QProcess, Qt, QTimer, Signal
from PySide6.QtWidgets import (QHBoxLayout, QLabel, QListWidget, QListWidgetItem, QProgressBar, QPushButton,
                               QVBoxLayout, QWidget)

from lorastudio import protocol, run_folder
from lorastudio.ui import theme
from lorastudio.ui.message_bar import MessageBar
from lorastudio.ui.checkpoint_choice import grid_command

_html = partial(escape, quote=False)
#: The "best" entry of the checkpoint list (its data; steps are ints).
BEST = "best"


def _checklist(tooltip: str) -> QListWidget:
    widget = QListWidget()
    widget.setToolTip(tooltip)
    widget.setMinimumHeight(84)
    widget.setWordWrap(True)
    return widget


def _add_item(widget: QListWidget, label: str, data, checked: bool) -> None:
    item = QListWidgetItem(label)
    item.setData(Qt.ItemDataRole.UserRole, data)
    item.setFlags(Qt.ItemFlag.ItemIsEnabled | Qt.ItemFlag.ItemIsUserCheckable)
    item.setCheckState(Qt.CheckState.Checked if checked else Qt.CheckState.Unchecked)
    widget.addItem(item)


def _checked(widget: QListWidget) -> list:
    return [widget.item(i).data(Qt.ItemDataRole.UserRole) for i in range(widget.count())
            if widget.item(i).checkState() == Qt.CheckState.Checked]


class GridPanel(QWidget):
    """Pick sets (held-out first) and checkpoints; Render; progress, Cancel, the saved PNG."""

    #: A grid was written (its PNG path).
    rendered = Signal(str)
    #: The child process ended: True with a PNG, False when it failed or was cancelled.
    finished = Signal(bool)

    def __init__(self, parent: QWidget | None = None, kill_timeout: float = 5.0) -> None:
        super().__init__(parent)
        self.kill_timeout = kill_timeout
        self.run_dir: Path | None = None
        self.grid_path: Path | None = None
        self._proc: QProcess | None = None
        self._out: Path | None = None
        self._buffer = b""
        self._stderr = b""
        self._cancelled = False
        self._error = ""
        self._shown: tuple | None = None
        self._best_step: int | None = None
        self._kill_timer = QTimer(self)
        self._kill_timer.setSingleShot(True)
        self._kill_timer.timeout.connect(self._kill)

        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        hint = QLabel("Rows: the sets you pick. Columns: the base model, each checkpoint, the target.")
        hint.setWordWrap(True)
        theme.set_role(hint, "muted")
        layout.addWidget(hint)
        lists = QHBoxLayout()
        self.sets = _checklist("The sets to show as rows; the held-out ones (never trained on) come first")
        self.steps = _checklist("The kept checkpoints to show as columns")
        for title, widget in (("Sets", self.sets), ("Checkpoints", self.steps)):
            column = QVBoxLayout()
            column.addWidget(QLabel(title))
            column.addWidget(widget, 1)
            lists.addLayout(column, 1)
        layout.addLayout(lists, 1)
        buttons = QHBoxLayout()
        self.render_button = QPushButton("Render grid")
        theme.set_role(self.render_button, "primary")
        self.render_button.clicked.connect(self.render)
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setEnabled(False)
        self.cancel_button.clicked.connect(self.cancel)
        buttons.addWidget(self.render_button)
        buttons.addWidget(self.cancel_button)
        buttons.addStretch(1)
        layout.addLayout(buttons)
        self.progress = QProgressBar()
        self.progress.hide()
        layout.addWidget(self.progress)
        self.status = QLabel("")
        self.status.setWordWrap(True)
        self.status.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        theme.set_role(self.status, "muted")
        layout.addWidget(self.status)
        self.error_bar = MessageBar("error", self)
        layout.addWidget(self.error_bar)

    # -- setup ----------------------------------------------------------------------------

    def configure(self, run_dir: Path | None, set_names: list[str], held_out: list[str]) -> None:
        """The run folder's kept checkpoints and the dataset's sets (held-out ones first, checked)."""
        self.run_dir = Path(run_dir) if run_dir else None
        held = [n for n in held_out if n in set_names]
        ordered = held + [n for n in set_names if n not in held]
        checkpoints = run_folder.list_checkpoints(self.run_dir) if self.run_dir else []
        shown = (self.run_dir, tuple(ordered), tuple(held),
                 tuple((cp.step, cp.manifest.get("best")) for cp in checkpoints))
        if shown == self._shown:
            return  # unchanged: keep the ticks and the scroll position
        self._shown = shown
        was = set(_checked(self.sets))
        keep = was & set(ordered) or set(held or ordered[:3])
        self.sets.clear()
        for name in ordered:
            _add_item(self.sets, f"{name} (held out)" if name in held else name, name, name in keep)
        was_steps = set(_checked(self.steps))
        self.steps.clear()
        best = run_folder.best_checkpoint(self.run_dir) if self.run_dir else None
        self._best_step = best.step if best else None
        if best is not None:
            _add_item(self.steps, f"best (step {best.step:,})", BEST, BEST in was_steps or not was_steps)
        for cp in checkpoints:
            _add_item(self.steps, f"step {cp.step:,}", cp.step, cp.step in was_steps or not was_steps)
        if not checkpoints:  # a hint, not a choice
            hint = QListWidgetItem("No kept checkpoint yet: they are saved every “Checkpoint every” steps.")
            hint.setFlags(Qt.ItemFlag.NoItemFlags)
            self.steps.addItem(hint)
        self._update_buttons()

    def chosen_sets(self) -> list[str]:
        return _checked(self.sets)

    def chosen_steps(self) -> tuple[list[int], bool]:
        """(checked steps, whether "best" is checked)."""
        chosen = _checked(self.steps)
        return [s for s in chosen if s != BEST], BEST in chosen

    # -- running --------------------------------------------------------------------------

    def is_running(self) -> bool:
        return self._proc is not None

    def render(self) -> None:
        if self._proc is not None:
            return
        self.error_bar.hide()
        sets = self.chosen_sets()
        steps, best = self.chosen_steps()
        if self.run_dir is None or not (steps or best):
            self._fail("Tick at least one checkpoint." if self.run_dir and run_folder.has_checkpoint(self.run_dir)
                       else "No kept checkpoint to show yet: train first.")
            return
        if not sets:
            self._fail("Tick at least one set.")
            return
        out_dir = run_folder.tests_dir(self.run_dir)
        try:
            out_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            self._fail(f"Cannot create {out_dir}: {exc}")
            return
        self._out = out_dir / f"{time.strftime('%Y%m%d-%H%M%S')}-grid.png"
        if best and not steps and self._best_step is not None:  # without --steps the grid draws every kept one
            steps = [self._best_step]
        argv = grid_command(self.run_dir, sets, steps, best, self._out)
        self._buffer = self._stderr = b""
        self._cancelled, self._error, self.grid_path = False, "", None
        proc = QProcess(self)
        proc.readyReadStandardOutput.connect(self._read)
        proc.readyReadStandardError.connect(self._read_stderr)
        proc.finished.connect(self._proc_finished)
        proc.errorOccurred.connect(self._proc_error)
        self._proc = proc
        self.progress.setRange(0, 0)
        self.progress.show()
        self.status.setText("Starting the grid: loading the model…")
        self._update_buttons()
        proc.start(argv[0], argv[1:])

    def cancel(self) -> None:
        """Ask the grid to stop (no PNG is written); end it if it has not stopped in time."""
        if self._proc is None or self._cancelled:
            return
        self._cancelled = True
        self._proc.write(f"{protocol.STOP_COMMAND}\n".encode())
        self.status.setText("Cancelling…")
        self.cancel_button.setEnabled(False)
        self._kill_timer.start(int(self.kill_timeout * 1000))

    def shutdown(self) -> None:
        if self._proc is not None:
            self._cancelled = True
            self._proc.kill()
            self._proc.waitForFinished(2000)

    def _kill(self) -> None:
        if self._proc is not None:
            self._proc.kill()

    def _read(self) -> None:
        if self._proc is None:
            return
        self._buffer += bytes(self._proc.readAllStandardOutput().data())
        *lines, self._buffer = self._buffer.split(b"\n")
        for line in lines:
            self._on_line(line)

    def _read_stderr(self) -> None:
        if self._proc is not None:
            self._stderr = (self._stderr + bytes(self._proc.readAllStandardError().data()))[-20000:]

    def _on_line(self, line: bytes) -> None:
        if not line.strip():
            return
        try:
            event = protocol.decode(line)
        except protocol.ProtocolError:
            return  # library chatter on stdout
        kind = event["event"]
        if kind == protocol.STATUS:
            current, total = event.get("current"), event.get("total")
            if isinstance(current, int) and isinstance(total, int) and total > 0:
                self.progress.setRange(0, total)
                self.progress.setValue(current)
            if not self._cancelled:
                self.status.setText(str(event.get("message") or event.get("phase") or ""))
        elif kind == protocol.DONE and event.get("grid"):
            self.grid_path = Path(event["grid"])
        elif kind == protocol.ERROR:
            self._error = str(event.get("message") or "the grid failed")

    def _proc_error(self, error: QProcess.ProcessError) -> None:
        if error == QProcess.ProcessError.FailedToStart:
            self._proc = None
            self._fail("Could not start the grid command.")
            self._end(False)

    def _proc_finished(self, code: int, status: QProcess.ExitStatus) -> None:
        proc, self._proc = self._proc, None
        self._kill_timer.stop()
        if proc is None:
            return
        self._buffer += bytes(proc.readAllStandardOutput().data()) + b"\n"
        self._stderr += bytes(proc.readAllStandardError().data())
        for line in self._buffer.split(b"\n"):
            self._on_line(line)
        self._buffer = b""
        proc.deleteLater()
        path = self.grid_path
        if path is not None and path.is_file() and not self._cancelled:
            self.status.setText(f"Saved: {path}")
            self.rendered.emit(str(path))
            self._end(True)
            return
        if self._cancelled:
            self.status.setText("Cancelled: no grid was written.")
        elif self._error:
            self._fail(f"The grid failed: {_html(self._error)}")
        else:
            tail = self._stderr.decode("utf-8", "replace").strip().splitlines()[-12:]
            self._fail(f"The grid failed (exit code {code}).<br><pre>{_html(chr(10).join(tail))}</pre>")
        self._end(False)

    def _end(self, ok: bool) -> None:
        self.progress.hide()
        self._update_buttons()
        self.finished.emit(ok)

    def _update_buttons(self) -> None:
        running = self._proc is not None
        self.render_button.setEnabled(not running)
        self.cancel_button.setEnabled(running and not self._cancelled)

    def _fail(self, text: str) -> None:
        self.error_bar.show_message(text)
        self.status.setText("")
