#!/usr/bin/env python3
"""Pretrain the demo's tiny Kontext transformer once, reproducibly; save it under ``resources/demo_transformer/``.

    PYTHONPATH=. python tools/train_demo_transformer.py [--steps N] [--out resources/demo_transformer]

Why: a real FLUX.1 Kontext base already draws pictures and follows its input image; an edit
LoRA only learns the edit. The demo's transformer was random, so in the demo's CPU minute
its LoRA had to learn to denoise as well as to edit, and its previews stayed tinted noise.
This makes a base in miniature: a small ``FluxTransformer2DModel`` (the recipe's layout,
wider and deeper: see ``ARCHITECTURE``) fully trained, with the trainer's own loss (the
Kontext family's ``predict``: target tokens then input-image tokens, flow matching,
velocity ``noise - x0``), in the latent space of the demo VAE (``resources/demo_vae``), on
the demo's kind of picture (``demo.shapes_picture``) with *other* edits than the demo's:
``EDITS`` (keep the picture, make it grey, swap red and blue, invert one colour channel: red,
green or blue). Never the demo's inversion of all three channels,
never the demo's own pictures (seeds 1 … ``DEMO_SETS``): the demo LoRA still has its edit
to learn, and the held-out sets stay unseen.

Reproducible: fixed seeds, one thread, deterministic algorithms; the captions are encoded
by the demo model's own (seeded) tiny text encoders, built in a temporary folder.
"""

from __future__ import annotations

import argparse
import math
import sys
import tempfile
import time
from pathlib import Path

import torch
from PIL import Image, ImageOps

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from lorastudio.training.demo import DEMO_IMAGE_SIZE, build_demo_model, demo_transformer_dir, shapes_picture  # noqa: E402

#: Picture seeds: far from the demo's sets (1 … 12) and from the VAE's (10,000 …).
TRAIN_SEEDS = range(20_000, 20_600)
SEED = 0
#: The transformer: the tiny recipe's FluxTransformer2DModel (one double and one single block),
#: its input width the demo VAE's packed latent (4 channels x 2 x 2), with 2 heads of 32
#: instead of 16: 14 rotary dimensions per picture axis instead of 6. FLUX's RoPE (theta
#: 10,000) gives 6 dimensions only one useful frequency over the 16-token grid of a 64-px
#: picture (period ~6 tokens: positions 0 and 6 look alike), so attention cannot find "the
#: input token at my place", which copying the input image needs; 14 give periods of 6, 23
#: and 87 tokens, enough to tell every place apart.
ARCHITECTURE = {"num_attention_heads": 2, "attention_head_dim": 32, "num_layers": 1, "num_single_layers": 1,
                "axes_dims_rope": (4, 14, 14)}


def swap_red_blue(image: Image.Image) -> Image.Image:
    red, green, blue = image.split()
    return Image.merge("RGB", (blue, green, red))


def invert_channel(index: int):
    """The edit that inverts one colour channel (0 red, 1 green, 2 blue) and keeps the others."""
    def edit(image: Image.Image) -> Image.Image:
        channels = list(image.split())
        channels[index] = ImageOps.invert(channels[index])
        return Image.merge("RGB", channels)
    return edit


#: Caption → edit the base learns: each depends on the input image, none is the demo's
#: (inverting all three channels). Like a real Kontext, the base knows many colour edits,
#: one channel's inversion among them, so a per-pixel colour map is something it can
#: already draw cleanly: with keep / grey / swap only, the demo LoRA had to build the
#: inversion from nothing in 20 steps and its previews stayed noisy (its x0 prediction at
#: σ = 1 carried the noise through: a one-step call showed it as plainly as four).
EDITS = {
    "keep the picture as it is": lambda image: image,
    "make it grey": lambda image: ImageOps.grayscale(image).convert("RGB"),
    "swap red and blue": swap_red_blue,
    "invert the red channel": invert_channel(0),
    "invert the green channel": invert_channel(1),
    "invert the blue channel": invert_channel(2),
}


def encoded_data(model_dir: Path):
    """(inputs, targets, caption index) latents for every seed x edit, and the captions' encodings."""
    from lorastudio.training.families.kontext import KontextFamily

    family = KontextFamily(model_dir, torch.device("cpu"), torch.float32)
    family.load_encoders()
    any_input = shapes_picture(TRAIN_SEEDS[0], DEMO_IMAGE_SIZE)  # Kontext's prompt ignores it
    prompts = [family.encode_prompt(caption, [any_input]) for caption in EDITS]
    inputs, targets, which = [], [], []
    with torch.no_grad():
        for seed in TRAIN_SEEDS:
            picture = shapes_picture(seed, DEMO_IMAGE_SIZE)
            latent = family.encode_image(picture)
            for index, edit in enumerate(EDITS.values()):
                inputs.append(latent)
                targets.append(family.encode_image(edit(picture)))
                which.append(index)
    family.free_encoders()
    return family, torch.stack(inputs), torch.stack(targets), torch.tensor(which), prompts


def train(steps: int, batch: int, lr: float, model_dir: Path, save_every: int = 0, out: Path | None = None):
    from diffusers import FluxTransformer2DModel

    family, inputs, targets, which, prompts = encoded_data(model_dir)
    base = FluxTransformer2DModel.load_config(model_dir / "transformer")
    torch.manual_seed(SEED)
    transformer = FluxTransformer2DModel.from_config({**base, **ARCHITECTURE})
    print(f"{sum(p.numel() for p in transformer.parameters()) / 1e3:.0f} k parameters, {len(inputs)} pairs")
    optimizer = torch.optim.AdamW(transformer.parameters(), lr=lr, weight_decay=0.0)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=lr, total_steps=steps, pct_start=0.05)
    order = torch.Generator().manual_seed(SEED)
    transformer.train()
    start, recent = time.monotonic(), []
    for step in range(1, steps + 1):
        pick = torch.randint(len(inputs), (batch,), generator=order)
        x0, condition = targets[pick], inputs[pick]
        prompt = family.collate_prompts([prompts[i] for i in which[pick].tolist()])
        noise = torch.randn(x0.shape, generator=order)
        sigmas = torch.rand(batch, generator=order)  # every noise level the samplers visit
        s4 = sigmas.view(-1, 1, 1, 1)
        noisy = (1 - s4) * x0 + s4 * noise
        pred = family.predict(transformer, noisy, sigmas, [condition], prompt)
        loss = torch.nn.functional.mse_loss(pred, noise - x0)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(transformer.parameters(), 1.0)
        optimizer.step()
        schedule.step()
        recent.append(loss.item())
        if step % 25 == 0 or step == steps:
            print(f"step {step}/{steps}  loss {sum(recent) / len(recent):.4f}  {time.monotonic() - start:.0f} s",
                  flush=True)
            recent.clear()
        if save_every and step % save_every == 0 and step < steps:
            transformer.save_pretrained(out.with_name(f"{out.name}-{step}"), safe_serialization=True)
    return transformer.eval()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[1], formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--steps", type=int, default=1200)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--out", type=Path, default=demo_transformer_dir())
    parser.add_argument("--save-every", type=int, default=0, help="also save OUT-STEP every N steps (to compare)")
    args = parser.parse_args(argv)
    torch.use_deterministic_algorithms(True)
    torch.set_num_threads(1)  # the same floats on any machine (and quicker than spinning threads on a busy one)
    with tempfile.TemporaryDirectory(prefix="demo-base-") as tmp:
        model_dir = build_demo_model("kontext", Path(tmp) / "model", pretrained=False)
        transformer = train(args.steps, args.batch, args.lr, model_dir, args.save_every, args.out)
    transformer.save_pretrained(args.out, safe_serialization=True)
    size = sum(p.stat().st_size for p in args.out.rglob("*") if p.is_file())
    print(f"saved {args.out} ({size / 1e3:.0f} kB)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
