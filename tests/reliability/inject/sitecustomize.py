"""Test-only fault injection for the worker process (never shipped, never imported by the app).

The reliability tests put this folder on the worker's ``PYTHONPATH``; Python imports
``sitecustomize`` at start-up, before LoRA Studio, and this module then wraps a few
library functions so that a fault happens at one precise point of a *real* run:

``LORASTUDIO_INJECT`` is a comma-separated list of:

- ``hang-step@N``        the Nth training forward pass (``family.predict``) never returns
- ``raise-family@N``     the Nth ``family.predict`` raises (an exception inside a family)
- ``nan-family@N``       the Nth ``family.predict`` returns NaN (so that step's loss is NaN)
- ``oom-family@N``       the Nth ``family.predict`` raises ``torch.OutOfMemoryError``, as CUDA does
- ``hang-checkpoint@N``  writing checkpoint N stops after ``lora.safetensors``, before the
                         optimizer state and the manifest (the checkpoint is half written)
- ``pause-checkpoint@N`` writing checkpoint N pauses after ``lora.safetensors`` (first creating
                         the mark file, see below) until this process starts to end: it has
                         emitted an ``error`` event, or a thread waits for the saves in progress
                         (``fileio.wait_for_writes``, what a process does before it exits) or
                         for the loop to reach a failed rank's step; then
                         the write completes. Holds a save astride another rank's failure.
- ``late-checkpoint@N``  rank 0 starts writing checkpoint N only after its watcher has seen
                         another rank's error file, and a second later (the race of a loaded
                         machine, where a rank fails before rank 0 begins a save that is due)
- ``after-mark``         this process's ``hang-step``/``raise-family`` fault first waits until
                         the mark file exists (another process has reached its injected point)
- ``hang-lora``          writing the LoRA file stops half way through its temporary file
- ``diskfull-checkpoint@N`` / ``diskfull-lora``  that write fails as a full disk fails:
                         safetensors' own ``SafetensorError`` for ``No space left on device
                         (os error 28)``, the exact error a real full disk gives
- ``block-network``      every IPv4/IPv6 socket, DNS lookup and connection raises
- ``block-pickle``       ``torch.load`` and ``pickle.load(s)`` raise

``LORASTUDIO_INJECT_RANK=1`` limits the faults to the process of that rank (multi-process runs);
``fault#R`` limits one fault to rank R.

A hang first creates the file named by ``LORASTUDIO_INJECT_MARK`` (so the test knows the
process is exactly there) and then sleeps until the test kills it. Every blocked network
or pickle call is also appended to ``LORASTUDIO_INJECT_LOG``, so a call a library catches
and ignores is still seen.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

def _for_this_rank(item: str) -> str | None:
    """``fault#R`` applies to the process of rank R only (multi-process runs)."""
    fault, _, rank = item.partition("#")
    return fault if not rank or os.environ.get("RANK", "0") == rank else None


SPEC = [f for f in (_for_this_rank(s.strip()) for s in os.environ.get("LORASTUDIO_INJECT", "").split(",")
                    if s.strip()) if f]
MARK = os.environ.get("LORASTUDIO_INJECT_MARK", "")
LOG = os.environ.get("LORASTUDIO_INJECT_LOG", "")


def _arg(name: str) -> int | None:
    for s in SPEC:
        kind, _, n = s.partition("@")
        if kind == name:
            return int(n) if n else 0
    return None


def _record(text: str) -> None:
    if LOG:
        with open(LOG, "a", encoding="utf-8") as fh:
            fh.write(text.replace("\n", " ") + "\n")


def _hang(where: str) -> None:
    _record(f"hang: {where}")
    _mark(where)
    while True:
        time.sleep(3600)


def _install_network_block() -> None:
    import socket

    real_socket = socket.socket

    class BlockedSocket(real_socket):
        def __init__(self, family=-1, type=-1, proto=-1, fileno=None):  # noqa: A002
            fam = socket.AF_INET if family == -1 else family
            if fileno is None and fam in (socket.AF_INET, socket.AF_INET6):
                import traceback

                stack = traceback.extract_stack()[:-1]
                where = " <- ".join(f"{'/'.join(f.filename.rsplit('/', 2)[-2:])}:{f.lineno}" for f in stack[-5:][::-1])
                # urllib3 (imported by huggingface_hub) creates one AF_INET6 socket at import to
                # see whether the machine has IPv6 (bind to ::1, no traffic): refused all the
                # same, but recorded as a probe, not as network access.
                probe = stack[-1].name == "_has_ipv6" and "urllib3" in stack[-1].filename
                _record(f"{'probe' if probe else 'network'}: socket({fam!r}) at {where}")
                raise OSError("network access blocked by the reliability tests")
            super().__init__(family, type, proto, fileno)

    def blocked(name):
        def fn(*args, **kwargs):
            _record(f"network: {name}{args[:2]!r}")
            raise OSError(f"network access blocked by the reliability tests ({name})")
        return fn

    socket.socket = BlockedSocket  # type: ignore[misc]
    socket.create_connection = blocked("create_connection")  # type: ignore[assignment]
    socket.getaddrinfo = blocked("getaddrinfo")  # type: ignore[assignment]
    socket.gethostbyname = blocked("gethostbyname")  # type: ignore[assignment]


def _install_pickle_block() -> None:
    import pickle

    def blocked(name):
        def fn(*args, **kwargs):
            _record(f"pickle: {name}")
            raise RuntimeError(f"{name} blocked by the reliability tests: nothing may be unpickled")
        return fn

    pickle.load = blocked("pickle.load")  # type: ignore[assignment]
    pickle.loads = blocked("pickle.loads")  # type: ignore[assignment]
    import torch

    torch.load = blocked("torch.load")  # type: ignore[assignment]


def _mark(where: str) -> None:
    if MARK:
        with open(MARK, "w", encoding="utf-8") as fh:
            fh.write(where)


def _await_mark() -> None:
    while not (MARK and os.path.exists(MARK)):
        time.sleep(0.05)


def _ending_signal():
    """A threading.Event set once this process starts to end (see ``pause-checkpoint``)."""
    import threading

    from lorastudio import fileio
    from lorastudio.training import events, stop

    ending = threading.Event()
    real_wait, real_emit = fileio.wait_for_writes, events.EventSink.emit
    real_wait_for_step = stop.StopSignal.wait_for_step

    def wait_for_writes(timeout):
        ending.set()
        return real_wait(timeout)

    def wait_for_step(self, step, timeout):  # a watcher letting the loop reach a failed rank's step
        ending.set()
        return real_wait_for_step(self, step, timeout)

    def emit(self, event, **fields):
        ev = real_emit(self, event, **fields)
        if event == "error":
            ending.set()
        return ev

    fileio.wait_for_writes = wait_for_writes  # before the worker module binds it by name
    stop.StopSignal.wait_for_step = wait_for_step
    events.EventSink.emit = emit
    return ending


def _install_save_faults() -> None:
    import safetensors.torch as st

    real_save_file = st.save_file
    ckpt_pause = _arg("pause-checkpoint")
    ending = _ending_signal() if ckpt_pause is not None else None
    ckpt_hang, ckpt_full = _arg("hang-checkpoint"), _arg("diskfull-checkpoint")
    lora_hang, lora_full = _arg("hang-lora") is not None, _arg("diskfull-lora") is not None

    def disk_full(filename: str):
        from safetensors import SafetensorError

        with open(filename, "wb") as fh:  # part of the file made it to disk, as on a real full disk
            fh.write(b"\0" * 1024)
        raise SafetensorError("Error while serializing: I/O error: No space left on device (os error 28)")

    def save_file(tensors, filename, metadata=None):
        name = os.path.basename(str(filename))
        folder = os.path.basename(os.path.dirname(str(filename)))
        if ending is not None and folder.startswith(f".tmp-step_{ckpt_pause:06d}-") and name == "optimizer.safetensors":
            _record(f"pause: checkpoint {ckpt_pause}")
            _mark(f"checkpoint {ckpt_pause}: {filename}")
            ending.wait()
            _record(f"resume: checkpoint {ckpt_pause}")
        for step, hang in ((ckpt_hang, True), (ckpt_full, False)):
            if step is not None and folder.startswith(f".tmp-step_{step:06d}-") and name == "optimizer.safetensors":
                return _hang(f"checkpoint {step}: {filename}") if hang else disk_full(filename)
        # the LoRA's temp file (atomic_writer: .NAME.safetensors.<pid>.<random>.tmp), not a cache entry
        is_lora_temp = (name.startswith(".") and name.endswith(".tmp") and ".safetensors." in name
                        and "cache" not in Path(str(filename)).parts)
        if is_lora_temp and lora_hang:
            real_save_file(tensors, filename, metadata=metadata)
            size = os.path.getsize(filename)
            with open(filename, "r+b") as fh:
                fh.truncate(size // 2)  # half of the file is written when the process dies
            return _hang(f"lora: {filename}")
        if is_lora_temp and lora_full:
            return disk_full(filename)
        return real_save_file(tensors, filename, metadata=metadata)

    st.save_file = save_file


def _install_late_checkpoint(step: int) -> None:
    import threading

    from lorastudio.training import events, worker

    seen = threading.Event()
    real_find, real_emit = worker.RankErrors.find, events.EventSink.emit

    def find(self):
        found = real_find(self)
        if found is not None:
            seen.set()
        return found

    def emit(self, event, **fields):
        if event == "status" and fields.get("message") == f"checkpoint at step {step}":
            _record(f"late: checkpoint {step}")
            seen.wait()
            time.sleep(1.0)  # the watcher, had it not waited, would have reported and exited by now
            _record(f"resume: checkpoint {step}")
        return real_emit(self, event, **fields)

    worker.RankErrors.find = find
    events.EventSink.emit = emit


def _install_family_faults() -> None:
    hang_at, raise_at = _arg("hang-step"), _arg("raise-family")
    nan_at, oom_at = _arg("nan-family"), _arg("oom-family")
    from lorastudio.training.families._flux_common import FluxFamilyBase

    real_predict = FluxFamilyBase.predict
    calls = [0]

    after_mark = "after-mark" in SPEC

    def predict(self, *args, **kwargs):
        calls[0] += 1
        if after_mark and calls[0] in (hang_at, raise_at):
            _await_mark()
        if calls[0] == hang_at:
            _hang(f"step: forward pass {calls[0]}")
        if calls[0] == raise_at:
            raise IndexError(f"position ids out of range (injected inside the family, forward pass {calls[0]})")
        if calls[0] == oom_at:
            import torch

            raise torch.OutOfMemoryError(f"CUDA out of memory (injected inside the family, forward pass {calls[0]})")
        pred = real_predict(self, *args, **kwargs)
        return pred * float("nan") if calls[0] == nan_at else pred

    FluxFamilyBase.predict = predict


def _install() -> None:
    if not SPEC:
        return
    only_rank = os.environ.get("LORASTUDIO_INJECT_RANK")
    if only_rank is not None and os.environ.get("RANK") != only_rank:
        return  # multi-process runs: the fault is for one rank only
    if "block-network" in SPEC:
        _install_network_block()
    if "block-pickle" in SPEC:
        _install_pickle_block()
    if any(s.split("@")[0] in ("hang-checkpoint", "pause-checkpoint", "diskfull-checkpoint", "hang-lora",
                               "diskfull-lora") for s in SPEC):
        _install_save_faults()
    if _arg("late-checkpoint") is not None:
        _install_late_checkpoint(_arg("late-checkpoint"))
    if any(_arg(kind) is not None for kind in ("hang-step", "raise-family", "nan-family", "oom-family")):
        _install_family_faults()


try:
    _install()
except Exception as exc:  # a broken injector must fail the test loudly, not silently skip the fault
    print(f"lorastudio test injector failed: {exc!r}", file=sys.stderr)
    raise
