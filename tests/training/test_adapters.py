"""``train.adapter``: DoRA and LoKr train through peft on the tiny Kontext model; a run stopped
and resumed writes the bit-identical file; ``lorastudio sample`` loads the file (diffusers for a
DoRA, peft for a LoKr) and its image differs from the base model's."""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from lorastudio.config import load_config
from lorastudio.training.events import NullSink
from lorastudio.training.lora import read_lora_file
from lorastudio.training.sample import sample_command
from lorastudio.training.stop import StopSignal
from lorastudio.training.trainer import train

from trainer_helpers import StopAt, make_config


def _sample(cfg: Path, lora: Path | None, out: Path) -> np.ndarray:
    c = load_config(cfg)
    start = sorted(c.dataset.path.glob("*_start.png"))[0]
    args = argparse.Namespace(model=str(c.model.path), lora=str(lora) if lora else None, input=[str(start)],
                              prompt="make it red", out=str(out), steps=2, seed=1, scale=1.0, size=32,
                              input_size="target")
    assert sample_command(args) == 0
    return np.asarray(Image.open(out), dtype=np.int16)


@pytest.mark.parametrize("adapter", ["dora", "lokr"])
def test_adapter_trains_resumes_exactly_and_samples(demo_project, tmp_path, adapter):
    common = dict(adapter=adapter, steps=4, checkpoint_every=2, sample_sets=0, learning_rate=1e-2)
    full = train(load_config(make_config(demo_project, tmp_path / "full", **common)), NullSink())
    tensors, meta = read_lora_file(full.lora)
    assert meta["lorastudio.adapter"] == adapter
    kinds = {k.rsplit(".", 2 if k.endswith(".weight") else 1)[1] for k in tensors}
    assert kinds == ({"lora_A", "lora_B", "lora_magnitude_vector"} if adapter == "dora"
                     else {"lokr_w1", "lokr_w2"} | ({"lokr_w2_a", "lokr_w2_b"} & kinds))
    assert all(torch.isfinite(v).all() for v in tensors.values())

    cfg = make_config(demo_project, tmp_path / "stopped", **common)
    stop = StopSignal()
    stopped = train(load_config(cfg), StopAt(stop, 3), stop=stop)
    assert stopped.stopped and stopped.step == 3
    resumed = train(load_config(cfg), NullSink(), resume=True)
    again, _ = read_lora_file(resumed.lora)
    assert again.keys() == tensors.keys()
    for k in tensors:
        assert torch.equal(again[k], tensors[k]), k

    base = _sample(cfg, None, tmp_path / "base.png")
    with_adapter = _sample(cfg, full.lora, tmp_path / "lora.png")
    assert np.abs(with_adapter - base).max() > 0  # the adapter reaches the image


def test_adapter_keys_are_checked_before_any_model_loads(demo_project, tmp_path, capsys):
    """Unknown names and impossible combinations are config errors naming the key; the dry
    run's plan says which adapter trains."""
    from lorastudio.config import ConfigError
    from lorastudio.training.plan import make_plan
    from lorastudio.training.worker import dry_run_command

    bad = [({"adapter": "loha"}, "train.adapter: must be one of lora, dora, lokr"),
           ({"adapter": "lokr", "lokr_factor": 0}, "train.lokr_factor"),
           ({"adapter": "lora", "lokr_factor": 4}, "train.lokr_factor: only used with"),
           ({"adapter": "lokr", "quantization": "int8"}, "train.adapter: \"lokr\" cannot train on quantized")]
    for i, (keys, message) in enumerate(bad):
        with pytest.raises(ConfigError, match=message.replace("(", r"\(")):
            load_config(make_config(demo_project, tmp_path / str(i), **keys))
    # The demo is FLUX.1 Kontext: its BFL (comfyui) layout fuses q/k/v, which a LoKr cannot follow.
    cfg = make_config(demo_project, tmp_path / "fused", adapter="lokr")
    cfg.write_text(cfg.read_text().replace('name = "test_lora"', 'name = "test_lora"\nformat = "comfyui"'))
    with pytest.raises(ConfigError, match='cannot be written in the \'comfyui\' format.*output.format = "diffusers"'):
        make_plan(load_config(cfg))
    assert dry_run_command(cfg) != 0
    cfg = make_config(demo_project, tmp_path / "ok", adapter="lokr", lokr_factor=4)
    assert dry_run_command(cfg) == 0
    assert "adapter:    lokr (Kronecker product, factor 4: peft LoKrConfig)" in capsys.readouterr().out
