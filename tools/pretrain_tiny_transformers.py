#!/usr/bin/env python3
"""Pretrain the tiny transformers whose recipes pretrain them, and save their weights under
``resources/tiny_transformers/``: one ``<family id>.safetensors`` each, rewritten only when its
weights change, and ``fingerprints.json``, the ``tiny.recipe_fingerprint`` each was made under.

    PYTHONPATH=. python tools/pretrain_tiny_transformers.py [--check]

Why: the tiny FLUX.2 ([dev], [klein]), Qwen-Image 2.1, LongCat-Image(-Edit) and Z-Image (Omni)
transformers are briefly pretrained when built (a real base model's output side and modulation come trained; see
``lorastudio/training/tiny``), which costs ~3 minutes of one core in all, in every fresh test
session and every ``build_tiny_model``. Builds load these files instead (``tiny.pretrained``),
while their fingerprint matches the recipes' code and the library versions; otherwise they
pretrain, and warn that this tool should be run. So: run it after changing any tiny recipe
(``tests/training/test_tiny_models.py`` fails until the shipped weights are current).

Reproducible: the recipes' pretraining is seeded, and the whole build runs on one thread (the
prompt and latent encodings before it differ in their last bits with the thread count), so
rebuilding on the same machine writes the same bytes. ``--check`` rebuilds without writing and says, per family,
whether the result equals the shipped weights bit for bit (another CPU may differ in the last
bits of a few of the float sums: the fingerprint, not the bytes, decides whether they are current).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402
from safetensors.torch import load_file, save  # noqa: E402

from lorastudio.fileio import atomic_write_bytes, atomic_write_text  # noqa: E402

from lorastudio.training import tiny  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="compare with the shipped weights; write nothing")
    args = parser.parse_args()
    out = ROOT / "resources" / tiny.SHIPPED_WEIGHTS_FOLDER
    torch.set_num_threads(1)  # the whole build, as the suite's test processes run it: bit-reproducible
    tiny.REBUILDING = {}
    for family in tiny.recipes():
        started = time.perf_counter()
        with tiny.quiet_libraries():
            tiny.build_tiny_pipeline(family)
        if family in tiny.REBUILDING:
            print(f"{family}: pretrained in {time.perf_counter() - started:.1f} s", flush=True)
    fingerprint = tiny.recipe_fingerprint()
    stale = sorted({p.stem for p in out.glob("*.safetensors")} - set(tiny.REBUILDING))
    differs = []
    for family, weights in tiny.REBUILDING.items():
        path = out / f"{family}.safetensors"
        same = path.is_file() and _equal(load_file(str(path)), weights)
        differs += [] if same else [family]
        if args.check:
            print(f"{family}: {'the same as' if same else 'DIFFERENT from'} {path.relative_to(ROOT)}")
        elif same:
            print(f"{family}: {path.relative_to(ROOT)} unchanged (its fingerprint updated)")
        else:  # only changed weights are rewritten: unchanged ones stay the same bytes in git
            out.mkdir(parents=True, exist_ok=True)
            atomic_write_bytes(path, save(weights, metadata={"family": family}))
            print(f"{family}: wrote {path.relative_to(ROOT)} ({path.stat().st_size:,} bytes)")
    if not args.check:
        atomic_write_text(out / tiny.FINGERPRINTS_FILE,
                          json.dumps({family: fingerprint for family in sorted(tiny.REBUILDING)}, indent=1) + "\n")
    for family in stale:
        print(f"{family}: no recipe pretrains it any more; delete {out / family}.safetensors", file=sys.stderr)
    return 1 if ((differs and args.check) or stale) else 0


def _equal(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


if __name__ == "__main__":
    raise SystemExit(main())
