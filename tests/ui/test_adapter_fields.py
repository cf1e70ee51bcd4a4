"""The Train page's collapsed "Advanced: adapter type" block: hidden at first, its choice
lands in ``train.adapter``/``train.lokr_factor``, and a project that uses DoRA/LoKr opens it."""

from __future__ import annotations

from lorastudio.config import config_from_dict
from lorastudio.ui.settings_form import SettingsForm


def _config(tmp_path, **train):
    (tmp_path / "data").mkdir(exist_ok=True)
    (tmp_path / "model").mkdir(exist_ok=True)
    return config_from_dict({"model": {"path": str(tmp_path / "model")}, "dataset": {"path": str(tmp_path / "data")},
                             "train": train, "output": {"dir": str(tmp_path / "out")}}, base_dir=tmp_path)


def test_adapter_choice_lands_in_the_config(qtbot, tmp_path):
    form = SettingsForm()
    qtbot.addWidget(form)
    form.load(_config(tmp_path), None)
    fields = form.adapter_fields
    assert fields.body.isHidden() and fields.value() == "lora" and not fields.lokr_factor.isEnabled()
    fields.toggle.setChecked(True)
    assert not fields.body.isHidden()
    with qtbot.waitSignal(form.changed, timeout=2000):
        fields.adapter.setCurrentIndex(fields.adapter.findData("lokr"))
    fields.lokr_factor.setValue(8)
    config = form.config()
    assert config.train.adapter == "lokr" and config.train.lokr_factor == 8
    fields.adapter.setCurrentIndex(fields.adapter.findData("dora"))  # the factor goes back to automatic
    config = form.config()
    assert config.train.adapter == "dora" and config.train.lokr_factor == -1

    other = SettingsForm()
    qtbot.addWidget(other)
    other.load(_config(tmp_path, adapter="lokr", lokr_factor=4), None)
    assert not other.adapter_fields.body.isHidden()
    assert other.config().train.adapter == "lokr" and other.config().train.lokr_factor == 4
