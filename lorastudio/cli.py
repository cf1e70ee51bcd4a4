"""The ``lorastudio`` command line: one entry point, subcommands loaded lazily.

Each subcommand imports only what it needs when it runs, so ``lorastudio check`` stays
torch-free and quick, and the GUI never pulls in the training stack.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from lorastudio import __version__, catalog, config


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="lorastudio",
        description="LoRA Studio: train image-editing and text-to-image LoRAs on your own GPU, offline. "
                    "With no command, the app opens.",
    )
    parser.add_argument("--version", action="version", version=f"LoRA Studio {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    p = sub.add_parser("gui", help="open the app (the default)")
    p.add_argument("target", nargs="?", help="a dataset folder or a project .toml to open")

    p = sub.add_parser("check", help="validate a dataset folder (pairs, captions, image sizes)")
    p.add_argument("dir", nargs="?", help="the dataset folder (default with --config: its dataset.path)")
    p.add_argument("--json", action="store_true", help="print one JSON object (the check report)")
    p.add_argument("--config", metavar="PROJECT.toml",
                   help="a project: mark its held-out validation sets (dataset.validation) and check that list")

    p = sub.add_parser("train", help="train a LoRA from a config .toml in the foreground")
    p.add_argument("config", help="the project/config .toml")
    p.add_argument("--jsonl", action="store_true", help="print only events, one JSON object per line")
    p.add_argument("--resume", action="store_true", help="continue from the last checkpoint")
    p.add_argument("--dry-run", action="store_true", help="validate the config and dataset, estimate, do not train")

    p = sub.add_parser("sample", help="generate with a base model plus a LoRA (\"test your LoRA\")")
    p.add_argument("--model", required=True, help="the base model folder")
    p.add_argument("--lora", help="the LoRA .safetensors (omit for the base model alone)")
    p.add_argument("--input", nargs="*", default=[], metavar="IMG", help="input image(s) for edit models, in order")
    p.add_argument("--prompt", default="", help="the caption / instruction")
    p.add_argument("--out", required=True, help="output PNG path")
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--scale", type=float, default=1.0, help="LoRA strength")
    p.add_argument("--size", type=int, default=0, help="output long side in pixels (default: from the first input, or 512)")
    p.add_argument("--input-size", choices=config.INPUT_SIZES, default=catalog.AUTO_INPUT_SIZE,
                   help="how input images are sized, as train.input_size (default auto: the family's default; "
                        "the Test tab passes the project's)")

    p = sub.add_parser("export", help="write the LoRA of any kept checkpoint of a run",
                       description="Write the LoRA of a kept checkpoint of a run (OUTPUT/NAME.run) as a file like "
                                   "the run's own NAME.safetensors: the same header (with the checkpoint's step), "
                                   "key format and atomic write. Default: the latest checkpoint.")
    p.add_argument("run_dir", metavar="RUN_DIR", help="the run folder, OUTPUT/NAME.run")
    which = p.add_mutually_exclusive_group()
    which.add_argument("--step", type=int, metavar="N", help="the checkpoint at step N")
    which.add_argument("--best", action="store_true", help="the checkpoint with the lowest validation loss")
    p.add_argument("--out", metavar="FILE", help="the .safetensors to write (default: OUTPUT/NAME.stepNNNNNN.safetensors)")
    p.add_argument("--format", choices=config.OUTPUT_FORMATS,
                   help="key format (default: the run's output.format; auto = the family's default)")
    p.add_argument("--raw", action="store_true", help="the raw (last-step) weights instead of the EMA average "
                                                     "(runs with train.ema_decay)")

    p = sub.add_parser("grid", help="draw a checkpoint grid: sets x (base model, checkpoints, target) as one PNG",
                       description="Draw each set (rows) with the base model, each chosen checkpoint and the best "
                                   "one (columns) through the family's pipeline, beside its input and target, and "
                                   "save it as one PNG.")
    p.add_argument("run_dir", metavar="RUN_DIR", help="the run folder, OUTPUT/NAME.run")
    p.add_argument("--sets", nargs="+", metavar="SET", help="rows (default: the held-out sets, else the first 4)")
    p.add_argument("--steps", nargs="+", type=int, metavar="N", help="checkpoint columns (default: every kept one)")
    p.add_argument("--best", action="store_true", help="add the best checkpoint (lowest validation loss)")
    p.add_argument("--out", metavar="PNG", help="the PNG to write (default: RUN_DIR/grid.png)")
    p.add_argument("--jsonl", action="store_true", help="print only events, one JSON object per line; a 'stop' "
                                                       "line on stdin, or its end, cancels")
    p.add_argument("--size", type=int, metavar="PX", help="cell size: the training area's side (default: "
                                                         "train.resolution)")
    p.add_argument("--sample-steps", type=int, metavar="K", help="denoising steps per cell (default: train.sample_steps)")
    p.add_argument("--seed", type=int, metavar="S", help="noise seed, the same in every cell (default: train.seed)")

    p = sub.add_parser("caption", help="draft captions with a local Qwen2.5-VL / Qwen3-VL or Qwen-Image-Edit folder",
                       description="Draft captions for a dataset's sets with a local vision-language model: for "
                                   "a paired set one imperative edit instruction (\"make it night\"), for a "
                                   "single-image set a description. Existing captions are skipped unless --overwrite.")
    p.add_argument("target", help="a dataset folder, or a project .toml (model from [caption] model, else model.path)")
    p.add_argument("--model", metavar="DIR", help="a Qwen2.5-VL / Qwen3-VL model folder, or a Qwen-Image-Edit(-Plus) "
                                                  "pipeline folder (its text encoder and processor)")
    which = p.add_mutually_exclusive_group()
    which.add_argument("--sets", metavar="A,B", help="only these sets (comma-separated names)")
    which.add_argument("--missing", action="store_true", help="only sets without a caption (the default skips "
                                                               "captioned sets too, and lists them)")
    p.add_argument("--set", dest="set_names", action="append", metavar="NAME",
                   help="one set by its exact name (repeatable; for names with commas)")
    p.add_argument("--instruction", metavar="TEXT", help="what the model is asked (default: an edit instruction "
                                                         "for paired sets, a description for single images)")
    p.add_argument("--trigger", metavar="WORD", help="a trigger word to keep out of the drafts (a project's "
                                                     "dataset.trigger by default)")
    p.add_argument("--max-tokens", type=int, metavar="N", help="new tokens per draft (default 80)")
    p.add_argument("--quantization", choices=("none", "int8", "int4"),
                   help="load the model's linear layers in 8 or 4 bits (bitsandbytes) to save GPU memory")
    p.add_argument("--overwrite", action="store_true", help="replace existing captions")
    p.add_argument("--jsonl", action="store_true", help="print only events, one JSON object per line")
    p.add_argument("--no-write", action="store_true",
                   help="write no files: drafts come back as caption events only (what the app runs)")

    p = sub.add_parser("worker", help="the training process the app starts (events on stdout, 'stop' on stdin)")
    p.add_argument("config", help="the project/config .toml")
    p.add_argument("--resume", action="store_true", help="continue from the last checkpoint")

    p = sub.add_parser("demo", help="write a tiny random-weight model and a demo dataset (no download, no GPU)")
    p.add_argument("out_dir", help="folder to create")
    p.add_argument("--family", default="kontext", choices=catalog.FAMILY_IDS)

    p = sub.add_parser("self-test", help="smoke-test this install: window, demo, a short training run, the LoRA loads")
    p.add_argument("--keep", metavar="DIR", help="work in DIR and keep it (default: a temporary folder, removed)")
    p.add_argument("--steps", type=int, default=4, help="training steps (default 4)")
    p.add_argument("--timeout", type=float, default=900, help="give up on a step after this many seconds (default 900)")
    p.add_argument("--screenshot", metavar="PNG", help="save a picture of the window after training")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    command = args.command or "gui"

    if command == "gui":
        from lorastudio.ui.app import run_gui

        return run_gui(getattr(args, "target", None))
    if command == "check":
        from lorastudio.dataset.check import check_command

        return check_command(Path(args.dir) if args.dir else None, as_json=args.json,
                             config=Path(args.config) if args.config else None)
    if command == "train":
        from lorastudio.training.worker import train_command

        return train_command(Path(args.config), jsonl=args.jsonl, resume=args.resume, dry_run=args.dry_run)
    if command == "caption":
        from lorastudio.training.caption_command import caption_command

        if args.max_tokens is not None and args.max_tokens <= 0:
            build_parser().error("--max-tokens must be greater than 0")
        return caption_command(args)
    if command == "worker":
        from lorastudio.training.worker import worker_command

        return worker_command(Path(args.config), resume=args.resume)
    if command == "sample":
        from lorastudio.training.sample import sample_command

        return sample_command(args)
    if command == "export":
        from lorastudio.training.export import export_command

        return export_command(args)
    if command == "grid":
        for flag, value in (("--size", args.size), ("--sample-steps", args.sample_steps)):
            if value is not None and value <= 0:
                build_parser().error(f"{flag} must be greater than 0")
        from lorastudio.training.grid import grid_command

        return grid_command(args)
    if command == "demo":
        from lorastudio.training.demo import demo_command

        return demo_command(Path(args.out_dir), family=args.family)
    if command == "self-test":
        from lorastudio.selftest import self_test_command

        return self_test_command(args)
    raise AssertionError(command)  # pragma: no cover


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
