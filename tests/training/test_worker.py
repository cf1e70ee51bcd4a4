"""The real processes: ``lorastudio train --jsonl`` and ``lorastudio worker`` as the GUI runs
them. stdout must parse line by line as events and nothing else; stop by a ``stop`` line,
by end of stdin (worker only) and by SIGINT; error kinds and exit codes."""

from __future__ import annotations

import os
import queue
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from lorastudio import protocol
from lorastudio.training import checkpoint as ckpt

from trainer_helpers import cli_env, events_of, make_config, run_cli


def test_train_jsonl_prints_only_events_and_ignores_closed_stdin(demo_project, tmp_path):
    cfg = make_config(demo_project, tmp_path, steps=3, sample_sets=1)
    proc = run_cli("train", str(cfg), "--jsonl")  # stdin is /dev/null: `train` must not stop on EOF
    assert proc.returncode == 0, proc.stderr[-2000:]
    events = events_of(proc.stdout)  # raises on any line that is not an event
    assert events[0]["event"] == "started" and events[-1]["event"] == "done"
    assert events[-1]["stopped"] is False and events[-1]["step"] == 3
    assert [e["step"] for e in events if e["event"] == "progress"] == [1, 2, 3]
    assert Path(events[-1]["lora"]).is_file()
    run_dir = Path(events[0]["run_dir"])
    assert (run_dir / "log.txt").is_file()
    assert proc.stderr.strip() == ""  # library chatter went to the log too


class Worker:
    """A running worker/train process with its stdout read in a thread."""

    def __init__(self, *args: str, **env: str) -> None:
        self.proc = subprocess.Popen([sys.executable, "-m", "lorastudio", *args], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=cli_env(**env))
        self.lines: queue.Queue[bytes] = queue.Queue()
        self.all: list[bytes] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        for line in iter(self.proc.stdout.readline, b""):
            self.lines.put(line)
        self.lines.put(b"")

    def wait_for(self, event: str, timeout: float = 180) -> dict:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                line = self.lines.get(timeout=max(0.1, deadline - time.monotonic()))
            except queue.Empty:
                break
            if not line:
                break
            self.all.append(line)
            ev = protocol.decode(line)
            if ev["event"] == event:
                return ev
        raise AssertionError(f"no {event} event; got {[l[:200] for l in self.all]}; "
                             f"stderr: {self.proc.stderr.read()[-2000:] if self.proc.poll() is not None else ''}")

    def finish(self, timeout: float = 60) -> list[dict]:
        rc = self.proc.wait(timeout)
        while True:
            line = self.lines.get(timeout=10)
            if not line:
                break
            self.all.append(line)
        self.rc = rc
        return [protocol.decode(line) for line in self.all if line.strip()]


@pytest.mark.parametrize("how", ["stop-line", "stdin-eof", "sigint"])
def test_graceful_stop(how, demo_project, tmp_path):
    cfg = make_config(demo_project, tmp_path, steps=100000, sample_sets=1)
    args = ("train", str(cfg), "--jsonl") if how == "sigint" else ("worker", str(cfg))
    w = Worker(*args)
    try:
        w.wait_for("progress")
        if how == "stop-line":
            w.proc.stdin.write(b"stop\n")
            w.proc.stdin.flush()
        elif how == "stdin-eof":
            w.proc.stdin.close()
        else:
            w.proc.send_signal(signal.SIGINT)
        events = w.finish()  # a worker that hangs on stop fails here (finish's timeout)
    finally:
        if w.proc.poll() is None:
            w.proc.kill()
    assert w.rc == 0, w.proc.stderr.read()[-2000:]
    done = events[-1]
    assert done["event"] == "done" and done["stopped"] is True
    checkpoints = [e for e in events if e["event"] == "checkpoint"]
    assert checkpoints and checkpoints[-1]["step"] == done["step"]
    assert Path(done["lora"]).is_file()
    run_dir = Path(events[0]["run_dir"])
    assert ckpt.latest_checkpoint(run_dir).step == done["step"]
    assert any(e["event"] == "status" and e["phase"] == "stopping" for e in events)
    assert not any(e["event"] == "sample" for e in events)  # a stop does not wait for previews


def test_bad_config_names_the_key_and_loads_nothing(demo_project, tmp_path):
    cfg = make_config(demo_project, tmp_path)
    cfg.write_text(cfg.read_text().replace("[train]\n", "[train]\nlearning_rte = 0.001\n"))
    proc = run_cli("worker", str(cfg))
    assert proc.returncode == 2
    events = events_of(proc.stdout)
    assert len(events) == 1 and events[0]["event"] == "error" and events[0]["kind"] == "config"
    assert "train.learning_rte" in events[0]["message"]
    assert not (tmp_path / "output").exists()  # no run folder: nothing was loaded or written


def test_bad_model_folder_is_a_config_error(demo_project, tmp_path):
    bogus = tmp_path / "not-a-model"
    bogus.mkdir()
    (bogus / "readme.txt").write_text("hi")
    cfg = make_config(demo_project, tmp_path, model=bogus)
    proc = run_cli("train", str(cfg), "--jsonl")
    assert proc.returncode == 1
    events = events_of(proc.stdout)
    assert events[-1]["event"] == "error" and events[-1]["kind"] == "config"
    assert "model.path" in events[-1]["message"]


#: The reliability tests' fault injector (a ``sitecustomize`` wrapping the family's predict).
INJECTOR = Path(__file__).resolve().parents[1] / "reliability" / "inject"


@pytest.mark.parametrize("fault,kind", [("raise-family@2", "crash"), ("nan-family@2", "nan")])
def test_faults_end_with_an_error_event(fault, kind, demo_project, tmp_path):
    cfg = make_config(demo_project, tmp_path, steps=4, sample_sets=0)
    pythonpath = os.pathsep.join([str(INJECTOR), str(INJECTOR.parents[2]), os.environ.get("PYTHONPATH", "")])
    proc = run_cli("train", str(cfg), "--jsonl", LORASTUDIO_INJECT=fault, PYTHONPATH=pythonpath.rstrip(os.pathsep))
    assert proc.returncode == 1
    events = events_of(proc.stdout)
    error = events[-1]
    assert error["event"] == "error" and error["kind"] == kind
    assert not any(e["event"] == "done" for e in events)
    log = Path(error["log"])
    assert log.is_file()
    if kind == "crash":
        assert "injected inside the family" in error["message"] and "Traceback" in log.read_text()


def test_dry_run_prints_the_plan_without_training(demo_project, tmp_path):
    cfg = make_config(demo_project, tmp_path, steps=123)
    proc = run_cli("train", str(cfg), "--dry-run")
    assert proc.returncode == 0, proc.stderr
    assert "kontext" in proc.stdout and "123" in proc.stdout and "buckets:" in proc.stdout
    assert not (tmp_path / "output").exists()
    bad = make_config(demo_project, tmp_path / "bad", dataset=tmp_path / "nowhere")
    proc = run_cli("train", str(bad), "--dry-run")
    assert proc.returncode == 1 and "dataset.path" in proc.stderr


def _free_port() -> int:
    """A port nobody listens on now: a fixed one fails when two test sessions run at once."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_process_accelerate_run_has_one_event_stream_and_the_same_key_format(demo_project, tmp_path):
    """``accelerate launch`` with two CPU processes (gloo): only rank 0 emits and writes."""
    from lorastudio.config import load_config
    from lorastudio.training.events import NullSink
    from lorastudio.training.lora import read_lora_file
    from lorastudio.training.trainer import train

    cfg = make_config(demo_project, tmp_path / "multi", steps=2, sample_sets=0, checkpoint_every=1)
    # On a machine without GPUs, --multi_gpu starts torchrun processes that Accelerate puts on
    # the CPU with the gloo backend (plain --cpu would need mpirun for several processes).
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
           "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
           "--main_process_port", str(_free_port()), "-m", "lorastudio", "train", str(cfg), "--jsonl"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, stdin=subprocess.DEVNULL,
                          env=cli_env(CUDA_VISIBLE_DEVICES=""))
    assert proc.returncode == 0, proc.stderr[-3000:]
    events = events_of(proc.stdout)
    assert [e["event"] for e in events].count("started") == 1
    assert [e["step"] for e in events if e["event"] == "progress"] == [1, 2]
    assert [e["step"] for e in events if e["event"] == "checkpoint"] == [1, 2]
    run_dir = Path(events[0]["run_dir"])
    assert (run_dir / "log.rank1.txt").is_file()  # rank 1 ran, silently
    multi, meta = read_lora_file(Path(events[-1]["lora"]))

    single_cfg = make_config(demo_project, tmp_path / "single", steps=1, sample_sets=0)
    single, _ = read_lora_file(train(load_config(single_cfg), NullSink()).lora)
    assert sorted(multi) == sorted(single)
    assert all(multi[k].shape == single[k].shape and multi[k].dtype == single[k].dtype for k in multi)
    assert meta["lorastudio.steps"] == "2"
