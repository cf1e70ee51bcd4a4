"""``lorastudio sample``: the guide's "test your LoRA" step, on the tiny Kontext model."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
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
              "--steps", "2", "--seed", "3", "--size", "32", "--input-size", "target"]
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


def _sample_args(demo_project, input_size: str = "target") -> list[str]:
    config = load_config(demo_project)
    image = sorted(config.dataset.path.glob("*_start.*"))[0]
    return ["--model", str(config.model.path), "--input", str(image), "--prompt", "invert the colours and mirror the image",
            "--steps", "2", "--seed", "3", "--size", "32", "--input-size", input_size]


def test_sample_sizes_inputs_by_the_input_size_rule(demo_project, tmp_path, monkeypatch, capsys):
    """``--input-size`` (the Test tab passes the project's ``train.input_size``): "target" gives
    the input the output's size; "auto" is the family's default, for Kontext the pipeline's own
    ~1 MP view (the preferred Kontext resolution FluxKontextPipeline picks by default). The
    family's ``sample`` is stopped at its call (what it was given is the point; generating at
    1 MP on the demo model would take minutes)."""
    from lorastudio.training.families.kontext import KontextFamily

    seen = {}

    def stop_at_the_call(self, transformer, inputs, *args, **kwargs):
        seen[self.input_size_rule] = [image.size for image in inputs]
        raise ValueError("stopped by the test")

    monkeypatch.setattr(KontextFamily, "sample", stop_at_the_call)
    for rule in ("target", "auto"):
        assert main(["sample", *_sample_args(demo_project, rule), "--out", str(tmp_path / "x.png")]) == 2
        assert "stopped by the test" in capsys.readouterr().err
    assert seen == {"target": [(32, 32)], "pipeline": [(1024, 1024)]}


def _as_comfyui(lora: Path, out: Path, metadata_too: bool = True) -> Path:
    """The trained diffusers-format LoRA written again in the ``comfyui`` format (same LoRA)."""
    from safetensors import safe_open

    from lorastudio.training.lora import save_lora_file
    from lorastudio.training.formats import comfyui_tensors

    with safe_open(str(lora), "pt") as f:
        tensors, metadata = {k: f.get_tensor(k) for k in f.keys()}, dict(f.metadata())
    state = {k.removeprefix("transformer."): v for k, v in tensors.items() if not k.endswith(".alpha")}
    rank = next(v for k, v in state.items() if k.endswith(".lora_A.weight")).shape[0]
    alpha = float(next(v for k, v in tensors.items() if k.endswith(".alpha")))
    metadata["lorastudio.format"] = "comfyui"
    return save_lora_file(out, comfyui_tensors(state, rank, alpha, "kontext"), metadata if metadata_too else {})


def test_our_comfyui_file_samples_like_the_diffusers_file(lora, demo_project, tmp_path):
    """diffusers' own kohya FLUX.1 converter cannot read it (it hard-codes FLUX.1-dev's 3072-wide
    layers), so ``sample`` renames our file back with ``formats``' mapping: the same LoRA, the
    same image (PNG rounding aside: float sums in another order may move a channel by one level)."""
    comfy = _as_comfyui(lora, tmp_path / "comfy.safetensors")
    common = _sample_args(demo_project)
    for name, extra in (("base", []), ("diffusers", ["--lora", str(lora)]), ("comfyui", ["--lora", str(comfy)])):
        assert main(["sample", *common, *extra, "--out", str(tmp_path / f"{name}.png")]) == 0
    base, with_diffusers, with_comfyui = (_pixels(tmp_path / f"{n}.png") for n in ("base", "diffusers", "comfyui"))
    assert np.abs(with_comfyui - base).max() > 0, "the comfyui-format LoRA changes the image"
    assert np.abs(with_comfyui - with_diffusers).max() <= 1


def test_a_lora_diffusers_cannot_load_ends_in_one_line(lora, demo_project, tmp_path, capsys):
    """A file the family's diffusers loader cannot take: exit code 2 and one line naming the
    file, its format and what to do; no traceback."""
    from safetensors.torch import save_file

    foreign_kohya = _as_comfyui(lora, tmp_path / "foreign_kohya.safetensors", metadata_too=False)
    random_keys = tmp_path / "random_keys.safetensors"
    save_file({"foo.bar.weight": torch.randn(4, 4)}, str(random_keys))
    not_safetensors = tmp_path / "garbage.safetensors"
    not_safetensors.write_bytes(b"not a safetensors file")
    other_family = _as_comfyui(lora, tmp_path / "other_family.safetensors")
    _set_family(other_family, "qwen-image")
    cases = {foreign_kohya: ("kohya/ComfyUI-style", "'diffusers' format"),
             random_keys: ("unrecognised", "'diffusers' format"),
             not_safetensors: ("not a readable .safetensors file", "choose"),
             other_family: ("trained for the 'qwen-image' family", "choose a qwen-image base model")}
    for path, words in cases.items():
        capsys.readouterr()
        assert main(["sample", *_sample_args(demo_project), "--lora", str(path), "--out", str(tmp_path / "x.png")]) == 2
        err = capsys.readouterr().err
        assert "Traceback" not in err
        message = err.strip().splitlines()[-1]
        assert message.startswith(f"error: --lora {path}:"), message
        assert all(w in message for w in words), message
        assert not (tmp_path / "x.png").exists()


def _set_family(path: Path, family: str) -> None:
    from safetensors import safe_open
    from safetensors.torch import save_file

    with safe_open(str(path), "pt") as f:
        tensors, metadata = {k: f.get_tensor(k) for k in f.keys()}, dict(f.metadata())
    save_file(tensors, str(path), {**metadata, "lorastudio.family": family})
