"""The trainer's LoRA is exactly (``torch.equal``) what the plain flow-matching loop gives.

The reference below is the loop in ``trainer.py``'s docstring written out straight, with
nothing but the math: the same data order and noise (pure functions of seed and step), the
same LoRA init, AdamW, clipping and schedule, and none of the trainer's machinery (events,
stop checks, memoized batches, the accelerator, the fault hook). Speed work on the loop must
keep this test green: a faster loop that changed a single bit of the LoRA would be a
different training run. Both sides run in one process on one CPU, so equality is exact on
any machine (no tolerance tied to one CPU's rounding).
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from lorastudio import catalog
from lorastudio.config import load_config
from lorastudio.training.batches import BatchOrder, noise_and_sigmas
from lorastudio.training.cache import TrainingCache
from lorastudio.training.events import NullSink
from lorastudio.training.families.base import EncodedPrompt
from lorastudio.training.lora import add_lora, export_state_dict, peft_state_dict, read_lora_file
from lorastudio.training.plan import make_plan
from lorastudio.training.trainer import train

from trainer_helpers import make_config


def reference_loop(config) -> tuple[dict[str, torch.Tensor], list[float]]:
    """Train as the trainer's docstring says, on the CPU in float32; (peft LoRA state, losses)."""
    from diffusers.optimization import get_scheduler

    t = config.train
    cpu = torch.device("cpu")
    plan = make_plan(config)
    family = plan.family_cls(config.model.path, cpu, torch.float32)
    family.use_input_size(t.input_size)
    cached = TrainingCache(config.output.run_dir / "cache", family, t.resolution, config.dataset.trigger,
                           config.dataset.default_caption).build(plan.sets)
    transformer = family.load_transformer()
    torch.manual_seed(t.seed)
    params = add_lora(transformer, t.rank, t.alpha or float(t.rank), family.lora_target_modules)
    transformer.train()
    optimizer = torch.optim.AdamW(params, lr=t.learning_rate, betas=(0.9, 0.999), weight_decay=1e-2, eps=1e-8)
    scheduler = get_scheduler("constant_with_warmup", optimizer, num_warmup_steps=t.warmup_steps,
                              num_training_steps=t.steps)
    order = BatchOrder(cached, t.batch_size, t.seed)
    losses = []
    for step in range(1, t.steps + 1):
        items = [cached[i] for i in order.batch(step)]
        x0 = torch.stack([s.target for s in items])
        inputs = [torch.stack([s.inputs[j] for s in items]) for j in range(len(items[0].inputs))]
        prompt = family.collate_prompts([EncodedPrompt(s.prompt) for s in items])
        noise, sigmas = noise_and_sigmas(tuple(x0.shape), t.seed, step, 0)
        s4 = sigmas.view(-1, 1, 1, 1)
        pred = family.predict(transformer, (1 - s4) * x0 + s4 * noise, sigmas, inputs, prompt)
        loss = F.mse_loss(pred, noise - x0)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, t.max_grad_norm)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        losses.append(loss.item())
    return peft_state_dict(transformer), losses


@pytest.mark.parametrize("batch_size", [1, 2])
def test_trainer_lora_is_bit_identical_to_the_plain_loop(demo_project, tmp_path, batch_size):
    cfg = make_config(demo_project, tmp_path, steps=5, batch_size=batch_size, warmup_steps=2, rank=4,
                      learning_rate=5e-3, sample_sets=0, checkpoint_every=0)
    config = load_config(cfg)
    result = train(config, NullSink(), keep_model=True)
    expected, losses = reference_loop(config)  # reuses the run's cache: same latents, no encoder

    assert result.losses == losses
    got = peft_state_dict(result.transformer)
    assert got.keys() == expected.keys()
    assert all(torch.equal(got[k], expected[k]) for k in expected)
    # and the file on disk holds exactly those weights, in the exported layout
    written, _ = read_lora_file(result.lora)
    exported = export_state_dict(expected, config.train.rank, config.train.alpha or float(config.train.rank),
                                 result.family.name, dtype=None, fmt=catalog.resolve_format(config.output.format, result.family.name))
    assert written.keys() == exported.keys()
    assert all(torch.equal(written[k], exported[k]) for k in exported)
