"""The Train tab's collapsed "Advanced" section and the grid's repeats menu (issue 15): the
recipe keys go from the fields into the config and back, defaults stay today's recipe."""

from __future__ import annotations

from pathlib import Path

from lorastudio.config import config_from_dict
from lorastudio.ui.advanced_section import EXPLAIN
from lorastudio.ui.form_mapping import RECIPE_TRAIN_KEYS
from lorastudio.ui.settings_form import SettingsForm


def _form(qtbot, tmp_path: Path, **dataset) -> SettingsForm:
    (tmp_path / "data").mkdir(parents=True, exist_ok=True)
    (tmp_path / "model").mkdir(exist_ok=True)
    config = config_from_dict({"model": {"path": str(tmp_path / "model")},
                               "dataset": {"path": str(tmp_path / "data"), **dataset},
                               "output": {"dir": str(tmp_path / "out")}}, base_dir=tmp_path)
    form = SettingsForm()
    qtbot.addWidget(form)
    form.load(config, None)
    return form


def test_advanced_is_collapsed_explains_each_field_and_keeps_the_defaults(qtbot, tmp_path):
    form = _form(qtbot, tmp_path)
    form.show()
    assert form.advanced.body.isHidden()
    assert set(form.advanced.fields) == set(RECIPE_TRAIN_KEYS) | {"caption_dropout"} == set(EXPLAIN)
    config = form.config()
    assert (config.train.timesteps, config.train.lr_schedule, config.train.ema_decay, config.train.log_with) == \
        ("logit_normal", "constant", 0.0, "")
    assert config.dataset.caption_dropout == 0.0 and config.train.timestep_shift == 0.0
    form.advanced.toggle.click()
    assert form.advanced.body.isVisible()


def test_advanced_fields_land_in_the_config_and_come_back(qtbot, tmp_path):
    form = _form(qtbot, tmp_path)
    fields = form.advanced.fields
    with qtbot.waitSignal(form.changed):
        fields["timesteps"].setCurrentIndex(fields["timesteps"].findData("shift"))
    assert fields["timestep_shift"].isEnabled() and not fields["timestep_mean"].isEnabled()
    fields["timestep_shift"].setValue(3.0)
    fields["lr_schedule"].setCurrentIndex(fields["lr_schedule"].findData("cosine"))
    fields["warmup_steps"].setValue(20)
    fields["ema_decay"].setValue(0.99)
    fields["caption_dropout"].setValue(0.1)
    assert fields["input_size"].currentData() == "auto"
    fields["input_size"].setCurrentIndex(fields["input_size"].findData("target"))
    config = form.config()
    t = config.train
    assert t.input_size == "target"
    assert (t.timesteps, t.timestep_shift, t.lr_schedule, t.warmup_steps, t.ema_decay) == \
        ("shift", 3.0, "cosine", 20, 0.99)
    assert config.dataset.caption_dropout == 0.1
    # another sampler drops the fixed shift rather than failing on it
    fields["timesteps"].setCurrentIndex(fields["timesteps"].findData("sigmoid"))
    assert form.config().train.timestep_shift == 0.0
    # loading a config shows its values
    other = _form(qtbot, tmp_path / "b")
    other.load(config, None)
    assert other.advanced.values()["ema_decay"] == 0.99 and other.config().train.lr_schedule == "cosine"
    assert other.advanced.values()["input_size"] == "target"
    # the note says which families "auto" trains at ~1 MP (the catalog's measured defaults)
    assert "FLUX.1 Kontext" in EXPLAIN["input_size"] and "Qwen-Image-Edit-Plus" in EXPLAIN["input_size"]


def test_repeats_from_the_grid_menu_are_kept_in_the_config(qtbot, tmp_path):
    form = _form(qtbot, tmp_path, repeats={"a": 2})
    assert form.repeats() == {"a": 2}
    with qtbot.waitSignal(form.changed):
        form.set_repeat("b", 3)
    form.set_repeat("a", 1)  # once = no entry
    assert form.config().dataset.repeats == {"b": 3}


def test_the_grid_context_menu_asks_and_sends_the_repeats(qtbot, monkeypatch):
    from PySide6.QtWidgets import QInputDialog

    from lorastudio.ui.dataset_page import DatasetPage
    from lorastudio.ui.thumbnails import ThumbnailLoader

    page = DatasetPage(ThumbnailLoader())
    qtbot.addWidget(page)
    page.repeats_of = lambda name: {"set_a": 2}.get(name, 1)
    asked = []
    monkeypatch.setattr(QInputDialog, "getInt", lambda *a: (asked.append(a[3:5]), (4, True))[1])
    with qtbot.waitSignal(page.repeats_requested) as signal:
        page.ask_repeats("set_a")
    assert signal.args == ["set_a", 4] and asked == [(2, 1)]


def test_the_workspace_wires_the_grid_menu_to_the_settings(qtbot, tmp_path):
    from lorastudio.ui.thumbnails import ThumbnailLoader
    from lorastudio.ui.workspace import Workspace

    workspace = Workspace(ThumbnailLoader())
    qtbot.addWidget(workspace)
    form = _form(qtbot, tmp_path)
    workspace.training_page.form.load(form.config(), None)
    workspace.dataset_page.repeats_requested.emit("set_a", 3)
    assert workspace.training_page.form.config().dataset.repeats == {"set_a": 3}
    assert workspace.dataset_page.repeats_of("set_a") == 3 and workspace.dataset_page.repeats_of("b") == 1


def test_validation_fields_land_in_the_config_and_come_back(qtbot, tmp_path):
    from lorastudio.config import load_config, save_config

    form = _form(qtbot, tmp_path)
    fields = form.advanced.fields
    assert fields["validate_every"].text() == "with the previews" and fields["early_stop"].text() == "off"
    assert (form.config().train.validate_every, form.config().train.early_stop) == (None, 0)  # the defaults
    fields["validate_every"].setValue(0)  # only at checkpoints
    fields["early_stop"].setValue(3)
    assert (form.config().train.validate_every, form.config().train.early_stop) == (0, 3)
    fields["validate_every"].setValue(50)
    save_config(form.config(), tmp_path / "p.toml")
    saved = load_config(tmp_path / "p.toml", check_paths=False)
    assert (saved.train.validate_every, saved.train.early_stop) == (50, 3)
    other = _form(qtbot, tmp_path / "b")
    other.load(saved, None)
    assert other.advanced.values()["validate_every"] == 50 and other.config().train.early_stop == 3
    fields["validate_every"].setValue(-1)
    save_config(form.config(), tmp_path / "q.toml")
    other.load(load_config(tmp_path / "q.toml", check_paths=False), None)
    assert other.config().train.validate_every is None and fields["validate_every"].text() == "with the previews"
