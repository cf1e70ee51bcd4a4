"""Starting the app for real (qasync loop, async scan) in a fresh interpreter, without torch."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

from .conftest import make_dataset

PROBE = textwrap.dedent(
    """
    import os, sys, time
    os.environ["QT_QPA_PLATFORM"] = "offscreen"
    t0 = time.perf_counter()
    from PySide6.QtCore import QTimer
    from lorastudio.ui import app as A

    made = A.create_window

    def create_window(*args, **kwargs):
        w = made(*args, **kwargs)
        shown = []
        QTimer.singleShot(0, lambda: shown.append(time.perf_counter() - t0))

        def check():
            if w.dataset is None:
                QTimer.singleShot(100, check)
                return
            print("TITLE", w.windowTitle())
            print("SETS", w.dataset_page.model.rowCount())
            print("SHOWN", round(shown[0], 3))
            print("TORCH", "torch" in sys.modules)
            print("TRAINING", any(m.startswith("lorastudio.training") for m in sys.modules))
            w.close()

        QTimer.singleShot(200, check)
        return w

    A.create_window = create_window
    sys.exit(A.run_gui(sys.argv[1]))
    """
)


def test_run_gui_opens_a_folder_and_quits_cleanly(tmp_path):
    root = make_dataset(tmp_path / "ds", sets=3)
    env = {**os.environ, "LORASTUDIO_DATA_DIR": str(tmp_path / "data"),
           "LORASTUDIO_CACHE_DIR": str(tmp_path / "cache"), "XDG_CONFIG_HOME": str(tmp_path / "config")}
    out = subprocess.run([sys.executable, "-c", PROBE, str(root)], capture_output=True, text=True, timeout=120,
                         env=env)
    assert out.returncode == 0, out.stderr[-3000:]
    lines = dict(line.split(" ", 1) for line in out.stdout.splitlines() if " " in line)
    assert lines["TITLE"].endswith("LoRA Studio")
    assert lines["SETS"] == "3"
    assert lines["TORCH"] == "False", "the GUI process must never import torch"
    assert lines["TRAINING"] == "False"
    print("window shown after", lines["SHOWN"], "s")  # informational; no timing assert


def test_cli_gui_help_mentions_target():
    out = subprocess.run([sys.executable, "-m", "lorastudio", "gui", "--help"], capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 0 and "target" in out.stdout


def run_workflow(target, model, mode, tmp_path, timeout=900) -> dict:
    import json

    probe = Path(__file__).with_name("workflow_probe.py")
    env = {**os.environ, "LORASTUDIO_DATA_DIR": str(tmp_path / "data"),
           "LORASTUDIO_CACHE_DIR": str(tmp_path / "cache"), "XDG_CONFIG_HOME": str(tmp_path / "config"),
           "QT_QPA_PLATFORM": "offscreen"}
    out = subprocess.run([sys.executable, str(probe), str(target), str(model), mode], capture_output=True,
                         text=True, timeout=timeout, env=env)
    assert out.returncode == 0, out.stderr[-4000:]
    line = next(line for line in out.stdout.splitlines() if line.startswith("RESULT "))
    return json.loads(line[len("RESULT "):])


def test_full_workflow_with_a_stand_in_worker_never_imports_torch(tmp_path):
    """Open a folder, edit a caption, train and stop (stand-in worker): no torch in the GUI."""
    root = make_dataset(tmp_path / "ds", sets=3)
    model = tmp_path / "model"
    model.mkdir()
    (model / "model_index.json").write_text('{"_class_name": "FluxKontextPipeline"}', encoding="utf-8")
    result = run_workflow(root, model, "fake", tmp_path, timeout=180)
    assert result["caption_saved"] and result["train_started"], result
    assert result["progress_steps"] > 0 and result["finished"] and not result["error"], result
    assert result["heavy"] == [] and result["training_modules"] == [], result
