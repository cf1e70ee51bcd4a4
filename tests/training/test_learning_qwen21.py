"""The learning measure on Qwen-Image 2.1, in both its modes: edit (one input image, three
sets with one caption) and text-to-image (three sets, a caption each), through
``QwenImage21Pipeline.__call__`` (``family.run_pipeline``, no guidance: the pipeline's default).

Both LoRAs learn: trained on the tiny model (200 steps, lr 1e-2, σ weighted a little higher
than ``L.QUICK_RECIPE``), each moves the pipeline's own output toward its sets' targets, each
set's output nearest its own; a negated velocity fails the measure (one LoRA per mode and
fault, trained once). Measured under load, at the measure's seeds 0-3 (the test uses 0): edit
ratio 0.10-0.21, each output nearer its own target than any other by 221 % at least;
text-to-image 0.05-0.09, by 340 % at least. Both pass at every seed from 150 steps through
500, on the tiny model pretrained 60 or 120 steps instead of 80, and with the run's seed 1 or 2
instead of 0 (edit 0.29 and 84 % at worst; README "How we know a LoRA learns").

What the measure found on the tiny model, and what was fixed:

* the LoRA could not move the frozen random output head (ratio 0.85 after 300 steps, the
  three outputs alike): the family's targets now include ``proj_out``, as Qwen-Image's do;
* the random tiny transformer's shared ``modulation`` gave every block a gate of tanh(≈0.02),
  so neither the input image nor the caption reached the target's tokens; and what a LoRA
  cannot change (that modulation, the embedders, ``norm_out``) was untrained, where a real
  2.1's is trained. Scaling the gates open by hand let the ratios pass after 600 steps, but
  which set's output lay nearest which target flipped with the measure's seed. The tiny model
  is now pretrained when it is built (``tiny.qwen21._pretrain_to_denoise``: every parameter,
  80 full-batch steps on the calibration pictures in both modes, a generic caption, never
  these sets), which opens the gates (pinned below).

Nothing in the trainer was wrong: ``predict`` = the pipeline's first transformer call is pinned
in ``test_learning_qwen.py`` for both modes, the text-to-image prompt is the pipeline's own
``encode_prompt`` (its text-only template) and the three captions tokenize to distinct words.
"""

from __future__ import annotations

import pytest
import torch

import learning_helpers as L

#: Mode → sets maker.
MODES = {"edit": L.edit_sets, "t2i": L.text_to_image_sets}
#: The passing runs' steps and their changes to ``L.QUICK_RECIPE``: lr 1e-2, σ weighted a little
#: higher (logit-normal mean 1.5: the start of the pipeline's 4 steps). Measured (minimum own-
#: target margin over seeds 0-3, edit / text-to-image): 150 steps 175 % / 127 %, 200 steps
#: 221 % / 340 %, 300 steps 499 % / 208 %; 100 steps fails text-to-image at seed 0. The quick
#: recipe itself (2e-2, mean 1.0) passes too, with less margin (text-to-image 42 % at 200 steps).
LEARN_STEPS = 200
LEARN_RECIPE = {"learning_rate": 1e-2, "timestep_mean": 1.5}


@pytest.fixture(scope="module")
def trained(tiny_qwen_image21_dir, tmp_path_factory):
    """(mode, fault) → (sets, model folder, LoRA file), each trained once."""
    runs = L.QuickRuns(tmp_path_factory)
    return lambda mode, fault="": runs.get(f"qwen21-{mode}", tiny_qwen_image21_dir, MODES[mode], LEARN_STEPS,
                                           fault, **LEARN_RECIPE)


def test_the_input_image_reaches_the_targets_output(tiny_qwen_image21_dir):
    """The tiny transformer, pretrained at build time, passes the input image on to the target's
    tokens: another input moves the target's output by ~19 % (measured; with the random init's
    closed gates, tanh(≈0.02), it moved 0.4 % and no LoRA learned an edit)."""
    family = L._family(tiny_qwen_image21_dir, "target")
    family.load_encoders()
    sets = L.edit_sets(2, 32)
    prompt = family.collate_prompts([family.encode_prompt(sets[0].caption, sets[0].inputs)])
    target = family.encode_image(sets[0].target)[None]
    noisy = torch.randn(target.shape, generator=torch.Generator().manual_seed(0))  # σ = 1: pure noise
    transformer = family.load_transformer()
    with torch.no_grad():
        outs = [family.predict(transformer, noisy, torch.ones(1), [family.encode_image(s.inputs[0])[None]], prompt)
                for s in sets]
    assert float((outs[0] - outs[1]).norm() / outs[0].norm()) > 0.05


@pytest.mark.parametrize("mode", list(MODES))
def test_a_qwen21_lora_learns_each_sets_target(trained, mode):
    """Measured under load: edit ratio 0.21, text-to-image 0.09 (seed 0), each set's output
    closest to its own target."""
    result = L.quick_measure(*trained(mode))
    assert result.passed, result


@pytest.mark.parametrize("mode", list(MODES))
def test_a_negated_velocity_fails_the_measure(trained, mode):
    """The loss falls with the velocity target negated too, but the pipeline's output walks
    away from the targets: the measure fails it (measured under load after ``L.FAULT_STEPS``,
    40: ratio 6.4 edit, 3.0 text-to-image; after 100: 9.0, 3.5)."""
    result = L.quick_measure(*trained(mode, "negated_velocity"))
    L.assert_fault_caught(result)
