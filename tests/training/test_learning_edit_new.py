"""The newer edit families' LoRAs learn: Z-Image Omni's, trained on its tiny model, moves the
family pipeline's own output to each set's target, and a trainer with the velocity sign
flipped fails the same measure. (LongCat-Image-Edit's checks are in ``test_learning_longcat.py``.)

The measure and the quick recipe are ``learning_helpers``' (one definition for every test;
see ``test_learning.py`` for Kontext): three edit sets with ONE caption, so only the input
image tells them apart; ratio = error with the LoRA ÷ error without ≤ 0.5, and each set's
output closest to its own target, through ``ZImageOmniPipeline``'s ``__call__`` (the call a
preview makes, its 32-pixel references enlarged to the pipeline's 64-pixel minimum as in
training).

One LoRA per (family, fault), trained once per module (``trained``).
"""

from __future__ import annotations

import pytest

import learning_helpers as L

#: Family → (tiny model fixture, training steps, ``[train]`` keys over ``L.QUICK_RECIPE``).
#: Measured (under load): Z-Image Omni ratio 0.14 after 400 steps, own targets closest (0.19
#: after 300, one set's output nearer a neighbour's target). Negated velocity (``L.FAULT_STEPS``):
#: 0.94 after 40 steps, 0.99 after 100, 1.15 after 300 — the fault LoRA leaves the output near
#: the base model's, and the measure fails it by the ratio and the own-target rule.
RUNS = {
    "zimage-omni": ("tiny_zimage_omni_dir", 400, {}),
}
@pytest.fixture(scope="module")
def trained(request, tmp_path_factory):
    """(family, fault) → (sets, model folder, LoRA file), each trained once."""
    runs = L.QuickRuns(tmp_path_factory)

    def get(family: str, fault: str = ""):
        fixture, steps, recipe = RUNS[family]
        return runs.get(family, request.getfixturevalue(fixture), L.edit_sets, steps, fault, **recipe)

    return get


@pytest.mark.parametrize("family", list(RUNS))
def test_an_edit_lora_learns_each_sets_edit(trained, family):
    result = L.quick_measure(*trained(family))
    assert result.passed, result


@pytest.mark.parametrize("family", list(RUNS))
def test_a_negated_velocity_fails_the_measure(trained, family):
    """The velocity target negated: the loss falls as well, but the pipeline's output walks
    away from the targets, and the measure fails it."""
    result = L.quick_measure(*trained(family, "negated_velocity"))
    assert not result.passed, result
