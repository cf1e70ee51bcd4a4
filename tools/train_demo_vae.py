#!/usr/bin/env python3
"""Train the demo's tiny VAE once, reproducibly, and save it under ``resources/demo_vae/``.

    PYTHONPATH=. python tools/train_demo_vae.py [--steps N] [--out resources/demo_vae]

Why: a random-weight VAE cannot reconstruct pictures, so the demo's previews and the Test
tab showed noise however well the LoRA learned. This trains a small ``AutoencoderKL`` (the
FLUX.1 family's own VAE class, shrunk: the folder loads as a real one) on the demo's kind of
picture only — coloured shapes on a plain background (``demo.shapes_picture``) and the same
pictures with their colours inverted (and mirrored, as the demo's edit did when the shipped
weights were trained; the random flips below make that no different) — at the demo's
64-pixel size.

Reproducible: fixed seeds, data generated deterministically from picture seeds that the
demo's own sets (1 … ``DEMO_SETS``) never use, so they stay held out (the test that the VAE
reconstructs them is ``tests/training/test_demo_vae.py``). A few minutes on a 2-core CPU.

After training, ``shift_factor`` and ``scaling_factor`` are set as FLUX's are: the mean and
1/std of the latents over the training pictures, so the flow-matching transformer sees
latents of unit scale (``(z - shift) * scale``).
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

import torch
from PIL import ImageOps

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from lorastudio.training.demo import (  # noqa: E402
    DEMO_IMAGE_SIZE, DEMO_VAE_CONFIG, demo_vae_dir, shapes_picture,
)

#: Picture seeds the VAE trains on: far from the demo's sets (seeds 1 … 12).
TRAIN_SEEDS = range(10_000, 12_000)
SEED = 0
#: Noise added to the latents the decoder learns from, and the weight of the penalty on their
#: square (against the per-pixel MSE), which keeps them near unit scale so the noise matters.
LATENT_NOISE = 0.1
LATENT_PENALTY = 1e-3
#: Side of the random crops it trains on.
CROP = 16


def pixels(images) -> torch.Tensor:
    """PIL pictures → (N, 3, H, W) in [-1, 1], as the pipelines' image processor gives the VAE."""
    import numpy as np

    array = np.stack([np.asarray(im.convert("RGB"), dtype=np.float32) for im in images])
    return torch.from_numpy(array).permute(0, 3, 1, 2) / 127.5 - 1.0


def training_pictures() -> torch.Tensor:
    """Each seed's picture and its edited version, at the demo's size."""
    images = []
    for seed in TRAIN_SEEDS:
        picture = shapes_picture(seed, DEMO_IMAGE_SIZE)
        images += [picture, ImageOps.mirror(ImageOps.invert(picture))]  # what the shipped weights saw
    return pixels(images)


def train(steps: int, batch: int, lr: float) -> "torch.nn.Module":
    from diffusers import AutoencoderKL

    torch.manual_seed(SEED)
    data = training_pictures()
    vae = AutoencoderKL(**DEMO_VAE_CONFIG)
    print(f"{sum(p.numel() for p in vae.parameters()) / 1e3:.0f} k parameters, {len(data)} pictures")
    optimizer = torch.optim.AdamW(vae.parameters(), lr=lr, weight_decay=0.0)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=lr, total_steps=steps, pct_start=0.05)
    order = torch.Generator().manual_seed(SEED)
    noise = torch.Generator().manual_seed(SEED + 1)
    start = time.monotonic()
    vae.train()
    recent = []
    for step in range(1, steps + 1):
        x = data[torch.randint(len(data), (batch,), generator=order)]
        top, left = (int(v) for v in torch.randint(DEMO_IMAGE_SIZE - CROP + 1, (2,), generator=order))
        x = x[:, :, top:top + CROP, left:left + CROP]  # the VAE is convolutional: crops train it 4x faster
        flip = torch.rand(batch, generator=order) < 0.5  # both orientations
        x = torch.where(flip[:, None, None, None], x.flip(-1), x)
        # The app only ever uses the distribution's mode (the pipelines' ``sample_mode="argmax"``),
        # so the decoder learns from the mode plus a little noise (to decode the flow model's
        # slightly-off latents), and a small penalty keeps the latents near unit scale.
        z = vae.encode(x).latent_dist.mode()
        reconstruction = vae.decode(z + LATENT_NOISE * torch.randn(z.shape, generator=noise)).sample
        mse = torch.nn.functional.mse_loss(reconstruction, x)
        kl = z.pow(2).mean()
        loss = mse + LATENT_PENALTY * kl
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(vae.parameters(), 1.0)
        optimizer.step()
        schedule.step()
        recent.append(mse.item())
        if step % 50 == 0 or step == steps:
            mean_mse = sum(recent) / len(recent)
            recent.clear()
            psnr = 10 * math.log10(4 / mean_mse)  # pixels span 2 ([-1, 1])
            print(f"step {step}/{steps}  mse {mean_mse:.5f}  psnr {psnr:.1f} dB  z² {kl.item():.2f}  "
                  f"{time.monotonic() - start:.0f} s", flush=True)
    vae.eval()
    with torch.no_grad():
        latents = torch.cat([vae.encode(data[i:i + 256]).latent_dist.mode() for i in range(0, len(data), 256)])
    shift = latents.mean().item()
    scale = 1.0 / (latents - shift).std().item()
    vae.register_to_config(shift_factor=round(shift, 4), scaling_factor=round(scale, 4))
    print(f"latents: shift_factor {shift:.4f}, scaling_factor {scale:.4f}")
    return vae


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[1], formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--out", type=Path, default=demo_vae_dir())
    args = parser.parse_args(argv)
    torch.use_deterministic_algorithms(True)
    # One thread: the same floats whatever the machine's core count (and on a busy machine
    # far faster than threads that spin waiting for each other).
    torch.set_num_threads(1)
    vae = train(args.steps, args.batch, args.lr)
    vae.save_pretrained(args.out, safe_serialization=True)
    size = sum(p.stat().st_size for p in args.out.rglob("*") if p.is_file())
    print(f"saved {args.out} ({size / 1e3:.0f} kB)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
