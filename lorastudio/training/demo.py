"""``lorastudio demo OUT``: everything needed to watch LoRA Studio train, with no download and no GPU.

Writes three things into ``OUT``:

* ``model/`` — a tiny model of the chosen family (``training/tiny``), a normal diffusers
  folder loaded exactly as a real one is. Its text encoders have random weights; for the
  FLUX.1 families its VAE is a small ``AutoencoderKL`` trained once on the demo's kind of
  picture (``resources/demo_vae``, ``tools/train_demo_vae.py``), so inputs, targets and
  decoded latents are pictures rather than noise; for Kontext (the default) its transformer
  is a small base pretrained once on other edits of such pictures (``resources/demo_transformer``,
  ``tools/train_demo_transformer.py``), so, like a real Kontext, it already draws them and
  follows its input image (the other families' transformers are their tiny test models: random,
  or briefly pretrained on generic pictures, never on the demo's edit). A marker file tells
  the app it is the demo's model (its learning-rate advice has the demo's own range);
* ``dataset/`` — a small generated dataset whose edit depends on the input: coloured shapes
  on a plain background (``NAME_start.png``, 64 px) and the same picture with its colours
  inverted (``NAME_end.png``), captioned in ``NAME.txt``. Text-to-image families get single
  pictures with captions instead;
* ``project.toml`` — a config that trains it on the CPU in about a minute: 64-pixel
  training area, 20 steps of all 10 trained sets each, previews and checkpoints every 10,
  two sets held out for validation (``dataset.validation``), inputs at the target's size
  (``DEMO_INPUT_SIZE``), output in ``OUT/output``.

Its recipe (``DEMO_STEPS`` …) is far from the guide's: a tiny model and a CPU minute.
Real models want the guide's values; ``config.DEMO_LEARNING_RATES`` is the demo model's
range. ``benchmarks/demo_learning.py`` measures what the run learned through the pipeline,
on the held-out sets.
"""

from __future__ import annotations

import random
import shutil
import sys
from pathlib import Path

from PIL import Image, ImageDraw, ImageOps

from lorastudio import catalog
from lorastudio.model_folder import DEMO_MODEL_FILE
from lorastudio.config import Config, DatasetConfig, ModelConfig, OutputConfig, TrainConfig, load_config, save_config
from lorastudio.user_folders import resources_dir

#: How many image sets the demo dataset has.
DEMO_SETS = 12
#: Side of the generated pictures: the demo's 64-pixel training area, so training, previews and
#: the Test tab (which generates at the input's size) all work at the size the VAE was trained for.
DEMO_IMAGE_SIZE = 64
EDIT_CAPTION = "invert the colours"
TEXT_TO_IMAGE_CAPTION = "zkw style, coloured shapes on a plain background, inverted colours"
#: The demo run's recipe (``demo_config``; measured by ``benchmarks/demo_learning.py``, figures
#: in ``benchmarks/README.md``). Far from the guide's: a tiny model and a CPU minute.
#: Every training set in each step (batch = the 10 trained sets: the mean gradient over the
#: whole dataset); with the pretrained base 20 such steps learn the edit (held-out pixel ratio
#: under 0.1 through the pipeline), half the random-base demo's 40;
DEMO_STEPS = 20
#: a learning rate 40x the guide's highest typical one (``config.DEMO_LEARNING_RATES`` is the demo model's range,
#: so the Train page does not warn about the app's own choice);
DEMO_LEARNING_RATE = 2e-2
#: noise levels drawn logit-normal around a high σ (mean 2.0: σ ≈ 0.88): the steps where a
#: denoiser decides the picture's colours (measured with the random base against 1.0, 0.0,
#: -0.5 and uniform: the higher the mean, the lower the held-out error through the pipeline).
DEMO_TIMESTEP_MEAN = 2.0
#: The demo's VAE: FLUX.1's ``AutoencoderKL`` shrunk to two blocks (2x downsampling, where the
#: real one has 8x) and 4 latent channels, trained once on the demo's kind of picture by
#: ``tools/train_demo_vae.py`` and shipped in ``resources/demo_vae/`` (the weights; its
#: ``shift_factor``/``scaling_factor`` are measured there). So small a VAE reconstructs flat
#: coloured shapes only at a low compression; 4 channels keep the packed latent narrow
#: (4 x 2 x 2 = 16), so the tiny transformer can carry it.
DEMO_VAE_CONFIG = {
    "in_channels": 3, "out_channels": 3,
    "down_block_types": ("DownEncoderBlock2D",) * 2, "up_block_types": ("UpDecoderBlock2D",) * 2,
    "block_out_channels": (16, 32), "layers_per_block": 1, "latent_channels": 4, "norm_num_groups": 4,
    "sample_size": 64, "use_quant_conv": False, "use_post_quant_conv": False, "mid_block_add_attention": False,
}
#: The families whose demo model gets the demo VAE: the FLUX.1 ones, whose VAE class is
#: ``AutoencoderKL`` (the others keep their tiny recipe's random VAE).
DEMO_VAE_FAMILIES = ("kontext", "flux")
#: The families whose demo model gets a pretrained demo transformer (``resources/demo_transformer``,
#: made by ``tools/train_demo_transformer.py``): Kontext, the demo's default. Like a real Kontext
#: base it already draws the demo's kind of picture and follows its input image (pretrained on
#: other edits: keep, grey, swap red and blue, invert one channel), so the demo LoRA has only
#: the edit to learn. With only the first three its 20 steps passed the measure yet left the
#: previews noise in the inverted colours (its x0 prediction at σ = 1 carried the noise):
#: a base that already draws per-pixel colour maps cleanly makes the same run's previews
#: recognisable pictures (``benchmarks/README.md``).
DEMO_TRANSFORMER_FAMILIES = ("kontext",)
#: Written into OUT so a later ``demo OUT`` may replace what an earlier one wrote, and
#: nothing else.
MARKER = ".lorastudio-demo"


def demo_vae_dir() -> Path:
    """Where the trained demo VAE lives (``resources/demo_vae``, in a checkout, the package or a bundle)."""
    resources = resources_dir()
    if resources is None:
        raise FileNotFoundError("the resources folder (style sheet, icons, demo VAE) was not found; "
                                "reinstall LoRA Studio")
    return resources / "demo_vae"


def demo_transformer_dir() -> Path:
    """Where the pretrained demo transformer lives (``resources/demo_transformer``)."""
    return demo_vae_dir().parent / "demo_transformer"


def shapes_picture(seed: int, size: int = DEMO_IMAGE_SIZE) -> Image.Image:
    """Two to four random rectangles, ellipses and triangles on a plain background."""
    rng = random.Random(seed)
    image = Image.new("RGB", (size, size), tuple(rng.randrange(40, 216) for _ in range(3)))
    draw = ImageDraw.Draw(image)
    for _ in range(rng.randint(2, 4)):
        colour = tuple(rng.randrange(256) for _ in range(3))
        x, y = rng.randrange(0, size * 3 // 4), rng.randrange(0, size * 3 // 4)
        w, h = rng.randrange(size // 6, size // 2), rng.randrange(size // 6, size // 2)
        shape = rng.choice(("rectangle", "ellipse", "triangle"))
        if shape == "rectangle":
            draw.rectangle((x, y, x + w, y + h), fill=colour)
        elif shape == "ellipse":
            draw.ellipse((x, y, x + w, y + h), fill=colour)
        else:
            draw.polygon([(x, y + h), (x + w // 2, y), (x + w, y + h)], fill=colour)
    return image


def set_name(index: int) -> str:
    """The name of the demo's set ``index`` (1-based); its picture's seed is ``index``."""
    return f"shapes{index:02d}"


#: The sets the demo project holds out for validation (``dataset.validation``): never trained
#: on, so the loss chart's held-out series and the learning test measure an unseen picture.
DEMO_HELD_OUT = [set_name(DEMO_SETS - 1), set_name(DEMO_SETS)]


def demo_edit(image: Image.Image) -> Image.Image:
    """The edit the demo LoRA learns: colours inverted. It depends on the input image (each
    target is its own input's negative), and it is local: each output patch depends on the
    input patch at the same place only. Mirroring as well was measured not to be learnable in
    the demo's run: a tiny transformer must then carry every patch across the picture
    (``benchmarks/README.md``)."""
    return ImageOps.invert(image.convert("RGB"))


def write_demo_dataset(folder: Path, paired: bool = True, sets: int = DEMO_SETS) -> Path:
    """Generate the dataset into ``folder`` (edit pairs, or single captioned pictures for
    text-to-image); returns ``folder``."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(1, sets + 1):
        name = set_name(i)
        before = shapes_picture(seed=i)
        if paired:
            pairs = [(folder / f"{name}_start.png", before), (folder / f"{name}_end.png", demo_edit(before))]
            caption = EDIT_CAPTION
        else:
            pairs = [(folder / f"{name}.png", demo_edit(before))]
            caption = TEXT_TO_IMAGE_CAPTION
        for path, image in pairs:
            image.save(path)
        (folder / f"{name}.txt").write_text(caption + "\n", encoding="utf-8")
    return folder


def build_demo_model(family: str, model_dir: Path, pretrained: bool = True) -> Path:
    """The family's tiny model (``training/tiny``); for the FLUX.1 families (whose VAE is an
    ``AutoencoderKL``) with the trained demo VAE swapped in and the transformer's latent
    width matched to it, so previews and the Test tab show pictures, not noise; for Kontext
    with the pretrained demo transformer (unless ``pretrained`` is False: what
    ``tools/train_demo_transformer.py`` starts from)."""
    from lorastudio.training.tiny import build_tiny_model, build_tiny_pipeline

    if family in DEMO_VAE_FAMILIES:
        _save_with_demo_vae(build_tiny_pipeline(family), model_dir,
                            pretrained=pretrained and family in DEMO_TRANSFORMER_FAMILIES)
    else:
        build_tiny_model(family, model_dir)
    # The app's learning-rate advice knows the demo model by this file (its own range).
    (model_dir / DEMO_MODEL_FILE).write_text(f"the tiny model of `lorastudio demo` ({family})\n", encoding="utf-8")
    return model_dir


def _save_with_demo_vae(pipe, model_dir: Path, pretrained: bool) -> None:
    from lorastudio.training.families._common import offline_kwargs
    from lorastudio.training.tiny import quiet_libraries, save_pipeline_folder, seeded

    with quiet_libraries():
        from diffusers import AutoencoderKL

        vae = AutoencoderKL.from_pretrained(demo_vae_dir(), **offline_kwargs()).eval()
        # The recipe's transformer, its input width matched to the demo VAE's packed latent
        # (channels x 2 x 2 patches); out_channels follows in_channels.
        if pretrained:
            transformer = type(pipe.transformer).from_pretrained(demo_transformer_dir(), **offline_kwargs()).eval()
        else:
            config = {**pipe.transformer.config, "in_channels": vae.config.latent_channels * 4}
            transformer = seeded(lambda: type(pipe.transformer).from_config(config))
        pipe = type(pipe)(**{**pipe.components, "vae": vae, "transformer": transformer})
        save_pipeline_folder(pipe, model_dir)


#: The demo project's ``train.input_size``: inputs at the target's 64-px bucket. The edit
#: families' measured default (``"pipeline"``, ~1 MP) would scale the 64-px pictures up 256×
#: in area for nothing (they hold no more detail) and make an input ~4,000 to 65,000 tokens
#: against the target's 16 to 256 (the demo VAE halves a side): minutes a step on a CPU, not a
#: run of about a minute. The Test tab samples with the project's rule, so it stays quick too.
DEMO_INPUT_SIZE = "target"


def demo_config(out_dir: Path, family: str) -> Config:
    """The demo project: tiny model, generated dataset, CPU-sized training."""
    input_size = DEMO_INPUT_SIZE if catalog.family(family).edit else catalog.AUTO_INPUT_SIZE
    return Config(
        model=ModelConfig(path=out_dir / "model"),
        dataset=DatasetConfig(path=out_dir / "dataset", validation=list(DEMO_HELD_OUT)),
        train=TrainConfig(steps=DEMO_STEPS, learning_rate=DEMO_LEARNING_RATE, rank=16, seed=42, resolution=64,
                          batch_size=DEMO_SETS - len(DEMO_HELD_OUT), timesteps="logit_normal",
                          timestep_mean=DEMO_TIMESTEP_MEAN, sample_every=DEMO_STEPS // 2,
                          checkpoint_every=DEMO_STEPS // 2, sample_steps=4, sample_sets=2, input_size=input_size),
        output=OutputConfig(dir=out_dir / "output", name=f"demo_{family.replace('-', '_')}"),
    )


def create_demo(out_dir: Path, family: str = "kontext") -> Path:
    """Write model, dataset and project into ``out_dir``; returns the ``project.toml`` path.

    Refuses (FileExistsError) a non-empty folder that an earlier demo did not write, so a
    mistyped path never replaces someone's files.
    """
    try:
        record = catalog.family(family)  # every family has a tiny model, hence a demo
    except catalog.UnknownFamilyError as exc:
        raise ValueError(f"no demo for family {family!r}; choose one of {', '.join(catalog.FAMILY_IDS)}") from exc
    out_dir = Path(out_dir).expanduser().absolute()
    if out_dir.exists() and any(out_dir.iterdir()) and not (out_dir / MARKER).exists():
        raise FileExistsError(f"{out_dir} already exists and has files in it; choose a new or empty folder")
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / MARKER).write_text(f"written by `lorastudio demo` ({family})\n", encoding="utf-8")

    build_demo_model(family, out_dir / "model")
    dataset = out_dir / "dataset"
    if dataset.exists():
        shutil.rmtree(dataset)
    write_demo_dataset(dataset, paired=record.main_mode == catalog.PAIRED)
    project = out_dir / "project.toml"
    save_config(demo_config(out_dir, family), project)
    load_config(project)  # what we wrote must read back, paths and all
    return project


def demo_command(out_dir: Path, family: str = "kontext") -> int:
    """``lorastudio demo OUT_DIR [--family …]``: create the demo and say what was written."""
    try:
        project = create_demo(out_dir, family)
    except (FileExistsError, ValueError, OSError) as exc:
        print(f"lorastudio demo: {exc}", file=sys.stderr)
        return 1
    from lorastudio.training.tiny import folder_size

    root = project.parent
    sets = len(list((root / "dataset").glob("*.txt")))
    print(f"Demo written to {root}")
    if family in DEMO_TRANSFORMER_FAMILIES:
        weights = "tiny pretrained"
        trained = " (transformer and VAE trained for the demo's kind of picture; not on its edit)"
    else:
        weights = "tiny test"  # random, or briefly pretrained on generic pictures (``training/tiny``)
        trained = " (random transformer, VAE trained for the demo's pictures)" if family in DEMO_VAE_FAMILIES else ""
    print(f"  model/         {weights} {family} model{trained} ({folder_size(root / 'model') / 1e6:.1f} MB)")
    print(f"  dataset/       {sets} generated sets: coloured shapes, and the same with their colours inverted")
    print(f"  project.toml   {DEMO_STEPS} steps at 64 px on the CPU, all trained sets in each step; previews and "
          f"checkpoints every {DEMO_STEPS // 2} steps; "
          f"{', '.join(DEMO_HELD_OUT)} held out for validation")
    print("Train it with:")
    print(f"  lorastudio train {project}")
    return 0
