"""Bulk caption edits with preview counts; model-folder detection; the loss chart; the
project file. (The import rules of the ui package: tests/test_layers.py.)"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from lorastudio import catalog
from lorastudio.config import load_config
from lorastudio.dataset import scan_dataset
from lorastudio.model_folder import detect_model_folder
from lorastudio.project import Project, find_project_for, safe_name
from lorastudio.ui.bulk_dialog import BulkCaptionDialog
from lorastudio.ui.loss_chart import LossChart, ema, nice_ticks

from .conftest import make_dataset


# -- bulk captions -------------------------------------------------------------------------


def _dialog(qtbot, tmp_path, **kw):
    root = make_dataset(tmp_path / "ds", **kw)
    dataset = scan_dataset(root)
    dialog = BulkCaptionDialog(dataset)
    qtbot.addWidget(dialog)
    return root, dataset, dialog


def test_trigger_word_preview_counts_and_apply(qtbot, tmp_path):
    root, _dataset, dialog = _dialog(qtbot, tmp_path, sets=5, captions=3)
    dialog.tabs.setCurrentIndex(0)
    dialog.trigger_word.setText("zkw")
    dialog.update_preview()
    assert len(dialog.changes) == 3  # only captioned sets
    assert dialog.count.text() == "3 captions will change."
    assert dialog.table.topLevelItemCount() == 3
    assert dialog.apply_button.isEnabled() and dialog.apply_button.text() == "Apply to 3"
    with qtbot.waitSignal(dialog.applied, timeout=2000) as blocker:
        dialog.apply()
    assert blocker.args[0].written_count == 3
    assert (root / "set000.txt").read_text(encoding="utf-8") == "zkw, caption 0\n"
    assert not (root / "set004.txt").exists()


def test_find_replace_preview_and_bad_regex(qtbot, tmp_path):
    _root, _dataset, dialog = _dialog(qtbot, tmp_path, sets=4)
    dialog.tabs.setCurrentIndex(1)
    dialog.find.setText("caption 1")
    dialog.replace.setText("first")
    dialog.update_preview()
    assert len(dialog.changes) == 1 and dialog.changes[0].new == "first"
    dialog.regex.setChecked(True)
    dialog.find.setText(r"caption (\d)")
    dialog.replace.setText(r"number \1")
    dialog.update_preview()
    assert len(dialog.changes) == 4
    assert dialog.count.text() == "4 captions will change."
    dialog.find.setText("caption (")
    dialog.update_preview()
    assert dialog.changes == [] and not dialog.apply_button.isEnabled()
    assert "regular expression" in dialog.count.text()


def test_fill_empty_preview(qtbot, tmp_path):
    root, _dataset, dialog = _dialog(qtbot, tmp_path, sets=6, captions=2)
    dialog.tabs.setCurrentIndex(2)
    dialog.fill.setText("turn it blue")
    dialog.update_preview()
    assert dialog.count.text() == "4 captions will change."
    dialog.apply()
    assert (root / "set005.txt").read_text(encoding="utf-8") == "turn it blue\n"
    dialog.fill.setText("")
    dialog.update_preview()
    assert not dialog.apply_button.isEnabled()


def test_no_change_says_so(qtbot, tmp_path):
    _root, _dataset, dialog = _dialog(qtbot, tmp_path, sets=2)
    dialog.tabs.setCurrentIndex(1)
    dialog.find.setText("not in any caption")
    dialog.update_preview()
    assert dialog.count.text() == "No caption changes."


# -- model folder ---------------------------------------------------------------------------


@pytest.mark.parametrize("class_name", sorted(catalog.pipeline_classes()))
def test_supported_model_folders(tmp_path, class_name):
    (tmp_path / "model_index.json").write_text(json.dumps({"_class_name": class_name}), encoding="utf-8")
    info = detect_model_folder(tmp_path)
    record = catalog.family_for_pipeline(class_name)
    assert info.supported and info.family == record.id
    assert info.display_name == record.display_name
    assert info.display_name in info.summary


def test_display_names():
    names = {name: catalog.family_for_pipeline(name).display_name for name in catalog.pipeline_classes()}
    assert names["FluxKontextPipeline"] == "FLUX.1 Kontext"
    assert names["QwenImageEditPlusPipeline"] == "Qwen-Image-Edit-Plus"
    assert names["Flux2Pipeline"] == "FLUX.2"
    assert names["Flux2KleinPipeline"] == "FLUX.2 [klein]"


def test_unsupported_model_folders(tmp_path):
    assert not detect_model_folder("").supported
    assert "not found" in detect_model_folder(tmp_path / "nope").message
    assert "model_index.json" in detect_model_folder(tmp_path).message
    (tmp_path / "model_index.json").write_text("{broken", encoding="utf-8")
    assert "cannot be read" in detect_model_folder(tmp_path).message
    (tmp_path / "model_index.json").write_text(json.dumps({"_class_name": "StableDiffusionPipeline"}),
                                               encoding="utf-8")
    info = detect_model_folder(tmp_path)
    assert not info.supported and "Unsupported model: StableDiffusionPipeline" in info.message
    assert "FLUX.1 Kontext" in info.message


# -- loss chart -----------------------------------------------------------------------------


def test_ema_and_ticks():
    assert ema([1.0, 1.0, 1.0], 0.5) == [1.0, 1.0, 1.0]
    assert ema([0.0, 1.0], 0.5) == [0.0, 0.5]
    ticks = nice_ticks(0.0, 1.0, 4)
    assert ticks[0] == 0.0 and ticks[-1] == 1.0 and len(ticks) <= 6


def test_chart_ignores_missing_losses_and_paints(qtbot):
    chart = LossChart()
    qtbot.addWidget(chart)
    chart.resize(400, 200)
    chart.add(1, None, 100)
    chart.add(2, math.nan, 100)
    for s in range(3, 60):
        chart.add(s, 1.0 / s)
    assert len(chart.losses) == 57 and chart.total == 100
    assert chart.smoothed()[-1] < chart.smoothed()[0]
    image = chart.grab()
    assert not image.isNull()


# -- project file ---------------------------------------------------------------------------


def test_project_for_a_new_folder_and_saving(tmp_path):
    root = make_dataset(tmp_path / "My Set!", sets=2)
    model = tmp_path / "model"
    model.mkdir()
    (model / "model_index.json").write_text(json.dumps({"_class_name": "FluxKontextPipeline"}), encoding="utf-8")
    project = Project.for_folder(root, model_path=str(model))
    assert project.path is None
    assert project.config.output.name == safe_name("My Set!") == "My_Set"
    assert project.config.train.steps == 1000 and project.config.train.learning_rate == 1e-4
    saved = project.save()
    assert saved == (tmp_path / "My Set!.lorastudio.toml").resolve()
    config = load_config(saved)
    assert config.dataset.path == root.resolve()
    assert config.model.path == model.resolve()
    assert "My Set!" not in saved.read_text(encoding="utf-8").split("[dataset]")[0]  # paths are relative
    assert find_project_for(root) == saved
    again = Project.for_folder(root)
    assert again.path == saved


def test_project_without_a_model_cannot_be_saved(tmp_path):
    from lorastudio.config import ConfigError

    root = make_dataset(tmp_path / "ds", sets=1)
    with pytest.raises(ConfigError, match="model.path"):
        Project.for_folder(root).save()


def test_read_only_place_saves_the_project_and_output_in_user_data(tmp_path, monkeypatch):
    import os

    from lorastudio import project as project_module

    root = make_dataset(tmp_path / "ro" / "ds", sets=1)
    model = tmp_path / "model"
    model.mkdir()
    (model / "model_index.json").write_text(json.dumps({"_class_name": "FluxKontextPipeline"}), encoding="utf-8")
    parent = str(root.parent)
    real_access = os.access
    monkeypatch.setattr(project_module.os, "access",
                        lambda p, mode: False if str(p) == parent else real_access(p, mode))
    project = Project.for_folder(root, model_path=str(model))
    data = Path(os.environ["LORASTUDIO_DATA_DIR"])
    assert project.config.output.dir == data / "output"
    saved = project.save()
    assert saved.parent == (data / "projects").resolve()
    assert load_config(saved).dataset.path.resolve() == root.resolve()
