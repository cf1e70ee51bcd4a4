"""Every family's LoRA learns: trained on a tiny model, it moves the pipeline's output to the
sets' targets — through the family's diffusers pipeline end to end, not the trainer's predict.

The measure is ``learning_helpers``' (one definition for every test): ratio = error with
the LoRA ÷ error without ≤ 0.5, and each set's output closest to its own target. Edit
families train three sets with one caption, so only the input image tells them apart: a
LoRA that ignored the input, or painted the average target, fails. A run through a
test-side fault (velocity target negated) still gets a falling loss, and the measure must
fail it: that is what the measure is for.

The families here are those whose tiny model reaches the measure within the suite's budget
(300–400 steps); the others' figures are in README "How we know a LoRA learns". Text-to-image
sets would each need a caption of their own (with one caption a text-to-image LoRA can only
learn one picture): ``learning_helpers.text_to_image_sets``.

One LoRA per (family, fault), trained once per module (``trained``).
"""

from __future__ import annotations

import pytest

import learning_helpers as L

#: Edit family → training steps its tiny model needs. Every step trains on all three sets
#: (batch 3): a random tiny model learns slowly from one noisy sample a step (measured:
#: Kontext ratio 0.60 after 150 single-set steps, 0.38 after 400, 0.34 after 300 of batch 3).
#: Qwen-Image-Edit-Plus is not here yet: 0.49 after 300 steps of batch 3 and 0.51 after 400,
#: too close to the mark for a test that must pass on any machine.
EDIT_STEPS = {"kontext": 300}
FIXTURE_OF = {"kontext": "tiny_kontext_dir"}
#: 64 px (4×4 target tokens), rank 16, learning rate 1e-2 (3e-2 was measured worse: 0.76).
BATCH, LEARNING_RATE, RANK, SIZE, PIPELINE_STEPS = 3, 1e-2, 16, 64, 4


@pytest.fixture(scope="module")
def trained(request, tmp_path_factory):
    """(family, fault) → (sets, model folder, LoRA file), each trained once."""
    runs: dict[tuple, tuple] = {}

    def get(family: str, fault: str = ""):
        key = (family, fault)
        if key not in runs:
            model_dir = request.getfixturevalue(FIXTURE_OF[family])
            sets = L.edit_sets(3, SIZE)
            root = tmp_path_factory.mktemp(f"learn-{family}{'-' + fault if fault else ''}")
            dataset = L.write_dataset(root / "dataset", sets)
            lora = L.train_tiny(model_dir, dataset, root, EDIT_STEPS[family], LEARNING_RATE,
                                wrap=L.FAULTS.get(fault), resolution=SIZE, rank=RANK, batch_size=BATCH)
            runs[key] = (sets, model_dir, lora)
        return runs[key]

    return get


def _measure(sets, model_dir, lora):
    return L.pipeline_errors(model_dir, lora, sets, size=(SIZE, SIZE), steps=PIPELINE_STEPS)


@pytest.mark.parametrize("family", list(EDIT_STEPS))
def test_an_edit_lora_learns_each_sets_edit(trained, family):
    result = _measure(*trained(family))
    assert result.passed, result


@pytest.mark.parametrize("fault", ["negated_velocity"])
def test_a_faulty_trainer_fails_the_measure(trained, fault):
    """A velocity target of the wrong sign trains (the loss falls) but the pipeline's output
    walks away from the targets: the measure fails it (ratio 2.6 measured). A timestep 1000×
    too big (``timestep_times_1000``) is not caught on the tiny Kontext model — its LoRA still
    passes (0.36): the tiny transformer hardly depends on the timestep embedding."""
    result = _measure(*trained("kontext", fault))
    assert not result.passed, result
