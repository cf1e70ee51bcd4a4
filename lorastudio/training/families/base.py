"""The model-family interface: everything the training loop needs to know about a base model.

The loop (``lorastudio/training/trainer.py``) is family-agnostic: it caches what a family
encodes, samples noise and timesteps for flow matching, asks the family for the
transformer's prediction, and computes the loss on the target latents. Everything that
differs between FLUX.1 Kontext, Qwen-Image-Edit-Plus, FLUX.2 … (how latents are packed
into a token sequence, position ids, how input images join the sequence, what the text
encoder sees) lives in one file per family behind this class.

Adding a family is exactly three things:

1. its record in ``lorastudio/catalog.py`` (id, display name, pipeline class, dataset kinds,
   input limit, LoRA targets, default LoRA format, estimate and modelspec facts, and the
   names of the two modules below);
2. its family file ``lorastudio/training/families/<record.family_module>.py``: a subclass
   of this class (usually of ``PipelineFamily``) with ``record = catalog.family("<id>")``
   and the tensor work — ``families/__init__`` finds it through the record, and the
   record's facts become the class attributes below;
3. its tiny-model recipe in ``lorastudio/training/tiny/<record.tiny_recipe>.py``
   (``RECIPES["<id>"]``), which the demo and the tests build and train.

Config validation, the CLI, the estimate, the GUI's model-folder check, the LoRA key
layouts (when the family shares an existing ``key_layout``) and the modelspec header
read the record; nothing else needs an edit.

A family instance is created for one local model folder and one device/dtype. Its life
has three phases, in this order, and the loop frees memory between them:

1. caching: ``load_encoders`` → ``encode_image`` / ``encode_prompt`` per set → ``free_encoders``
2. training: ``load_transformer`` once, then ``predict`` every step
3. sampling: ``sample`` (may reload the encoders for the duration of the call)
"""

from __future__ import annotations

import abc
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import torch
from PIL import Image

from lorastudio import catalog
from lorastudio.dataset.model import Mode
from lorastudio.model_folder import ModelFolderError

__all__ = ["EncodedPrompt", "ModelFamily", "ModelFolderError"]


@dataclass
class EncodedPrompt:
    """Text conditioning for one set, as cached: named tensors on the CPU.

    Families decide the names (``prompt_embeds``, ``pooled_prompt_embeds``, ``text_ids``,
    ``prompt_embeds_mask`` …); the loop only stores, batches and moves them. Each tensor
    is one set's, without a batch dimension (like ``encode_image``'s latents); the loop
    batches them with :meth:`ModelFamily.collate_prompts`, since some families' prompts
    differ in length from set to set and must be padded, not stacked.
    """

    tensors: dict[str, torch.Tensor]


class ModelFamily(abc.ABC):
    #: The family's catalog record; a concrete family class sets it, and
    #: ``__init_subclass__`` copies its facts into the attributes below.
    record: ClassVar[catalog.FamilyRecord]
    #: Short id used in configs, the CLI (``--family``) and LoRA metadata.
    name: ClassVar[str]
    #: Human name shown in the GUI ("FLUX.1 Kontext").
    display_name: ClassVar[str]
    #: ``model_index.json`` ``_class_name`` values this family loads.
    pipeline_class_names: ClassVar[tuple[str, ...]]
    #: PAIRED for edit models (sets have inputs), SINGLE for text-to-image models: the
    #: family's main kind of dataset (what ``lorastudio demo`` generates for it).
    mode: ClassVar[Mode]
    #: Every kind of dataset the family trains. FLUX.2 trains both: the same pipeline edits
    #: with reference images and generates from text alone.
    modes: ClassVar[tuple[Mode, ...]]
    #: Most input images a set may have (None: no fixed limit); 0 for text-to-image.
    max_inputs: ClassVar[int | None]
    #: Module-name suffixes peft targets: attention and feed-forward projections.
    lora_target_modules: ClassVar[tuple[str, ...]]
    #: How input images are sized (``catalog.INPUT_SIZE_RULES``): the family's default until
    #: a run's ``train.input_size`` says otherwise for its instance (:meth:`use_input_size`).
    input_size_rule: str

    def __init_subclass__(cls, **kwargs) -> None:
        super().__init_subclass__(**kwargs)
        record = cls.__dict__.get("record")
        if record is not None:
            cls.name = record.id
            cls.display_name = record.display_name
            cls.pipeline_class_names = record.pipeline_classes
            cls.modes = tuple(Mode(m) for m in record.modes)
            cls.mode = cls.modes[0]
            cls.max_inputs = record.max_inputs
            cls.lora_target_modules = record.lora_targets
            cls.input_size_rule = record.default_input_size

    #: True when the prompt encoding depends on the input images (Qwen-Image-Edit's VLM
    #: encoder sees them), so the cache key of a prompt includes the input images.
    prompt_depends_on_inputs: ClassVar[bool] = False
    #: Images are resized so both sides are multiples of this (VAE factor × patch size).
    size_multiple: ClassVar[int] = 16
    #: One paragraph for README/GUI: how input images are sized relative to the target.
    input_size_policy: ClassVar[str]

    @classmethod
    def trains(cls, mode: Mode) -> bool:
        """True when the family trains datasets of ``mode`` (edit pairs / text-to-image)."""
        return mode in cls.modes

    def __init__(self, model_dir: Path, device: torch.device, dtype: torch.dtype) -> None:
        self.model_dir = Path(model_dir)
        self.device = device
        self.dtype = dtype

    def use_input_size(self, rule: str) -> None:
        """Size input images by ``rule`` ("auto" = the family's default) in training and previews."""
        self.input_size_rule = catalog.resolve_input_size(rule, self.name)

    # -- sizes -----------------------------------------------------------------------------

    @abc.abstractmethod
    def input_size(self, input_size: tuple[int, int], target_size: tuple[int, int],
                   resolution: int) -> tuple[int, int]:
        """(width, height) an input image is resized to, given the bucketed target size.

        This is the family's deliberate input-image size policy (``input_size_policy``);
        it must match what the family's pipeline does at inference.
        """

    # -- phase 1: caching ------------------------------------------------------------------

    @abc.abstractmethod
    def load_encoders(self) -> None:
        """Load the VAE, text encoder(s), tokenizer(s)/processor onto ``device``."""

    @abc.abstractmethod
    def encode_image(self, image: Image.Image) -> torch.Tensor:
        """VAE latents of an RGB image already at its final size, normalized (shift/scale
        applied) so that they are what the transformer denoises: (C, H/8, W/8) for FLUX.1
        and Qwen-Image, (4·C, H/16, W/16) for FLUX.2, whose pipeline patchifies 2×2 before
        normalizing. The loop only needs the shape to draw matching noise."""

    @abc.abstractmethod
    def encode_prompt(self, caption: str, input_images: list[Image.Image]) -> EncodedPrompt:
        """Text conditioning for one set. ``input_images`` are the set's inputs at their
        final sizes (ignored unless ``prompt_depends_on_inputs``)."""

    def collate_prompts(self, prompts: list[EncodedPrompt]) -> dict[str, torch.Tensor]:
        """Batch cached prompts for ``predict``: by default ``torch.stack`` per name.

        Families whose prompt length varies (Qwen: the VL encoder's output is trimmed to
        the real tokens) override this to pad and mask.
        """
        return {name: torch.stack([p.tensors[name] for p in prompts]) for name in prompts[0].tensors}

    @abc.abstractmethod
    def free_encoders(self) -> None:
        """Drop the VAE and text encoders so the transformer has the memory."""

    # -- phase 2: training -----------------------------------------------------------------

    @abc.abstractmethod
    def load_transformer(self) -> torch.nn.Module:
        """The denoising transformer, weights frozen, on ``device`` in ``dtype``."""

    @abc.abstractmethod
    def predict(self, transformer: torch.nn.Module, noisy_target: torch.Tensor, sigmas: torch.Tensor,
                input_latents: list[torch.Tensor], prompt: dict[str, torch.Tensor]) -> torch.Tensor:
        """The transformer's flow-matching prediction (velocity ``noise - x0``) for the target.

        ``noisy_target``: (B, C, h, w) latents; ``sigmas``: (B,) in [0, 1];
        ``input_latents``: one (B, C, h_i, w_i) tensor per input image (empty for
        text-to-image); ``prompt``: the batched cached prompt tensors. Returns (B, C, h, w):
        only the target tokens, input tokens dropped, so the loss sees the target alone.
        """

    # -- phase 3: sampling -----------------------------------------------------------------

    def prepare_sample(self, caption: str, input_images: list[Image.Image]) -> dict[str, torch.Tensor] | None:
        """Optional: called in phase 1, while the encoders are loaded, for each set that will
        get previews, so ``sample`` can reuse its prompt encoding instead of loading the
        text encoder(s) again next to the training transformer. Returns the encoding (CPU
        tensors) for the cache to keep on disk. Default: nothing."""
        return None

    def restore_sample(self, caption: str, input_images: list[Image.Image],
                       tensors: dict[str, torch.Tensor]) -> None:
        """Optional: hand back an encoding ``prepare_sample`` returned in an earlier run, so a
        warm cache starts training without loading any text encoder. Default: ignored."""

    @abc.abstractmethod
    def sample(self, transformer: torch.nn.Module, input_images: list[Image.Image], caption: str,
               size: tuple[int, int], steps: int, seed: int) -> Image.Image:
        """Generate one image with the family's own diffusers pipeline around ``transformer``
        (which may carry LoRA layers), at ``size`` (width, height)."""
