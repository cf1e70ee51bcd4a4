"""Training speed: LoRA Studio's trainer vs a plain loop, same model, data, rank and resolution.

    python benchmarks/train_speed.py [--family kontext] [--steps 60] [--resolution 64] [--rank 16]

Both sides train the same tiny model (built locally, no download) on the same demo dataset
with latents and text embeddings cached (the trainer's own cache, warmed first, so neither
side encodes anything while timed). The plain loop, written out below, is what a minimal
script would do per step: batch → noise → predict → MSE → backward → clip → AdamW step.
Our trainer adds events (one flushed JSON line per step), the stop check, the fault hook and
the schedule. Prints steps/s of each and the ratio; the goal is an overhead under 10%. On a CUDA GPU it
also prints each side's peak GPU memory (``torch.cuda.max_memory_allocated`` over the run).

The timed part of each side is its training steps only (model loading, caching, the final
checkpoint and LoRA export are outside it): for the trainer the ``rate`` of its last
``progress`` event, which measures from the first step to the last.
"""

from __future__ import annotations

import argparse
import io
import json
import math
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


def _reset_peak() -> None:
    import torch

    if torch.cuda.is_available():
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()


def _peak_gb() -> float:
    import torch

    return torch.cuda.max_memory_allocated() / 1024 ** 3 if torch.cuda.is_available() else float("nan")


def plain_loop(config, steps: int) -> float:
    """A minimal LoRA loop on the cached tensors; returns steps/s."""
    import torch
    import torch.nn.functional as F
    from diffusers.optimization import get_scheduler
    from peft import LoraConfig

    from lorastudio.training.cache import TrainingCache
    from lorastudio.training.families.base import EncodedPrompt
    from lorastudio.training.trainer import make_plan

    t = config.train
    plan = make_plan(config)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dtype = torch.bfloat16 if device.type == "cuda" and torch.cuda.is_bf16_supported() else torch.float32
    family = plan.family_cls(config.model.path, device, dtype)
    cache = TrainingCache(config.output.run_dir / "cache", family, t.resolution, config.dataset.trigger,
                          config.dataset.default_caption)
    cached = cache.build(plan.sets)
    transformer = family.load_transformer()
    torch.manual_seed(t.seed)
    transformer.requires_grad_(False)
    transformer.add_adapter(LoraConfig(r=t.rank, lora_alpha=t.rank, target_modules=list(family.lora_target_modules)))
    params = [p for p in transformer.parameters() if p.requires_grad]
    for p in params:
        p.data = p.data.float()
    transformer.train()
    optimizer = torch.optim.AdamW(params, lr=t.learning_rate)
    scheduler = get_scheduler("constant_with_warmup", optimizer, num_warmup_steps=0, num_training_steps=steps)
    batches = []
    for s in cached:
        prompt = family.collate_prompts([EncodedPrompt(s.prompt)])  # cached without a batch dim
        prompt = {k: (v.to(device, dtype) if v.is_floating_point() else v.to(device)) for k, v in prompt.items()}
        batches.append((s.target[None].to(device, dtype), [i[None].to(device, dtype) for i in s.inputs], prompt))
    gen = torch.Generator().manual_seed(t.seed)
    start = None
    for step in range(1, steps + 1):
        if step == 2:  # like the trainer's rate, but without the first (warm-up) step
            if device.type == "cuda":
                torch.cuda.synchronize()
            start = time.perf_counter()
        x0, inputs, prompt = batches[step % len(batches)]
        noise = torch.randn(x0.shape, generator=gen).to(device, dtype)
        sigma = torch.sigmoid(torch.randn(x0.shape[0], generator=gen)).to(device)
        s4 = sigma.view(-1, 1, 1, 1).to(dtype)
        pred = family.predict(transformer, (1 - s4) * x0 + s4 * noise, sigma.to(dtype), inputs, prompt)
        loss = F.mse_loss(pred.float(), (noise - x0).float())
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, t.max_grad_norm)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        loss.item()  # a plain loop logs its loss too
    if device.type == "cuda":
        torch.cuda.synchronize()
    return (steps - 1) / (time.perf_counter() - start)


def ours(config) -> float:
    from lorastudio.training.events import JsonlSink
    from lorastudio.training.trainer import train

    stream = io.StringIO()
    train(config, JsonlSink(stream))  # real encoding and flushing, into memory
    events = [json.loads(line) for line in stream.getvalue().splitlines()]
    progress = [e for e in events if e["event"] == "progress"]
    # rate over steps 2..N, to match the plain loop's timing window
    return progress[-1]["rate"] if len(progress) < 2 else _rate_without_first(progress)


def _rate_without_first(progress: list[dict]) -> float:
    first, last = progress[0], progress[-1]
    t_first = first["step"] / first["rate"]
    t_last = last["step"] / last["rate"]
    return (last["step"] - first["step"]) / (t_last - t_first)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--family", default="kontext", choices=["kontext", "qwen-edit-plus"])
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--resolution", type=int, default=64)
    parser.add_argument("--rank", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=2, help="alternate the two sides this many times; best of each")
    parser.add_argument("--workdir", help="keep the tiny model and runs here (default: a temp folder)")
    args = parser.parse_args(argv)

    import tomli_w

    from lorastudio.config import load_config
    from lorastudio.training.demo import create_demo

    work = Path(args.workdir or tempfile.mkdtemp(prefix="lorastudio-bench-"))
    project = work / "demo" / "project.toml"
    if not project.exists():
        project = create_demo(work / "demo", args.family)
    try:
        import tomllib
    except ModuleNotFoundError:  # pragma: no cover
        import tomli as tomllib
    data = tomllib.loads(Path(project).read_text(encoding="utf-8"))
    base = Path(project).resolve().parent
    for section in ("model", "dataset"):
        p = Path(data[section]["path"])
        data[section]["path"] = str(p if p.is_absolute() else base / p)
    data["train"] = {**data.get("train", {}), "steps": args.steps, "resolution": args.resolution, "rank": args.rank,
                     "sample_every": 0, "sample_sets": 0, "checkpoint_every": 0, "learning_rate": 1e-4}
    results: dict[str, list[float]] = {"plain": [], "ours": []}
    peaks: dict[str, list[float]] = {"plain": [], "ours": []}
    for r in range(args.rounds):
        data["output"] = {"dir": str(work / "out"), "name": f"bench{r}"}
        cfg_path = work / f"bench{r}.toml"
        cfg_path.write_text(tomli_w.dumps(data), encoding="utf-8")
        config = load_config(cfg_path)
        _reset_peak()
        results["plain"].append(plain_loop(config, args.steps))  # also warms the cache
        peaks["plain"].append(_peak_gb())
        import gc

        gc.collect()
        _reset_peak()
        results["ours"].append(ours(config))
        peaks["ours"].append(_peak_gb())
    plain, mine = max(results["plain"]), max(results["ours"])
    print(f"family {args.family}, {args.steps} steps, resolution {args.resolution}, rank {args.rank}, "
          f"best of {args.rounds} rounds")
    print(f"plain loop : {plain:8.2f} steps/s  (rounds: {', '.join(f'{x:.2f}' for x in results['plain'])})")
    print(f"lorastudio : {mine:8.2f} steps/s  (rounds: {', '.join(f'{x:.2f}' for x in results['ours'])})")
    ratio = mine / plain if plain else math.nan
    print(f"ratio      : {ratio:.3f}  (overhead {100 * (1 - ratio):+.1f}%; goal: under 10%)")
    import statistics

    med = statistics.median(results["ours"]) / statistics.median(results["plain"])
    print(f"median ratio: {med:.3f}  (medians {statistics.median(results['plain']):.2f} vs "
          f"{statistics.median(results['ours']):.2f} steps/s; steadier than best-of on a busy machine)")
    if not math.isnan(max(peaks["plain"])):
        print(f"peak GPU memory: plain {max(peaks['plain']):.2f} GB, lorastudio {max(peaks['ours']):.2f} GB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
