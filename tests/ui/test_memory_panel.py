"""The training panel's GPU-memory section: "Fit to my GPU" presets pick savers from the model
folder's real size, the estimate updates with the settings, and the choice lands in the config."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import pytest

from lorastudio.config import config_from_dict
from lorastudio.ui.settings_form import SettingsForm


def _header_only_safetensors(path: Path, shapes: dict[str, list[int]]) -> None:
    """A safetensors header naming ``shapes`` (bf16), followed by no data: the estimate reads
    headers only, so a 12B model's folder costs a few kilobytes here."""
    header, offset = {}, 0
    for name, shape in shapes.items():
        n = 2
        for d in shape:
            n *= d
        header[name] = {"dtype": "BF16", "shape": shape, "data_offsets": [offset, offset + n]}
        offset += n
    raw = json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(raw)) + raw)


@pytest.fixture(scope="module")
def flux_folder(tmp_path_factory) -> Path:
    """A FLUX.1 Kontext folder with the real transformer's config and tensor shapes."""
    import torch
    from diffusers import FluxTransformer2DModel

    with torch.device("meta"):
        model = FluxTransformer2DModel(guidance_embeds=True)
    folder = tmp_path_factory.mktemp("flux") / "FLUX.1-Kontext-dev"
    (folder / "transformer").mkdir(parents=True)
    (folder / "model_index.json").write_text(json.dumps({"_class_name": "FluxKontextPipeline"}))
    (folder / "transformer" / "config.json").write_text(json.dumps(dict(model.config)))
    _header_only_safetensors(folder / "transformer" / "diffusion_pytorch_model.safetensors",
                             {n: list(p.shape) for n, p in model.state_dict().items()})
    return folder


def _form(qtbot, tmp_path, model: Path) -> SettingsForm:
    (tmp_path / "data").mkdir(exist_ok=True)
    config = config_from_dict({"model": {"path": str(model)}, "dataset": {"path": str(tmp_path / "data")},
                               "output": {"dir": str(tmp_path / "out")}}, base_dir=tmp_path)
    form = SettingsForm()
    qtbot.addWidget(form)
    form.load(config, None)
    return form


def _choose(form: SettingsForm, preset_id: str) -> None:
    form.preset.setCurrentIndex(form.preset.findData(preset_id))


def test_presets_fit_the_model_and_land_in_the_config(qtbot, tmp_path, flux_folder):
    form = _form(qtbot, tmp_path, flux_folder)
    assert form.preset.currentData() == ""  # Custom until chosen
    assert "GB of GPU memory" in form.estimate_label.text()
    # Shown as rich text whatever the numbers say (a "<" in "under 1 MB" once made Qt show
    # the markup literally): the artist reads line breaks, never "<br>".
    from PySide6.QtCore import Qt
    from PySide6.QtGui import QTextDocument

    assert form.estimate_label.textFormat() == Qt.TextFormat.RichText
    shown = QTextDocument()
    shown.setHtml(form.estimate_label.text())
    assert "<br>" not in shown.toPlainText() and "steps ≈" in shown.toPlainText()

    _choose(form, "24gb-1024")
    t = form.config().train
    assert t.resolution == 1024 and t.quantization == "int8" and t.gradient_checkpointing
    assert t.optimizer == "adamw8bit" and not t.cpu_offload
    assert "Fits a 24 GB card" in form.estimate_label.text()
    gb_24 = float(form.estimate_label.text().split("≈ ")[1].split(" GB")[0])

    _choose(form, "12gb-512")
    t = form.config().train
    assert t.resolution == 512 and t.quantization == "int4"
    gb_12 = float(form.estimate_label.text().split("≈ ")[1].split(" GB")[0])
    assert gb_12 < 12 < gb_24 < 24
    assert form.preset.currentData() == "12gb-512"  # applying a preset keeps it chosen

    form.rank.setEditText("128")  # a bigger LoRA: the estimate grows with it
    assert float(form.estimate_label.text().split("≈ ")[1].split(" GB")[0]) > gb_12


def test_the_estimate_counts_the_input_size_rule(qtbot, tmp_path, flux_folder):
    """Kontext's "auto" input size is the pipeline's ~1 MP: the estimate counts it and says so;
    "target" in Advanced counts the input at the training size."""
    form = _form(qtbot, tmp_path, flux_folder)
    form.resolution.setEditText("512")
    text = form.estimate_label.text()
    assert "at ~1 MP" in text
    field = form.advanced.fields["input_size"]
    field.setCurrentIndex(field.findData("target"))
    assert "~1 MP" not in form.estimate_label.text()

    def gb(text: str) -> float:
        return float(text.split("≈ ")[1].split(" GB")[0])

    assert gb(form.estimate_label.text()) < gb(text)  # 2,560 tokens a sample instead of 5,632


def test_a_hand_picked_saver_makes_it_custom(qtbot, tmp_path, flux_folder):
    form = _form(qtbot, tmp_path, flux_folder)
    _choose(form, "16gb-512")
    with qtbot.waitSignal(form.changed, timeout=2000):
        form.offload.setChecked(True)
    assert form.preset.currentData() == ""
    t = form.config().train
    assert t.cpu_offload and t.quantization == "none" and t.gradient_checkpointing
    assert not form.checkpointing.isEnabled()  # offload needs it
    form.offload.setChecked(False)
    form.adam8.setChecked(False)
    assert form.config().train.optimizer == "adamw"


def test_loading_a_project_shows_its_savers(qtbot, tmp_path, flux_folder):
    (tmp_path / "data").mkdir()
    config = config_from_dict({"model": {"path": str(flux_folder)}, "dataset": {"path": str(tmp_path / "data")},
                               "train": {"quantization": "int4", "optimizer": "adamw8bit",
                                         "gradient_checkpointing": True}}, base_dir=tmp_path)
    form = SettingsForm()
    qtbot.addWidget(form)
    form.load(config, None)
    assert form.quantization.currentData() == "int4" and form.adam8.isChecked() and form.checkpointing.isChecked()
    assert form.config().train.quantization == "int4"


def test_no_estimate_without_readable_weights(qtbot, tmp_path):
    model = tmp_path / "model"
    model.mkdir()
    (model / "model_index.json").write_text(json.dumps({"_class_name": "FluxKontextPipeline"}))
    form = _form(qtbot, tmp_path, model)
    assert "no estimate" in form.estimate_label.text() and "config.json" in form.estimate_label.text()
    _choose(form, "12gb-512")  # without a model the preset's own savers apply
    assert form.config().train.quantization == "int4"
