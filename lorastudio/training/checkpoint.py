"""Checkpoints: everything needed to continue a run exactly, written all-or-nothing.

``run_dir/checkpoints/step_000020/`` (names and "is it complete?" in ``lorastudio.run_folder``)::

    lora.safetensors        the LoRA parameters (peft names, float32)
    optimizer.safetensors   AdamW state tensors (``state.<param index>.<name>``)
    optimizer.json          AdamW param groups (learning rate, betas, …)
    scheduler.json          the LR scheduler's state (step counters, base LRs)
    rng.safetensors         torch CPU (and CUDA) RNG states, Python's and numpy's as bytes
    manifest.json           step, total, family, version, files, validation_loss, best — written last

A checkpoint is assembled in a hidden temporary folder next to the others and renamed into
place only when complete, so a crash leaves either the whole checkpoint or none (a stale
temporary folder is removed on the next save). Only checkpoints with a ``manifest.json``
count. The last :data:`KEEP` are kept, and the best one (the lowest held-out
``validation_loss``; ``training/validation.py``) wherever it is. A fresh (not resumed) run first moves an earlier
run's checkpoints to ``run_dir/checkpoints.previous/`` (:func:`retire_checkpoints`). No
pickle anywhere: tensors go to safetensors, everything else to JSON.

Data order and noise are pure functions of ``(seed, step)`` in the trainer, so the RNG
states are saved for completeness (dropout-like randomness in a model), not because the
loop depends on them.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from lorastudio.fileio import atomic_write_text, writing
from lorastudio.run_folder import (  # noqa: F401  (the layout's names, re-exported for the trainer)
    MANIFEST,
    PREVIOUS_CHECKPOINTS as PREVIOUS,
    Checkpoint,
    checkpoint_dir,
    checkpoint_path,
    latest_checkpoint,
    list_checkpoints,
    lowest_validation_loss,
    previous_checkpoint_dir,
    step_name,
)

KEEP = 3


# -- optimizer / scheduler / rng as safetensors + json ------------------------------------

def _optimizer_parts(optimizer: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    sd = optimizer.state_dict()
    tensors: dict[str, torch.Tensor] = {}
    scalars: dict[str, dict[str, Any]] = {}
    for idx, state in sd["state"].items():
        for name, value in state.items():
            # bitsandbytes' 8-bit optimizers nest their quantization state in a dict: one
            # level of nesting is flattened as "outer/inner" (undone in _optimizer_state).
            items = {f"{name}/{k}": v for k, v in value.items()} if isinstance(value, dict) else {name: value}
            for key, item in items.items():
                if torch.is_tensor(item):
                    tensors[f"state.{idx}.{key}"] = item.detach().to("cpu").contiguous()
                else:
                    scalars.setdefault(str(idx), {})[key] = item
    return tensors, {"param_groups": sd["param_groups"], "scalars": scalars}


def _optimizer_state(tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> dict[str, Any]:
    state: dict[int, dict[str, Any]] = {}
    for key, value in tensors.items():
        _, idx, name = key.split(".", 2)
        state.setdefault(int(idx), {})[name] = value
    for idx, values in meta.get("scalars", {}).items():
        state.setdefault(int(idx), {}).update(values)
    for values in state.values():
        for key in [k for k in values if "/" in k]:
            outer, inner = key.split("/", 1)
            values.setdefault(outer, {})[inner] = values.pop(key)
    groups = meta["param_groups"]
    for g in groups:
        if "betas" in g and isinstance(g["betas"], list):
            g["betas"] = tuple(g["betas"])
    return {"state": state, "param_groups": groups}


def _scheduler_state(scheduler: Any) -> dict[str, Any]:
    sd = scheduler.state_dict()
    out = {}
    for k, v in sd.items():
        try:
            json.dumps(v)
        except TypeError:
            continue  # lr_lambdas and other callables: rebuilt from the config
        out[k] = v
    return out


def _rng_tensors() -> dict[str, torch.Tensor]:
    out = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        for i, s in enumerate(torch.cuda.get_rng_state_all()):
            out[f"cuda.{i}"] = s
    py = json.dumps(random.getstate(), default=list).encode()
    out["python"] = torch.frombuffer(bytearray(py), dtype=torch.uint8).clone()
    np_state = np.random.get_state()
    out["numpy.keys"] = torch.from_numpy(np.asarray(np_state[1], dtype=np.int64).copy())
    out["numpy.pos"] = torch.tensor([int(np_state[2]), int(np_state[3])], dtype=torch.int64)
    out["numpy.gauss"] = torch.tensor([float(np_state[4])], dtype=torch.float64)
    return out


def _restore_rng(t: dict[str, torch.Tensor]) -> None:
    torch.set_rng_state(t["torch"])
    cuda = [t[k] for k in sorted(k for k in t if k.startswith("cuda."))]
    if cuda and torch.cuda.is_available():
        try:
            torch.cuda.set_rng_state_all(cuda)
        except Exception:  # different GPU count: data order and noise do not depend on it
            pass
    py = json.loads(bytes(t["python"].tolist()).decode())
    random.setstate((py[0], tuple(py[1]), py[2]))
    pos = t["numpy.pos"].tolist()
    np.random.set_state(("MT19937", t["numpy.keys"].numpy().astype(np.uint32), pos[0], pos[1],
                         float(t["numpy.gauss"][0])))


# -- save / find / load -------------------------------------------------------------------

def save_checkpoint(run_dir: Path, step: int, lora_state: dict[str, torch.Tensor],
                    optimizer: torch.optim.Optimizer, scheduler: Any, info: dict[str, Any],
                    keep: int = KEEP, extra: dict[str, dict[str, torch.Tensor]] | None = None) -> Path:
    """Write checkpoint ``step`` completely, then rename it into place; prune to ``keep``.
    ``extra``: more tensors to keep, ``<name>.safetensors`` each (the EMA weights)."""
    with writing():  # a process ending abruptly waits for this save (fileio.wait_for_writes)
        return _save_checkpoint(run_dir, step, lora_state, optimizer, scheduler, info, keep, extra or {})


def _save_checkpoint(run_dir: Path, step: int, lora_state: dict[str, torch.Tensor],
                     optimizer: torch.optim.Optimizer, scheduler: Any, info: dict[str, Any], keep: int,
                     extra: dict[str, dict[str, torch.Tensor]]) -> Path:
    from safetensors.torch import save_file

    root = checkpoint_dir(run_dir)
    root.mkdir(parents=True, exist_ok=True)
    for stale in root.glob(".tmp-*"):
        shutil.rmtree(stale, ignore_errors=True)
    final = checkpoint_path(run_dir, step)
    tmp = root / f".tmp-{step_name(step)}-{os.getpid()}-{time.monotonic_ns()}"
    tmp.mkdir()
    try:
        save_file({k: v.detach().to("cpu").contiguous() for k, v in lora_state.items()}, str(tmp / "lora.safetensors"))
        opt_tensors, opt_meta = _optimizer_parts(optimizer)
        save_file(opt_tensors, str(tmp / "optimizer.safetensors"))
        (tmp / "optimizer.json").write_text(json.dumps(opt_meta), encoding="utf-8")
        (tmp / "scheduler.json").write_text(json.dumps(_scheduler_state(scheduler)), encoding="utf-8")
        save_file(_rng_tensors(), str(tmp / "rng.safetensors"))
        for name, tensors in extra.items():
            save_file({k: v.detach().to("cpu").contiguous() for k, v in tensors.items()}, str(tmp / f"{name}.safetensors"))
        files = sorted(p.name for p in tmp.iterdir())
        for name in files:  # on disk before the manifest says they are: a power cut cannot
            _fsync(tmp / name)  # leave a manifest naming files the disk never got
        manifest = {"step": step, **info, "files": files}
        atomic_write_text(tmp / MANIFEST, json.dumps(manifest, indent=2))
        _fsync_dir(tmp)
        if final.exists():  # re-saving the same step (stop right after a periodic checkpoint)
            shutil.rmtree(final)
        os.replace(tmp, final)
        _fsync_dir(root)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    prune(run_dir, keep)
    return final


def _fsync(path: Path) -> None:
    """Flush a file (or, on POSIX, a folder's entries) to disk; best effort, never raises."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:  # pragma: no cover
        return
    try:
        os.fsync(fd)
    except OSError:  # pragma: no cover
        pass
    finally:
        os.close(fd)


def _fsync_dir(path: Path) -> None:
    if os.name == "posix":  # Windows cannot open a folder for fsync
        _fsync(path)


def retire_checkpoints(run_dir: Path) -> Path | None:
    """Move a previous run's checkpoints to ``checkpoints.previous/`` before a fresh run.

    Checkpoints are found, pruned and resumed by step number alone, so a fresh (not resumed)
    run sharing the folder with an older run's higher steps would have its own first
    checkpoints pruned the moment they are written, and a later ``--resume`` would continue
    the *old* run. Moved, not deleted: clicking Train instead of Resume by mistake must not
    throw hours of training away (one generation is kept; an older one is replaced).
    Returns the new location, or None when there was nothing to move.
    """
    root = checkpoint_dir(run_dir)
    if not root.is_dir() or not any(root.iterdir()):
        return None
    previous = previous_checkpoint_dir(run_dir)
    if previous.exists():
        shutil.rmtree(previous)
    os.replace(root, previous)
    return previous


def prune(run_dir: Path, keep: int = KEEP) -> None:
    """Keep the last ``keep`` checkpoints, and the best one (held-out validation) wherever it is."""
    cps = list_checkpoints(run_dir)
    best = lowest_validation_loss(cps)
    for cp in cps[:-keep] if keep > 0 else []:
        if best is None or cp.step != best.step:
            shutil.rmtree(cp.path, ignore_errors=True)


def mark_best(run_dir: Path, step: int) -> None:
    """Make checkpoint ``step`` the only one whose manifest says ``"best": true`` (each
    manifest rewritten atomically)."""
    for cp in list_checkpoints(run_dir):
        if cp.manifest.get("best", False) != (cp.step == step):
            atomic_write_text(cp.path / MANIFEST, json.dumps({**cp.manifest, "best": cp.step == step}, indent=2))


def load_extra(cp: Checkpoint, name: str) -> dict[str, torch.Tensor]:
    """The ``extra`` tensors ``name`` saved with the checkpoint (the EMA weights)."""
    from safetensors.torch import load_file

    path = cp.path / f"{name}.safetensors"
    if not path.is_file():
        raise FileNotFoundError(f"{cp.path} has no {name} state (it was saved without it); "
                                "resume with the same settings or start a new run")
    return load_file(str(path))


def load_checkpoint(cp: Checkpoint, optimizer: torch.optim.Optimizer, scheduler: Any) -> dict[str, torch.Tensor]:
    """Restore optimizer, scheduler and RNG state; return the LoRA state dict to load."""
    from safetensors.torch import load_file

    lora = load_file(str(cp.path / "lora.safetensors"))
    opt_tensors = load_file(str(cp.path / "optimizer.safetensors"))
    opt_meta = json.loads((cp.path / "optimizer.json").read_text(encoding="utf-8"))
    optimizer.load_state_dict(_optimizer_state(opt_tensors, opt_meta))
    sched = json.loads((cp.path / "scheduler.json").read_text(encoding="utf-8"))
    current = scheduler.state_dict()
    current.update(sched)
    scheduler.load_state_dict(current)
    _restore_rng(load_file(str(cp.path / "rng.safetensors")))
    return lora
