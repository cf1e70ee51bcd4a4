"""Held-out validation (issue 14) on the tiny Kontext demo: the config checks before any model
loads, the loss (deterministic, never touching the training's random streams, reproduced on
resume, of the EMA weights when EMA is on), the best checkpoint and its LoRA, early stop."""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import tomli_w
import torch

from lorastudio import protocol, run_folder
from lorastudio.config import load_config
from lorastudio.training import checkpoint as ckpt
from lorastudio.training.events import NullSink
from lorastudio.training.lora import export_state_dict, is_adapter_parameter, read_lora_file
from lorastudio.training.plan import TrainingError, describe_plan, make_plan
from lorastudio.training.trainer import train
from lorastudio.training.validation import Validator

from trainer_helpers import make_config

try:
    import tomllib
except ModuleNotFoundError:  # pragma: no cover
    import tomli as tomllib  # type: ignore[no-redef]


def validation_config(demo_project, out: Path, validation: list[str], dataset: Path | None = None,
                      **train_keys) -> Path:
    """The demo's fast config with ``dataset.validation`` set."""
    path = make_config(demo_project, out, dataset=dataset, **train_keys)
    data = tomllib.loads(path.read_text(encoding="utf-8"))
    data["dataset"]["validation"] = validation
    path.write_text(tomli_w.dumps(data), encoding="utf-8")
    return path


def _plan_error(demo_project, tmp_path, validation) -> str:
    with pytest.raises(TrainingError) as info:
        make_plan(load_config(validation_config(demo_project, tmp_path, validation)))
    assert info.value.kind == "config"
    return info.value.message


def test_unknown_held_out_sets_are_config_errors_naming_the_sets_that_exist(demo_project, tmp_path):
    names = [s.name for s in make_plan(load_config(make_config(demo_project, tmp_path))).sets]
    message = _plan_error(demo_project, tmp_path, [names[0], "no_such_set"])
    assert message.startswith("dataset.validation: no set named 'no_such_set'")
    assert names[0] in message and names[1] in message  # the names that exist


def test_holding_out_every_set_is_refused(demo_project, tmp_path):
    names = [s.name for s in make_plan(load_config(make_config(demo_project, tmp_path))).sets]
    assert _plan_error(demo_project, tmp_path, names).startswith("dataset.validation: holds out every set")


def test_a_held_out_set_with_errors_is_reported_and_skipped_like_any_other(demo_project, tmp_path):
    dataset = small_dataset(demo_project, tmp_path / "data", sets=2)
    shutil.copyfile(next(dataset.glob("*_start.png")), dataset / "broken_start.png")  # no broken_end
    plan = make_plan(load_config(validation_config(demo_project, tmp_path, ["broken"], dataset=dataset)))
    assert plan.skipped == ["broken"] and plan.validation == [] and len(plan.sets) == 2
    assert any(w.startswith("dataset.validation: every held-out set has errors") for w in plan.warnings)


def test_early_stop_without_held_out_sets_is_warned_about(demo_project, tmp_path):
    plan = make_plan(load_config(make_config(demo_project, tmp_path, early_stop=3)))
    assert any(w.startswith("train.early_stop = 3 does nothing without held-out sets") for w in plan.warnings)


def _run(cfg: Path, **kw):
    sink = NullSink()
    return train(load_config(cfg), sink, **kw), sink.history


def _lora(path: Path) -> dict[str, torch.Tensor]:
    return read_lora_file(path)[0]


def _equal(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def small_dataset(demo_project, folder: Path, sets: int = 4, leave_out: str = "") -> Path:
    """The demo's first ``sets`` sets (fewer to encode), without ``leave_out``."""
    folder.mkdir(parents=True, exist_ok=True)
    src = load_config(demo_project).dataset.path
    names = sorted({f.name.split("_")[0].split(".")[0] for f in src.iterdir() if f.suffix in (".png", ".txt")})
    for name in names[:sets]:
        if name != leave_out:
            for f in src.glob(f"{name}[._]*"):
                shutil.copyfile(f, folder / f.name)
    return folder


def _held_out(dataset: Path) -> list[str]:
    """The last set, held out in every run below."""
    return [sorted(p.name.split("_")[0] for p in dataset.glob("*_end.png"))[-1]]


@dataclass
class FirstRun:
    """A 4-step run validating every step, checkpoints at 2 and 4, as it left its files."""

    config: Any
    result: Any
    events: list[dict]
    held: list[str]
    jsonl: str
    manifests: dict[int, dict]
    best_tensors: dict[str, torch.Tensor]


@pytest.fixture(scope="module")
def first_run(demo_project, tmp_path_factory) -> FirstRun:
    out = tmp_path_factory.mktemp("validation")
    dataset = small_dataset(demo_project, out / "data")
    held = _held_out(dataset)
    cfg = validation_config(demo_project, out, held, dataset=dataset, steps=4, validate_every=1, checkpoint_every=2,
                            sample_sets=0)
    result, events = _run(cfg, keep_model=True)
    config = load_config(cfg)
    return FirstRun(config=config, result=result, events=events, held=held,
                    jsonl=run_folder.validation_path(config.output.run_dir).read_text(encoding="utf-8"),
                    manifests={c.step: c.manifest for c in ckpt.list_checkpoints(config.output.run_dir)},
                    best_tensors=_lora(config.output.best_lora_path))


def test_validation_events_file_manifests_and_the_best_lora(first_run):
    config, result, events = first_run.config, first_run.result, first_run.events
    assert events[0]["sets"] == 3  # trained sets only
    validations = [e for e in events if e["event"] == "validation"]
    assert [v["step"] for v in validations] == [1, 2, 3, 4]  # once per step, checkpoints included
    for v in validations:
        assert list(v["per_sigma"]) == ["0.1", "0.3", "0.5", "0.7", "0.9"]
        assert v["loss"] == pytest.approx(sum(v["per_sigma"].values()) / 5, rel=1e-12)
    # the run folder keeps them, one event per line
    assert [protocol.decode(line) for line in first_run.jsonl.splitlines()] == validations
    # every manifest carries its validation loss; exactly one, the lowest, says best
    by_step = {v["step"]: v["loss"] for v in validations}
    manifests = first_run.manifests
    assert {step: m["validation_loss"] for step, m in manifests.items()} == {2: by_step[2], 4: by_step[4]}
    best = min(manifests, key=lambda step: (manifests[step]["validation_loss"], step))
    assert {step: m["best"] for step, m in manifests.items()} == {step: step == best for step in manifests}
    # NAME.best.safetensors: the best checkpoint's LoRA, written like NAME.safetensors
    assert events[-1]["best"] == str(config.output.best_lora_path) == str(result.best)
    from safetensors.torch import load_file

    best_lora = load_file(str(ckpt.checkpoint_path(config.output.run_dir, best) / "lora.safetensors"))
    assert _equal(first_run.best_tensors, export_state_dict(best_lora, 4, 4.0, "kontext"))
    best_meta, last_meta = read_lora_file(result.best)[1], read_lora_file(result.lora)[1]
    assert best_meta["lorastudio.steps"] == str(best) and best_meta.keys() == last_meta.keys()
    # the same weights evaluated twice give the same number: the last step's
    assert [s.name for s in result.held_out] == first_run.held  # cached like the others, never trained on
    validator = Validator(result.family, result.held_out, 7, torch.float32, torch.device("cpu"))
    first = validator.evaluate(result.transformer)
    assert first == validator.evaluate(result.transformer) == (validations[-1]["loss"], validations[-1]["per_sigma"])
    # the plan says it
    text = "\n".join(describe_plan(make_plan(config)))
    assert "3 sets to train, 1 held out for validation" in text
    assert "validation: 1 held-out set, every 1 steps and at each checkpoint" in text


def test_a_resumed_run_reproduces_the_validation_numbers_and_the_best(first_run):
    """Killed in step 3: the checkpoint at step 2 survives, and validation.jsonl has lines
    the resumed run writes again; the resumed run's numbers, file and best are the same."""
    config = first_run.config
    run_dir = config.output.run_dir
    shutil.rmtree(ckpt.checkpoint_path(run_dir, 4))
    config.output.best_lora_path.unlink()
    result, events = _run(config.source, resume=True)
    assert events[0]["resumed_from"] == 2
    full = [e for e in first_run.events if e["event"] == "validation"]
    assert [e for e in events if e["event"] == "validation"] == full[2:]
    assert run_folder.validation_path(run_dir).read_text(encoding="utf-8") == first_run.jsonl
    assert {c.step: c.manifest for c in ckpt.list_checkpoints(run_dir)} == first_run.manifests
    # the best so far was read back from the manifests; its LoRA is written again (a kill
    # may have come between the best checkpoint and its file)
    assert events[-1]["best"] == str(config.output.best_lora_path)
    assert _equal(_lora(config.output.best_lora_path), first_run.best_tensors)


def test_resuming_with_other_held_out_sets_or_input_sizes_is_refused(first_run, tmp_path):
    """The held-out sets decide which sets train, and so every batch drawn; the input-size rule
    what the inputs look like: a resume with others could not continue the run. A config error
    naming the key, before any step."""
    data = tomllib.loads(first_run.config.source.read_text(encoding="utf-8"))
    data["dataset"]["validation"] = []  # output.dir is absolute: the same run folder
    cfg = tmp_path / "config.toml"
    cfg.write_text(tomli_w.dumps(data), encoding="utf-8")
    with pytest.raises(TrainingError) as info:
        _run(cfg, resume=True)
    assert info.value.kind == "config"
    assert info.value.message.startswith("dataset.validation: the checkpoint at step ")
    assert f"validation_sets {first_run.held!r}, the config now says []" in info.value.message
    # so does another input-size rule (what "auto" means for a family can change between versions)
    data = tomllib.loads(first_run.config.source.read_text(encoding="utf-8"))
    data["train"]["input_size"] = "pipeline"
    cfg.write_text(tomli_w.dumps(data), encoding="utf-8")
    with pytest.raises(TrainingError) as info:
        _run(cfg, resume=True)
    assert info.value.message.startswith("train.input_size: the checkpoint at step ")
    assert "input_size 'target', the config now says 'pipeline'" in info.value.message


def test_validation_never_changes_the_lora_and_sees_the_ema_weights(demo_project, tmp_path):
    """The same run validating every step, and without any validation (the held-out set not
    in the dataset at all): bit-identical LoRAs. With EMA on, the loss is the EMA weights'."""
    dataset = small_dataset(demo_project, tmp_path / "data", sets=3)
    held = _held_out(dataset)
    common = dict(steps=3, checkpoint_every=0, sample_sets=0, learning_rate=5e-3, ema_decay=0.9)
    validated, events = _run(validation_config(demo_project, tmp_path, held, dataset=dataset, validate_every=1,
                                               **common), keep_model=True)
    config = load_config(tmp_path / "config.toml")
    lora, raw = _lora(config.output.lora_path), _lora(config.output.raw_lora_path)
    assert [e["step"] for e in events if e["event"] == "validation"] == [1, 2, 3]
    # the last validation is of the averaged weights (in the step-3 checkpoint), not the raw ones
    from safetensors.torch import load_file

    last = [e for e in events if e["event"] == "validation"][-1]
    validator = Validator(validated.family, validated.held_out, 7, torch.float32, torch.device("cpu"))
    transformer = validated.transformer
    assert validator.evaluate(transformer)[0] != last["loss"]
    ema = load_file(str(ckpt.checkpoint_path(config.output.run_dir, 3) / "ema.safetensors"))
    params = [p for n, p in transformer.named_parameters() if is_adapter_parameter(n)]
    with torch.no_grad():
        for i, p in enumerate(params):
            p.copy_(ema[f"ema.{i}"])
    assert validator.evaluate(transformer)[0] == last["loss"]

    without = small_dataset(demo_project, tmp_path / "without", sets=3, leave_out=held[0])
    plain, plain_events = _run(make_config(demo_project, tmp_path, dataset=without, **common))  # same cache
    assert not any(e["event"] == "validation" for e in plain_events) and "best" not in plain_events[-1]
    # a fresh run moved the validated run's history and best LoRA aside, with its checkpoints
    previous = config.output.run_dir / ckpt.PREVIOUS
    assert not run_folder.validation_path(config.output.run_dir).exists() and not config.output.best_lora_path.exists()
    assert (previous / "validation.jsonl").is_file() and (previous / config.output.best_lora_path.name).is_file()
    assert _equal(lora, _lora(plain.lora)) and _equal(raw, _lora(config.output.raw_lora_path))


def test_early_stop_after_k_evaluations_without_a_new_best(demo_project, tmp_path):
    """A learning rate so small the weights cannot move the loss by one bit: the first
    evaluation is the best, the next two are not, and the run stops as Stop does."""
    dataset = small_dataset(demo_project, tmp_path / "data", sets=2)
    cfg = validation_config(demo_project, tmp_path, _held_out(dataset), dataset=dataset, steps=20, validate_every=1,
                            early_stop=2, learning_rate=1e-30, sample_sets=0)
    result, events = _run(cfg)
    losses = [e["loss"] for e in events if e["event"] == "validation"]
    assert len(losses) == 3 and len(set(losses)) == 1
    assert result.stopped and result.step == 3
    assert events[-1] == {"event": "done", "lora": str(result.lora), "step": 3, "stopped": True,
                          "best": str(result.best)}
    stopping = [e["message"] for e in events if e["event"] == "status" and e["phase"] == "stopping"]
    assert stopping == ["stopping after step 3 (early stop: no new best held-out loss in 2 evaluations "
                        f"(the best is {losses[0]:.4g} at step 1))"]
    config = load_config(cfg)
    assert [c.step for c in ckpt.list_checkpoints(config.output.run_dir)] == [3]
    assert result.lora.is_file() and result.best.is_file()


def test_prune_keeps_the_best_checkpoint_and_one_manifest_says_best(tmp_path):
    param = torch.nn.Parameter(torch.zeros(2))
    optimizer = torch.optim.AdamW([param])
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)
    losses = {1: 3.0, 2: 1.0, 3: 2.5, 4: 1.0, 5: 2.9, 6: None}  # step 4 ties step 2: the earlier stays best
    for step, loss in losses.items():
        ckpt.save_checkpoint(tmp_path, step, {"w": param.detach()}, optimizer, scheduler,
                             {"validation_loss": loss, "best": False})
    kept = ckpt.list_checkpoints(tmp_path)
    assert [c.step for c in kept] == [2, 4, 5, 6]  # the last three, and the best
    assert ckpt.lowest_validation_loss(kept).step == 2
    ckpt.mark_best(tmp_path, 2)
    assert [c.manifest["best"] for c in ckpt.list_checkpoints(tmp_path)] == [True, False, False, False]
