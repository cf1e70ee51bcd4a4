#!/usr/bin/env python3
"""Does the built-in demo learn its edit? Measured through the family pipeline (issue 14).

    PYTHONPATH=. python benchmarks/demo_learning.py [--steps N] [--lr X] [--batch B] [--out DIR]

Writes the Kontext demo (``lorastudio demo``) into DIR, trains it as its project says (or
with the overrides), and then edits its held-out sets (``dataset.validation``: moved out of
the training folder here, so this holds even where the trainer does not yet skip them)
with ``FluxKontextPipeline``'s own ``__call__`` and scheduler — the Test tab's call: the
input's size, 20 steps, guidance 2.5, seed 0 — with and without the LoRA. Prints:

* error = mean squared difference in pixels (0 … 1) between each output and its target,
  without and with the LoRA, and ratio = with / without (learning: ratio <= 0.5);
* whether each output is closer to its own target than to the other held-out target;
* the wall times of building the demo and of training (say whether the machine was busy).

It saves ``DIR/comparison.png``: rows = held-out sets; columns = input, without LoRA, with
LoRA, target (4x enlarged). (The shared definition of the learning measure, in latent space,
is ``tests/training/learning_helpers.py``: its ratio, in latent space, is printed too; the
pixel figures are what the artist sees in the Test tab.)
"""

from __future__ import annotations

import argparse
import dataclasses
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

#: The Test tab's defaults (ui/compare_page.py) and Kontext's preview guidance.
TEST_TAB_STEPS, GUIDANCE, SEED = 20, 2.5, 0


def pixels(image) -> np.ndarray:
    return np.asarray(image.convert("RGB"), dtype=np.float32) / 255.0


def edit(model_dir: Path, held_dir: Path, names: list[str], lora: Path | None) -> dict[str, np.ndarray]:
    import torch
    from diffusers import FluxKontextPipeline
    from PIL import Image

    from lorastudio.training.demo import EDIT_CAPTION

    pipe = FluxKontextPipeline.from_pretrained(str(model_dir), local_files_only=True)
    pipe.set_progress_bar_config(disable=True)
    if lora is not None:
        pipe.load_lora_weights(str(lora))
    out = {}
    for name in names:
        image = Image.open(held_dir / f"{name}_start.png").convert("RGB")
        width, height = image.size
        with torch.no_grad():
            result = pipe(prompt=EDIT_CAPTION, image=image, width=width, height=height, max_area=width * height,
                          _auto_resize=False, num_inference_steps=TEST_TAB_STEPS, guidance_scale=GUIDANCE,
                          generator=torch.Generator("cpu").manual_seed(SEED), output_type="np")
        out[name] = result.images[0]
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, help="override train.steps")
    parser.add_argument("--lr", type=float, help="override train.learning_rate")
    parser.add_argument("--batch", type=int, help="override train.batch_size")
    parser.add_argument("--out", type=Path, help="folder for the demo (default: a temporary one)")
    args = parser.parse_args(argv)

    from PIL import Image

    from lorastudio.config import load_config
    from lorastudio.training.demo import create_demo
    from lorastudio.training.events import NullSink
    from lorastudio.training.trainer import train

    out = args.out or Path(tempfile.mkdtemp(prefix="demo-learning-"))
    start = time.monotonic()
    project = create_demo(out, "kontext")
    built = time.monotonic()
    config = load_config(project)
    names = list(config.dataset.validation)
    held = out / "held-out"
    shutil.rmtree(held, ignore_errors=True)
    held.mkdir()
    for name in names:
        for path in (out / "dataset").glob(f"{name}[_.]*"):
            shutil.move(str(path), held / path.name)
    overrides = {key: value for key, value in (("steps", args.steps), ("learning_rate", args.lr),
                                               ("batch_size", args.batch)) if value is not None}
    config = dataclasses.replace(
        config, dataset=dataclasses.replace(config.dataset, validation=[]),
        train=dataclasses.replace(config.train, sample_every=0, checkpoint_every=0, **overrides))
    t = config.train
    result = train(config, NullSink())
    trained = time.monotonic()
    print(f"demo: {t.steps} steps, lr {t.learning_rate:g}, batch {t.batch_size}, rank {t.rank}, {t.resolution} px; "
          f"built in {built - start:.0f} s, trained in {trained - built:.0f} s; "
          f"loss {np.mean(result.losses[:5]):.3f} → {np.mean(result.losses[-5:]):.3f}")

    targets = {n: pixels(Image.open(held / f"{n}_end.png")) for n in names}
    base = edit(out / "model", held, names, None)
    tuned = edit(out / "model", held, names, result.lora)
    without = float(np.mean([np.mean((base[n] - targets[n]) ** 2) for n in names]))
    with_lora = float(np.mean([np.mean((tuned[n] - targets[n]) ** 2) for n in names]))
    print(f"held-out error (pixels): without LoRA {without:.4f}, with {with_lora:.4f}, ratio {with_lora / without:.3f}")
    for n in names:
        own = float(np.mean((tuned[n] - targets[n]) ** 2))
        others = {m: round(float(np.mean((tuned[n] - targets[m]) ** 2)), 4) for m in names if m != n}
        print(f"  {n}: own target {own:.4f}, others {others}: {'closest to its own' if own < min(others.values()) else 'NOT closest to its own'}")
    # The shared learning measure (tests/training/learning_helpers.py): the same call, in the
    # pipeline's latent space, through the family's run_pipeline.
    sys.path.insert(0, str(ROOT / "tests" / "training"))
    import learning_helpers

    from lorastudio.training.demo import EDIT_CAPTION

    sets = [learning_helpers.LearningSet(n, [Image.open(held / f"{n}_start.png").convert("RGB")],
                                         Image.open(held / f"{n}_end.png").convert("RGB"), EDIT_CAPTION) for n in names]
    shared = learning_helpers.pipeline_errors(out / "model", result.lora, sets, size=(64, 64), steps=TEST_TAB_STEPS)
    print(f"shared measure (latents): ratio {shared.ratio:.3f}, own target closest: {shared.own_closest}, "
          f"passed: {shared.passed}")
    rows = [np.concatenate([pixels(Image.open(held / f"{n}_start.png")), base[n], tuned[n], targets[n]], 1) for n in names]
    grid = Image.fromarray((np.concatenate(rows, 0) * 255).clip(0, 255).astype(np.uint8))
    grid.resize((grid.width * 4, grid.height * 4), Image.Resampling.NEAREST).save(out / "comparison.png")
    print(f"comparison: {out / 'comparison.png'} (input | without LoRA | with LoRA | target)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
