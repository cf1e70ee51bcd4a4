"""Runs ``lorastudio caption --jsonl --no-write`` in a worker process and keeps its drafts
until the artist accepts or rejects each one. No widgets here: the dialog shows this state.

The worker writes nothing; a draft reaches the disk only through :meth:`DraftSession.accept`,
which uses the editor's atomic write (``apply_caption_changes``) and refuses a file whose
text is no longer what the artist saw when deciding (edited elsewhere meanwhile). A set
that had a caption is replaced only by :meth:`accept` with ``replace=True``: the dialog
offers that as its own, explicitly labelled button.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from PySide6.QtCore import QObject, Signal

from lorastudio import protocol
from lorastudio.dataset import CaptionChange, apply_caption_changes, read_caption
from lorastudio.dataset.captions import normalize_caption
from lorastudio.dataset.model import Dataset
from lorastudio.drafting import DEFAULT_MAX_TOKENS
from lorastudio.ui.runner import WorkerRunner


@dataclass
class Draft:
    set_name: str
    text: str
    caption_path: Path
    #: The caption on disk when the draft arrived (None: no caption), shown beside the draft.
    existing: str | None
    #: "pending", "accepted", "rejected".
    state: str = "pending"


def _disk_caption(path: Path) -> str | None:
    try:
        text = read_caption(path)
    except FileNotFoundError:
        return None
    return text if text.strip() else None


def caption_command_line(dataset_dir: Path, model: str, names: list[str] | None, instruction: str,
                         quantization: str, trigger: str, max_tokens: int = DEFAULT_MAX_TOKENS) -> list[str]:
    """argv of the drafting worker: the named sets (all of them, captioned or not: nothing is
    written, the artist decides), or every set without a caption when ``names`` is None."""
    args = ["caption", str(dataset_dir), "--model", model, "--jsonl", "--no-write", "--quantization", quantization,
            "--max-tokens", str(max_tokens)]
    if names is None:
        args.append("--missing")
    else:
        args.append("--overwrite")
        for name in names:
            args += ["--set", name]
    if instruction.strip():
        args += ["--instruction", instruction.strip()]
    if trigger.strip():
        args += ["--trigger", trigger.strip()]
    return protocol.lorastudio_command_line(*args)


class DraftSession(QObject):
    """One dataset's drafts: the worker run and the artist's decisions."""

    #: A new draft arrived (its set name).
    draft_added = Signal(str)
    #: (current, total, message) from the worker's status events.
    progress = Signal(int, int, str)
    #: A status line for the artist (message, is_warning).
    status = Signal(str, bool)
    #: The run ended: (drafted count, stopped) or a failure message.
    finished = Signal(int, bool)
    failed = Signal(str)
    running_changed = Signal(bool)
    #: A caption was written: (set name, text).
    written = Signal(str, str)

    def __init__(self, dataset: Dataset, parent: QObject | None = None, kill_timeout: float = 10.0) -> None:
        super().__init__(parent)
        self.dataset = dataset
        self.drafts: dict[str, Draft] = {}
        self._cancelled = False
        self._drafted = 0
        self.runner = WorkerRunner(self, kill_timeout=kill_timeout)
        self.runner.caption.connect(self._on_caption)
        self.runner.status.connect(self._on_status)
        self.runner.finished.connect(self._on_finished)
        self.runner.failed.connect(self._on_failed)
        self.runner.state_changed.connect(lambda state: self.running_changed.emit(state != "idle"))

    def is_running(self) -> bool:
        return self.runner.is_running()

    def start_argv(self, argv: list[str]) -> None:
        self._cancelled, self._drafted = False, 0
        self.runner.start(argv, cwd=str(self.dataset.root))

    def start(self, model: str, names: list[str] | None, instruction: str, quantization: str, trigger: str,
              max_tokens: int = DEFAULT_MAX_TOKENS) -> None:
        self.start_argv(caption_command_line(self.dataset.root, model, names, instruction, quantization, trigger,
                                             max_tokens))

    def cancel(self) -> None:
        """Stop drafting: within a token while generating; a worker still loading the model
        (which cannot be interrupted) is ended after ``kill_timeout`` (it writes nothing, so
        ending it loses nothing)."""
        self._cancelled = True
        self.runner.stop()

    # -- decisions --------------------------------------------------------------------------

    def accept(self, name: str, text: str, replace: bool = False) -> str | None:
        """Write ``text`` as the set's caption; None when written, else why not (nothing written).

        A set that has a caption on disk is only replaced with ``replace`` and only if that
        caption is still the one shown beside the draft."""
        draft = self.drafts[name]
        text = normalize_caption(text.strip())
        if not text:
            return "The caption is empty; write something or reject the draft."
        current = _disk_caption(draft.caption_path)
        if current != draft.existing:
            draft.existing = current
            return "The caption file changed since the draft arrived; check the text shown and choose again."
        if current is not None and not replace:
            return "This set already has a caption; choose “Replace caption” to overwrite it."
        old = None if not draft.caption_path.exists() else (read_caption(draft.caption_path))
        result = apply_caption_changes([CaptionChange(name, draft.caption_path, old, text)])
        if not result.ok:
            return f"{draft.caption_path.name}: not written: {result.failures[0].reason}"
        draft.state, draft.text = "accepted", text
        self.written.emit(name, text)
        return None

    def reject(self, name: str) -> None:
        self.drafts[name].state = "rejected"

    # -- worker events ----------------------------------------------------------------------

    def _on_caption(self, event: dict) -> None:
        name = event.get("set", "")
        image_set = self.dataset.set_by_name(name)
        if image_set is None:
            return
        self.drafts[name] = Draft(name, event.get("text", ""), image_set.caption_path,
                                  _disk_caption(image_set.caption_path))
        self._drafted += 1
        self.draft_added.emit(name)

    def _on_status(self, event: dict) -> None:
        message = event.get("message", "")
        if "current" in event and "total" in event:
            self.progress.emit(int(event["current"]), int(event["total"]), f"Drafting {message}…")
        else:
            self.status.emit(message, bool(event.get("warning")))

    def _on_finished(self, event: dict) -> None:
        self.finished.emit(int(event.get("drafted", 0)), bool(event.get("stopped")))

    def _on_failed(self, failure: dict) -> None:
        if self._cancelled and failure.get("kind") == "killed":  # ended while loading: that is the cancel
            self.finished.emit(self._drafted, True)
            return
        self.failed.emit(failure.get("message", "drafting failed"))
