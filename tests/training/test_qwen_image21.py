"""Qwen-Image 2.1 on its tiny model: the family computes what ``QwenImage21Pipeline`` computes
(VAE latents, the Qwen3-VL prompt with its image slots, the transformer call's layout), for
edit sets with one or two inputs and for text-to-image sets, and previews are the pipeline's
own output. Folder detection and its errors are covered for every family in test_families."""

from __future__ import annotations

import copy
import shutil

import pytest
import torch
from PIL import Image

from lorastudio.training.families import InputCountError, ModelFolderError, detect_family
from lorastudio.training.families._common import unwrap_peft
from lorastudio.training.families.qwen_image21 import QwenImage21Family, condition_size
from lorastudio.training.tiny.qwen21 import LATENT_CHANNELS as C

CPU = torch.device("cpu")
TARGET = (96, 64)  # 3:2, one 16x16-pixel token per latent: 6x4 latents


def _image(size: tuple[int, int], seed: int) -> Image.Image:
    g = torch.Generator().manual_seed(seed)
    return Image.fromarray((torch.rand(size[1], size[0], 3, generator=g) * 255).to(torch.uint8).numpy(), "RGB")


class Encoded:
    """The encoders run once for the module: a target, and sets with 0, 1 and 2 inputs."""

    def __init__(self, folder) -> None:
        self.family = family = QwenImage21Family(folder, CPU, torch.float32)
        self.target = _image(TARGET, 0)
        self.inputs = [_image(TARGET, 1), _image((64, 64), 2)]
        family.load_encoders()
        self.target_latents = family.encode_image(self.target)
        self.input_latents = [family.encode_image(i) for i in self.inputs]
        self.prompts = {n: family.encode_prompt("invert the colours", self.inputs[:n]) for n in (0, 1, 2)}
        self.long_prompt = family.encode_prompt("invert the colours and mirror the picture, please", self.inputs[:1])
        self.other_image = family.encode_prompt("invert the colours", [_image(TARGET, 3)])
        family.prepare_sample("invert the colours", self.inputs[:1])
        family.free_encoders()
        self.transformer = family.load_transformer()


@pytest.fixture(scope="module")
def encoded(tiny_qwen_image21_dir) -> Encoded:
    return Encoded(tiny_qwen_image21_dir)


def _pipeline(folder, **components):
    from diffusers import QwenImage21Pipeline

    pipe = QwenImage21Pipeline.from_pretrained(folder, local_files_only=True, **components)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def test_the_tiny_folder_is_detected_and_a_pickled_one_refused(tiny_qwen_image21_dir, tmp_path):
    assert detect_family(tiny_qwen_image21_dir) is QwenImage21Family
    broken = shutil.copytree(tiny_qwen_image21_dir, tmp_path / "model")
    for f in (broken / "text_encoder").glob("*.safetensors"):
        f.rename(f.with_suffix(".bin"))
    with pytest.raises(ModelFolderError, match="text_encoder/ holds its weights only as .*pickle"):
        detect_family(broken)


def test_vae_latents_are_the_pipelines(encoded):
    """RGBA in (the 2.1 VAE reads four channels), 16x smaller, normalized per channel: the
    pipeline's ``_encode_vae_image``."""
    pipe = _pipeline(encoded.family.model_dir, text_encoder=None, transformer=None)
    pixels = pipe.image_processor.preprocess(encoded.target.convert("RGBA"), height=64, width=96).unsqueeze(2)
    with torch.no_grad():
        expected = pipe._encode_vae_image(pixels, generator=None)[0, :, 0]
    assert encoded.target_latents.shape == (C, 4, 6)
    torch.testing.assert_close(encoded.target_latents, expected)


def test_the_prompt_holds_one_slot_per_2x2_latents_of_each_input(encoded):
    for n, prompt in encoded.prompts.items():
        t = prompt.tensors
        assert t["prompt_embeds"].shape[1] == 32 and t["prompt_embeds_mask"].all()
        assert t["image_pad_mask"].shape == t["prompt_embeds"].shape[:1]
        assert int(t["image_pad_mask"].sum()) == sum(lat[0].numel() // 4 for lat in encoded.input_latents[:n])
    # the text encoder sees the image: another image, another embedding
    a, b = encoded.prompts[1].tensors["prompt_embeds"], encoded.other_image.tensors["prompt_embeds"]
    assert a.shape == b.shape and not torch.equal(a, b)


@pytest.mark.parametrize("n", [1, 2])
def test_predict_is_the_pipelines_transformer_call(encoded, n):
    """Inputs first and the target last, in the tokens, ``img_shapes`` and the image slots (one
    per 2x2 target tokens appended), timestep = sigma, the target read from the end: the call
    QwenImage21Pipeline.__call__ makes."""
    from diffusers import QwenImage21Pipeline as P

    prompt = encoded.family.collate_prompts([encoded.prompts[n]])
    noisy = torch.randn(1, C, 4, 6, generator=torch.Generator().manual_seed(4))
    sigma = torch.tensor([0.6])
    inputs = [lat[None] for lat in encoded.input_latents[:n]]
    with torch.no_grad():
        ours = encoded.family.predict(encoded.transformer, noisy, sigma, inputs, prompt)
        target = P._pack_latents(noisy, 1, C, 4, 6)
        packed = [P._pack_latents(x, 1, C, *x.shape[-2:]) for x in inputs]
        slots = prompt["image_pad_mask"].bool()
        out = encoded.transformer(
            hidden_states=torch.cat([*packed, target], 1), timestep=sigma,
            encoder_hidden_states=prompt["prompt_embeds"],
            encoder_hidden_states_mask=prompt["prompt_embeds_mask"],
            img_shapes=[[(1, *x.shape[-2:]) for x in inputs] + [(1, 4, 6)]],
            img_mask=torch.cat([slots, slots.new_ones(1, target.shape[1] // 4)], 1), return_dict=False)[0]
        theirs = P._unpack_latents(out[:, -target.shape[1]:], 64, 96, 16)[:, :, 0]
    torch.testing.assert_close(ours, theirs)


@pytest.mark.parametrize("n", [0, 1])
def test_gradients_reach_every_lora_layer(encoded, n):
    from peft import LoraConfig, get_peft_model

    family = encoded.family
    config = LoraConfig(r=4, lora_alpha=4, target_modules=list(family.lora_target_modules),
                        init_lora_weights="gaussian")
    model = get_peft_model(copy.deepcopy(encoded.transformer), config)
    noisy = torch.randn(2, C, 4, 6, generator=torch.Generator().manual_seed(0))
    inputs = [torch.stack([lat, lat]) for lat in encoded.input_latents[:n]]
    out = family.predict(model, noisy, torch.tensor([0.3, 0.9]), inputs,
                         family.collate_prompts([encoded.prompts[n]] * 2))
    assert out.shape == noisy.shape
    out.pow(2).mean().backward()
    grads = {name: p.grad for name, p in model.named_parameters() if "lora_" in name}
    # A and B: 7 linears per block and the final proj_out
    assert len(grads) == 2 * (7 * len(unwrap_peft(model).transformer_blocks) + 1)
    assert all(g is not None for g in grads.values()) and any(g.abs().sum() > 0 for g in grads.values())


def test_prompts_of_different_lengths_batch_with_padding(encoded):
    family = encoded.family
    short, long_ = encoded.prompts[1], encoded.long_prompt
    batch = family.collate_prompts([short, long_])
    n = short.tensors["prompt_embeds"].shape[0]
    assert batch["prompt_embeds_mask"][0, :n].all() and not batch["prompt_embeds_mask"][0, n:].any()
    latents = encoded.input_latents[0]
    noisy = torch.randn(2, C, 4, 6, generator=torch.Generator().manual_seed(0))
    sigmas = torch.tensor([0.4, 0.4])
    with torch.no_grad():
        together = family.predict(encoded.transformer, noisy, sigmas, [torch.stack([latents, latents])], batch)
        alone = family.predict(encoded.transformer, noisy[:1], sigmas[:1], [latents[None]],
                               family.collate_prompts([short]))
    torch.testing.assert_close(together[:1], alone, atol=1e-5, rtol=1e-4)
    with pytest.raises(ValueError, match="input-image layouts"):
        family.collate_prompts([encoded.prompts[1], encoded.prompts[2]])


def test_input_size_rules():
    """"target" (the default): the target's bucket, or the input's own aspect at the target's
    area when the shapes clearly differ. "pipeline": the pipeline's default call, every input
    at about 1024² in its own aspect, whatever the target. Either way a size the pipeline's
    own resize leaves as it is, at the output_resolution a preview passes."""
    from diffusers.pipelines.qwenimage21.pipeline_qwenimage21 import calculate_dimensions

    family = QwenImage21Family.__new__(QwenImage21Family)
    assert family.input_size_rule == "target"
    assert family.input_size((1024, 768), (512, 384), 448) == (512, 384)
    w, h = family.input_size((600, 1200), (512, 512), 512)
    assert w % 32 == 0 and h % 32 == 0 and h > w and abs(w * h - 512 * 512) / (512 * 512) < 0.15
    family.use_input_size("pipeline")
    for size in [(1024, 768), (600, 1200), (512, 512), (1000, 333)]:
        w, h = family.input_size(size, (512, 512), 512)
        assert abs(w * h - 1024 * 1024) / (1024 * 1024) < 0.1 and family.input_size(size, (256, 768), 256) == (w, h)
        assert (w, h) == calculate_dimensions(1024 * 1024, w / h)[:2] == condition_size((w, h), 1024)


def test_up_to_ten_inputs(encoded):
    encoded.family.check_input_count(10)
    with pytest.raises(InputCountError, match="at most 10"):
        encoded.family.check_input_count(11)


def test_previews_are_the_pipelines_output_and_reuse_the_prompt(encoded, monkeypatch):
    """An edit preview equals QwenImage21Pipeline called with the caption and the input (its
    own prompt encoding, resize and VAE) and needs no text encoder (the caching phase encoded
    its prompt); a text-to-image preview comes at the requested size too."""
    from lorastudio.training.families import _pipeline_family

    family, inputs = encoded.family, encoded.inputs[:1]
    loads = []
    real = _pipeline_family.load_pipeline
    monkeypatch.setattr(_pipeline_family, "load_pipeline",
                        lambda cls, d, dt, **kw: loads.append(kw.get("transformer", "?")) or real(cls, d, dt, **kw))
    ours = family.sample(encoded.transformer, inputs, "invert the colours", TARGET, steps=2, seed=3)
    assert None not in loads  # transformer=None is the encoder-only load
    theirs = _pipeline(family.model_dir, transformer=encoded.transformer)(
        "invert the colours", image=inputs, height=64, width=96, output_resolution=round((96 * 64) ** 0.5),
        num_inference_steps=2, generator=torch.Generator("cpu").manual_seed(3)).images[0]
    assert ours.mode == "RGB" and ours.size == TARGET
    assert ours.tobytes() == theirs.convert("RGB").tobytes()
    t2i = family.sample(encoded.transformer, [], "a red square", (64, 64), steps=2, seed=0)
    assert t2i.size == (64, 64) and t2i.mode == "RGB" and family._encoders is None


def test_dry_run_shows_the_sequence_from_the_catalog(tiny_qwen_image21_dir, demo_project, tmp_path, capsys):
    """The demo's edit sets (one input) at 64 px: 16 target + 16 input tokens (16 px per token,
    the input at the target's area) + the record's 64 text + 6 marker tokens of one input."""
    from lorastudio.training.worker import dry_run_command

    from trainer_helpers import make_config

    assert dry_run_command(make_config(demo_project, tmp_path, model=tiny_qwen_image21_dir, resolution=64)) == 0
    out = capsys.readouterr().out
    assert "Qwen-Image 2.1" in out and "(102 tokens per sample)" in out and "dry run: nothing trained" in out

