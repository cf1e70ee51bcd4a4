"""The demo's trained VAE (``resources/demo_vae``, made by ``tools/train_demo_vae.py``) reconstructs
the demo's pictures, so its previews and Test-tab images are pictures, not noise."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from lorastudio.training.demo import DEMO_SETS, DEMO_VAE_CONFIG, demo_edit, demo_vae_dir, shapes_picture

#: Reconstruction quality the shipped VAE must keep (it measures 22.8 … 27.1 dB on these
#: pictures; a random-weight VAE gets under 10 dB): a margin of several dB, not a tuned figure.
MIN_PSNR_DB = 20.0


@pytest.fixture(scope="module")
def demo_vae():
    from diffusers import AutoencoderKL

    return AutoencoderKL.from_pretrained(demo_vae_dir(), local_files_only=True).eval()


def test_the_demo_vae_is_a_small_autoencoderkl_of_the_shipped_config(demo_vae):
    for key, value in DEMO_VAE_CONFIG.items():
        assert demo_vae.config[key] == (list(value) if isinstance(value, tuple) else value), key
    files = list(demo_vae_dir().iterdir())
    assert sorted(p.name for p in files) == ["config.json", "diffusion_pytorch_model.safetensors"]
    assert sum(p.stat().st_size for p in files) < 3_000_000


def test_the_demo_vae_reconstructs_the_demo_pictures(demo_vae):
    """The demo's own sets (picture seeds the VAE never trained on), before and after the edit,
    through the pipelines' path: mode of the encoding, then decode."""
    pictures = []
    for seed in range(1, DEMO_SETS + 1):
        picture = shapes_picture(seed)
        pictures += [picture, demo_edit(picture)]
    x = torch.from_numpy(np.stack([np.asarray(p, dtype=np.float32) for p in pictures])).permute(0, 3, 1, 2)
    x = x / 127.5 - 1.0
    with torch.no_grad():
        reconstruction = demo_vae.decode(demo_vae.encode(x).latent_dist.mode()).sample.clamp(-1, 1)
    mse = ((reconstruction - x) ** 2).mean(dim=(1, 2, 3))
    psnr = [10 * math.log10(4 / m) for m in mse.tolist()]  # pixels span 2 ([-1, 1])
    assert min(psnr) > MIN_PSNR_DB, [round(p, 1) for p in psnr]
