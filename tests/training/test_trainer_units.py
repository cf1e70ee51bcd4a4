"""Unit tests of the training engine's pieces that need no model: data order, noise,
checkpoints on disk, the event stream's stdout isolation, the stop watcher, error kinds."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from lorastudio import protocol
from lorastudio.training import checkpoint as ckpt
from lorastudio.training.stop import StopSignal
from lorastudio.training.batches import BatchOrder, noise_and_sigmas
from lorastudio.training.plan import TrainingError, classify


class _Set:
    def __init__(self, bucket, inputs=((32, 32),)):
        self.bucket = bucket
        self.input_sizes = list(inputs)


def test_batch_order_is_a_pure_function_of_seed_and_step():
    sets = [_Set((32, 32)) for _ in range(5)] + [_Set((48, 16)) for _ in range(3)]
    a, b = BatchOrder(sets, 2, seed=3), BatchOrder(sets, 2, seed=3)
    steps = list(range(1, 30))
    assert [a.batch(s) for s in steps] == [b.batch(s) for s in reversed(steps)][::-1]
    # each epoch covers every set once, and a batch never mixes buckets
    per_epoch = a.per_epoch
    assert per_epoch == 3 + 2
    seen = sorted(i for s in range(1, per_epoch + 1) for i in a.batch(s))
    assert seen == list(range(8))
    for s in steps:
        assert len({sets[i].bucket for i in a.batch(s)}) == 1
    assert [BatchOrder(sets, 2, seed=4).batch(s) for s in steps] != [a.batch(s) for s in steps]
    # two processes take interleaved batches of the same global order
    assert a.batch(3, rank=1, world=2) == a.batch(6)


def test_noise_depends_only_on_seed_step_rank():
    n1, s1 = noise_and_sigmas((2, 4, 3, 3), 1, 5, 0)
    torch.randn(100)  # global RNG use in between changes nothing
    n2, s2 = noise_and_sigmas((2, 4, 3, 3), 1, 5, 0)
    assert torch.equal(n1, n2) and torch.equal(s1, s2)
    assert not torch.equal(n1, noise_and_sigmas((2, 4, 3, 3), 1, 6, 0)[0])
    assert not torch.equal(n1, noise_and_sigmas((2, 4, 3, 3), 1, 5, 1)[0])
    assert ((s1 > 0) & (s1 < 1)).all()


def _optimizer():
    from diffusers.optimization import get_scheduler

    torch.manual_seed(0)
    params = [torch.nn.Parameter(torch.randn(4, 3)), torch.nn.Parameter(torch.randn(3))]
    opt = torch.optim.AdamW(params, lr=1e-3)
    sched = get_scheduler("constant_with_warmup", opt, num_warmup_steps=3, num_training_steps=10)
    for _ in range(2):
        sum((p ** 2).sum() for p in params).backward()
        opt.step()
        sched.step()
        opt.zero_grad()
    return params, opt, sched


def test_checkpoint_roundtrip_is_exact_and_pickle_free(tmp_path):
    params, opt, sched = _optimizer()
    lora = {"a.lora_A.weight": params[0].detach().clone()}
    path = ckpt.save_checkpoint(tmp_path, 2, lora, opt, sched, {"total": 10})
    assert path == tmp_path / "checkpoints" / "step_000002"
    names = sorted(p.name for p in path.iterdir())
    assert names == ["lora.safetensors", "manifest.json", "optimizer.json", "optimizer.safetensors",
                     "rng.safetensors", "scheduler.json"]
    manifest = json.loads((path / "manifest.json").read_text())
    assert manifest["step"] == 2 and manifest["total"] == 10
    expected_opt, expected_sched = opt.state_dict(), sched.state_dict()
    expected_rng = torch.get_rng_state()
    torch.randn(10)

    params2, opt2, sched2 = _optimizer()
    for _ in range(3):  # move them away from the saved state
        opt2.step()
        sched2.step()
    loaded = ckpt.load_checkpoint(ckpt.latest_checkpoint(tmp_path), opt2, sched2)
    assert torch.equal(loaded["a.lora_A.weight"], lora["a.lora_A.weight"])
    got = opt2.state_dict()
    for idx, state in expected_opt["state"].items():
        for k, v in state.items():
            assert torch.equal(got["state"][idx][k], v)
    assert sched2.state_dict()["last_epoch"] == expected_sched["last_epoch"]
    assert sched2.get_last_lr() == sched.get_last_lr()
    assert torch.equal(torch.get_rng_state(), expected_rng)


def test_incomplete_checkpoints_are_ignored_and_only_three_kept(tmp_path):
    params, opt, sched = _optimizer()
    for step in (1, 2, 3, 4, 5):
        ckpt.save_checkpoint(tmp_path, step, {"w": params[0].detach()}, opt, sched, {})
    assert [c.step for c in ckpt.list_checkpoints(tmp_path)] == [3, 4, 5]
    # a half-written checkpoint (crash before the rename) and a folder without manifest
    (tmp_path / "checkpoints" / ".tmp-step_000006-1-2").mkdir()
    (tmp_path / "checkpoints" / "step_000007").mkdir()
    (tmp_path / "checkpoints" / "step_000008").mkdir()
    (tmp_path / "checkpoints" / "step_000008" / "manifest.json").write_text('{"step": 8, "files": ["lora.safetensors"]}')
    assert ckpt.latest_checkpoint(tmp_path).step == 5
    ckpt.save_checkpoint(tmp_path, 6, {"w": params[0].detach()}, opt, sched, {})
    assert not list((tmp_path / "checkpoints").glob(".tmp-*"))


def test_a_failing_checkpoint_write_leaves_nothing(tmp_path, monkeypatch):
    params, opt, sched = _optimizer()
    ckpt.save_checkpoint(tmp_path, 1, {"w": params[0].detach()}, opt, sched, {})
    monkeypatch.setattr(ckpt, "_rng_tensors", lambda: (_ for _ in ()).throw(OSError("disk full")))
    with pytest.raises(OSError):
        ckpt.save_checkpoint(tmp_path, 2, {"w": params[0].detach()}, opt, sched, {})
    assert [p.name for p in (tmp_path / "checkpoints").iterdir()] == ["step_000001"]


def test_stdout_carries_only_events_even_from_c_level_writes(tmp_path):
    """Python prints, os.write(1), libc puts, warnings, logging and stderr all go to the log."""
    script = textwrap.dedent(f"""
        import ctypes, logging, os, sys, warnings
        from pathlib import Path
        from lorastudio.training.events import JsonlSink, redirect_stdio
        r = redirect_stdio(Path({str(tmp_path / 'log.txt')!r}))
        sink = JsonlSink(r.events)
        sink.emit("status", phase="loading", message="one")
        print("python print")
        os.write(1, b"raw fd write\\n")
        libc = ctypes.CDLL(None); libc.puts(b"libc puts"); libc.fflush(None)
        warnings.warn("a warning")
        logging.getLogger("x").warning("a log line")
        print("to stderr", file=sys.stderr)
        sink.emit("done", lora=None, step=0, stopped=False)
        r.close()
    """)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    events = [protocol.decode(line) for line in proc.stdout.splitlines()]
    assert [e["event"] for e in events] == ["status", "done"]
    log = (tmp_path / "log.txt").read_text()
    for text in ("python print", "raw fd write", "libc puts", "a warning", "a log line", "to stderr"):
        assert text in log


def test_stop_watcher_line_and_eof():
    r, w = os.pipe()
    stop = StopSignal()
    stop.watch_stdin(stop_on_eof=False, stream=r)
    os.write(w, b"hello\n")
    assert not stop.wait(0.2)
    os.write(w, b"stop\n")
    assert stop.wait(5) and stop.reason == "stop command"
    os.close(w)

    r, w = os.pipe()
    eof_stop = StopSignal()
    t = eof_stop.watch_stdin(stop_on_eof=True, stream=r)
    os.close(w)
    assert eof_stop.wait(5) and eof_stop.reason == "stdin closed"

    r, w = os.pipe()
    train_stop = StopSignal()
    t = train_stop.watch_stdin(stop_on_eof=False, stream=r)
    os.close(w)
    t.join(5)
    assert not train_stop.is_set()  # `train` keeps going under nohup


def test_error_kinds():
    from lorastudio.config import ConfigError
    from lorastudio.dataset import ImageError

    assert classify(torch.OutOfMemoryError("CUDA out of memory. Tried to allocate"))[0] == "oom"
    assert classify(RuntimeError("CUDA error: out of memory"))[0] == "oom"
    assert classify(TrainingError("nan", "loss nan")) == ("nan", "loss nan")
    assert classify(ConfigError("train.steps: bad"))[0] == "config"
    assert classify(ImageError("/x.png", "damaged"))[0] == "data"
    kind, message = classify(ValueError("boom"))
    assert kind == "crash" and "ValueError" in message and "boom" in message
    for kind in ("oom", "nan", "data", "config", "crash"):
        assert kind in protocol.ERROR_KINDS
