"""Torch-free parts of caption drafting: tidying a draft, choosing sets, the [caption] table,
the memory a setting needs."""

from __future__ import annotations

from pathlib import Path

import pytest
from PIL import Image

from lorastudio.config import CaptionConfig, ConfigError, config_from_dict
from lorastudio.dataset import scan_dataset
from lorastudio.drafting import DEFAULT_EDIT_INSTRUCTION, clean_draft, plan_drafts, prompt_content
from lorastudio.estimate import GIB, caption_memory


@pytest.mark.parametrize("raw, trigger, expected", [
    ("make it night", "", "make it night"),
    ('"Make it night."\nSecond line', "", "Make it night."),
    ("<think>the sky is dark</think>\nmake it night", "", "make it night"),
    ("Caption: zkw, make it night", "zkw", "make it night"),
    ("make it night in ZKW style", "zkw", "make it night in style"),
    ("make the zkwx night", "zkw", "make the zkwx night"),  # only the whole word goes
    ("   ", "", ""),
])
def test_clean_draft(raw, trigger, expected):
    assert clean_draft(raw, trigger) == expected


def test_prompt_content_labels_inputs_then_the_result():
    parts = prompt_content(2, "go")
    assert [p["type"] for p in parts] == ["text", "image", "text", "image", "text", "image", "text"]
    assert parts[0]["text"] == "Input image 1:" and parts[4]["text"] == "Result:" and parts[-1]["text"] == "go"
    assert [p["type"] for p in prompt_content(0, "describe")] == ["image", "text"]
    assert "make it night" in DEFAULT_EDIT_INSTRUCTION


def test_plan_drafts_skips_captioned_sets_unless_overwrite(tmp_path):
    for name in ("a", "b", "c"):
        for role in ("start", "end"):
            Image.new("RGB", (32, 32)).save(tmp_path / f"{name}_{role}.png")
    (tmp_path / "b.txt").write_text("keep me", encoding="utf-8")
    (tmp_path / "c.txt").write_text("", encoding="utf-8")  # empty: counts as missing
    dataset = scan_dataset(tmp_path)
    plan = plan_drafts(dataset)
    assert [s.name for s in plan.todo] == ["a", "c"] and [s.name for s in plan.skipped_existing] == ["b"]
    assert [s.name for s in plan_drafts(dataset, overwrite=True).todo] == ["a", "b", "c"]
    assert [s.name for s in plan_drafts(dataset, missing=True, overwrite=True).todo] == ["a", "c"]
    plan = plan_drafts(dataset, ["b", "zz"], overwrite=True)
    assert [s.name for s in plan.todo] == ["b"] and plan.unknown == ["zz"]


def _config(caption: dict, tmp_path: Path):
    return config_from_dict({"model": {"path": "m"}, "dataset": {"path": "d"}, "caption": caption},
                            base_dir=tmp_path)


def test_caption_table_is_validated_and_saved_only_when_used(tmp_path):
    config = _config({"model": "vl", "instruction": "make it so", "quantization": "int4"}, tmp_path)
    assert config.caption == CaptionConfig(model=tmp_path / "vl", instruction="make it so", quantization="int4")
    assert config.to_toml_dict(relative_to=tmp_path)["caption"] == {
        "model": "vl", "instruction": "make it so", "max_tokens": 80, "quantization": "int4"}
    assert "caption" not in _config({}, tmp_path).to_toml_dict()
    with pytest.raises(ConfigError, match="caption.quantization"):
        _config({"quantization": "int2"}, tmp_path)
    with pytest.raises(ConfigError, match="caption.max_tokens"):
        _config({"max_tokens": 0}, tmp_path)
    with pytest.raises(ConfigError, match="caption.modell: unknown key"):
        _config({"modell": "x"}, tmp_path)


def test_caption_memory_for_a_7b_model():
    """Qwen2.5-VL-7B's counts from its config.json: 28 layers of width 3584 (4 key/value heads of
    128), MLP 18944, vocab 152064 (untied lm_head), a 32-block vision tower of width 1280.
    It needs ~16 GB of weights in bf16 (the issue's figure); 8- and 4-bit roughly halve and
    quarter the linear layers."""
    h, layers, mlp, vocab = 3584, 28, 18944, 152064
    text_linear = layers * (h * h * 2 + h * 512 * 2 + 3 * h * mlp)
    vision_linear = 32 * (1280 * 1280 * 4 + 3 * 1280 * 3420) + 5120 * 5120 + 5120 * h
    other = 2 * vocab * h + 10_000_000
    sizes = {q: caption_memory(text_linear + vision_linear, other, h, 512, layers, 2500, q) / GIB
             for q in ("none", "int8", "int4")}
    assert 15 < sizes["none"] < 19, sizes
    assert sizes["int4"] < sizes["int8"] < sizes["none"]
    assert sizes["int4"] < 8
