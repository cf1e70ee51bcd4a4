"""The training recipe's pieces without a model (issue 15): timestep samplers against their
analytic distributions and the schedulers' own shift, caption dropout's draw, repeats in the
batch order, the EMA, and the config errors. (Training runs with the options:
test_recipe_training.py.)"""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from lorastudio.config import ConfigError, config_from_dict
from lorastudio.training.batches import BatchOrder, dropped_captions, noise_and_sigmas
from lorastudio.training.timesteps import TimestepSampler, image_seq_len

N = 20_000
#: The Kolmogorov–Smirnov critical value at α = 0.001 for N samples: a correct sampler stays
#: under it (the draws are seeded, so the statistic is the same number on every run).
KS_BOUND = 1.95 / math.sqrt(N)


def ks_statistic(samples: torch.Tensor, cdf) -> float:
    x, _ = torch.sort(samples.double())
    f = cdf(x)
    n = len(x)
    i = torch.arange(1, n + 1, dtype=torch.float64)
    return max((i / n - f).max().item(), (f - (i - 1) / n).max().item())


def logit(x: torch.Tensor) -> torch.Tensor:
    return torch.log(x) - torch.log1p(-x)


def draw(sampler: TimestepSampler, seq_len: int = 1024) -> torch.Tensor:
    return sampler.sigmas(torch.Generator().manual_seed(1234), N, seq_len)


def _scheduler_folder(tmp_path: Path, **config) -> Path:
    from diffusers import FlowMatchEulerDiscreteScheduler

    FlowMatchEulerDiscreteScheduler(num_train_timesteps=1000, use_dynamic_shifting=True,
                                    **config).save_pretrained(str(tmp_path / "scheduler"))
    return tmp_path


#: The real models' scheduler configs (FLUX.1-dev/Kontext, Qwen-Image), as the tiny models copy them.
FLUX1_SCHEDULER = dict(shift=3.0, base_shift=0.5, max_shift=1.15, base_image_seq_len=256, max_image_seq_len=4096)
QWEN_SCHEDULER = dict(shift=1.0, base_shift=0.5, max_shift=0.9, base_image_seq_len=256, max_image_seq_len=8192,
                      shift_terminal=0.02, time_shift_type="exponential")


@pytest.mark.parametrize("sampler, cdf", [
    (TimestepSampler("logit_normal"), lambda x: torch.special.ndtr(logit(x))),
    (TimestepSampler("logit_normal", mean=-0.5, scale=1.4), lambda x: torch.special.ndtr((logit(x) + 0.5) / 1.4)),
    (TimestepSampler("uniform"), lambda x: x),
    (TimestepSampler("sigmoid", scale=2.0), lambda x: torch.special.ndtr(logit(x) / 2.0)),
    # a fixed shift X moves logit(σ) by ln X: σ' = Xσ / (1 + (X - 1)σ)
    (TimestepSampler("shift", scale=1.0, shift=3.0), lambda x: torch.special.ndtr(logit(x) - math.log(3.0))),
], ids=["logit_normal", "logit_normal_mean_scale", "uniform", "sigmoid", "fixed_shift"])
def test_each_sampler_follows_its_distribution(sampler, cdf):
    samples = draw(sampler)
    assert ((samples > 0) & (samples < 1)).all()
    assert ks_statistic(samples, cdf) < KS_BOUND
    # and a wrong distribution is told apart at this sample size
    assert ks_statistic(samples, lambda x: torch.special.ndtr(logit(x) / 3.0 - 1.0)) > 10 * KS_BOUND


@pytest.mark.parametrize("family, config, expected_mu", [
    ("kontext", FLUX1_SCHEDULER, lambda n: 0.5 + (1.15 - 0.5) * (n - 256) / (4096 - 256)),
    ("qwen-image", QWEN_SCHEDULER, lambda n: 0.5 + (0.9 - 0.5) * (n - 256) / (8192 - 256)),
])
def test_resolution_shift_is_the_schedulers_own(tmp_path, family, config, expected_mu):
    from diffusers import FlowMatchEulerDiscreteScheduler
    from diffusers.pipelines.flux.pipeline_flux import calculate_shift

    model = _scheduler_folder(tmp_path, **config)
    sampler = TimestepSampler("shift", scale=1.0, family=family, model_dir=model)
    scheduler = FlowMatchEulerDiscreteScheduler.from_pretrained(str(model), subfolder="scheduler")
    base = TimestepSampler("sigmoid", scale=1.0)
    for bucket in [(512, 512), (1024, 768)]:
        n = image_seq_len(bucket)
        assert n == (bucket[0] // 16) * (bucket[1] // 16)  # the pipelines' packed latent length
        mu = sampler.mu(n)
        assert mu == pytest.approx(expected_mu(n), abs=1e-12)
        assert mu == calculate_shift(n, scheduler.config.base_image_seq_len, scheduler.config.max_image_seq_len,
                                     scheduler.config.base_shift, scheduler.config.max_shift)
        shifted, plain = draw(sampler, n), draw(base, n)
        assert torch.allclose(shifted, scheduler.time_shift(mu, 1.0, plain), atol=0, rtol=0)
        assert torch.allclose(shifted, math.exp(mu) / (math.exp(mu) + (1 / plain - 1)), atol=1e-6)
        assert ks_statistic(shifted, lambda x: torch.special.ndtr(logit(x) - mu)) < KS_BOUND
    # a larger image is shifted further towards noise, as the pipelines do at inference
    assert sampler.mu(image_seq_len((1024, 1024))) > sampler.mu(image_seq_len((512, 512)))


def test_flux2_shift_uses_the_pipelines_empirical_mu_at_its_default_steps(tmp_path):
    from diffusers.pipelines.flux2.pipeline_flux2 import compute_empirical_mu

    model = _scheduler_folder(tmp_path, shift=3.0)
    sampler = TimestepSampler("shift", family="flux2", model_dir=model)
    for bucket in [(512, 512), (1024, 768)]:
        n = image_seq_len(bucket)
        assert sampler.mu(n) == compute_empirical_mu(n, 50)


def test_a_scheduler_without_resolution_shift_keeps_its_own_fixed_shift(tmp_path):
    """Z-Image-Turbo's scheduler shifts by 3 at every size (``use_dynamic_shifting`` false): the
    pipeline's ``set_timesteps`` ignores μ then, so "shift" follows its fixed shift too."""
    from diffusers import FlowMatchEulerDiscreteScheduler

    FlowMatchEulerDiscreteScheduler(num_train_timesteps=1000, shift=3.0, use_dynamic_shifting=False
                                    ).save_pretrained(str(tmp_path / "scheduler"))
    sampler = TimestepSampler("shift", family="zimage", model_dir=tmp_path)
    fixed = TimestepSampler("shift", shift=3.0)
    for n in (image_seq_len((512, 512)), image_seq_len((1024, 1024))):
        assert torch.equal(draw(sampler, n), draw(fixed, n))
    assert sampler.describe((1024, 1024)) == "shift (scale 1, the scheduler's fixed shift 3)"


def test_default_sampler_is_todays_formula():
    """Before issue 15 the step's σ was sigmoid(randn) drawn right after the noise."""
    for step in (1, 2, 77):
        g = torch.Generator().manual_seed(_mix_today(7, step, 0))
        noise = torch.randn((2, 16, 4, 4), generator=g)
        sigmas = torch.sigmoid(torch.randn(2, generator=g))
        n, s = noise_and_sigmas((2, 16, 4, 4), 7, step, 0)
        assert torch.equal(n, noise) and torch.equal(s, sigmas)
        n2, s2 = noise_and_sigmas((2, 16, 4, 4), 7, step, 0, TimestepSampler("logit_normal", 0.0, 1.0), 4096)
        assert torch.equal(n2, noise) and torch.equal(s2, sigmas)
    # another sampler changes σ only, never the noise
    n3, s3 = noise_and_sigmas((2, 16, 4, 4), 7, 77, 0, TimestepSampler("uniform"))
    assert torch.equal(n3, noise) and not torch.equal(s3, sigmas)


def _mix_today(*values: int) -> int:
    from lorastudio.training.batches import _mix

    return _mix(*values, 0x5EED)


def test_caption_dropout_draw_is_a_pure_function_of_seed_and_step():
    drawn = [dropped_captions(1, 0.3, seed=5, step=s, rank=0)[0] for s in range(1, 4001)]
    assert abs(sum(drawn) / len(drawn) - 0.3) < 0.03
    assert drawn == [dropped_captions(1, 0.3, seed=5, step=s, rank=0)[0] for s in range(1, 4001)]
    assert drawn != [dropped_captions(1, 0.3, seed=6, step=s, rank=0)[0] for s in range(1, 4001)]
    assert dropped_captions(3, 0.0, 5, 1, 0) == [False] * 3
    assert all(dropped_captions(4, 1.0, 5, 9, 0))
    # off: nothing is drawn from any generator (the noise and data order streams are their own anyway)
    state = torch.get_rng_state()
    dropped_captions(2, 0.0, 5, 1, 0)
    assert torch.equal(state, torch.get_rng_state())


class _Set:
    def __init__(self, name, bucket=(32, 32)):
        self.name, self.bucket, self.input_sizes = name, bucket, [(32, 32)]


def test_repeats_weight_a_set_in_every_epoch_and_keep_the_order_pure():
    sets = [_Set("a"), _Set("b"), _Set("c"), _Set("d", (48, 16))]
    order = BatchOrder(sets, 1, seed=3, repeats={"a": 3})
    assert order.per_epoch == 3 + 1 + 1 + 1
    for epoch in range(3):
        seen = [order.batch(epoch * order.per_epoch + s)[0] for s in range(1, order.per_epoch + 1)]
        assert sorted(seen) == [0, 0, 0, 1, 2, 3]
    again = BatchOrder(sets, 1, seed=3, repeats={"a": 3})
    steps = list(range(1, 40))
    assert [again.batch(s) for s in reversed(steps)][::-1] == [order.batch(s) for s in steps]
    # no repeats (or all 1) is exactly the order without the key
    plain = BatchOrder(sets, 2, seed=3)
    assert [BatchOrder(sets, 2, seed=3, repeats={"b": 1}).batch(s) for s in steps] == [plain.batch(s) for s in steps]


def test_ema_is_diffusers_average_kept_on_the_cpu_and_swapped_in_for_previews():
    from lorastudio.training.ema import LoraEMA

    torch.manual_seed(0)
    p = torch.nn.Parameter(torch.randn(3, 2))
    ema = LoraEMA([p], decay=0.9)
    expected = p.detach().clone()
    for n in range(1, 8):
        with torch.no_grad():
            p.add_(torch.randn(3, 2))
        ema.step()
        d = 0.0 if n == 1 else min(0.9, n / (n + 9))  # EMAModel's warmup, capped at the decay
        expected = d * expected + (1 - d) * p.detach()
    shadow = ema.model.shadow_params[0]
    assert shadow.device.type == "cpu" and torch.allclose(shadow, expected, atol=1e-6)
    raw = p.detach().clone()
    with ema.applied():
        assert torch.equal(p.detach(), shadow)
    assert torch.equal(p.detach(), raw)
    # checkpoint round trip
    other = LoraEMA([p], decay=0.9)
    other.load(ema.tensors(), ema.info())
    assert torch.equal(other.model.shadow_params[0], shadow) and other.model.optimization_step == 7


def _config(**sections):
    data = {"model": {"path": "m"}, "dataset": {"path": "d"}}
    for name, values in sections.items():
        data[name] = {**data.get(name, {}), **values}
    return config_from_dict(data, Path("/tmp"))


@pytest.mark.parametrize("section, values, key", [
    ("train", {"timesteps": "cosmic"}, "train.timesteps"),
    ("train", {"timestep_scale": 0}, "train.timestep_scale"),
    ("train", {"timestep_shift": -1.0}, "train.timestep_shift"),
    ("train", {"timestep_shift": 3.0}, "train.timestep_shift"),  # without timesteps = "shift"
    ("train", {"lr_schedule": "exponential"}, "train.lr_schedule"),
    ("train", {"ema_decay": 1.0}, "train.ema_decay"),
    ("train", {"ema_decay": -0.1}, "train.ema_decay"),
    ("train", {"log_with": "wandb"}, "train.log_with"),
    ("dataset", {"caption_dropout": 1.5}, "dataset.caption_dropout"),
    ("dataset", {"repeats": {"a": 0}}, "dataset.repeats"),
    ("dataset", {"repeats": {"a": "3"}}, "dataset.repeats"),
    ("dataset", {"repeats": 3}, "dataset.repeats"),
])
def test_bad_recipe_values_are_config_errors_naming_the_key(section, values, key):
    with pytest.raises(ConfigError) as info:
        _config(**{section: values})
    assert str(info.value).startswith(key)


def test_good_recipe_values_load():
    c = _config(train={"timesteps": "shift", "timestep_shift": 2.5, "lr_schedule": "cosine", "ema_decay": 0.99},
                dataset={"caption_dropout": 0.1, "repeats": {"set_a": 3}})
    assert c.train.timestep_shift == 2.5 and c.dataset.repeats == {"set_a": 3}
    assert c.output.raw_lora_path.name == "my_lora.raw.safetensors"
