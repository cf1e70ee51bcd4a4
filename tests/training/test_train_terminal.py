"""What a person sees from ``lorastudio train`` without ``--jsonl``: on a terminal one live
tqdm bar with the status lines above it; into a pipe or a log plain lines (no carriage
returns, no escape codes, no blank lines). ``--jsonl`` is covered in test_worker.py."""

from __future__ import annotations

import io
import os
import subprocess
import sys
from pathlib import Path

import pytest

from lorastudio.training.terminal import TerminalSink

from trainer_helpers import cli_env, make_config, run_cli


def test_into_a_pipe_every_line_is_a_plain_log_line(demo_project, tmp_path):
    cfg = make_config(demo_project, tmp_path, steps=3, sample_sets=1, checkpoint_every=2)
    proc = run_cli("train", str(cfg))
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = proc.stdout
    assert "\r" not in out and "\x1b" not in out, repr(out[:500])
    lines = out.splitlines()
    assert all(line.strip() for line in lines), f"blank line in {lines}"
    assert lines[0] == "Training kontext LoRA: 12 sets, 3 steps"
    assert "training: training 3 steps" in lines
    assert any(line.startswith("checkpoint at step 2: ") for line in lines)
    progress = [line for line in lines if line.startswith("step ")]
    assert progress[-1].startswith("step 3/3  loss ") and "steps/s" in progress[-1]
    lora = tmp_path / "output" / "test_lora.safetensors"
    assert lines[-1] == f"finished after step 3: {lora}" and lora.is_file()
    assert proc.stderr.strip() == "", proc.stderr[-2000:]  # the libraries' own bars are off too


@pytest.mark.skipif(sys.platform == "win32", reason="pseudo-terminals are POSIX")
def test_on_a_terminal_one_live_bar_sits_below_the_status_lines(demo_project, tmp_path):
    import fcntl
    import pty
    import struct
    import termios

    cfg = make_config(demo_project, tmp_path, steps=3, sample_sets=1, checkpoint_every=2)
    main_fd, tty_fd = pty.openpty()
    fcntl.ioctl(tty_fd, termios.TIOCSWINSZ, struct.pack("HHHH", 30, 100, 0, 0))  # rows, columns
    proc = subprocess.Popen([sys.executable, "-m", "lorastudio", "train", str(cfg)], stdin=subprocess.DEVNULL,
                            stdout=tty_fd, stderr=tty_fd, env=cli_env())
    os.close(tty_fd)
    raw = b""
    while True:
        try:
            chunk = os.read(main_fd, 65536)
        except OSError:  # EIO: the child closed the terminal
            break
        if not chunk:
            break
        raw += chunk
    os.close(main_fd)
    assert proc.wait(timeout=300) == 0, raw.decode(errors="replace")[-2000:]
    text = raw.decode("utf-8", errors="replace").replace("\r\n", "\n")
    assert "\r" in text  # the bar is redrawn in place
    # What stays on the screen: each line as the terminal shows it after its carriage returns.
    screen = [line.rsplit("\r", 1)[-1].rstrip() for line in text.split("\n")]
    screen = [line for line in screen if line]
    bars = [line for line in screen if "| step " in line]
    assert len(bars) == 1, screen  # one bar, left in place when the run ends
    bar = bars[0]
    assert bar.startswith("100%|") and "| step 3/3 [" in bar and ("it/s" in bar or "s/it" in bar), bar
    assert "<00:00" in bar and "loss " in bar, bar  # elapsed<ETA, the loss
    status = screen[:screen.index(bar)]
    assert status[0] == "Training kontext LoRA: 12 sets, 3 steps"
    assert any(line.startswith("checkpoint at step 2: ") for line in status), screen
    assert screen[-1] == f"finished after step 3: {tmp_path / 'output' / 'test_lora.safetensors'}"
    assert not [line for line in screen if line.startswith("step ")], screen  # no plain progress lines


def test_plain_progress_lines_every_tenth_of_the_run_and_the_last_step():
    out = io.StringIO()
    sink = TerminalSink(out, live=False)
    for step in range(1, 96):
        sink.emit("progress", step=step, total=95, loss=0.5, lr=1e-4, rate=2.0, eta=(95 - step) / 2.0)
    sink.emit("done", lora="/runs/x.safetensors", step=95, stopped=False)
    lines = out.getvalue().splitlines()
    logged = [int(line.split()[1].split("/")[0]) for line in lines if line.startswith("step ")]
    assert logged == [1, 10, 19, 29, 38, 48, 57, 67, 76, 86, 95]
    assert lines[-2] == "step 95/95  loss 0.5000  lr 1.00e-04  2.00 steps/s  eta 0:00"
    assert lines[-1] == "finished after step 95: /runs/x.safetensors"


def test_the_live_bar_resumes_at_the_first_new_step_and_shows_the_trainers_rate():
    out = io.StringIO()
    sink = TerminalSink(out, live=True)
    sink.emit("started", total=20, family="kontext", sets=2, run_dir="/runs/x", resumed_from=10)
    for step in range(11, 21):
        sink.emit("progress", step=step, total=20, loss=0.5, lr=1e-4, rate=2.0, eta=(20 - step) / 2.0)
        if step == 15:
            sink.emit("checkpoint", step=15, path="/runs/x/checkpoints/step_000015")
    sink.emit("done", lora="/runs/x.safetensors", step=20, stopped=False)
    screen = [line.rsplit("\r", 1)[-1].rstrip() for line in out.getvalue().split("\n")]
    screen = [line for line in screen if line]
    assert screen[0] == "Training kontext LoRA: 2 sets, 20 steps, resuming after step 10"
    assert screen[2] == "checkpoint at step 15: /runs/x/checkpoints/step_000015"
    assert screen[3].startswith("100%|") and "| step 20/20 [" in screen[3], screen
    assert "<00:00, " in screen[3] and "2.00it/s, loss 0.5000, lr 1.00e-04]" in screen[3], screen
    assert screen[4] == "finished after step 20: /runs/x.safetensors" and len(screen) == 5
    first_draw = out.getvalue().split("Run folder: /runs/x\n", 1)[1].split("\r")[1]
    assert "| step 11/20 [" in first_draw and "<00:04, " in first_draw, first_draw  # 9 steps at 2/s
    assert "2.00it/s, loss 0.5000" in first_draw, first_draw
