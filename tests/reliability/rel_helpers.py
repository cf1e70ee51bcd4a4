"""Helpers for the reliability tests (no tests here)."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import torch


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
