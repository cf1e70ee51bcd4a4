"""Text-to-image LoRAs (image + caption sets, no pairs) on FLUX.1-dev, Qwen-Image and
FLUX.2: the loop trains, previews, writes a file the pipeline loads back to the trained
prediction; the chosen format reaches the file; and a dataset whose kind the base model
does not train is refused in words before any model loads (CLI dry run, trainer, GUI check)."""

from __future__ import annotations

import json

import pytest
import torch

from lorastudio import cli
from lorastudio.config import load_config
from lorastudio.dataset.model import Mode
from lorastudio.training.demo import write_demo_dataset
from lorastudio.training.events import NullSink
from lorastudio.training.families import PIPELINE_CLASSES
from lorastudio.training.lora import read_lora_file
from lorastudio.training.trainer import TrainingError, make_plan, train
from lorastudio import catalog
from lorastudio.model_folder import detect_model_folder

from trainer_helpers import assert_pipeline_reproduces_lora, make_config

T2I = [("flux", "tiny_flux_dir"), ("qwen-image", "tiny_qwen_image_dir"), ("flux2-klein", "tiny_flux2_klein_dir"),
       ("zimage", "tiny_zimage_dir")]


def _edit_config(path, **sections) -> None:
    import tomli_w
    import tomllib

    data = tomllib.loads(path.read_text(encoding="utf-8"))
    for section, values in sections.items():
        data.setdefault(section, {}).update(values)
    path.write_text(tomli_w.dumps(data), encoding="utf-8")


@pytest.fixture(scope="module")
def single_dataset(tmp_path_factory):
    return write_demo_dataset(tmp_path_factory.mktemp("t2i") / "data", paired=False, sets=3)


@pytest.mark.parametrize("family,fixture", T2I, ids=[f for f, _ in T2I])
def test_text_to_image_loop_previews_and_reload(request, family, fixture, demo_project, single_dataset, tmp_path):
    model = request.getfixturevalue(fixture)
    path = make_config(demo_project, tmp_path, model=model, dataset=single_dataset, steps=3, resolution=32, rank=4,
                       alpha=8.0, learning_rate=2e-2, sample_sets=1, sample_steps=2)
    _edit_config(path, dataset={"trigger": "zkw"})
    cfg = load_config(path)
    plan = make_plan(cfg)
    assert plan.dataset.mode is Mode.SINGLE and plan.family_cls.name == family
    result = train(cfg, NullSink(), keep_model=True)
    assert len(result.losses) == 3 and all(torch.isfinite(torch.tensor(result.losses)))
    assert all(not s.inputs for s in result.cached)
    samples = sorted((cfg.output.run_dir / "samples").glob("*.png"))
    assert samples  # the preview at the end, text only
    tensors, meta = read_lora_file(result.lora)
    assert meta["lorastudio.family"] == family and meta["modelspec.trigger_phrase"] == "zkw"
    assert meta["modelspec.description"].startswith("Text-to-image")

    assert_pipeline_reproduces_lora(result, model)


def test_the_trainer_writes_the_configured_format(demo_project, tiny_kontext_dir, tmp_path):
    path = make_config(demo_project, tmp_path, model=tiny_kontext_dir, steps=1, sample_sets=0)
    _edit_config(path, output={"format": "comfyui"})
    result = train(load_config(path), NullSink())
    tensors, meta = read_lora_file(result.lora)
    assert meta["lorastudio.format"] == "comfyui" and meta["modelspec.architecture"] == "Flux.1-dev/lora"
    assert "lora_unet_double_blocks_0_img_attn_qkv.lora_down.weight" in tensors
    assert all(k.startswith("lora_unet_") for k in tensors)


# -- dataset kind vs base model: refused in words, before any model loads ----------------------------


def _dry_run(capsys, config) -> tuple[int, str]:
    code = cli.main(["train", str(config), "--dry-run"])
    captured = capsys.readouterr()
    return code, captured.out + captured.err


def test_dry_run_refuses_text_to_image_sets_on_an_edit_model(capsys, demo_project, tiny_kontext_dir,
                                                             single_dataset, tmp_path, monkeypatch):
    import lorastudio.training.families._pipeline_family as pf

    monkeypatch.setattr(pf, "load_pipeline", lambda *a, **k: pytest.fail("a model was loaded"))
    config = make_config(demo_project, tmp_path, model=tiny_kontext_dir, dataset=single_dataset)
    code, out = _dry_run(capsys, config)
    assert code == 1
    assert "text-to-image sets" in out and "FLUX.1 Kontext is an image-editing model" in out
    for choice in ("FluxPipeline", "QwenImagePipeline", "Flux2KleinPipeline"):
        assert choice in out  # names the model folders that would train it


def test_dry_run_refuses_pairs_on_a_text_to_image_model(capsys, demo_project, tiny_flux_dir, tmp_path):
    config = make_config(demo_project, tmp_path, model=tiny_flux_dir)  # the demo's paired dataset
    code, out = _dry_run(capsys, config)
    assert code == 1 and "before/after pairs" in out and "text-to-image model" in out
    assert "FLUX.1 Kontext" in out and "FLUX.2" in out
    with pytest.raises(TrainingError) as err:
        make_plan(load_config(config))
    assert err.value.kind == "data"


def test_flux2_takes_both_kinds_in_a_dry_run(capsys, demo_project, tiny_flux2_klein_dir, single_dataset, tmp_path):
    code, out = _dry_run(capsys, make_config(demo_project, tmp_path / "a", model=tiny_flux2_klein_dir))
    assert code == 0 and "paired" in out and "(comfyui format, chosen automatically for FLUX.2 [klein]" in out
    assert "warning:" not in out
    code, out = _dry_run(capsys, make_config(demo_project, tmp_path / "b", model=tiny_flux2_klein_dir,
                                             dataset=single_dataset))
    assert code == 0 and "single" in out


@pytest.mark.parametrize("model, fmt, warned", [
    ("tiny_flux2_klein_dir", "diffusers", True), ("tiny_flux2_klein_dir", "comfyui", False),
    ("tiny_kontext_dir", "diffusers", False), ("tiny_kontext_dir", "auto", False)])
def test_dry_run_says_when_the_chosen_format_will_not_load_fully_in_comfyui(request, capsys, demo_project, tmp_path,
                                                                          model, fmt, warned):
    path = make_config(demo_project, tmp_path, model=request.getfixturevalue(model))
    _edit_config(path, output={"format": fmt})
    code, out = _dry_run(capsys, path)
    assert code == 0
    resolved = "diffusers" if fmt == "auto" else fmt
    assert f"({resolved} format" in out
    warning = [line for line in out.splitlines() if line.startswith("warning:")]
    if warned:
        assert len(warning) == 1 and "FLUX.2 [klein] LoRAs in the 'diffusers' format do not load fully in ComfyUI" \
            in warning[0] and '"comfyui"' in warning[0]
    else:
        assert not warning


def test_gui_model_folder_check_says_why(tiny_kontext_dir, tiny_flux_dir, tiny_flux2_klein_dir):
    """The GUI's torch-free check (``lorastudio.model_folder``) agrees with the trainer's families."""
    for class_name, cls in PIPELINE_CLASSES.items():
        record = catalog.family_for_pipeline(class_name)
        assert cls.name == record.id and cls.trains(Mode.PAIRED) == record.edit
        assert cls.trains(Mode.SINGLE) == record.text_to_image
    kontext = detect_model_folder(tiny_kontext_dir)
    assert kontext.dataset_note("paired") == ""
    assert "image-editing model" in kontext.dataset_note("single") and "FLUX.2" in kontext.dataset_note("single")
    flux = detect_model_folder(tiny_flux_dir)
    assert "text-to-image model" in flux.dataset_note("paired") and flux.dataset_note("single") == ""
    klein = detect_model_folder(tiny_flux2_klein_dir)
    assert klein.family == "flux2-klein" and klein.edit and klein.text_to_image
    assert klein.dataset_note("paired") == klein.dataset_note("single") == ""
    assert "image editing" in klein.summary and "text-to-image" in klein.summary
    index = json.loads((tiny_flux2_klein_dir / "model_index.json").read_text())
    assert index["_class_name"] == "Flux2KleinPipeline"
