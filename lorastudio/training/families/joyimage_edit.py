"""JoyImage-Edit (``JoyImageEditPipeline`` folders: jdopensource/JoyAI-Image-Edit-Diffusers): edit
LoRAs with exactly one input image, and text-to-image LoRAs through the same pipeline.

JD's first JoyAI-Image release, a checkpoint of its own: ``JoyImageEditTransformer3DModel`` has
Edit-Plus's module names and sizes (40 double-stream blocks, 4096 wide, 16.26 B parameters) but
another forward and other weights. The encoders (Qwen3-VL-8B, Wan 2.1's VAE) and the encoding
code are Edit-Plus's, so this family is :class:`JoyImageEditPlusFamily` where
``diffusers.pipelines.joyimage.pipeline_joyimage_edit`` differs:

* **Items, not a patch sequence.** ``__call__`` stacks the reference's and the noisy target's
  latents as items, reference first: (B, 2, C, 1, h, w); the transformer moves the target to
  the front, lays the items on the frame axis (the target at frame 0, the reference at 1) and
  patchifies them as one video, so the reference must have the target's size: the pipeline
  crops it to the output's bucket (``resize_center_crop``). Text-to-image is one item. The
  reference stays clean (restored every step), the output's last item is the target's.
  ``timestep = 1000 σ`` as the pipeline passes the scheduler's timesteps; the prediction is the
  velocity ``noise - x0`` of its Euler step.
* **Text.** An edit prompt is ``encode_prompt_multiple_images`` (``<|im_start|>user\\n`` + one
  image block + the caption, the system template, the reference), called as ``__call__``
  calls it, with the reference as ``__call__`` shows it: cropped to its ~1 MP bucket; a
  text-to-image prompt is ``encode_prompt`` (the "image" template, no image). Both keep the
  last decoder layer's pre-norm output and drop the 34 system tokens. This transformer takes
  **no text mask** (``__call__`` runs the prompt and the blank negative in separate calls,
  unpadded), so :meth:`predict` runs prompts of different lengths in separate calls too,
  each at its own length, rather than let padding into the attention.
* **Latents.** ``prepare_latents`` draws a sample of the reference's VAE posterior (unseeded,
  ``latent_dist.sample()``); training caches the mode, the sample's expectation, as Edit-Plus's
  pipeline encodes; previews draw the pipeline's sample from a fixed seed (:meth:`_sampling_context`),
  so a preview does not depend on, or disturb, the training run's random state.
* **Previews** are ``__call__`` with its defaults (guidance 4.0 with the norm rescale, the
  blank ``""`` negative) and the cached prompts passed as ``prompt_embeds`` (this ``__call__``
  takes them); its bucket rule is swapped for the plain one in the preview pipeline only, so
  it generates at the training size, the reference at that size too.
"""

from __future__ import annotations

import contextlib
import types
from collections.abc import Iterator
from typing import Any, ClassVar

import torch
from PIL import Image

from lorastudio import catalog
from lorastudio.training.families._pipeline_family import PipelineFamily
from lorastudio.training.families.joyimage import JoyImageEditPlusFamily

#: Seed of a preview's draw from the reference's VAE posterior (see the module docstring).
_REFERENCE_SAMPLE_SEED = 0


class JoyImageEditFamily(JoyImageEditPlusFamily):
    record = catalog.family("joyimage-edit")
    transformer_class_name = "JoyImageEditTransformer3DModel"
    input_names = ("_start",)
    #: ``__call__``'s default negative prompt (``[""] * batch_size``).
    sample_negative_prompt: ClassVar[str] = ""
    input_size_policy = (
        "JoyImageEditPipeline takes one input image (_start) and generates at its ~1 MP bucket (the 1024 bucket "
        "list closest in aspect ratio, or the bucket of the size asked for): the input is resized to cover that "
        "size and centre-cropped to it, because its latents join the target's on one position grid. So the input "
        "always trains at the target's bucket size (resized to cover, centre-cropped), under either "
        "train.input_size rule. The Qwen3-VL text encoder sees it as the pipeline shows it: at its ~1 MP bucket "
        "(one vision token per 32×32 pixels). Previews generate at the target's size. Text-to-image sets (no "
        "_start) train the same model without an input."
    )

    # -- encoding (the pipeline's own code) -----------------------------------------------------

    @staticmethod
    def condition_image(pipe, image: Image.Image) -> Image.Image:
        """The input as ``__call__`` hands it to the encoders: resized to cover its ~1 MP bucket
        and centre-cropped to it (``vae_image_processor``; ``image_processor`` is the plain one)."""
        processor = pipe.vae_image_processor
        return processor.resize_center_crop(image, processor.get_default_height_width(image))

    def _encode_text(self, pipe, caption: str, input_images: list[Image.Image]) -> dict[str, torch.Tensor]:
        """``__call__``'s prompt encoding: with the input image, or text alone."""
        if input_images:
            embeds, mask = pipe.encode_prompt_multiple_images(
                prompt=[caption], images=[self.condition_image(pipe, input_images[0])], device=self.device,
                max_sequence_length=self.max_sequence_length)
        else:
            embeds, mask = pipe.encode_prompt(prompt=[caption], device=self.device,
                                              max_sequence_length=self.max_sequence_length)
        return {"prompt_embeds": embeds, "prompt_embeds_mask": mask.to(torch.long)}

    # -- training ---------------------------------------------------------------------------------

    def predict(self, transformer: torch.nn.Module, noisy_target: torch.Tensor, sigmas: torch.Tensor,
                input_latents: list[torch.Tensor], prompt: dict[str, torch.Tensor]) -> torch.Tensor:
        self.check_input_count(len(input_latents))
        device, dtype = noisy_target.device, self.dtype
        # (B, items, C, frames, h, w), the reference first and the target last, as __call__ stacks them
        items = torch.stack([*(latents.to(device, dtype) for latents in input_latents), noisy_target.to(dtype)],
                            dim=1)[:, :, :, None]
        timestep = (sigmas.float() * 1000).to(device)  # the scheduler's timesteps, as the pipeline passes them
        embeds, lengths = prompt["prompt_embeds"].to(device, dtype), prompt["prompt_embeds_mask"].sum(dim=1)
        output = torch.empty_like(noisy_target, dtype=dtype)
        for length in lengths.unique().tolist():  # no text mask: each prompt length in a call of its own
            rows = (lengths == length).nonzero().flatten().to(device)
            output[rows] = transformer(hidden_states=items[rows], timestep=timestep[rows],
                                       encoder_hidden_states=embeds[rows, :length], return_dict=False)[0][:, -1, :, 0]
        return output.to(noisy_target.dtype)

    def pipeline_target_latents(self, latents: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        """The target's (B, C, h, w) latents in the pipeline's denoised items (its last item)."""
        return latents[:, -1, :, 0]

    # -- sampling ---------------------------------------------------------------------------------

    def _sampling_pipeline(self, transformer: torch.nn.Module):
        from diffusers.image_processor import VaeImageProcessor

        pipe = PipelineFamily._sampling_pipeline(self, transformer)
        # This pipe only: the size asked for (the training size), not its ~1 MP bucket.
        pipe.vae_image_processor.get_default_height_width = types.MethodType(
            VaeImageProcessor.get_default_height_width, pipe.vae_image_processor)
        return pipe

    def _sample_call_kwargs(self, inputs: list[Image.Image], prompt: dict[str, torch.Tensor],
                            width: int, height: int) -> dict[str, Any]:
        kwargs = {name: (t.to(self.dtype) if t.is_floating_point() else t) for name, t in prompt.items()}
        return {**kwargs, "guidance_scale": self.sample_guidance, "image": inputs[0] if inputs else None,
                "max_sequence_length": self.max_sequence_length}

    @contextlib.contextmanager
    def _sampling_context(self, width: int, height: int) -> Iterator[None]:
        """The reference's posterior sample from a fixed seed; the run's random state untouched."""
        with torch.random.fork_rng(devices=[self.device] if self.device.type == "cuda" else []):
            torch.manual_seed(_REFERENCE_SAMPLE_SEED)
            yield
