"""Every key we save lands on a module of the base model, in both formats, for every family
(no "lora key not loaded" in ComfyUI, no unexpected/missing keys in diffusers), and the
strength each loader applies (its alpha handling) is the trained one.

diffusers format: the family pipeline's ``load_lora_weights`` must not warn about keys,
must put a LoRA on exactly the modules in the file, and each module's effective delta
(``scaling · B @ A``) must equal ours (alpha/rank · B @ A, alpha ≠ rank here).

comfyui format: every key prefix must be one ComfyUI's ``model_lora_keys_unet`` maps for
that model (``lora_unet_`` + its own weight name): for FLUX the BFL-layout weights made
by ``formats_helpers.to_bfl`` (checked against diffusers' converter in
``test_formats``), for Qwen-Image the diffusers module names ComfyUI's Qwen model shares;
every module has its ``.alpha``. diffusers' loader must accept the file as well.
"""

from __future__ import annotations

import logging

import pytest
import torch

from lorastudio import catalog
from lorastudio.training.families import FAMILIES
from lorastudio.training.formats import ARCHITECTURE, export_tensors, kohya_name, peft_state_from_comfyui
from lorastudio.training.lora import add_lora, export_metadata, peft_state_dict, save_lora_file

from test_formats import KEY_PROBLEMS, key_warnings
from formats_helpers import apply_comfy_lora, diffusers_kohya_flux1_converter, to_bfl

RANK, ALPHA = 4, 8.0
FIXTURES = {"kontext": "tiny_kontext_dir", "flux": "tiny_flux_dir", "qwen-edit-plus": "tiny_qwen_edit_plus_dir",
            "qwen-image": "tiny_qwen_image_dir", "flux2-klein": "tiny_flux2_klein_dir", "flux2": "tiny_flux2_dir",
            "qwen-image-2.1": "tiny_qwen_image21_dir", "zimage": "tiny_zimage_dir", "zimage-omni": "tiny_zimage_omni_dir",
            # LongCat-Image (text-to-image) has the same transformer class, key layout and loader.
            "longcat-edit": "tiny_longcat_edit_dir", "joyimage-edit-plus": "tiny_joyimage_edit_plus_dir",
            "joyimage-edit": "tiny_joyimage_edit_dir"}
#: The families whose model this ComfyUI loads (the catalog's comfyui_formats; not Qwen-Image 2.1,
#: Z-Image Omni or LongCat-Image).
COMFY_FAMILIES = [f for f in FIXTURES if catalog.family(f).comfyui_formats]


@pytest.fixture(scope="module")
def lora(request):
    """Per family: the model folder, and the peft LoRA state (random, alpha ≠ rank) on its transformer."""
    cache = {}

    def get(family):
        if family not in cache:
            folder = request.getfixturevalue(FIXTURES[family])
            cls = FAMILIES[family]
            model = cls.transformer_class().from_pretrained(str(folder), subfolder="transformer").float()
            add_lora(model, RANK, ALPHA, cls.lora_target_modules)
            g = torch.Generator().manual_seed(0)
            with torch.no_grad():
                for name, p in model.named_parameters():
                    if "lora_" in name:
                        p.copy_(torch.randn(p.shape, generator=g) * 0.1)
            cache[family] = (folder, model, peft_state_dict(model))
        return cache[family]

    return get


def _deltas(state):
    """Module → alpha/rank · B @ A of a peft state (our trained deltas)."""
    out = {}
    for key, a in state.items():
        if key.endswith(".lora_A.weight"):
            module = key[: -len(".lora_A.weight")]
            out[module] = ALPHA / RANK * state[module + ".lora_B.weight"] @ a
    return out


def _loaded_deltas(transformer):
    """Module → scaling · B @ A of the LoRA layers a loader put on ``transformer``."""
    out = {}
    for name, module in transformer.named_modules():
        if hasattr(module, "lora_A") and module.lora_A:
            adapter = next(iter(module.lora_A))
            b, a = module.lora_B[adapter].weight, module.lora_A[adapter].weight
            out[name] = module.scaling[adapter] * b @ a
    return out


def _load(family, folder, path, monkeypatch):
    from diffusers.loaders import lora_pipeline
    from diffusers.utils import logging as dlogging

    cls = FAMILIES[family]
    if ARCHITECTURE[family] == "flux1":  # diffusers' kohya FLUX.1 converter hard-codes FLUX.1-dev's widths
        model_cfg = cls.transformer_class().load_config(str(folder), subfolder="transformer")
        inner = model_cfg["num_attention_heads"] * model_cfg["attention_head_dim"]
        monkeypatch.setattr(lora_pipeline, "_convert_kohya_flux_lora_to_diffusers", diffusers_kohya_flux1_converter(inner))
    # A pipeline without a LoRA loader gets the family's transformer class (JoyImage: diffusers' own
    # with diffusers' PeftAdapterMixin, which diffusers 0.42 leaves out of it).
    own = {} if hasattr(cls.pipeline_class(), "load_lora_weights") else {
        "transformer": cls.transformer_class().from_pretrained(str(folder), subfolder="transformer")}
    pipe = cls.pipeline_class().from_pretrained(str(folder), local_files_only=True, **own)
    records: list[logging.LogRecord] = []

    class Catch(logging.Handler):
        def emit(self, record):
            records.append(record)

    handler = Catch(level=logging.WARNING)
    logger = dlogging.get_logger("diffusers")
    logger.addHandler(handler)
    try:
        if hasattr(pipe, "load_lora_weights"):
            pipe.load_lora_weights(str(path))
        else:  # a pipeline without a LoRA loader (LongCat, JoyImage): diffusers' loader its catalog record names
            from lorastudio.training.sample import _diffusers_load

            _diffusers_load(pipe.transformer, cls.lora_loader(), path, "default")
    finally:
        logger.removeHandler(handler)
    return pipe, key_warnings(records)


def _save(tmp_path, family, state, fmt):
    return save_lora_file(tmp_path / f"{family}-{fmt}.safetensors", export_tensors(state, RANK, ALPHA, family, fmt=fmt),
                          export_metadata(family=family, base_model="m", rank=RANK, alpha=ALPHA, steps=1,
                                          learning_rate=1e-4, resolution=64, sets=1, trigger="", fmt=fmt))


@pytest.mark.parametrize("family", list(FIXTURES))
def test_diffusers_format_every_key_loads_at_the_trained_strength(lora, family, tmp_path, monkeypatch):
    folder, model, state = lora(family)
    path = _save(tmp_path, family, state, "diffusers")
    pipe, warnings = _load(family, folder, path, monkeypatch)
    assert not warnings, warnings
    ours, loaded = _deltas(state), _loaded_deltas(pipe.transformer)
    assert set(loaded) == set(ours)  # every module of the file, and nothing else
    for module, delta in ours.items():
        torch.testing.assert_close(loaded[module], delta, rtol=1e-4, atol=1e-6, msg=module)


@pytest.mark.parametrize("family", COMFY_FAMILIES)
def test_comfyui_format_every_key_maps_onto_the_model(lora, family, tmp_path):
    folder, model, state = lora(family)
    tensors = export_tensors(state, RANK, ALPHA, family, fmt="comfyui")
    names = {k.rsplit(".", 2)[0] if k.endswith(".weight") else k.rsplit(".", 1)[0] for k in tensors}
    arch = ARCHITECTURE[family]
    assert all(n.startswith("diffusion_model." if arch == "zimage" else "lora_unet_") for n in names)
    for name in names:  # down, up and alpha for every module
        assert {f"{name}.lora_down.weight", f"{name}.lora_up.weight", f"{name}.alpha"} <= set(tensors), name
        assert tensors[f"{name}.alpha"].dtype == torch.float32 and tensors[f"{name}.alpha"].dim() == 0
    base = {k: v for k, v in model.state_dict().items() if "lora_" not in k}
    base = {k.replace(".base_layer", ""): v for k, v in base.items()}
    if arch == "zimage":
        # ComfyUI's Z-Image (Lumina 2) LoRA map takes "diffusion_model.<diffusers name>" for the
        # main, noise- and context-refiner blocks (comfy/utils.py z_image_to_diffusers; checked
        # with ComfyUI itself by tools/comfy_check_zimage.py). Omni's SigLIP refiner is not
        # among them: ComfyUI has no Z-Image Omni model (its record has no comfyui format).
        blocks = ("layers.", "noise_refiner.", "context_refiner.") + (("siglip_refiner.",) if family == "zimage-omni"
                                                                     else ())
        modules = {k[: -len(".weight")] for k in base if k.endswith(".weight") and k.startswith(blocks)}
        assert names <= {f"diffusion_model.{m}" for m in modules}, sorted(names)[:3]
        return
    if arch == "qwen":
        comfy_weights = {k: v for k, v in base.items()}  # ComfyUI's Qwen model uses these names
        expected = {kohya_name(k[: -len(".weight")]) for k in comfy_weights if k.endswith(".weight")}
        assert names <= expected, sorted(names - expected)[:3]
        _, not_loaded = apply_comfy_lora(comfy_weights, tensors)
    else:
        _, not_loaded = apply_comfy_lora(to_bfl(base, arch), tensors)
    assert not not_loaded, not_loaded  # ComfyUI would log "lora key not loaded" for these


@pytest.mark.parametrize("family", list(FIXTURES))
def test_comfyui_file_reads_back_to_every_trained_module(lora, family):
    """``lorastudio sample`` renames our comfyui file back to the transformer's module names
    (``peft_state_from_comfyui``): exactly the trained modules, each with the trained delta."""
    folder, model, state = lora(family)
    widths = {n.removesuffix(".base_layer"): m.out_features for n, m in model.named_modules()
              if isinstance(m, torch.nn.Linear) and ".lora_" not in n}  # the Linear layers under peft's
    back = peft_state_from_comfyui(export_tensors(state, RANK, ALPHA, family, fmt="comfyui"), widths, family)
    ours = _deltas(state)
    assert set(back) == {f"{m}.lora_{x}.weight" for m in ours for x in "AB"}
    for module, delta in ours.items():  # alpha / rank is folded into lora_B: scale 1.0
        torch.testing.assert_close(back[f"{module}.lora_B.weight"] @ back[f"{module}.lora_A.weight"], delta,
                                   rtol=1e-4, atol=1e-6, msg=module)


# (Not Qwen-Image 2.1: diffusers' kohya converter reads its img_mlp.gate_layer as gate.layer, and no
# ComfyUI here loads that model, so its comfyui file serves no loader; the catalog's warning says so.)
@pytest.mark.parametrize("family", ["qwen-image", "qwen-edit-plus", "zimage", "zimage-omni"])
def test_diffusers_also_loads_the_comfyui_file(lora, family, tmp_path, monkeypatch):
    folder, model, state = lora(family)
    pipe, warnings = _load(family, folder, _save(tmp_path, family, state, "comfyui"), monkeypatch)
    assert not warnings, warnings
    ours, loaded = _deltas(state), _loaded_deltas(pipe.transformer)
    assert set(loaded) == set(ours)
    for module, delta in ours.items():
        torch.testing.assert_close(loaded[module], delta, rtol=1e-4, atol=1e-6, msg=module)


def test_key_problem_words_are_the_loaders():
    """The words we look for are the ones diffusers' loaders use for keys that did not load."""
    import inspect

    from diffusers.loaders import lora_conversion_utils, peft

    source = inspect.getsource(peft).lower() + inspect.getsource(lora_conversion_utils).lower()
    assert all(word in source for word in ("unexpected", "missing", "incompatible", "unsupported"))
    assert KEY_PROBLEMS
