"""The batch and the noise of a step: pure functions of ``(seed, step)`` and the process rank.

Not of a generator's running state, so a run resumed from a checkpoint draws exactly what an
uninterrupted run would have drawn (on the CPU the final LoRA is bit-identical). With
several processes every rank takes its own batch: global batch index ``(step-1)·world + rank``.
"""

from __future__ import annotations

import math

import torch

from lorastudio.training.cache import CachedSet
from lorastudio.training.families.base import EncodedPrompt
from lorastudio.training.timesteps import TimestepSampler


def _mix(*values: int) -> int:
    h = 0x9E3779B97F4A7C15
    for v in values:
        h = (h ^ (int(v) & 0xFFFFFFFFFFFFFFFF)) * 0xBF58476D1CE4E5B9 & 0xFFFFFFFFFFFFFFFF
        h ^= h >> 31
    return h & 0x7FFFFFFFFFFFFFFF


class BatchOrder:
    """Which sets make up the batch of a step: each epoch a seeded shuffle of same-shape batches.

    ``repeats`` (``dataset.repeats``): a set named there appears that many times per epoch
    (kohya/musubi-tuner's ``num_repeats``), so a rare case is seen more often."""

    def __init__(self, cached: list[CachedSet], batch_size: int, seed: int,
                 repeats: dict[str, int] | None = None) -> None:
        repeats = repeats or {}
        groups: dict[tuple, list[int]] = {}
        for i, s in enumerate(cached):
            groups.setdefault((s.bucket, tuple(s.input_sizes)), []).extend([i] * (repeats.get(s.name, 1) if repeats else 1))
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


def collate(family, items: list[CachedSet], device: torch.device, dtype: torch.dtype,
            prompts: list[dict[str, torch.Tensor]] | None = None):
    """Stack a batch: target (B,C,h,w), inputs [(B,C,h_i,w_i)…], prompt tensors (B,…).

    Cached prompt tensors have no batch dimension; the family batches them
    (``ModelFamily.collate_prompts``: Qwen pads and masks prompts of different lengths).
    """
    target = torch.stack([s.target for s in items]).to(device, dtype)
    inputs = [torch.stack([s.inputs[j] for s in items]).to(device, dtype) for j in range(len(items[0].inputs))]
    prompts = prompts if prompts is not None else [s.prompt for s in items]
    batched = family.collate_prompts([EncodedPrompt(p) for p in prompts])
    prompt = {k: (t.to(device, dtype) if t.is_floating_point() else t.to(device)) for k, t in batched.items()}
    return target, inputs, prompt


class Batches:
    """Collated batches; with batch size 1 each set is collated once (on the CPU) and reused.

    ``empty_prompts[i]``: set i's empty-caption encoding (caption dropout), when dropout is on."""

    def __init__(self, family, cached: list[CachedSet], dtype: torch.dtype, memo: bool,
                 empty_prompts: list[dict[str, torch.Tensor]] | None = None) -> None:
        self.family, self.cached, self.dtype, self.memo = family, cached, dtype, memo
        self.empty_prompts = empty_prompts
        self._done: dict[tuple, tuple] = {}

    def get(self, indices: list[int], device: torch.device, dropped: list[bool] | None = None):
        dropped = tuple(dropped) if dropped and any(dropped) else ()
        key = (tuple(indices), dropped)
        batch = self._done.get(key)
        if batch is None:
            items = [self.cached[i] for i in indices]
            prompts = None
            if dropped:
                assert self.empty_prompts is not None, "caption dropout needs the empty-caption encodings"
                prompts = [self.empty_prompts[i] if d else s.prompt for i, s, d in zip(indices, items, dropped)]
            batch = collate(self.family, items, torch.device("cpu"), self.dtype, prompts)
            if self.memo:
                self._done[key] = batch
        x0, inputs, prompt = batch
        if device.type == "cpu":
            return x0, inputs, prompt
        return (x0.to(device, non_blocking=True), [i.to(device, non_blocking=True) for i in inputs],
                {k: v.to(device, non_blocking=True) for k, v in prompt.items()})


def noise_and_sigmas(shape: tuple[int, ...], seed: int, step: int, rank: int,
                     sampler: TimestepSampler | None = None, seq_len: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """The step's noise, then its σ from the same generator (``train.timesteps``; the
    default is logit-normal(0, 1)). ``seq_len``: the target's image tokens (``shift``)."""
    g = torch.Generator().manual_seed(_mix(seed, step, rank, 0x5EED))
    noise = torch.randn(shape, generator=g)
    sigmas = (sampler or _DEFAULT_SAMPLER).sigmas(g, shape[0], seq_len)
    return noise, sigmas


_DEFAULT_SAMPLER = TimestepSampler()


def dropped_captions(batch: int, probability: float, seed: int, step: int, rank: int) -> list[bool]:
    """Which of a step's ``batch`` items train on the empty caption (``dataset.caption_dropout``).

    A generator of its own, seeded from (seed, step, rank): the noise and data order are
    the same with or without dropout, and with 0 nothing is drawn at all."""
    if probability <= 0:
        return [False] * batch
    g = torch.Generator().manual_seed(_mix(seed, step, rank, 0xD809))
    return (torch.rand(batch, generator=g) < probability).tolist()
