"""Which input-image size should an edit family train at? (``train.input_size``; issue 14)

Trains a LoRA on a tiny model of each edit family under each rule — ``target`` (inputs at the
target's bucket) and ``pipeline`` (inputs at the size the family's diffusers pipeline gives them
by default: ~1 MP) — and measures each LoRA with the learning measure of
``tests/training/learning_helpers.py`` (pipeline end to end, with and without the LoRA; ratio ≤
0.5 and own target closest pass) for two calls:

* **previews**: the call the run's previews make (inputs sized by the run's own rule);
* **pipeline default**: the pipeline called as ComfyUI/diffusers users call it, inputs at its
  default size (``"pipeline"`` rule), output at the training size.

The sets are 1024-px "photos" (``learning_helpers.edit_sets``), trained at ``--resolution`` px.
``--scale N`` divides the pipeline's ~1 MP by N² (Qwen's ``VAE_IMAGE_SIZE``, Kontext's preferred
resolutions, FLUX.2's 1024² cap, the photos) so the same situation — inputs at 16× the
target's area when N = 4 and the resolution is 64, as at resolution 256 with 1 MP — trains in
minutes on a CPU; ``--scale 1`` measures the real sizes (inputs of 4096 tokens: slow on a CPU).

    python benchmarks/input_size.py                         # all edit families, --scale 4
    python benchmarks/input_size.py --families qwen-edit-plus --scale 1 --steps 300

Prints one row per (family, rule): ratio and own-closest for each call, and the training time.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests" / "training"))

EDIT_FAMILIES = ("kontext", "qwen-edit-plus", "flux2", "flux2-klein")


@contextlib.contextmanager
def pipeline_sizes_scaled(scale: int):
    """The pipelines' default input sizes (and our copy of them) divided by ``scale``²."""
    from diffusers.pipelines.flux import pipeline_flux_kontext as kontext
    from diffusers.pipelines.qwenimage import pipeline_qwenimage_edit_plus as qwen

    from lorastudio import catalog

    saved = (qwen.VAE_IMAGE_SIZE, list(kontext.PREFERRED_KONTEXT_RESOLUTIONS), catalog.FAMILIES)
    if scale != 1:
        qwen.VAE_IMAGE_SIZE = saved[0] // scale ** 2
        kontext.PREFERRED_KONTEXT_RESOLUTIONS[:] = [(w // scale, h // scale) for w, h in saved[1]]
        for record in catalog.FAMILIES:  # FLUX.2's cap (read through the record)
            object.__setattr__(record, "pipeline_input_area", record.pipeline_input_area // scale ** 2)
    try:
        yield
    finally:
        qwen.VAE_IMAGE_SIZE = saved[0]
        kontext.PREFERRED_KONTEXT_RESOLUTIONS[:] = saved[1]
        if scale != 1:
            for record in catalog.FAMILIES:
                object.__setattr__(record, "pipeline_input_area", record.pipeline_input_area * scale ** 2)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--families", nargs="+", default=list(EDIT_FAMILIES), choices=EDIT_FAMILIES)
    parser.add_argument("--scale", type=int, default=4)
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--lr", type=float, default=1e-2)
    parser.add_argument("--batch", type=int, default=3, help="sets per step (3: every set, as the tests)")
    parser.add_argument("--resolution", type=int, default=64)
    parser.add_argument("--pipeline-steps", type=int, default=4)
    args = parser.parse_args()

    import learning_helpers as L

    from lorastudio.training.tiny import build_tiny_model, quiet_libraries

    photo = 1024 // args.scale
    rows = []
    with tempfile.TemporaryDirectory() as tmp, pipeline_sizes_scaled(args.scale), quiet_libraries():
        for family in args.families:
            model = build_tiny_model(family, Path(tmp) / family / "model")
            sets = L.edit_sets(3, photo)
            dataset = L.write_dataset(Path(tmp) / family / "dataset", sets)
            size = (args.resolution, args.resolution)
            for rule in ("target", "pipeline"):
                t0 = time.perf_counter()
                lora = L.train_tiny(model, dataset, Path(tmp) / family / rule, args.steps, args.lr, rank=16,
                                    resolution=args.resolution, input_size=rule, batch_size=args.batch)
                seconds = time.perf_counter() - t0
                measured = {call: L.pipeline_errors(model, lora, sets, size=size, steps=args.pipeline_steps,
                                                    input_size=call_rule)
                            for call, call_rule in (("previews", rule), ("pipeline default", "pipeline"))}
                rows.append((family, rule, measured, seconds))
                print(f"{family:15} {rule:9} " + "  ".join(
                    f"{call}: {m.ratio:.3f} {'own' if m.own_closest else 'MIXED'}" for call, m in measured.items())
                    + f"  train {seconds:.0f} s", flush=True)

    print(f"\nscale {args.scale} (pipeline input area {1024 // args.scale}²), photos {photo} px, resolution "
          f"{args.resolution}, {args.steps} steps of batch {args.batch} at {args.lr:g}, rank 16, "
          f"pipeline {args.pipeline_steps} steps")
    print("| family | train.input_size | previews: ratio (own closest) | pipeline default: ratio (own closest) "
          "| training s |")
    print("|---|---|---|---|---|")
    for family, rule, measured, seconds in rows:
        cells = " | ".join(f"{m.ratio:.3f} ({'yes' if m.own_closest else 'no'})" for m in measured.values())
        print(f"| {family} | {rule} | {cells} | {seconds:.0f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
