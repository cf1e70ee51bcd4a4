"""The family catalog is the one place a family's facts live, and everything reads it;
``model_index.json`` has one reader with one message per way it can be wrong."""

from __future__ import annotations

import json

import pytest

from lorastudio import catalog
from lorastudio.model_folder import ModelFolderError, detect_model_folder, family_of, read_model_index


def test_records_are_consistent():
    assert len(set(catalog.FAMILY_IDS)) == len(catalog.FAMILIES)
    classes = [c for r in catalog.FAMILIES for c in r.pipeline_classes]
    assert len(set(classes)) == len(classes) and set(classes) == set(catalog.pipeline_classes())
    for record in catalog.FAMILIES:
        assert record.modes and set(record.modes) <= {catalog.PAIRED, catalog.SINGLE}
        assert (record.max_inputs == 0) == (not record.edit)
        assert record.default_format in catalog.LORA_FORMATS
        # the default is a format ComfyUI loads completely (issue 12: no silently half-applied LoRA),
        # unless this ComfyUI cannot load the model at all (no formats: Qwen-Image 2.1, Z-Image Omni, LongCat-Image)
        assert record.default_format in record.comfyui_formats or not record.comfyui_formats
        assert set(record.comfyui_formats) <= set(catalog.LORA_FORMATS)
        assert record.lora_targets and record.text_tokens > 0


def test_every_family_class_is_its_record():
    """families/__init__ finds each family class through its record; the class's facts are the record's."""
    from lorastudio.training.families import FAMILIES, PIPELINE_CLASSES

    assert tuple(FAMILIES) == catalog.FAMILY_IDS
    for record in catalog.FAMILIES:
        cls = FAMILIES[record.id]
        assert cls.record is record and cls.__module__.endswith("." + record.family_module)
        assert (cls.name, cls.display_name, cls.pipeline_class_names, cls.max_inputs, cls.lora_target_modules) == \
            (record.id, record.display_name, record.pipeline_classes, record.max_inputs, record.lora_targets)
        assert tuple(cls.modes) == record.modes and cls.mode == record.main_mode
        for class_name in record.pipeline_classes:
            assert PIPELINE_CLASSES[class_name] is cls


def test_every_family_has_a_tiny_recipe_and_a_key_layout():
    from lorastudio.training.formats import BFL_RULES, COMFYUI_PREFIX, DIFFUSERS_PREFIX
    from lorastudio.training.tiny import recipes

    for record in catalog.FAMILIES:
        assert record.id in recipes()
        assert record.key_layout in DIFFUSERS_PREFIX
        assert record.key_layout in BFL_RULES or record.key_layout in COMFYUI_PREFIX or record.key_layout == "qwen"


def test_modelspec_reads_the_catalog(tmp_path):
    from lorastudio.training.modelspec import architecture, modelspec_metadata

    for record in catalog.FAMILIES:
        assert architecture(record.id) == f"{record.modelspec_architecture}/lora"
        meta = modelspec_metadata(family=record.id, title="t", resolution=512)
        assert meta["modelspec.implementation"] == record.modelspec_implementation
    (tmp_path / "transformer").mkdir()
    (tmp_path / "transformer" / "config.json").write_text(json.dumps({"num_attention_heads": 32,
                                                                      "attention_head_dim": 128}))
    assert architecture("flux2-klein", tmp_path) == "flux.2-klein-9b/lora"


@pytest.mark.parametrize("family, automatic", [
    ("kontext", "diffusers"), ("flux", "diffusers"), ("qwen-edit-plus", "diffusers"), ("qwen-image", "diffusers"),
    ("flux2", "comfyui"), ("flux2-klein", "comfyui"), ("zimage", "diffusers"), ("zimage-omni", "diffusers"),
    ("longcat-edit", "diffusers"), ("longcat", "diffusers"), ("joyimage-edit-plus", "diffusers"),
    ("joyimage-edit", "diffusers")])
def test_auto_format_per_family(family, automatic):
    """"auto" writes, per family, the layout that loads fully in ComfyUI and in diffusers: the
    diffusers names for FLUX.1/Kontext/Qwen, the BFL names for FLUX.2 (whose diffusers-named
    files lose 12 of 28 keys in ComfyUI). An explicit choice is kept, with a warning when
    ComfyUI would not load it fully."""
    assert catalog.resolve_format("auto", family) == automatic
    assert catalog.comfyui_warning("auto", family) == ""
    assert "chosen automatically" in catalog.describe_format("auto", family)
    for fmt in catalog.LORA_FORMATS:
        assert catalog.resolve_format(fmt, family) == fmt
        warning = catalog.comfyui_warning(fmt, family)
        assert bool(warning) == ((family.startswith("flux2") and fmt == "diffusers")
                                 or (family in ("zimage-omni", "longcat-edit", "longcat", "joyimage-edit-plus",
                                                "joyimage-edit") and fmt == "comfyui"))
        assert catalog.FORMAT_LOADERS[fmt] in catalog.describe_format(fmt, family)
    if family.startswith("flux2"):
        assert "do not load fully in ComfyUI" in catalog.comfyui_warning("diffusers", family)
    if family == "zimage-omni":  # ComfyUI has no Z-Image Omni model: said, whatever the layout
        assert "cannot load Z-Image Omni" in catalog.comfyui_warning("comfyui", family)
        assert "cannot load Z-Image Omni" in catalog.describe_format("auto", family)
    if family.startswith("longcat"):  # this ComfyUI has no LongCat-Image model: no layout loads there
        assert "cannot load LongCat-Image" in catalog.comfyui_warning("comfyui", family)
        assert "ComfyUI cannot load LongCat-Image" in catalog.describe_format("auto", family)
    if family.startswith("joyimage"):  # this ComfyUI has no JoyImage model: no layout loads there
        name = catalog.family(family).display_name
        assert f"cannot load {name}" in catalog.comfyui_warning("comfyui", family)
        assert f"ComfyUI cannot load {name}" in catalog.describe_format("auto", family)


def test_auto_input_size_is_the_measured_best():
    """``train.input_size = "auto"``: Kontext and Qwen-Image-Edit-Plus train their inputs at the
    pipeline's ~1 MP, measured best in the pipeline's default call (``benchmarks/input_size.py``,
    README); either rule stays selectable for every family."""
    for family in ("kontext", "qwen-edit-plus"):
        assert catalog.resolve_input_size("auto", family) == "pipeline"
    for record in catalog.FAMILIES:
        assert record.default_input_size in catalog.INPUT_SIZE_RULES
        for rule in catalog.INPUT_SIZE_RULES:
            assert catalog.resolve_input_size(rule, record.id) == rule


def test_a_model_comfyui_cannot_load_gets_no_comfyui_promise():
    """Qwen-Image 2.1: this ComfyUI has no such model, so "auto" writes what diffusers loads fully,
    says nothing about ComfyUI loading it, and only a choice of another layout is warned about."""
    family = "qwen-image-2.1"
    assert catalog.family(family).comfyui_formats == ()
    assert catalog.resolve_format("auto", family) == "diffusers"
    assert "ComfyUI cannot load Qwen-Image 2.1" in catalog.describe_format("auto", family)
    assert catalog.comfyui_warning("auto", family) == catalog.comfyui_warning("diffusers", family, "dora") == ""
    warning = catalog.comfyui_warning("comfyui", family)
    assert "cannot load Qwen-Image 2.1" in warning and '"diffusers"' in warning


def test_unknown_family_is_named():
    with pytest.raises(catalog.UnknownFamilyError, match="'sdxl'.*kontext"):
        catalog.family("sdxl")
    assert catalog.find("sdxl") is None and catalog.family_for_pipeline("StableDiffusionPipeline") is None


# -- model_index.json: one reader ----------------------------------------------------------------


@pytest.mark.parametrize("how, words", [
    ("missing", "not found"),
    ("file", "is a file, not a folder"),
    ("no-index", "has no model_index.json"),
    ("not-json", "cannot be read: it is not valid JSON"),
    ("not-object", "cannot be read: it is not a JSON object"),
    ("no-class", "names no pipeline"),
    ("unsupported", "StableDiffusionPipeline model, which LoRA Studio does not train"),
])
def test_a_broken_model_index_gets_one_message_everywhere(tmp_path, how, words):
    folder = tmp_path / "model"
    if how == "file":
        folder.write_bytes(b"x")
    elif how != "missing":
        folder.mkdir()
        index = folder / "model_index.json"
        content = {"no-index": None, "not-json": '{"_class_name": "FluxPipeline",', "not-object": "[1]",
                   "no-class": "{}", "unsupported": '{"_class_name": "StableDiffusionPipeline"}'}[how]
        if content is not None:
            index.write_text(content, encoding="utf-8")
    with pytest.raises(ModelFolderError, match=words) as err:
        family_of(folder)
    gui = detect_model_folder(folder)
    assert not gui.supported
    if how != "unsupported":  # the GUI words an unsupported model in its own short line
        assert gui.message == str(err.value)


def test_reader_returns_the_index(tmp_path):
    (tmp_path / "model_index.json").write_text('\ufeff{"_class_name": "Flux2KleinPipeline", "is_distilled": true}',
                                               encoding="utf-8")
    assert read_model_index(tmp_path)["is_distilled"] is True
    assert family_of(tmp_path) is catalog.family("flux2-klein")


@pytest.mark.parametrize("family", ["kontext", "qwen-image", "flux2-klein"])
def test_a_dora_in_the_diffusers_layout_is_flagged_for_comfyui(family):
    """ComfyUI reads a DoRA's magnitude only as the comfyui layout's ``dora_scale``: a DoRA
    written with diffusers names (the "auto" choice for FLUX.1/Kontext/Qwen) would be applied
    there without it, so the artist is told, and the comfyui layout is not flagged."""
    warning = catalog.comfyui_warning("diffusers", family, "dora")
    assert "DoRA" in warning and '"comfyui"' in warning
    assert catalog.comfyui_warning("comfyui", family, "dora") == ""
    assert bool(catalog.comfyui_warning("auto", family, "dora")) == (catalog.resolve_format("auto", family) == "diffusers")
    assert catalog.comfyui_warning("auto", family, "lora") == ""
