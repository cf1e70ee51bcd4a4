"""Held-out validation (``dataset.validation``, issue 14): a loss that says whether the LoRA
generalises, and the bookkeeping of the best checkpoint and early stop.

The loss is the training loss on sets the run never trains on, computed as training computes
it — the family's own ``predict`` with each set's input images in the sequence — but at fixed
noise levels σ ∈ :data:`SIGMAS` and with fixed noise per (set, σ)::

    noisy = (1 - σ)·x0 + σ·noise(seed, set, σ)
    loss(σ) = mean over the held-out sets of MSE(predict(noisy, σ, inputs, prompt), noise - x0)
    loss    = mean over σ of loss(σ)

so it moves only when the weights do (the training loss is dominated by which σ a step
drew). Each (set, σ)'s noise comes from a ``torch.Generator`` of its own, seeded from
(seed, set name, σ): validation never draws from the training's random streams, so a run's
LoRA is bit-identical with and without it, and a resumed run reproduces its numbers. It runs
under ``no_grad`` with the model in eval mode (the trainer applies the EMA weights around it
when ``train.ema_decay`` is on, as for previews).

:class:`ValidationRecord` keeps what the numbers decide: ``NAME.run/validation.jsonl`` (one
``validation`` event per line), the best evaluation so far and how many evaluations have
passed without a new one (``train.early_stop``), and which checkpoint is the best (lowest
``validation_loss`` in its manifest; ``checkpoint.prune`` keeps it). A resumed run reads all
of it back from the checkpoints' manifests.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from pathlib import Path
from typing import Any

import torch

from lorastudio import protocol, run_folder
from lorastudio.fileio import atomic_write_text
from lorastudio.training.batches import collate
from lorastudio.training.cache import CachedSet

#: The fixed noise levels of every evaluation (low σ: detail; high σ: composition).
SIGMAS = (0.1, 0.3, 0.5, 0.7, 0.9)


def sigma_key(sigma: float) -> str:
    """``"0.1"``: the key of σ in the event's ``per_sigma``."""
    return f"{sigma:g}"


def fixed_noise(shape: tuple[int, ...], seed: int, set_name: str, sigma: float) -> torch.Tensor:
    """The noise of (set, σ): its own generator, seeded from (seed, set name, σ) alone."""
    digest = hashlib.sha256(json.dumps(["validation", seed, set_name, sigma_key(sigma)]).encode("utf-8")).digest()
    generator = torch.Generator().manual_seed(int.from_bytes(digest[:8], "little") & 0x7FFFFFFFFFFFFFFF)
    return torch.randn(shape, generator=generator)


def validation_every(train) -> int:
    """``train.validate_every``; unset means with the previews (``sample_every``)."""
    return train.sample_every if train.validate_every is None else train.validate_every


class Validator:
    """The held-out sets, collated once (on the CPU) with their fixed noise per σ. Each set is
    one forward pass of batch ``len(SIGMAS)`` (one item per σ): half the time of five passes
    on a CPU, and a no-grad forward holds one block's activations at a time."""

    def __init__(self, family, sets: list[CachedSet], seed: int, dtype: torch.dtype, device: torch.device) -> None:
        self.family, self.dtype, self.device = family, dtype, device
        self.items = []
        for s in sets:
            x0, inputs, prompt = collate(family, [s] * len(SIGMAS), torch.device("cpu"), dtype)
            noise = torch.cat([fixed_noise((1, *x0.shape[1:]), seed, s.name, sigma) for sigma in SIGMAS]).to(dtype)
            self.items.append((x0, inputs, prompt, noise))

    @torch.no_grad()
    def evaluate(self, transformer: torch.nn.Module, autocast=None) -> tuple[float, dict[str, float]]:
        """(loss, per-σ losses) of ``transformer``'s weights as they are now; deterministic."""
        was_training = transformer.training
        transformer.eval()  # no dropout: the same weights give the same number
        sigmas = torch.tensor(SIGMAS, device=self.device)
        s4 = sigmas.view(-1, 1, 1, 1).to(self.dtype)
        sums = torch.zeros(len(SIGMAS), dtype=torch.float64)
        try:
            for x0, inputs, prompt, noise in self.items:
                x0, noise = x0.to(self.device), noise.to(self.device)
                inputs = [i.to(self.device) for i in inputs]
                prompt = {k: v.to(self.device) for k, v in prompt.items()}
                noisy = (1 - s4) * x0 + s4 * noise
                with autocast if autocast is not None else contextlib.nullcontext():
                    pred = self.family.predict(transformer, noisy, sigmas.to(self.dtype), inputs, prompt)
                # the training loss (F.mse_loss) of each σ's item
                sums += (pred.float() - (noise - x0).float()).pow(2).mean(dim=(1, 2, 3)).double().cpu()
        finally:
            transformer.train(was_training)
        per_sigma = {sigma_key(s): float(total) / len(self.items) for s, total in zip(SIGMAS, sums)}
        return sum(per_sigma.values()) / len(per_sigma), per_sigma


class ValidationRecord:
    """The run's validation history: the jsonl file, the best evaluation, early stop, and
    the best checkpoint. Main process only."""

    def __init__(self, run_dir: Path, early_stop: int, resume_from: run_folder.Checkpoint | None) -> None:
        self.run_dir = Path(run_dir)
        self.early_stop = early_stop
        self.path = run_folder.validation_path(run_dir)
        #: step → loss of this run's evaluations (those a resumed run reads back included).
        self.losses: dict[int, float] = {}
        manifest = resume_from.manifest if resume_from else {}
        #: The lowest loss any evaluation has had, its step, and evaluations since then.
        self.best_loss: float | None = manifest.get("validation_best_loss")
        self.best_step: int | None = manifest.get("validation_best_step")
        self.since_best: int = manifest.get("validations_since_best", 0)
        self._keep_history(resume_from.step if resume_from else 0)

    def _keep_history(self, step: int) -> None:
        """A fresh run starts the file anew; a resumed one keeps the lines up to its checkpoint
        (the killed run may have written some after it) and knows their losses."""
        kept = run_folder.validation_events(self.run_dir, up_to=step) if step else []
        self.losses.update({int(event["step"]): float(event["loss"]) for event in kept})
        if kept or self.path.exists():
            atomic_write_text(self.path, "".join(protocol.encode(event) + "\n" for event in kept))

    def add(self, step: int, loss: float, per_sigma: dict[str, float]) -> dict[str, Any]:
        """Record an evaluation: the event (also appended to ``validation.jsonl``)."""
        event = protocol.make_event(protocol.VALIDATION, step=step, loss=loss, per_sigma=per_sigma)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path, "a", encoding="utf-8") as fh:
            fh.write(protocol.encode(event) + "\n")
        self.losses[step] = loss
        if self.best_loss is None or loss < self.best_loss:
            self.best_loss, self.best_step, self.since_best = loss, step, 0
        else:
            self.since_best += 1
        return event

    def early_stop_reason(self) -> str | None:
        """Why to stop now (``train.early_stop`` evaluations without a new best), or None."""
        if not self.early_stop or self.since_best < self.early_stop:
            return None
        return (f"early stop: no new best held-out loss in {self.since_best} evaluations "
                f"(the best is {self.best_loss:.4g} at step {self.best_step})")

    def best_checkpoint_step(self) -> int | None:
        """The step of the best checkpoint on disk (the lowest ``validation_loss``), or None."""
        best = run_folder.lowest_validation_loss(run_folder.list_checkpoints(self.run_dir))
        return best.step if best else None

    def checkpoint_info(self, step: int) -> dict[str, Any]:
        """The manifest keys of a checkpoint at ``step``: its ``validation_loss`` (None without
        validation), whether it is the best checkpoint, and the early-stop state to resume."""
        loss = self.losses.get(step)
        best = run_folder.lowest_validation_loss(run_folder.list_checkpoints(self.run_dir))
        is_best = loss is not None and (best is None or best.step == step or loss < best.manifest["validation_loss"])
        return {"validation_loss": loss, "best": is_best, "validation_best_loss": self.best_loss,
                "validation_best_step": self.best_step, "validations_since_best": self.since_best}


def retire_history(run_dir: Path, best_lora: Path, retired: Path | None) -> None:
    """A fresh run's validation starts anew: the previous run's ``validation.jsonl`` and best
    LoRA go with its checkpoints to ``checkpoints.previous/`` (``retired``); with no
    checkpoints to go with, the stale history is dropped and the LoRA file left alone."""
    history = run_folder.validation_path(run_dir)
    for path in (history, Path(best_lora)):
        if not path.is_file():
            continue
        if retired is not None:
            os.replace(path, retired / path.name)
        elif path == history:
            path.unlink()
