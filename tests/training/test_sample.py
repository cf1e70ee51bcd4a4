"""``lorastudio sample``: the guide's "test your LoRA" step, on the tiny Kontext model."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from lorastudio.cli import main
from lorastudio.config import load_config
from lorastudio.training.events import NullSink
from lorastudio.training.trainer import train

from trainer_helpers import make_config


@pytest.fixture(scope="module")
def lora(demo_project, tmp_path_factory) -> Path:
    cfg = make_config(demo_project, tmp_path_factory.mktemp("sample-lora"), steps=3, learning_rate=3e-2,
                      sample_sets=0)
    return train(load_config(cfg), NullSink()).lora


def _pixels(path: Path) -> np.ndarray:
    with Image.open(path) as im:
        return np.asarray(im.convert("RGB"), dtype=np.int16)


def test_sample_with_and_without_lora(lora, demo_project, tmp_path, capsys):
    config = load_config(demo_project)
    model = config.model.path
    image = sorted(config.dataset.path.glob("*_start.*"))[0]
    common = ["--model", str(model), "--input", str(image), "--prompt", "invert the colours and mirror the image",
              "--steps", "2", "--seed", "3", "--size", "32"]
    assert main(["sample", *common, "--out", str(tmp_path / "base.png")]) == 0
    assert main(["sample", *common, "--lora", str(lora), "--out", str(tmp_path / "lora.png")]) == 0
    assert main(["sample", *common, "--lora", str(lora), "--scale", "0", "--out", str(tmp_path / "zero.png")]) == 0
    base, with_lora, zero = (_pixels(tmp_path / n) for n in ("base.png", "lora.png", "zero.png"))
    assert base.shape[:2] == (32, 32)
    assert np.array_equal(base, zero), "strength 0 is the base model"
    assert np.abs(with_lora - base).max() > 0, "the LoRA changes the image"
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # atomic: no temp files left


def test_sample_refuses_a_missing_lora_and_a_bad_model(demo_project, tmp_path, capsys):
    model = load_config(demo_project).model.path
    assert main(["sample", "--model", str(model), "--lora", str(tmp_path / "nope.safetensors"),
                 "--out", str(tmp_path / "x.png")]) == 2
    assert "not found" in capsys.readouterr().err
    assert main(["sample", "--model", str(tmp_path), "--out", str(tmp_path / "x.png")]) == 2
    assert not (tmp_path / "x.png").exists()
