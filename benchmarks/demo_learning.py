#!/usr/bin/env python3
"""Does the built-in demo learn its edit? Measured through the family pipeline (issue 14).

    PYTHONPATH=. python benchmarks/demo_learning.py [--out DIR] [--steps N] [--lr X] [--batch B]

Writes the Kontext demo (``lorastudio demo``) into DIR and trains it with the real command,
``lorastudio train DIR/project.toml`` (a child process: the demo's default run as an artist
starts it, previews, checkpoints and held-out validation included; ``--steps/--lr/--batch``
override the project first). Then it edits the demo's held-out sets (``dataset.validation``:
never trained on) with ``FluxKontextPipeline``'s own ``__call__`` and scheduler, with and
without the run's LoRA, at the input's size and seed 0, twice: with the previews' step
count (``train.sample_steps``, as the checkpoint grid draws them) and with the Test tab's
20 steps. Prints:

* the wall time of ``lorastudio demo`` and of ``lorastudio train`` (start to finished LoRA)
  and the CPU time the training process used (on a busy machine the wall time says little:
  say whether it was);
* per call: error = mean squared difference in pixels (0 … 1) between each output and its
  target, without and with the LoRA, ratio = with / without, and whether each output is
  closer to its own target than to the other held-out set's;
* the shared learning measure (``tests/training/learning_helpers.py``: the same call, in the
  pipeline's latent space; pass = ratio <= 0.5 and each output closest to its own target).

It saves ``DIR/comparison.png``: rows = held-out sets; columns = input, without LoRA, with
LoRA (previews' steps), with LoRA (20 steps), target (4x enlarged).
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

#: The Test tab's default steps (ui/compare_page.py); Kontext's preview guidance; the seed.
TEST_TAB_STEPS, GUIDANCE, SEED = 20, 2.5, 0


def pixels(image) -> np.ndarray:
    return np.asarray(image.convert("RGB"), dtype=np.float32) / 255.0


def edit(model_dir: Path, inputs: dict, caption: str, lora: Path | None, steps: int) -> dict[str, np.ndarray]:
    import torch
    from diffusers import FluxKontextPipeline

    pipe = FluxKontextPipeline.from_pretrained(str(model_dir), local_files_only=True)
    pipe.set_progress_bar_config(disable=True)
    if lora is not None:
        pipe.load_lora_weights(str(lora))
    out = {}
    for name, image in inputs.items():
        width, height = image.size
        with torch.no_grad():
            result = pipe(prompt=caption, image=image, width=width, height=height, max_area=width * height,
                          _auto_resize=False, num_inference_steps=steps, guidance_scale=GUIDANCE,
                          generator=torch.Generator("cpu").manual_seed(SEED), output_type="np")
        out[name] = result.images[0]
    return out


def report(label: str, base: dict, tuned: dict, targets: dict) -> None:
    names = list(targets)
    without = float(np.mean([np.mean((base[n] - targets[n]) ** 2) for n in names]))
    with_lora = float(np.mean([np.mean((tuned[n] - targets[n]) ** 2) for n in names]))
    closest = all(np.mean((tuned[n] - targets[n]) ** 2) < min(np.mean((tuned[n] - targets[m]) ** 2)
                                                                 for m in names if m != n) for n in names)
    print(f"{label}: held-out error (pixels) without LoRA {without:.4f}, with {with_lora:.4f}, "
          f"ratio {with_lora / without:.3f}; each output closest to its own target: {closest}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, help="folder for the demo (default: a temporary one)")
    parser.add_argument("--steps", type=int, help="override train.steps")
    parser.add_argument("--lr", type=float, help="override train.learning_rate")
    parser.add_argument("--batch", type=int, help="override train.batch_size")
    args = parser.parse_args(argv)

    from PIL import Image

    from lorastudio.config import load_config, save_config
    from lorastudio.training.demo import create_demo

    out = args.out or Path(tempfile.mkdtemp(prefix="demo-learning-"))
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1"}
    start = time.monotonic()
    subprocess.run([sys.executable, "-m", "lorastudio", "demo", str(out)], check=True, env=env,
                   stdout=subprocess.DEVNULL)
    built = time.monotonic()
    demo_cpu = resource.getrusage(resource.RUSAGE_CHILDREN)
    project = out / "project.toml"
    config = load_config(project)
    for key, value in (("steps", args.steps), ("learning_rate", args.lr), ("batch_size", args.batch)):
        if value is not None:
            setattr(config.train, key, value)
    save_config(config, project)
    t = config.train
    subprocess.run([sys.executable, "-m", "lorastudio", "train", str(project)], check=True, env=env,
                   stdout=subprocess.DEVNULL)
    trained = time.monotonic()
    cpu = resource.getrusage(resource.RUSAGE_CHILDREN)
    train_cpu = cpu.ru_utime + cpu.ru_stime - demo_cpu.ru_utime - demo_cpu.ru_stime
    print(f"demo: {t.steps} steps, batch {t.batch_size}, lr {t.learning_rate:g}, rank {t.rank}, {t.resolution} px, "
          f"timesteps {t.timesteps} (mean {t.timestep_mean:g}); `lorastudio demo` {built - start:.0f} s, "
          f"`lorastudio train` {trained - built:.0f} s wall, {train_cpu:.0f} s CPU time (all its threads)")

    lora = config.output.lora_path
    data = config.dataset.path
    names = list(config.dataset.validation)
    caption = (data / f"{names[0]}.txt").read_text(encoding="utf-8").strip()
    inputs = {n: Image.open(data / f"{n}_start.png").convert("RGB") for n in names}
    targets = {n: pixels(Image.open(data / f"{n}_end.png")) for n in names}
    columns = [[pixels(inputs[n]) for n in names]]
    for steps, label in ((t.sample_steps, f"previews' call ({t.sample_steps} steps)"),
                         (TEST_TAB_STEPS, f"Test tab's call ({TEST_TAB_STEPS} steps)")):
        base = edit(config.model.path, inputs, caption, None, steps)
        tuned = edit(config.model.path, inputs, caption, lora, steps)
        report(label, base, tuned, targets)
        if steps == t.sample_steps:
            columns.append([base[n] for n in names])
        columns.append([tuned[n] for n in names])
    columns.append([targets[n] for n in names])

    # The shared learning measure (tests/training/learning_helpers.py), in latent space.
    sys.path.insert(0, str(ROOT / "tests" / "training"))
    import learning_helpers

    sets = [learning_helpers.LearningSet(n, [inputs[n]], Image.open(data / f"{n}_end.png").convert("RGB"), caption)
            for n in names]
    for steps in (t.sample_steps, TEST_TAB_STEPS):
        shared = learning_helpers.pipeline_errors(config.model.path, lora, sets, size=inputs[names[0]].size,
                                                  steps=steps)
        print(f"shared measure (latents), {steps} steps: {shared}; passed: {shared.passed}")
    rows = [np.concatenate([column[i] for column in columns], 1) for i in range(len(names))]
    grid = Image.fromarray((np.concatenate(rows, 0) * 255).clip(0, 255).astype(np.uint8))
    grid.resize((grid.width * 4, grid.height * 4), Image.Resampling.NEAREST).save(out / "comparison.png")
    print(f"comparison: {out / 'comparison.png'} (input | without LoRA | with LoRA, previews' steps | "
          f"with LoRA, {TEST_TAB_STEPS} steps | target)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
