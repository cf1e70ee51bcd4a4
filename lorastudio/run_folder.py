"""The layout of a run folder (``OUTPUT/NAME.run/``), stated once for the worker and the GUI.

::

    NAME.run/
      config.toml                   the run's resolved config (model, dataset, recipe, output), written at start
      log.txt                       the worker's log (log.rank<N>.txt for other processes)
      cache/                        cached latents and prompt encodings
      samples/step_000020_SET.png   previews
      checkpoints/step_000020/      one complete checkpoint; manifest.json is written last
      checkpoints.previous/         the checkpoints of the run before a fresh start
      logs/                         train.log_with's tracker files (tensorboard --logdir)
      grid.png                      ``lorastudio grid``'s checkpoint grid (when no --out is given)
      validation.jsonl              held-out validation: one ``validation`` event per line
      tests/                        the app's Test tab: its images, grids and exported checkpoints

The worker writes it (``training/checkpoint.py``, the trainer); the GUI and the commands that
work on a finished run (``lorastudio export``, ``lorastudio grid``) read it (is there a
checkpoint Resume can continue from? which one is the best? where is the log?). All ask this
module, so they can never disagree about a name. Pure Python (no Qt, no torch).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

CHECKPOINTS = "checkpoints"
#: Where a fresh run moves the checkpoints of the run before it.
PREVIOUS_CHECKPOINTS = "checkpoints.previous"
#: Written last into a checkpoint folder: a checkpoint without it is incomplete.
MANIFEST = "manifest.json"
SAMPLES = "samples"
CACHE = "cache"
#: ``train.log_with``'s tracker writes here (accelerate's ``project_dir``).
LOGS = "logs"
#: The run's own copy of its config, so a run folder alone says which model, dataset and
#: output it belongs to (``export`` and ``grid`` take nothing but the folder).
CONFIG = "config.toml"
#: ``lorastudio grid``'s PNG when no ``--out`` is given.
GRID = "grid.png"
#: The held-out validation events, one JSON object per line.
VALIDATION = "validation.jsonl"
#: The app's Test tab writes here (generated images, checkpoint grids, exported checkpoints).
TESTS = "tests"


@dataclass
class Checkpoint:
    step: int
    path: Path
    manifest: dict[str, Any]


def step_name(step: int) -> str:
    """``step_000020``: checkpoint folders and previews sort by step as text."""
    return f"step_{step:06d}"


def checkpoint_dir(run_dir: Path) -> Path:
    return Path(run_dir) / CHECKPOINTS


def previous_checkpoint_dir(run_dir: Path) -> Path:
    return Path(run_dir) / PREVIOUS_CHECKPOINTS


def checkpoint_path(run_dir: Path, step: int) -> Path:
    return checkpoint_dir(run_dir) / step_name(step)


def sample_path(run_dir: Path, step: int, set_name: str) -> Path:
    """The preview of set ``set_name`` at ``step``."""
    return Path(run_dir) / SAMPLES / f"{step_name(step)}_{set_name}.png"


def logs_dir(run_dir: Path) -> Path:
    return Path(run_dir) / LOGS


def validation_path(run_dir: Path) -> Path:
    """``validation.jsonl``: every ``validation`` event of the run (command-line users read it)."""
    return Path(run_dir) / VALIDATION


def validation_events(run_dir: Path, up_to: int | None = None) -> list[dict[str, Any]]:
    """The ``validation`` events in ``validation.jsonl`` (those at steps ≤ ``up_to`` when given),
    in file order. A line cut short by a kill, or anything else that is not one, is skipped:
    the trainer resuming a run and the GUI redrawing its chart read the same history."""
    from lorastudio import protocol

    path = validation_path(run_dir)
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError:
        return []
    events = []
    for line in lines:
        try:
            event = protocol.decode(line)
        except protocol.ProtocolError:
            continue
        if event.get("event") == protocol.VALIDATION and (up_to is None or int(event.get("step", 0)) <= up_to):
            events.append(event)
    return events


def cache_dir(run_dir: Path) -> Path:
    return Path(run_dir) / CACHE


def config_path(run_dir: Path) -> Path:
    return Path(run_dir) / CONFIG


def grid_path(run_dir: Path) -> Path:
    return Path(run_dir) / GRID


def tests_dir(run_dir: Path) -> Path:
    return Path(run_dir) / TESTS


def log_path(run_dir: Path, rank: int = 0) -> Path:
    """The worker's log; each extra process of a multi-GPU run has its own."""
    return Path(run_dir) / ("log.txt" if rank == 0 else f"log.rank{rank}.txt")


def list_checkpoints(run_dir: Path) -> list[Checkpoint]:
    """Complete checkpoints (a readable manifest, every file it lists present), oldest first."""
    out = []
    root = checkpoint_dir(run_dir)
    if not root.is_dir():
        return out
    for d in root.iterdir():
        if not d.is_dir() or not d.name.startswith("step_"):
            continue
        try:
            manifest = json.loads((d / MANIFEST).read_text(encoding="utf-8"))
            step = int(manifest["step"])
        except (OSError, ValueError, KeyError, TypeError):
            continue
        if all((d / f).is_file() for f in manifest.get("files", [])):
            out.append(Checkpoint(step=step, path=d, manifest=manifest))
    return sorted(out, key=lambda c: c.step)


def latest_checkpoint(run_dir: Path) -> Checkpoint | None:
    cps = list_checkpoints(run_dir)
    return cps[-1] if cps else None


def has_checkpoint(run_dir: Path) -> bool:
    """True when the run folder holds a complete checkpoint that Resume can continue from."""
    return latest_checkpoint(run_dir) is not None


def checkpoint_at(run_dir: Path, step: int) -> Checkpoint | None:
    """The complete checkpoint at ``step``, or None when none is kept there."""
    return next((c for c in list_checkpoints(run_dir) if c.step == step), None)


def best_checkpoint(run_dir: Path) -> Checkpoint | None:
    """The checkpoint whose manifest says ``"best": true`` (the trainer marks the one
    :func:`lowest_validation_loss` picks), or None when validation never ran. Should two say
    so, the later one."""
    best = [c for c in list_checkpoints(run_dir) if c.manifest.get("best") is True]
    return best[-1] if best else None


def lowest_validation_loss(checkpoints: list[Checkpoint]) -> Checkpoint | None:
    """The checkpoint with the lowest ``validation_loss`` in its manifest (the earliest of
    equals), or None when none was validated: what "best" means, for the trainer that marks
    it and for everything that reads it."""
    scored = [cp for cp in checkpoints if isinstance(cp.manifest.get("validation_loss"), (int, float))]
    return min(scored, key=lambda cp: (cp.manifest["validation_loss"], cp.step), default=None)
