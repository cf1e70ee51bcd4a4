"""Held-out validation sets (issue 14) in the plan: checked against the scanned dataset
before any model loads."""

from __future__ import annotations

from pathlib import Path

import pytest
import tomli_w

from lorastudio.config import load_config
from lorastudio.training.plan import TrainingError, make_plan

from trainer_helpers import make_config

try:
    import tomllib
except ModuleNotFoundError:  # pragma: no cover
    import tomli as tomllib  # type: ignore[no-redef]


def validation_config(demo_project, out: Path, validation: list[str], **train_keys) -> Path:
    """The demo's fast config with ``dataset.validation`` set."""
    path = make_config(demo_project, out, **train_keys)
    data = tomllib.loads(path.read_text(encoding="utf-8"))
    data["dataset"]["validation"] = validation
    path.write_text(tomli_w.dumps(data), encoding="utf-8")
    return path


def _plan_error(demo_project, tmp_path, validation) -> str:
    with pytest.raises(TrainingError) as info:
        make_plan(load_config(validation_config(demo_project, tmp_path, validation)))
    assert info.value.kind == "config"
    return info.value.message


def test_unknown_held_out_sets_are_config_errors_naming_the_sets_that_exist(demo_project, tmp_path):
    names = [s.name for s in make_plan(load_config(make_config(demo_project, tmp_path))).sets]
    message = _plan_error(demo_project, tmp_path, [names[0], "no_such_set"])
    assert message.startswith("dataset.validation: no set named 'no_such_set'")
    assert names[0] in message and names[1] in message  # the names that exist


def test_holding_out_every_set_is_refused(demo_project, tmp_path):
    names = [s.name for s in make_plan(load_config(make_config(demo_project, tmp_path))).sets]
    assert _plan_error(demo_project, tmp_path, names).startswith("dataset.validation: holds out every set")
