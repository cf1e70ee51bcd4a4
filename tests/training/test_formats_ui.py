"""The output-format choice in the training panel: shown, loaded from and saved to the
project's ``output.format``."""

from __future__ import annotations

import os

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

from lorastudio.config import OUTPUT_FORMATS, config_from_dict  # noqa: E402


def test_format_combo_round_trips_the_config(qtbot, tmp_path):
    from lorastudio.ui.settings_form import OUTPUT_FORMAT_LABELS, SettingsForm

    assert tuple(OUTPUT_FORMAT_LABELS) == OUTPUT_FORMATS
    (tmp_path / "data").mkdir()
    config = config_from_dict({"model": {"path": str(tmp_path / "m")}, "dataset": {"path": str(tmp_path / "data")},
                               "output": {"dir": str(tmp_path / "out"), "format": "comfyui"}}, base_dir=tmp_path)
    form = SettingsForm()
    qtbot.addWidget(form)
    form.load(config, None)
    assert form.output_format.currentData() == "comfyui"
    assert form.config().output.format == "comfyui"
    form.output_format.setCurrentIndex(form.output_format.findData("diffusers"))
    assert form.config().output.format == "diffusers"
    assert [form.output_format.itemData(i) for i in range(form.output_format.count())] == list(OUTPUT_FORMATS)


def _klein_config(tmp_path, fmt: str | None):
    import json

    model = tmp_path / "klein"
    model.mkdir(exist_ok=True)
    (model / "model_index.json").write_text(json.dumps({"_class_name": "Flux2KleinPipeline"}), encoding="utf-8")
    (tmp_path / "data").mkdir(exist_ok=True)
    output = {"dir": str(tmp_path / "out"), **({"format": fmt} if fmt else {})}
    return config_from_dict({"model": {"path": str(model)}, "dataset": {"path": str(tmp_path / "data")},
                             "output": output}, base_dir=tmp_path)


def test_automatic_is_the_recommended_default_and_a_half_loading_choice_is_flagged(qtbot, tmp_path):
    """A new project shows "Automatic (recommended)" and saves "auto"; choosing diffusers names
    for FLUX.2 [klein] is kept, with a warning that ComfyUI will not load the file fully."""
    from lorastudio.ui.settings_form import SettingsForm

    form = SettingsForm()
    qtbot.addWidget(form)
    form.load(_klein_config(tmp_path, None), None)
    assert form.output_format.currentData() == "auto"
    assert form.output_format.currentText() == "Automatic (recommended)"
    assert form.config().output.format == "auto"
    assert form.format_note.isHidden()
    assert "comfyui format, chosen automatically for FLUX.2 [klein]" in form.output_format.toolTip()

    form.output_format.setCurrentIndex(form.output_format.findData("diffusers"))
    assert form.config().output.format == "diffusers"
    assert not form.format_note.isHidden()
    assert "do not load fully in ComfyUI" in form.format_note.text()

    form.load(_klein_config(tmp_path, "diffusers"), None)  # a saved explicit choice stays as chosen
    assert form.output_format.currentData() == "diffusers" and not form.format_note.isHidden()
    form.output_format.setCurrentIndex(form.output_format.findData("comfyui"))
    assert form.format_note.isHidden()
