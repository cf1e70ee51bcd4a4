"""The training loop on the tiny models, in process: events, files, cache reuse, learning,
exact resume, NaN, mode checks. (The real CLI/worker processes are in test_worker.py.)"""

from __future__ import annotations

import statistics
from pathlib import Path

import pytest
import torch
from PIL import Image

from lorastudio import protocol
from lorastudio.config import load_config
from lorastudio.training import checkpoint as ckpt
from lorastudio.training.events import NullSink
from lorastudio.training.lora import read_lora_file
from lorastudio.training.stop import StopSignal
from lorastudio.training.trainer import TrainingError, make_plan, train

from trainer_helpers import StopAt, make_config


def _run(cfg: Path, **kw):
    sink = kw.pop("sink", None) or NullSink()
    result = train(load_config(cfg), sink, **kw)
    return result, sink.history


def test_kontext_end_to_end_events_and_files(demo_project, tmp_path):
    cfg = make_config(demo_project, tmp_path, steps=4, sample_every=2, checkpoint_every=2, sample_sets=1)
    result, events = _run(cfg)
    kinds = [e["event"] for e in events]
    assert kinds[0] == "started" and kinds[-1] == "done"
    for e in events:  # every event survives the wire format
        assert protocol.decode(protocol.encode(e)) == protocol.decode(protocol.encode(e))
    started = events[0]
    assert started["total"] == 4 and started["family"] == "kontext" and started["resumed_from"] == 0
    caching = [e for e in events if e["event"] == "status" and e["phase"] == "caching"]
    assert caching[-1]["current"] == caching[-1]["total"] == started["sets"]
    progress = [e for e in events if e["event"] == "progress"]
    assert [p["step"] for p in progress] == [1, 2, 3, 4]
    for p in progress:
        assert p["total"] == 4 and isinstance(p["loss"], float) and p["lr"] > 0 and p["rate"] > 0
    assert progress[-1]["eta"] == 0
    phases = {e["phase"] for e in events if e["event"] == "status"}
    assert {"caching", "loading", "training", "sampling", "saving"} <= phases
    run_dir = Path(started["run_dir"])
    assert [e["step"] for e in events if e["event"] == "checkpoint"] == [2, 4]
    samples = [e for e in events if e["event"] == "sample"]
    assert [s["step"] for s in samples] == [2, 4]
    for s in samples:
        path = Path(s["path"])
        assert path.is_file() and path.parent == run_dir / "samples"
        assert path.name == f"step_{s['step']:06d}_{s['set']}.png"
        assert Path(s["target"]).is_file()
        with Image.open(path) as im:
            assert im.size[0] % 16 == 0 and im.size[1] % 16 == 0
    done = events[-1]
    assert done == {"event": "done", "lora": str(result.lora), "step": 4, "stopped": False}
    assert result.lora == load_config(cfg).output.lora_path and result.lora.is_file()
    assert (run_dir / "checkpoints" / "step_000004" / "manifest.json").is_file()
    assert list((run_dir / "cache" / "latents").glob("*.safetensors"))
    assert list((run_dir / "cache" / "prompts").glob("*.safetensors"))
    tensors, meta = read_lora_file(result.lora)
    assert meta["lorastudio.family"] == "kontext" and meta["lorastudio.steps"] == "4"
    assert all(k.startswith("transformer.") for k in tensors)


def test_warm_cache_skips_encoders_and_a_caption_edit_recomputes_one_prompt(demo_project, tmp_path, monkeypatch):
    from lorastudio.training.families.kontext import KontextFamily

    data = tmp_path / "data"
    src = load_config(demo_project).dataset.path
    data.mkdir()
    for f in sorted(src.iterdir())[:9]:
        (data / f.name).write_bytes(f.read_bytes())
    cfg = make_config(demo_project, tmp_path / "run", dataset=data, steps=1, sample_sets=0)
    calls = {"load": 0, "image": 0, "prompt": 0}
    for name, key in (("load_encoders", "load"), ("encode_image", "image"), ("encode_prompt", "prompt")):
        original = getattr(KontextFamily, name)

        def counted(self, *a, _original=original, _key=key, **k):
            calls[_key] += 1
            return _original(self, *a, **k)

        monkeypatch.setattr(KontextFamily, name, counted)
    _run(cfg)
    n_sets = len(make_plan(load_config(cfg)).sets)
    cold = dict(calls)
    assert cold["load"] == 1 and cold["image"] == 2 * n_sets and cold["prompt"] >= 1
    _run(cfg)
    assert calls == cold, "a warm cache must not load or run any encoder"
    caption = next(data.glob("*.txt"))
    caption.write_text("a completely new caption", encoding="utf-8")
    _run(cfg)
    assert calls["image"] == cold["image"] and calls["prompt"] == cold["prompt"] + 1


def test_warm_cache_with_previews_loads_no_encoder(demo_project, tmp_path, monkeypatch):
    """Preview prompts are kept on disk too: a re-run (or a Resume) with a warm cache goes to
    step 1 without loading the text encoder(s), which on FLUX.1 (T5-XXL) or Qwen (Qwen2.5-VL
    7B) costs many GB and up to minutes."""
    from lorastudio.training.families.kontext import KontextFamily

    loads = []
    original = KontextFamily.load_encoders

    def counted(self, *a, **k):
        loads.append(1)
        return original(self, *a, **k)

    monkeypatch.setattr(KontextFamily, "load_encoders", counted)
    cfg = make_config(demo_project, tmp_path / "run", steps=2, sample_every=2, sample_sets=1, checkpoint_every=0)
    samples = tmp_path / "run" / "output" / "test_lora.run" / "samples"
    _run(cfg)
    assert len(loads) >= 1
    first = sorted(p.name for p in samples.glob("*.png"))
    assert first
    cold_loads = len(loads)
    for png in samples.glob("*.png"):
        png.unlink()
    _run(cfg)
    assert len(loads) == cold_loads, "a warm cache must not load any encoder, previews included"
    assert sorted(p.name for p in samples.glob("*.png")) == first  # the previews are still made


def test_loss_falls_on_the_demo_edit(demo_project, tmp_path):
    cfg = make_config(demo_project, tmp_path, steps=30, learning_rate=1e-2, rank=8, sample_sets=0, seed=0)
    result, _ = _run(cfg)
    first, last = statistics.mean(result.losses[:6]), statistics.mean(result.losses[-6:])
    assert last < 0.9 * first, (first, last)


#: The demo's own model (Kontext), and the families whose training state is their own (see the families' files).
RESUME_MODELS = [None, "tiny_qwen_image21_dir", "tiny_longcat_edit_dir", "tiny_joyimage_edit_plus_dir",
                 "tiny_joyimage_edit_dir"]


@pytest.mark.parametrize("fixture", RESUME_MODELS, ids=[f or "kontext" for f in RESUME_MODELS])
def test_resume_gives_the_same_lora_as_an_uninterrupted_run(fixture, request, demo_project, tmp_path):
    """A graceful stop saves a checkpoint and the LoRA so far; resuming from it gives, bit for
    bit, the LoRA of a run that was never interrupted."""
    model = request.getfixturevalue(fixture) if fixture else None
    dataset = _demo_sets(demo_project, tmp_path / "sets", 3) if model else None  # fewer sets: the test's time
    common = dict(steps=6, checkpoint_every=3, sample_sets=0, learning_rate=5e-3)
    full, _ = _run(make_config(demo_project, tmp_path / "full", model=model, dataset=dataset, **common))

    cfg = make_config(demo_project, tmp_path / "stopped", model=model, dataset=dataset, **common)
    stop = StopSignal()
    stopped, events = _run(cfg, stop=stop, sink=StopAt(stop, 4))
    assert stopped.stopped and stopped.step == 4 and events[-1]["stopped"] is True
    assert [e["step"] for e in events if e["event"] == "checkpoint"] == [3, 4]
    assert stopped.lora.is_file()  # the LoRA so far

    resumed, events = _run(cfg, resume=True)
    assert events[0]["resumed_from"] == 4
    assert [e["step"] for e in events if e["event"] == "progress"] == [5, 6]
    a, _ = read_lora_file(full.lora)
    b, meta = read_lora_file(resumed.lora)
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k
    assert meta["lorastudio.steps"] == "6"


def _demo_sets(demo_project: Path, dest: Path, count: int) -> Path:
    """The demo's first ``count`` edit sets (inputs, target, caption), copied to ``dest``."""
    src = load_config(demo_project).dataset.path
    names = sorted({p.name.split("_")[0] for p in src.glob("*_end.*")})[:count]
    dest.mkdir(parents=True)
    for p in src.iterdir():
        if p.name.split("_")[0].split(".")[0] in names:
            (dest / p.name).write_bytes(p.read_bytes())
    return dest


def _fault_at(monkeypatch, step: int, fault) -> None:
    """The family's ``step``-th prediction goes through ``fault(prediction)`` (one step, one
    prediction here: no gradient checkpointing); the others are untouched."""
    from lorastudio.training.families.kontext import KontextFamily

    real, calls = KontextFamily.predict, [0]

    def predict(self, *args, **kwargs):
        calls[0] += 1
        pred = real(self, *args, **kwargs)
        return fault(pred) if calls[0] == step else pred

    monkeypatch.setattr(KontextFamily, "predict", predict)


def test_nan_loss_stops_without_checkpointing_the_bad_state(demo_project, tmp_path, monkeypatch):
    cfg = make_config(demo_project, tmp_path, steps=6, checkpoint_every=2, sample_sets=0)
    with monkeypatch.context() as patch:
        _fault_at(patch, 3, lambda pred: pred * float("nan"))
        with pytest.raises(TrainingError) as info:
            _run(cfg)
    assert info.value.kind == "nan" and "step 3" in info.value.message
    config = load_config(cfg)
    assert [c.step for c in ckpt.list_checkpoints(config.output.run_dir)] == [2]
    good = ckpt.latest_checkpoint(config.output.run_dir)
    from safetensors.torch import load_file

    assert all(torch.isfinite(t).all() for t in load_file(str(good.path / "lora.safetensors")).values())
    assert not config.output.lora_path.exists()

    # resuming that checkpoint with another rank is refused up front, naming the key
    changed = make_config(demo_project, tmp_path, steps=6, checkpoint_every=2, sample_sets=0, rank=8)
    with pytest.raises(TrainingError) as info:
        _run(changed, resume=True)
    assert info.value.kind == "config" and "train.rank" in info.value.message


def test_oom_and_crash_faults_are_classified(demo_project, tmp_path, monkeypatch):
    from lorastudio.training.plan import classify

    cfg = make_config(demo_project, tmp_path, steps=3, sample_sets=0)

    def out_of_memory(_pred):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    with monkeypatch.context() as patch:
        _fault_at(patch, 2, out_of_memory)
        with pytest.raises(torch.OutOfMemoryError) as info:
            _run(cfg)
    assert classify(info.value)[0] == "oom"

    # an exception inside the family's own code is a crash, named
    from lorastudio.training.families.kontext import KontextFamily

    def broken_predict(self, *args, **kwargs):
        raise IndexError("position ids out of range")

    monkeypatch.setattr(KontextFamily, "predict", broken_predict)
    with pytest.raises(IndexError) as info:
        _run(cfg)
    assert classify(info.value) == ("crash", "IndexError: position ids out of range")


def test_mode_and_input_count_are_checked_before_loading(demo_project, tmp_path):
    kontext = load_config(demo_project).model.path
    single = tmp_path / "single"
    single.mkdir()
    Image.new("RGB", (32, 32), "red").save(single / "cat.png")
    (single / "cat.txt").write_text("a cat")
    with pytest.raises(TrainingError) as info:
        make_plan(load_config(make_config(demo_project, tmp_path / "a", dataset=single)))
    assert info.value.kind == "data" and "edit" in info.value.message

    many = tmp_path / "many"
    many.mkdir()
    for name in ("x_start.png", "x_start1.png", "x_end.png"):
        Image.new("RGB", (32, 32), "blue").save(many / name)
    with pytest.raises(TrainingError) as info:
        make_plan(load_config(make_config(demo_project, tmp_path / "b", dataset=many, model=kontext)))
    assert info.value.kind == "data" and "at most 1" in info.value.message


#: Families whose few-steps run here trains text-to-image sets (Qwen-Image 2.1 trains both kinds; its
#: edit sets train in the resume test).
T2I_RUNS = ("flux", "qwen-image-2.1", "longcat", "joyimage-edit-plus", "joyimage-edit")
FAMILY_FIXTURES = [("flux", "tiny_flux_dir"), ("qwen-edit-plus", "tiny_qwen_edit_plus_dir"),
                   ("qwen-image-2.1", "tiny_qwen_image21_dir"), ("zimage-omni", "tiny_zimage_omni_dir"),
                   ("longcat", "tiny_longcat_dir"), ("joyimage-edit-plus", "tiny_joyimage_edit_plus_dir"),
                   ("joyimage-edit", "tiny_joyimage_edit_dir")]


@pytest.mark.parametrize("family,fixture", FAMILY_FIXTURES, ids=[f for f, _ in FAMILY_FIXTURES])
def test_other_families_train_a_few_steps(family, fixture, request, demo_project, tmp_path):
    try:
        model = request.getfixturevalue(fixture)
    except pytest.FixtureLookupError:
        pytest.skip(f"no {fixture} fixture")
    dataset = None
    if family in T2I_RUNS:  # text-to-image: the demo's targets with captions, no inputs
        src = load_config(demo_project).dataset.path
        dataset = tmp_path / "t2i"
        dataset.mkdir()
        for i, end in enumerate(sorted(src.glob("*_end.*"))[:3]):
            (dataset / f"img{i}{end.suffix}").write_bytes(end.read_bytes())
            (dataset / f"img{i}.txt").write_text("an inverted mirrored picture")
    cfg = make_config(demo_project, tmp_path, model=model, dataset=dataset, steps=2, sample_sets=1, batch_size=2)
    result, events = _run(cfg)
    assert events[0]["family"] == family and events[-1]["event"] == "done"
    assert [e["step"] for e in events if e["event"] == "progress"] == [1, 2]
    assert all(e["loss"] is not None for e in events if e["event"] == "progress")
    tensors, meta = read_lora_file(result.lora)
    assert meta["lorastudio.family"] == family
    from lorastudio.training.formats import ARCHITECTURE, DIFFUSERS_ALPHA

    assert any(k.endswith(".lora_A.weight") for k in tensors)
    assert any(k.endswith(".alpha") for k in tensors) == DIFFUSERS_ALPHA[ARCHITECTURE[family]]  # else folded


def test_zimage_omni_stops_gracefully_and_resumes_bit_exact(tiny_zimage_omni_dir, demo_project, tmp_path):
    """Z-Image Omni (edit pairs through its reference-image and SigLIP path): a stop at step 2
    checkpoints and writes the LoRA so far; resuming gives bit for bit the LoRA of a run that
    never stopped."""
    from lorastudio.training.demo import write_demo_dataset

    data = write_demo_dataset(tmp_path / "pairs", paired=True, sets=2)
    common = dict(model=tiny_zimage_omni_dir, dataset=data, steps=3, checkpoint_every=0, sample_sets=0,
                  learning_rate=5e-3)
    full, _ = _run(make_config(demo_project, tmp_path / "full", **common))
    cfg = make_config(demo_project, tmp_path / "stopped", **common)
    stop = StopSignal()
    stopped, events = _run(cfg, stop=stop, sink=StopAt(stop, 2))
    assert stopped.stopped and stopped.step == 2 and events[-1]["stopped"] is True
    assert [e["step"] for e in events if e["event"] == "checkpoint"] == [2] and stopped.lora.is_file()
    resumed, events = _run(cfg, resume=True)
    assert events[0]["resumed_from"] == 2 and [e["step"] for e in events if e["event"] == "progress"] == [3]
    a, _ = read_lora_file(full.lora)
    b, meta = read_lora_file(resumed.lora)
    assert a.keys() == b.keys() and meta["lorastudio.family"] == "zimage-omni"
    for k in a:
        assert torch.equal(a[k], b[k]), k
