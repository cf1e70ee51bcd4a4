"""The Kontext demo's base transformer is the pretrained one shipped in ``resources/demo_transformer``
(made by ``tools/train_demo_transformer.py``), and, like a real Kontext base, it follows its
input image, so the demo LoRA has only the edit to learn.

Whether the demo's own run then passes the learning measure on its held-out sets costs minutes
of CPU (a whole default run): ``benchmarks/demo_learning.py`` measures that, not the suite."""

from __future__ import annotations

import numpy as np
import torch
from safetensors.torch import load_file

from lorastudio.config import load_config
from lorastudio.training.demo import DEMO_HELD_OUT, DEMO_SETS, demo_transformer_dir, shapes_picture

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

