"""What every diffusers-pipeline family does the same way, so a family file holds only what
differs: its tensor layout (``predict``), how it calls the pipeline's encoders, and its
sampling arguments.

The families lean on the pipeline's own code wherever it exists — the encoders are
loaded with ``Pipeline.from_pretrained(folder, transformer=None)``, prompts are encoded by
the pipeline's own ``encode_prompt``, latents are packed by its ``_pack_latents``, and
previews are the pipeline's ``__call__`` — so the cached tensors are what the pipeline
computes at inference, and a diffusers upgrade that changes them changes training with
it. (Image latents follow the edit pipelines' ``_encode_vae_image``, written out in the
family because the text-to-image pipelines lack it; the tests compare the two.)
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

import torch
from PIL import Image

from lorastudio import catalog
from lorastudio.dataset.model import Mode
from lorastudio.model_folder import index_components, read_model_index
from lorastudio.training.families._common import (
    PromptMemo,
    check_component_files,
    check_latent_size,
    dtype_kwargs,
    free_memory,
    image_key,
    input_size_matching_target,
    load_pipeline,
    offline_kwargs,
    quiet_progress,
    resize_to,
    snap_size,
    unwrap_peft,
)
from lorastudio.training.families.base import EncodedPrompt, ModelFamily


class InputCountError(ValueError):
    """A set has more (or fewer) input images than the family's model takes."""


#: Sides of encoded images must be multiples of this: VAE factor 8 × 2×2 packing.
LATENT_MULTIPLE = 16


class PipelineFamily(ModelFamily):
    """A family whose base model is a diffusers pipeline folder (all of ours so far)."""

    #: diffusers class name of the transformer, imported lazily (diffusers takes seconds to
    #: import); the pipeline class is the catalog record's.
    transformer_class_name: ClassVar[str]
    #: How the guide names input images, for messages ("… this set has 2 (_start, _start1)").
    input_names: ClassVar[tuple[str, ...]] = ("_start", "_start1", "_start2")
    #: Fewest denoising steps a preview runs (see the Qwen families for why it can be > 1).
    min_sample_steps: ClassVar[int] = 1
    #: Components the preview pipeline loads from the folder (the text encoders never: prompts
    #: come pre-encoded); a family whose pipeline builds its prompt template from the
    #: processor at construction adds it (it holds no weights).
    sample_components: ClassVar[tuple[str, ...]] = ("transformer", "vae", "scheduler")
    #: True when the text encoder must see a preview's inputs at the size the VAE gets them
    #: (Qwen-Image 2.1 puts the VAE's tokens into the encoder's image slots); otherwise the
    #: preview prompt is encoded from the inputs as given, as at caching time.
    prompt_sees_preview_inputs: ClassVar[bool] = False

    def __init__(self, model_dir: Path, device: torch.device, dtype: torch.dtype) -> None:
        super().__init__(model_dir, device, dtype)
        #: The pipeline without its transformer, while the encoders are loaded (phase 1).
        self._encoders = None
        #: The VAE used for previews, kept once loaded (small next to the transformer).
        self._sample_vae = None
        self._memo = PromptMemo()
        self._files_checked = False

    # -- helpers -------------------------------------------------------------------------------

    @classmethod
    def pipeline_class(cls) -> type:
        import diffusers

        return getattr(diffusers, cls.record.pipeline_class)

    @classmethod
    def lora_loader(cls) -> type:
        """The diffusers class whose ``lora_state_dict`` / ``load_lora_into_transformer`` read this
        family's LoRA files: the pipeline class, or the catalog's ``lora_loader`` for a pipeline
        that has no LoRA loader of its own."""
        if not cls.record.lora_loader:
            return cls.pipeline_class()
        from diffusers import loaders

        return getattr(loaders, cls.record.lora_loader)

    @classmethod
    def transformer_class(cls) -> type:
        import diffusers

        return getattr(diffusers, cls.transformer_class_name)

    def check_files(self) -> None:
        """Refuse an incomplete model folder in words before the first load from it (once)."""
        if not self._files_checked:
            check_component_files(self.model_dir)
            self._files_checked = True

    def check_input_count(self, count: int) -> None:
        """Refuse, in words, a set this model cannot take (before any tensor work)."""
        if not self.trains(Mode.PAIRED) and count:
            raise InputCountError(
                f"{self.display_name} is a text-to-image model and takes no input images, but this set has "
                f"{count}. For before/after pairs choose an image-editing model folder.")
        if not self.trains(Mode.SINGLE) and count == 0:
            raise InputCountError(
                f"{self.display_name} edits images: every set needs an input image (NAME_start) besides its "
                "NAME_end target. For text-to-image sets choose a text-to-image model folder "
                f"({', '.join(r.display_name for r in catalog.families_for_mode(catalog.SINGLE))}).")
        if self.max_inputs is not None and count > self.max_inputs:
            names = ", ".join(self.input_names[:count]) if count <= len(self.input_names) else f"{count} inputs"
            takes = "one input image" if self.max_inputs == 1 else f"at most {self.max_inputs} input images"
            several = ", ".join(
                f"{r.display_name} takes " + ("any number" if r.max_inputs is None else f"up to {r.max_inputs}")
                for r in catalog.FAMILIES if r.max_inputs is None or r.max_inputs >= count)
            raise InputCountError(
                f"{self.display_name} takes {takes}, but this set has {count} ({names}). Remove the extra "
                f"_startN images, or train a model that takes several inputs ({several}).")

    def _components(self) -> dict[str, str]:
        """Component name → class name, from the folder's ``model_index.json`` (non-empty entries)."""
        return index_components(read_model_index(self.model_dir))

    # -- sizes ---------------------------------------------------------------------------------

    def input_size(self, input_size: tuple[int, int], target_size: tuple[int, int],
                   resolution: int) -> tuple[int, int]:
        """The edit families' rule (``input_size_rule``): the target's bucket
        (``input_size_matching_target``), or what the pipeline gives the input by default. A
        pipeline that puts the input on the target's position grid (the catalog's
        ``input_on_target_grid``, which the estimate reads too) gives it no other size than
        the target's, so that is its size under either rule."""
        if self.record.input_on_target_grid:
            return tuple(target_size)  # type: ignore[return-value]
        if self.input_size_rule == "pipeline":
            return self.pipeline_input_size(input_size)
        return input_size_matching_target(input_size, target_size, self.size_multiple)

    def pipeline_input_size(self, input_size: tuple[int, int]) -> tuple[int, int]:
        """(width, height) the family's pipeline gives an input image of ``input_size`` at
        inference by default (its VAE view); edit families define it."""
        raise NotImplementedError(f"{self.display_name} takes no input images")

    # -- phase 1 -------------------------------------------------------------------------------

    def load_encoders(self) -> None:
        if self._encoders is None:
            self.check_files()
            pipe = load_pipeline(self.pipeline_class(), self.model_dir, self.dtype, transformer=None)
            pipe.to(self.device)
            quiet_progress(pipe)
            self._encoders = pipe
            self._sample_vae = pipe.vae

    def _require_encoders(self):
        if self._encoders is None:
            raise RuntimeError("load_encoders() must be called before encoding")
        return self._encoders

    def encode_image(self, image: Image.Image) -> torch.Tensor:
        pipe = self._require_encoders()
        check_latent_size(image, LATENT_MULTIPLE)
        width, height = image.size
        pixels = pipe.image_processor.preprocess(resize_to(image, image.size), height=height, width=width)
        with torch.no_grad():
            latents = self._vae_encode(pipe, pixels.to(self.device, self.dtype))
        return latents[0].cpu()

    def encode_prompt(self, caption: str, input_images: list[Image.Image]) -> EncodedPrompt:
        self.check_input_count(len(input_images))
        pipe = self._require_encoders()
        with torch.no_grad():
            tensors = self._encode_text(pipe, caption, [resize_to(i, i.size) for i in input_images])
        return EncodedPrompt({name: t[0].cpu() for name, t in tensors.items()})

    def free_encoders(self) -> None:
        self._encoders = None
        self._sample_vae = None
        free_memory(self.device)

    # -- phase 2 -------------------------------------------------------------------------------

    def load_transformer(self) -> torch.nn.Module:
        self.check_files()
        transformer = self.transformer_class().from_pretrained(
            str(self.model_dir), subfolder="transformer", **offline_kwargs(), **dtype_kwargs(self.dtype))
        transformer.requires_grad_(False)
        return transformer.to(self.device)

    # -- phase 3 -------------------------------------------------------------------------------

    def prepare_sample(self, caption: str, input_images: list[Image.Image]) -> dict[str, torch.Tensor]:
        self._sample_prompt(caption, input_images)
        return self._memo.get(self._sample_prompt_key(caption, input_images))

    def restore_sample(self, caption: str, input_images: list[Image.Image],
                       tensors: dict[str, torch.Tensor]) -> None:
        self._memo.put(self._sample_prompt_key(caption, input_images), tensors)

    def sample(self, transformer: torch.nn.Module, input_images: list[Image.Image], caption: str,
               size: tuple[int, int], steps: int, seed: int) -> Image.Image:
        requested = (int(size[0]), int(size[1]))
        image = self.run_pipeline(transformer, input_images, caption, size, steps, seed, output_type="pil").images[0]
        return image if image.size == requested else image.resize(requested, Image.Resampling.LANCZOS)

    def run_pipeline(self, transformer: torch.nn.Module, input_images: list[Image.Image], caption: str,
                     size: tuple[int, int], steps: int, seed: int, **call: Any):
        """The family pipeline's ``__call__`` as a preview makes it (``sample``), returning the
        pipeline's own output object; ``call`` adds or overrides pipeline arguments
        (``output_type="latent"``, ``callback_on_step_end`` …), so a test can read the
        denoised latents of exactly the call a preview makes."""
        self.check_input_count(len(input_images))
        width, height = snap_size((int(size[0]), int(size[1])), self.size_multiple)
        resolution = round((width * height) ** 0.5)
        inputs = self._preview_inputs(input_images, (width, height), resolution)
        prompt = self._sample_prompt(caption, inputs if self.prompt_sees_preview_inputs else input_images)
        pipe = self._sampling_pipeline(transformer)
        kwargs = self._sample_call_kwargs(inputs, prompt, width, height)
        generator = torch.Generator("cpu").manual_seed(int(seed))  # same noise on every device
        was_training = transformer.training
        transformer.eval()  # no LoRA dropout in previews; training resumes in its own mode
        try:
            with self._sampling_context(width, height), torch.no_grad():
                return pipe(**{**kwargs, "height": height, "width": width,
                               "num_inference_steps": max(int(steps), self.min_sample_steps),
                               "generator": generator, **call})
        finally:
            transformer.train(was_training)

    def _preview_inputs(self, input_images: list[Image.Image], size: tuple[int, int],
                        resolution: int) -> list[Image.Image]:
        """The input images as a preview of ``size`` (width, height) hands them to the pipeline."""
        return [resize_to(img, self.input_size(img.size, size, resolution)) for img in input_images]

    def _sample_prompt(self, caption: str, input_images: list[Image.Image]) -> dict[str, torch.Tensor]:
        """The prompt tensors for a preview (batch dim 1, on the device), memoized; loads the
        encoders for the call when they are not loaded (see ``PromptMemo``)."""
        key = self._sample_prompt_key(caption, input_images)
        cached = self._memo.get(key)
        if cached is None:
            loaded_here = self._encoders is None
            if loaded_here:
                self.load_encoders()
            try:
                with torch.no_grad():
                    cached = self._encode_for_sampling(self._encoders, caption,
                                                       [resize_to(i, i.size) for i in input_images])
                cached = {name: t.detach().cpu() for name, t in cached.items()}
                if loaded_here:
                    self._sample_vae = self._encoders.vae
            finally:
                if loaded_here:
                    self._encoders = None
                    free_memory(self.device)
            self._memo.put(key, cached)
        return {name: t.to(self.device) for name, t in cached.items()}

    def _sample_prompt_key(self, caption: str, input_images: list[Image.Image]) -> tuple:
        return (caption, tuple(image_key(i) for i in input_images) if self.prompt_depends_on_inputs else ())

    def _sampling_pipeline(self, transformer: torch.nn.Module):
        """The family's pipeline around ``transformer`` (LoRA layers and all), with the VAE and
        scheduler from the folder and no text encoders: prompts come pre-encoded."""
        import diffusers

        components = self._components()
        if self._sample_vae is None:
            vae_class = getattr(diffusers, components["vae"])
            self._sample_vae = vae_class.from_pretrained(
                str(self.model_dir), subfolder="vae", **offline_kwargs(), **dtype_kwargs(self.dtype)).to(self.device)
        skip = {name: None for name in components if name not in self.sample_components}
        pipe = load_pipeline(self.pipeline_class(), self.model_dir, self.dtype,
                             transformer=unwrap_peft(transformer), vae=self._sample_vae, **skip)
        quiet_progress(pipe)
        return pipe

    # -- what each family fills in -------------------------------------------------------------

    def _vae_encode(self, pipe, pixels: torch.Tensor) -> torch.Tensor:
        """(1, C, h, w) normalized latents of (1, 3, H, W) pixels in [-1, 1]."""
        raise NotImplementedError

    def _encode_text(self, pipe, caption: str, input_images: list[Image.Image]) -> dict[str, torch.Tensor]:
        """Prompt tensors with a batch dimension of 1, as the pipeline's ``encode_prompt`` makes them."""
        raise NotImplementedError

    def _encode_for_sampling(self, pipe, caption: str, input_images: list[Image.Image]) -> dict[str, torch.Tensor]:
        """What ``_sample_call_kwargs`` needs (by default the training encoding)."""
        return self._encode_text(pipe, caption, input_images)

    def _sample_call_kwargs(self, inputs: list[Image.Image], prompt: dict[str, torch.Tensor],
                            width: int, height: int) -> dict[str, Any]:
        raise NotImplementedError

    @contextlib.contextmanager
    def _sampling_context(self, width: int, height: int) -> Iterator[None]:
        yield
