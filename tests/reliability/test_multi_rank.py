"""A failure in a non-main process of a multi-process run (``accelerate launch``, two CPU
processes with gloo) must not hang rank 0, and the one event stream must name the real cause.

Rank 1 raises inside the family at its third forward pass (the test-only injector, limited to
rank 1). Rank 0 is then waiting in the step's all-reduce. It must end promptly with exactly one
``error`` event that says which process failed and why (not gloo's "connection closed by
peer"), pointing at that process's log; the checkpoints written before stay complete.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import time

import pytest

from rel_helpers import assert_checkpoint_loadable, worker_env, write_config

pytestmark = [pytest.mark.slow, pytest.mark.skipif(sys.platform == "win32", reason="gloo launch on POSIX")]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


CASES = {
    # rank 0 waits in the all-reduce (gloo then fails with "connection closed by peer")
    "rank0-in-collective": "raise-family@3#1",
    # rank 0 is stuck where no exception reaches it (as in a NCCL wait): only the error-file
    # watcher or the launcher's SIGTERM can end it, and the event must still name rank 1
    "rank0-stuck": "raise-family@3#1,hang-step@3#0",
    # rank 1 fails before rank 0 has begun writing checkpoint 2 (all ranks completed step 2):
    # the race a loaded machine runs, forced; checkpoint 2 must still be written
    "rank0-late-to-save": "late-checkpoint@2#0,raise-family@3#1",
}


def _launch_two_ranks(demo, tmp_path, inject: str):
    """Train the demo (6 steps, a checkpoint every step) with two CPU processes under
    ``accelerate launch``, faults injected; return (process, events, elapsed seconds, config)."""
    from lorastudio import protocol

    cfg = write_config(demo, tmp_path, steps=6, checkpoint_every=1)
    env = worker_env(tmp_path, inject=inject, CUDA_VISIBLE_DEVICES="")
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
           "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
           "--main_process_port", str(_free_port()), "-m", "lorastudio", "train", str(cfg), "--jsonl"]
    t0 = time.monotonic()
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, stdin=subprocess.DEVNULL, env=env)
    elapsed = time.monotonic() - t0
    events = [protocol.decode(line) for line in proc.stdout.splitlines() if line.strip()]
    return proc, events, elapsed, cfg


@pytest.mark.parametrize("case", list(CASES))
def test_rank1_exception_ends_the_run_with_its_own_message(case, demo, tmp_path):
    from lorastudio.config import load_config
    from lorastudio.training import checkpoint as ckpt

    proc, events, elapsed, cfg = _launch_two_ranks(demo, tmp_path, CASES[case])
    errors = [e for e in events if e["event"] == "error"]
    print(f"\n{case}: multi-process run with a failing rank 1 ended after {elapsed:.1f} s: {errors}")
    assert proc.returncode != 0
    assert len(errors) == 1 and events[-1] is errors[0], events[-4:]
    assert "process 1 of 2 failed" in errors[0]["message"] and "IndexError" in errors[0]["message"]
    assert errors[0]["log"].endswith("log.rank1.txt")
    assert not any(e["event"] == "done" for e in events)
    run_dir = load_config(cfg).output.run_dir
    steps = [c.step for c in ckpt.list_checkpoints(run_dir)]
    assert steps == [1, 2], steps  # rank 1 failed in step 3: steps 1 and 2 were saved whole
    assert_checkpoint_loadable(ckpt.latest_checkpoint(run_dir).path)


def test_a_checkpoint_being_written_when_rank1_fails_is_announced_before_the_error(demo, tmp_path):
    """The race of a loaded machine, forced: rank 0 is writing checkpoint 2 when rank 1 fails.

    Rank 0's watcher thread reports rank 1's failure while rank 0's training thread is still
    inside the save. Before the fix the error went out at once and the save's ``checkpoint``
    event followed it (or was lost when the process exited), breaking "``error`` is the last
    event". Here rank 0's write of checkpoint 2 pauses half way (after its LoRA tensors) until
    rank 0 starts to end, and rank 1 raises only once rank 0 is paused there, so the failure
    lands inside the save on every machine. The save must complete and be announced, then the
    error, naming rank 1, ends the stream.
    """
    from lorastudio.config import load_config
    from lorastudio.training import checkpoint as ckpt

    proc, events, _elapsed, cfg = _launch_two_ranks(
        demo, tmp_path, "pause-checkpoint@2#0,raise-family@3#1,after-mark#1")
    kinds = [e["event"] for e in events]
    assert proc.returncode != 0
    assert kinds.count("error") == 1 and kinds[-1] == "error", events[-4:]
    assert "process 1 of 2 failed" in events[-1]["message"] and "IndexError" in events[-1]["message"]
    assert [e["step"] for e in events if e["event"] == "checkpoint"] == [1, 2], events[-4:]
    run_dir = load_config(cfg).output.run_dir
    assert [c.step for c in ckpt.list_checkpoints(run_dir)] == [1, 2]
    assert_checkpoint_loadable(ckpt.latest_checkpoint(run_dir).path)
