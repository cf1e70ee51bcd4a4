"""The worker's event protocol: one JSON object per line on stdout, commands on stdin.

Both sides import this module (the worker to write events, the GUI's runner to read them),
so the names below are the contract. Pure Python: no Qt, no torch.

Events (field ``event``):

- ``started``     ``total``, ``family``, ``sets``, ``run_dir``, ``resumed_from`` (step or 0)
- ``status``      ``phase`` (``loading``, ``caching``, ``training``, ``sampling``, ``saving``,
                  ``stopping``, ``captioning``, ``grid``), ``message``, optional ``current``/``total``
                  progress (``grid``: cells drawn so far / cells in all, from ``lorastudio grid``)
- ``progress``    ``step`` (1…total), ``total``, ``loss``, ``lr``, ``rate`` (steps/s), ``eta`` (s)
- ``sample``      ``step``, ``path`` (a PNG), ``set`` (the set's name), ``target`` (its target image)
- ``checkpoint``  ``step``, ``path``, sent only once the checkpoint is complete on disk
- ``validation``  ``step``, ``loss`` (the held-out sets' loss, mean over σ), ``per_sigma``
                  (``{"0.1": x, "0.3": x, "0.5": x, "0.7": x, "0.9": x}``); also kept, one per
                  line, in the run folder's ``validation.jsonl``
- ``caption``     ``set`` (the set's name), ``text`` (a drafted caption; ``lorastudio caption``),
                  ``written`` (bool: the command wrote it; false for ``--no-write``, the app's drafts)
- ``done``        ``lora`` (path), ``step`` (the last step trained), ``stopped`` (bool), optional
                  ``best`` (path of ``NAME.best.safetensors``, when validation ran); a caption
                  run's ``done`` has ``drafted`` (count) and ``stopped`` instead of ``lora``/``step``;
                  a grid's has ``grid`` (the PNG's path, null when cancelled: no PNG written) and ``stopped``
- ``error``       ``message``, ``kind`` (one of ``ERROR_KINDS``), optional ``log`` path

Commands (GUI → worker, one per line on stdin): ``stop``. End of stdin also means stop
(for ``worker``, ``caption --no-write`` and ``grid --jsonl``).
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path
from typing import Any, Iterable

STARTED = "started"
STATUS = "status"
PROGRESS = "progress"
SAMPLE = "sample"
CHECKPOINT = "checkpoint"
VALIDATION = "validation"
CAPTION = "caption"
DONE = "done"
ERROR = "error"
EVENTS = (STARTED, STATUS, PROGRESS, SAMPLE, CHECKPOINT, VALIDATION, CAPTION, DONE, ERROR)

#: ``error.kind`` values: out of memory, a non-finite loss, bad input data, a bad config or
#: model folder, anything else.
ERROR_KINDS = ("oom", "nan", "data", "config", "crash")

#: The stop command the GUI writes on the worker's stdin.
STOP_COMMAND = "stop"


class ProtocolError(ValueError):
    """A line from the worker that is not a well-formed event."""


def make_event(event: str, **fields: Any) -> dict[str, Any]:
    if event not in EVENTS:
        raise ValueError(f"unknown event {event!r}")
    if event == ERROR and fields.get("kind") not in ERROR_KINDS:
        raise ValueError(f"error kind must be one of {ERROR_KINDS}, got {fields.get('kind')!r}")
    return {"event": event, **fields}


def encode(event: dict[str, Any]) -> str:
    """One line of JSON (no trailing newline). Non-finite floats become null: JSON has no NaN."""
    return json.dumps(_finite(event), ensure_ascii=False, separators=(",", ":"))


def decode(line: str | bytes) -> dict[str, Any]:
    """Parse one line into an event dict, or raise ProtocolError."""
    if isinstance(line, bytes):
        line = line.decode("utf-8", errors="replace")
    line = line.strip()
    try:
        obj = json.loads(line)
    except json.JSONDecodeError as exc:
        raise ProtocolError(f"not JSON: {line[:200]!r} ({exc})") from None
    if not isinstance(obj, dict) or obj.get("event") not in EVENTS:
        raise ProtocolError(f"not an event: {line[:200]!r}")
    return obj


def decode_stream(lines: Iterable[str | bytes]) -> list[dict[str, Any]]:
    """Parse a whole stream of lines (blank lines skipped); raises on the first bad one."""
    return [decode(line) for line in lines if (line.strip() if isinstance(line, str) else line.strip())]


def _finite(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value


def lorastudio_command_line(*args: str) -> list[str]:
    """argv that runs ``lorastudio ARGS…`` as a child process of this one.

    In a frozen bundle ``sys.executable`` is the app itself (``main.py`` routes
    ``--worker`` and the other subcommands); otherwise it is Python, and ``-m lorastudio``
    works without the console script being on PATH.
    """
    if getattr(sys, "frozen", False):
        exe = frozen_child_executable()
        if args and args[0] == "worker":
            return [exe, "--worker", *args[1:]]
        return [exe, *args]
    return [sys.executable, "-m", "lorastudio", *args]


#: Windows bundles: the console twin of the windowed ``LoRAStudio.exe`` (packaging/README.md).
WINDOWS_CLI_EXE = "lorastudio-cli.exe"


def frozen_child_executable() -> str:
    """The bundle's executable for child processes.

    On Windows the app is a windowed exe, which starts without standard streams; its
    children (worker, demo, sample) run the console twin beside it, whose stdout is the pipe
    the app reads (started with CREATE_NO_WINDOW, so no console appears). Elsewhere, and if
    the twin is missing, the app itself.
    """
    if sys.platform == "win32":
        twin = Path(sys.executable).with_name(WINDOWS_CLI_EXE)
        if twin.is_file():
            return str(twin)
    return sys.executable


def worker_command_line(config_path: str | Path, resume: bool = False) -> list[str]:
    """argv of the training worker for ``config_path`` (what the GUI's runner starts)."""
    return lorastudio_command_line("worker", str(config_path), *(["--resume"] if resume else []))
