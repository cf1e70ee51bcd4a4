"""Multi-process training (``accelerate launch``): the one all-reduce of each step."""

from __future__ import annotations

import torch

from lorastudio.training.stop import StopSignal


def reduce_step(accelerator, params: list[torch.nn.Parameter], loss: torch.Tensor,
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
