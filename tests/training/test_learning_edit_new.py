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
#: Measured (under load, the measure's seeds 0–3): Z-Image Omni, on its tiny model pretrained at
#: build time (``tiny/zimage.py``; the shipped weights), ratio 0.14–0.22 after 100 steps at lr
#: 1e-2, each output nearer its own target than any other by ≥ 120 % (0.13–0.23 after 150; at 2e-2:
#: 0.43–0.69 after 100, not own-closest at three seeds). Negated velocity (``L.FAULT_STEPS``):
#: 3.08–3.40 after 40 steps. The random model needed 400 steps at 2e-2 (0.14), and its fault LoRA
#: stayed near the base output (0.94 after 40 steps, 1.15 after 300).
RUNS = {
    "zimage-omni": ("tiny_zimage_omni_dir", 100, {"learning_rate": 1e-2}),
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
    L.assert_fault_caught(result)
