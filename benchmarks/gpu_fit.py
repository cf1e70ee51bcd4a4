#!/usr/bin/env python3
"""Does a real-size FLUX.1 Kontext LoRA run fit, and how fast, with each memory setting?

    python benchmarks/gpu_fit.py                 # on a CUDA GPU: the real 12B transformer
    python benchmarks/gpu_fit.py --tiny          # anywhere: the same code path on a tiny model (CPU)

Builds FLUX.1 Kontext [dev]'s transformer from its real config (FluxTransformer2DModel:
19 double + 38 single blocks, 3072 wide, guidance embedding) with *random* weights — made
on the meta device and materialized straight on the GPU in bf16, so nothing is downloaded
and no 24 GB file is read — then, for 512 and 1024 px and each rung of the estimate's
memory ladder (``lorastudio.estimate.LADDER``: plain bf16, checkpointing, + 8-bit AdamW,
8-bit weights, 4-bit weights, CPU block offload), trains a rank-16 LoRA for a few steps
through the trainer's own pieces (``training.memory``: quantize_blocks, add_lora,
place_transformer, make_optimizer; ``KontextFamily.predict``; the trainer's flow-matching
step) on random latents of the right shapes (target + one input image + 512 T5 tokens).

Prints one table row per run: the estimate's GB next to the measured peak
(``torch.cuda.max_memory_allocated`` during the steps, after setup) and steps/s. A run that
fails (out of memory, a library problem) prints its error and the table goes on. A total
time budget (``--budget``, default 420 s) skips what is left rather than overrun. Prints
numbers only; asserts nothing.
"""

from __future__ import annotations

import argparse
import gc
import os
import sys
import time
import traceback
from pathlib import Path
from types import SimpleNamespace

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

TINY = dict(num_layers=1, num_single_layers=1, attention_head_dim=16, num_attention_heads=2, joint_attention_dim=32,
            pooled_projection_dim=32, axes_dims_rope=(4, 6, 6), guidance_embeds=True)
REAL = dict(guidance_embeds=True)  # FluxTransformer2DModel's defaults are FLUX.1's config


def build(config: dict, device, dtype):
    """The transformer with random weights, materialized on ``device`` in ``dtype``."""
    import torch
    from diffusers import FluxTransformer2DModel

    default = torch.get_default_dtype()
    torch.set_default_dtype(dtype)  # parameters are made in dtype: no fp32 copy, no cast
    try:
        with torch.device("meta"):
            model = FluxTransformer2DModel(**config)
    finally:
        torch.set_default_dtype(default)
    model = model.to_empty(device=device)
    gen = torch.Generator(device=device).manual_seed(0)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.dim() >= 2:
                p.normal_(0.0, 0.02, generator=gen)
            elif "norm" in name and name.endswith("weight"):
                p.fill_(1.0)
            else:
                p.zero_()
        for name, b in model.named_buffers():
            b.zero_()
    model.requires_grad_(False)
    return model


def facts_of(model):
    from lorastudio import estimate as E

    shapes = {n: ("BF16", tuple(p.shape)) for n, p in model.state_dict().items()}
    return E.facts_from("kontext", dict(model.config), shapes)


def run_one(config: dict, resolution: int, options, steps: int, device, dtype, rank: int) -> dict:
    import torch
    import torch.nn.functional as F

    from lorastudio import estimate as E
    from lorastudio.training import memory
    from lorastudio.training import optimizer as optimizer_module
    from lorastudio.training.families.kontext import KontextFamily
    from lorastudio.training.lora import add_lora

    cuda = device.type == "cuda"
    model = build(config, device, dtype)
    facts = facts_of(model)
    est = E.estimate(facts, resolution=resolution, rank=rank, num_inputs=1, options=options)
    t = SimpleNamespace(gradient_checkpointing=options.gradient_checkpointing, quantization=options.quantization,
                        cpu_offload=options.cpu_offload, optimizer=options.optimizer, learning_rate=1e-4)
    if options.quantization != "none":
        memory.quantize_blocks(model, options.quantization, dtype, device)
        q = memory.blocks(model)[0].attn.to_q.weight
        assert q.dtype in (torch.int8, torch.uint8), f"block weights not quantized ({q.dtype})"
    torch.manual_seed(0)
    params = add_lora(model, rank, rank, KontextFamily.lora_target_modules)
    offload = memory.place_transformer(model, device, t)
    model.train()
    warnings: list[str] = []
    optimizer = optimizer_module.make_optimizer(params, t, warnings.append)
    family = KontextFamily(Path("."), device, dtype)

    latent = resolution // 8
    text_dim = config.get("joint_attention_dim", 4096)
    pooled_dim = config.get("pooled_projection_dim", 768)
    x0 = torch.randn(1, 16, latent, latent, device=device, dtype=dtype)
    inputs = [torch.randn(1, 16, latent, latent, device=device, dtype=dtype)]
    prompt = {"prompt_embeds": torch.randn(1, 512, text_dim, device=device, dtype=dtype),
              "pooled_prompt_embeds": torch.randn(1, pooled_dim, device=device, dtype=dtype)}
    gc.collect()
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
    autocast = torch.autocast("cuda", dtype=dtype) if cuda and dtype != torch.float32 else _null()
    times = []
    for step in range(steps + 1):  # step 0 warms up (kernels, allocator, bnb state)
        t0 = time.perf_counter()
        noise = torch.randn_like(x0)
        sigma = torch.sigmoid(torch.randn(1, device=device))
        s4 = sigma.view(-1, 1, 1, 1).to(dtype)
        with autocast:
            pred = family.predict(model, (1 - s4) * x0 + s4 * noise, sigma.to(dtype), inputs, prompt)
        loss = F.mse_loss(pred.float(), (noise - x0).float())
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        loss.item()
        if cuda:
            torch.cuda.synchronize()
        if step:
            times.append(time.perf_counter() - t0)
    peak = torch.cuda.max_memory_allocated() / E.GIB if cuda else float("nan")
    reserved = torch.cuda.max_memory_reserved() / E.GIB if cuda else float("nan")
    used = optimizer_module.optimizer_name(optimizer)
    if offload is not None:
        offload.remove()
    del model, params, optimizer, offload
    note = "; ".join(warnings) or (f"optimizer {used}" if used != options.optimizer else "")
    return {"est_gb": est.total_gb, "peak_gb": peak, "reserved_gb": reserved,
            "steps_s": len(times) / sum(times), "est_s": est.step_seconds, "seq": est.seq_len, "note": note}


class _null:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tiny", action="store_true", help="tiny random model on the CPU (checks the code path)")
    parser.add_argument("--resolutions", type=int, nargs="+", default=None)
    parser.add_argument("--steps", type=int, default=None, help="timed steps per run (after one warm-up)")
    parser.add_argument("--rank", type=int, default=16)
    parser.add_argument("--budget", type=float, default=420.0, help="seconds; later runs are skipped past it")
    parser.add_argument("--only", nargs="*", default=None, help="ladder rung numbers to run (0-5)")
    args = parser.parse_args(argv)

    import torch

    from lorastudio import estimate as E

    cuda = torch.cuda.is_available() and not args.tiny
    if not cuda and not args.tiny:
        print("no CUDA GPU here: run with --tiny to check the code path on the CPU")
        return 1
    device = torch.device("cuda" if cuda else "cpu")
    dtype = torch.bfloat16 if cuda else torch.float32
    config = REAL if not args.tiny else TINY
    resolutions = args.resolutions or ([512, 1024] if not args.tiny else [32, 64])
    steps = args.steps or (3 if cuda else 2)
    if cuda:
        p = torch.cuda.get_device_properties(0)
        print(f"GPU: {p.name}, {p.total_memory / E.GIB:.1f} GB; torch {torch.__version__}")
    else:
        print(f"CPU, tiny model (code path check); torch {torch.__version__}")
    print(f"FLUX.1 Kontext transformer {'(real config)' if not args.tiny else '(tiny)'}, rank {args.rank}, "
          f"1 input image, batch 1, {steps} timed steps per run\n")
    header = f"{'px':>5} {'#':>2} {'memory settings':58} {'est GB':>7} {'peak GB':>8} {'resv GB':>8} " \
             f"{'steps/s':>8} {'s/step':>7} {'est s (4090)':>12}  note"
    print(header)
    print("-" * len(header))
    rungs = [int(i) for i in args.only] if args.only else list(range(len(E.LADDER)))
    start = time.perf_counter()
    failures = 0
    for resolution in resolutions:
        for i in rungs:
            options = E.LADDER[i]
            label = options.describe()
            if time.perf_counter() - start > args.budget:
                print(f"{resolution:>5} {i:>2} {label:58} {'skipped: time budget spent':>40}")
                continue
            try:
                r = run_one(config, resolution, options, steps, device, dtype, args.rank)
                print(f"{resolution:>5} {i:>2} {label:58} {r['est_gb']:7.1f} {r['peak_gb']:8.1f} "
                      f"{r['reserved_gb']:8.1f} {r['steps_s']:8.3f} {1 / r['steps_s']:7.2f} {r['est_s']:12.2f}  "
                      f"{r['note'][:80]}", flush=True)
            except Exception as exc:  # OOM or a library problem: report, go on
                failures += 1
                kind = "OOM" if isinstance(exc, torch.OutOfMemoryError) or "out of memory" in str(exc) else \
                    type(exc).__name__
                print(f"{resolution:>5} {i:>2} {label:58} FAILED ({kind}): {str(exc).splitlines()[0][:120]}",
                      flush=True)
                if os.environ.get("GPU_FIT_TRACEBACK"):
                    traceback.print_exc()
            finally:
                gc.collect()
                if cuda:
                    torch.cuda.empty_cache()
    print(f"\ntotal {time.perf_counter() - start:.0f} s; {failures} run(s) failed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
