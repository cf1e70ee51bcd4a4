"""The Kontext demo's base transformer is the pretrained one shipped in ``resources/demo_transformer``
(made by ``tools/train_demo_transformer.py``), and, like a real Kontext base, it follows its
input image, so the demo LoRA has only the edit to learn; and the demo's own default run (its
``project.toml`` as ``lorastudio demo`` writes it) makes previews that show the edit: what the
artist sees on the Train page at the last step, and in the Test tab's checkpoint grid for the
held-out sets, passes the learning measure in pixels against the base model's pictures.
``benchmarks/demo_learning.py`` measures the same run through the Test tab's call and prints
the figures."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file

import learning_helpers as L
from lorastudio import run_folder
from lorastudio.config import load_config
from lorastudio.training.demo import DEMO_HELD_OUT, DEMO_SETS, demo_transformer_dir, shapes_picture
from lorastudio.training.events import NullSink
from lorastudio.training.grid import GridLayout, render_grid
from lorastudio.training.stop import StopSignal
from lorastudio.training.trainer import train

WEIGHTS = "diffusion_pytorch_model.safetensors"


def test_the_kontext_demo_loads_the_shipped_pretrained_transformer(demo_project):
    model = load_config(demo_project).model.path
    shipped = load_file(demo_transformer_dir() / WEIGHTS)
    written = load_file(model / "transformer" / WEIGHTS)
    assert shipped.keys() == written.keys()
    assert all(torch.equal(shipped[name], written[name]) for name in shipped)
    files = list(demo_transformer_dir().iterdir())
    assert sorted(p.name for p in files) == ["config.json", WEIGHTS]
    assert sum(p.stat().st_size for p in files) < 3_000_000  # a few MB at most, in the package


def test_the_demo_base_follows_its_input_image(demo_project):
    """Asked to keep the picture (one of its pretraining edits), the base redraws each held-out
    demo picture (never seen in pretraining) closer to that picture than to the other one:
    it reads its input image, through the pipeline's own denoising loop."""
    from diffusers import FluxKontextPipeline

    pipe = FluxKontextPipeline.from_pretrained(str(load_config(demo_project).model.path), local_files_only=True)
    pipe.set_progress_bar_config(disable=True)
    pictures = {name: shapes_picture(DEMO_SETS - len(DEMO_HELD_OUT) + 1 + i) for i, name in enumerate(DEMO_HELD_OUT)}
    pixels = {name: np.asarray(p, dtype=np.float32) / 255 for name, p in pictures.items()}
    for name, picture in pictures.items():
        with torch.no_grad():
            out = pipe(prompt="keep the picture as it is", image=picture, width=64, height=64, max_area=64 * 64,
                       _auto_resize=False, num_inference_steps=4, guidance_scale=2.5,
                       generator=torch.Generator().manual_seed(0), output_type="np").images[0]
        errors = {other: float(np.mean((out - target) ** 2)) for other, target in pixels.items()}
        assert errors[name] < 0.5 * min(e for other, e in errors.items() if other != name), (name, errors)



@pytest.fixture(scope="module")
def demo_run(demo_project, tmp_path_factory):
    """The demo's default run, trained once: its project exactly as ``lorastudio demo`` wrote
    it (steps, rate, previews, checkpoints, held-out sets), only its output moved; one thread.
    Returns (config, the run's events, the checkpoint grid of the preview and held-out sets:
    base model and last step, and its set names)."""
    config = load_config(demo_project)
    config.output.dir = tmp_path_factory.mktemp("demo-run") / "output"
    sink = NullSink()
    with L.one_thread():
        result = train(config, sink)
        assert result.lora is not None and not result.stopped
        previewed = [e["set"] for e in sink.history if e["event"] == "sample" and e["step"] == config.train.steps]
        rows = previewed + list(config.dataset.validation)
        grid = render_grid(config.output.run_dir, NullSink(), StopSignal(), sets=rows, steps=[config.train.steps],
                           out=tmp_path_factory.mktemp("demo-grid") / "grid.png")
    return config, sink.history, Image.open(grid).convert("RGB"), rows


def _cell(grid: Image.Image, config, row: int, column: int) -> Image.Image:
    # columns: input, base model, step N, target (``grid.compose``), one training bucket square each
    return grid.crop(GridLayout(rows=0, columns=4, cell=config.train.resolution).box(row, column))


def _target(config, name: str) -> Image.Image:
    return Image.open(config.dataset.path / f"{name}_end.png").convert("RGB")


def test_the_demo_runs_last_previews_show_the_edit(demo_run):
    """The previews the Train page shows at the demo's last step (the PNGs the trainer wrote)
    against the base model's pictures of the same call (the grid's base column: the same
    pipeline call, seed and steps, without the LoRA): error ratio <= 0.5 in pixels, and each
    preview nearer its own target than the other preview's."""
    config, events, grid, rows = demo_run
    last = [e for e in events if e["event"] == "sample" and e["step"] == config.train.steps]
    assert len(last) == config.train.sample_sets >= 2
    names = [e["set"] for e in last]
    previews = [Image.open(e["path"]).convert("RGB") for e in last]
    base = [_cell(grid, config, rows.index(n), 1) for n in names]
    result = L.pixel_result(names, base, previews, [_target(config, n) for n in names])
    assert result.passed, result


def test_the_demo_runs_checkpoint_grid_shows_the_edit_on_held_out_sets(demo_run):
    """The Test tab's checkpoint grid, held-out rows (never trained on): the last step's
    column against the base model's passes the same measure."""
    config, _events, grid, rows = demo_run
    names = list(config.dataset.validation)
    assert names == DEMO_HELD_OUT
    base = [_cell(grid, config, rows.index(n), 1) for n in names]
    tuned = [_cell(grid, config, rows.index(n), 2) for n in names]
    result = L.pixel_result(names, base, tuned, [_target(config, n) for n in names])
    assert result.passed, result
