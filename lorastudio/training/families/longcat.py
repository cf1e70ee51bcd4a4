"""LongCat-Image: edit LoRAs with one input image (``LongCatImageEditPipeline`` folders, e.g.
meituan-longcat/LongCat-Image-Edit) and text-to-image LoRAs (``LongCatImagePipeline``:
LongCat-Image, LongCat-Image-Dev). Both lines share the transformer and this file.

What it does, and why, mirrors ``diffusers.pipelines.longcat_image``:

* **Latents** are FLUX.1's: the 16-channel VAE's mode, ``(z - shift) * scale`` (the edit
  pipeline's ``_encode_vae_image``, as Kontext's: reused from ``_flux_common``), packed in 2×2
  patches by the pipeline's ``_pack_latents``.
* **Positions** come from the pipeline's own ``prepare_pos_ids``: text tokens are
  (0, i, i); the target's tokens (1, L + row, L + col) and the input image's (2, L + row,
  L + col), where L is the prompt's length: input and target share one grid, told apart by
  the first axis. The transformer gets ``timestep = sigma`` (the pipelines pass ``t / 1000``),
  no guidance embedding, and its output is cut back to the target's tokens.
* **Text.** Qwen2.5-VL's last hidden state, through the pipeline's ``encode_prompt``. The
  caption is tokenized piece by piece (quoted text character by character, for lettering),
  padded to 512 tokens, and wrapped in the pipeline's system message: the text-to-image
  one ("As an image captioning expert, generate a descriptive text prompt …") or the edit
  one ("As an image editing expert, first analyze the content and attributes of the input
  image(s) …"), which is followed by the input image itself, so the edit prompt depends on
  it. Its Qwen2VL processor sees the input at half the output's side: the pipeline makes
  the output ~1 MP (``calculate_dimensions(1024 * 1024, aspect)``) and shows the VL encoder
  that size halved (~512²). Training keeps that view whatever the training resolution, as
  for Qwen-Image-Edit-Plus, so the prompt embedding the LoRA learns to read is the one it
  gets at inference. The system-message prefix is dropped up to ``<|vision_start|>``; the
  vision tokens, the 512 caption tokens and no mask reach the transformer, as in the pipeline.
* **Prompt rewriting.** ``LongCatImagePipeline`` by default first rewrites the prompt with the
  Qwen2.5-VL model (``enable_prompt_rewrite``, with the SYSTEM_PROMPT_EN/ZH system messages).
  Training and previews use the caption as written (a rewrite would drop or reword the
  trigger word); use the LoRA with ``enable_prompt_rewrite=False``.
* **Previews** are the pipeline's ``__call__`` with its defaults (guidance 4.5, negative
  prompt "", CFG renorm for text-to-image) around the training transformer. diffusers
  0.42's LongCat pipelines cannot take ``prompt_embeds`` (their ``encode_prompt`` calls
  ``len(prompt)`` with no prompt), so a preview pipeline's ``encode_prompt`` hands back the
  encoding the pipeline's own ``encode_prompt`` made while the encoders were loaded.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator
from typing import Any, ClassVar

import torch
from PIL import Image

from lorastudio import catalog
from lorastudio.training.families._flux_common import FluxFamilyBase
from lorastudio.training.families._pipeline_family import PipelineFamily

#: The output area ``LongCatImageEditPipeline.__call__`` generates at (its
#: ``calculate_dimensions(1024 * 1024, aspect)``); the VL encoder sees the input at half its side.
EDIT_OUTPUT_AREA = 1024 * 1024
#: Stand-ins for the prompt texts of a preview call; its ``encode_prompt`` answers with the
#: cached encodings (see the module docstring).
_PROMPT, _NEGATIVE = "\x00prompt", "\x00negative"


class LongCatFamilyBase(PipelineFamily):
    transformer_class_name = "LongCatImageTransformer2DModel"
    size_multiple = 16
    #: The pipelines' defaults: true classifier-free guidance 4.5 against an empty prompt.
    sample_guidance: ClassVar[float] = 4.5
    sample_negative_prompt: ClassVar[str] = ""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        #: The encodings (positive, ``negative_``) of the preview being made; see ``_sample_call_kwargs``.
        self._preview_prompt: dict[str, torch.Tensor] = {}

    @classmethod
    def pipeline_module(cls):
        """The pipeline's module (its ``prepare_pos_ids``, ``calculate_dimensions``)."""
        return sys.modules[cls.pipeline_class().__module__]

    # -- encoding (the pipeline's own code) -----------------------------------------------------

    _vae_encode = FluxFamilyBase._vae_encode  # FLUX.1's VAE and normalization

    def _encode_for_sampling(self, pipe, caption: str, input_images: list[Image.Image]) -> dict[str, torch.Tensor]:
        positive = self._encode_text(pipe, caption, input_images)
        negative = self._encode_text(pipe, self.sample_negative_prompt, input_images)
        return {**positive, **{f"negative_{k}": v for k, v in negative.items()}}

    # -- training ---------------------------------------------------------------------------------

    def predict(self, transformer: torch.nn.Module, noisy_target: torch.Tensor, sigmas: torch.Tensor,
                input_latents: list[torch.Tensor], prompt: dict[str, torch.Tensor]) -> torch.Tensor:
        self.check_input_count(len(input_latents))
        pipe_class, pos_ids = self.pipeline_class(), self.pipeline_module().prepare_pos_ids
        batch, channels, height, width = noisy_target.shape
        device, dtype = noisy_target.device, self.dtype
        prompt_embeds = prompt["prompt_embeds"].to(device, dtype)
        start = (prompt_embeds.shape[1],) * 2  # images are placed after the text, as the pipelines do

        tokens = [pipe_class._pack_latents(noisy_target.to(dtype), batch, channels, height, width)]
        ids = [pos_ids(modality_id=1, type="image", start=start, height=height // 2, width=width // 2)]
        for latents in input_latents:
            h, w = latents.shape[-2:]
            tokens.append(pipe_class._pack_latents(latents.to(device, dtype), batch, channels, h, w))
            ids.append(pos_ids(modality_id=2, type="image", start=start, height=h // 2, width=w // 2))
        output = transformer(
            hidden_states=torch.cat(tokens, dim=1),
            timestep=sigmas.to(device, dtype),
            guidance=None,
            encoder_hidden_states=prompt_embeds,
            txt_ids=pos_ids(modality_id=0, type="text", start=(0, 0), num_token=prompt_embeds.shape[1]).to(device),
            img_ids=torch.cat(ids, dim=0).to(device),
            return_dict=False,
        )[0]
        target_tokens = output[:, : tokens[0].shape[1]]
        vae_scale = 8
        unpacked = pipe_class._unpack_latents(target_tokens, height * vae_scale, width * vae_scale, vae_scale)
        return unpacked.to(noisy_target.dtype)

    # -- sampling ---------------------------------------------------------------------------------

    def _sampling_pipeline(self, transformer: torch.nn.Module):
        pipe = super()._sampling_pipeline(transformer)
        pipe.encode_prompt = self._preview_encode_prompt  # this pipe only: see the module docstring
        return pipe

    def _preview_encode_prompt(self, prompt=None, image=None, num_images_per_prompt=1, prompt_embeds=None):
        """The pipeline's ``encode_prompt`` for a preview: the cached embedding of ``prompt``
        (``_PROMPT`` / ``_NEGATIVE``) and the text position ids the pipeline makes for it."""
        embeds = self._preview_prompt["negative_prompt_embeds" if prompt == _NEGATIVE else "prompt_embeds"]
        embeds = embeds.repeat(num_images_per_prompt, 1, 1)
        text_ids = self.pipeline_module().prepare_pos_ids(modality_id=0, type="text", start=(0, 0),
                                                          num_token=embeds.shape[1])
        return embeds, text_ids.to(embeds.device)

    def _sample_call_kwargs(self, inputs: list[Image.Image], prompt: dict[str, torch.Tensor],
                            width: int, height: int) -> dict[str, Any]:
        self._preview_prompt = {name: t.to(self.dtype) for name, t in prompt.items()}
        return {"prompt": _PROMPT, "negative_prompt": _NEGATIVE, "guidance_scale": self.sample_guidance}


class LongCatEditFamily(LongCatFamilyBase):
    record = catalog.family("longcat-edit")
    prompt_depends_on_inputs = True
    #: The edit pipeline builds its Qwen2VL image processor from the processor component.
    sample_components = (*LongCatFamilyBase.sample_components, "text_processor")
    input_size_policy = (
        "The input image always takes the target's bucket size (sides multiples of 16), as "
        "LongCatImageEditPipeline resizes the input to exactly the output's size: the two share one position "
        "grid, pixel for pixel. (At inference the pipeline generates at the input's aspect ratio, about 1 MP, "
        "so before/after pairs should share an aspect ratio; an input of another shape is stretched to the "
        "target's.) The Qwen2.5-VL text encoder sees the input at about 512×512 (half the side of the pipeline's "
        "~1 MP output), exactly as at inference. Previews generate at the target's size."
    )

    def condition_image(self, pipe, image: Image.Image) -> Image.Image:
        """The input as the VL encoder sees it: the pipeline resizes it to the output size
        (``calculate_dimensions(1024 * 1024, aspect)``), then to half that."""
        width, height = self.pipeline_module().calculate_dimensions(EDIT_OUTPUT_AREA, image.width / image.height)
        full = pipe.image_processor.resize(image, height, width)
        return pipe.image_processor.resize(full, height // 2, width // 2)

    def _encode_text(self, pipe, caption: str, input_images: list[Image.Image]) -> dict[str, torch.Tensor]:
        self.check_input_count(len(input_images))
        embeds, _text_ids = pipe.encode_prompt(prompt=caption, image=self.condition_image(pipe, input_images[0]))
        return {"prompt_embeds": embeds}

    def _sampling_pipeline(self, transformer: torch.nn.Module):
        pipe = super()._sampling_pipeline(transformer)

        def call(*, height: int, width: int, **kwargs):
            return pipe(**kwargs)  # no size arguments: ``_sampling_context`` sets the output size

        return call

    def _sample_call_kwargs(self, inputs: list[Image.Image], prompt: dict[str, torch.Tensor],
                            width: int, height: int) -> dict[str, Any]:
        return {**super()._sample_call_kwargs(inputs, prompt, width, height), "image": inputs[0]}

    @contextlib.contextmanager
    def _sampling_context(self, width: int, height: int) -> Iterator[None]:
        """The pipeline has no size arguments: it sizes the output (and the input with it) by
        ``calculate_dimensions(1024 * 1024, aspect)``. Previews set it to the preview's size
        for the call, so they show the model the sizes training did; restored afterwards."""
        module = self.pipeline_module()
        saved = module.calculate_dimensions
        module.calculate_dimensions = lambda _area, _ratio: (width, height)
        try:
            yield
        finally:
            module.calculate_dimensions = saved


class LongCatFamily(LongCatFamilyBase):
    record = catalog.family("longcat")
    input_size_policy = "Text-to-image: there are no input images; only the target is sized (bucketed)."

    def _encode_text(self, pipe, caption: str, input_images: list[Image.Image]) -> dict[str, torch.Tensor]:
        embeds, _text_ids = pipe.encode_prompt(prompt=caption)
        return {"prompt_embeds": embeds}

    def _sample_call_kwargs(self, inputs: list[Image.Image], prompt: dict[str, torch.Tensor],
                            width: int, height: int) -> dict[str, Any]:
        # The caption as trained, not an LLM rewrite of it (see the module docstring).
        return {**super()._sample_call_kwargs(inputs, prompt, width, height), "enable_prompt_rewrite": False}
