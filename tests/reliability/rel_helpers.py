"""Helpers for the reliability tests (no tests here)."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

HERE = Path(__file__).parent
INJECT_DIR = HERE / "inject"
REPO = HERE.parent.parent

#: The run every fault test trains: 6 steps, a checkpoint every 2, 32 px, rank 4, 3 sets, inputs
#: at the target's size (an edit family's ``"pipeline"`` default would encode them at ~1 MP: slow).
RUN = {"steps": 6, "checkpoint_every": 2, "sample_every": 0, "sample_sets": 0, "sample_steps": 2,
       "resolution": 32, "rank": 4, "learning_rate": 5e-3, "seed": 7, "input_size": "target"}
SETS = 3


def write_config(demo: Path, out_dir: Path, dataset: Path | None = None, model: Path | None = None,
                 name: str = "rel_lora", **train) -> Path:
    """A config in ``out_dir`` training :data:`RUN` (overridden by ``train``), output in ``out_dir/output``."""
    from lorastudio.config import load_config, save_config

    config = load_config(demo / "project.toml")
    for key, value in {**RUN, **train}.items():
        setattr(config.train, key, value)
    if dataset is not None:
        config.dataset.path = Path(dataset)
    config.dataset.validation = []  # the demo holds out sets these runs cut away
    if model is not None:
        config.model.path = Path(model)
    config.output.dir = out_dir / "output"
    config.output.name = name
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / "config.toml"
    save_config(config, path)
    return path


def worker_env(tmp: Path, inject: str = "", **extra: str) -> dict[str, str]:
    """The environment for a worker process: offline, the injector on PYTHONPATH when asked."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("LORASTUDIO_INJECT")}
    env.update({"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "PYTHONUNBUFFERED": "1"})
    if inject:
        env["PYTHONPATH"] = os.pathsep.join([str(INJECT_DIR), str(REPO), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
        env["LORASTUDIO_INJECT"] = inject
        env["LORASTUDIO_INJECT_MARK"] = str(tmp / "inject.mark")
        env["LORASTUDIO_INJECT_LOG"] = str(tmp / "inject.log")
    env.update(extra)
    return env




class TickMeter:
    """A 20 ms QTimer on the GUI thread: the longest gap between ticks shows whether the
    event loop kept running (the app stayed responsive) while something failed."""

    def __init__(self, interval_ms: int = 20) -> None:
        from PySide6.QtCore import QTimer

        self.times: list[float] = []
        self.timer = QTimer()
        self.timer.setInterval(interval_ms)
        self.timer.timeout.connect(lambda: self.times.append(time.monotonic()))
        self.timer.start()

    def stop(self) -> None:
        self.timer.stop()

    def window(self, start: float, end: float) -> tuple[int, float]:
        """(ticks, longest gap in seconds) between ``start`` and ``end``."""
        inside = [t for t in self.times if start <= t <= end]
        edges = [start, *inside, end]
        gap = max(b - a for a, b in zip(edges, edges[1:]))
        return len(inside), gap


def pid_gone(pid: int) -> bool:
    """True when ``pid`` no longer runs (gone, or a zombie nobody reaped yet)."""
    try:
        with open(f"/proc/{pid}/stat", encoding="utf-8") as fh:
            state = fh.read().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return True
    return state in ("Z", "X")


def assert_checkpoint_loadable(cp_path: Path) -> dict:
    """Every file the manifest lists is there and loads (safetensors / JSON), tensors finite."""
    import torch
    from safetensors.torch import load_file

    manifest = json.loads((cp_path / "manifest.json").read_text(encoding="utf-8"))
    assert {"lora.safetensors", "optimizer.safetensors", "optimizer.json", "scheduler.json",
            "rng.safetensors"} <= set(manifest["files"]), manifest
    for name in manifest["files"]:
        f = cp_path / name
        assert f.is_file(), f
        if name.endswith(".safetensors"):
            tensors = load_file(str(f))
            if name != "rng.safetensors":
                assert all(torch.isfinite(t).all() for t in tensors.values() if t.is_floating_point()), f
        elif name.endswith(".json"):
            json.loads(f.read_text(encoding="utf-8"))
    return manifest


def assert_same_tensors(a: dict, b: dict) -> None:
    import torch

    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), f"{k} differs"


def rss_kb(pid: int) -> int:
    with open(f"/proc/{pid}/status", encoding="utf-8") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def inet_sockets(pid: int) -> list[str]:
    """The IPv4/IPv6 sockets (any state) the process ``pid`` holds, from /proc (Linux)."""
    inodes = set()
    fd_dir = Path(f"/proc/{pid}/fd")
    for fd in fd_dir.iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    found = []
    for table in ("tcp", "tcp6", "udp", "udp6", "raw", "raw6"):
        try:
            lines = Path(f"/proc/{pid}/net/{table}").read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            cols = line.split()
            if len(cols) > 9 and cols[9] in inodes:
                found.append(f"{table} {cols[1]} state {cols[3]}")
    return found
