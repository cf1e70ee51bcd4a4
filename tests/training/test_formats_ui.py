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
