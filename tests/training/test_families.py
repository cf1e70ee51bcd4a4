"""Model families: folder detection and its errors, and each family's tensor work on its
tiny model (encode, predict with gradients through a peft LoRA, sample)."""

from __future__ import annotations

import json
import shutil
import warnings
from pathlib import Path

import pytest
import torch
from PIL import Image

from lorastudio.dataset.model import Mode
from lorastudio.training.families import (
    FAMILIES,
    PIPELINE_CLASSES,
    InputCountError,
    ModelFamily,
    ModelFolderError,
    detect_family,
)
from lorastudio.training.families._common import unwrap_peft
from lorastudio.training.families.flux import FluxFamily
from lorastudio.training.families.flux2 import Flux2KleinFamily
from lorastudio.training.families.kontext import KontextFamily
from lorastudio.training.families.qwen_edit_plus import QwenEditPlusFamily
from lorastudio.training.families.qwen_image import QwenImageFamily
from lorastudio.training.families.zimage import ZImageFamily, ZImageOmniFamily
from lorastudio.training.tiny import flux1 as tiny_flux1
from lorastudio.training.tiny import qwen as tiny_qwen

#: The tiny FLUX.1 and Qwen-Image VAEs' latent channels (the same, so one test covers both).
LATENT_CHANNELS = tiny_flux1.LATENT_CHANNELS
assert tiny_qwen.LATENT_CHANNELS == LATENT_CHANNELS

CPU = torch.device("cpu")

# -- detection ------------------------------------------------------------------------------------


def _fake_folder(root: Path, class_name: str, weights: str = "diffusion_pytorch_model.safetensors") -> Path:
    """A folder that looks like a diffusers model to detection (no real weights)."""
    root.mkdir(parents=True)
    index = {"_class_name": class_name, "_diffusers_version": "0.42.1",
             "transformer": ["diffusers", "FluxTransformer2DModel"],
             "scheduler": ["diffusers", "FlowMatchEulerDiscreteScheduler"]}
    (root / "model_index.json").write_text(json.dumps(index))
    (root / "transformer").mkdir()
    (root / "transformer" / weights).write_bytes(b"x")
    (root / "scheduler").mkdir()
    (root / "scheduler" / "scheduler_config.json").write_text("{}")
    return root


def test_registry_names_and_interface():
    assert {"kontext", "flux", "qwen-edit-plus", "qwen-image", "flux2", "flux2-klein"} <= set(FAMILIES)  # + new records
    assert FAMILIES["kontext"] is KontextFamily and FAMILIES["qwen-edit-plus"] is QwenEditPlusFamily
    for name, cls in FAMILIES.items():
        assert issubclass(cls, ModelFamily) and cls.name == name
        assert cls.input_size_policy and cls.display_name and cls.lora_target_modules
        assert (cls.mode is Mode.PAIRED) == (cls.max_inputs is None or cls.max_inputs > 0)
        assert cls.trains(cls.mode)
    assert (KontextFamily.mode, KontextFamily.max_inputs) == (Mode.PAIRED, 1)
    assert (FluxFamily.mode, FluxFamily.max_inputs) == (Mode.SINGLE, 0)
    assert (QwenEditPlusFamily.mode, QwenEditPlusFamily.max_inputs) == (Mode.PAIRED, 3)
    assert QwenEditPlusFamily.prompt_depends_on_inputs and not KontextFamily.prompt_depends_on_inputs
    assert (QwenImageFamily.mode, QwenImageFamily.max_inputs) == (Mode.SINGLE, 0)
    assert (ZImageFamily.modes, ZImageFamily.max_inputs) == ((Mode.SINGLE,), 0)
    # ZImageOmniPipeline takes any number of references (it sets no limit), or none
    assert (ZImageOmniFamily.modes, ZImageOmniFamily.max_inputs) == ((Mode.PAIRED, Mode.SINGLE), None)
    assert ZImageOmniFamily.prompt_depends_on_inputs and not ZImageFamily.prompt_depends_on_inputs


@pytest.mark.parametrize("class_name", sorted(PIPELINE_CLASSES))
def test_detects_each_supported_class_name(tmp_path, class_name):
    folder = _fake_folder(tmp_path / "m", class_name)
    assert detect_family(folder) is PIPELINE_CLASSES[class_name]
    assert class_name in detect_family(folder).pipeline_class_names


def test_override_picks_the_family_by_name(tmp_path):
    folder = _fake_folder(tmp_path / "m", "FluxPipeline")
    assert detect_family(folder, override="kontext") is KontextFamily
    with pytest.raises(ModelFolderError, match="unknown model family 'nope'.*kontext"):
        detect_family(folder, override="nope")
    assert detect_family(folder, override="flux2").name == "flux2"


def test_error_no_folder(tmp_path):
    with pytest.raises(ModelFolderError, match="not found") as err:
        detect_family(tmp_path / "missing")
    assert "missing" in str(err.value)


def test_error_a_file_not_a_folder(tmp_path):
    single = tmp_path / "flux1-kontext-dev.safetensors"
    single.write_bytes(b"x")
    with pytest.raises(ModelFolderError, match="is a file, not a folder"):
        detect_family(single)


def test_error_no_model_index_lists_what_is_there(tmp_path):
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "transformer").mkdir()
    (tmp_path / "m" / "README.md").write_text("hi")
    with pytest.raises(ModelFolderError) as err:
        detect_family(tmp_path / "m")
    message = str(err.value)
    assert "no model_index.json" in message and "README.md" in message and "transformer/" in message


def test_error_invalid_json(tmp_path):
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "model_index.json").write_text('{"_class_name": "FluxKontextPipeline",')
    with pytest.raises(ModelFolderError, match="not valid JSON"):
        detect_family(tmp_path / "m")


def test_error_unsupported_class_lists_supported(tmp_path):
    folder = _fake_folder(tmp_path / "sdxl", "StableDiffusionXLPipeline")
    with pytest.raises(ModelFolderError) as err:
        detect_family(folder)
    message = str(err.value)
    assert "StableDiffusionXLPipeline" in message and "does not train" in message
    for class_name in PIPELINE_CLASSES:
        assert class_name in message


def test_error_missing_class_name(tmp_path):
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "model_index.json").write_text("{}")
    with pytest.raises(ModelFolderError, match="_class_name"):
        detect_family(tmp_path / "m")


def test_error_missing_component_folder(tmp_path):
    folder = _fake_folder(tmp_path / "m", "FluxKontextPipeline")
    shutil.rmtree(folder / "transformer")
    with pytest.raises(ModelFolderError) as err:
        detect_family(folder)
    message = str(err.value)
    assert "incomplete" in message and "transformer/" in message and "missing" in message


def test_error_pickle_weights_are_refused(tmp_path):
    folder = _fake_folder(tmp_path / "m", "FluxKontextPipeline", weights="diffusion_pytorch_model.bin")
    with pytest.raises(ModelFolderError) as err:
        detect_family(folder)
    message = str(err.value)
    assert "LoRA Studio loads safetensors only" in message and "diffusion_pytorch_model.bin" in message


def test_error_component_without_weights(tmp_path):
    folder = _fake_folder(tmp_path / "m", "FluxKontextPipeline")
    (folder / "transformer" / "diffusion_pytorch_model.safetensors").unlink()
    (folder / "transformer" / "config.json").write_text("{}")
    with pytest.raises(ModelFolderError, match="no weights"):
        detect_family(folder)


def test_detects_the_tiny_folders(tiny_kontext_dir, tiny_flux_dir, tiny_qwen_edit_plus_dir, tiny_qwen_image_dir):
    assert detect_family(tiny_kontext_dir) is KontextFamily
    assert detect_family(tiny_flux_dir) is FluxFamily
    assert detect_family(tiny_qwen_edit_plus_dir) is QwenEditPlusFamily
    assert detect_family(tiny_qwen_image_dir) is QwenImageFamily


# -- per family, on the tiny models ----------------------------------------------------------------

FIXTURE_OF = {"kontext": "tiny_kontext_dir", "flux": "tiny_flux_dir",
              "qwen-edit-plus": "tiny_qwen_edit_plus_dir", "qwen-image": "tiny_qwen_image_dir",
              "zimage": "tiny_zimage_dir", "zimage-omni": "tiny_zimage_omni_dir",
              "longcat-edit": "tiny_longcat_edit_dir", "longcat": "tiny_longcat_dir",
              "joyimage-edit-plus": "tiny_joyimage_edit_plus_dir", "joyimage-edit": "tiny_joyimage_edit_dir"}


def _inputs_and_two_prompts(family, inputs):
    """The inputs' latents, and a short and a longer prompt (to batch with padding) seeing them."""
    family.load_encoders()
    try:
        latents = [family.encode_image(i)[None] for i in inputs]
        prompt = family.encode_prompt("invert the colours", inputs)
        longer = family.encode_prompt("a red circle on a white background in the style of a painting", inputs)
    finally:
        family.free_encoders()
    return latents, prompt, longer


def _image(size: tuple[int, int], seed: int) -> Image.Image:
    g = torch.Generator().manual_seed(seed)
    pixels = (torch.rand(size[1], size[0], 3, generator=g) * 255).to(torch.uint8).numpy()
    return Image.fromarray(pixels, "RGB")


class Encoded:
    """One family's encoders run once per module (the slow part), shared by the tests."""

    def __init__(self, family: ModelFamily, inputs_per_set: list[int]) -> None:
        self.family = family
        self.target = _image((64, 32), 0)
        family.load_encoders()
        self.target_latents = family.encode_image(self.target)
        self.sets = []
        for n in inputs_per_set:
            inputs = [_image((64, 32), 10 + j) for j in range(n)]
            latents = [family.encode_image(i) for i in inputs]
            prompt = family.encode_prompt(f"invert the colours and mirror the image {n}", inputs)
            family.prepare_sample("invert the colours", inputs)
            self.sets.append((inputs, latents, prompt))
        family.free_encoders()
        self.transformer = family.load_transformer()


@pytest.fixture(scope="module")
def encoded(request):
    cache: dict[str, Encoded] = {}

    def get(name: str) -> Encoded:
        if name not in cache:
            cls = FAMILIES[name]
            folder = request.getfixturevalue(FIXTURE_OF[name])
            counts = [1, 2, 3] if cls.max_inputs == 3 else [cls.max_inputs or 0]
            if cls.max_inputs is None or len(cls.modes) == 2:  # several inputs (or its one), or none (text-to-image)
                counts = [min(2, cls.max_inputs or 2), 0]
            family = cls(folder, CPU, torch.float32)
            family.use_input_size("target")  # previews at the tests' sizes, not the pipeline's ~1 MP
            cache[name] = Encoded(family, counts)
        return cache[name]

    return get


@pytest.mark.parametrize("name", list(FIXTURE_OF))
def test_encode_shapes(encoded, name):
    e = encoded(name)
    channels = 16 if name.startswith("longcat") else LATENT_CHANNELS  # the LongCat pipelines hard-code 16
    assert e.target_latents.shape == (channels, 4, 8)  # (C, H/8, W/8) of a 64x32 image
    assert e.target_latents.dtype == torch.float32 and torch.isfinite(e.target_latents).all()
    for inputs, latents, prompt in e.sets:
        assert all(lat.shape == (channels, 4, 8) for lat in latents)
        t = prompt.tensors
        if name in ("kontext", "flux"):
            assert t["prompt_embeds"].shape == (512, 32)  # T5 tokens (padded to 512) x joint dim
            assert t["pooled_prompt_embeds"].shape == (32,)  # CLIP pooled
        elif name.startswith("zimage"):  # segments, trimmed to the real tokens: 1, or one per input + 2
            assert t["prompt_lengths"].shape == ((len(inputs) + 2) if inputs else 1,)
            assert t["prompt_embeds"].shape == (int(t["prompt_lengths"].sum()), 32)
            assert [k for k in t if k.startswith("siglip_")] == [f"siglip_{j}" for j in range(len(inputs))]
        elif name.startswith("longcat"):  # 512 caption tokens (padded), after the edit's vision tokens
            length = t["prompt_embeds"].shape[0]
            assert t["prompt_embeds"].shape[1] == 32 and (length > 514 if inputs else length == 512)
        else:
            assert t["prompt_embeds"].ndim == 2 and t["prompt_embeds"].shape[1] == 32
            assert t["prompt_embeds_mask"].shape == t["prompt_embeds"].shape[:1]
            assert t["prompt_embeds_mask"].all()  # trimmed to the real tokens
        assert all(not v.requires_grad and v.device.type == "cpu" for v in t.values())


def test_vae_normalization_matches_the_pipeline(encoded):
    """Kontext latents are (mode - shift) * scale, as FluxKontextPipeline._encode_vae_image."""
    e = encoded("kontext")
    from diffusers import AutoencoderKL

    vae = AutoencoderKL.from_pretrained(e.family.model_dir / "vae")
    from diffusers.image_processor import VaeImageProcessor

    pixels = VaeImageProcessor(vae_scale_factor=8).preprocess(e.target, height=32, width=64)
    with torch.no_grad():
        raw = vae.encode(pixels).latent_dist.mode()[0]
    expected = (raw - vae.config.shift_factor) * vae.config.scaling_factor
    torch.testing.assert_close(e.target_latents, expected)


def test_qwen_prompt_sees_the_input_images(encoded):
    e = encoded("qwen-edit-plus")
    family = e.family
    family.load_encoders()
    try:
        a = family.encode_prompt("make it red", [_image((64, 32), 1)]).tensors["prompt_embeds"]
        b = family.encode_prompt("make it red", [_image((64, 32), 2)]).tensors["prompt_embeds"]
        c = family.encode_prompt("make it blue", [_image((64, 32), 1)]).tensors["prompt_embeds"]
    finally:
        family.free_encoders()
    assert a.shape == b.shape and not torch.equal(a, b)  # the image changes the embedding
    assert not torch.equal(a, c)  # so does the caption (the template prefix is dropped, not the caption)


def _lora(transformer: torch.nn.Module, family: ModelFamily) -> torch.nn.Module:
    from peft import LoraConfig, get_peft_model

    config = LoraConfig(r=4, lora_alpha=4, target_modules=list(family.lora_target_modules), init_lora_weights="gaussian")
    return get_peft_model(transformer, config)


@pytest.mark.parametrize("name", list(FIXTURE_OF))
def test_every_lora_target_matches_a_module(encoded, name):
    e = encoded(name)
    names = [n for n, m in e.transformer.named_modules() if isinstance(m, torch.nn.Linear)]
    for suffix in e.family.lora_target_modules:
        assert any(n == suffix or n.endswith("." + suffix) for n in names), suffix
    # Never the AdaLN modulation or the embedders.
    assert not any(s.endswith(("norm1.linear", "x_embedder", "img_in", "txt_in")) for s in e.family.lora_target_modules)


@pytest.mark.parametrize("name", list(FIXTURE_OF))
def test_predict_shape_and_gradients_reach_the_lora(encoded, name):
    import copy

    e = encoded(name)
    family = e.family
    for inputs, latents, prompt in e.sets:
        model = _lora(copy.deepcopy(e.transformer), family)
        batch = 2
        noisy = torch.randn(batch, *e.target_latents.shape, generator=torch.Generator().manual_seed(0))
        batched_inputs = [torch.stack([lat, lat]) for lat in latents]
        prompts = family.collate_prompts([prompt, prompt])
        out = family.predict(model, noisy, torch.tensor([0.3, 0.9]), batched_inputs, prompts)
        assert out.shape == noisy.shape  # target tokens only, whatever the number of inputs
        loss = out.float().pow(2).mean()
        loss.backward()
        lora = {n: p.grad for n, p in model.named_parameters() if "lora_" in n}
        # Qwen's last block computes a text-stream output nobody reads (only image tokens
        # reach norm_out), so its text output layers get no gradient; everything else must.
        last = f"transformer_blocks.{len(getattr(unwrap_peft(model), 'transformer_blocks', [])) - 1}."
        unused = [n for n in lora if name.startswith("qwen") and last in n and ("to_add_out" in n or "txt_mlp" in n)]
        unused += [n for n in lora if "siglip_refiner" in n and not inputs]  # Omni's SigLIP branch: references only
        last = f"double_blocks.{len(getattr(unwrap_peft(model), 'double_blocks', [])) - 1}."  # JoyImage: the same
        unused += [n for n in lora if last in n and ("txt_attn_proj" in n or "txt_mlp" in n)]
        assert lora and all(lora[n] is not None for n in lora if n not in unused), [n for n in lora if lora[n] is None]
        assert any(g.abs().sum() > 0 for g in lora.values() if g is not None)
        assert all(p.grad is None for n, p in model.named_parameters() if "lora_" not in n)


@pytest.mark.parametrize("name", ["kontext", "qwen-edit-plus", "zimage-omni", "longcat-edit", "joyimage-edit-plus",
                                  "joyimage-edit"])
def test_predict_depends_on_the_input_image(encoded, name):
    e = encoded(name)
    inputs, latents, prompt = e.sets[0]
    noisy = torch.randn(1, *e.target_latents.shape, generator=torch.Generator().manual_seed(0))
    prompts = e.family.collate_prompts([prompt])
    others = [lat[None] for lat in latents[1:]]
    with torch.no_grad():
        a = e.family.predict(e.transformer, noisy, torch.tensor([0.5]), [latents[0][None], *others], prompts)
        b = e.family.predict(e.transformer, noisy, torch.tensor([0.5]), [torch.zeros_like(latents[0])[None], *others],
                             prompts)
    assert not torch.allclose(a, b)


def test_kontext_predict_matches_the_pipelines_layout(encoded):
    """One denoising step computed as FluxKontextPipeline does equals ``predict``."""
    from diffusers import FluxKontextPipeline as P

    e = encoded("kontext")
    inputs, latents, prompt = e.sets[0]
    noisy = torch.randn(1, LATENT_CHANNELS, 4, 8, generator=torch.Generator().manual_seed(3))
    sigma = torch.tensor([0.7])
    with torch.no_grad():
        ours = e.family.predict(e.transformer, noisy, sigma, [latents[0][None]], e.family.collate_prompts([prompt]))
        packed = P._pack_latents(noisy, 1, LATENT_CHANNELS, 4, 8)
        packed_in = P._pack_latents(latents[0][None], 1, LATENT_CHANNELS, 4, 8)
        ids = P._prepare_latent_image_ids(1, 2, 4, CPU, torch.float32)
        ids_in = ids.clone()
        ids_in[..., 0] = 1
        out = e.transformer(hidden_states=torch.cat([packed, packed_in], 1), timestep=sigma,
                            guidance=torch.tensor([1.0]), pooled_projections=prompt.tensors["pooled_prompt_embeds"][None],
                            encoder_hidden_states=prompt.tensors["prompt_embeds"][None],
                            txt_ids=torch.zeros(512, 3), img_ids=torch.cat([ids, ids_in]), return_dict=False)[0]
        theirs = P._unpack_latents(out[:, : packed.shape[1]], 32, 64, 8)
    torch.testing.assert_close(ours, theirs)


def test_qwen_zero_cond_t_is_on_in_the_tiny_2511_model(encoded, tiny_qwen_edit_plus_2509_dir):
    e = encoded("qwen-edit-plus")
    assert e.transformer.config.zero_cond_t
    family_2509 = QwenEditPlusFamily(tiny_qwen_edit_plus_2509_dir, CPU, torch.float32)
    assert not family_2509.load_transformer().config.zero_cond_t


def test_input_count_is_checked(encoded):
    kontext = encoded("kontext")
    lat = kontext.target_latents[None]
    prompts = kontext.family.collate_prompts([kontext.sets[0][2]])
    with pytest.raises(InputCountError, match="one input image"):
        kontext.family.predict(kontext.transformer, lat, torch.tensor([0.5]), [lat, lat], prompts)
    with pytest.raises(InputCountError, match="needs an input image"):
        kontext.family.check_input_count(0)
    with pytest.raises(InputCountError, match="at most 3"):
        encoded("qwen-edit-plus").family.check_input_count(4)
    with pytest.raises(InputCountError, match="text-to-image"):
        encoded("flux").family.check_input_count(1)


@pytest.mark.parametrize("name", list(FIXTURE_OF))
def test_sample_returns_the_requested_size(encoded, name):
    e = encoded(name)
    model = _lora(e.transformer, e.family)  # previews run with LoRA layers in place
    try:
        for inputs, _, _ in e.sets:
            image = e.family.sample(model, inputs, "invert the colours", (64, 32), steps=2, seed=1)
            assert isinstance(image, Image.Image) and image.size == (64, 32) and image.mode == "RGB"
    finally:
        model.unload()  # leave the shared transformer without LoRA layers


def test_sample_is_deterministic_per_seed(encoded):
    e = encoded("kontext")
    inputs = e.sets[0][0]
    a = e.family.sample(e.transformer, inputs, "invert the colours", (32, 32), steps=2, seed=5)
    b = e.family.sample(e.transformer, inputs, "invert the colours", (32, 32), steps=2, seed=5)
    c = e.family.sample(e.transformer, inputs, "invert the colours", (32, 32), steps=2, seed=6)
    assert a.size == (32, 32) and a.tobytes() == b.tobytes() and a.tobytes() != c.tobytes()


@pytest.mark.parametrize("cls", [KontextFamily, QwenEditPlusFamily])
def test_input_size_policy(cls):
    family = cls.__new__(cls)
    family.use_input_size("target")
    m = cls.size_multiple
    # Same aspect (the usual pair, even at another resolution): the target's bucket size.
    assert family.input_size((1024, 768), (512, 384), 448) == (512, 384)
    # Clearly different aspect: its own aspect at the target's area, sides multiples of m.
    w, h = family.input_size((600, 1200), (512, 512), 512)
    assert w % m == 0 and h % m == 0 and h > w
    assert abs(w * h - 512 * 512) / (512 * 512) < 0.15


@pytest.mark.parametrize("cls", [KontextFamily, QwenEditPlusFamily, Flux2KleinFamily])
def test_pipeline_input_size_rule_is_the_pipelines_default_view(cls):
    """``train.input_size = "pipeline"``: an input is sized as the family's pipeline sizes it at
    inference, whatever the target's size: about 1 MP for a photo (Kontext's preferred
    resolutions, Qwen's VAE_IMAGE_SIZE, FLUX.2's 1024² cap), its own aspect kept."""
    family = cls.__new__(cls)
    family.use_input_size("pipeline")
    for photo in ((4000, 3000), (3000, 4000), (2048, 2048)):
        w, h = family.input_size(photo, (512, 384), 448)
        assert w % cls.size_multiple == 0 and h % cls.size_multiple == 0
        assert 0.85 < w * h / 1024 ** 2 < 1.15, (photo, w, h)
        assert (w > h) == (photo[0] > photo[1]) and (w == h or photo[0] != photo[1])
    if cls is Flux2KleinFamily:  # FLUX.2 never scales a reference up
        assert family.input_size((320, 240), (512, 384), 448) == (320, 240)
    family.use_input_size("auto")
    assert family.input_size_rule == family.record.default_input_size


# -- dataset kind, batching, pipeline parity, preview plumbing ---------------------------------------


def test_dataset_kind_must_fit_the_model():
    from lorastudio.training.families import FamilyModeError, check_dataset_mode

    check_dataset_mode(KontextFamily, Mode.PAIRED)
    check_dataset_mode(QwenImageFamily, Mode.SINGLE)
    with pytest.raises(FamilyModeError) as err:
        check_dataset_mode(KontextFamily, Mode.SINGLE)
    assert "text-to-image" in str(err.value) and "FluxPipeline" in str(err.value)
    assert "QwenImagePipeline" in str(err.value)
    with pytest.raises(FamilyModeError, match="before/after pairs.*FLUX.1 Kontext"):
        check_dataset_mode(FluxFamily, Mode.PAIRED)


def test_qwen_prompts_of_different_lengths_batch_with_padding(encoded):
    """Padding a short prompt to a longer one's length (mask 0) must not change its prediction."""
    e = encoded("qwen-edit-plus")
    family = e.family
    short, long_ = e.sets[0][2], e.sets[1][2]
    assert short.tensors["prompt_embeds"].shape[0] < long_.tensors["prompt_embeds"].shape[0]
    batch = family.collate_prompts([short, long_])
    assert batch["prompt_embeds"].shape[:2] == batch["prompt_embeds_mask"].shape
    n = short.tensors["prompt_embeds"].shape[0]
    assert batch["prompt_embeds_mask"][0, :n].all() and not batch["prompt_embeds_mask"][0, n:].any()

    latents = e.sets[0][1][0]
    noisy = torch.randn(2, *e.target_latents.shape, generator=torch.Generator().manual_seed(0))
    sigmas = torch.tensor([0.4, 0.4])
    with torch.no_grad():
        together = family.predict(e.transformer, noisy, sigmas, [torch.stack([latents, latents])], batch)
        alone = family.predict(e.transformer, noisy[:1], sigmas[:1], [latents[None]], family.collate_prompts([short]))
    torch.testing.assert_close(together[:1], alone, atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("name", ["qwen-edit-plus"])
def test_qwen_predict_matches_the_pipelines_layout(encoded, name):
    """Target tokens first, then each input's, one ``img_shapes`` entry each, timestep = sigma:
    the call QwenImageEditPlusPipeline makes (zero_cond_t is on in this tiny 2511 model)."""
    from diffusers import QwenImageEditPlusPipeline as P

    e = encoded(name)
    inputs, latents, prompt = e.sets[1]  # two inputs
    noisy = torch.randn(1, LATENT_CHANNELS, 4, 8, generator=torch.Generator().manual_seed(4))
    sigma = torch.tensor([0.6])
    batch = e.family.collate_prompts([prompt])
    with torch.no_grad():
        ours = e.family.predict(e.transformer, noisy, sigma, [lat[None] for lat in latents], batch)
        packed = [P._pack_latents(x, 1, LATENT_CHANNELS, 4, 8) for x in [noisy, *[lat[None] for lat in latents]]]
        out = e.transformer(hidden_states=torch.cat(packed, 1), timestep=sigma, encoder_hidden_states=batch["prompt_embeds"],
                            encoder_hidden_states_mask=batch["prompt_embeds_mask"],
                            img_shapes=[[(1, 2, 4)] * 3], return_dict=False)[0]
        theirs = P._unpack_latents(out[:, : packed[0].shape[1]], 32, 64, 8)[:, :, 0]
    torch.testing.assert_close(ours, theirs)


def test_qwen_vae_encoding_matches_the_edit_pipeline(encoded):
    """Our Qwen latents (shared with the text-to-image family, whose pipeline has no VAE
    encoder) equal QwenImageEditPlusPipeline._encode_vae_image."""
    from diffusers import AutoencoderKLQwenImage, QwenImageEditPlusPipeline

    e = encoded("qwen-edit-plus")
    vae = AutoencoderKLQwenImage.from_pretrained(e.family.model_dir / "vae")
    pipe = QwenImageEditPlusPipeline(scheduler=None, vae=vae, text_encoder=None, tokenizer=None, processor=None,
                                     transformer=None)
    pixels = pipe.image_processor.preprocess(e.target, height=32, width=64).unsqueeze(2)
    with torch.no_grad():
        expected = pipe._encode_vae_image(pixels, generator=None)[0, :, 0]
    torch.testing.assert_close(e.target_latents, expected)


def test_sample_reuses_prompt_encodings(encoded, monkeypatch):
    """Previews after the first never load the text encoders again (prepare_sample did it
    in the caching phase), and the Qwen VAE-size override is undone after the call."""
    from diffusers.pipelines.qwenimage import pipeline_qwenimage_edit_plus as module

    from lorastudio.training.families import _pipeline_family

    e = encoded("qwen-edit-plus")
    loads = []
    real = _pipeline_family.load_pipeline
    monkeypatch.setattr(_pipeline_family, "load_pipeline",
                        lambda cls, d, dt, **kw: loads.append(kw.get("transformer", "?")) or real(cls, d, dt, **kw))
    before = module.VAE_IMAGE_SIZE
    inputs = e.sets[0][0]
    # steps=1 also checks the Qwen guard: a one-step shift_terminal schedule would be NaN.
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        e.family.sample(e.transformer, inputs, "invert the colours", (64, 32), steps=1, seed=0)
    assert None not in loads  # transformer=None is the encoder-only load
    assert module.VAE_IMAGE_SIZE == before
    e.family.sample(e.transformer, inputs, "something new", (64, 32), steps=1, seed=0)
    assert None in loads  # an unseen caption needs the encoders once…
    assert e.family._encoders is None  # …and they are freed again afterwards


def test_kontext_refuses_two_inputs_everywhere(encoded):
    e = encoded("kontext")
    two = [_image((64, 32), 1), _image((64, 32), 2)]
    with pytest.raises(InputCountError, match=r"one input image.*\(_start, _start1\)"):
        e.family.encode_prompt("x", two)
    with pytest.raises(InputCountError, match="one input image"):
        e.family.sample(e.transformer, two, "x", (64, 32), steps=1, seed=0)


@pytest.mark.parametrize("name", ["zimage", "zimage-omni"])
def test_zimage_predict_is_the_pipelines_velocity(encoded, name):
    """Z-Image runs time backwards (the pipelines feed ``t = 1 - σ``) and its model predicts
    ``x0 - noise`` (the pipelines negate it). One Euler step of the family's own preview
    pipeline from σ to 0 moves the latents by ``-σ · v``: that ``v`` must be ``predict``'s,
    with Omni's reference image and SigLIP features in place. A prompt batched next to a
    longer one (padding) predicts what it predicts alone."""
    e = encoded(name)
    family = e.family
    inputs = [_image((64, 64), 20)] if name == "zimage-omni" else []
    latents, prompt, longer = _inputs_and_two_prompts(family, inputs)
    noisy = torch.randn(1, LATENT_CHANNELS, 2, 4, generator=torch.Generator().manual_seed(5))
    pipe = family._sampling_pipeline(e.transformer)
    kwargs = family._sample_call_kwargs(inputs, {k: v[None] for k, v in prompt.tensors.items()}, 32, 16)
    with torch.no_grad():
        x0 = pipe(**kwargs, height=16, width=32, num_inference_steps=1, sigmas=[0.6], latents=noisy.clone(),
                  output_type="latent").images
        sigma = float(pipe.scheduler.sigmas[0])
        ours = family.predict(e.transformer, noisy, torch.tensor([sigma]), latents, family.collate_prompts([prompt]))
        both = family.predict(e.transformer, noisy.repeat(2, 1, 1, 1), torch.tensor([sigma, sigma]),
                              [lat.repeat(2, 1, 1, 1) for lat in latents], family.collate_prompts([prompt, longer]))
    assert 0 < sigma < 1
    torch.testing.assert_close(ours, (noisy - x0) / sigma, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(both[:1], ours, atol=1e-5, rtol=1e-4)
    assert not torch.allclose(both[1:], ours)  # the other caption does change the prediction


def test_zimage_omni_prompt_sees_the_input_images(encoded):
    """Omni's cached prompt holds the SigLIP2 features of each reference (its vision encoder
    sees the inputs), one text segment per reference, and depends on the images."""
    family = encoded("zimage-omni").family
    family.load_encoders()
    try:
        a = family.encode_prompt("make it red", [_image((64, 64), 1)]).tensors
        b = family.encode_prompt("make it red", [_image((64, 64), 2)]).tensors
    finally:
        family.free_encoders()
    assert a["siglip_0"].shape == b["siglip_0"].shape and a["siglip_0"].shape[-1] == 16  # siglip_feat_dim
    assert not torch.equal(a["siglip_0"], b["siglip_0"])
    torch.testing.assert_close(a["prompt_embeds"], b["prompt_embeds"])  # the text itself does not see the image
    assert a["prompt_lengths"].shape == (3,)


def test_zimage_omni_trains_small_references_as_the_pipeline_takes_them(encoded):
    """ZImageOmniPipeline refuses a reference with a side under 64 pixels, so a preview hands
    it one enlarged. Training at a lower resolution must show the model that same reference:
    ``input_size`` never goes below 64 (either rule), and a 32-pixel preview's transformer
    gets exactly the reference latents and SigLIP features the training cache holds for the
    set (encoded at ``input_size``). (It once trained 32-pixel references, 4×4 latents,
    while every preview showed the model 8×8 ones.)"""
    from lorastudio.training.families._common import resize_to

    family = encoded("zimage-omni").family
    transformer = encoded("zimage-omni").transformer
    assert family.input_size((32, 32), (32, 32), 32) == (64, 64)
    assert family.input_size((48, 32), (48, 32), 40) == (96, 64)  # aspect kept, sides multiples of 16
    assert family.input_size((512, 512), (512, 512), 512) == (512, 512)
    family.use_input_size("pipeline")
    try:
        assert family.input_size((32, 32), (32, 32), 32) == (64, 64)
    finally:
        family.use_input_size("auto")
    source = _image((32, 32), 7)
    cached = resize_to(source, family.input_size(source.size, (32, 32), 32))
    family.load_encoders()
    try:
        latents = family.encode_image(cached)
        prompt = family.encode_prompt("invert the colours", [cached]).tensors
    finally:
        family.free_encoders()
    seen = []
    hook = transformer.register_forward_pre_hook(lambda _m, _a, kwargs: seen.append(kwargs), with_kwargs=True)
    try:
        family.run_pipeline(transformer, [source], "invert the colours", (32, 32), 1, 0, output_type="latent")
    finally:
        hook.remove()
    reference, target = seen[0]["x"][0]
    assert target.shape[-2:] == (4, 4)
    torch.testing.assert_close(reference[:, 0], latents)
    torch.testing.assert_close(seen[0]["siglip_feats"][0][0], prompt["siglip_0"])


# -- LongCat-Image ---------------------------------------------------------------------------------


def test_longcat_predict_matches_the_edit_pipelines_layout(encoded):
    """One denoising step made with LongCatImageEditPipeline's own ``prepare_latents`` (packing,
    position ids of target and input) and ``encode_prompt``'s text ids equals ``predict``."""
    from types import SimpleNamespace

    from diffusers import LongCatImageEditPipeline as P
    from diffusers.pipelines.longcat_image import pipeline_longcat_image_edit as module

    e = encoded("longcat-edit")
    inputs, latents, prompt = e.sets[0]
    embeds = prompt.tensors["prompt_embeds"][None]
    noisy = torch.randn(1, 16, 4, 8, generator=torch.Generator().manual_seed(3))
    sigma = torch.tensor([0.7])
    pipe = SimpleNamespace(vae_scale_factor=8, vae=SimpleNamespace(config=SimpleNamespace(latent_channels=16)),
                           device=CPU, _pack_latents=P._pack_latents)
    with torch.no_grad():
        ours = e.family.predict(e.transformer, noisy, sigma, [latents[0][None]], e.family.collate_prompts([prompt]))
        packed, packed_in, ids, ids_in = P.prepare_latents(
            pipe, latents[0][None], 1, 16, 32, 64, torch.float32, embeds.shape[1], CPU, None,
            P._pack_latents(noisy, 1, 16, 4, 8))
        text_ids = module.prepare_pos_ids(modality_id=0, type="text", start=(0, 0), num_token=embeds.shape[1])
        out = e.transformer(hidden_states=torch.cat([packed, packed_in], 1), timestep=sigma * 1000 / 1000,
                            encoder_hidden_states=embeds, txt_ids=text_ids, img_ids=torch.cat([ids, ids_in]),
                            return_dict=False)[0]
        theirs = P._unpack_latents(out[:, : packed.shape[1]], 32, 64, 8)
    torch.testing.assert_close(ours, theirs)


def test_longcat_edit_prompt_sees_the_input_at_the_pipelines_vl_size(encoded):
    """The VL encoder sees the input as the pipeline shows it (half the side of its ~1 MP
    output), and both the image and the caption change the embedding."""
    from diffusers.pipelines.longcat_image import pipeline_longcat_image_edit as module

    e = encoded("longcat-edit")
    family = e.family
    family.load_encoders()
    try:
        view = family.condition_image(family._encoders, _image((64, 32), 1))
        a = family.encode_prompt("make it red", [_image((64, 32), 1)]).tensors["prompt_embeds"]
        b = family.encode_prompt("make it red", [_image((64, 32), 2)]).tensors["prompt_embeds"]
        c = family.encode_prompt("make it blue", [_image((64, 32), 1)]).tensors["prompt_embeds"]
        grid = family._encoders.image_processor_vl(images=view, return_tensors="pt")["image_grid_thw"]
    finally:
        family.free_encoders()
    width, height = module.calculate_dimensions(1024 * 1024, 2.0)
    assert view.size == (width // 2, height // 2)
    assert a.shape[0] == 512 + 2 + int(grid.prod()) // 4  # <|vision_start|>, its tokens, <|vision_end|>, caption
    assert a.shape == b.shape and not torch.equal(a, b) and not torch.equal(a, c)


def test_longcat_edit_input_takes_the_target_size_and_previews_restore_the_pipeline(encoded):
    from diffusers.pipelines.longcat_image import pipeline_longcat_image_edit as module

    e = encoded("longcat-edit")
    assert e.family.input_size((1024, 768), (512, 384), 448) == (512, 384)
    assert e.family.input_size((600, 1200), (512, 512), 512) == (512, 512)  # one grid with the target, as the pipeline
    before = module.calculate_dimensions
    image = e.family.sample(e.transformer, e.sets[0][0], "invert the colours", (32, 48), steps=1, seed=0)
    assert image.size == (32, 48) and module.calculate_dimensions is before


# -- JoyImage-Edit-Plus ----------------------------------------------------------------------------


def test_joyimage_predict_is_the_pipelines_step(encoded):
    """One Euler step of the family's own preview pipeline (its ``prepare_latents``: VAE,
    normalization, patch sequence with the reference after the target; its timesteps; no
    guidance here) from σ to 0 moves the target by ``-σ · v``: that ``v`` must be ``predict``'s.
    A prompt batched next to a longer one (padded, masked) predicts what it predicts alone."""
    e = encoded("joyimage-edit-plus")
    family = e.family
    inputs = [_image((32, 16), 21)]
    latents, prompt, longer = _inputs_and_two_prompts(family, inputs)
    noisy = torch.randn(1, LATENT_CHANNELS, 2, 4, generator=torch.Generator().manual_seed(5))
    pipe = family._sampling_pipeline(e.transformer)
    cached = {k: v[None] for k, v in prompt.tensors.items()}
    kwargs = family._sample_call_kwargs(inputs, {**cached, **{f"negative_{k}": v for k, v in cached.items()}}, 32, 16)
    with torch.no_grad():
        out = pipe(**{**kwargs, "guidance_scale": 1.0}, height=16, width=32, num_inference_steps=1, sigmas=[0.6],
                   latents=noisy[:, :, None].clone(), output_type="latent").images
        sigma = float(pipe.scheduler.sigmas[0])
        x0 = family.pipeline_target_latents(out, (32, 16))
        ours = family.predict(e.transformer, noisy, torch.tensor([sigma]), latents, family.collate_prompts([prompt]))
        both = family.predict(e.transformer, noisy.repeat(2, 1, 1, 1), torch.tensor([sigma, sigma]),
                              [lat.repeat(2, 1, 1, 1) for lat in latents], family.collate_prompts([prompt, longer]))
    assert out.shape[1] == 2 + 2  # the target's 1x2 patches, then the reference's
    assert 0 < sigma < 1
    torch.testing.assert_close(ours, (noisy - x0) / sigma, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(both[:1], ours, atol=1e-5, rtol=1e-4)
    assert not torch.allclose(both[1:], ours)  # the other caption does change the prediction


def test_joyimage_prompt_sees_each_reference_at_its_pipeline_bucket(encoded):
    """The Qwen3-VL encoder sees each reference as ``__call__`` hands it over (its ~1 MP bucket,
    resized to cover and centre-cropped); the image and the caption both change the prompt, and the
    tiny tokenizer gives the system template the 34 tokens the pipeline drops."""
    from diffusers.pipelines.joyimage.image_processor import find_best_bucket

    family = encoded("joyimage-edit-plus").family
    family.load_encoders()
    try:
        pipe = family._encoders
        view = family.condition_image(pipe, _image((64, 32), 1))
        a = family.encode_prompt("make it red", [_image((64, 32), 1)]).tensors["prompt_embeds"]
        b = family.encode_prompt("make it red", [_image((64, 32), 2)]).tensors["prompt_embeds"]
        c = family.encode_prompt("make it blue", [_image((64, 32), 1)]).tensors["prompt_embeds"]
        prefix = pipe.prompt_template_encode["multiple_images"].split("{}")[0]
        prefix_tokens = len(pipe.tokenizer(prefix).input_ids)
    finally:
        family.free_encoders()
    assert view.size[::-1] == find_best_bucket(32, 64, 1024) == (704, 1408)
    assert prefix_tokens == pipe.prompt_template_encode_start_idx["multiple_images"]
    assert a.shape == b.shape and not torch.equal(a, b) and not torch.equal(a, c)


def test_joyimage_input_sizes():
    family = FAMILIES["joyimage-edit-plus"].__new__(FAMILIES["joyimage-edit-plus"])
    family.input_size_rule = "target"
    assert family.input_size((1024, 512), (256, 128), 181) == (256, 128)
    family.use_input_size("pipeline")
    assert family.input_size((1024, 512), (256, 128), 181) == (1408, 704)  # the pipeline's ~1 MP bucket
    assert family.input_size((300, 300), (256, 128), 181) == (1024, 1024)
    with pytest.raises(InputCountError, match="at most 5"):
        family.check_input_count(6)
    family.check_input_count(0)  # text-to-image sets train the same model


# -- JoyImage-Edit -----------------------------------------------------------------------------------


def test_joyimage_edit_predict_is_the_pipelines_step(encoded, monkeypatch):
    """One Euler step of the family's own preview pipeline (its ``prepare_latents``: the reference's
    VAE latents, normalized, stacked before the target; its timesteps; no guidance here) from σ to
    0 moves the target by ``-σ · v``: that ``v`` must be ``predict``'s, with the reference and for
    text alone. The pipeline samples the reference's posterior, training caches its mode (the
    sample's expectation): here the sample is the mode, so the two must agree exactly. A prompt
    batched next to a longer one predicts what it predicts alone (this transformer has no text
    mask: ``predict`` must not let the padding in)."""
    from diffusers.models.autoencoders.vae import DiagonalGaussianDistribution

    e = encoded("joyimage-edit")
    family = e.family
    inputs = [_image((32, 16), 21)]
    latents, prompt, longer = _inputs_and_two_prompts(family, inputs)
    family.load_encoders()
    try:
        text_only = family.encode_prompt("invert the colours", [])
    finally:
        family.free_encoders()
    monkeypatch.setattr(DiagonalGaussianDistribution, "sample", DiagonalGaussianDistribution.mode)
    noisy = torch.randn(1, LATENT_CHANNELS, 2, 4, generator=torch.Generator().manual_seed(5))
    pipe = family._sampling_pipeline(e.transformer)
    for refs, encoded_prompt, ref_latents in ((inputs, prompt, latents), ([], text_only, [])):
        cached = {k: v[None] for k, v in encoded_prompt.tensors.items()}
        kwargs = family._sample_call_kwargs(refs, {**cached, **{f"negative_{k}": v for k, v in cached.items()}}, 32, 16)
        with torch.no_grad():
            x0 = pipe(**{**kwargs, "guidance_scale": 1.0}, height=16, width=32, num_inference_steps=1, sigmas=[0.6],
                      latents=noisy[:, None, :, None].clone(), output_type="latent").images  # the target item
            sigma = float(pipe.scheduler.sigmas[0])
            ours = family.predict(e.transformer, noisy, torch.tensor([sigma]), ref_latents,
                                  family.collate_prompts([encoded_prompt]))
        assert 0 < sigma < 1 and x0.shape == noisy.shape
        torch.testing.assert_close(ours, (noisy - x0) / sigma, atol=1e-5, rtol=1e-4)
    with torch.no_grad():
        one = family.predict(e.transformer, noisy, torch.tensor([0.6]), latents, family.collate_prompts([prompt]))
        both = family.predict(e.transformer, noisy.repeat(2, 1, 1, 1), torch.tensor([0.6, 0.6]),
                              [lat.repeat(2, 1, 1, 1) for lat in latents], family.collate_prompts([prompt, longer]))
    assert torch.equal(both[:1], one)
    assert not torch.allclose(both[1:], one)  # the other caption does change the prediction


def test_joyimage_edit_prompt_sees_the_input_at_the_outputs_bucket(encoded):
    """The Qwen3-VL encoder sees the input as ``__call__`` hands it over (the output's ~1 MP bucket,
    resized to cover and centre-cropped); the image and the caption both change the prompt; text
    alone takes the "image" template, whose 34 system tokens the tiny tokenizer gives as the real one."""
    from diffusers.pipelines.joyimage.image_processor import find_best_bucket

    family = encoded("joyimage-edit").family
    family.load_encoders()
    try:
        pipe = family._encoders
        view = family.condition_image(pipe, _image((64, 32), 1))
        a = family.encode_prompt("make it red", [_image((64, 32), 1)]).tensors["prompt_embeds"]
        b = family.encode_prompt("make it red", [_image((64, 32), 2)]).tensors["prompt_embeds"]
        c = family.encode_prompt("make it blue", [_image((64, 32), 1)]).tensors["prompt_embeds"]
        text = family.encode_prompt("make it red", []).tensors["prompt_embeds"]
        prefixes = {kind: len(pipe.tokenizer(template.split("{}")[0].split("<|im_start|>user")[0]).input_ids)
                    for kind, template in pipe.prompt_template_encode.items()}
    finally:
        family.free_encoders()
    assert view.size[::-1] == find_best_bucket(32, 64, 1024) == (704, 1408)
    assert prefixes == pipe.prompt_template_encode_start_idx == {"image": 34, "multiple_images": 34}
    assert a.shape == b.shape and not torch.equal(a, b) and not torch.equal(a, c)
    assert text.shape[0] < a.shape[0]  # no vision tokens


def test_joyimage_edit_input_sizes():
    family = FAMILIES["joyimage-edit"].__new__(FAMILIES["joyimage-edit"])
    for rule in ("target", "pipeline"):  # one position grid with the target: the pipeline gives it no other size
        family.use_input_size(rule)
        assert family.input_size((1024, 512), (256, 128), 181) == (256, 128)
        assert family.input_size((300, 600), (256, 256), 256) == (256, 256)
    with pytest.raises(InputCountError, match="one input image"):
        family.check_input_count(2)
    family.check_input_count(0)  # text-to-image sets train the same model
