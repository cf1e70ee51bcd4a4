"""The optimizer: torch's AdamW, or bitsandbytes' AdamW8bit (train.optimizer = "adamw8bit").

The 8-bit states save memory on large models (``memory.py`` explains why bitsandbytes);
the update is AdamW's either way, with the same settings.
"""

from __future__ import annotations

from typing import Callable

import torch


def make_optimizer(params: list[torch.nn.Parameter], train_config,
                   warn: Callable[[str], None]) -> torch.optim.Optimizer:
    """AdamW (weight decay 1e-2, as before) or bitsandbytes' AdamW8bit with the same settings.

    Where bitsandbytes is missing or cannot run on this device, falls back to AdamW and says
    so through ``warn`` (a status event), instead of failing the run.
    """
    kwargs = dict(lr=train_config.learning_rate, betas=(0.9, 0.999), weight_decay=1e-2, eps=1e-8)
    if train_config.optimizer == "adamw8bit":
        try:
            import bitsandbytes as bnb

            optimizer = bnb.optim.AdamW8bit(params, **kwargs)
            _probe(optimizer, params)
            return optimizer
        except Exception as exc:  # ImportError, or no backend for this device
            warn(f"8-bit AdamW is not available here ({type(exc).__name__}: {str(exc)[:160]}); "
                 "using the standard AdamW (more memory for the optimizer states, same training)")
    # foreach: torch's default on CUDA, not on the CPU, where the per-tensor Python loop over a
    # few hundred LoRA tensors costs 1–2 % of a step; the same kernels, so the same bits
    # (tests/training/test_loop_reference.py compares with the default AdamW).
    return torch.optim.AdamW(params, **kwargs, foreach=True)


def _probe(optimizer: torch.optim.Optimizer, params: list[torch.nn.Parameter]) -> None:
    """Run one step with zero learning rate and zero gradients, so a backend that cannot run
    on this device fails now (and falls back) rather than at step 1; then reset the state."""
    saved = [g["lr"] for g in optimizer.param_groups]
    for g in optimizer.param_groups:
        g["lr"] = 0.0
    grads = [p.grad for p in params]
    values = [p.detach().clone() for p in params]
    try:
        for p in params:
            p.grad = torch.zeros_like(p)
        optimizer.step()
    finally:
        for p, g, v in zip(params, grads, values):
            p.grad = g
            p.data.copy_(v)  # weight decay × lr 0 changes nothing, but be exact
        for g, lr in zip(optimizer.param_groups, saved):
            g["lr"] = lr
        optimizer.state.clear()


def optimizer_name(optimizer: torch.optim.Optimizer) -> str:
    return "adamw8bit" if type(optimizer).__module__.startswith("bitsandbytes") else "adamw"
