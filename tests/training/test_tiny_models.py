"""The tiny models: real component classes, small, deterministic, loadable by the real
diffusers pipelines (offline, safetensors) and able to generate; the demo project."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from PIL import Image, ImageOps

from lorastudio.training.tiny import build_tiny_model, folder_size
from lorastudio.training.tiny.tokenizers import (
    QWEN_SPECIAL_TOKENS,
    tiny_clip_tokenizer,
    tiny_qwen_tokenizer,
    tiny_t5_tokenizer,
)

#: The component classes of the real models' model_index.json.
REAL_COMPONENTS = {
    "kontext": ("FluxKontextPipeline", {
        "transformer": "FluxTransformer2DModel", "vae": "AutoencoderKL", "text_encoder": "CLIPTextModel",
        "text_encoder_2": "T5EncoderModel", "tokenizer": "CLIPTokenizer", "tokenizer_2": "T5TokenizerFast",
        "scheduler": "FlowMatchEulerDiscreteScheduler"}),
    "flux": ("FluxPipeline", {
        "transformer": "FluxTransformer2DModel", "vae": "AutoencoderKL", "text_encoder": "CLIPTextModel",
        "text_encoder_2": "T5EncoderModel", "tokenizer": "CLIPTokenizer", "tokenizer_2": "T5TokenizerFast",
        "scheduler": "FlowMatchEulerDiscreteScheduler"}),
    "qwen-edit-plus": ("QwenImageEditPlusPipeline", {
        "transformer": "QwenImageTransformer2DModel", "vae": "AutoencoderKLQwenImage",
        "text_encoder": "Qwen2_5_VLForConditionalGeneration", "tokenizer": "Qwen2Tokenizer",
        "processor": "Qwen2VLProcessor", "scheduler": "FlowMatchEulerDiscreteScheduler"}),
    "qwen-image": ("QwenImagePipeline", {
        "transformer": "QwenImageTransformer2DModel", "vae": "AutoencoderKLQwenImage",
        "text_encoder": "Qwen2_5_VLForConditionalGeneration", "tokenizer": "Qwen2Tokenizer",
        "scheduler": "FlowMatchEulerDiscreteScheduler"}),
    "qwen-image-2.1": ("QwenImage21Pipeline", {
        "transformer": "QwenImage21Transformer2DModel", "vae": "AutoencoderKLQwenImage21",
        "text_encoder": "Qwen3VLForConditionalGeneration", "processor": "Qwen3VLProcessor",
        "scheduler": "FlowMatchEulerDiscreteScheduler"}),
    "zimage": ("ZImagePipeline", {
        "transformer": "ZImageTransformer2DModel", "vae": "AutoencoderKL", "text_encoder": "Qwen3Model",
        "tokenizer": "Qwen2Tokenizer", "scheduler": "FlowMatchEulerDiscreteScheduler"}),
    "zimage-omni": ("ZImageOmniPipeline", {
        "transformer": "ZImageTransformer2DModel", "vae": "AutoencoderKL", "text_encoder": "Qwen3Model",
        "tokenizer": "Qwen2Tokenizer", "scheduler": "FlowMatchEulerDiscreteScheduler",
        "siglip": "Siglip2VisionModel", "siglip_processor": "Siglip2ImageProcessor"}),
    "longcat-edit": ("LongCatImageEditPipeline", {
        "transformer": "LongCatImageTransformer2DModel", "vae": "AutoencoderKL",
        "text_encoder": "Qwen2_5_VLForConditionalGeneration", "tokenizer": "Qwen2Tokenizer",
        "text_processor": "Qwen2VLProcessor", "scheduler": "FlowMatchEulerDiscreteScheduler"}),
    "longcat": ("LongCatImagePipeline", {
        "transformer": "LongCatImageTransformer2DModel", "vae": "AutoencoderKL",
        "text_encoder": "Qwen2_5_VLForConditionalGeneration", "tokenizer": "Qwen2Tokenizer",
        "text_processor": "Qwen2VLProcessor", "scheduler": "FlowMatchEulerDiscreteScheduler"}),
    "joyimage-edit-plus": ("JoyImageEditPlusPipeline", {
        "transformer": "JoyImageEditPlusTransformer3DModel", "vae": "AutoencoderKLWan",
        "text_encoder": "Qwen3VLForConditionalGeneration", "tokenizer": "Qwen2Tokenizer",
        "processor": "Qwen3VLProcessor", "scheduler": "FlowMatchEulerDiscreteScheduler"}),
    "joyimage-edit": ("JoyImageEditPipeline", {
        "transformer": "JoyImageEditTransformer3DModel", "vae": "AutoencoderKLWan",
        "text_encoder": "Qwen3VLForConditionalGeneration", "tokenizer": "Qwen2Tokenizer",
        "processor": "Qwen3VLProcessor", "scheduler": "FlowMatchEulerDiscreteScheduler"}),
}
FIXTURE_OF = {"kontext": "tiny_kontext_dir", "flux": "tiny_flux_dir",
              "qwen-edit-plus": "tiny_qwen_edit_plus_dir", "qwen-image": "tiny_qwen_image_dir",
              "qwen-image-2.1": "tiny_qwen_image21_dir", "zimage": "tiny_zimage_dir",
              "zimage-omni": "tiny_zimage_omni_dir",
              "longcat-edit": "tiny_longcat_edit_dir", "longcat": "tiny_longcat_dir",
              "joyimage-edit-plus": "tiny_joyimage_edit_plus_dir", "joyimage-edit": "tiny_joyimage_edit_dir"}


def _tokenizer_base(name: str) -> str:
    """transformers 5 spells the fast tokenizers without ``Fast`` in model_index.json."""
    return name[:-4] if name.endswith("Fast") else name


@pytest.mark.parametrize("family", list(REAL_COMPONENTS))
def test_layout_matches_the_real_model(request, family):
    folder: Path = request.getfixturevalue(FIXTURE_OF[family])
    pipeline_class, components = REAL_COMPONENTS[family]
    index = json.loads((folder / "model_index.json").read_text())
    assert index["_class_name"] == pipeline_class
    for name, class_name in components.items():
        assert name in index, name
        assert _tokenizer_base(index[name][1]) == _tokenizer_base(class_name), (name, index[name])
        assert (folder / name).is_dir()
    files = [p for p in folder.rglob("*") if p.is_file()]
    assert not [p for p in files if p.suffix in (".bin", ".pt", ".pth", ".ckpt")]
    for name in ("transformer", "vae", "text_encoder") + (("siglip",) if "siglip" in components else ()):
        assert list((folder / name).glob("*.safetensors")), name
    assert folder_size(folder) < 8_000_000  # a few MB


def test_qwen_edit_has_the_processor_folder_as_the_real_repo(tiny_qwen_edit_plus_dir):
    processor = tiny_qwen_edit_plus_dir / "processor"
    names = {p.name for p in processor.iterdir()}
    assert "tokenizer.json" in names or "vocab.json" in names
    assert any("preprocessor_config" in n or "processor_config" in n for n in names)
    from transformers import Qwen2VLProcessor

    loaded = Qwen2VLProcessor.from_pretrained(processor, local_files_only=True)
    out = loaded(text=["Picture 1: <|vision_start|><|image_pad|><|vision_end|>hi"],
                 images=[Image.new("RGB", (56, 56))], return_tensors="pt")
    assert "pixel_values" in out and out["image_grid_thw"].shape == (1, 3)


def test_build_is_deterministic(tmp_path, tiny_kontext_dir):
    again = build_tiny_model("kontext", tmp_path / "again")
    for path in sorted(tiny_kontext_dir.rglob("*.safetensors")):
        twin = again / path.relative_to(tiny_kontext_dir)
        assert twin.read_bytes() == path.read_bytes(), path


def test_the_shipped_pretrained_tiny_transformers_are_current():
    """The pretrained tiny transformers ship (``resources/tiny_transformers``) with the recipe
    fingerprint they were made under; a change to any tiny recipe or a library version makes them
    stale (builds then pretrain again, for minutes): this names the tool that remakes them."""
    from lorastudio.training import tiny

    shipped = {family for family in tiny.recipes() if tiny.shipped_weights_file(family)}
    assert shipped >= {"flux2", "flux2-klein", "qwen-image-2.1", "longcat-edit", "longcat", "zimage", "zimage-omni"}
    fingerprints = tiny.shipped_fingerprints()
    for family in sorted(shipped):
        assert fingerprints.get(family) == tiny.recipe_fingerprint(), (
            f"the shipped {family} weights are stale: run PYTHONPATH=. python tools/pretrain_tiny_transformers.py")


def test_a_pretrained_tiny_model_loads_its_shipped_weights_and_pretrains_only_when_they_are_stale(monkeypatch):
    """Building the tiny LongCat loads the shipped weights (no pretraining step runs: ~60 s of one
    core saved); with a different recipe fingerprint it pretrains, through the recipe's own
    pretraining, and warns that the shipped weights need remaking."""
    from safetensors.torch import load_file

    from lorastudio.training import tiny
    from lorastudio.training.tiny import longcat

    calls = []
    monkeypatch.setattr(longcat, "pretrain", lambda transformer, tasks, steps, rate: calls.append(steps))
    with tiny.quiet_libraries():
        pipe = tiny.build_tiny_pipeline("longcat")
    assert calls == []
    shipped = load_file(str(tiny.shipped_weights_file("longcat")))
    assert all(torch.equal(shipped[name], tensor) for name, tensor in pipe.transformer.state_dict().items())

    monkeypatch.setattr(tiny, "recipe_fingerprint", lambda: "other code")
    with tiny.quiet_libraries(), pytest.warns(UserWarning, match="pretrain_tiny_transformers.py"):
        tiny.build_tiny_pipeline("longcat")
    assert calls == [longcat.PRETRAIN_STEPS["longcat"]]


def test_unknown_family_is_refused(tmp_path):
    with pytest.raises(ValueError, match="no tiny model"):
        build_tiny_model("sdxl", tmp_path / "x")
    assert not list(tmp_path.iterdir())  # nothing half-built left behind


def test_build_never_deletes_a_folder_that_is_not_a_model(tmp_path):
    (tmp_path / "photos").mkdir()
    (tmp_path / "photos" / "cat.jpg").write_bytes(b"x")
    with pytest.raises(FileExistsError):
        build_tiny_model("flux", tmp_path / "photos")
    assert (tmp_path / "photos" / "cat.jpg").exists()


def test_tokenizers_are_built_in_memory_and_behave_like_the_real_ones():
    clip = tiny_clip_tokenizer()
    ids = clip("invert the colours").input_ids
    assert ids[0] == clip.convert_tokens_to_ids("<|startoftext|>")
    assert ids[-1] == clip.convert_tokens_to_ids("<|endoftext|>") and clip.model_max_length == 77
    assert clip.decode(ids, skip_special_tokens=True).strip() == "invert the colours"

    t5 = tiny_t5_tokenizer()
    ids = t5("invert the colours").input_ids
    assert ids[-1] == t5.eos_token_id == 1 and t5.pad_token_id == 0
    assert t5.decode(ids, skip_special_tokens=True) == "invert the colours"
    assert len(t5("any Unicode: ü ß 漢字").input_ids) > 1  # unknown characters do not crash

    qwen = tiny_qwen_tokenizer()
    for token in QWEN_SPECIAL_TOKENS:
        assert len(qwen(token).input_ids) == 1, token  # each special token is one id
    text = qwen.apply_chat_template([{"role": "user", "content": "hi"}], tokenize=False, add_generation_prompt=True)
    assert text == "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n"


def test_qwen_template_prefix_has_the_real_token_count():
    """The pipelines drop a fixed number of leading tokens (the system prompt); the tiny
    tokenizer must give the prefix exactly that length, or captions would be cut."""
    from diffusers import QwenImageEditPlusPipeline, QwenImagePipeline

    qwen = tiny_qwen_tokenizer()
    for cls in (QwenImageEditPlusPipeline, QwenImagePipeline):
        pipe = cls(scheduler=None, vae=None, text_encoder=None, tokenizer=qwen, transformer=None,
                   **({"processor": None} if cls is QwenImageEditPlusPipeline else {}))
        prefix = pipe.prompt_template_encode.split("{}")[0]
        assert len(qwen(prefix).input_ids) == pipe.prompt_template_encode_start_idx, cls.__name__


def _pipeline(family: str, folder: Path):
    import diffusers

    cls = getattr(diffusers, REAL_COMPONENTS[family][0])
    return cls.from_pretrained(folder, local_files_only=True, use_safetensors=True)


@pytest.mark.parametrize("family", list(REAL_COMPONENTS))
def test_the_real_pipeline_loads_and_generates(request, family, monkeypatch):
    from diffusers.pipelines.longcat_image import pipeline_longcat_image_edit
    from diffusers.pipelines.qwenimage import pipeline_qwenimage_edit_plus

    monkeypatch.setattr(pipeline_qwenimage_edit_plus, "VAE_IMAGE_SIZE", 64 * 64)  # see below
    # LongCat-Image-Edit always generates ~1 MP at the input's aspect: 64x64 here, for speed.
    monkeypatch.setattr(pipeline_longcat_image_edit, "calculate_dimensions", lambda area, ratio: (64, 64))
    # JoyImage-Edit(-Plus) gives every reference (the output, for Edit) its ~1 MP bucket: 64x64 here (as
    # diffusers' own test pins it).
    monkeypatch.setattr("diffusers.pipelines.joyimage.image_processor.find_best_bucket", lambda h, w, base: (64, 64))
    folder = request.getfixturevalue(FIXTURE_OF[family])
    pipe = _pipeline(family, folder)
    pipe.set_progress_bar_config(disable=True)
    kwargs = {"height": 64, "width": 64}
    if family == "kontext":
        kwargs.update(image=Image.new("RGB", (64, 64), (200, 40, 40)), _auto_resize=False, max_area=64 * 64)
    elif family == "qwen-edit-plus":
        kwargs.update(image=[Image.new("RGB", (64, 64), (200, 40, 40))])
    elif family == "qwen-image-2.1":  # condition images go to output_resolution² pixels (1024² by default)
        kwargs.update(image=[Image.new("RGB", (64, 64), (200, 40, 40))], output_resolution=64)
    elif family.startswith("zimage"):
        kwargs.update(guidance_scale=0.0)  # Z-Image-Turbo's setting (no negative prompt needed)
        if family == "zimage-omni":  # bf16 VAE: the pipeline casts the reference to bf16 for it
            pipe.vae.to(torch.bfloat16)
            kwargs["image"] = [Image.new("RGB", (64, 64), (200, 40, 40))]
    elif family == "longcat-edit":  # no size arguments: the input's size is the output's
        kwargs = {"image": Image.new("RGB", (64, 64), (200, 40, 40))}
    elif family == "joyimage-edit-plus":  # references as a list; guidance 4.0 with a blank negative (defaults)
        kwargs.update(images=[Image.new("RGB", (64, 64), (200, 40, 40)), Image.new("RGB", (32, 64), (0, 0, 255))])
    elif family == "joyimage-edit":  # one input image, cropped to the output's bucket; guidance 4.0 (defaults)
        kwargs = {"image": Image.new("RGB", (64, 48), (200, 40, 40))}
    elif family == "longcat":  # no LLM rewrite of the prompt (our tiny processor has no chat template)
        kwargs.update(enable_prompt_rewrite=False)
    out = pipe(prompt="invert the colours", num_inference_steps=2,
               generator=torch.Generator().manual_seed(0), output_type="pil", **kwargs).images[0]
    assert out.size == (64, 64)


def test_qwen_edit_pipeline_takes_three_images(tiny_qwen_edit_plus_dir, monkeypatch):
    from diffusers.pipelines.qwenimage import pipeline_qwenimage_edit_plus

    # The pipeline gives the VAE every input at ~1024² (a module constant): minutes of
    # CPU for nothing here, so the test shrinks that view to the output's size.
    monkeypatch.setattr(pipeline_qwenimage_edit_plus, "VAE_IMAGE_SIZE", 64 * 64)
    pipe = _pipeline("qwen-edit-plus", tiny_qwen_edit_plus_dir)
    pipe.set_progress_bar_config(disable=True)
    images = [Image.new("RGB", size, colour) for size, colour in
              (((64, 64), (255, 0, 0)), ((64, 32), (0, 255, 0)), ((32, 64), (0, 0, 255)))]
    out = pipe(prompt="put them together", image=images, height=64, width=64, num_inference_steps=2,
               generator=torch.Generator().manual_seed(0), output_type="pil").images[0]
    assert out.size == (64, 64)


# -- the demo ---------------------------------------------------------------------------------------


def test_demo_project(demo_project):
    from lorastudio.config import load_config
    from lorastudio.dataset import Mode, load_image, scan_dataset
    from lorastudio.training.families import detect_family
    from lorastudio.training.families.kontext import KontextFamily

    config = load_config(demo_project)
    root = demo_project.parent
    assert config.model.path == root / "model" and config.dataset.path == root / "dataset"
    assert config.output.dir == root / "output"
    t = config.train
    assert (t.resolution, t.steps, t.sample_every, t.checkpoint_every, t.sample_steps) == (64, 20, 10, 10, 4)
    # each step trains all 10 trained sets (12, less the 2 held out), σ weighted high
    assert (t.batch_size, t.timesteps, t.timestep_mean) == (10, "logit_normal", 2.0)
    assert detect_family(config.model.path) is KontextFamily
    # inputs at the 64-px target's size, not Kontext's default ~1 MP: the demo stays a one-minute run
    assert t.input_size == "target"

    dataset = scan_dataset(config.dataset.path)
    assert dataset.mode is Mode.PAIRED
    sets = dataset.trainable_sets()
    assert len(sets) == 12
    for image_set in sets:
        assert len(image_set.inputs) == 1 and image_set.caption
        start, end = load_image(image_set.inputs[0]), load_image(image_set.target)
        assert end.tobytes() == ImageOps.invert(start).tobytes()
    starts = {load_image(s.inputs[0]).tobytes() for s in sets}
    assert len(starts) == 12  # all different


def test_demo_command_prints_what_it_wrote(tmp_path, capsys):
    from lorastudio.cli import main

    assert main(["demo", str(tmp_path / "d"), "--family", "qwen-edit-plus"]) == 0
    out = capsys.readouterr().out
    assert "model/" in out and "dataset/" in out and "project.toml" in out
    assert (tmp_path / "d" / "project.toml").is_file()
    index = json.loads((tmp_path / "d" / "model" / "model_index.json").read_text())
    assert index["_class_name"] == "QwenImageEditPlusPipeline"


def test_text_to_image_demo_dataset(tmp_path):
    from lorastudio.dataset import Mode, scan_dataset
    from lorastudio.training.demo import write_demo_dataset

    write_demo_dataset(tmp_path / "t2i", paired=False)
    dataset = scan_dataset(tmp_path / "t2i")
    assert dataset.mode is Mode.SINGLE and len(dataset.trainable_sets()) == 12


def test_t5_tokenizer_loads_without_sentencepiece(tiny_kontext_dir):
    """The tiny T5 tokenizer is a tokenizers Unigram model saved as tokenizer.json: loading
    it (as the pipeline does) must not need the sentencepiece package."""
    import subprocess
    import sys

    code = (
        "import sys; sys.modules['sentencepiece'] = None\n"
        "from transformers import T5TokenizerFast\n"
        f"t = T5TokenizerFast.from_pretrained({str(tiny_kontext_dir / 'tokenizer_2')!r}, local_files_only=True)\n"
        "assert t.decode(t('invert the colours').input_ids, skip_special_tokens=True) == 'invert the colours'\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                            env={**__import__("os").environ, "HF_HUB_OFFLINE": "1"})
    assert result.returncode == 0, result.stderr[-2000:]
    assert not list((tiny_kontext_dir / "tokenizer_2").glob("*.model"))  # no sentencepiece file at all


def test_demo_never_replaces_someone_elses_folder(tmp_path, monkeypatch):
    from lorastudio.training import demo

    monkeypatch.setattr("lorastudio.training.tiny.build_tiny_model",
                        lambda family, out: (out.mkdir(parents=True, exist_ok=True), out)[1])
    occupied = tmp_path / "mine"
    occupied.mkdir()
    (occupied / "thesis.docx").write_text("precious")
    with pytest.raises(FileExistsError):
        demo.create_demo(occupied, "kontext")
    assert demo.demo_command(occupied, "kontext") == 1
    assert (occupied / "thesis.docx").read_text() == "precious"
    # A folder an earlier demo wrote is fine to write again.
    first = demo.create_demo(tmp_path / "again", "kontext")
    assert demo.create_demo(tmp_path / "again", "kontext") == first
    with pytest.raises(ValueError, match="no demo for family"):
        demo.create_demo(tmp_path / "x", "sdxl")
