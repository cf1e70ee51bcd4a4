"""The Train tab's values and a Config, both ways, and the learning-rate advice — without Qt."""

from __future__ import annotations

import dataclasses
import json

import pytest

from lorastudio.config import ConfigError
from lorastudio.project import Project
from lorastudio.ui.form_mapping import config_from_values, values_from_config
from lorastudio.ui.learning_rate import format_lr, lr_advice, parse_lr


@pytest.fixture
def project(tmp_path, monkeypatch) -> Project:
    monkeypatch.setenv("LORASTUDIO_DATA_DIR", str(tmp_path / "user-data"))
    (tmp_path / "ds").mkdir()
    model = tmp_path / "model"
    model.mkdir()
    (model / "model_index.json").write_text(json.dumps({"_class_name": "FluxKontextPipeline"}), encoding="utf-8")
    return Project.for_folder(tmp_path / "ds", model_path=str(model))


def test_values_round_trip_to_the_same_config(project):
    values = values_from_config(project.config)
    assert values.learning_rate == "1e-4" and not values.adam8
    again = config_from_values(values, project.config)
    assert again.to_toml_dict() == project.config.to_toml_dict()


def test_edited_values_land_in_their_config_fields(project):
    values = dataclasses.replace(values_from_config(project.config), learning_rate="3e-4", rank="32",
                                 trigger="  zkw ", adam8=True, cpu_offload=True, output_name=" mine ")
    config = config_from_values(values, project.config)
    assert config.train.learning_rate == pytest.approx(3e-4) and config.train.rank == 32
    assert config.train.optimizer == "adamw8bit" and config.train.cpu_offload
    assert config.dataset.trigger == "zkw" and config.output.name == "mine"


@pytest.mark.parametrize("field, text, message", [("learning_rate", "fast", "train.learning_rate"),
                                                  ("rank", "sixteen", "train.rank"),
                                                  ("resolution", "1k", "train.resolution"),
                                                  ("output_dir", "", "output.dir")])
def test_a_bad_value_names_its_config_field(project, field, text, message):
    values = dataclasses.replace(values_from_config(project.config), **{field: text})
    with pytest.raises(ConfigError, match=message):
        config_from_values(values, project.config)


def test_learning_rate_text_and_advice():
    assert parse_lr(" 2,5e-4 ") == pytest.approx(2.5e-4) and parse_lr("-1") is None and parse_lr("x") is None
    assert format_lr(1e-4) == "1e-4" and format_lr(0.02) == "0.02"
    assert lr_advice("2e-4") == ""
    assert "Too soft" in lr_advice("1e-6") and "Too hard" in lr_advice("1e-2")
    assert lr_advice("abc") == "Enter a number such as 1e-4."


def test_the_demo_model_has_its_own_learning_rate_range(tmp_path):
    """The demo's tiny model (marked by ``lorastudio demo`` in its folder) learns at 2e-2, the
    demo project's own choice: the advice says nothing about it there, and still warns about
    it for any other model; the message names the range that applies."""
    from lorastudio.config import DEMO_LEARNING_RATES, TYPICAL_LEARNING_RATE
    from lorastudio.model_folder import DEMO_MODEL_FILE, detect_model_folder
    from lorastudio.training.demo import DEMO_LEARNING_RATE as DEMO_PROJECT_RATE

    model = tmp_path / "model"
    model.mkdir()
    (model / "model_index.json").write_text(json.dumps({"_class_name": "FluxKontextPipeline"}), encoding="utf-8")
    real = detect_model_folder(model)
    assert not real.demo and real.typical_learning_rate == TYPICAL_LEARNING_RATE
    demo_rate = format_lr(DEMO_PROJECT_RATE)
    assert "Too hard" in lr_advice(demo_rate, real.typical_learning_rate)

    (model / DEMO_MODEL_FILE).write_text("the tiny model of `lorastudio demo`\n", encoding="utf-8")
    demo = detect_model_folder(model)
    assert demo.supported and demo.demo and demo.typical_learning_rate == DEMO_LEARNING_RATES
    assert lr_advice(demo_rate, demo.typical_learning_rate) == ""
    low = lr_advice("1e-4", demo.typical_learning_rate)
    assert "Too soft" in low and f"{format_lr(DEMO_LEARNING_RATES[0])} … {format_lr(DEMO_LEARNING_RATES[1])}" in low
    assert "demo" in low
