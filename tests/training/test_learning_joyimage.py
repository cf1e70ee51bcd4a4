"""JoyImage-Edit-Plus's LoRA learns: trained on the tiny model with ``L.QUICK_RECIPE``, it moves
the pipeline's own output (``JoyImageEditPlusPipeline.__call__`` through ``run_pipeline``,
guidance 4.0 against the blank prompt, as a preview) toward each set's target, and a flipped
velocity sign fails the measure (``learning_helpers``: ratio ≤ 0.5, each set's output closest
to its own target). One LoRA per fault, trained once per module.

Measured under load: ratio 0.12 after 300 steps, own targets closest (with LoRA layers on the
blocks only, before ``proj_out`` joined the family's targets: 0.39–0.43, own targets not closest).
"""

from __future__ import annotations

import pytest

import learning_helpers as L

STEPS = 300
SETS = 3
SIZE = L.QUICK_RECIPE["resolution"]


@pytest.fixture(scope="module")
def trained(tiny_joyimage_edit_plus_dir, tmp_path_factory):
    runs: dict[str, tuple] = {}

    def get(fault: str = ""):
        if fault not in runs:
            sets = L.edit_sets(SETS, SIZE)
            root = tmp_path_factory.mktemp(f"learn-joyimage{'-' + fault if fault else ''}")
            dataset = L.write_dataset(root / "dataset", sets)
            with L.one_thread():
                lora = L.train_tiny(tiny_joyimage_edit_plus_dir, dataset, root, L.FAULT_STEPS if fault else STEPS,
                                    wrap=L.FAULTS.get(fault),
                                    batch_size=len(sets), **L.QUICK_RECIPE)
            runs[fault] = (sets, lora)
        return runs[fault]

    return get


def _measure(model_dir, sets, lora):
    with L.one_thread():
        return L.pipeline_errors(model_dir, lora, sets, size=(SIZE, SIZE), steps=L.QUICK_PIPELINE_STEPS)


def test_a_joyimage_edit_lora_learns_each_sets_edit(trained, tiny_joyimage_edit_plus_dir):
    result = _measure(tiny_joyimage_edit_plus_dir, *trained())
    assert result.passed, result


@pytest.mark.parametrize("fault", ["negated_velocity"])
def test_a_joyimage_lora_with_a_negated_velocity_fails_the_measure(trained, tiny_joyimage_edit_plus_dir, fault):
    result = _measure(tiny_joyimage_edit_plus_dir, *trained(fault))
    assert not result.passed, result
