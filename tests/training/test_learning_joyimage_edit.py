"""JoyImage-Edit's LoRA learns: trained on the tiny model with ``L.QUICK_RECIPE``, it moves the
pipeline's own output (``JoyImageEditPipeline.__call__`` through ``run_pipeline``, guidance 4.0
against the blank prompt, the reference's VAE sample drawn as the pipeline draws it, as a
preview) toward each set's target, and a flipped velocity sign fails the measure
(``learning_helpers``: ratio ≤ 0.5, each set's output closest to its own target). One LoRA per
fault, trained once per module.

Measured under load: ratio 0.13 after 300 steps, own targets closest; negated velocity 1.84
after ``L.FAULT_STEPS`` (40; 2.34 after 100).
"""

from __future__ import annotations

import pytest

import learning_helpers as L

STEPS = 300


@pytest.fixture(scope="module")
def trained(tiny_joyimage_edit_dir, tmp_path_factory):
    """fault → (sets, model folder, LoRA file), each trained once."""
    runs = L.QuickRuns(tmp_path_factory)
    return lambda fault="": runs.get("joyimage-edit", tiny_joyimage_edit_dir, L.edit_sets, STEPS, fault)


def test_a_joyimage_edit_lora_learns_each_sets_edit(trained):
    result = L.quick_measure(*trained())
    assert result.passed, result


@pytest.mark.parametrize("fault", ["negated_velocity"])
def test_a_joyimage_edit_lora_with_a_negated_velocity_fails_the_measure(trained, fault):
    result = L.quick_measure(*trained(fault))
    L.assert_fault_caught(result)
