"""FLUX.2 and FLUX.2 [klein] against the learning measure.

The edit LoRAs of FLUX.2 [dev] and FLUX.2 [klein] learn: trained on the tiny model with
``L.QUICK_RECIPE``, each moves the pipeline's own output (``Flux2Pipeline.__call__`` /
``Flux2KleinPipeline.__call__`` through ``run_pipeline``, as a preview) toward each set's
target, and a flipped velocity sign fails the measure (``learning_helpers``: ratio ≤ 0.5, each
set's output closest to its own target). One LoRA per family and fault, trained once.

Both tiny transformers are briefly pretrained when they are built (``tiny/flux2.py``: the
identity edit of the calibration pictures, never these sets), as a real FLUX.2 comes with a
trained output side: training every parameter of the random tiny [klein] takes its loss from
~2.2 to 0.26 in 200 steps, the blocks alone (all a LoRA on FLUX2_TARGETS can change) only to
1.80, so a LoRA on the random model stopped at ratio 0.81 ([dev]: 0.94). Measured under load,
the ratio at the measure's seed 0 (seeds 0–3; each output's least distance to another set's
target ÷ its distance to its own, at least): [klein] 0.19 after 300 steps (0.19–0.33; 1.6×),
negated velocity 1.38 after ``L.FAULT_STEPS`` (40; 2.05 after 100); [dev] 0.14 after 200 steps
(0.10–0.24; 2.9×), negated velocity 1.93 (2.45 after 100).

[dev] is guidance-distilled: training feeds its guidance embedding 1.0, previews (and so the
measure) 4.0. Pretrained at 1.0 alone, the tiny [dev]'s embedding of 4.0 stayed random, so the
measure ran a model the LoRA was never trained on: 0.34–0.42 after 200 steps at seeds 0–3
(with the 512-token pretraining, where the guidance-range one gave 0.18–0.32). A real [dev]
predicts alike across that range, so the tiny one is pretrained over it (drawn per picture,
uniform between 1.0 and 4.0), which ``test_the_tiny_flux2_dev_predicts_alike…`` pins.

For both, this file also pins the half of the question that is the trainer's: the family's
``predict``, from the encodings training caches (references at the size a preview hands the
pipeline, the prompt as ``encode_prompt`` gives it), makes exactly the transformer call the
pipeline's own ``__call__`` makes at its first denoising step — target tokens first and packed
as ``_pack_latents`` packs them, latents normalized by the VAE's batch-norm statistics, each
reference with its own time coordinate (``_prepare_image_ids``), σ as the timestep (the
pipeline passes ``t / 1000``), guidance 1.0 for FLUX.2 [dev] — down to the output, for edit
sets and text-to-image sets.
"""

from __future__ import annotations

import pytest
import torch

import learning_helpers as L

#: Family (and mode) → (model fixture, sets maker). FLUX.2 [dev]'s text-to-image call differs
#: from klein's only where its edit case already checks (the guidance embedding), so it is left
#: out to save the suite ~10 s.
CASES = {
    "flux2-edit": ("tiny_flux2_dir", L.edit_sets),
    "flux2-klein-edit": ("tiny_flux2_klein_dir", L.edit_sets),
    "flux2-klein-t2i": ("tiny_flux2_klein_dir", L.text_to_image_sets),
}
SIZE = L.QUICK_RECIPE["resolution"]
#: Family → (tiny-model fixture, training steps of its learning case).
LEARNING = {"flux2-klein": ("tiny_flux2_klein_dir", 300), "flux2": ("tiny_flux2_dir", 200)}


@pytest.fixture(scope="module")
def trained(request, tmp_path_factory):
    """(family, fault) → (sets, model folder, LoRA file), each trained once."""
    runs = L.QuickRuns(tmp_path_factory)

    def get(family: str, fault: str = ""):
        fixture, steps = LEARNING[family]
        return runs.get(family, request.getfixturevalue(fixture), L.edit_sets, steps, fault)

    return get


@pytest.mark.parametrize("family", list(LEARNING))
def test_a_flux2_edit_lora_learns_each_sets_edit(trained, family):
    result = L.quick_measure(*trained(family))
    assert result.passed, result


@pytest.mark.parametrize("family", list(LEARNING))
def test_a_flux2_lora_with_a_negated_velocity_fails_the_measure(trained, family):
    result = L.quick_measure(*trained(family, "negated_velocity"))
    L.assert_fault_caught(result)


def _encoded_set(family, make_sets=L.edit_sets):
    """One set from ``make_sets`` as training caches it: the prompt, the reference latents (at the size a
    preview hands the pipeline, 64 px at least) and the target latent, one thread (with the
    pipeline's thread count the tiny VAE's latents, normalized by its small batch-norm
    variance, differ by ~1e-2 between one thread and two)."""
    from lorastudio.training.families._common import resize_to

    s = make_sets(1, SIZE)[0]
    family.load_encoders()
    inputs = [resize_to(i, family.input_size(i.size, (SIZE, SIZE), SIZE)) for i in s.inputs]
    with L.one_thread():
        prompt = family.collate_prompts([family.encode_prompt(s.caption, inputs)])
        input_latents = [family.encode_image(i)[None] for i in inputs]
        target = family.encode_image(resize_to(s.target, (SIZE, SIZE)))
    return s, prompt, input_latents, target


def test_the_tiny_flux2_dev_predicts_alike_at_the_training_and_the_preview_guidance(tiny_flux2_dir):
    """A real FLUX.2 [dev] is guidance-distilled: at the previews' guidance (4.0) it predicts
    a variation of what it predicts at training's (1.0), so a LoRA trained at 1.0 works at
    4.0. The tiny one is pretrained over that range (``tiny/flux2._pretrain_guidance``): the
    two predictions differ by 0.08 % at σ 0.3. Pretrained at 1.0 alone, its embedding of 4.0
    stayed random: they differed by 15 %, and its LoRA reached ratio 0.34–0.42 in the
    measure's call at 4.0 (measured with the 512-token pretraining; 0.10 in the same call at
    1.0 where 4.0 gave 0.32)."""
    family = L._family(tiny_flux2_dir, "target")
    _, prompt, input_latents, target = _encoded_set(family)
    sigma = torch.tensor([0.3])
    noise = torch.randn((1, *target.shape), generator=torch.Generator().manual_seed(3))
    noisy = (1 - sigma) * target + sigma * noise
    transformer = family.load_transformer()
    predictions = []
    for guidance in (family.train_guidance, family.sample_guidance):
        family.train_guidance = guidance  # this instance only: what predict feeds the embedding
        with L.one_thread(), torch.no_grad():
            predictions.append(family.predict(transformer, noisy, sigma, input_latents, prompt))
    at_training, at_preview = predictions
    change = float((at_preview - at_training).pow(2).mean() / at_training.pow(2).mean())
    assert change < 0.01, change


@pytest.mark.parametrize("case", list(CASES))
def test_predict_makes_the_pipelines_first_transformer_call(request, case):
    """The pipeline's ``__call__`` (as a preview makes it, through ``run_pipeline``) handed a
    known starting latent: its first transformer call's target output equals the family's
    ``predict`` at σ = that call's timestep, from the encodings training caches. Guidance 1.0
    (one transformer call per step; FLUX.2 [dev]'s guidance embedding gets what training feeds)."""
    fixture, make_sets = CASES[case]
    family = L._family(request.getfixturevalue(fixture), "target")
    s, prompt, input_latents, target = _encoded_set(family, make_sets)
    noisy = torch.randn((1, *target.shape), generator=torch.Generator().manual_seed(3))
    transformer = family.load_transformer()
    kwargs, out = L.first_transformer_call(transformer, lambda: family.run_pipeline(
        transformer, s.inputs, s.caption, (SIZE, SIZE), 2, 0, output_type="latent", latents=noisy, guidance_scale=1.0))
    timestep, guidance = kwargs["timestep"], kwargs.get("guidance")
    with L.one_thread():
        with torch.no_grad():
            ours = family.predict(transformer, noisy, timestep, input_latents, prompt)
    assert float(timestep[0]) == 1.0  # σ, not t: the pipeline passes t / 1000
    if guidance is not None:  # FLUX.2 [dev]: the embedding gets what training feeds
        assert float(guidance[0]) == family.train_guidance
    n = noisy.shape[2] * noisy.shape[3]
    assert out.shape[1] == n + sum(lat.shape[2] * lat.shape[3] for lat in input_latents)
    torch.testing.assert_close(L._pack(family, ours[0]), out[:, :n])
