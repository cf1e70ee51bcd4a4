"""The exported LoRA file: diffusers key format with ``.alpha`` tensors, our header keys,
loadable by the family pipeline's ``load_lora_weights`` with the same result as the trained
model in memory, and complete in ComfyUI's terms (every module has an alpha)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from lorastudio.config import load_config
from lorastudio.training.events import NullSink
from lorastudio.training.lora import KEY_PREFIX, export_metadata, export_state_dict, read_lora_file, save_lora_file
from lorastudio.training.trainer import train

from trainer_helpers import make_config, predict_first_set

HEADER_KEYS = {"lorastudio.family", "lorastudio.base_model", "lorastudio.rank", "lorastudio.alpha",
               "lorastudio.steps", "lorastudio.learning_rate", "lorastudio.resolution", "lorastudio.sets",
               "lorastudio.trigger", "lorastudio.version"}


def test_export_format_unit(tmp_path):
    peft = {"blocks.0.attn.to_q.lora_A.weight": torch.randn(4, 8), "blocks.0.attn.to_q.lora_B.weight": torch.randn(6, 4)}
    out = export_state_dict(peft, rank=4, alpha=8, family="kontext")
    assert sorted(out) == ["transformer.blocks.0.attn.to_q.alpha", "transformer.blocks.0.attn.to_q.lora_A.weight",
                           "transformer.blocks.0.attn.to_q.lora_B.weight"]
    alpha = out["transformer.blocks.0.attn.to_q.alpha"]
    assert alpha.dtype == torch.float32 and alpha.dim() == 0 and alpha.item() == 8.0
    assert export_state_dict(peft, rank=4, alpha=0, family="kontext")["transformer.blocks.0.attn.to_q.alpha"].item() == 4
    assert "blocks.0.attn.to_q.alpha" in export_state_dict(peft, rank=4, alpha=0, family="qwen-edit-plus")
    meta = export_metadata(family="kontext", base_model="FLUX.1-Kontext-dev", rank=4, alpha=8, steps=10,
                           learning_rate=1e-4, resolution=512, sets=12, trigger="zkw")
    assert HEADER_KEYS <= set(meta) and "lora_adapter_metadata" not in meta
    path = save_lora_file(tmp_path / "x.safetensors", out, meta)
    tensors, got = read_lora_file(path)
    assert got["lorastudio.trigger"] == "zkw" and got["lorastudio.alpha"] == "8.0"
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temp file left
    assert "lorastudio.trigger" not in export_metadata(family="kontext", base_model="m", rank=4, alpha=4, steps=1,
                                                       learning_rate=1e-4, resolution=64, sets=1, trigger="")


FAMILIES = [("kontext", "tiny_kontext_dir"), ("qwen-edit-plus", "tiny_qwen_edit_plus_dir")]


@pytest.fixture(params=FAMILIES, ids=[f for f, _ in FAMILIES], scope="module")
def trained(request, demo_project, tmp_path_factory):
    """A LoRA trained a few steps with alpha = 2 × rank, and the model still in memory."""
    family, fixture = request.param
    try:
        model = request.getfixturevalue(fixture)
    except pytest.FixtureLookupError:
        pytest.skip(f"no {fixture} fixture")
    tmp = tmp_path_factory.mktemp(f"export-{family}")
    cfg = make_config(demo_project, tmp, model=model, steps=3, learning_rate=2e-2, rank=4, alpha=8.0,
                      sample_sets=0, resolution=32, seed=1)
    result = train(load_config(cfg), NullSink(), keep_model=True)
    result.transformer.eval()
    return family, Path(model), result


def _pipeline(result, model: Path):
    return result.family.pipeline_class().from_pretrained(str(model), local_files_only=True)


def test_pipeline_load_lora_weights_reproduces_the_trained_model(trained):
    family, model, result = trained
    tensors, meta = read_lora_file(result.lora)
    assert HEADER_KEYS - {"lorastudio.trigger"} <= set(meta) and "lora_adapter_metadata" not in meta
    assert meta["lorastudio.rank"] == "4" and meta["lorastudio.alpha"] == "8.0"
    assert meta["lorastudio.base_model"] == model.name
    pipe = _pipeline(result, model)
    base = predict_first_set(result, pipe.transformer)
    pipe.load_lora_weights(str(result.lora))
    loaded = predict_first_set(result, pipe.transformer)
    expected = predict_first_set(result, result.transformer)
    err = (loaded - expected).abs().max().item()
    effect = (expected - base).abs().max().item()
    assert err < 1e-5, err
    assert effect > 1000 * max(err, 1e-9), (effect, err)


def test_alpha_tensors_carry_the_scale(trained, tmp_path):
    """alpha (8) ≠ rank (4): the same weights without .alpha tensors load at scale 1, not 2."""
    family, model, result = trained
    tensors, meta = read_lora_file(result.lora)
    no_alpha = {("transformer." + k if not k.startswith("transformer.") else k): v
                for k, v in tensors.items() if not k.endswith(".alpha")}
    path = save_lora_file(tmp_path / "no_alpha.safetensors", no_alpha, {"format": "pt"})
    pipe = _pipeline(result, model)
    base = predict_first_set(result, pipe.transformer)
    pipe.load_lora_weights(str(path))
    half = predict_first_set(result, pipe.transformer)
    expected = predict_first_set(result, result.transformer)
    assert (half - expected).abs().max() > 1e-3
    # what is left is the LoRA applied at half the strength: roughly halfway to the trained output
    assert (half - base).abs().max() < 0.8 * (expected - base).abs().max()


def test_every_module_is_complete_in_comfyui_terms(trained):
    """ComfyUI reads ``<module>.alpha`` (scale alpha/rank) and needs the module in the model."""
    family, model, result = trained
    tensors, _ = read_lora_file(result.lora)
    base = result.family.transformer_class().from_pretrained(str(model), subfolder="transformer")
    modules = dict(base.named_modules())
    prefix = KEY_PREFIX[family]
    a_keys = [k for k in tensors if k.endswith(".lora_A.weight")]
    assert a_keys and len(tensors) == 3 * len(a_keys)
    for a_key in a_keys:
        module = a_key[: -len(".lora_A.weight")]
        alpha = tensors[f"{module}.alpha"]
        b = tensors[f"{module}.lora_B.weight"]
        assert alpha.dtype == torch.float32 and alpha.numel() == 1 and alpha.item() == 8.0
        name = module[len(prefix):]
        assert name in modules, name
        linear = modules[name]
        assert isinstance(linear, torch.nn.Linear)
        assert tensors[a_key].shape == (4, linear.in_features) and b.shape == (linear.out_features, 4)
