"""``lorastudio grid RUN_DIR``: a checkpoint grid, one PNG that shows whether and when a LoRA learned.

Rows are sets (by default the held-out ones, ``dataset.validation``, else the first few);
columns are, left to right, the set's input image (edit datasets), the base model, each
chosen checkpoint (``--steps``, ``--best``; default: every kept one), and the set's target.
Every cell is drawn by the family's own diffusers pipeline (``family.sample``, the code behind
training previews and ``lorastudio sample``) at the set's training bucket, with its input
images and caption as training saw them, the same seed in every cell. The transformer loads
once: the base column is drawn before any adapter is added, then the run's adapter is added
with ``lora.add_lora`` and each checkpoint's weights are loaded into it in turn — the weights
the run's LoRA file holds at that step (the EMA average when the run used one, as in
``lorastudio export``).

With ``--jsonl`` stdout carries only events: ``status`` (phase ``grid``, ``current``/``total``
cells), then ``done`` with ``grid`` (the PNG's path; null and ``stopped: true`` when
cancelled) or ``error``. A ``stop`` line on stdin, end of stdin or Ctrl+C cancels between
cells, and then no PNG is written; the PNG is written atomically, so a crash leaves none either.
"""

from __future__ import annotations

import contextlib
import io
import os
import sys
import tempfile
import traceback
from dataclasses import dataclass
from pathlib import Path

import torch
from PIL import Image, ImageDraw, ImageFont

from lorastudio import run_folder
from lorastudio.config import Config
from lorastudio.run_folder import Checkpoint
from lorastudio.training.events import EventSink, JsonlSink, redirect_stdio
from lorastudio.training.export import ExportError, choose_checkpoint, load_run_config
from lorastudio.training.stop import EVENTS_CLOSED, StopSignal
from lorastudio.training.terminal import TerminalSink

#: Rows drawn when the run holds no sets out and ``--sets`` is not given: the first ones.
DEFAULT_ROWS = 4
#: Height of the column titles (two lines of small type) and width of the row titles, in pixels.
HEADER, ROW_TITLE = 30, 120
BACKGROUND, INK = (32, 32, 32), (235, 235, 235)


@dataclass
class Column:
    title: str
    #: None: the base model (no adapter), else the checkpoint whose weights draw the column.
    checkpoint: Checkpoint | None = None


@dataclass
class GridLayout:
    """Where each cell is in the PNG: a square of ``cell`` pixels per (row, column), after a
    title row ``HEADER`` high and a title column ``ROW_TITLE`` wide."""

    rows: int
    columns: int
    cell: int

    @property
    def size(self) -> tuple[int, int]:
        return ROW_TITLE + self.columns * self.cell, HEADER + self.rows * self.cell

    def box(self, row: int, column: int) -> tuple[int, int, int, int]:
        left, top = ROW_TITLE + column * self.cell, HEADER + row * self.cell
        return left, top, left + self.cell, top + self.cell


def compose(layout: GridLayout, row_titles: list[str], column_titles: list[str],
            cells: dict[tuple[int, int], Image.Image]) -> Image.Image:
    """One picture: titles on top and at the left, each image fitted into its cell's square."""
    sheet = Image.new("RGB", layout.size, BACKGROUND)
    draw = ImageDraw.Draw(sheet)
    font = ImageFont.load_default(size=12)
    for c, title in enumerate(column_titles):
        left, _, right, _ = layout.box(0, c)
        text, fitted_font = _fit_title(draw, title, right - left - 4)
        draw.multiline_text(((left + right) // 2, HEADER // 2), text, fill=INK, font=fitted_font, anchor="mm",
                            align="center", spacing=0)
    for r, title in enumerate(row_titles):
        _, top, _, bottom = layout.box(r, 0)
        draw.text((6, (top + bottom) // 2), title[:18], fill=INK, font=font, anchor="lm")
    for (r, c), image in cells.items():
        left, top, right, bottom = layout.box(r, c)
        fitted = image.convert("RGB")
        fitted.thumbnail((layout.cell, layout.cell), Image.Resampling.LANCZOS)
        sheet.paste(fitted, (left + (layout.cell - fitted.width) // 2, top + (layout.cell - fitted.height) // 2))
    return sheet


def _fit_title(draw: ImageDraw.ImageDraw, title: str, width: int):
    """``title`` as (text, font) that fits a column ``width`` wide in the ``HEADER`` row: one
    line if it can, else two (split at a space), in the largest of a few small fonts. At
    training's 64-px buckets "base model" and "step 10 (best)" ran into each other."""
    def fits(text: str, font) -> bool:
        left, top, right, bottom = draw.multiline_textbbox((0, 0), text, font=font, spacing=0)
        return right - left <= width and bottom - top <= HEADER - 2

    words = title.split()
    candidates = [title] + [" ".join(words[:i]) + "\n" + " ".join(words[i:]) for i in range(1, len(words))]
    candidates[1:] = sorted(candidates[1:], key=lambda text: max(map(len, text.split("\n"))))  # balanced first
    font = None
    for size in (12, 11, 10, 9, 8):
        font = ImageFont.load_default(size=size)
        for text in candidates:
            if fits(text, font):
                return text, font
    while len(title) > 1 and not fits(title + "…", font):
        title = title[:-1]
    return title + "…", font


def pick_sets(config: Config, names: list[str] | None):
    """The dataset's sets to draw: ``names``, else the held-out ones, else the first few."""
    from lorastudio.dataset import scan_dataset

    if not config.dataset.path.is_dir():
        raise ExportError(f"dataset.path: folder not found: {config.dataset.path} (the run's dataset is needed "
                          "for the grid's inputs, captions and targets)")
    dataset = scan_dataset(config.dataset.path)
    usable = {s.name: s for s in dataset.trainable_sets()}
    if names:
        unknown = [n for n in names if n not in usable]
        if unknown:
            raise ExportError(f"--sets: no usable set named {', '.join(unknown)} in {config.dataset.path} "
                              f"(sets: {', '.join(list(usable)[:12])}{' …' if len(usable) > 12 else ''})")
        return [usable[n] for n in names]
    held_out = [usable[n] for n in config.dataset.validation if n in usable]
    return held_out or list(usable.values())[:DEFAULT_ROWS]


def pick_columns(run_dir: Path, steps: list[int] | None, best: bool) -> list[Column]:
    """Base model, the chosen checkpoints (default: every kept one) and the best one, in step order."""
    chosen = [choose_checkpoint(run_dir, step) for step in steps] if steps else run_folder.list_checkpoints(run_dir)
    best_cp = choose_checkpoint(run_dir, best=True) if best else None
    if not chosen:
        choose_checkpoint(run_dir)  # raises: no checkpoint at all
    by_step = {cp.step: cp for cp in chosen + ([best_cp] if best_cp else [])}
    best_step = best_cp.step if best_cp else None
    return [Column("base model")] + [Column(f"step {s}" + (" (best)" if s == best_step else ""), by_step[s])
                                     for s in sorted(by_step)]


def render_grid(run_dir: Path, sink: EventSink, stop: StopSignal, *, sets: list[str] | None = None,
                steps: list[int] | None = None, best: bool = False, out: Path | None = None, size: int = 0,
                sample_steps: int = 0, seed: int | None = None) -> Path | None:
    """Draw and write the grid; returns its path, or None when stopped. Raises ExportError on bad input."""
    from lorastudio.dataset import effective_caption, load_image
    from lorastudio.training.buckets import resize_to
    from lorastudio.training.cache import TrainingCache
    from lorastudio.training.export import family_class

    run_dir = Path(run_dir)
    config = load_run_config(run_dir)
    columns = pick_columns(run_dir, steps, best)
    image_sets = pick_sets(config, sets)
    out = Path(out) if out else run_folder.grid_path(run_dir)
    if out.suffix.lower() != ".png":
        raise ExportError(f"--out {out}: the grid is written as a PNG; give a file name ending in .png")
    t = config.train
    family_cls = family_class(config, columns[-1].checkpoint.manifest.get("family", ""))
    resolution = size or t.resolution
    paired = any(s.inputs for s in image_sets)
    titles = (["input"] if paired else []) + [c.title for c in columns] + ["target"]
    layout = GridLayout(rows=len(image_sets), columns=len(titles), cell=resolution)
    total = len(image_sets) * len(columns)
    sink.emit("status", phase="grid", message=f"loading {family_cls.display_name}", current=0, total=total)

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dtype = torch.bfloat16 if device.type == "cuda" and torch.cuda.is_bf16_supported() else torch.float32
    family = family_cls(config.model.path, device, dtype)
    family.use_input_size(t.input_size)  # inputs sized as in the run's training and previews
    sizes = TrainingCache(run_folder.cache_dir(run_dir), family, resolution, write=False)
    rows = []  # (bucket, inputs at their training sizes, caption) per set, as training and previews use them
    for s in image_sets:
        bucket, input_sizes = sizes.plan(s)
        rows.append((bucket, [resize_to(load_image(p), wh) for p, wh in zip(s.inputs, input_sizes)],
                     effective_caption(s, config.dataset.trigger, config.dataset.default_caption)))
    cells: dict[tuple[int, int], Image.Image] = {}
    first = 1 if paired else 0
    for r, s in enumerate(image_sets):
        if paired and s.inputs:
            cells[(r, 0)] = load_image(s.inputs[0])
        cells[(r, layout.columns - 1)] = load_image(s.target)
    if stop.is_set():  # cancelled before the (long) model loads
        return None
    # every row's prompt encoded with the text encoders loaded once, then freed for the transformer
    # (what a run does for its previews; ``family.sample`` finds the encodings memoized)
    family.load_encoders()
    try:
        for _bucket, inputs, caption in rows:
            family.prepare_sample(caption, inputs)
    finally:
        family.free_encoders()
    if stop.is_set():
        return None
    transformer = family.load_transformer()
    transformer.eval()
    adapter = None
    done = 0
    for c, column in enumerate(columns):
        if column.checkpoint is not None:
            adapter = adapter or CheckpointWeights(transformer, config, family_cls)
        with adapter.applied(column.checkpoint) if column.checkpoint is not None else contextlib.nullcontext():
            for r, (bucket, inputs, caption) in enumerate(rows):
                if stop.is_set():
                    return None
                sink.emit("status", phase="grid", message=f"{image_sets[r].name}: {column.title}",
                          current=done, total=total)
                with torch.no_grad():
                    cells[(r, first + c)] = family.sample(transformer, inputs, caption, bucket,
                                                          sample_steps or t.sample_steps,
                                                          t.seed if seed is None else seed)
                done += 1
    if stop.is_set():
        return None
    sink.emit("status", phase="grid", message=f"writing {out}", current=total, total=total)
    sheet = compose(layout, [s.name for s in image_sets], titles, cells)
    _write_png(sheet, out)
    return out


class CheckpointWeights:
    """The run's adapter on the loaded transformer, holding one checkpoint's weights at a time."""

    def __init__(self, transformer: torch.nn.Module, config: Config, family_cls) -> None:
        from lorastudio.training.lora import add_lora

        t = config.train
        self.transformer = transformer
        self.params = add_lora(transformer, t.rank, t.alpha or float(t.rank), family_cls.lora_target_modules,
                               t.adapter, t.lokr_factor)
        self.ema_decay = t.ema_decay

    def applied(self, cp: Checkpoint):
        """Load ``cp``'s raw weights; with EMA, the average in their place for the block."""
        from safetensors.torch import load_file

        from lorastudio.training.checkpoint import load_extra
        from lorastudio.training.ema import LoraEMA
        from lorastudio.training.lora import load_peft_state_dict

        device = self.params[0].device
        load_peft_state_dict(self.transformer, {k: v.to(device) for k, v in
                                                load_file(str(cp.path / "lora.safetensors")).items()})
        if not cp.manifest.get("ema_decay"):
            return contextlib.nullcontext()
        ema = LoraEMA(self.params, cp.manifest["ema_decay"])
        ema.load(load_extra(cp, "ema"), cp.manifest)
        return ema.applied()


def _write_png(image: Image.Image, path: Path) -> None:
    from lorastudio.fileio import atomic_write_bytes

    buf = io.BytesIO()
    image.save(buf, format="PNG")
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(path, buf.getvalue())


def grid_command(args) -> int:
    stop = StopSignal()
    redirected = None
    log_path = Path(tempfile.gettempdir()) / f"lorastudio-grid-{os.getpid()}.log"
    if args.jsonl:
        redirected = redirect_stdio(log_path)
        sink: EventSink = JsonlSink(redirected.events, on_broken=lambda: stop.request(EVENTS_CLOSED))
        stop.watch_stdin(stop_on_eof=True)
        stop.watch_parent()
    else:
        sink = TerminalSink()
    stop.install_sigint()
    try:
        path = render_grid(Path(args.run_dir), sink, stop, sets=args.sets, steps=args.steps, best=args.best,
                           out=Path(args.out) if args.out else None, size=args.size or 0,
                           sample_steps=args.sample_steps or 0, seed=args.seed)
        sink.emit("done", grid=str(path) if path else None, stopped=path is None)
        return 0
    except (ExportError, FileNotFoundError) as exc:  # FileNotFoundError: a checkpoint saved without its EMA
        sink.emit("error", kind="config", message=str(exc))
        return 2
    except Exception as exc:  # every other failure becomes one error event
        from lorastudio.training.plan import classify

        if args.jsonl:
            with open(log_path, "a", encoding="utf-8") as fh:
                fh.write(traceback.format_exc())
        else:
            traceback.print_exc(file=sys.stderr)
        kind, message = classify(exc)
        sink.emit("error", kind=kind, message=message, **({"log": str(log_path)} if args.jsonl else {}))
        return 1
    finally:
        stop.restore_sigint()
        if redirected is not None:
            redirected.close()
