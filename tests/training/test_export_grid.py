"""``lorastudio export`` and ``lorastudio grid`` on one real run of the tiny Kontext model (EMA on,
checkpoints at steps 2 and 4, step 2 marked best as valcore's validation marks it): the export
of a checkpoint is the run's own file, each flag does what it says, bad input is one line; the
grid has a cell per (set, column), its checkpoint columns differ from the base model's, a
cancelled grid writes nothing, and ``--jsonl`` speaks the protocol."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image

from lorastudio import run_folder
from lorastudio.cli import main as cli_main
from lorastudio.config import load_config
from lorastudio.training.events import NullSink
from lorastudio.training.export import ExportError
from lorastudio.training.formats import export_tensors
from lorastudio.training.grid import GridLayout, pick_sets, render_grid
from lorastudio.training.lora import read_lora_file
from lorastudio.training.plan import make_plan
from lorastudio.training.stop import StopSignal
from lorastudio.training.trainer import train

from trainer_helpers import cli_env, events_of, make_config, small_dataset


@pytest.fixture(scope="module")
def ema_run(demo_project, tmp_path_factory):
    """The run's config; its folder keeps checkpoints 2 (marked best) and 4."""
    out = tmp_path_factory.mktemp("export")
    config = load_config(make_config(demo_project, out, dataset=small_dataset(demo_project, out / "dataset"),
                                     steps=4, checkpoint_every=2, ema_decay=0.9, learning_rate=3e-2,
                                     sample_sets=0))
    train(config, NullSink())
    manifest = run_folder.checkpoint_path(config.output.run_dir, 2) / run_folder.MANIFEST
    manifest.write_text(json.dumps({**json.loads(manifest.read_text()), "best": True}))
    return config


def _export(capsys, *args: str) -> tuple[int, str, str]:
    rc = cli_main(["export", *map(str, args)])
    captured = capsys.readouterr()
    return rc, captured.out.strip(), captured.err


def _equal(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_export_writes_the_runs_own_file_for_any_checkpoint(ema_run, tmp_path, capsys):
    run_dir, out_dir = ema_run.output.run_dir, ema_run.output.dir
    # default: the latest checkpoint, the EMA weights, beside the run's files: the run's own LoRA, header and all
    rc, printed, _ = _export(capsys, run_dir)
    assert rc == 0 and printed == str(out_dir / "test_lora.step_000004.safetensors")
    ours, theirs = read_lora_file(printed), read_lora_file(ema_run.output.lora_path)
    assert _equal(ours[0], theirs[0]) and ours[1] == theirs[1] and ours[1]["lorastudio.weights"] == "ema"
    # --raw: the last step's weights, as NAME.raw.safetensors holds them
    rc, printed, _ = _export(capsys, run_dir, "--raw")
    assert rc == 0 and printed == str(out_dir / "test_lora.step_000004.raw.safetensors")
    ours, theirs = read_lora_file(printed), read_lora_file(ema_run.output.raw_lora_path)
    assert _equal(ours[0], theirs[0]) and ours[1] == theirs[1] and ours[1]["lorastudio.weights"] == "raw"
    # --step and --best: the earlier checkpoint (the best one here), its step in the header
    rc, printed, _ = _export(capsys, run_dir, "--step", 2, "--out", tmp_path / "two.safetensors")
    assert rc == 0 and printed == str(tmp_path / "two.safetensors")
    two = read_lora_file(printed)
    assert two[1]["lorastudio.steps"] == "2" and not _equal(two[0], read_lora_file(ema_run.output.lora_path)[0])
    rc, printed, _ = _export(capsys, run_dir, "--best", "--out", tmp_path / "best.safetensors")
    assert rc == 0 and _equal(read_lora_file(printed)[0], two[0])
    # --format comfyui: the same weights under ComfyUI's names, as the formats module renames them
    rc, printed, _ = _export(capsys, run_dir, "--format", "comfyui", "--out", tmp_path / "comfy.safetensors")
    comfy, meta = read_lora_file(printed)
    diffusers_file = read_lora_file(ema_run.output.lora_path)[0]
    peft_state = {k.removeprefix("transformer."): v for k, v in diffusers_file.items() if not k.endswith(".alpha")}
    assert meta["lorastudio.format"] == "comfyui"
    assert _equal(comfy, export_tensors(peft_state, ema_run.train.rank, float(ema_run.train.rank), "kontext",
                                        fmt="comfyui"))


def test_export_bad_input_is_one_line_naming_what_exists(ema_run, demo_project, tmp_path, capsys):
    rc, _, err = _export(capsys, ema_run.output.run_dir, "--step", 3)
    assert rc == 2 and "--step 3" in err and "kept checkpoints: steps 2, 4" in err and "Traceback" not in err
    rc, _, err = _export(capsys, tmp_path)
    assert rc == 2 and "not a run folder" in err and "Traceback" not in err
    rc, _, err = _export(capsys, ema_run.output.run_dir, "--out", tmp_path / "lora.pt")
    assert rc == 2 and "must end in .safetensors" in err
    # a run without EMA and no best: --raw is the same file and says so; --best names what there is
    plain = load_config(make_config(demo_project, tmp_path / "plain", steps=1, sample_sets=0,
                                    dataset=small_dataset(demo_project, tmp_path / "dataset", sets=1)))
    train(plain, NullSink())
    rc, printed, err = _export(capsys, plain.output.run_dir, "--raw")
    assert rc == 0 and "did not average its weights" in err
    assert _equal(read_lora_file(printed)[0], read_lora_file(plain.output.lora_path)[0])
    rc, _, err = _export(capsys, plain.output.run_dir, "--best")
    assert rc == 2 and "no checkpoint is marked best" in err and "steps 1" in err


class Recorder(NullSink):
    """Asks the grid to stop once ``stop_at`` cells are drawn (None: never)."""

    def __init__(self, stop: StopSignal, stop_at: int | None = None) -> None:
        super().__init__()
        self.stop, self.stop_at = stop, stop_at

    def _write(self, ev):
        if self.stop_at is not None and ev["event"] == "status" and ev.get("current") == self.stop_at:
            self.stop.request("test")


def _cell(sheet: Image.Image, layout: GridLayout, row: int, column: int) -> np.ndarray:
    return np.asarray(sheet.crop(layout.box(row, column)), dtype=np.int16)


def test_grid_draws_a_cell_per_set_and_column(ema_run, tmp_path):
    sets = [s.name for s in make_plan(ema_run).sets[:2]]
    stop = StopSignal()
    sink = Recorder(stop)
    out = render_grid(ema_run.output.run_dir, sink, stop, sets=sets, steps=[4], best=True, out=tmp_path / "g.png",
                      sample_steps=1)
    assert out == tmp_path / "g.png"
    # input | base model | step 2 (best) | step 4 | target, one row per set, cells of train.resolution px
    layout = GridLayout(rows=2, columns=5, cell=ema_run.train.resolution)
    sheet = Image.open(out).convert("RGB")
    assert sheet.size == layout.size
    cells = [e for e in sink.history if e["event"] == "status" and e["phase"] == "grid"]
    assert [e["current"] for e in cells][1:7] == list(range(6)) and {e["total"] for e in cells} == {6}
    assert [e["message"] for e in cells][1:4:2] == [f"{sets[0]}: base model", f"{sets[0]}: step 2 (best)"]
    plan = {s.name: s for s in make_plan(ema_run).sets}
    for row, name in enumerate(sets):
        base, best, last = (_cell(sheet, layout, row, c) for c in (1, 2, 3))
        # the LoRA changes the picture, and step 4's from step 2's: most pixels, not a rounding here and there
        assert (best != base).any(axis=-1).mean() > 0.5 and (last != best).any(axis=-1).mean() > 0.5
        target = Image.open(plan[name].target).convert("RGB")
        target.thumbnail((layout.cell, layout.cell), Image.Resampling.LANCZOS)
        left, top = (layout.cell - target.width) // 2, (layout.cell - target.height) // 2
        assert np.array_equal(_cell(sheet, layout, row, 4)[top: top + target.height, left: left + target.width],
                              np.asarray(target, dtype=np.int16)), "the last column is the set's target"
    # cancelled in the second cell: nothing written
    stop = StopSignal()
    assert render_grid(ema_run.output.run_dir, Recorder(stop, stop_at=1), stop, sets=sets, steps=[2, 4],
                       out=tmp_path / "cancelled.png", sample_steps=1) is None
    assert not (tmp_path / "cancelled.png").exists()


def _grid_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "lorastudio", "grid", *args, "--jsonl"], capture_output=True,
                          text=True, timeout=300, env=cli_env(), stdin=subprocess.DEVNULL)


def test_grid_jsonl_reports_bad_input_and_stops_when_stdin_ends(ema_run, tmp_path):
    run_dir = str(ema_run.output.run_dir)
    proc = _grid_cli(run_dir, "--steps", "3", "--out", str(tmp_path / "g.png"))
    events = events_of(proc.stdout)
    assert proc.returncode == 2 and [e["event"] for e in events] == ["error"]
    assert "kept checkpoints: steps 2, 4" in events[0]["message"] and "Traceback" not in proc.stderr
    # stdin at its end from the start (nobody left to watch): cancelled, no PNG
    proc = _grid_cli(run_dir, "--out", str(tmp_path / "g.png"), "--sample-steps", "1")
    events = events_of(proc.stdout)
    assert proc.returncode == 0 and events[-1] == {"event": "done", "grid": None, "stopped": True}
    assert all(e["event"] == "status" and e["phase"] == "grid" for e in events[:-1])
    assert not (tmp_path / "g.png").exists()


def test_grid_rows_default_to_the_held_out_sets(ema_run):
    """No --sets: the sets held out for validation (the run's dataset.validation), else the first ones."""
    assert [s.name for s in pick_sets(ema_run, None)] == ["shapes01", "shapes02", "shapes03"]
    held_out = dataclasses.replace(ema_run, dataset=dataclasses.replace(ema_run.dataset, validation=["shapes03"]))
    assert [s.name for s in pick_sets(held_out, None)] == ["shapes03"]
    assert [s.name for s in pick_sets(held_out, ["shapes02", "shapes01"])] == ["shapes02", "shapes01"]
    with pytest.raises(ExportError, match="no usable set named nope"):
        pick_sets(ema_run, ["nope"])


def test_a_gpu_runs_file_dtype_is_kept_for_its_exports(ema_run, tmp_path):
    """A bf16 run writes its LoRA in bf16; its manifest says so, and an export made on any machine
    writes bf16 too (not the float32 the checkpoint keeps for resuming)."""
    from safetensors.torch import load_file

    from lorastudio.training.run_lora import RunLora

    run = RunLora(ema_run, "kontext", "diffusers", sets=3, edit=True, dtype=torch.bfloat16)
    cp = run_folder.latest_checkpoint(ema_run.output.run_dir)
    again = RunLora.from_manifest(ema_run, {**cp.manifest, **run.manifest_facts()}, "diffusers")
    assert (again.dtype, again.sets, again.edit, again.ema) == (torch.bfloat16, 3, True, True)
    path = again.write(tmp_path / "bf16.safetensors", load_file(str(cp.path / "lora.safetensors")), cp.step)
    tensors = read_lora_file(path)[0]
    assert {t.dtype for k, t in tensors.items() if not k.endswith(".alpha")} == {torch.bfloat16}


def test_column_titles_stay_inside_their_columns_at_small_cells():
    """At the demo's 64-px cells "base model" and "step 10 (best)" ran into each other; each
    title now keeps to its own column (two lines if needed) and says all it said."""
    from PIL import ImageDraw

    from lorastudio.training.grid import HEADER, _fit_title, compose

    titles = ["input", "base model", "step 10 (best)", "step 20", "target"]
    layout = GridLayout(rows=1, columns=len(titles), cell=64)
    sheet = np.asarray(compose(layout, ["shapes11"], titles, {}), dtype=np.int16)
    background = sheet[HEADER // 2, 2]
    for c in range(1, len(titles)):  # no ink on the border between two columns
        left = layout.box(0, c)[0]
        assert (np.abs(sheet[:HEADER, left - 1:left + 1] - background).sum(axis=-1) == 0).all(), titles[c]
    draw = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    for title in titles:
        text, _font = _fit_title(draw, title, 60)
        assert text.split() == title.split()  # wrapped at most, never cut
