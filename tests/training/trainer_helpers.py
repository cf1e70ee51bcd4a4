"""Helpers shared by the training-engine tests (no tests here).

``make_config`` turns the demo project (tiny model + demo dataset, from helper fixtures in
``conftest.py``) into a small, fast config in a temporary folder: few steps, a low
resolution, output under ``tmp_path``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import tomli_w

try:
    import tomllib
except ModuleNotFoundError:  # pragma: no cover
    import tomli as tomllib  # type: ignore[no-redef]

from lorastudio import protocol
from lorastudio.training.events import NullSink

#: ``input_size = "target"``: inputs at the run's 32 px, whatever the family's default (Kontext's and
#: Qwen-Image-Edit-Plus's ``"pipeline"`` would encode every input at ~1 MP: a slow test that
#: proves nothing more). Tests of the input-size rule itself pass ``input_size=…``.
FAST_TRAIN = {"steps": 4, "resolution": 32, "rank": 4, "learning_rate": 1e-3, "sample_every": 0,
              "checkpoint_every": 0, "sample_steps": 2, "sample_sets": 1, "seed": 7, "input_size": "target",
              # not the demo run's recipe (a batch of all its sets, σ weighted high): one set a step
              "batch_size": 1, "timestep_mean": 0.0}


def make_config(project: Path, out_dir: Path, model: Path | None = None, dataset: Path | None = None,
                **train: Any) -> Path:
    """A config file beside ``out_dir`` based on ``project`` (a project .toml), train keys overridden."""
    project = Path(project)
    data = tomllib.loads(project.read_text(encoding="utf-8"))
    base = project.resolve().parent

    def absolute(p: str) -> str:
        q = Path(p)
        return str(q if q.is_absolute() else (base / q).resolve())

    data["model"]["path"] = str(model) if model else absolute(data["model"]["path"])
    data["dataset"]["path"] = str(dataset) if dataset else absolute(data["dataset"]["path"])
    data["dataset"]["validation"] = []  # the demo's held-out sets: tests that want some set them
    data["train"] = {**data.get("train", {}), **FAST_TRAIN, **train}
    data["output"] = {"dir": str(out_dir / "output"), "name": "test_lora"}
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / "config.toml"
    path.write_text(tomli_w.dumps(data), encoding="utf-8")
    return path


def small_dataset(demo_project: Path, folder: Path, sets: int = 3) -> Path:
    """The demo dataset's first ``sets`` sets copied to ``folder`` (fewer latents to cache: a faster test)."""
    import shutil

    names = {f"shapes{i:02d}" for i in range(1, sets + 1)}
    folder.mkdir(parents=True)
    for path in sorted((Path(demo_project).parent / "dataset").iterdir()):
        if path.name.split("_")[0].split(".")[0] in names:
            shutil.copy(path, folder / path.name)
    return folder


def cli_env(**extra: str) -> dict[str, str]:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "PYTHONUNBUFFERED": "1", **extra}
    env.pop("LORASTUDIO_INJECT", None)
    env.update(extra)
    return env


def run_cli(*args: str, timeout: float = 300, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "lorastudio", *args], capture_output=True, text=True,
                          timeout=timeout, env=cli_env(**env), stdin=subprocess.DEVNULL)


def events_of(stdout: str) -> list[dict]:
    """Parse stdout line by line: every non-empty line must be an event (raises otherwise)."""
    return [protocol.decode(line) for line in stdout.splitlines() if line.strip()]


def lora_keys_summary(path: Path) -> dict:
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as f:
        return {"keys": sorted(f.keys()), "meta": dict(f.metadata() or {})}


def predict_first_set(result, transformer):
    """``transformer``'s flow prediction on the run's first cached set, at a fixed noise and
    timestep: what a LoRA changes, compared across models and loaders."""
    import torch

    from lorastudio.training.batches import collate, noise_and_sigmas

    x0, inputs, prompt = collate(result.family, [result.cached[0]], torch.device("cpu"), torch.float32)
    noise, sigmas = noise_and_sigmas(tuple(x0.shape), 0, 1, 0)
    s4 = sigmas.view(-1, 1, 1, 1)
    with torch.no_grad():
        return result.family.predict(transformer, (1 - s4) * x0 + s4 * noise, sigmas, inputs, prompt)


def assert_pipeline_reproduces_lora(result, model_dir: Path) -> None:
    """The saved LoRA, loaded by the family pipeline's ``load_lora_weights`` into a fresh
    base model, predicts what the trained model predicts, and that differs from the base."""
    result.transformer.eval()
    expected = predict_first_set(result, result.transformer)
    pipe = result.family.pipeline_class().from_pretrained(str(model_dir), local_files_only=True)
    base = predict_first_set(result, pipe.transformer)
    pipe.load_lora_weights(str(result.lora))
    loaded = predict_first_set(result, pipe.transformer)
    err = (loaded - expected).abs().max().item()
    effect = (expected - base).abs().max().item()
    assert err < 1e-5, err
    assert effect > 1000 * max(err, 1e-9), (effect, err)


def dumps(obj: Any) -> str:  # pragma: no cover - debugging aid in assertion messages
    return json.dumps(obj, indent=1, default=str)[:4000]


class StopAt(NullSink):
    """A sink that asks the run to stop once it has seen step ``at`` (like the GUI's Stop)."""

    def __init__(self, stop, at: int) -> None:
        super().__init__()
        self.stop, self.at = stop, at

    def _write(self, ev):
        if ev["event"] == "progress" and ev["step"] >= self.at:
            self.stop.request("test")
