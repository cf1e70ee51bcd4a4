"""``lorastudio caption`` on tiny random Qwen2.5-VL / Qwen3-VL folders, end to end.

The Qwen2.5-VL is the tiny Qwen-Image-Edit-Plus pipeline's text encoder + processor, used
both in place (a pipeline folder) and copied out as a plain model folder; the Qwen3-VL is
built from a config. Drafts from random weights are gibberish: the tests check what the
model was shown, the token limit, decoding, and what is (not) written.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from PIL import Image

from lorastudio.cli import main as cli_main
from lorastudio.dataset import read_caption, scan_dataset
from lorastudio.vl_folder import VLFolderError, detect_vl_folder

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def qwen25_model_dir(tiny_qwen_edit_plus_dir, tmp_path_factory) -> Path:
    """A plain Qwen2.5-VL model folder: the pipeline's text_encoder/ and processor/ side by side."""
    out = tmp_path_factory.mktemp("qwen25vl") / "Qwen2.5-VL-tiny"
    shutil.copytree(tiny_qwen_edit_plus_dir / "text_encoder", out)
    for f in (tiny_qwen_edit_plus_dir / "processor").iterdir():
        shutil.copy(f, out / f.name)
    return out


@pytest.fixture(scope="module")
def qwen3_model_dir(tmp_path_factory) -> Path:
    from lorastudio.training.tiny_vl import build_tiny_qwen3_vl

    return build_tiny_qwen3_vl(tmp_path_factory.mktemp("qwen3vl") / "Qwen3-VL-tiny")


def _picture(path: Path, colour: tuple[int, int, int], size=(96, 80)) -> None:
    Image.new("RGB", size, colour).save(path)


@pytest.fixture
def dataset_dir(tmp_path) -> Path:
    """Three paired sets: ``two`` has two inputs, ``done`` already has a caption."""
    d = tmp_path / "data"
    d.mkdir()
    for name, inputs in (("alpha", 1), ("two", 2), ("done", 1)):
        _picture(d / f"{name}_start.png", (200, 40, 40))
        if inputs == 2:
            _picture(d / f"{name}_start1.png", (40, 200, 40))
        _picture(d / f"{name}_end.png", (40, 40, 200))
    (d / "done.txt").write_text("make it blue\n", encoding="utf-8")
    return d


# -- finding the model ----------------------------------------------------------------------------

def test_detects_model_and_pipeline_folders(tiny_qwen_edit_plus_dir, qwen25_model_dir, qwen3_model_dir):
    pipe = detect_vl_folder(tiny_qwen_edit_plus_dir)
    assert (pipe.kind, pipe.model_type) == ("pipeline", "qwen2_5_vl")
    assert pipe.model_dir == tiny_qwen_edit_plus_dir / "text_encoder"
    assert pipe.processor_dir == tiny_qwen_edit_plus_dir / "processor"
    flat = detect_vl_folder(qwen25_model_dir)
    assert (flat.kind, flat.model_type, flat.params) == ("model", "qwen2_5_vl", pipe.params)
    q3 = detect_vl_folder(qwen3_model_dir)
    assert (q3.kind, q3.model_type, q3.class_name) == ("model", "qwen3_vl", "Qwen3VLForConditionalGeneration")
    assert q3.linear_params > 0 and q3.other_params > 0 and q3.layers == 2


def test_bad_folders_name_what_is_missing(tiny_qwen_image_dir, qwen25_model_dir, dataset_dir, tmp_path):
    with pytest.raises(VLFolderError, match=r"no processor/ folder.*text-to-image Qwen-Image"):
        detect_vl_folder(tiny_qwen_image_dir)
    with pytest.raises(VLFolderError, match="not a model folder"):
        detect_vl_folder(dataset_dir)
    kontext_like = tmp_path / "kontext"
    (kontext_like / "text_encoder").mkdir(parents=True)
    (kontext_like / "model_index.json").write_text(json.dumps({"_class_name": "FluxKontextPipeline",
                                                               "text_encoder": ["transformers", "CLIPTextModel"]}))
    (kontext_like / "text_encoder" / "config.json").write_text(json.dumps({"model_type": "clip_text_model"}))
    with pytest.raises(VLFolderError, match=r"text encoder of FluxKontextPipeline \(clip_text_model\) is not a "
                                            "vision-language model"):
        detect_vl_folder(kontext_like)
    # Weights saved without the language-model head (e.g. only the encoder part kept).
    headless = tmp_path / "headless"
    shutil.copytree(qwen25_model_dir, headless)
    from safetensors.torch import load_file, save_file

    weights = load_file(headless / "model.safetensors")
    save_file({k: v for k, v in weights.items() if not k.startswith("lm_head")}, headless / "model.safetensors")
    with pytest.raises(VLFolderError, match=r"no language-model head \(lm_head.weight\)"):
        detect_vl_folder(headless)
    config = json.loads((headless / "config.json").read_text())
    (headless / "config.json").write_text(json.dumps({**config, "architectures": ["Qwen2_5_VLModel"]}))
    with pytest.raises(VLFolderError, match="without its language-model head"):
        detect_vl_folder(headless)
    no_proc = tmp_path / "no_processor"
    shutil.copytree(qwen25_model_dir, no_proc)
    (no_proc / "processor_config.json").unlink()
    with pytest.raises(VLFolderError, match="no image processor"):
        detect_vl_folder(no_proc)


# -- what the model sees, generation, decoding ----------------------------------------------------

@pytest.mark.parametrize("which", ["pipeline", "qwen3"])
def test_model_input_holds_one_image_block_per_picture(which, tiny_qwen_edit_plus_dir, qwen3_model_dir, dataset_dir):
    from lorastudio.training.captioning import load_captioner

    folder = detect_vl_folder(tiny_qwen_edit_plus_dir if which == "pipeline" else qwen3_model_dir)
    captioner = load_captioner(folder, max_tokens=6)
    tokenizer = captioner.processor.tokenizer
    start, pad = tokenizer.convert_tokens_to_ids(["<|vision_start|>", "<|image_pad|>"])
    pictures = [Image.new("RGB", (96, 80), c) for c in ((200, 0, 0), (0, 200, 0), (0, 0, 200))]
    for images, paired in ((pictures, True), (pictures[1:], True), (pictures[:1], False)):
        inputs = captioner.inputs(images, "make it night", paired)
        ids = inputs["input_ids"][0]
        merge = captioner.processor.image_processor.merge_size ** 2
        assert int((ids == start).sum()) == len(images) == inputs["image_grid_thw"].shape[0]
        assert int((ids == pad).sum()) == int(inputs["image_grid_thw"].prod(dim=1).sum()) // merge
        text = tokenizer.decode(ids)
        assert ("Result:" in text) == paired and "make it night" in text
        if len(images) == 3:
            assert "Input image 1:" in text and "Input image 2:" in text
    # Generation stops at the token limit; the draft is the decoded new tokens.
    inputs = captioner.inputs(pictures, "make it night", True)
    new = captioner.generate_ids(inputs)
    assert 1 <= new.shape[0] <= 6
    assert captioner.generate(inputs) == tokenizer.decode(new, skip_special_tokens=True)


def test_a_stop_ends_generation_at_once(tiny_qwen_edit_plus_dir):
    from lorastudio.training.captioning import load_captioner
    from lorastudio.training.stop import StopSignal

    captioner = load_captioner(detect_vl_folder(tiny_qwen_edit_plus_dir), max_tokens=40)
    stop = StopSignal()
    stop.request("test")
    inputs = captioner.inputs([Image.new("RGB", (64, 64), (9, 9, 9))], "describe", False)
    assert captioner.generate_ids(inputs, stop=stop).shape[0] == 1


@pytest.mark.parametrize("quantization", ["int8", "int4"])
def test_quantized_loading_uses_bitsandbytes_layers(quantization, qwen3_model_dir, dataset_dir):
    import bitsandbytes as bnb

    from lorastudio.training.captioning import load_captioner

    captioner = load_captioner(detect_vl_folder(qwen3_model_dir), quantization=quantization, max_tokens=3)
    layer = captioner.model.model.language_model.layers[0].mlp.gate_proj
    assert isinstance(layer, bnb.nn.Linear8bitLt if quantization == "int8" else bnb.nn.Linear4bit)
    image_set = scan_dataset(dataset_dir).set_by_name("alpha")
    assert isinstance(captioner.draft(image_set, "make it night", True), str)


# -- the command ---------------------------------------------------------------------------------

def test_cli_drafts_missing_captions_and_skips_existing(tiny_qwen_edit_plus_dir, dataset_dir, capsys):
    rc = cli_main(["caption", str(dataset_dir), "--model", str(tiny_qwen_edit_plus_dir), "--max-tokens", "6"])
    out = capsys.readouterr().out
    assert rc == 0, out
    assert "skipped 1 set(s) that already have a caption" in out and "done" in out
    assert read_caption(dataset_dir / "done.txt") == "make it blue"
    drafted = {name: read_caption(dataset_dir / f"{name}.txt") for name in ("alpha", "two")}
    for name, text in drafted.items():
        assert f"{name}: {text}" in out  # the printed draft is what was written
    # --overwrite replaces the existing caption too; --sets picks sets by name.
    rc = cli_main(["caption", str(dataset_dir), "--model", str(tiny_qwen_edit_plus_dir), "--sets", "done",
                   "--overwrite", "--max-tokens", "6"])
    out = capsys.readouterr().out
    assert rc == 0 and "skipped" not in out
    assert read_caption(dataset_dir / "done.txt") != "make it blue"
    assert "done: " + read_caption(dataset_dir / "done.txt") in out


def test_cli_no_write_and_project_caption_table(qwen3_model_dir, dataset_dir, tmp_path, capsys):
    project = tmp_path / "p.toml"
    project.write_text(f'[model]\npath = "nowhere"\n[dataset]\npath = "{dataset_dir.as_posix()}"\ntrigger = "zkw"\n'
                       f'[caption]\nmodel = "{qwen3_model_dir.as_posix()}"\ninstruction = "say zkw"\nmax_tokens = 4\n')
    rc = cli_main(["caption", str(project), "--missing", "--no-write"])
    out = capsys.readouterr().out
    assert rc == 0, out
    assert "alpha: " in out and "(not written)" in out and "2 caption(s) drafted" in out
    assert not (dataset_dir / "alpha.txt").exists() and not (dataset_dir / "two.txt").exists()


def test_cli_bad_input_is_a_message_not_a_traceback(tiny_qwen_image_dir, tiny_qwen_edit_plus_dir, dataset_dir,
                                                     capsys):
    assert cli_main(["caption", str(dataset_dir), "--model", str(tiny_qwen_image_dir)]) == 2
    out = capsys.readouterr().out
    assert "error [config]" in out and "no processor/ folder" in out and "Traceback" not in out
    assert cli_main(["caption", str(dataset_dir)]) == 2
    assert "--model DIR is required" in capsys.readouterr().out
    assert cli_main(["caption", str(dataset_dir), "--model", str(tiny_qwen_edit_plus_dir), "--sets", "nope"]) == 2
    assert "no usable set named nope" in capsys.readouterr().out
