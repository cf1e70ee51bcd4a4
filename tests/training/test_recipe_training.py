"""The training recipe (issue 15) in real runs on the tiny Kontext model: the defaults train
exactly today's LoRA, every option on resumes bit-exactly, and each option does what it says
in the run (LR schedule, EMA file, caption dropout's empty caption, repeats, the plan/metadata).

All runs share one output folder, so the latents and prompts are encoded once."""

from __future__ import annotations

import math
import shutil
from pathlib import Path

import pytest
import tomli_w
import torch

from lorastudio.config import load_config
from lorastudio.training import checkpoint as ckpt
from lorastudio.training.batches import collate
from lorastudio.training.cache import prompt_key
from lorastudio.training.events import NullSink
from lorastudio.training.export import export_checkpoint
from lorastudio.training.lora import export_state_dict, peft_state_dict, read_lora_file
from lorastudio.training.plan import TrainingError, describe_plan, make_plan
from lorastudio.training.trainer import train

from trainer_helpers import make_config, small_dataset

try:
    import tomllib
except ModuleNotFoundError:  # pragma: no cover
    import tomli as tomllib  # type: ignore[no-redef]

#: Every new key at its default value.
RECIPE_DEFAULTS = dict(timesteps="logit_normal", timestep_mean=0.0, timestep_scale=1.0, timestep_shift=0.0,
                       lr_schedule="constant", ema_decay=0.0, log_with="", adapter="lora", lokr_factor=-1)


def _config(demo_project, out: Path, dataset: dict | None = None, **train_keys) -> Path:
    path = make_config(demo_project, out, **train_keys)
    if dataset:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
        data["dataset"].update(dataset)
        path.write_text(tomli_w.dumps(data), encoding="utf-8")
    return path


def _lora(path: Path) -> dict[str, torch.Tensor]:
    return read_lora_file(path)[0]


def _equal(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_defaults_train_todays_lora_and_every_option_resumes_bit_exactly(demo_project, tmp_path):
    # 1. no new key vs every new key at its default: the same LoRA, bit for bit
    common = dict(steps=3, sample_sets=0, learning_rate=5e-3)
    plain = train(load_config(_config(demo_project, tmp_path, **common)), NullSink())
    plain_lora = _lora(plain.lora)
    explicit_cfg = load_config(_config(demo_project, tmp_path, dataset={"caption_dropout": 0.0, "repeats": {}},
                                       **common, **RECIPE_DEFAULTS))
    explicit = train(explicit_cfg, NullSink())
    assert _equal(plain_lora, _lora(explicit.lora))
    assert not explicit_cfg.output.raw_lora_path.exists()

    # 2. every option on: an uninterrupted run, then the same run killed in step 3 and resumed
    first = make_plan(explicit_cfg).sets[0].name
    recipe = dict(steps=5, checkpoint_every=2, sample_sets=0, learning_rate=5e-3, warmup_steps=1,
                  timesteps="shift", timestep_scale=1.2, lr_schedule="cosine", ema_decay=0.9)
    data = {"caption_dropout": 0.5, "repeats": {first: 3}}
    cfg = _config(demo_project, tmp_path, dataset=data, **recipe)
    sink = NullSink()
    full = train(load_config(cfg), sink, keep_model=True)
    full_lora, full_raw = _lora(full.lora), _lora(load_config(cfg).output.raw_lora_path)

    # killed during step 3: all that survives is the checkpoint at step 2 (the LoRA, the
    # optimizer, the LR schedule's counter and the EMA); resuming redoes steps 3-5
    run_dir = load_config(cfg).output.run_dir
    for cp in ckpt.list_checkpoints(run_dir):
        if cp.step > 2:
            shutil.rmtree(cp.path)
    resumed_sink = NullSink()
    resumed = train(load_config(cfg), resumed_sink, resume=True)
    assert resumed_sink.history[0]["resumed_from"] == 2
    assert _equal(full_lora, _lora(resumed.lora))
    assert _equal(full_raw, _lora(load_config(cfg).output.raw_lora_path))

    # the cosine schedule after 1 warmup step, as diffusers defines it (progress reports the next step's LR)
    lrs = [e["lr"] for e in sink.history if e["event"] == "progress"]
    expected = [5e-3 * 0.5 * (1 + math.cos(math.pi * (s - 1) / 4)) for s in range(1, 6)]
    assert lrs == pytest.approx(expected, abs=1e-12) and lrs[-1] == pytest.approx(0.0, abs=1e-12)
    # EMA: the LoRA holds the average, the raw file the last step's weights; they differ
    config = load_config(cfg)
    raw_state = peft_state_dict(full.transformer)
    rank, alpha = config.train.rank, float(config.train.rank)
    assert _equal(full_raw, export_state_dict(raw_state, rank, alpha, "kontext"))
    assert not _equal(full_lora, full_raw)
    meta = read_lora_file(full.lora)[1]
    assert meta["lorastudio.weights"] == "ema" and meta["lorastudio.lr_schedule"] == "cosine"
    assert meta["lorastudio.timesteps"] == "shift" and meta["lorastudio.timestep_shift"] == "resolution"
    assert meta["lorastudio.repeats"] == f"{first}=3" and meta["lorastudio.caption_dropout"] == "0.5"
    # caption dropout: the empty caption was encoded once (Kontext's prompt does not see the
    # images), cached on disk, and a dropped step trains on it instead of the set's caption
    family = full.family
    empty_file = config.output.run_dir / "cache" / "prompts" / \
        f"{prompt_key('', '', 'kontext', config.model.path, None)}.safetensors"
    assert empty_file.is_file()
    assert len({id(s.empty_prompt) for s in full.cached}) == 1
    captioned = collate(family, full.cached[:1], torch.device("cpu"), torch.float32)[2]
    from lorastudio.training.batches import Batches

    dropped = Batches(family, full.cached, torch.float32, memo=False,
                      empty_prompts=[s.empty_prompt for s in full.cached]).get([0], torch.device("cpu"), [True])[2]
    assert all(torch.equal(dropped[k], full.cached[0].empty_prompt[k][None]) for k in dropped)
    assert any(not torch.equal(dropped[k], captioned[k]) for k in dropped)
    # the plan says all of it before a model loads; the edit dataset's dropout is warned about
    text = "\n".join(describe_plan(make_plan(config)))
    for fact in ("shift (scale 1.2, μ from the resolution", "cosine learning rate after 1 warmup steps", "decay 0.9",
                 "probability 0.5", f"{first} ×3", "SimpleTuner advises 0 for edit models"):
        assert fact in text, fact


class Killed(Exception):
    """The process dying in the middle of a step (nothing after it reaches the disk)."""


class KillAt(NullSink):
    """Dies when step ``at`` has been trained, before anything of that step is saved."""

    def __init__(self, at: int) -> None:
        super().__init__()
        self.at = at

    def _write(self, ev):
        if ev["event"] == "progress" and ev["step"] == self.at:
            raise Killed(f"killed in step {self.at}")


@pytest.mark.parametrize("adapter,timesteps", [("dora", "shift"), ("lokr", "sigmoid")])
def test_every_option_with_dora_and_lokr_resumes_after_a_kill_bit_exactly(demo_project, tmp_path, adapter,
                                                                          timesteps):
    """Issue 15: every recipe option on at once, with each non-LoRA adapter: a run killed after its
    step-2 checkpoint and resumed writes the LoRA (EMA) and the raw file an uninterrupted run writes."""
    dataset = small_dataset(demo_project, tmp_path / "dataset", sets=2)
    recipe = dict(steps=3, checkpoint_every=2, sample_sets=0, learning_rate=5e-3, warmup_steps=1, adapter=adapter,
                  timesteps=timesteps, timestep_scale=1.2, lr_schedule="cosine", ema_decay=0.9)
    cfg = _config(demo_project, tmp_path, dataset={"path": str(dataset), "caption_dropout": 0.5,
                                                   "repeats": {"shapes01": 3}}, **recipe)
    config = load_config(cfg)
    full = train(config, NullSink())
    full_lora, full_raw = _lora(full.lora), _lora(config.output.raw_lora_path)
    assert read_lora_file(full.lora)[1]["lorastudio.adapter"] == adapter

    with pytest.raises(Killed):  # a fresh run (the last one's checkpoints retired), killed in step 3
        train(load_config(cfg), KillAt(3))
    assert [cp.step for cp in ckpt.list_checkpoints(config.output.run_dir)] == [2]
    sink = NullSink()
    resumed = train(load_config(cfg), sink, resume=True)
    assert sink.history[0]["resumed_from"] == 2
    assert _equal(full_lora, _lora(resumed.lora)) and _equal(full_raw, _lora(config.output.raw_lora_path))
    assert not _equal(full_lora, full_raw), "EMA on: the LoRA holds the average, not the last step"
    # `lorastudio export` of the last checkpoint puts the EMA average under this adapter's names too
    exported, _ = export_checkpoint(config.output.run_dir, out=tmp_path / "exported.safetensors")
    assert _equal(full_lora, _lora(exported))
    if adapter == "dora":  # ComfyUI's DoRA file: its scales need the base weights, which export loads
        comfy, _ = export_checkpoint(config.output.run_dir, out=tmp_path / "comfy.safetensors", fmt="comfyui")
        tensors, meta = read_lora_file(comfy)
        assert meta["lorastudio.format"] == "comfyui" and any(k.endswith(".dora_scale") for k in tensors)


def test_recipe_errors_that_need_the_dataset_come_before_any_model_loads(demo_project, tmp_path):
    cfg = load_config(_config(demo_project, tmp_path, dataset={"repeats": {"no_such_set": 2}}))
    with pytest.raises(TrainingError) as info:
        make_plan(cfg)
    assert info.value.kind == "config" and info.value.message.startswith("dataset.repeats: no set named 'no_such_set'")


def test_qwen_edit_plus_encodes_the_empty_caption_once_per_set(demo_project, tiny_qwen_edit_plus_dir, tmp_path):
    """Qwen-Image-Edit-Plus's prompt encoding sees the input images, so the empty caption is
    encoded with each set's inputs (and the encodings differ), where Kontext's is shared."""
    from lorastudio.dataset import scan_dataset
    from lorastudio.training.cache import TrainingCache
    from lorastudio.training.families import detect_family

    family_cls = detect_family(tiny_qwen_edit_plus_dir, "")
    assert family_cls.prompt_depends_on_inputs
    family = family_cls(tiny_qwen_edit_plus_dir, torch.device("cpu"), torch.float32)
    family.use_input_size("target")  # inputs at 32 px, not the pipeline's ~1 MP
    sets = scan_dataset(demo_project.parent / "dataset").trainable_sets()[:2]
    cached = TrainingCache(tmp_path / "cache", family, 32).build(sets, empty_captions=True)
    a, b = (s.empty_prompt for s in cached)
    assert a is not b and any(not torch.equal(a[k], b[k]) for k in a if a[k].shape == b[k].shape)
    again = TrainingCache(tmp_path / "cache", family, 32)
    rebuilt = again.build(sets, empty_captions=True)  # from the disk cache, no encoder
    assert again.stats.prompt_misses == again.stats.latent_misses == 0
    assert all(torch.equal(rebuilt[0].empty_prompt[k], a[k]) for k in a)


def test_previews_are_drawn_with_the_ema_weights(demo_project, tmp_path, monkeypatch):
    """With EMA on, the preview shows what the LoRA file will hold (the average), and the
    model trains on with its raw weights afterwards."""
    config = load_config(_config(demo_project, tmp_path, steps=2, sample_sets=1, learning_rate=5e-3, ema_decay=0.5))
    family_cls = make_plan(config).family_cls
    seen = []
    original = family_cls.sample

    def observed(self, transformer, *args, **kwargs):
        seen.append({k: v.clone() for k, v in peft_state_dict(transformer).items()})
        return original(self, transformer, *args, **kwargs)

    monkeypatch.setattr(family_cls, "sample", observed)
    result = train(config, NullSink(), keep_model=True)
    rank = config.train.rank
    assert len(seen) == 1
    assert _equal(export_state_dict(seen[0], rank, float(rank), "kontext"), _lora(result.lora))
    assert _equal(export_state_dict(peft_state_dict(result.transformer), rank, float(rank), "kontext"),
                  _lora(config.output.raw_lora_path))
    assert not _equal(_lora(result.lora), _lora(config.output.raw_lora_path))
