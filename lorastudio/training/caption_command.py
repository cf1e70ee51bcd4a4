"""``lorastudio caption``: draft captions for a dataset with a local vision-language model.

``caption DATASET --model DIR`` or ``caption PROJECT.toml`` (dataset from the project, model
from its ``[caption]`` table, else ``model.path``). Sets that already have a caption are
skipped and listed unless ``--overwrite``; a draft is written with the editor's atomic
write (``apply_caption_changes``, which also refuses a file changed since the scan).

``--jsonl`` prints only events (``status``, ``caption``, ``done`` / ``error``). The app runs
``--jsonl --no-write``: drafts only come back as events for the artist to accept, and the
run stops when its stdin ends or the app is gone (nobody would be left to accept them).
A ``stop`` line on stdin, or Ctrl+C, stops after the current token.

Exit status: 0 done or stopped, 1 failed while drafting, 2 bad input (folder, model, set names).
"""

from __future__ import annotations

import os
import sys
import tempfile
import traceback
from dataclasses import dataclass
from pathlib import Path

from lorastudio.config import ConfigError, load_config
from lorastudio.dataset import CaptionChange, apply_caption_changes, scan_dataset
from lorastudio.dataset.model import Mode
from lorastudio.drafting import DEFAULT_MAX_TOKENS, QUANTIZATION_LABELS, default_instruction, memory_text, plan_drafts
from lorastudio.training.events import EventSink, JsonlSink, redirect_stdio
from lorastudio.training.terminal import TerminalSink
from lorastudio.training.stop import EVENTS_CLOSED, StopSignal
from lorastudio.vl_folder import VLFolderError, detect_vl_folder

#: How many skipped set names a status message lists before "and N more".
LIST_NAMES = 20


class CaptionInputError(ValueError):
    """Bad input to the command (named in the message); nothing was loaded."""


@dataclass
class CaptionJob:
    dataset_dir: Path
    model: Path
    instruction: str
    trigger: str
    max_tokens: int
    quantization: str


def job_from_args(args) -> CaptionJob:
    """The dataset, model and settings: from the command line, a project's ``[caption]`` table,
    then ``model.path`` (the command line wins)."""
    target = Path(args.target).expanduser()
    if target.suffix.lower() == ".toml" or target.is_file():
        try:
            config = load_config(target, check_paths=False)
        except ConfigError as exc:
            raise CaptionInputError(str(exc)) from None
        if not config.dataset.path.is_dir():
            raise CaptionInputError(f"dataset.path: folder not found: {config.dataset.path}")
        c = config.caption
        model = args.model or c.model or (config.model.path if str(config.model.path) not in ("", ".") else None)
        return CaptionJob(dataset_dir=config.dataset.path, model=Path(model) if model else Path(""),
                          instruction=args.instruction or c.instruction, trigger=args.trigger or config.dataset.trigger,
                          max_tokens=args.max_tokens or c.max_tokens, quantization=args.quantization or c.quantization)
    if not target.is_dir():
        raise CaptionInputError(f"{target}: not found (give a dataset folder or a project .toml)")
    if not args.model:
        raise CaptionInputError("--model DIR is required with a dataset folder: a Qwen2.5-VL / Qwen3-VL model folder "
                                "or a Qwen-Image-Edit(-Plus) folder (or give a project .toml with a [caption] table)")
    return CaptionJob(dataset_dir=target, model=Path(args.model), instruction=args.instruction or "",
                      trigger=args.trigger or "", max_tokens=args.max_tokens or DEFAULT_MAX_TOKENS,
                      quantization=args.quantization or "none")


def requested_names(args) -> list[str]:
    names = [n.strip() for n in (args.sets or "").split(",") if n.strip()]
    return names + list(args.set_names or [])


def _listed(names: list[str]) -> str:
    shown = ", ".join(names[:LIST_NAMES])
    return shown + (f" and {len(names) - LIST_NAMES} more" if len(names) > LIST_NAMES else "")


def caption_command(args) -> int:
    stop = StopSignal()
    redirected = None
    log_path = Path(tempfile.gettempdir()) / f"lorastudio-caption-{os.getpid()}.log"
    if args.jsonl:
        redirected = redirect_stdio(log_path)
        sink: EventSink = JsonlSink(redirected.events, on_broken=lambda: stop.request(EVENTS_CLOSED))
        stop.watch_stdin(stop_on_eof=args.no_write)
        if args.no_write:
            stop.watch_parent()
    else:
        sink = TerminalSink()
    stop.install_sigint()
    try:
        return _run(args, sink, stop, log_path if args.jsonl else None)
    finally:
        stop.restore_sigint()
        if redirected is not None:
            redirected.close()


def _run(args, sink: EventSink, stop: StopSignal, log_path: Path | None) -> int:
    log = {"log": str(log_path)} if log_path else {}
    try:
        job = job_from_args(args)
        if not str(job.model) or str(job.model) == ".":
            raise CaptionInputError("no model folder: pass --model DIR or set [caption] model (or model.path) "
                                    "in the project")
        folder = detect_vl_folder(job.model)
    except (CaptionInputError, VLFolderError) as exc:
        sink.emit("error", kind="config", message=str(exc))
        return 2
    try:
        dataset = scan_dataset(job.dataset_dir)
    except OSError as exc:
        sink.emit("error", kind="data", message=f"{job.dataset_dir}: cannot read the dataset folder ({exc})")
        return 2
    paired = dataset.mode is Mode.PAIRED
    plan = plan_drafts(dataset, requested_names(args) or None, missing=args.missing, overwrite=args.overwrite)
    if plan.unknown:
        sink.emit("error", kind="data", message=f"{job.dataset_dir}: no usable set named {_listed(plan.unknown)} "
                                               "(`lorastudio check` lists the sets and their problems)")
        return 2
    if plan.skipped_existing:
        names = [s.name for s in plan.skipped_existing]
        sink.emit("status", phase="captioning", skipped=names,
                  message=f"skipped {len(names)} set(s) that already have a caption (--overwrite replaces them): "
                          f"{_listed(names)}")
    if not plan.todo:
        sink.emit("done", drafted=0, stopped=False)
        return 0
    instruction = job.instruction.strip() or default_instruction(paired)
    if stop.is_set():  # cancelled before the (long, uninterruptible) model load
        sink.emit("done", drafted=0, stopped=True)
        return 0
    try:
        from lorastudio.training.captioning import load_captioner, pick_device

        device = pick_device()
        sink.emit("status", phase="loading",
                  message=f"loading {folder.describe()}: {QUANTIZATION_LABELS[job.quantization]} on the "
                          f"{'GPU' if device.type == 'cuda' else 'CPU'}; GPU memory needed: {memory_text(folder)}")
        if device.type == "cpu":
            sink.emit("status", phase="loading", warning=True,
                      message="no GPU found: drafting runs on the CPU, which works but is slow (a 7B model takes "
                              "minutes per set and ~32 GB of RAM in fp32)")
        captioner = load_captioner(folder, job.quantization, job.max_tokens, device)
        drafted = 0
        for i, image_set in enumerate(plan.todo):
            if stop.is_set():
                break
            sink.emit("status", phase="captioning", current=i, total=len(plan.todo), message=image_set.name)
            text = captioner.draft(image_set, instruction, paired, trigger=job.trigger, stop=stop)
            if stop.is_set():
                break  # cut short mid-draft: not a caption
            drafted += 1
            written = False
            if not args.no_write and text:
                result = apply_caption_changes([CaptionChange(image_set.name, image_set.caption_path,
                                                              image_set.caption, text)])
                written = result.ok
                for failure in result.failures:
                    sink.emit("status", phase="captioning", warning=True,
                              message=f"{image_set.caption_path}: not written: {failure.reason}")
            elif not text:
                sink.emit("status", phase="captioning", warning=True,
                          message=f"{image_set.name}: the model returned no text; nothing written")
            sink.emit("caption", set=image_set.name, text=text, written=written)
        sink.emit("done", drafted=drafted, stopped=stop.is_set())
        return 0
    except KeyboardInterrupt:
        sink.emit("error", kind="crash", message="interrupted (a second Ctrl+C)", **log)
        return 130
    except Exception as exc:  # every failure becomes one error event
        if log_path:
            with open(log_path, "a", encoding="utf-8") as fh:
                fh.write(traceback.format_exc())
        else:
            traceback.print_exc(file=sys.stderr)
        kind, message = classify(exc)
        sink.emit("error", kind=kind, message=message, **log)
        return 1


def classify(exc: BaseException) -> tuple[str, str]:
    from lorastudio.dataset import ImageError

    text = str(exc)
    if isinstance(exc, ImageError):
        return "data", text
    if type(exc).__name__ == "OutOfMemoryError" or "out of memory" in text.lower():
        return "oom", ("out of memory while drafting: " + (text.splitlines()[0] if text else "") +
                       " — try --quantization int8 (or int4), or [caption] quantization in the project")
    return "crash", f"{type(exc).__name__}: {text}"
