"""Memory savers on the tiny models, on the CPU: each option trains, and the LoRA it writes is
the normal float file in the same key format, loadable by the family pipeline.

bitsandbytes (int8/int4 layers, AdamW8bit) runs on the CPU since 0.46, so the quantized and
8-bit-optimizer paths here are the ones a GPU takes. Offload and checkpointing change *how*
the step is computed, not what: on the CPU their LoRA equals the plain run's.
"""

from __future__ import annotations

import gc
import math
import weakref

import pytest
import torch

from lorastudio.config import ConfigError, config_from_dict, load_config
from lorastudio.training import checkpoint as ckpt
from lorastudio.training import memory
from lorastudio.training.events import NullSink
from lorastudio.training.lora import read_lora_file
from lorastudio.training.optimizer import make_optimizer, optimizer_name
from lorastudio.training.stop import StopSignal
from lorastudio.training.trainer import train

from trainer_helpers import make_config, predict_first_set

TRAIN = dict(steps=3, learning_rate=2e-2, rank=4, sample_sets=0, resolution=32, seed=3)


def _train(demo_project, tmp_path, model=None, **options):
    cfg = make_config(demo_project, tmp_path, model=model, **{**TRAIN, **options})
    sink = NullSink()
    result = train(load_config(cfg), sink, keep_model=True)
    return result, sink.history


@pytest.fixture(scope="module")
def baseline(demo_project, tmp_path_factory):
    result, _ = _train(demo_project, tmp_path_factory.mktemp("baseline"))
    return result


def _loads_in_pipeline(result, model_dir) -> float:
    """Load the LoRA with the family pipeline's load_lora_weights; return how much it changes
    the (unquantized) model's prediction. Every LoRA key must land on a module."""
    pipe = result.family.pipeline_class().from_pretrained(str(model_dir), local_files_only=True)
    base = predict_first_set(result, pipe.transformer)
    pipe.load_lora_weights(str(result.lora))
    tensors, _ = read_lora_file(result.lora)
    lora_layers = [n for n, m in pipe.transformer.named_modules() if len(getattr(m, "lora_A", None) or ()) == 1]
    assert len(lora_layers) == len([k for k in tensors if k.endswith(".lora_A.weight")])
    return (predict_first_set(result, pipe.transformer) - base).abs().max().item()


@pytest.mark.parametrize("options", [
    {"gradient_checkpointing": True},
    {"cpu_offload": True},
], ids=["checkpointing", "offload"])
def test_exact_options_give_the_plain_runs_lora(demo_project, tmp_path, baseline, options):
    """Same math, other memory layout: the same LoRA."""
    result, events = _train(demo_project, tmp_path, **options)
    got, meta = read_lora_file(result.lora)
    want, _ = read_lora_file(baseline.lora)
    assert sorted(got) == sorted(want)
    for key in want:
        assert got[key].dtype == want[key].dtype
        torch.testing.assert_close(got[key], want[key], rtol=1e-5, atol=1e-6)
    assert not [e for e in events if e["event"] == "status" and "not available" in e.get("message", "")]


#: fp32 unit roundoff: one rounded operation returns x·(1 + δ) with |δ| ≤ U.
U = 2.0 ** -24


def _gamma(k: int) -> float:
    """Relative error bound of k chained fp32 roundings (Higham's γ_k)."""
    return k * U / (1 - k * U)


def _adamw_rounding_bound(steps, lr: float, betas: tuple[float, float], eps: float, wd: float) -> list[torch.Tensor]:
    """Per element and per step, how far ONE fp32 AdamW kernel can be from exact arithmetic
    when fed ``steps`` = [(param before, grad)…] (forward error analysis; see the test)."""
    b1, b2 = betas
    m = v = None
    em = ev = ep = None
    bounds = []
    for t, (p, g) in enumerate(steps, start=1):
        p, g = p.double().abs(), g.double()
        if m is None:
            m, v, em, ev, ep = (torch.zeros_like(g) for _ in range(5))
        em = b1 * em + _gamma(3) * (b1 * m.abs() + (1 - b1) * g.abs())
        ev = b2 * ev + _gamma(4) * (b2 * v + (1 - b2) * g * g)
        m, v = b1 * m + (1 - b1) * g, b2 * v + (1 - b2) * g * g
        c1, c2 = 1 - b1 ** t, math.sqrt(1 - b2 ** t)
        denom = v.sqrt() / c2 + eps
        r = (m / c1) / denom  # the exact update direction m̂ / (√v̂ + eps)
        esqrt = torch.minimum(ev / (2 * v.sqrt()).clamp_min(1e-300), ev.sqrt())  # |√(v+δ) − √v|
        er = (em / c1 + r.abs() * esqrt / c2) / denom + _gamma(8) * r.abs()
        ep = ep * (1 - lr * wd) + lr * er + _gamma(4) * (p + lr * r.abs())
        bounds.append(ep)
    return bounds


def test_adamw8bit_steps_as_torch_adamw_within_fp32_rounding(demo_project, tmp_path):
    """A run with ``optimizer = "adamw8bit"`` uses bitsandbytes' AdamW8bit, and every one of its
    steps is torch's AdamW step up to fp32 rounding, with a bound derived from the update.

    Why not compare the LoRA with the plain run's: from step 2 on the two runs compute their
    gradients on weights that differ by rounding, and a gradient element that is a near-
    cancelling sum changes relatively a lot; Adam divides by √v̂, so that becomes a visible
    difference (1e-6 here, more or less on another CPU) that no bound on the optimizer can
    promise. So this test records the 8-bit run's own gradients and replays them through
    torch's AdamW (the plain run's optimizer, ``make_optimizer``) from the same initial LoRA:
    both kernels then see identical inputs and may differ only by their rounding.

    The bound, per element. AdamW (decoupled weight decay ``wd``), step t::

        m_t = β1·m + (1−β1)·g          v_t = β2·v + (1−β2)·g²
        r_t = (m_t / c1) / (√v_t / c2 + eps)      c1 = 1−β1^t, c2 = √(1−β2^t)
        p_t = p·(1 − lr·wd) − lr·r_t

    so the step moves an element by |Δp| ≤ lr·|m̂/(√v̂+eps)| + lr·wd·|p|. Each fp32 operation
    returns x(1+δ), |δ| ≤ u = 2⁻²⁴, and k chained ones γ_k = k·u/(1−k·u). A kernel's error
    against exact arithmetic then grows as (first order)::

        e_m ← β1·e_m + γ3·(β1|m| + (1−β1)|g|)        e_v ← β2·e_v + γ4·(β2·v + (1−β2)·g²)
        e_√v = min(e_v / 2√v, √e_v)
        e_r = (e_m/c1 + |r|·e_√v/c2) / (√v/c2 + eps) + γ8·|r|
        e_p ← e_p·(1 − lr·wd) + lr·e_r + γ4·(|p| + lr·|r|)

    (three roundings for m, four for v, eight along the division chain with its constants,
    four for the decay and the subtraction: generous counts; bitsandbytes computes the same
    update as lr·c2/c1 · m/(√v + eps·c2)). Two correct kernels are each within e_p of the
    exact value, so they differ by at most 2·e_p, accumulated over the test's steps, from its
    own lr, betas, eps, weight decay and the magnitudes of p, m, v and g. With lr = 2e-2 and
    |p| ≲ 0.2 that is a few 1e-7: a plain SGD step (lr·g instead of lr·r) or an lr off by
    1 % (2e-4·|r|) is orders of magnitude outside it. The states stay 32-bit here
    (bitsandbytes quantizes tensors of 4,096 values or more; the tiny LoRA's are smaller),
    which the test checks, since 8-bit states round far more coarsely.
    """
    from torch.optim.optimizer import register_optimizer_step_post_hook, register_optimizer_step_pre_hook

    steps, after, optimizers = [], [], []

    def before_step(opt, _args, _kwargs):
        if opt.param_groups[0]["lr"] == 0.0:  # make_optimizer's probe of the backend: no step
            return
        optimizers.append(opt)
        params = [p for g in opt.param_groups for p in g["params"]]
        steps.append([(p.detach().clone(), p.grad.detach().clone()) for p in params])

    def after_step(opt, _args, _kwargs):
        if opt.param_groups[0]["lr"] != 0.0:
            after.append([p.detach().clone() for g in opt.param_groups for p in g["params"]])

    hooks = [register_optimizer_step_pre_hook(before_step), register_optimizer_step_post_hook(after_step)]
    try:
        result, events = _train(demo_project, tmp_path, optimizer="adamw8bit")
    finally:
        for h in hooks:
            h.remove()
    assert not [e for e in events if e["event"] == "status" and "not available" in e.get("message", "")]
    state = ckpt.latest_checkpoint(load_config(tmp_path / "config.toml").output.run_dir)
    assert state is not None and state.manifest.get("optimizer") == "adamw8bit"
    assert len(steps) == TRAIN["steps"] and all(optimizer_name(o) == "adamw8bit" for o in optimizers)
    assert all(s["state1"].dtype == torch.float32 for s in optimizers[0].state.values())  # 32-bit states

    # replay the run's gradients through the plain run's AdamW, from the same initial LoRA
    plain = load_config_like(**{**TRAIN, "optimizer": "adamw"})
    params = [torch.nn.Parameter(p.clone()) for p, _g in steps[0]]
    reference = make_optimizer(params, plain, warn=pytest.fail)
    assert type(reference) is torch.optim.AdamW
    hyper = reference.param_groups[0]
    per_param = [_adamw_rounding_bound([(s[i][0], s[i][1]) for s in steps], hyper["lr"], hyper["betas"],
                                       hyper["eps"], hyper["weight_decay"]) for i in range(len(params))]
    for t, (grads, got) in enumerate(zip(steps, after)):
        for p, (_before, g) in zip(params, grads):
            p.grad = g.clone()
        reference.step()
        for i, (p, q) in enumerate(zip(params, got)):
            bound = 2 * per_param[i][t]
            diff = (p.detach().double() - q.double()).abs()
            worst = (diff - bound).argmax()
            assert (diff <= bound).all(), (f"step {t + 1}, tensor {i}: differs by {diff.flatten()[worst].item():.3g} "
                                           f"where fp32 rounding allows {bound.flatten()[worst].item():.3g}")


@pytest.mark.parametrize("kind,layer", [("int8", "Linear8bitLt"), ("int4", "Linear4bit")])
def test_quantized_base_trains_a_normal_float_lora(demo_project, tmp_path, baseline, kind, layer):
    result, events = _train(demo_project, tmp_path, quantization=kind, sample_sets=1)
    assert [e for e in events if e["event"] == "sample"]  # previews run on the quantized model too
    block = memory.blocks(result.transformer)[0]
    base_layer = block.attn.to_q.base_layer
    assert type(base_layer).__name__ == layer and type(base_layer).__module__.startswith("bitsandbytes")
    assert type(block.attn.to_q).__module__ == "peft.tuners.lora.bnb"  # peft's QLoRA layers
    assert all(p.dtype == torch.float32 for n, p in result.transformer.named_parameters() if "lora_" in n)
    got, meta = read_lora_file(result.lora)
    want, _ = read_lora_file(baseline.lora)
    assert sorted(got) == sorted(want) and all(t.is_floating_point() for t in got.values())
    assert {k: v.shape for k, v in got.items()} == {k: v.shape for k, v in want.items()}
    assert result.losses and all(torch.isfinite(torch.tensor(result.losses)))
    assert _loads_in_pipeline(result, demo_project.parent / "model") > 1e-4  # the model it trained on


def test_quantized_qwen_edit_lora_loads(demo_project, tiny_qwen_edit_plus_dir, tmp_path):
    result, _ = _train(demo_project, tmp_path, model=tiny_qwen_edit_plus_dir, quantization="int8",
                       optimizer="adamw8bit", gradient_checkpointing=True)
    tensors, _ = read_lora_file(result.lora)
    assert tensors and not any(k.startswith("transformer.") for k in tensors)  # Qwen's key format
    assert _loads_in_pipeline(result, tiny_qwen_edit_plus_dir) > 1e-4


FAMILIES = ["tiny_kontext_dir", "tiny_flux_dir", "tiny_qwen_edit_plus_dir", "tiny_qwen_image_dir",
            "tiny_flux2_klein_dir"]


@pytest.mark.parametrize("fixture", FAMILIES)
def test_gradient_checkpointing_recomputes_every_familys_blocks(request, demo_project, tmp_path, monkeypatch, fixture):
    """With checkpointing each block runs twice per step (forward + backward recompute)."""
    model = request.getfixturevalue(fixture)
    dataset = None
    if fixture in ("tiny_flux_dir", "tiny_qwen_image_dir"):  # text-to-image: image + caption sets
        from lorastudio.training.demo import write_demo_dataset

        dataset = write_demo_dataset(tmp_path / "single", paired=False, sets=2)
    calls: dict[int, int] = {}
    place = memory.place_transformer

    def counting(transformer, device, t):
        out = place(transformer, device, t)
        for i, block in enumerate(memory.blocks(transformer)):
            # pre-hook: the recompute stops early (torch's checkpoint early stop), so a
            # forward hook would not see it
            block.register_forward_pre_hook(lambda *_a, i=i: calls.__setitem__(i, calls.get(i, 0) + 1))
        return out

    monkeypatch.setattr(memory, "place_transformer", counting)
    cfg = make_config(demo_project, tmp_path, model=model, dataset=dataset,
                      **{**TRAIN, "steps": 1, "gradient_checkpointing": True})
    result = train(load_config(cfg), NullSink(), keep_model=True)
    assert calls and set(calls.values()) == {2}, calls
    assert memory.blocks(result.transformer) and result.transformer.gradient_checkpointing


def test_encoders_are_released_before_the_transformer_loads(demo_project, tmp_path, monkeypatch):
    """The VAE and text encoders are used once for the caches and gone (garbage) when the
    transformer loads; with previews off, nothing of them is kept."""
    from lorastudio.training.families._pipeline_family import PipelineFamily

    refs: list[weakref.ref] = []
    original_load = PipelineFamily.load_encoders

    def load_encoders(self):
        original_load(self)
        pipe = self._encoders
        refs.extend(weakref.ref(m) for m in (pipe.vae, pipe.text_encoder, getattr(pipe, "text_encoder_2", None))
                    if m is not None)

    alive_at_load: list[int] = []
    original_transformer = memory.load_transformer

    def load_transformer(family, t):
        gc.collect()
        alive_at_load.append(sum(r() is not None for r in refs))
        return original_transformer(family, t)

    monkeypatch.setattr(PipelineFamily, "load_encoders", load_encoders)
    monkeypatch.setattr(memory, "load_transformer", load_transformer)
    cfg = make_config(demo_project, tmp_path, **{**TRAIN, "steps": 1})
    (tmp_path / "output").mkdir(exist_ok=True)
    train(load_config(cfg), NullSink())
    assert len(refs) == 3  # VAE, CLIP, T5 were loaded for caching ...
    assert alive_at_load == [0]  # ... and all freed before the transformer loaded


def test_block_offload_swaps_copies_in_and_out(tiny_kontext_dir):
    from lorastudio.training.families.kontext import KontextFamily
    from lorastudio.training.lora import add_lora

    family = KontextFamily(tiny_kontext_dir, torch.device("cpu"), torch.float32)
    t = load_config_like(cpu_offload=True)
    transformer = memory.load_transformer(family, t)
    add_lora(transformer, 4, 4, family.lora_target_modules)
    offload = memory.place_transformer(transformer, torch.device("cpu"), t)
    assert offload is not None and transformer.gradient_checkpointing
    block = memory.blocks(transformer)[0]
    held = block.attn.to_q.base_layer.weight
    seen = []
    block.attn.to_q.base_layer.register_forward_pre_hook(lambda m, a: seen.append(m.weight))
    hidden = torch.randn(1, 4, 32)
    block(hidden_states=torch.randn(1, 16, 32), encoder_hidden_states=hidden, temb=torch.randn(1, 32),
          image_rotary_emb=None)
    assert seen and seen[0] is not held and torch.equal(seen[0], held)  # a fresh copy ran ...
    assert block.attn.to_q.base_layer.weight is held  # ... and the CPU one is back
    assert all(p.requires_grad for n, p in block.named_parameters() if "lora_" in n)
    # a whole step: the checkpoint recompute stops early (no forward hook), yet afterwards at
    # most one block still holds a swapped-in copy, and the LoRA got gradients
    transformer.train()
    out = transformer(hidden_states=torch.randn(1, 16, transformer.config.in_channels), timestep=torch.tensor([0.5]),
                      guidance=torch.tensor([1.0]), pooled_projections=torch.randn(1, 32),
                      encoder_hidden_states=torch.randn(1, 8, 32), txt_ids=torch.zeros(8, 3),
                      img_ids=torch.zeros(16, 3), return_dict=False)[0]
    out.pow(2).mean().backward()
    assert len(offload.onloaded) <= 1
    assert any(p.grad is not None and p.grad.abs().sum() > 0
               for n, p in transformer.named_parameters() if "lora_B" in n)
    offload.remove()


def load_config_like(**train):
    data = {"model": {"path": "m"}, "dataset": {"path": "d"}, "train": train}
    return config_from_dict(data, base_dir=__import__("pathlib").Path(".")).train


def test_adamw8bit_runs_8bit_states_and_checkpoints_them():
    t = load_config_like(optimizer="adamw8bit", learning_rate=1e-3)
    torch.manual_seed(0)
    p = torch.nn.Parameter(torch.randn(8192))
    opt = make_optimizer([p], t, warn=pytest.fail)
    assert optimizer_name(opt) == "adamw8bit"
    p.grad = torch.randn_like(p)
    opt.step()
    tensors, meta = ckpt._optimizer_parts(opt)
    assert any(v.dtype == torch.uint8 for v in tensors.values())  # the states really are 8-bit
    # round trip through the checkpoint format: the next step is the same as without it
    q = torch.nn.Parameter(p.detach().clone())
    opt2 = make_optimizer([q], t, warn=pytest.fail)
    opt2.load_state_dict(ckpt._optimizer_state(tensors, __import__("json").loads(__import__("json").dumps(meta))))
    grad = torch.randn_like(p)
    p.grad, q.grad = grad.clone(), grad.clone()
    opt.step()
    opt2.step()
    torch.testing.assert_close(p, q)


def test_adamw8bit_falls_back_with_a_warning(monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "bitsandbytes", None)  # import fails, as without the library
    warnings = []
    p = torch.nn.Parameter(torch.randn(16))
    opt = make_optimizer([p], load_config_like(optimizer="adamw8bit"), warn=warnings.append)
    assert type(opt) is torch.optim.AdamW and optimizer_name(opt) == "adamw"
    assert len(warnings) == 1 and "8-bit AdamW is not available" in warnings[0]


def test_memory_options_are_validated(tmp_path):
    base = {"model": {"path": "m"}, "dataset": {"path": "d"}}
    for train, key in [({"quantization": "int3"}, "train.quantization"), ({"optimizer": "sgd"}, "train.optimizer"),
                       ({"cpu_offload": True, "quantization": "int8"}, "train.cpu_offload"),
                       ({"cpu_offload": "yes"}, "train.cpu_offload")]:
        with pytest.raises(ConfigError, match=key):
            config_from_dict({**base, "train": train}, base_dir=tmp_path)
    t = config_from_dict({**base, "train": {"quantization": "int4", "optimizer": "adamw8bit"}}, base_dir=tmp_path).train
    assert (t.quantization, t.optimizer, t.cpu_offload) == ("int4", "adamw8bit", False)


def test_resume_with_adamw8bit_is_exact(demo_project, tmp_path):
    full, _ = _train(demo_project, tmp_path / "full", optimizer="adamw8bit", steps=4)
    cfg = make_config(demo_project, tmp_path / "split", **{**TRAIN, "steps": 4, "optimizer": "adamw8bit"})
    stop = StopSignal()

    class StopAt2(NullSink):
        def _write(self, ev):
            if ev["event"] == "progress" and ev["step"] >= 2:
                stop.request("test")

    first = train(load_config(cfg), StopAt2(), stop=stop)
    assert first.stopped and first.step == 2
    second = train(load_config(cfg), NullSink(), resume=True)
    a, _ = read_lora_file(full.lora)
    b, _ = read_lora_file(second.lora)
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=0, atol=0)


def test_gpu_fit_benchmark_code_path_runs_tiny(capsys):
    """benchmarks/gpu_fit.py is meant for a GPU we do not have here; its --tiny mode runs the
    same code (every ladder rung) on the CPU so it is ready when one is available."""
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[2] / "benchmarks" / "gpu_fit.py"
    spec = importlib.util.spec_from_file_location("gpu_fit", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert module.main(["--tiny", "--resolutions", "32", "--steps", "1"]) == 0
    out = capsys.readouterr().out
    assert "0 run(s) failed" in out and out.count("steps/s") == 1
    assert "8-bit weights" in out and "4-bit weights" in out and "CPU offload" in out


def test_dry_run_prints_the_estimate(demo_project, tmp_path, capsys):
    from lorastudio.training.worker import dry_run_command

    cfg = make_config(demo_project, tmp_path, **{**TRAIN, "quantization": "int8", "gradient_checkpointing": True,
                                                 "optimizer": "adamw8bit", "resolution": 64})
    assert dry_run_command(cfg) == 0
    out = capsys.readouterr().out
    assert "memory:     8-bit weights, gradient checkpointing, 8-bit AdamW" in out
    # the demo's edit sets have one input: 16 target + 16 input + 512 text tokens at 64 px
    assert "GB GPU memory" in out and "(544 tokens per sample)" in out
    assert "per step on an RTX 4090-class GPU" in out and "this GPU:" in out
    assert "dry run: nothing trained" in out
    # input_size "auto": Kontext's default, the input at the pipeline's ~1 MP (4096 tokens) at any resolution
    auto = make_config(demo_project, tmp_path / "auto", **{**TRAIN, "resolution": 64, "input_size": "auto"})
    assert dry_run_command(auto) == 0
    assert "(4624 tokens per sample)" in capsys.readouterr().out
