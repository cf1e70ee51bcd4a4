"""The config contract of DESIGN.md: required keys, defaults from the guide, strict errors."""

from pathlib import Path

import pytest

from lorastudio.config import (DEFAULT_LEARNING_RATE, DEFAULT_RANK, DEFAULT_STEPS, ConfigError, load_config,
                               save_config)

MINIMAL = """
[model]
path = "model"
[dataset]
path = "data"
"""


def write(tmp_path: Path, text: str) -> Path:
    (tmp_path / "model").mkdir(exist_ok=True)
    (tmp_path / "data").mkdir(exist_ok=True)
    path = tmp_path / "project.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_defaults_follow_the_guide_and_paths_are_relative_to_the_file(tmp_path):
    config = load_config(write(tmp_path, MINIMAL))
    assert config.train.steps == DEFAULT_STEPS == 1000
    assert config.train.learning_rate == DEFAULT_LEARNING_RATE == 1e-4
    assert config.train.rank == DEFAULT_RANK == 16
    assert config.model.path == tmp_path / "model"
    assert config.dataset.path == tmp_path / "data"
    assert config.output.dir == tmp_path / "output"
    assert config.output.lora_path == tmp_path / "output" / "my_lora.safetensors"


def test_full_design_example_parses(tmp_path):
    text = MINIMAL.replace('path = "data"', 'path = "data"\ntrigger = "zkw"\ndefault_caption = "an edit"') + """
[train]
steps = 1000
learning_rate = 1e-4
rank = 16
seed = 42
resolution = 512
sample_every = 250
checkpoint_every = 250
[output]
dir = "out"
name = "my_lora"
"""
    config = load_config(write(tmp_path, text))
    assert config.dataset.trigger == "zkw"
    assert config.output.lora_path == tmp_path / "out" / "my_lora.safetensors"


@pytest.mark.parametrize("extra, key", [
    ("[train]\nlearning_rte = 1e-4\n", "train.learning_rte"),
    ("[train]\nsteps = \"many\"\n", "train.steps"),
    ("[train]\nsteps = 0\n", "train.steps"),
    ("[train]\nlearning_rate = 2.0\n", "train.learning_rate"),
    ("[train]\nresolution = 500\n", "train.resolution"),
    ("[train]\ninput_size = \"1mp\"\n", "train.input_size"),
    ("[output]\nname = \"../../etc/evil\"\n", "output.name"),
    ("[model]\nfamily = \"sdxl\"\n", "model.family"),
    ("[extra]\nx = 1\n", "[extra]"),
    ("[train]\nvalidate_every = -1\n", "train.validate_every"),
    ("[train]\nearly_stop = -2\n", "train.early_stop"),
    ("[train]\nearly_stop = 1.5\n", "train.early_stop"),
])
def test_bad_values_name_the_key(tmp_path, extra, key):
    text = MINIMAL
    if extra.startswith("[model]"):
        text = text.replace('[model]\npath = "model"', '[model]\npath = "model"\n' + extra.split("\n", 1)[1])
    else:
        text += extra
    with pytest.raises(ConfigError, match=key.replace("[", r"\[").replace(".", r"\.")):
        load_config(write(tmp_path, text))


def test_missing_dataset_folder_is_named(tmp_path):
    path = write(tmp_path, MINIMAL.replace('"data"', '"nowhere"'))
    with pytest.raises(ConfigError, match="dataset.path"):
        load_config(path)


@pytest.mark.parametrize("chosen", [None, "auto", "diffusers", "comfyui"])
def test_output_format_round_trips_and_defaults_to_auto(tmp_path, chosen):
    """The default is "auto" and is saved as "auto" (resolved per family only when a run
    writes the file); an explicit choice in a saved project stays exactly as chosen."""
    text = MINIMAL + (f'\n[output]\nformat = "{chosen}"\n' if chosen else "")
    config = load_config(write(tmp_path, text))
    assert config.output.format == (chosen or "auto")
    out = tmp_path / "copy.toml"
    save_config(config, out)
    assert f'format = "{chosen or "auto"}"' in out.read_text(encoding="utf-8")
    assert load_config(out).output.format == (chosen or "auto")


def test_save_and_load_round_trip(tmp_path):
    config = load_config(write(tmp_path, MINIMAL))
    config.train.steps = 123
    config.dataset.trigger = "ünïcode"
    out = tmp_path / "copy.toml"
    save_config(config, out)
    assert 'path = "model"' in out.read_text(encoding="utf-8")  # stays portable
    again = load_config(out)
    assert again.train.steps == 123
    assert again.dataset.trigger == "ünïcode"
    assert again.model.path == config.model.path


def test_held_out_validation_keys_default_and_round_trip(tmp_path):
    """dataset.validation, train.validate_every (unset = with the previews) and train.early_stop."""
    config = load_config(write(tmp_path, MINIMAL))
    assert config.dataset.validation == [] and config.train.validate_every is None and config.train.early_stop == 0
    out = tmp_path / "copy.toml"
    save_config(config, out)
    assert "validate_every" not in out.read_text(encoding="utf-8")  # unset stays unset
    assert load_config(out).train.validate_every is None
    config.dataset.validation = ["set_b", "set_a"]
    config.train.validate_every = 0
    config.train.early_stop = 3
    save_config(config, out)
    again = load_config(out)
    assert again.dataset.validation == ["set_b", "set_a"]
    assert again.train.validate_every == 0 and again.train.early_stop == 3


@pytest.mark.parametrize("dataset, message", [
    ('validation = "set_a"', "dataset.validation: expected a list of set names"),
    ("validation = [1]", "dataset.validation: expected a list of set names"),
    ('validation = ["a"]\nrepeats = {a = 2}', "dataset.repeats: a held out for validation"),
])
def test_bad_validation_sets_name_the_key(tmp_path, dataset, message):
    text = MINIMAL.replace('path = "data"', 'path = "data"\n' + dataset)
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, text))
    assert str(info.value).startswith(message)
