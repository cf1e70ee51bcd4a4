"""The training loop, top to bottom (nanoGPT-style): one function, :func:`train`.

    config → dataset → accelerator → cache latents/text → free encoders → transformer + LoRA
    → AdamW + constant-with-warmup → steps 1…total (flow matching) → samples/checkpoints
    → LoRA file → done

Everything model-specific (how latents become tokens, position ids, how inputs join the
sequence) is behind the family interface (``families/base.py``); this file only moves
cached tensors, draws noise, and steps the optimizer.

Flow matching (rectified flow, as FLUX and Qwen-Image are trained)::

    x0     = target latents            noise ~ N(0, I)
    σ      = sigmoid(u), u ~ N(0, 1)   ("logit-normal" timesteps, as diffusers' FLUX
                                         DreamBooth script and SD3/FLUX trainers use: most
                                         samples in the middle, few near pure noise/clean)
    noisy  = (1 - σ)·x0 + σ·noise
    target = noise - x0                 (the velocity the transformer predicts)
    loss   = MSE(family.predict(noisy, σ, inputs, prompt), target)

Determinism: data order and noise are pure functions of ``(seed, step)`` (and the process
rank), not of a generator's running state, so a run resumed from a checkpoint draws exactly
what an uninterrupted run would have drawn: on the CPU the final LoRA is bit-identical.

Multi-process (``accelerate launch -m lorastudio train CONFIG``): every rank trains on its own
batch (global batch index ``(step-1)·world + rank``); gradients, the loss and the stop flag
are averaged in one all-reduce per step; only rank 0 emits events and writes files.
"""

from __future__ import annotations

import gc
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from lorastudio import __version__
from lorastudio.config import Config, ConfigError
from lorastudio.dataset import Dataset, ImageSet, Severity, load_image, scan_dataset
from lorastudio.training import checkpoint as ckpt
from lorastudio.training import memory
from lorastudio.training.buckets import resize_to
from lorastudio.training.cache import CachedSet, TrainingCache
from lorastudio.training.events import EventSink
from lorastudio.training.families.base import EncodedPrompt
from lorastudio.training.lora import (add_lora, export_metadata, export_state_dict, load_peft_state_dict,
                                      peft_state_dict, save_lora_file)
from lorastudio.training.stop import StopSignal


class TrainingError(Exception):
    """Ends a run with an ``error`` event of ``kind`` (see protocol.ERROR_KINDS)."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind
        self.message = message


@dataclass
class Plan:
    """What a run will do, known before any model loads (``train --dry-run`` prints it)."""

    config: Config
    family_cls: type
    dataset: Dataset
    sets: list[ImageSet]
    skipped: list[str] = field(default_factory=list)


@dataclass
class Result:
    lora: Path | None
    step: int
    stopped: bool
    losses: list[float]
    transformer: Any = None
    family: Any = None
    cached: list = field(default_factory=list)


# -- test-only fault injection ------------------------------------------------------------

#: TEST ONLY. ``LORASTUDIO_FAULT="nan@3"`` makes step 3's loss NaN, ``"raise@3"`` raises a
#: RuntimeError at step 3, ``"oom@3"`` raises torch.OutOfMemoryError at step 3. Read here
#: and nowhere else; never set it outside tests.
FAULT_ENV = "LORASTUDIO_FAULT"


def _fault() -> tuple[str, int] | None:
    spec = os.environ.get(FAULT_ENV, "").strip()
    if not spec:
        return None
    kind, _, step = spec.partition("@")
    return kind, int(step or 1)


# -- planning (no torch models) -----------------------------------------------------------

def make_plan(config: Config) -> Plan:
    """Detect the family and scan the dataset; raise TrainingError (config/data) if unusable."""
    from lorastudio.training.families import FamilyModeError, ModelFolderError, check_dataset_mode, detect_family

    try:
        family_cls = detect_family(config.model.path, config.model.family)
    except ModelFolderError as exc:
        raise TrainingError("config", f"model.path: {exc}") from None
    dataset = scan_dataset(config.dataset.path)
    global_errors = [p for p in dataset.problems if p.severity is Severity.ERROR and p.set_name is None]
    if global_errors:
        raise TrainingError("data", f"dataset {config.dataset.path}: {global_errors[0].message}")
    sets = dataset.trainable_sets()
    skipped = [s.name for s in dataset.sets if s not in sets]
    if not sets:
        first = next((p.message for p in dataset.problems if p.severity is Severity.ERROR), "no image sets found")
        raise TrainingError("data", f"dataset {config.dataset.path}: nothing to train ({first})")
    try:  # before any model loads: the message names the model folders that would fit
        check_dataset_mode(family_cls, dataset.mode)
    except FamilyModeError as exc:
        raise TrainingError("data", f"dataset {config.dataset.path}: {exc}") from None
    limit = family_cls.max_inputs
    if limit is not None:
        too_many = [s.name for s in sets if len(s.inputs) > limit]
        if too_many:
            raise TrainingError("data", f"{family_cls.display_name} takes at most {limit} input image(s) per set; "
                                        f"{len(too_many)} set(s) have more: {', '.join(too_many[:5])}")
    return Plan(config=config, family_cls=family_cls, dataset=dataset, sets=sets, skipped=skipped)


# -- data order and noise: pure functions of (seed, step) ---------------------------------

def _mix(*values: int) -> int:
    h = 0x9E3779B97F4A7C15
    for v in values:
        h = (h ^ (int(v) & 0xFFFFFFFFFFFFFFFF)) * 0xBF58476D1CE4E5B9 & 0xFFFFFFFFFFFFFFFF
        h ^= h >> 31
    return h & 0x7FFFFFFFFFFFFFFF


class BatchOrder:
    """Which sets make up the batch of a step: each epoch a seeded shuffle of same-shape batches."""

    def __init__(self, cached: list[CachedSet], batch_size: int, seed: int) -> None:
        groups: dict[tuple, list[int]] = {}
        for i, s in enumerate(cached):
            groups.setdefault((s.bucket, tuple(s.input_sizes)), []).append(i)
        self.groups = [groups[k] for k in sorted(groups)]
        self.batch_size = batch_size
        self.seed = seed
        self._epochs: dict[int, list[list[int]]] = {}
        self.per_epoch = sum(math.ceil(len(g) / batch_size) for g in self.groups)

    def _epoch(self, epoch: int) -> list[list[int]]:
        if epoch not in self._epochs:
            g = torch.Generator().manual_seed(_mix(self.seed, epoch, 0xDA7A))
            batches = []
            for idxs in self.groups:
                perm = [idxs[i] for i in torch.randperm(len(idxs), generator=g).tolist()]
                batches += [perm[i:i + self.batch_size] for i in range(0, len(perm), self.batch_size)]
            order = torch.randperm(len(batches), generator=g).tolist()
            self._epochs = {epoch: [batches[i] for i in order]}  # keep one epoch in memory
        return self._epochs[epoch]

    def batch(self, step: int, rank: int = 0, world: int = 1) -> list[int]:
        index = (step - 1) * world + rank
        return self._epoch(index // self.per_epoch)[index % self.per_epoch]


def collate(family, items: list[CachedSet], device: torch.device, dtype: torch.dtype):
    """Stack a batch: target (B,C,h,w), inputs [(B,C,h_i,w_i)…], prompt tensors (B,…).

    Cached prompt tensors have no batch dimension; the family batches them
    (``ModelFamily.collate_prompts``: Qwen pads and masks prompts of different lengths).
    """
    target = torch.stack([s.target for s in items]).to(device, dtype)
    inputs = [torch.stack([s.inputs[j] for s in items]).to(device, dtype) for j in range(len(items[0].inputs))]
    batched = family.collate_prompts([EncodedPrompt(s.prompt) for s in items])
    prompt = {k: (t.to(device, dtype) if t.is_floating_point() else t.to(device)) for k, t in batched.items()}
    return target, inputs, prompt


class Batches:
    """Collated batches; with batch size 1 each set is collated once (on the CPU) and reused."""

    def __init__(self, family, cached: list[CachedSet], dtype: torch.dtype, memo: bool) -> None:
        self.family, self.cached, self.dtype, self.memo = family, cached, dtype, memo
        self._done: dict[tuple[int, ...], tuple] = {}

    def get(self, indices: list[int], device: torch.device):
        key = tuple(indices)
        batch = self._done.get(key)
        if batch is None:
            batch = collate(self.family, [self.cached[i] for i in key], torch.device("cpu"), self.dtype)
            if self.memo:
                self._done[key] = batch
        x0, inputs, prompt = batch
        if device.type == "cpu":
            return x0, inputs, prompt
        return (x0.to(device, non_blocking=True), [i.to(device, non_blocking=True) for i in inputs],
                {k: v.to(device, non_blocking=True) for k, v in prompt.items()})


def noise_and_sigmas(shape: tuple[int, ...], seed: int, step: int, rank: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(_mix(seed, step, rank, 0x5EED))
    noise = torch.randn(shape, generator=g)
    sigmas = torch.sigmoid(torch.randn(shape[0], generator=g))  # logit-normal(0, 1)
    return noise, sigmas


# -- the run ------------------------------------------------------------------------------

def _accelerator(config: Config):
    from accelerate import Accelerator

    mp = config.train.mixed_precision
    cuda = torch.cuda.is_available()
    if mp == "auto":
        mp = "bf16" if cuda and torch.cuda.is_bf16_supported() else "no"
    if not cuda and mp != "no":
        mp = "no"  # fp32 on the CPU
    accelerator = Accelerator(mixed_precision=mp, cpu=not cuda)
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(mp, torch.float32)
    return accelerator, dtype


def train(config: Config, sink: EventSink, resume: bool = False, stop: StopSignal | None = None,
          plan: Plan | None = None, keep_model: bool = False) -> Result:
    """Train a LoRA as ``config`` says, emitting events on ``sink``. Raises TrainingError."""
    stop = stop or StopSignal()
    t = config.train
    fault = _fault()

    # 1. config, family, dataset: everything that can be wrong before a model loads.
    plan = plan or make_plan(config)
    accelerator, dtype = _accelerator(config)
    main, rank, world = accelerator.is_main_process, accelerator.process_index, accelerator.num_processes
    emit = sink.emit if main else (lambda *a, **k: None)
    run_dir = config.output.run_dir
    if main:
        run_dir.mkdir(parents=True, exist_ok=True)
    resume_from = ckpt.latest_checkpoint(run_dir) if resume else None
    notes = []  # status messages for after ``started`` (the GUI resets its run view there)
    if resume and resume_from is None:
        notes.append("no complete checkpoint to resume from; starting at step 1")
    # A checkpoint at the last step resumes too: the loop runs no step and the LoRA is written
    # again (the run was killed, or the disk was full, while writing it).
    if resume_from is not None and resume_from.step > t.steps:
        raise TrainingError("config", f"train.steps: the checkpoint is at step {resume_from.step}, "
                                      f"not before the {t.steps} steps asked for; raise train.steps to continue")
    start_step = resume_from.step if resume_from else 0
    family = plan.family_cls(config.model.path, accelerator.device, dtype)
    checkpoint_info = {"total": t.steps, "family": family.name, "rank": t.rank, "alpha": t.alpha or float(t.rank),
                       "seed": t.seed, "version": __version__, "optimizer": t.optimizer}
    if resume_from is not None:
        for key in ("family", "rank", "alpha", "optimizer"):  # optimizer: its saved state's layout
            saved = resume_from.manifest.get(key)
            if saved is not None and saved != checkpoint_info[key]:
                where = "model.path" if key == "family" else f"train.{key}"
                raise TrainingError("config", f"{where}: the checkpoint at step {resume_from.step} was trained with "
                                              f"{key} {saved!r}, the config now says {checkpoint_info[key]!r}; "
                                              "resume needs the same setting (or start a new run)")
    if main and resume_from is None:
        retired = ckpt.retire_checkpoints(run_dir)  # a fresh run never mixes with an older one
        if retired is not None:
            notes.append(f"the previous run's checkpoints were moved to {retired}")
    emit("started", total=t.steps, family=family.name, sets=len(plan.sets), run_dir=str(run_dir),
         resumed_from=start_step)
    for note in notes:
        emit("status", phase="loading", message=note)
    if plan.skipped:
        emit("status", phase="loading", message=f"skipping {len(plan.skipped)} set(s) with errors: "
                                                f"{', '.join(plan.skipped[:5])}")
    torch.manual_seed(t.seed)

    # 2. cache latents and prompts (main process writes the files, the others then read them).
    emit("status", phase="caching", message="encoding images and captions", current=0, total=len(plan.sets))
    cached: list[CachedSet] = []
    for turn in ("main", "others"):
        if (turn == "main") == main:
            cache = TrainingCache(run_dir / "cache", family, t.resolution, config.dataset.trigger,
                                  config.dataset.default_caption, write=main)
            cached = cache.build(plan.sets, on_progress=lambda i, n: emit(
                "status", phase="caching", message="encoding images and captions", current=i, total=n),
                should_stop=stop.is_set if world == 1 else None, previews=t.sample_sets if main else 0)
        if world > 1:
            accelerator.wait_for_everyone()
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    if stop.is_set() and len(cached) < len(plan.sets):
        emit("status", phase="stopping", message="stopped while caching; nothing trained yet")
        emit("done", lora=None, step=start_step, stopped=True)
        return Result(lora=None, step=start_step, stopped=True, losses=[])

    # 3. transformer + LoRA, optimizer, schedule.
    emit("status", phase="loading", message="loading the transformer")
    transformer = memory.load_transformer(family, t)  # quantized blocks when train.quantization
    torch.manual_seed(t.seed)  # LoRA init does not depend on what loading consumed
    alpha = t.alpha or float(t.rank)
    params = add_lora(transformer, t.rank, alpha, family.lora_target_modules)
    memory.place_transformer(transformer, accelerator.device, t)  # + checkpointing, block offload
    transformer.train()
    optimizer = memory.make_optimizer(params, t, lambda message: emit("status", phase="loading", message=message))
    from diffusers.optimization import get_scheduler

    scheduler = get_scheduler("constant_with_warmup", optimizer, num_warmup_steps=t.warmup_steps,
                              num_training_steps=t.steps)
    if resume_from is not None:
        lora_state = ckpt.load_checkpoint(resume_from, optimizer, scheduler)
        load_peft_state_dict(transformer, {k: v.to(accelerator.device) for k, v in lora_state.items()})
    order = BatchOrder(cached, t.batch_size, t.seed)
    batches = Batches(family, cached, dtype, memo=t.batch_size == 1)
    sample_sets = cached[: t.sample_sets]

    def save_lora(step: int) -> Path:
        emit("status", phase="saving", message="writing the LoRA")
        tensors = export_state_dict(peft_state_dict(transformer), t.rank, alpha, family.name,
                                    dtype=dtype if dtype != torch.float32 else None, fmt=config.output.format)
        meta = export_metadata(family=family.name, base_model=config.model.path.resolve().name, rank=t.rank,
                               alpha=alpha, steps=step, learning_rate=t.learning_rate, resolution=t.resolution,
                               sets=len(cached), trigger=config.dataset.trigger.strip(), fmt=config.output.format,
                               title=config.output.name, edit=plan.dataset.mode.value == "paired",
                               model_dir=config.model.path)
        return save_lora_file(config.output.lora_path, tensors, meta)

    def save_checkpoint(step: int) -> None:
        emit("status", phase="saving", message=f"checkpoint at step {step}")
        path = ckpt.save_checkpoint(run_dir, step, peft_state_dict(transformer), optimizer, scheduler,
                                    checkpoint_info)
        emit("checkpoint", step=step, path=str(path))

    def make_samples(step: int) -> None:
        emit("status", phase="sampling", message=f"previews at step {step}")
        transformer.eval()
        out_dir = run_dir / "samples"
        out_dir.mkdir(parents=True, exist_ok=True)
        for s in sample_sets:
            images = [resize_to(load_image(p), size) for p, size in zip(s.input_paths, s.input_sizes)]
            with torch.no_grad():
                image = family.sample(transformer, images, s.caption, s.bucket, t.sample_steps, t.seed)
            path = out_dir / f"{ckpt.step_name(step)}_{s.name}.png"
            _save_png(image, path)
            emit("sample", step=step, path=str(path), set=s.name, target=str(s.target_path))
        transformer.train()

    # 4. the loop.
    emit("status", phase="training", message=f"training {t.steps - start_step} steps")
    # ``accelerator.autocast()`` builds its context anew on every call (~30 µs); the one it
    # builds (torch.autocast, or a null context without mixed precision) can be re-entered.
    from accelerate.utils import get_mixed_precision_context_manager

    autocast = get_mixed_precision_context_manager(accelerator.native_amp, accelerator.autocast_handler)
    losses: list[float] = []
    step = start_step
    last_sampled = last_checkpointed = start_step if resume_from else -1
    paused = 0.0
    t0 = time.perf_counter()
    stopped = False
    agreed_stop = False  # multi-process: decided by all ranks together in _reduce
    while step < t.steps:
        if (stop.is_set() if world == 1 else agreed_stop):
            stopped = True
            break
        step += 1
        x0, inputs, prompt = batches.get(order.batch(step, rank, world), accelerator.device)
        noise, sigmas = noise_and_sigmas(tuple(x0.shape), t.seed, step, rank)
        noise = noise.to(accelerator.device, dtype)
        sigmas = sigmas.to(accelerator.device)
        s4 = sigmas.view(-1, 1, 1, 1).to(dtype)
        noisy = (1 - s4) * x0 + s4 * noise
        with autocast:
            pred = family.predict(transformer, noisy, sigmas.to(dtype), inputs, prompt)
        loss = F.mse_loss(pred.float(), (noise - x0).float())
        if fault and fault[1] == step:
            if fault[0] == "nan":
                loss = loss * float("nan")
            elif fault[0] == "raise":
                raise RuntimeError(f"test fault injected at step {step} ({FAULT_ENV})")
            elif fault[0] == "oom":
                raise torch.OutOfMemoryError(f"CUDA out of memory (test fault injected at step {step})")
        loss.backward()
        loss_value = None
        if world > 1:
            loss_value, agreed_stop = _reduce(accelerator, params, loss, stop)
        if t.max_grad_norm > 0:
            torch.nn.utils.clip_grad_norm_(params, t.max_grad_norm)
        loss_value = loss.item() if loss_value is None else loss_value  # the one sync per step
        if not math.isfinite(loss_value):
            raise TrainingError("nan", f"the loss became {loss_value} at step {step}; training stopped. "
                                       "Try a lower learning rate (the guide's range is 1e-4 … 5e-4). "
                                       "The last good checkpoint is kept.")
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        losses.append(loss_value)
        elapsed = time.perf_counter() - t0 - paused
        rate = (step - start_step) / elapsed if elapsed > 0 else 0.0
        emit("progress", step=step, total=t.steps, loss=loss_value, lr=scheduler.get_last_lr()[0],
             rate=rate, eta=(t.steps - step) / rate if rate > 0 else None)
        p0 = time.perf_counter()
        if main and t.sample_every and step % t.sample_every == 0 and step < t.steps:
            make_samples(step)
            last_sampled = step
        if main and t.checkpoint_every and step % t.checkpoint_every == 0 and step < t.steps:
            save_checkpoint(step)
            last_checkpointed = step
        paused += time.perf_counter() - p0

    # 5. the end (or a graceful stop): checkpoint, samples, LoRA, done.
    lora_path = None
    if stopped:
        emit("status", phase="stopping", message=f"stopping after step {step} ({stop.reason})")
    if main:
        if step != last_checkpointed and step > 0:
            save_checkpoint(step)
        if not stopped and step != last_sampled and t.sample_sets:
            make_samples(step)
        if step > 0:  # stopped before step 1: nothing learned, so an earlier LoRA file stays as it was
            lora_path = save_lora(step)
    if world > 1:
        accelerator.wait_for_everyone()
    emit("done", lora=str(lora_path) if lora_path else None, step=step, stopped=stopped)
    return Result(lora=lora_path, step=step, stopped=stopped, losses=losses,
                  transformer=transformer if keep_model else None, family=family if keep_model else None,
                  cached=cached if keep_model else [])


def _reduce(accelerator, params: list[torch.nn.Parameter], loss: torch.Tensor,
            stop: StopSignal) -> tuple[float, bool]:
    """One all-reduce per step: mean gradients, mean loss, and whether any rank wants to stop."""
    import torch.distributed as dist

    grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in params]
    extra = torch.stack([loss.detach().float(), torch.tensor(1.0 if stop.is_set() else 0.0, device=loss.device)])
    flat = torch.cat([g.reshape(-1).float() for g in grads] + [extra])
    dist.all_reduce(flat)
    flat /= accelerator.num_processes
    offset = 0
    for p, g in zip(params, grads):
        n = g.numel()
        p.grad = flat[offset:offset + n].view_as(g).to(g.dtype)
        offset += n
    loss_mean, stop_any = flat[offset].item(), flat[offset + 1].item()
    if stop_any > 0:
        stop.request(stop.reason or "another process stopped")
    return loss_mean, stop_any > 0


def _save_png(image, path: Path) -> None:
    import io

    from lorastudio.fileio import atomic_write_bytes

    buf = io.BytesIO()
    image.save(buf, format="PNG")
    atomic_write_bytes(path, buf.getvalue())


def classify(exc: BaseException) -> tuple[str, str]:
    """(kind, message) of an exception for the ``error`` event."""
    if isinstance(exc, TrainingError):
        return exc.kind, exc.message
    if isinstance(exc, ConfigError):
        return "config", str(exc)
    from lorastudio.dataset import ImageError

    if isinstance(exc, ImageError):
        return "data", str(exc)
    try:
        from lorastudio.training.families import ModelFolderError

        if isinstance(exc, ModelFolderError):
            return "config", f"model.path: {exc}"
    except ImportError:  # pragma: no cover
        pass
    text = str(exc)
    if isinstance(exc, torch.OutOfMemoryError) or "out of memory" in text.lower():
        return "oom", ("out of GPU memory: " + text.splitlines()[0] if text else "out of GPU memory") + \
            " — try train.gradient_checkpointing = true, train.quantization = \"int8\" (or \"int4\"), " \
            "a lower train.resolution or rank; `lorastudio train CONFIG --dry-run` estimates the memory"
    return "crash", f"{type(exc).__name__}: {text}"


def describe_plan(plan: Plan) -> list[str]:
    """Readable lines for ``train --dry-run``: family, sets, buckets, steps (no model loaded)."""
    from lorastudio.training.buckets import bucket_size
    from lorastudio.dataset import image_size

    c = plan.config
    fam = plan.family_cls
    lines = [f"family:     {fam.display_name} ({fam.name})",
             f"model:      {c.model.path}",
             f"dataset:    {c.dataset.path} ({plan.dataset.mode.value}, {len(plan.sets)} sets to train"
             + (f", {len(plan.skipped)} skipped for errors" if plan.skipped else "") + ")",
             f"steps:      {c.train.steps} (batch {c.train.batch_size}, learning rate {c.train.learning_rate:g}, "
             f"rank {c.train.rank}, alpha {c.train.alpha or c.train.rank:g})",
             f"resolution: {c.train.resolution} (area {c.train.resolution}² per target)",
             f"output:     {c.output.lora_path} ({c.output.format} format)",
             f"run folder: {c.output.run_dir}"]
    buckets: dict[tuple[int, int], int] = {}
    for s in plan.sets:
        assert s.target is not None
        w, h = s.image_sizes.get(s.target) or image_size(s.target)
        b = bucket_size(w, h, c.train.resolution, fam.size_multiple)
        buckets[b] = buckets.get(b, 0) + 1
    lines.append("buckets:    " + ", ".join(f"{w}x{h}: {n}" for (w, h), n in sorted(buckets.items())))
    lines += describe_estimate(plan)
    return lines


def describe_estimate(plan: Plan) -> list[str]:
    """The memory/time estimate for the plan (``lorastudio.estimate``), and whether it fits
    this machine's GPU when there is one. The sequence counts the most inputs any set has."""
    from lorastudio.estimate import EstimateError, estimate_for_config

    inputs = max((len(s.inputs) for s in plan.sets), default=0)
    try:
        est = estimate_for_config(plan.config, num_inputs=inputs)
    except EstimateError as exc:
        return [f"estimate:   not available ({exc})"]
    lines = est.lines(plan.config.train.steps)
    if torch.cuda.is_available():
        props = torch.cuda.get_device_properties(0)
        total = props.total_memory / 1024 ** 3
        verdict = "fits" if est.total_gb <= total else "does NOT fit: choose a smaller 'Fit to my GPU' preset"
        lines.append(f"this GPU:   {props.name}, {total:.1f} GB: {verdict}")
    else:
        lines.append("this GPU:   none found (training would run on the CPU, very slowly)")
    return lines
