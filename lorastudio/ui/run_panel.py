"""The Train tab's right side: Train/Stop/Resume, progress, the loss chart, samples and the log.

It only shows what the runner's signals say (``RunControl`` routes them here).
"""

from __future__ import annotations

import math
import time
from html import escape
from pathlib import Path

from PySide6.QtCore import Qt, QUrl, Signal
from PySide6.QtGui import QDesktopServices, QGuiApplication, QTextCursor
from PySide6.QtWidgets import (QHBoxLayout, QLabel, QPlainTextEdit, QProgressBar, QPushButton, QSplitter, QTabWidget,
                               QVBoxLayout, QWidget)

from lorastudio import run_folder
from lorastudio.ui import theme
from lorastudio.ui.message_bar import MessageBar
from lorastudio.ui.help_texts import ADVICE
from lorastudio.ui.loss_chart import LossChart, overfitting_message
from lorastudio.ui.sample_gallery import Sample, SampleGallery
from lorastudio.ui.thumbnails import ThumbnailLoader


def format_duration(seconds: float | None) -> str:
    if seconds is None or not math.isfinite(seconds) or seconds < 0:
        return "—"
    seconds = int(round(seconds))
    h, rem = divmod(seconds, 3600)
    m, s = divmod(rem, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


class RunPanel(QWidget):
    """Train/Stop/Resume, progress, the loss chart, samples and the log."""

    train_clicked = Signal()
    stop_clicked = Signal()
    resume_clicked = Signal()
    test_clicked = Signal(str)
    sample_clicked = Signal(object)

    def __init__(self, loader: ThumbnailLoader, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.lora_path: str = ""
        #: The run's best checkpoint's LoRA (NAME.best.safetensors), when validation ran.
        self.best_path: str = ""
        self.log_path: str | None = None
        self._started_at = 0.0
        layout = QVBoxLayout(self)
        layout.setContentsMargins(12, 8, 12, 12)
        layout.setSpacing(8)

        buttons = QHBoxLayout()
        self.train_button = QPushButton("Train")
        theme.set_role(self.train_button, "primary")
        self.train_button.setToolTip("Start training with these settings (Ctrl+Return)")
        self.stop_button = QPushButton("Stop")
        self.stop_button.setToolTip("Stop gracefully: saves a checkpoint and the LoRA so far (Esc or Ctrl+.)")
        self.resume_button = QPushButton("Resume")
        self.resume_button.setToolTip("Continue from the last checkpoint (Ctrl+Shift+Return)")
        self.train_button.clicked.connect(self.train_clicked)
        self.stop_button.clicked.connect(self.stop_clicked)
        self.resume_button.clicked.connect(self.resume_clicked)
        for b in (self.train_button, self.stop_button, self.resume_button):
            b.setMinimumWidth(96)
        buttons.addWidget(self.train_button)
        buttons.addWidget(self.stop_button)
        buttons.addWidget(self.resume_button)
        buttons.addStretch(1)
        self.phase = QLabel("Ready to train.")
        theme.set_role(self.phase, "muted")
        buttons.addWidget(self.phase)
        layout.addLayout(buttons)

        self.progress = QProgressBar()
        self.progress.setRange(0, 1)
        self.progress.setValue(0)
        self.progress.setFormat("")
        self.progress.setTextVisible(True)
        layout.addWidget(self.progress)
        stats = QHBoxLayout()
        self.step_label = QLabel("Step —")
        self.rate_label = QLabel("— it/s")
        self.eta_label = QLabel("ETA —")
        self.loss_label = QLabel("loss —")
        self.val_label = QLabel("")
        self.val_label.setToolTip("The loss on the sets held out for validation (never trained on)")
        for w in (self.step_label, self.rate_label, self.eta_label, self.loss_label, self.val_label):
            theme.set_role(w, "stat")
            stats.addWidget(w)
            stats.addSpacing(12)
        stats.addStretch(1)
        layout.addLayout(stats)

        self.error_bar = MessageBar("error", self)
        self.error_bar.add_button("Show log", self.show_log)
        self.error_resume = self.error_bar.add_button("Resume", self.resume_clicked.emit)
        layout.addWidget(self.error_bar)

        self.done_bar = MessageBar("ok", self)
        self.done_bar.label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.test_button = self.done_bar.add_button("Test it", lambda: self.test_clicked.emit(self.lora_path),
                                                    "Try the LoRA of the last step in the Test tab")
        self.test_best_button = self.done_bar.add_button(
            "Test best", lambda: self.test_clicked.emit(self.best_path),
            "Try the LoRA of the checkpoint with the lowest held-out loss in the Test tab")
        self.test_best_button.hide()
        self.show_folder_button = self.done_bar.add_button("Show in folder", self.show_in_folder)
        self.copy_button = self.done_bar.add_button("Copy path", self.copy_path)
        layout.addWidget(self.done_bar)

        self.tabs = QTabWidget()
        self.tabs.setDocumentMode(True)
        self.chart = LossChart()
        self.gallery = SampleGallery(loader)
        self.gallery.sample_activated.connect(self.sample_clicked)
        self.log_view = QPlainTextEdit()
        self.log_view.setReadOnly(True)
        self.log_view.setMaximumBlockCount(5000)
        self.log_view.setLineWrapMode(QPlainTextEdit.LineWrapMode.NoWrap)
        font = QGuiApplication.font()
        font.setFamily("monospace")
        font.setStyleHint(font.StyleHint.Monospace)
        self.log_view.setFont(font)
        self.split = QSplitter(Qt.Orientation.Vertical)
        chart_box = QWidget()
        cl = QVBoxLayout(chart_box)
        cl.setContentsMargins(0, 0, 0, 0)
        t = QLabel("Loss")
        theme.set_role(t, "heading")
        cl.addWidget(t)
        cl.addWidget(self.chart, 1)
        self.overfit_note = QLabel("")
        self.overfit_note.setWordWrap(True)
        theme.set_role(self.overfit_note, "warning")
        self.overfit_note.hide()
        cl.addWidget(self.overfit_note)
        samples_box = QWidget()
        sl = QVBoxLayout(samples_box)
        sl.setContentsMargins(0, 6, 0, 0)
        t = QLabel("Samples")
        theme.set_role(t, "heading")
        self.samples_hint = QLabel("Previews appear here as training goes (click one to compare with the target).")
        theme.set_role(self.samples_hint, "muted")
        self.samples_hint.setWordWrap(True)  # a narrow window wraps it rather than widening the page
        head = QHBoxLayout()
        head.addWidget(t)
        head.addWidget(self.samples_hint, 1)
        sl.addLayout(head)
        sl.addWidget(self.gallery, 1)
        self.split.addWidget(chart_box)
        self.split.addWidget(samples_box)
        self.tabs.addTab(self.split, "Progress")
        self.tabs.addTab(self.log_view, "Log")
        layout.addWidget(self.tabs, 1)
        self.set_state("idle", can_resume=False, can_train=True)

    # -- state ----------------------------------------------------------------------------

    def set_state(self, state: str, can_resume: bool, can_train: bool) -> None:
        running = state != "idle"
        self.train_button.setEnabled(not running and can_train)
        self.stop_button.setEnabled(state in ("starting", "running"))
        self.resume_button.setEnabled(not running and can_resume and can_train)
        self.error_resume.setVisible(can_resume)
        if state == "stopping":
            self.phase.setText("Stopping: saving a checkpoint and the LoRA so far…")
        elif state == "starting":
            self.phase.setText("Starting the trainer…")

    def reset(self) -> None:
        """A project was opened: no curve, no samples, no message from an earlier run."""
        self.chart.clear()
        self.gallery.clear_samples()
        self._show_overfitting()
        self.error_bar.hide()
        self.done_bar.hide()
        self.phase.setText("Ready to train.")

    def samples(self) -> list[Sample]:
        return self.gallery.samples

    def refresh_theme(self) -> None:
        self.chart.update()

    def begin(self, resume: bool) -> None:
        self.error_bar.hide()
        self.done_bar.hide()
        self._started_at = time.monotonic()
        if not resume:
            self.chart.clear()
            self.gallery.clear_samples()
            self._show_overfitting()
        self.progress.setRange(0, 0)
        self.progress.setFormat("")
        self.log(f"— {'resuming' if resume else 'starting'} training {time.strftime('%H:%M:%S')} —")

    # -- runner signals -------------------------------------------------------------------

    def follow(self, runner) -> None:
        """Show ``runner``'s run (a ``WorkerRunner``): its start, status, progress, checkpoints,
        held-out loss and log. Previews and the run's end are the owner's to connect: what they
        lead to (the set's input images, the banner's buttons) is known there."""
        runner.started.connect(self.on_started)
        runner.status.connect(self.on_status)
        runner.progress.connect(self.on_progress)
        runner.checkpoint.connect(self.on_checkpoint)
        runner.validation.connect(self.on_validation)
        runner.log.connect(self.log)

    def on_started(self, e: dict) -> None:
        total = int(e.get("total") or 0)
        resumed = int(e.get("resumed_from") or 0)
        if resumed:
            self.chart.resume_at(resumed, total)
            if not self.chart.val_steps and e.get("run_dir"):  # the app was restarted: the run folder has them
                for event in run_folder.validation_events(e["run_dir"], up_to=resumed):
                    self.chart.add_validation(int(event["step"]), event.get("loss"))
        else:
            self.chart.clear(total)
        self._show_overfitting()
        family = e.get("family", "")
        sets = e.get("sets", "?")
        self.phase.setText(f"Training {family} on {sets} sets" + (f", resumed from step {resumed:,}" if resumed else ""))
        self.progress.setRange(0, max(1, total))
        self.progress.setValue(resumed)
        self.step_label.setText(f"Step {resumed:,} / {total:,}")

    def on_status(self, e: dict) -> None:
        message = e.get("message") or e.get("phase", "")
        current, total = e.get("current"), e.get("total")
        if e.get("phase") != "training":
            if isinstance(current, int) and isinstance(total, int) and total > 0:
                self.progress.setRange(0, total)
                self.progress.setValue(current)
                self.progress.setFormat(f"{message} %v / %m")
            elif self.progress.maximum() <= 1:
                self.progress.setRange(0, 0)
        self.phase.setText(message[:1].upper() + message[1:] if message else "")

    def on_progress(self, e: dict) -> None:
        step, total = int(e.get("step", 0)), int(e.get("total") or 0)
        if total:
            if self.progress.maximum() != total:
                self.progress.setRange(0, total)
            self.progress.setValue(step)
            self.progress.setFormat(f"{100 * step / total:.0f}%")
        self.step_label.setText(f"Step {step:,} / {total:,}")
        rate = e.get("rate")
        if isinstance(rate, (int, float)) and rate > 0:
            self.rate_label.setText(f"{rate:.2f} it/s" if rate >= 1 else f"{1 / rate:.1f} s/it")
        self.eta_label.setText(f"ETA {format_duration(e.get('eta'))}")
        loss = e.get("loss")
        self.loss_label.setText(f"loss {loss:.4f}" if isinstance(loss, (int, float)) else "loss —")
        self.chart.add(step, loss, total)
        if self.phase.text().startswith(("Starting", "Caching", "Loading")):
            self.phase.setText("Training")

    def on_validation(self, e: dict) -> None:
        """The held-out loss: a point on the chart, and words when it climbs while training falls."""
        loss = e.get("loss")
        if not isinstance(loss, (int, float)):
            return
        self.chart.add_validation(int(e.get("step", 0)), loss)
        self.val_label.setText(f"held-out {loss:.4f}")
        self._show_overfitting()

    def _show_overfitting(self) -> None:
        text = overfitting_message(self.chart.overfitting())
        self.overfit_note.setText(text)
        self.overfit_note.setVisible(bool(text))
        if not self.chart.val_losses:
            self.val_label.setText("")

    def on_sample(self, e: dict, inputs: tuple[Path, ...] = ()) -> None:
        path = e.get("path")
        if not path:
            return
        self.gallery.add_sample(Sample(int(e.get("step", 0)), Path(path), str(e.get("set", "")),
                                       Path(e["target"]) if e.get("target") else None, inputs))
        self.samples_hint.setText(f"{len(self.gallery.samples)} previews · click one to compare with its target")

    def on_checkpoint(self, e: dict) -> None:
        self.log(f"checkpoint saved at step {e.get('step')}: {e.get('path')}")

    def on_finished(self, e: dict) -> None:
        self.lora_path = str(e.get("lora") or "")
        self.best_path = str(e.get("best") or "")
        self.eta_label.setText("ETA —")
        step = e.get("step")
        self.progress.setRange(0, max(1, self.progress.maximum()))
        if not e.get("stopped"):
            self.progress.setValue(self.progress.maximum())
            self.progress.setFormat("Done")
            self.phase.setText(f"Finished in {format_duration(time.monotonic() - self._started_at)}")
            head = "<b>Your LoRA is ready.</b>"
        else:
            self.progress.setFormat(f"Stopped at step {step:,}" if isinstance(step, int) else "Stopped")
            self.phase.setText("Stopped")
            head = (f"<b>Stopped at step {step:,}.</b> The LoRA so far is saved; Resume continues."
                    if isinstance(step, int) else "<b>Stopped.</b> The LoRA so far is saved.")
        body = f"{head}<br>{escape(self.lora_path, quote=False)}"
        if self.best_path:
            body += f"<br>Best (lowest held-out loss): {escape(Path(self.best_path).name, quote=False)}"
        self.test_button.setText("Test last" if self.best_path else "Test it")
        self.test_best_button.setVisible(bool(self.best_path))
        self.done_bar.show_message(body)
        self.log(f"done: {self.lora_path}")

    def on_failed(self, e: dict) -> None:
        kind = e.get("kind", "crash")
        self.eta_label.setText("ETA —")
        self.log_path = e.get("log")
        self.progress.setRange(0, max(1, self.progress.maximum()))
        self.progress.setFormat("Failed")
        self.phase.setText("Training failed" if kind != "killed" else "Training ended")
        advice = ADVICE.get(kind, "")
        text = f"<b>{escape(e.get('message', 'Training failed.'), quote=False)}</b>"
        if advice:
            text += f"<br>{escape(advice, quote=False)}"
        if self.log_path:
            text += f"<br>Log: {escape(str(self.log_path), quote=False)}"
        self.error_bar.show_message(text)
        stderr = e.get("stderr") or ""
        if stderr:
            self.log("— last lines of the trainer's output —\n" + stderr)
        if e.get("log_tail"):
            self.log(f"— last lines of {self.log_path} —\n" + e["log_tail"])

    def log(self, text: str) -> None:
        self.log_view.appendPlainText(text)
        self.log_view.moveCursor(QTextCursor.MoveOperation.End)

    # -- actions --------------------------------------------------------------------------

    def show_log(self) -> None:
        self.tabs.setCurrentWidget(self.log_view)
        if self.log_path and Path(self.log_path).is_file():
            QDesktopServices.openUrl(QUrl.fromLocalFile(str(self.log_path)))

    def show_in_folder(self) -> None:
        if self.lora_path:
            show_in_folder(Path(self.lora_path))

    def copy_path(self) -> None:
        if self.lora_path:
            QGuiApplication.clipboard().setText(self.lora_path)
            self.phase.setText("Path copied")


def show_in_folder(path: Path) -> None:
    """Open the file manager at ``path`` (selecting the file where the platform allows)."""
    import subprocess
    import sys

    try:
        if sys.platform == "win32":  # pragma: no cover
            subprocess.Popen(["explorer", "/select,", str(path)])
            return
        if sys.platform == "darwin":  # pragma: no cover
            subprocess.Popen(["open", "-R", str(path)])
            return
    except OSError:
        pass
    QDesktopServices.openUrl(QUrl.fromLocalFile(str(path.parent if path.is_file() or not path.exists() else path)))
