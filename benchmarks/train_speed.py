"""Training speed: LoRA Studio's trainer vs a bare diffusers/peft loop, same model, data, rank, resolution.

    python benchmarks/train_speed.py                         # tiny model, 64 px, 7 alternating pairs
    python benchmarks/train_speed.py --model small           # small Kontext, 128 px (see small_kontext.py)
    python benchmarks/train_speed.py --model small --extras  # + what each of our extras costs
    python benchmarks/train_speed.py --model small --profile cprofile   # where a step's time goes

Both sides train the same random FLUX.1 Kontext model (built locally, no download) on the
same demo dataset with latents and T5/CLIP embeddings cached (512 padded T5 tokens, the
pipeline's default and diffusers' Kontext training script's), warmed once before timing, so
neither side encodes anything while timed.

The bare loop, written out below, is what a minimal diffusers/peft script does per step:
batch → noise → predict → MSE → backward → clip → AdamW step → log the loss. Like for like
it has our LoRA targets (every block linear, and peft's suffix match also puts one on the
final ``proj_out``), our gradient clipping, and emits the same JSON ``progress`` line per
step. ``--extras`` measures what each of those costs the bare loop (events, the final-layer
LoRA) in alternating pairs of its own.

Timing, the same on both sides: wall time from the end of step 10 to the end of step N
(steps 11…N), as steps/s. The trainer's is the interval between its ``progress`` events of
step 10 and step N (stamped as the sink writes them); the bare loop's is its own clock at
the same two points. Loading, caching, the final checkpoint and the LoRA export are outside.
The sides run in alternating pairs (bare first, then ours first, …) in one process; each pair
gives a ratio ours/bare; the median ratio and the spread (min–max, quartiles) are printed.
On a CUDA GPU it also prints each side's peak GPU memory.
"""

from __future__ import annotations

import argparse
import cProfile
import gc
import io
import math
import os
import pstats
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent))  # small_kontext beside this script

#: Steps 1…FIRST_TIMED_AFTER warm up (allocator, autograd graph, caches); timing covers the rest.
FIRST_TIMED_AFTER = 10


class Window:
    """Wall time from the end of step FIRST_TIMED_AFTER to the end of the last step; optionally
    a profiler (cProfile or torch.profiler) running over exactly that window."""

    def __init__(self, last_step: int, profile: str | None = None) -> None:
        self.last_step = last_step
        self.profile = profile
        self.start = self.end = None
        self.cpu_start = self.cpu_end = None  # process CPU time: what a quiet machine would show
        self.profiler = None

    def step_done(self, step: int) -> None:
        if step == FIRST_TIMED_AFTER:
            _sync()
            if self.profile == "cprofile":
                self.profiler = cProfile.Profile()
                self.profiler.enable()
            elif self.profile == "torch":
                import torch.profiler as tp

                self.profiler = tp.profile(activities=[tp.ProfilerActivity.CPU], record_shapes=False)
                self.profiler.__enter__()
            self.start = time.perf_counter()
            self.cpu_start = time.process_time()
        elif step == self.last_step:
            _sync()
            self.end = time.perf_counter()
            self.cpu_end = time.process_time()
            if self.profile == "cprofile":
                self.profiler.disable()
            elif self.profile == "torch":
                self.profiler.__exit__(None, None, None)

    @property
    def rate(self) -> float:
        return (self.last_step - FIRST_TIMED_AFTER) / (self.end - self.start)

    @property
    def cpu_rate(self) -> float:
        """Steps per second of process CPU time: with one thread it leaves out time spent descheduled."""
        return (self.last_step - FIRST_TIMED_AFTER) / (self.cpu_end - self.cpu_start)

    def report(self, title: str, lines: int = 30) -> None:
        if self.profiler is None:
            return
        print(f"\n==== profile: {title}, steps {FIRST_TIMED_AFTER + 1}…{self.last_step} ====")
        if self.profile == "cprofile":
            out = io.StringIO()
            stats = pstats.Stats(self.profiler, stream=out)
            stats.sort_stats("tottime").print_stats(lines)
            print(out.getvalue())
        else:
            print(self.profiler.key_averages().table(sort_by="self_cpu_time_total", row_limit=lines))


def _sync() -> None:
    import torch

    if torch.cuda.is_available():
        torch.cuda.synchronize()


def _reset_peak() -> None:
    import torch

    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()


def _peak_gb() -> float:
    import torch

    return torch.cuda.max_memory_allocated() / 1024 ** 3 if torch.cuda.is_available() else float("nan")


def bare_loop(config, window: Window, events: bool = True, final_layer: bool = True) -> None:
    """A minimal diffusers/peft LoRA loop on the cached tensors.

    ``events``: emit a JSON ``progress`` line per step, as ours does. ``final_layer``: keep
    the LoRA peft's suffix match puts on the model's final ``proj_out`` (ours has it).
    """
    import torch
    import torch.nn.functional as F
    from diffusers.optimization import get_scheduler
    from peft import LoraConfig

    from lorastudio import run_folder
    from lorastudio.training.cache import TrainingCache
    from lorastudio.training.events import JsonlSink
    from lorastudio.training.families.base import EncodedPrompt
    from lorastudio.training.lora import linear_targets
    from lorastudio.training.plan import make_plan

    t = config.train
    steps = t.steps
    plan = make_plan(config)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dtype = torch.bfloat16 if device.type == "cuda" and torch.cuda.is_bf16_supported() else torch.float32
    family = plan.family_cls(config.model.path, device, dtype)
    family.use_input_size(t.input_size)  # as the trainer does
    cache = TrainingCache(run_folder.cache_dir(config.output.run_dir), family, t.resolution, config.dataset.trigger,
                          config.dataset.default_caption)
    cached = cache.build(plan.sets)
    transformer = family.load_transformer()
    torch.manual_seed(t.seed)
    transformer.requires_grad_(False)
    targets = linear_targets(transformer, family.lora_target_modules)
    if not final_layer:
        targets = [name for name in targets if name != "proj_out"]
    transformer.add_adapter(LoraConfig(r=t.rank, lora_alpha=t.rank, target_modules=targets))
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
    sink = JsonlSink(io.StringIO())
    gen = torch.Generator().manual_seed(t.seed)
    t0 = time.perf_counter()
    for step in range(1, steps + 1):
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
        loss_value = loss.item()  # a bare loop logs its loss too
        if events:
            rate = step / (time.perf_counter() - t0)
            sink.emit("progress", step=step, total=steps, loss=loss_value, lr=scheduler.get_last_lr()[0],
                      rate=rate, eta=(steps - step) / rate)
        window.step_done(step)


def ours(config, window: Window) -> None:
    """``lorastudio train`` in-process, its events JSON-encoded and flushed (into memory)."""
    from lorastudio.training.events import JsonlSink
    from lorastudio.training.trainer import train

    class StampingSink(JsonlSink):
        def _write(self, ev):
            super()._write(ev)
            if ev["event"] == "progress":
                window.step_done(ev["step"])

    train(config, StampingSink(io.StringIO()))


def _best_us(fn, calls: int) -> float:
    """Best of 5 rounds of ``calls`` calls, in µs per call (the least disturbed by other jobs)."""
    best = math.inf
    for _ in range(5):
        t0 = time.perf_counter()
        for _ in range(calls):
            fn()
        best = min(best, (time.perf_counter() - t0) / calls)
    return best * 1e6


def extras_microtimings(config) -> dict[str, float]:
    """What each thing our loop does per step beyond the bare loop costs, alone, in µs.

    Timed in isolation because each is far below the noise of whole steps on a shared machine.
    """
    import torch

    from lorastudio import run_folder
    from lorastudio.training import batches as tb
    from lorastudio.training import trainer as tr
    from lorastudio.training.cache import TrainingCache
    from lorastudio.training.plan import make_plan
    from lorastudio.training.events import JsonlSink
    from lorastudio.training.lora import add_lora
    from lorastudio.training.stop import StopSignal

    t = config.train
    plan = make_plan(config)
    accelerator, dtype = tr._accelerator(config)
    family = plan.family_cls(config.model.path, accelerator.device, dtype)
    family.use_input_size(t.input_size)  # as the trainer does
    cached = TrainingCache(run_folder.cache_dir(config.output.run_dir), family, t.resolution, config.dataset.trigger,
                           config.dataset.default_caption).build(plan.sets)
    order = tb.BatchOrder(cached, t.batch_size, t.seed)
    batches = tb.Batches(family, cached, dtype, memo=True)
    x0 = batches.get(order.batch(1), accelerator.device)[0]
    shape = tuple(x0.shape)
    gen = torch.Generator().manual_seed(t.seed)
    stop = StopSignal()
    devnull = open(os.devnull, "w", encoding="utf-8")  # noqa: SIM115 - a real file: write + flush syscalls
    sinks = {"StringIO": JsonlSink(io.StringIO()), "a file (write + flush)": JsonlSink(devnull)}
    out: dict[str, float] = {}
    for where, sink in sinks.items():
        out[f"progress event: encode + write to {where}"] = _best_us(
            lambda: sink.emit("progress", step=12, total=100, loss=0.123456789, lr=1e-4, rate=4.56789,
                              eta=12.3456), 2000)
    out["noise and σ from (seed, step) (bare: a running generator)"] = (
        _best_us(lambda: tb.noise_and_sigmas(shape, t.seed, 12, 0), 2000)
        - _best_us(lambda: (torch.randn(shape, generator=gen), torch.sigmoid(torch.randn(shape[0], generator=gen))),
                   2000))
    out["batch lookup (BatchOrder + memoized Batches)"] = _best_us(lambda: batches.get(order.batch(12), accelerator.device),
                                                                   5000)

    def autocast():
        with accelerator.autocast():
            pass

    out["accelerator.autocast() enter/exit"] = _best_us(autocast, 5000)
    out["stop check, isfinite, losses.append"] = _best_us(lambda: (stop.is_set(), math.isfinite(0.5)), 5000)

    # The final-layer proj_out LoRA: forward + backward of that layer with and without it.
    transformer = family.load_transformer()
    torch.manual_seed(t.seed)
    final = transformer.proj_out
    tokens = shape[-1] * shape[-2] // 4 * 2  # target + one input image, packed 2×2
    hidden = torch.randn(1, tokens, final.in_features, dtype=dtype, device=accelerator.device, requires_grad=True)

    def fwd_bwd():
        transformer.proj_out(hidden).sum().backward()

    plain = _best_us(fwd_bwd, 200)
    add_lora(transformer, t.rank, t.alpha or float(t.rank), family.lora_target_modules)
    out["final-layer proj_out LoRA: forward + backward"] = _best_us(fwd_bwd, 200) - plain
    devnull.close()
    return out


def build_config(work: Path, model: str, steps: int, resolution: int, rank: int):
    import tomli_w

    from lorastudio.config import load_config
    from lorastudio.training.demo import create_demo

    try:
        import tomllib
    except ModuleNotFoundError:  # pragma: no cover
        import tomli as tomllib
    project = work / "demo" / "project.toml"
    if not project.exists():
        project = create_demo(work / "demo", "kontext")
    data = tomllib.loads(project.read_text(encoding="utf-8"))
    base = project.resolve().parent
    for section in ("model", "dataset"):
        p = Path(data[section]["path"])
        data[section]["path"] = str(p if p.is_absolute() else base / p)
    if model == "small":
        from small_kontext import build_small_kontext

        data["model"]["path"] = str(build_small_kontext(work / "model-small"))
    data["train"] = {**data.get("train", {}), "steps": steps, "resolution": resolution, "rank": rank,
                     "sample_every": 0, "sample_sets": 0, "checkpoint_every": 0, "learning_rate": 1e-4}
    data["output"] = {"dir": str(work / "out"), "name": f"bench_{model}_{resolution}"}
    cfg_path = work / f"bench_{model}_{resolution}.toml"
    cfg_path.write_text(tomli_w.dumps(data), encoding="utf-8")
    return load_config(cfg_path)


def alternate(sides: dict[str, callable], pairs: int, steps: int,
              cpu: dict[str, list[float]] | None = None) -> tuple[dict[str, list[float]], dict[str, float]]:
    """Run the two sides in alternating order ``pairs`` times; steps/s of each run (CPU-time
    steps/s into ``cpu`` when given), peak GPU GB."""
    names = list(sides)
    rates: dict[str, list[float]] = {n: [] for n in names}
    cpu = cpu if cpu is not None else {}
    for n in names:
        cpu.setdefault(n, [])
    peaks: dict[str, float] = {n: float("nan") for n in names}
    for i in range(pairs):
        for name in (names if i % 2 == 0 else names[::-1]):
            _reset_peak()
            window = Window(steps)
            sides[name](window)
            rates[name].append(window.rate)
            cpu[name].append(window.cpu_rate)
            peak = _peak_gb()
            peaks[name] = peak if math.isnan(peaks[name]) else max(peak, peaks[name])
        print(f"  pair {i + 1}: " + ", ".join(f"{n} {rates[n][-1]:.2f}" for n in names) +
              f" steps/s, ratio {rates[names[1]][-1] / rates[names[0]][-1]:.3f}"
              f" (CPU time: {cpu[names[1]][-1] / cpu[names[0]][-1]:.3f})", flush=True)
    return rates, peaks


def spread(values: list[float]) -> str:
    q = statistics.quantiles(values, n=4) if len(values) > 1 else [values[0]] * 3
    return f"median {statistics.median(values):.3f}, quartiles {q[0]:.3f}–{q[2]:.3f}, min–max {min(values):.3f}–{max(values):.3f}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="tiny", choices=["tiny", "small"])
    parser.add_argument("--steps", type=int, help="steps per run (default: 60 tiny, 40 small); timed: 11…N")
    parser.add_argument("--resolution", type=int, help="default: 64 tiny, 128 small")
    parser.add_argument("--rank", type=int, default=16)
    parser.add_argument("--pairs", type=int, default=7, help="alternating pairs (bare/ours, ours/bare, …)")
    parser.add_argument("--extras", action="store_true", help="also time the bare loop without each of our extras")
    parser.add_argument("--extras-pairs", type=int, default=3,
                        help="alternating pairs per extra for --extras (0: only the per-call timings)")
    parser.add_argument("--profile", choices=["cprofile", "torch"], help="profile steps 11…N of one run of each side")
    parser.add_argument("--workdir", help="keep the models, data and runs here (default: a temp folder)")
    args = parser.parse_args(argv)
    steps = args.steps or (60 if args.model == "tiny" else 40)
    resolution = args.resolution or (64 if args.model == "tiny" else 128)
    if steps <= FIRST_TIMED_AFTER + 1:
        parser.error(f"--steps must be over {FIRST_TIMED_AFTER + 1} (steps 1…{FIRST_TIMED_AFTER} are not timed)")

    import torch

    work = Path(args.workdir or tempfile.mkdtemp(prefix="lorastudio-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    config = build_config(work, args.model, steps, resolution, args.rank)
    print(f"model {args.model}, {steps} steps (timed 11…{steps}), {resolution} px, rank {args.rank}, "
          f"torch {torch.__version__}, {torch.get_num_threads()} threads, load average "
          f"{', '.join(f'{x:.1f}' for x in os.getloadavg())}", flush=True)
    bare_loop(config, Window(steps))  # warms the cache (and the allocator) outside any timing

    if args.profile:
        for name, run in (("bare loop", lambda w: bare_loop(config, w)), ("lorastudio", lambda w: ours(config, w))):
            window = Window(steps, args.profile)
            run(window)
            print(f"{name}: {window.rate:.2f} steps/s under the profiler")
            window.report(name)
        return 0

    cpu: dict[str, list[float]] = {}
    rates, peaks = alternate({"bare": lambda w: bare_loop(config, w), "ours": lambda w: ours(config, w)},
                             args.pairs, steps, cpu)
    ratios = [o / b for o, b in zip(rates["ours"], rates["bare"])]
    cpu_ratios = [o / b for o, b in zip(cpu["ours"], cpu["bare"])]
    print(f"bare loop  : {spread(rates['bare'])} steps/s")
    print(f"lorastudio : {spread(rates['ours'])} steps/s")
    print(f"ratio ours/bare per pair: {', '.join(f'{r:.3f}' for r in ratios)}")
    print(f"ratio      : {spread(ratios)}  (goal: median ≥ 0.97)")
    print(f"CPU-time ratio per pair: {', '.join(f'{r:.3f}' for r in cpu_ratios)}")
    print(f"CPU-time ratio: {spread(cpu_ratios)}  (steps per CPU-second; with one thread it leaves out time spent descheduled)")
    print(f"load average now: {', '.join(f'{x:.1f}' for x in os.getloadavg())}")
    if not math.isnan(peaks["bare"]):
        print(f"peak GPU memory: bare {peaks['bare']:.2f} GB, lorastudio {peaks['ours']:.2f} GB")

    if args.extras:
        step_ms = 1000 / statistics.median(rates["bare"])
        print(f"\nour per-step extras, each timed alone (best of 5 × many calls; a median bare step is {step_ms:.1f} ms):")
        for extra, us in extras_microtimings(config).items():
            print(f"  {extra:58s} {us:9.1f} µs  ({100 * us / 1000 / step_ms:.3f} % of a step)")
        variants = {
            "per-step JSON progress event": lambda w: bare_loop(config, w, events=False),
            "final-layer proj_out LoRA": lambda w: bare_loop(config, w, final_layer=False),
        }
        print("\nwhat each extra costs the bare loop (like-for-like bare vs bare without it, alternating pairs):")
        for extra, without in variants.items() if args.extras_pairs else ():
            r, _ = alternate({"with": lambda w: bare_loop(config, w), "without": without}, args.extras_pairs, steps)
            cost = [w / o - 1 for w, o in zip(r["without"], r["with"])]
            print(f"{extra}: step time +{100 * statistics.median(cost):.2f} % median "
                  f"(per pair: {', '.join(f'{100 * c:+.2f}' for c in cost)} %)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
