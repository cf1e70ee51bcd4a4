"""The training loop, top to bottom (nanoGPT-style): one function, :func:`train`.

    config → dataset → accelerator → cache latents/text → free encoders → transformer + LoRA
    → AdamW + LR schedule (+ EMA) → steps 1…total (flow matching) → samples/validation/checkpoints
    → LoRA file (+ the best checkpoint's) → done

Everything model-specific (how latents become tokens, position ids, how inputs join the
sequence) is behind the family interface (``families/base.py``); this file only moves
cached tensors, draws noise, and steps the optimizer. Around it: ``plan.py`` (what a run
will do, the dry-run text, how an exception becomes an ``error`` event), ``batches.py``
(which sets make a step's batch, and its noise), ``distributed.py`` (the per-step
all-reduce), ``optimizer.py`` and ``memory.py`` (AdamW; quantization, offload, checkpointing),
``validation.py`` (the held-out loss, the best checkpoint, early stop).

Flow matching (rectified flow, as FLUX and Qwen-Image are trained)::

    x0     = target latents            noise ~ N(0, I)
    σ      = sigmoid(u), u ~ N(0, 1)   ("logit-normal" timesteps by default, as diffusers' FLUX
                                         DreamBooth script and SD3/FLUX trainers use: most
                                         samples in the middle, few near pure noise/clean;
                                         ``train.timesteps`` chooses another: timesteps.py)
    noisy  = (1 - σ)·x0 + σ·noise
    target = noise - x0                 (the velocity the transformer predicts)
    loss   = MSE(family.predict(noisy, σ, inputs, prompt), target)

Determinism: data order and noise are pure functions of ``(seed, step)`` (and the process
rank; ``batches.py``), so a run resumed from a checkpoint draws exactly what an uninterrupted
run would have drawn: on the CPU the final LoRA is bit-identical.

Multi-process (``accelerate launch -m lorastudio train CONFIG``): every rank trains on its own
batch (global batch index ``(step-1)·world + rank``); gradients, the loss and the stop flag
are averaged in one all-reduce per step; only rank 0 emits events and writes files.
"""

from __future__ import annotations

import contextlib
import gc
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from lorastudio import __version__, catalog, run_folder
from lorastudio.config import Config, save_config
from lorastudio.dataset import load_image
from lorastudio.fileio import writing
from lorastudio.training import checkpoint as ckpt
from lorastudio.training import memory
from lorastudio.training.batches import Batches, BatchOrder, dropped_captions, noise_and_sigmas
from lorastudio.training.buckets import resize_to
from lorastudio.training.cache import CachedSet, TrainingCache
from lorastudio.training.distributed import reduce_step
from lorastudio.training.ema import LoraEMA
from lorastudio.training.events import EventSink
from lorastudio.training.lora import add_lora, load_peft_state_dict, peft_state_dict
from lorastudio.training.optimizer import make_optimizer
from lorastudio.training.plan import Plan, TrainingError, make_plan, recipe_facts
from lorastudio.training.run_lora import RunLora
from lorastudio.training.stop import StopSignal
from lorastudio.training.timesteps import TimestepSampler, image_seq_len
from lorastudio.training.tracking import Tracker, logs_dir
from lorastudio.training.validation import ValidationRecord, Validator, retire_history, validation_every

#: ``train.lr_schedule`` → diffusers' ``get_scheduler`` name (each with ``warmup_steps``).
LR_SCHEDULERS = {"constant": "constant_with_warmup", "linear": "linear", "cosine": "cosine"}


@dataclass
class Result:
    lora: Path | None
    step: int
    stopped: bool
    losses: list[float]
    #: ``NAME.best.safetensors`` (the best checkpoint's LoRA) when validation ran.
    best: Path | None = None
    transformer: Any = None
    family: Any = None
    cached: list = field(default_factory=list)
    held_out: list = field(default_factory=list)


# -- the run ------------------------------------------------------------------------------

def _accelerator(config: Config):
    from accelerate import Accelerator

    mp = config.train.mixed_precision
    cuda = torch.cuda.is_available()
    if mp == "auto":
        mp = "bf16" if cuda and torch.cuda.is_bf16_supported() else "no"
    if not cuda and mp != "no":
        mp = "no"  # fp32 on the CPU
    tracking = {"log_with": config.train.log_with, "project_dir": str(logs_dir(config.output.run_dir))} \
        if config.train.log_with else {}
    accelerator = Accelerator(mixed_precision=mp, cpu=not cuda, **tracking)
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(mp, torch.float32)
    return accelerator, dtype


def train(config: Config, sink: EventSink, resume: bool = False, stop: StopSignal | None = None,
          plan: Plan | None = None, keep_model: bool = False) -> Result:
    """Train a LoRA as ``config`` says, emitting events on ``sink``. Raises TrainingError."""
    stop = stop or StopSignal()
    t = config.train

    # 1. config, family, dataset: everything that can be wrong before a model loads.
    plan = plan or make_plan(config)
    accelerator, dtype = _accelerator(config)
    main, rank, world = accelerator.is_main_process, accelerator.process_index, accelerator.num_processes
    emit = sink.emit if main else (lambda *a, **k: None)
    run_dir = config.output.run_dir
    if main:
        run_dir.mkdir(parents=True, exist_ok=True)
        # the folder says which run it is (export, grid): model, dataset and output where this run found them
        save_config(config, run_folder.config_path(run_dir), relative=False)
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
    family.use_input_size(t.input_size)  # inputs sized as train.input_size says, in training and previews
    lora_format = catalog.resolve_format(config.output.format, family.name)  # "auto" → the family's
    format_warning = catalog.comfyui_warning(config.output.format, family.name, t.adapter)  # an explicit choice is kept
    if format_warning:
        notes.append(format_warning)
    checkpoint_info = {"total": t.steps, "family": family.name, "rank": t.rank, "alpha": t.alpha or float(t.rank),
                       "seed": t.seed, "version": __version__, "optimizer": t.optimizer, "ema_decay": t.ema_decay,
                       "adapter": t.adapter, "lokr_factor": t.lokr_factor,
                       "validation_sets": sorted(config.dataset.validation), "input_size": family.input_size_rule}
    if resume_from is not None:
        # optimizer: its saved state's layout; ema_decay: whether the EMA weights are there;
        # validation_sets: the held-out sets decide which sets train, so the batches drawn;
        # input_size: the rule "auto" resolved to (a family's default can change between versions)
        for key in ("family", "rank", "alpha", "optimizer", "ema_decay", "adapter", "lokr_factor", "validation_sets",
                    "input_size"):
            saved = resume_from.manifest.get(key)
            if saved is not None and saved != checkpoint_info[key]:
                where = {"family": "model.path", "validation_sets": "dataset.validation"}.get(key, f"train.{key}")
                raise TrainingError("config", f"{where}: the checkpoint at step {resume_from.step} was trained with "
                                              f"{key} {saved!r}, the config now says {checkpoint_info[key]!r}; "
                                              "resume needs the same setting (or start a new run)")
    if main and resume_from is None:
        retired = ckpt.retire_checkpoints(run_dir)  # a fresh run never mixes with an older one
        retire_history(run_dir, config.output.best_lora_path, retired)
        if retired is not None:
            notes.append(f"the previous run's checkpoints were moved to {retired}")
    emit("started", total=t.steps, family=family.name, sets=len(plan.sets), run_dir=str(run_dir),
         resumed_from=start_step)
    for note in notes + plan.warnings:
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
            cache = TrainingCache(run_folder.cache_dir(run_dir), family, t.resolution, config.dataset.trigger,
                                  config.dataset.default_caption, write=main)
            cached = cache.build(plan.sets + plan.validation, on_progress=lambda i, n: emit(
                "status", phase="caching", message="encoding images and captions", current=i, total=n),
                should_stop=stop.is_set if world == 1 else None, previews=t.sample_sets if main else 0,
                empty_captions=config.dataset.caption_dropout > 0)
        if world > 1:
            accelerator.wait_for_everyone()
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    if stop.is_set() and len(cached) < len(plan.sets) + len(plan.validation):
        emit("status", phase="stopping", message="stopped while caching; nothing trained yet")
        emit("done", lora=None, step=start_step, stopped=True)
        return Result(lora=None, step=start_step, stopped=True, losses=[])
    cached, held_out = cached[: len(plan.sets)], cached[len(plan.sets):]  # held-out sets: validated only

    # 3. transformer + LoRA, optimizer, schedule.
    emit("status", phase="loading", message="loading the transformer")
    transformer = memory.load_transformer(family, t)  # quantized blocks when train.quantization
    torch.manual_seed(t.seed)  # LoRA init does not depend on what loading consumed
    alpha = t.alpha or float(t.rank)
    params = add_lora(transformer, t.rank, alpha, family.lora_target_modules, t.adapter, t.lokr_factor)
    memory.place_transformer(transformer, accelerator.device, t)  # + checkpointing, block offload
    transformer.train()
    optimizer = make_optimizer(params, t, lambda message: emit("status", phase="loading", message=message))
    from diffusers.optimization import get_scheduler

    # the schedule's step counter is in the checkpoint; its shape comes from the config
    scheduler = get_scheduler(LR_SCHEDULERS[t.lr_schedule], optimizer, num_warmup_steps=t.warmup_steps,
                              num_training_steps=t.steps)
    if resume_from is not None:
        lora_state = ckpt.load_checkpoint(resume_from, optimizer, scheduler)
        load_peft_state_dict(transformer, {k: v.to(accelerator.device) for k, v in lora_state.items()})
    ema = LoraEMA(params, t.ema_decay) if t.ema_decay else None
    if ema is not None and resume_from is not None:
        try:
            ema.load(ckpt.load_extra(resume_from, "ema"), resume_from.manifest)
        except FileNotFoundError as exc:
            raise TrainingError("config", f"train.ema_decay: {exc}") from None
    order = BatchOrder(cached, t.batch_size, t.seed, config.dataset.repeats)
    empty_prompts = [s.empty_prompt for s in cached] if config.dataset.caption_dropout > 0 else None
    batches = Batches(family, cached, dtype, memo=t.batch_size == 1, empty_prompts=empty_prompts)
    sampler = TimestepSampler.from_config(t, family.name, config.model.path)
    sample_sets = cached[: t.sample_sets]
    tracker = Tracker(accelerator, t.log_with, recipe_facts(config, plan))
    validator = Validator(family, held_out, t.seed, dtype, accelerator.device) if held_out and main else None
    record = ValidationRecord(run_dir, t.early_stop, resume_from) if validator else None
    every_validation = validation_every(t)

    lora_file = RunLora(config, family.name, lora_format, sets=len(cached), edit=plan.dataset.mode.value == "paired",
                        dtype=dtype, ema=ema is not None)
    checkpoint_info.update(lora_file.manifest_facts())  # so `lorastudio export` writes what we would

    def save_lora(step: int, path: Path | None = None) -> Path:
        """The LoRA at ``step`` as NAME.safetensors, or at ``path`` (the best checkpoint's)."""
        emit("status", phase="saving", message=f"writing the best checkpoint's LoRA (step {step})" if path
             else "writing the LoRA")
        if ema is None:
            return lora_file.write(path or config.output.lora_path, peft_state_dict(transformer), step,
                                   transformer=transformer)
        if path is None:  # the last step's weights, beside the EMA LoRA
            lora_file.write(config.output.raw_lora_path, peft_state_dict(transformer), step, "raw", transformer)
        with ema.applied():
            return lora_file.write(path or config.output.lora_path, peft_state_dict(transformer), step, "ema",
                                   transformer)

    def validate(step: int) -> None:
        """The held-out loss at ``step`` (once per step), with the weights previews show;
        after ``train.early_stop`` evaluations without a new best, a graceful stop."""
        if record is None or step in record.losses:
            return
        with ema.applied() if ema else contextlib.nullcontext():
            loss, per_sigma = validator.evaluate(transformer, autocast)
        emit(**record.add(step, loss, per_sigma))
        tracker.log({"validation/loss": loss}, step)
        reason = record.early_stop_reason()
        if reason:
            stop.request(reason)

    def save_checkpoint(step: int) -> None:
        validate(step)  # every checkpoint carries its validation_loss
        scores = record.checkpoint_info(step) if record else {"validation_loss": None, "best": False}
        emit("status", phase="saving", message=f"checkpoint at step {step}")
        with writing():  # the save and its event are one: an error reported meanwhile waits for both
            path = ckpt.save_checkpoint(run_dir, step, peft_state_dict(transformer), optimizer, scheduler,
                                        {**checkpoint_info, **(ema.info() if ema else {}), **scores},
                                        extra={"ema": ema.tensors()} if ema else None)
            emit("checkpoint", step=step, path=str(path))
        if scores["best"]:  # the best checkpoint's LoRA, beside the last step's
            ckpt.mark_best(run_dir, step)
            save_lora(step, config.output.best_lora_path)

    def make_samples(step: int) -> None:
        emit("status", phase="sampling", message=f"previews at step {step}")
        transformer.eval()
        with ema.applied() if ema else contextlib.nullcontext():  # previews show what the file will hold
            for s in sample_sets:
                images = [resize_to(load_image(p), size) for p, size in zip(s.input_paths, s.input_sizes)]
                with torch.no_grad():
                    image = family.sample(transformer, images, s.caption, s.bucket, t.sample_steps, t.seed)
                path = run_folder.sample_path(run_dir, step, s.name)
                path.parent.mkdir(parents=True, exist_ok=True)
                _save_png(image, path)
                tracker.image(s.name, image, step)
                emit("sample", step=step, path=str(path), set=s.name, target=str(s.target_path))
        transformer.train()

    # 4. the loop.
    if record is not None and resume_from is not None and record.best_checkpoint_step() == resume_from.step:
        save_lora(start_step, config.output.best_lora_path)  # a kill may have come between checkpoint and file
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
        # stop between steps: the GUI's stop, Ctrl+C, or (multi-process) any rank's, agreed in the all-reduce
        if (stop.is_set() if world == 1 else agreed_stop):
            stopped = True
            break
        step += 1
        stop.begin_step(step)  # every earlier step's checkpoint is written (see worker.RankErrors)

        # the batch, its caption dropout and its noise: pure functions of (seed, step, rank)
        indices = order.batch(step, rank, world)
        dropped = dropped_captions(len(indices), config.dataset.caption_dropout, t.seed, step, rank)
        x0, inputs, prompt = batches.get(indices, accelerator.device, dropped)
        noise, sigmas = noise_and_sigmas(tuple(x0.shape), t.seed, step, rank, sampler,
                                         image_seq_len(cached[indices[0]].bucket))
        noise = noise.to(accelerator.device, dtype)
        sigmas = sigmas.to(accelerator.device)

        # forward: noise the target to σ, predict the velocity, flow-matching MSE
        s4 = sigmas.view(-1, 1, 1, 1).to(dtype)
        noisy = (1 - s4) * x0 + s4 * noise
        with autocast:
            pred = family.predict(transformer, noisy, sigmas.to(dtype), inputs, prompt)
        loss = F.mse_loss(pred.float(), (noise - x0).float())

        # backward; with several processes, average gradients, loss and the stop flag
        loss.backward()
        loss_value = None
        if world > 1:
            loss_value, agreed_stop = reduce_step(accelerator, params, loss, stop)
        if t.max_grad_norm > 0:
            torch.nn.utils.clip_grad_norm_(params, t.max_grad_norm)

        # a non-finite loss ends the run before the optimizer can spread it into the weights
        loss_value = loss.item() if loss_value is None else loss_value  # the one sync per step
        if not math.isfinite(loss_value):
            raise TrainingError("nan", f"the loss became {loss_value} at step {step}; training stopped. "
                                       "Try a lower learning rate (the guide's range is 1e-4 … 5e-4). "
                                       "The last good checkpoint is kept.")

        # step the optimizer and the learning-rate schedule
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        if ema is not None:
            ema.step()

        # report progress (the rate leaves out the time spent on previews and checkpoints)
        losses.append(loss_value)
        elapsed = time.perf_counter() - t0 - paused
        rate = (step - start_step) / elapsed if elapsed > 0 else 0.0
        lr = scheduler.get_last_lr()[0]
        emit("progress", step=step, total=t.steps, loss=loss_value, lr=lr,
             rate=rate, eta=(t.steps - step) / rate if rate > 0 else None)
        tracker.log({"loss": loss_value, "lr": lr}, step)

        # previews and checkpoints every so many steps (rank 0 only; the last step's come after the loop)
        p0 = time.perf_counter()
        if main and t.sample_every and step % t.sample_every == 0 and step < t.steps:
            make_samples(step)
            last_sampled = step
        if main and every_validation and step % every_validation == 0 and step < t.steps:
            validate(step)
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
    tracker.end()
    if world > 1:
        accelerator.wait_for_everyone()
        # Tear gloo/NCCL down before the interpreter exits: left to exit-time destructors, a
        # process group's threads could still be running ("terminate called without an active
        # exception", SIGABRT, seen once in a two-process run that had otherwise finished).
        accelerator.state.destroy_process_group()
    best = config.output.best_lora_path if record and record.losses and config.output.best_lora_path.is_file() else None
    emit("done", lora=str(lora_path) if lora_path else None, step=step, stopped=stopped,
         **({"best": str(best)} if best else {}))
    return Result(lora=lora_path, step=step, stopped=stopped, losses=losses, best=best,
                  transformer=transformer if keep_model else None, family=family if keep_model else None,
                  cached=cached if keep_model else [], held_out=held_out if keep_model else [])


def _save_png(image, path: Path) -> None:
    import io

    from lorastudio.fileio import atomic_write_bytes

    buf = io.BytesIO()
    image.save(buf, format="PNG")
    atomic_write_bytes(path, buf.getvalue())


