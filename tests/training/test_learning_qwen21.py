"""The learning measure on Qwen-Image 2.1, in both its modes: edit (one input image, three
sets with one caption) and text-to-image (three sets, a caption each), through
``QwenImage21Pipeline.__call__`` (``family.run_pipeline``, no guidance: the pipeline's default).

What the measure found on the tiny model, and what was fixed:

* the LoRA could not move the frozen random output head (ratio 0.85 after 300 steps, the
  three outputs alike): the family's targets now include ``proj_out``, as Qwen-Image's do;
* the tiny transformer's shared ``modulation`` gave every block a gate of tanh(≈0.02), so
  neither the input image nor the caption reached the target's tokens: the tiny recipe now
  opens the gates (``tiny.qwen21._with_open_gates``, pinned below).

With both, the ratios pass (after 600 steps: text-to-image 0.20, edit ≈ 0.15), but the
own-target rule does not hold robustly: in the edit mode one set's output is nearer another
set's target at the measure's seed 0 (seeds 1–3 are fine), and text-to-image's holds at seeds
0–1 only, with a 15 % margin. A pass that flips with the starting noise would flip with another
CPU's rounding too, so neither mode has a passing case here yet (README "How we know a LoRA
learns"). ``predict`` = the pipeline's first transformer call is pinned in
``test_learning_qwen.py``; the negated velocity must fail the measure (one LoRA per mode).
"""

from __future__ import annotations

import pytest
import torch

import learning_helpers as L

#: Mode → sets maker.
MODES = {"edit": L.edit_sets, "t2i": L.text_to_image_sets}
#: The passing run's steps and its changes to ``L.QUICK_RECIPE``: with the gates open the
#: quick recipe's 2e-2 diverged (loss rising after 200 steps); 7e-3, σ weighted a little
#: higher (logit-normal mean 1.5: the input-free start of the pipeline's 4 steps).
LEARN_STEPS = 600
LEARN_RECIPE = {"learning_rate": 7e-3, "timestep_mean": 1.5}


@pytest.fixture(scope="module")
def trained(tiny_qwen_image21_dir, tmp_path_factory):
    """(mode, fault) → (sets, model folder, LoRA file), each trained once."""
    runs = L.QuickRuns(tmp_path_factory)
    return lambda mode, fault="": runs.get(f"qwen21-{mode}", tiny_qwen_image21_dir, MODES[mode], LEARN_STEPS,
                                           fault, **LEARN_RECIPE)


def test_the_input_image_reaches_the_targets_output(tiny_qwen_image21_dir):
    """The tiny transformer's blocks pass the input image on to the target's tokens: another
    input moves the target's output by several percent (with the random init's closed gates,
    tanh(≈0.02), it moved 0.4 % and no LoRA learned an edit)."""
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
    assert float((outs[0] - outs[1]).norm() / outs[0].norm()) > 0.02


@pytest.mark.parametrize("mode", list(MODES))
def test_a_negated_velocity_fails_the_measure(trained, mode):
    """The loss falls with the velocity target negated too, but the pipeline's output walks
    away from the targets: the measure fails it."""
    result = L.quick_measure(*trained(mode, "negated_velocity"))
    assert not result.passed, result
