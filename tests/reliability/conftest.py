"""Fixtures for the reliability suite: the tiny Kontext demo, a reference run, and the
worker environment with the test-only fault injector (``inject/sitecustomize.py``).

Every worker fault test trains the same small run — :data:`RUN` — so one uninterrupted
in-process run (:func:`reference_lora`) gives the weights every interrupted-and-resumed
run must reproduce exactly.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from rel_helpers import RUN, SETS, write_config  # noqa: F401  (helpers live in rel_helpers.py)

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"


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

