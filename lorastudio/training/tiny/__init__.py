"""Tiny random-weight models, one per family, saved as ordinary local diffusers folders.

Nothing can be downloaded where LoRA Studio is tested (and the demo must run on a fresh
machine with no model at all), so every family gets a miniature of its real model: the
SAME component classes (``FluxTransformer2DModel``, ``AutoencoderKL``, ``CLIPTextModel``,
``T5EncoderModel``, ``QwenImageTransformer2DModel``, ``AutoencoderKLQwenImage``,
``Qwen2_5_VLForConditionalGeneration`` …) built from small configs with seeded random
weights, and saved through the real pipeline class's ``save_pretrained`` (safetensors plus
``model_index.json``). The folder therefore loads through exactly the code path a real
FLUX.1-Kontext-dev or Qwen-Image-Edit-2509 folder takes, and the family's diffusers
pipeline runs on it end to end. Each folder is a few MB and builds in seconds; the same
seed gives the same weights.

Built so they can learn (tests/training/test_learning*.py prove it family by family): each
transformer's hidden width (heads × head_dim) is at least its packed latent width (latent
channels × 2×2), because a narrower one cannot even carry the noisy latents through; so the
VAEs have fewer latent channels than the real ones (4) rather than the transformers growing.
Each VAE's normalization constants are measured on :func:`calibration_pixels`; the tiny
FLUX.2 ([dev], [klein]), Qwen-Image 2.1, LongCat-Image(-Edit) and Z-Image (Omni) transformers are
also briefly pretrained on them (``flux2``, ``qwen21``, ``longcat``, ``zimage``, all through
:func:`pretrain`: a real base model's output side and modulation are trained, and a LoRA cannot
learn a whole random denoiser).
Those pretrained weights ship under ``resources/tiny_transformers`` (:func:`pretrained`), so a
build loads them in a moment instead of pretraining for a minute or more.

One recipe module per model line (``flux1``, ``qwen``, ``flux2``), named by each family's
catalog record (``tiny_recipe``); each has ``RECIPES``: family id (plus variants) → a
builder of the pipeline object. The tokenizers they share are built in ``tokenizers``.
"""

from __future__ import annotations

import contextlib
import importlib
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import torch

from lorastudio import catalog
from lorastudio.model_folder import MODEL_INDEX

#: Seed used for every tiny model (each component re-seeds, so they do not depend on order).
SEED = 0


def seeded(build: Callable[[], torch.nn.Module]) -> torch.nn.Module:
    """A component built right after seeding, in eval mode: the same weights every time."""
    torch.manual_seed(SEED)
    return build().eval()


def calibration_pixels(size: int = 64) -> torch.Tensor:
    """A fixed batch of pictures, (N, 3, size, size) in [-1, 1], for measuring a tiny VAE's
    latent statistics: plain colours, colour fields split in two, and bars, from a seeded
    generator.

    A real VAE ships the constants that bring its latents to about zero mean and unit
    variance (FLUX.1's ``shift_factor``/``scaling_factor``, Qwen-Image's per-channel
    ``latents_mean``/``latents_std``, FLUX.2's batch-norm statistics): the noise the
    transformer learns to remove is N(0, I), so images must live on the same scale. A random
    tiny VAE's latents are far smaller (variance ~0.01), which puts every image almost at
    the same point next to the noise and no LoRA could tell two targets apart; so each tiny
    recipe measures its own constants on these pictures, as the real ones were measured.
    """
    g = torch.Generator().manual_seed(SEED)
    images = []
    for i in range(12):
        colours = torch.rand(3, 3, generator=g) * 2 - 1
        image = colours[0].view(3, 1, 1).expand(3, size, size).clone()
        if i % 3 >= 1:
            image[:, :, size // 2:] = colours[1].view(3, 1, 1)
        if i % 3 == 2:
            x = int(torch.randint(0, size * 3 // 4, (1,), generator=g))
            image[:, size // 4: size * 3 // 4, x: x + size // 4] = colours[2].view(3, 1, 1)
        images.append(image)
    return torch.stack(images)


#: The σ of :func:`pretrain`'s steps: logit-normal with this mean (σ ≈ 0.73 at the centre), as the
#: learning tests' quick recipe draws them.
PRETRAIN_SIGMA_MEAN = 1.0


#: One pretraining task: the latents to reach (one per picture), the transformer's velocity as the
#: pipeline calls it (``velocity(noisy, sigmas, generator)``: its tokens, position ids, prompt, σ as
#: the timestep; anything else it draws, from ``generator``, after σ and the noise) and how the
#: latents are packed into its tokens.
PretrainTask = tuple[torch.Tensor, Callable[[torch.Tensor, torch.Tensor, torch.Generator], torch.Tensor],
                     Callable[[torch.Tensor], torch.Tensor]]


def pretrain(transformer: torch.nn.Module, tasks: list[PretrainTask], steps: int, learning_rate: float) -> None:
    """Train every parameter of ``transformer`` for ``steps`` full-batch AdamW steps on flow
    matching: each step draws σ and noise for each task in turn and sums their velocity losses
    (a model with two modes, such as Qwen-Image 2.1's edit and text-to-image, trains both at once).

    Why: a LoRA on a family's targets changes only the transformer blocks, and a real base model
    comes with a trained output side (head, ``norm_out`` and its modulation, the embedders); a
    random tiny one does not, so its LoRA would have to learn the whole denoiser. A recipe
    pretrains on a generic task (the :func:`calibration_pixels`, a generic caption), never a
    learning test's sets. Seeded and on one thread, so every build gives the same weights."""
    generator = torch.Generator().manual_seed(SEED)
    optimizer = torch.optim.AdamW(transformer.parameters(), lr=learning_rate, weight_decay=0.0)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        for _ in range(steps):
            loss = 0.0
            for targets, velocity, pack in tasks:
                shape = (-1,) + (1,) * (targets.dim() - 1)
                sigmas = torch.sigmoid(torch.randn(len(targets), generator=generator) + PRETRAIN_SIGMA_MEAN)
                noise = torch.randn(targets.shape, generator=generator)
                noisy = (1 - sigmas.view(shape)) * targets + sigmas.view(shape) * noise
                loss = loss + (velocity(noisy, sigmas, generator) - pack(noise - targets)).pow(2).mean()
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
    finally:
        torch.set_num_threads(threads)
        optimizer.zero_grad(set_to_none=True)


#: The pretrained tiny transformers' weights ship as ``resources/<this>/<family id>.safetensors``
#: (made by ``tools/pretrain_tiny_transformers.py``): pretraining them costs minutes of one core
#: (the two LongCat ones ~85 s), and every fresh test session and every tiny model built by hand
#: would pay it again.
SHIPPED_WEIGHTS_FOLDER = "tiny_transformers"
#: Beside them, family id → the :func:`recipe_fingerprint` each was made under. Kept apart from the
#: weights, so a recipe change that leaves the weights as they were rewrites a line, not megabytes.
FINGERPRINTS_FILE = "fingerprints.json"
#: True while ``tools/pretrain_tiny_transformers.py`` rebuilds them: :func:`pretrained` then always
#: trains, and records each family's result here (family id → state dict) for the tool to save.
REBUILDING: dict[str, dict[str, torch.Tensor]] | None = None


def recipe_fingerprint() -> str:
    """What a pretrained tiny transformer's weights follow from: the tiny recipes' code (every module
    of this package, line endings normalized) and the torch, diffusers and transformers versions
    (their models and pipelines compute the prompts and latents it learns). Shipped weights are
    listed with the fingerprint they were made under; a different one means they may be stale.
    Empty in a frozen bundle, which has no sources: it ships the weights of the checkout it was
    built from."""
    import hashlib

    import diffusers
    import transformers

    sources = sorted(Path(__file__).parent.glob("*.py"))
    if not sources:
        return ""
    digest = hashlib.sha256()
    for source in sources:
        digest.update(source.name.encode() + b"\0" + source.read_bytes().replace(b"\r\n", b"\n") + b"\0")
    for version in (torch.__version__.split("+")[0], diffusers.__version__, transformers.__version__):
        digest.update(version.encode() + b"\0")
    return digest.hexdigest()


def shipped_weights_folder() -> Path | None:
    """``resources/tiny_transformers``, if the resources are found."""
    from lorastudio.user_folders import resources_dir

    resources = resources_dir()
    return resources / SHIPPED_WEIGHTS_FOLDER if resources else None


def shipped_fingerprints() -> dict[str, str]:
    """Family id → the fingerprint its shipped weights were made under (empty if none ship)."""
    import json

    folder = shipped_weights_folder()
    path = folder / FINGERPRINTS_FILE if folder else None
    return json.loads(path.read_text(encoding="utf-8")) if path is not None and path.is_file() else {}


def shipped_weights_file(family: str) -> Path | None:
    """The shipped pretrained weights of ``family``'s tiny transformer, if the resources hold them."""
    folder = shipped_weights_folder()
    path = folder / f"{family}.safetensors" if folder else None
    return path if path is not None and path.is_file() else None


def pretrained(family: str, transformer: torch.nn.Module, train: Callable[[], None]) -> None:
    """Give ``family``'s tiny ``transformer`` its pretrained weights: the shipped ones when they
    were made under this :func:`recipe_fingerprint` (loaded strictly: every tensor, no other),
    otherwise by running ``train()`` (the recipe's pretraining, which the shipped weights are the
    result of), with a warning that names the tool which brings them up to date."""
    import warnings

    from safetensors.torch import load_file

    path = None if REBUILDING is not None else shipped_weights_file(family)
    if path is not None:
        current = recipe_fingerprint()
        if not current or shipped_fingerprints().get(family) == current:
            transformer.load_state_dict(load_file(str(path)), strict=True)
            return
        warnings.warn(f"{path} was made by other tiny-recipe code or library versions; pretraining "
                      f"{family}'s tiny transformer instead (a minute or so). Run "
                      f"tools/pretrain_tiny_transformers.py to bring the shipped weights up to date.",
                      stacklevel=2)
    train()
    if REBUILDING is not None:
        REBUILDING[family] = {name: tensor.detach().clone().contiguous()
                              for name, tensor in transformer.state_dict().items()}


def recipes() -> dict[str, Callable[[], object]]:
    """Family id (plus variants such as ``qwen-edit-plus-2509``) → builder of its tiny pipeline,
    from the recipe modules the catalog names."""
    out: dict[str, Callable[[], object]] = {}
    for module in dict.fromkeys(record.tiny_recipe for record in catalog.FAMILIES):
        out.update(importlib.import_module(f"{__name__}.{module}").RECIPES)
    return out


def build_tiny_pipeline(family: str):
    """The tiny pipeline object in memory (what :func:`build_tiny_model` saves)."""
    builders = recipes()
    if family not in builders:
        raise ValueError(f"no tiny model for family {family!r}; known: {', '.join(builders)}")
    return builders[family]()


@contextlib.contextmanager
def quiet_libraries() -> Iterator[None]:
    """No progress bars or info chatter from transformers/diffusers while building: the
    demo prints its own short report."""
    from diffusers.utils import logging as diffusers_logging
    from transformers.utils import logging as transformers_logging

    saved = [(lib, lib.get_verbosity(), lib.is_progress_bar_enabled())
             for lib in (transformers_logging, diffusers_logging)]
    for lib, _, _ in saved:
        lib.set_verbosity_error()
        lib.disable_progress_bar()
    try:
        yield
    finally:
        for lib, verbosity, bars in saved:
            lib.set_verbosity(verbosity)
            if bars:
                lib.enable_progress_bar()


def build_tiny_model(family: str, out_dir: Path) -> Path:
    """Write the tiny model of ``family`` as a diffusers folder at ``out_dir``; returns it.

    Saved through the real pipeline class's ``save_pretrained`` (safetensors only), so it
    has the real layout: ``model_index.json``, ``transformer/``, ``vae/``, the text
    encoder(s) and tokenizer(s), ``scheduler/``, and for Qwen edit models ``processor/``.
    Written to a temporary sibling folder and renamed, so a half-built folder never
    looks like a model. An existing ``out_dir`` is replaced only if it is empty or a
    diffusers model folder (has ``model_index.json``); anything else is refused
    (FileExistsError) rather than deleted.
    """
    out_dir = Path(out_dir)
    if out_dir.exists() and any(out_dir.iterdir()) and not (out_dir / MODEL_INDEX).is_file():
        raise FileExistsError(f"{out_dir} exists and is not a model folder; not replacing it")
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    with quiet_libraries():
        return save_pipeline_folder(build_tiny_pipeline(family), out_dir)


def save_pipeline_folder(pipe, out_dir: Path) -> Path:
    """``pipe.save_pretrained`` (safetensors) into a temporary sibling, then renamed over
    ``out_dir``: a half-written folder never looks like a model."""
    out_dir = Path(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}-", dir=out_dir.parent))
    try:
        pipe.save_pretrained(tmp, safe_serialization=True)
        if out_dir.exists():
            shutil.rmtree(out_dir)
        tmp.rename(out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out_dir


def folder_size(path: Path) -> int:
    """Bytes in all files under ``path`` (for the report and the size test)."""
    return sum(p.stat().st_size for p in Path(path).rglob("*") if p.is_file())
