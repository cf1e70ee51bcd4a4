"""The learning measure: did a LoRA learn its sets? One definition, used by every learning test.

A falling training loss proves little: a wrong velocity sign, a timestep scaled by 1000 or
input-image position ids that differ from the pipeline's all still give one. What counts is
what the artist will see, so the measure runs the family's **diffusers pipeline end to end**
(its ``__call__``, its scheduler, its input-image handling: ``family.run_pipeline``, the
call a preview makes) once without and once with the LoRA, the LoRA loaded from the file
the trainer wrote by the app's own loader (``training/sample.py``'s ``load_lora_into``, or
peft for DoRA/LoKr files, as ``lorastudio sample`` does).

**The measure** (:class:`LearningResult`):

* error(set, target) = mean squared difference between the pipeline's output for ``set``
  and ``target``, in the pipeline's **latent space**: the final denoised latents of the
  call (the packed tokens the transformer denoises, read at the last step with the
  pipeline's ``callback_on_step_end``), against the target image encoded by the family's
  own ``encode_image`` at the output size (normalized as the transformer sees it) and
  packed by the pipeline's own ``_pack_latents``. Latents, not pixels, because a tiny
  random VAE does not reconstruct images: its decoder would add an error of its own that
  no LoRA can remove (the output could be the perfect latent and still be far from the
  picture), and it maps very different latents to similar grey pixels, hiding both
  learning and its failure. Every family's latents are normalized to about unit variance,
  so errors compare across families;
* ratio = (mean over sets of the error with the LoRA) ÷ (the same without it);
* **pass** = ratio ≤ :data:`PASS_RATIO` (0.5) **and** every set's output with the LoRA is
  closer to its own target than to any other set's target — so a LoRA that paints the
  average target (or ignores the input image) fails.

The API other helpers call (the demo, new families' tests):

* :func:`edit_sets` / :func:`text_to_image_sets` make sets, :func:`write_dataset` writes them;
* :func:`train_tiny` trains through the real trainer (a TOML config read by ``load_config``,
  ``trainer.train``) and returns the LoRA file; ``wrap`` swaps the family class for a
  test-side wrapper such as :func:`negated_velocity` or :func:`timestep_times_1000`;
* :func:`pipeline_errors` runs the pipeline with and without the LoRA and returns the
  :class:`LearningResult`;
* :data:`QUICK_RECIPE` (``train_tiny(..., steps=N, **QUICK_RECIPE, batch_size=len(sets))``),
  :data:`QUICK_PIPELINE_STEPS` and :func:`one_thread`: the cheap recipe the suite's
  learning tests use (32 px, σ weighted to where a 4-step pipeline denoises).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageOps

#: A LoRA passes when its error is at most this fraction of the base model's.
PASS_RATIO = 0.5
#: One caption for every edit set: only the input image tells the sets apart.
EDIT_CAPTION = "invert the colours"
#: Colours of the sets' backgrounds (well apart, so the sets' targets are too).
PALETTE = ((220, 40, 40), (40, 200, 60), (50, 70, 230), (230, 210, 40), (170, 60, 200), (40, 200, 210))
#: The quick recipe every learning test can use (``train_tiny(..., **QUICK_RECIPE)``), with
#: ``batch_size`` = the number of sets and :data:`QUICK_PIPELINE_STEPS` for the measure.
#: 32 px = 2×2 packed target tokens (4× cheaper a step than 64 px); ``timestep_mean`` 1.0
#: (logit-normal σ, centred at σ≈0.73 instead of 0.5) weights the high σ that a 4-step
#: pipeline spends most of its steps at; rank 16 on the 32-wide layers; lr 2e-2 (5e-2 was
#: measured to collapse to the average target). Measured on the tiny Kontext with
#: ``edit_sets(3, 32)``: ratio 0.21 after 300 steps (0.33 after 200; the default σ
#: sampler at 1e-2 reached 0.70 after 150). It is a documented recipe option
#: (``train.timesteps``' mean), so the test still proves the velocity, timestep and
#: position conventions the pipeline shares with the trainer.
QUICK_RECIPE: dict[str, Any] = {"resolution": 32, "rank": 16, "learning_rate": 2e-2,
                                "timesteps": "logit_normal", "timestep_mean": 1.0}
#: Denoising steps of the quick measure's pipeline call.
QUICK_PIPELINE_STEPS = 4
#: Training steps of a run through a test-side fault (``FAULTS``): enough for a negated velocity
#: to carry every family's output away from the targets (ratio 1.38–6.4 at the measure's seed 0,
#: per family in README "How we know a LoRA learns"; after 30 steps Qwen-Image fell to 1.13 at one
#: seed), far fewer than the passing runs need. ``assert_fault_caught`` asserts the move away.
FAULT_STEPS = 40
#: Training threads for the quick recipe: on the tiny model one thread is faster than two
#: (measured under load on a 2-core box: 20 Kontext steps 28 s with one, 110 s with two;
#: the tiny matrices are too small to share, and two threads per process oversubscribe
#: the cores once anything else runs). ``one_thread()`` sets it for a block.
QUICK_THREADS = 1


@contextlib.contextmanager
def one_thread(threads: int = QUICK_THREADS):
    """torch's intra-op threads set to ``threads`` for the block, restored after it."""
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)


#: Captions for text-to-image sets: one per set, since with one caption the model cannot
#: tell the sets apart and could only learn their average.
T2I_CAPTIONS = ("a red card", "a green card", "a blue card", "a yellow card", "a purple card", "a cyan card")


@dataclass
class LearningSet:
    """One image set: its input images (none for text-to-image), target and caption."""

    name: str
    inputs: list[Image.Image]
    target: Image.Image
    caption: str


def card(colour: tuple[int, int, int], index: int, size: int) -> Image.Image:
    """A plain ``colour`` picture with a white bar whose place depends on ``index``: mostly one
    colour, and not uniform, so the edit has a place in the picture (plain cards were measured
    to learn no faster)."""
    image = Image.new("RGB", (size, size), colour)
    draw = ImageDraw.Draw(image)
    x = (index * size // 5) % (size * 3 // 4)
    draw.rectangle((x, size // 4, x + size // 4, size * 3 // 4), fill=(245, 245, 245))
    return image


def edit_sets(count: int = 3, size: int = 64, caption: str = EDIT_CAPTION) -> list[LearningSet]:
    """``count`` edit sets, one caption for all: the target is the input with its colours
    inverted, so it depends on the input image alone."""
    out = []
    for i in range(count):
        before = card(PALETTE[i % len(PALETTE)], i, size)
        out.append(LearningSet(f"set{i + 1:02d}", [before], ImageOps.invert(before), caption))
    return out


def text_to_image_sets(count: int = 3, size: int = 64) -> list[LearningSet]:
    """``count`` text-to-image sets, each with its own caption and picture."""
    return [LearningSet(f"set{i + 1:02d}", [], card(PALETTE[i % len(PALETTE)], i, size), T2I_CAPTIONS[i])
            for i in range(count)]


def write_dataset(folder: Path, sets: list[LearningSet]) -> Path:
    """The sets as a LoRA Studio dataset folder (NAME_start.png, NAME_end.png, NAME.txt; a
    text-to-image set is NAME.png and NAME.txt)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    for s in sets:
        if s.inputs:
            for i, image in enumerate(s.inputs):
                image.save(folder / f"{s.name}_start{i if i else ''}.png")
            s.target.save(folder / f"{s.name}_end.png")
        else:
            s.target.save(folder / f"{s.name}.png")
        (folder / f"{s.name}.txt").write_text(s.caption + "\n", encoding="utf-8")
    return folder


# -- training ---------------------------------------------------------------------------------


def train_tiny(model_dir: Path, dataset_dir: Path, out_dir: Path, steps: int, learning_rate: float,
               wrap: Callable[[type], type] | None = None, **train: Any) -> Path:
    """Train a LoRA on ``dataset_dir`` with the real trainer; returns the LoRA file.

    The config is written as TOML and read back with ``load_config`` (as ``lorastudio
    train`` reads it); ``train`` sets more ``[train]`` keys (rank, resolution …). Inputs are
    trained at the target's size (``input_size = "target"``) unless ``train`` says otherwise:
    the measure's calls (:func:`pipeline_errors`) size them the same way by default.
    ``wrap(family_cls)`` → a subclass the run uses instead of the family (a test-side
    fault such as :func:`negated_velocity`).
    """
    import tomli_w

    from lorastudio.config import load_config
    from lorastudio.training.events import NullSink
    from lorastudio.training.plan import make_plan
    from lorastudio.training.trainer import train as run

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    keys = {"steps": steps, "learning_rate": learning_rate, "rank": 8, "resolution": 64, "seed": 0,
            "sample_every": 0, "checkpoint_every": 0, "sample_sets": 0, "input_size": "target", **train}
    path = out_dir / "config.toml"
    path.write_text(tomli_w.dumps({"model": {"path": str(model_dir)}, "dataset": {"path": str(dataset_dir)},
                                   "train": keys, "output": {"dir": str(out_dir / "output"), "name": "lora"}}),
                    encoding="utf-8")
    config = load_config(path)
    plan = make_plan(config)
    if wrap is not None:
        plan.family_cls = wrap(plan.family_cls)
    result = run(config, NullSink(), plan=plan)
    assert result.lora is not None and not result.stopped
    return result.lora


def negated_velocity(family_cls: type) -> type:
    """The family with its velocity target negated (the model learns ``x0 - noise``): the
    loss falls as well as with the right sign, but the pipeline then walks away from the
    data. Negating the prediction inside the loss is the same as negating the target."""

    class NegatedVelocity(family_cls):
        def predict(self, *args, **kwargs):
            return -super().predict(*args, **kwargs)

    return NegatedVelocity


def timestep_times_1000(family_cls: type) -> type:
    """The family fed σ·1000 as the timestep (the pipeline passes ``t / 1000`` = σ)."""

    class TimestepTimes1000(family_cls):
        def predict(self, transformer, noisy_target, sigmas, input_latents, prompt):
            return super().predict(transformer, noisy_target, sigmas * 1000, input_latents, prompt)

    return TimestepTimes1000


FAULTS = {"negated_velocity": negated_velocity, "timestep_times_1000": timestep_times_1000}


# -- the measure ------------------------------------------------------------------------------


@dataclass
class LearningResult:
    """The pipeline's outputs against the targets, without and with the LoRA."""

    names: list[str]
    #: error(set's output without the LoRA, its own target), per set.
    base_errors: list[float]
    #: error(set's output with the LoRA, its own target), per set.
    lora_errors: list[float]
    #: ``cross[i][j]`` = error(set i's output with the LoRA, set j's target).
    cross: list[list[float]] = field(default_factory=list)

    @property
    def ratio(self) -> float:
        """Mean error with the LoRA ÷ mean error without it."""
        return sum(self.lora_errors) / max(sum(self.base_errors), 1e-12)

    @property
    def own_closest(self) -> bool:
        """Every set's output (with the LoRA) is closer to its own target than to any other's."""
        return all(row[i] < min((e for j, e in enumerate(row) if j != i), default=float("inf"))
                   for i, row in enumerate(self.cross))

    @property
    def passed(self) -> bool:
        return self.ratio <= PASS_RATIO and self.own_closest

    def __str__(self) -> str:
        rows = "; ".join(f"{n}: {b:.4f}→{lo:.4f}" for n, b, lo in zip(self.names, self.base_errors, self.lora_errors))
        return f"ratio {self.ratio:.3f}, own target closest: {self.own_closest} ({rows})"


def _family(model_dir: Path, input_size: str = "auto"):
    from lorastudio.training.families import detect_family

    family = detect_family(Path(model_dir))(Path(model_dir), torch.device("cpu"), torch.float32)
    family.use_input_size(input_size)
    return family


def _pack(family, latents: torch.Tensor) -> torch.Tensor:
    """(C, h, w) latents as the pipeline's tokens (1, h·w/4 or h·w, D): its own ``_pack_latents``
    (or as they are, for a pipeline that has none and denoises unpacked latents)."""
    import inspect

    pack = getattr(family.pipeline_class(), "_pack_latents", None)
    x = latents[None]
    if pack is None:  # Z-Image: the pipeline denoises the (1, C, h, w) latents themselves
        return x
    if len(inspect.signature(pack).parameters) == 1:  # FLUX.2: already patchified by encode_image
        return pack(x)
    return pack(x, 1, *x.shape[1:])


def target_latents(family, sets: list[LearningSet], size: tuple[int, int]) -> list[torch.Tensor]:
    """Each set's target at ``size`` through the family's ``encode_image``, packed as the
    pipeline's tokens (what its final latents are compared with)."""
    from lorastudio.training.families._common import resize_to

    family.load_encoders()
    return [_pack(family, family.encode_image(resize_to(s.target, size))).float() for s in sets]


def final_latents(family, transformer, s: LearningSet, size: tuple[int, int], steps: int, seed: int,
                  **call: Any) -> torch.Tensor:
    """The pipeline's denoised latents (packed tokens, as its scheduler leaves them after the
    last step) for set ``s``: ``family.run_pipeline``, the call a preview makes (``call``
    adds or overrides pipeline arguments)."""
    import inspect

    if "callback_on_step_end" not in inspect.signature(family.pipeline_class().__call__).parameters:
        # LongCat's pipelines take no callback; with output_type="latent" they return the
        # same packed latents, as their scheduler leaves them.
        out = family.run_pipeline(transformer, s.inputs, s.caption, size, steps, seed, output_type="latent", **call)
        return out.images.detach().float().clone()
    seen: dict[str, torch.Tensor] = {}

    def keep(pipe, step, timestep, tensors):
        seen["latents"] = tensors["latents"].detach().float().clone()
        return tensors

    family.run_pipeline(transformer, s.inputs, s.caption, size, steps, seed, output_type="latent",
                        callback_on_step_end=keep, callback_on_step_end_tensor_inputs=["latents"], **call)
    if hasattr(family, "pipeline_target_latents"):  # one patch sequence, references too (JoyImage): the target's
        return family.pipeline_target_latents(seen["latents"], size)
    return seen["latents"]


def load_lora(family, transformer, lora: Path) -> None:
    """The LoRA file onto ``transformer`` exactly as ``lorastudio sample`` loads it."""
    from lorastudio.training.sample import load_adapter_with_peft, load_lora_into, needs_peft

    if needs_peft(Path(lora)):
        load_adapter_with_peft(transformer, family.name, family.lora_target_modules, Path(lora))
    else:
        load_lora_into(transformer, family.lora_loader(), Path(lora), family=family.name,
                       family_title=family.display_name)
    transformer.eval()


def pipeline_errors(model_dir: Path, lora: Path, sets: list[LearningSet], size: tuple[int, int] = (64, 64),
                    steps: int = 4, seed: int = 0, context: Callable[[], contextlib.AbstractContextManager] | None
                    = None, input_size: str = "target", **call: Any) -> LearningResult:
    """Run the family's pipeline on every set without and with ``lora``; the measure.

    ``size`` is the output's (width, height); ``steps`` the pipeline's denoising steps (the
    same seed, so the same starting noise, for both runs); ``input_size`` the rule the call
    sizes input images by (``train.input_size``: a preview of a run uses the run's rule,
    :func:`train_tiny`'s ``"target"`` by default; ``"pipeline"`` is the pipeline's own default
    call); ``context`` wraps every pipeline call;
    ``call`` adds or overrides pipeline arguments.
    """
    family = _family(model_dir, input_size)
    targets = target_latents(family, sets, size)
    with (context or contextlib.nullcontext)():
        transformer = family.load_transformer()
        base = [final_latents(family, transformer, s, size, steps, seed, **call) for s in sets]
        load_lora(family, transformer, lora)
        tuned = [final_latents(family, transformer, s, size, steps, seed, **call) for s in sets]

    def error(a: torch.Tensor, b: torch.Tensor) -> float:
        return float(torch.mean((a - b) ** 2))

    return LearningResult(
        names=[s.name for s in sets],
        base_errors=[error(o, t) for o, t in zip(base, targets)],
        lora_errors=[error(o, t) for o, t in zip(tuned, targets)],
        cross=[[error(o, t) for t in targets] for o in tuned],
    )


# -- the quick recipe's runs, as the learning tests use them ------------------------------------


class QuickRuns:
    """A test module's quick-recipe LoRAs, each trained once (its ``trained`` fixture holds one).

    ``get(name, model_dir, make_sets, steps, fault="")`` → (sets, model folder, LoRA file):
    three sets from ``make_sets`` (:func:`edit_sets` or :func:`text_to_image_sets`) at the
    recipe's size, trained with :data:`QUICK_RECIPE` (``recipe`` overrides), all sets in each
    batch, one thread; a run through a fault trains :data:`FAULT_STEPS`."""

    SETS = 3

    def __init__(self, tmp_path_factory) -> None:
        self.tmp_path_factory = tmp_path_factory
        self.runs: dict[tuple[str, str], tuple] = {}

    def get(self, name: str, model_dir: Path, make_sets: Callable[..., list[LearningSet]], steps: int,
            fault: str = "", **recipe: Any) -> tuple[list[LearningSet], Path, Path]:
        if (name, fault) not in self.runs:
            recipe = {**QUICK_RECIPE, **recipe}
            sets = make_sets(self.SETS, recipe["resolution"])
            root = self.tmp_path_factory.mktemp(f"learn-{name}{'-' + fault if fault else ''}")
            dataset = write_dataset(root / "dataset", sets)
            with one_thread():
                lora = train_tiny(model_dir, dataset, root, FAULT_STEPS if fault else steps,
                                  wrap=FAULTS.get(fault), batch_size=len(sets), **recipe)
            self.runs[(name, fault)] = (sets, model_dir, lora)
        return self.runs[(name, fault)]


def case_runs(request, tmp_path_factory, cases: dict[str, tuple[str, Callable[..., list[LearningSet]]]],
              steps: int) -> Callable[..., tuple[list[LearningSet], Path, Path]]:
    """For a module fixture: ``get(case, fault="")`` → (sets, model folder, LoRA file), each
    trained once by :class:`QuickRuns`, where ``cases`` maps a case to (tiny-model fixture
    name, sets maker)."""
    runs = QuickRuns(tmp_path_factory)

    def get(case: str, fault: str = ""):
        fixture, make_sets = cases[case]
        return runs.get(case, request.getfixturevalue(fixture), make_sets, steps, fault)

    return get


def assert_fault_caught(result: LearningResult) -> None:
    """A LoRA trained through a fault (``FAULTS``) fails the measure, and not merely by learning
    nothing: it carried the pipeline's output away from the targets (ratio above 1; at
    :data:`FAULT_STEPS` every family's negated velocity measured 1.38 or more at the measure's
    seed 0), so the fault is what the measure caught."""
    assert not result.passed, result
    assert result.ratio > 1.0, f"the fault's LoRA did not move the output away from the targets: {result}"


def quick_measure(sets: list[LearningSet], model_dir: Path, lora: Path, **call: Any) -> LearningResult:
    """:func:`pipeline_errors` at the quick recipe's size and :data:`QUICK_PIPELINE_STEPS`, one thread."""
    size = QUICK_RECIPE["resolution"]
    with one_thread():
        return pipeline_errors(model_dir, lora, sets, size=(size, size), steps=QUICK_PIPELINE_STEPS, **call)


def first_transformer_call(transformer, pipeline_call: Callable[[], Any]) -> tuple[dict[str, Any], torch.Tensor]:
    """Run ``pipeline_call`` (a pipeline's ``__call__``, one thread) and return the keyword
    arguments and the output of the first call it made to ``transformer``: what the pipeline
    really feeds its transformer, for the tests that compare it with the family's ``predict``."""
    calls: list[tuple[dict[str, Any], torch.Tensor]] = []
    forward = transformer.forward

    def record(*args, **kwargs):
        out = forward(*args, **kwargs)
        calls.append(({k: v.clone() if isinstance(v, torch.Tensor) else v for k, v in kwargs.items()}, out[0].clone()))
        return out

    transformer.forward = record
    try:
        with one_thread():
            pipeline_call()
    finally:
        del transformer.forward
    return calls[0]


def pixels(image: Image.Image) -> np.ndarray:
    """An image's RGB pixels as floats in 0 … 1 (for the measure in pixels)."""
    return np.asarray(image.convert("RGB"), dtype=np.float32) / 255.0


def pixel_result(names: list[str], base: list[Image.Image], tuned: list[Image.Image],
                 targets: list[Image.Image]) -> LearningResult:
    """The measure on pictures already drawn (previews, grid cells), in **pixels** (0 … 1):
    ``base[i]``/``tuned[i]`` are set ``names[i]``'s picture without/with the LoRA. For a model
    whose VAE reconstructs its pictures (the demo's), so the pixels are what the artist sees."""

    def error(a: Image.Image, b: Image.Image) -> float:
        return float(np.mean((pixels(a) - pixels(b)) ** 2))

    return LearningResult(list(names), [error(b, t) for b, t in zip(base, targets)],
                          [error(o, t) for o, t in zip(tuned, targets)],
                          [[error(o, t) for t in targets] for o in tuned])
