"""Fixtures for the reliability suite: the tiny Kontext demo, a reference run, and the
worker environment with the test-only fault injector (``inject/sitecustomize.py``).

Every worker fault test trains the same small run — :data:`RUN` — so one uninterrupted
in-process run (:func:`reference_lora`) gives the weights every interrupted-and-resumed
run must reproduce exactly.
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import pytest

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"

HERE = Path(__file__).parent
INJECT_DIR = HERE / "inject"
REPO = HERE.parent.parent

#: The run every fault test trains: 6 steps, a checkpoint every 2, 32 px, rank 4, 3 sets.
RUN = {"steps": 6, "checkpoint_every": 2, "sample_every": 0, "sample_sets": 0, "sample_steps": 2,
       "resolution": 32, "rank": 4, "learning_rate": 5e-3, "seed": 7}
SETS = 3


@pytest.fixture(scope="session")
def demo(tmp_path_factory) -> Path:
    """The kontext demo (tiny model + generated dataset, cut to SETS sets): its folder."""
    from lorastudio.training.demo import create_demo

    project = create_demo(tmp_path_factory.mktemp("rel-demo") / "demo", "kontext")
    root = project.parent
    names = sorted({p.stem.split("_")[0] for p in (root / "dataset").iterdir()})
    for extra in names[SETS:]:
        for f in (root / "dataset").glob(f"{extra}*"):
            f.unlink()
    return root


def write_config(demo: Path, out_dir: Path, dataset: Path | None = None, model: Path | None = None,
                 name: str = "rel_lora", **train) -> Path:
    """A config in ``out_dir`` training :data:`RUN` (overridden by ``train``), output in ``out_dir/output``."""
    from lorastudio.config import load_config, save_config

    config = load_config(demo / "project.toml")
    for key, value in {**RUN, **train}.items():
        setattr(config.train, key, value)
    if dataset is not None:
        config.dataset.path = Path(dataset)
    if model is not None:
        config.model.path = Path(model)
    config.output.dir = out_dir / "output"
    config.output.name = name
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / "config.toml"
    save_config(config, path)
    return path


@pytest.fixture(scope="session")
def reference_lora(demo, tmp_path_factory) -> dict:
    """The LoRA tensors of :data:`RUN` trained without interruption (in process)."""
    from lorastudio.config import load_config
    from lorastudio.training.events import NullSink
    from lorastudio.training.lora import read_lora_file
    from lorastudio.training.trainer import train

    cfg = write_config(demo, tmp_path_factory.mktemp("rel-reference"))
    result = train(load_config(cfg), NullSink())
    tensors, _meta = read_lora_file(result.lora)
    return tensors


def worker_env(tmp: Path, inject: str = "", fault: str = "", **extra: str) -> dict[str, str]:
    """The environment for a worker process: offline, the injector on PYTHONPATH when asked."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LORASTUDIO_FAULT", "LORASTUDIO_INJECT"))}
    env.update({"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "PYTHONUNBUFFERED": "1"})
    if inject:
        env["PYTHONPATH"] = os.pathsep.join([str(INJECT_DIR), str(REPO), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
        env["LORASTUDIO_INJECT"] = inject
        env["LORASTUDIO_INJECT_MARK"] = str(tmp / "inject.mark")
        env["LORASTUDIO_INJECT_LOG"] = str(tmp / "inject.log")
    if fault:
        env["LORASTUDIO_FAULT"] = fault
    env.update(extra)
    return env


@pytest.fixture
def runners():
    """Register WorkerRunners: whatever a test leaves running is killed and reaped after it."""
    made = []

    def register(runner):
        made.append(runner)
        return runner

    yield register
    for r in made:
        if r.is_running():
            r.kill()
        r.wait(10)


def python() -> str:
    return sys.executable


def copy_tree(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst
