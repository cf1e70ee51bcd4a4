"""Which LoRA files load fully where: every family × format through ComfyUI's own loader and diffusers'.

For each family this trains a tiny demo model for a few steps twice (``output.format`` =
``diffusers`` and ``comfyui``, same seed, rank 4, alpha 8 so a lost alpha shows) and checks
each file

* in ComfyUI, with the independent checker ``comfy_check.py`` (ComfyUI's own model build
  and LoraLoader path; it lives outside this repository, as does ComfyUI): every key
  loaded? ComfyUI's scale = diffusers' scale? ComfyUI's weight changes = those diffusers
  makes from the ``diffusers``-format file of the same run (``--diffusers-ref``)?
* in diffusers: the family pipeline's ``load_lora_weights`` with no key warnings, a LoRA
  layer on every module the run trained and on nothing else, and each layer's delta
  (scaling · B @ A) equal to the one the ``diffusers``-format file gives.

diffusers' kohya FLUX.1 converter hard-codes FLUX.1-dev's widths (3072 / 12288) and so
cannot read any FLUX.1 kohya file of the tiny model; for those files the diffusers check is
repeated with the converter's numbers replaced by the tiny model's (marked "tiny width
patched"), which is what a real-size model gets unpatched.

No ComfyUI code is part of this repository: COMFY_DIR is an extracted ComfyUI tree, DEPS a
``pip install --target`` folder with the checker's extra packages (see comfy_check.py).

Usage (from the repository root, with the project's venv)::

    PYTHONPATH=$PWD HF_HUB_OFFLINE=1 python tools/comfy_matrix.py \\
        --comfy COMFY_DIR --checker PATH/comfy_check.py --deps DEPS --work WORK_DIR \\
        [--families kontext flux ...] [--steps 4] [--json OUT.json]

Prints one Markdown table (the one in README's "LoRA file formats" section).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import subprocess
import sys
from pathlib import Path

FAMILIES = ("flux", "kontext", "qwen-image", "qwen-edit-plus", "flux2", "flux2-klein", "zimage", "zimage-omni")
FORMATS = ("diffusers", "comfyui")
RANK, ALPHA = 4, 8.0


def _lorastudio(*args: str) -> None:
    subprocess.run([sys.executable, "-m", "lorastudio", *args], check=True, stdout=subprocess.DEVNULL)


def train_file(work: Path, family: str, fmt: str, steps: int) -> Path:
    """The LoRA of a few-step run on the tiny ``family`` demo in ``fmt`` (trained once, then reused)."""
    from lorastudio.config import load_config, save_config

    folder = work / family
    if not (folder / "project.toml").is_file():
        _lorastudio("demo", str(folder), "--family", family)
    config = load_config(folder / "project.toml")
    config = dataclasses.replace(
        config,
        train=dataclasses.replace(config.train, steps=steps, rank=RANK, alpha=ALPHA, sample_every=0,
                                  checkpoint_every=0, sample_sets=0),
        output=dataclasses.replace(config.output, name=f"matrix-{fmt}", format=fmt))
    if not config.output.lora_path.is_file():
        path = folder / f"matrix-{fmt}.toml"
        save_config(config, path)
        _lorastudio("train", str(path), "--jsonl")
    return config.output.lora_path


def comfy_result(args, model: Path, lora: Path, reference: Path) -> dict:
    """comfy_check.py's JSON report for ``lora`` (weights compared with diffusers' for ``reference``)."""
    out = lora.with_suffix(".comfy.json")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(args.deps), os.environ.get("PYTHONPATH", "")]))
    proc = subprocess.run([sys.executable, str(args.checker), str(args.comfy), str(model), str(lora),
                           "--json", str(out), "--diffusers-ref", str(reference)],
                          env=env, capture_output=True, text=True)
    if not out.is_file():
        return {"exit_code": proc.returncode, "error": proc.stderr.strip().splitlines()[-1:]}
    return json.loads(out.read_text(encoding="utf-8"))


def _loaded_deltas(transformer) -> dict:
    out = {}
    for name, module in transformer.named_modules():
        if hasattr(module, "lora_A") and module.lora_A:
            adapter = next(iter(module.lora_A))
            out[name] = (module.scaling[adapter] * module.lora_B[adapter].weight @ module.lora_A[adapter].weight).detach()
    return out


def _patched_kohya_flux1(inner: int):
    """diffusers' kohya FLUX.1 converter with FLUX.1-dev's widths replaced by ``inner``'s."""
    import inspect
    import textwrap

    from diffusers.loaders import lora_conversion_utils as lcu

    function = lcu._convert_kohya_flux_lora_to_diffusers
    source = textwrap.dedent(inspect.getsource(function))
    old = "dims=[3072, 3072, 3072, 12288]"
    assert old in source, "diffusers' converter changed; update this tool"
    namespace = dict(function.__globals__)
    exec(compile(source.replace(old, f"dims=[{inner}, {inner}, {inner}, {4 * inner}]"),  # noqa: S102
                 inspect.getsourcefile(function), "exec"), namespace)
    return namespace[function.__name__]


def diffusers_load(model: Path, lora: Path, patch_width: bool = False) -> tuple[dict, list[str]]:
    """Module → delta of the LoRA layers ``load_lora_weights`` put on the family pipeline's
    transformer, and the key warnings it logged. Raises what the loader raises."""
    import diffusers
    from diffusers.loaders import lora_pipeline
    from diffusers.utils import logging as dlogging

    cls = getattr(diffusers, json.loads((model / "model_index.json").read_text(encoding="utf-8"))["_class_name"])
    pipe = cls.from_pretrained(str(model), local_files_only=True)
    records: list[str] = []

    class Catch(logging.Handler):
        def emit(self, record):
            records.append(record.getMessage())

    handler, logger = Catch(level=logging.WARNING), dlogging.get_logger("diffusers")
    original = lora_pipeline._convert_kohya_flux_lora_to_diffusers
    if patch_width:
        cfg = pipe.transformer.config
        lora_pipeline._convert_kohya_flux_lora_to_diffusers = _patched_kohya_flux1(
            cfg.num_attention_heads * cfg.attention_head_dim)
    logger.addHandler(handler)
    try:
        pipe.load_lora_weights(str(lora))
    finally:
        logger.removeHandler(handler)
        lora_pipeline._convert_kohya_flux_lora_to_diffusers = original
    words = ("unexpected", "missing", "incompatible", "unsupported", "not loaded", "could not")
    warnings = [m for m in records if any(w in m.lower() for w in words) and "no lora keys associated to" not in m.lower()]
    return _loaded_deltas(pipe.transformer), warnings


def diffusers_result(model: Path, lora: Path, reference: dict | None, family: str) -> dict:
    """Does diffusers load ``lora`` fully (compared with the ``diffusers``-format file's load)?"""
    try:
        deltas, warnings = diffusers_load(model, lora)
        note = ""
    except Exception as exc:  # noqa: BLE001 - reported in the table
        first = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}".strip()
        if family not in ("flux", "kontext") or not isinstance(exc, AssertionError):
            return {"loads": False, "error": first}
        deltas, warnings = diffusers_load(model, lora, patch_width=True)
        note = f"unpatched: {first}; tiny width patched"
    result = {"loads": True, "modules": len(deltas), "warnings": warnings[:3], "note": note}
    if reference is not None:
        missing, extra = sorted(set(reference) - set(deltas)), sorted(set(deltas) - set(reference))
        common = set(reference) & set(deltas)
        err = max(((deltas[m] - reference[m]).abs().max().item() for m in common), default=0.0)
        result.update(missing=missing, extra=extra, max_delta_diff=err)
        result["full"] = not warnings and not missing and not extra and err < 1e-5
    else:
        result["full"] = not warnings and bool(deltas)
    return result


def _cell_comfy(r: dict) -> str:
    if "lora_keys" not in r:
        return f"error ({r.get('error')})"
    keys = f"{r['lora_keys_mapped']}/{r['lora_keys']} keys"
    scale = "scale equal" if r["scale_check"]["scale_matches"] else "scale differs"
    ref = r.get("diffusers_ref", {})
    same = "weights = diffusers'" if ref.get("match") else "weights ≠ diffusers'"
    return f"{'yes' if r['exit_code'] == 0 else 'NO'}: {keys}, {scale}, {same}"


def _cell_diffusers(r: dict) -> str:
    if not r["loads"]:
        return f"NO: {r['error']}"
    text = f"{'yes' if r['full'] else 'NO'}: {r['modules']} modules"
    if r.get("missing"):
        text += f", not loaded: {', '.join(r['missing'][:3])}"
    if r.get("warnings"):
        text += f", warnings: {r['warnings'][0][:80]}"
    if r.get("note"):
        text += f" ({r['note']})"
    return text


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--comfy", type=Path, required=True, help="an extracted ComfyUI source tree")
    parser.add_argument("--checker", type=Path, required=True, help="comfy_check.py")
    parser.add_argument("--deps", type=Path, required=True, help="pip --target folder with the checker's extras")
    parser.add_argument("--work", type=Path, required=True, help="folder for the demo models and LoRAs (reused)")
    parser.add_argument("--families", nargs="+", default=list(FAMILIES), choices=FAMILIES)
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--json", type=Path, help="also write every report here")
    args = parser.parse_args(argv)

    rows, reports = [], {}
    for family in args.families:
        files = {fmt: train_file(args.work, family, fmt, args.steps) for fmt in FORMATS}
        model = args.work / family / "model"
        reference, _ = diffusers_load(model, files["diffusers"])
        for fmt in FORMATS:
            comfy = comfy_result(args, model, files[fmt], files["diffusers"])
            diff = diffusers_result(model, files[fmt], reference, family)
            reports[f"{family}/{fmt}"] = {"file": str(files[fmt]), "comfyui": comfy, "diffusers": diff}
            rows.append(f"| {family} | {fmt} | {_cell_comfy(comfy)} | {_cell_diffusers(diff)} |")
            print(f"{family}/{fmt}: comfy exit {comfy.get('exit_code')}, diffusers full {diff['full']}",
                  file=sys.stderr, flush=True)
    print("| family | format | ComfyUI LoraLoader (all keys loaded, scale, weights) | diffusers load_lora_weights |")
    print("|---|---|---|---|")
    print("\n".join(rows))
    if args.json:
        args.json.write_text(json.dumps(reports, indent=1, default=str), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
