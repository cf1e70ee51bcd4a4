"""The latent/text cache recomputes exactly the entries whose inputs changed (counted encoder calls)."""

from __future__ import annotations

from pathlib import Path

import torch
from PIL import Image

from lorastudio.dataset import scan_dataset
from lorastudio.training.cache import TrainingCache, latent_key, prompt_key
from lorastudio.training.families.base import EncodedPrompt


class CountingFamily:
    """Just enough of a ModelFamily for the cache: deterministic encoders that count calls."""

    name = "counting"
    size_multiple = 16
    prompt_depends_on_inputs = False

    def __init__(self, model_dir: Path) -> None:
        self.model_dir = model_dir
        self.calls = {"load": 0, "free": 0, "image": 0, "prompt": 0}
        self.prompt_inputs: list[int] = []

    def input_size(self, input_size, target_size, resolution):
        return target_size

    def load_encoders(self):
        self.calls["load"] += 1

    def free_encoders(self):
        self.calls["free"] += 1

    def encode_image(self, image):
        self.calls["image"] += 1
        import numpy as np

        t = torch.from_numpy(np.asarray(image, dtype=np.float32)).reshape(-1, 3).mean(0)
        return t.view(3, 1, 1).expand(3, image.size[1] // 8, image.size[0] // 8).clone()

    def encode_prompt(self, caption, input_images):
        self.calls["prompt"] += 1
        self.prompt_inputs.append(len(input_images))
        return EncodedPrompt({"prompt_embeds": torch.full((1, 4, 8), float(len(caption)))})


def _dataset(root: Path, n: int = 3) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        Image.new("RGB", (64, 48), (10 * i, 20, 30)).save(root / f"s{i}_start.png")
        Image.new("RGB", (64, 48), (200, 10 * i, 30)).save(root / f"s{i}_end.png")
        (root / f"s{i}.txt").write_text(f"caption {i}", encoding="utf-8")
    return root


def _build(tmp_path, family, trigger=""):
    ds = scan_dataset(tmp_path / "data")
    cache = TrainingCache(tmp_path / "cache", family, resolution=32, trigger=trigger)
    return cache, cache.build(ds.trainable_sets())


def test_cold_then_warm_cache(tmp_path):
    _dataset(tmp_path / "data")
    fam = CountingFamily(tmp_path / "model")
    cache, cached = _build(tmp_path, fam)
    assert fam.calls == {"load": 1, "free": 1, "image": 6, "prompt": 3}
    assert [c.name for c in cached] == ["s0", "s1", "s2"]
    assert cached[0].bucket == (32, 32) or cached[0].bucket[0] % 16 == 0
    assert cached[0].target.shape[0] == 3 and len(cached[0].inputs) == 1
    assert cached[1].caption == "caption 1"

    fam2 = CountingFamily(tmp_path / "model")
    cache2, cached2 = _build(tmp_path, fam2)
    # warm: nothing encoded, and the encoders are not even loaded
    assert fam2.calls == {"load": 0, "free": 0, "image": 0, "prompt": 0}
    assert cache2.stats.latent_hits == 6 and cache2.stats.prompt_hits == 3
    for a, b in zip(cached, cached2):
        assert torch.equal(a.target, b.target) and torch.equal(a.prompt["prompt_embeds"], b.prompt["prompt_embeds"])


def test_editing_one_caption_recomputes_only_that_prompt(tmp_path):
    _dataset(tmp_path / "data")
    _build(tmp_path, CountingFamily(tmp_path / "model"))
    (tmp_path / "data" / "s1.txt").write_text("a new caption", encoding="utf-8")
    fam = CountingFamily(tmp_path / "model")
    _, cached = _build(tmp_path, fam)
    assert fam.calls["image"] == 0 and fam.calls["prompt"] == 1
    assert cached[1].caption == "a new caption"


def test_editing_one_image_recomputes_only_its_latents(tmp_path):
    _dataset(tmp_path / "data")
    _build(tmp_path, CountingFamily(tmp_path / "model"))
    Image.new("RGB", (64, 48), (1, 2, 3)).save(tmp_path / "data" / "s2_end.png")
    fam = CountingFamily(tmp_path / "model")
    _build(tmp_path, fam)
    assert fam.calls["image"] == 1 and fam.calls["prompt"] == 0


def test_trigger_changes_every_prompt_but_no_latents(tmp_path):
    _dataset(tmp_path / "data")
    _build(tmp_path, CountingFamily(tmp_path / "model"))
    fam = CountingFamily(tmp_path / "model")
    _, cached = _build(tmp_path, fam, trigger="zkw")
    assert fam.calls["image"] == 0 and fam.calls["prompt"] == 3
    assert cached[0].caption.startswith("zkw, ")


def test_prompt_depending_on_inputs_is_keyed_by_them(tmp_path):
    _dataset(tmp_path / "data")
    fam = CountingFamily(tmp_path / "model")
    fam.prompt_depends_on_inputs = True
    _build(tmp_path, fam)
    assert fam.prompt_inputs == [1, 1, 1]  # the encoder saw each set's input image
    Image.new("RGB", (64, 48), (9, 9, 9)).save(tmp_path / "data" / "s0_start.png")
    fam2 = CountingFamily(tmp_path / "model")
    fam2.prompt_depends_on_inputs = True
    _build(tmp_path, fam2)
    assert fam2.calls["image"] == 1 and fam2.calls["prompt"] == 1


def test_keys_depend_on_family_model_and_size(tmp_path):
    base = latent_key("abc", (32, 32), "kontext", tmp_path / "m")
    assert base != latent_key("abc", (32, 48), "kontext", tmp_path / "m")
    assert base != latent_key("abc", (32, 32), "qwen-edit-plus", tmp_path / "m")
    assert base != latent_key("abc", (32, 32), "kontext", tmp_path / "other")
    assert prompt_key("a", "", "k", tmp_path, None) != prompt_key("a", "t", "k", tmp_path, None)


def test_damaged_cache_file_is_recomputed(tmp_path):
    _dataset(tmp_path / "data", n=1)
    _build(tmp_path, CountingFamily(tmp_path / "model"))
    for f in (tmp_path / "cache" / "latents").iterdir():
        f.write_bytes(b"garbage")
    fam = CountingFamily(tmp_path / "model")
    _build(tmp_path, fam)
    assert fam.calls["image"] == 2
