"""FLUX.2: edit LoRAs with any number of reference images, and text-to-image LoRAs.

Two pipeline layouts share one transformer class (``Flux2Transformer2DModel``), one VAE
(``AutoencoderKLFlux2``) and one token layout; they differ only in the text encoder and
the guidance:

* ``Flux2Pipeline`` (FLUX.2 [dev]): Mistral-Small-3.1 text encoder, guidance-distilled
  (a guidance embedding, like FLUX.1-dev);
* ``Flux2KleinPipeline`` (FLUX.2 [klein] 4B/9B and their "base" versions): Qwen3 text
  encoder, no guidance embedding; the base models use true classifier-free guidance,
  the step-distilled ones none (``is_distilled`` in ``model_index.json``).

What this file does, and why, mirrors ``diffusers.pipelines.flux2``:

* latents are the VAE's mode, patchified 2×2 (32 → 128 channels, H/16 × W/16) and then
  normalized with the VAE's batch-norm running mean/var (``_encode_vae_image``), so a
  set's cached latents are (128, H/16, W/16); tokens are those pixels in raster order;
* position ids have four axes (T, H, W, L). The target has T = 0; reference image *i*
  (``_start`` = 0, ``_start1`` = 1, …) has its own time coordinate T = 10 + 10·i
  (``_prepare_image_ids``), and its tokens follow the target's in the sequence. Text ids
  are (0, 0, 0, l). There is no limit on the number of references beyond memory;
* ``timestep = sigma`` (the pipeline passes ``t / 1000``); the output is cut back to the
  target tokens, so the loss sees the target alone.
* A set with no input images is text-to-image: the same call without references, as
  the pipeline does when it gets no ``image``. So FLUX.2 trains both kinds of dataset.

Guidance embedding (FLUX.2 [dev] only): training feeds 1.0, as for FLUX.1 (see
``_flux_common``); previews use the pipeline's default 4.0.
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
from PIL import Image

from lorastudio import catalog
from lorastudio.model_folder import read_model_index
from lorastudio.training.families._common import at_least_size, own_size_within_area, transformer_config
from lorastudio.training.families._pipeline_family import PipelineFamily


class Flux2FamilyBase(PipelineFamily):
    transformer_class_name = "Flux2Transformer2DModel"
    input_names = ("_start", "_start1", "_start2", "_start3")
    #: VAE factor 8 × 2×2 patchify: sides are multiples of 16, as the pipeline floors them.
    size_multiple = 16
    train_guidance: ClassVar[float] = 1.0
    sample_guidance: ClassVar[float] = 4.0
    #: Text tokens, padded, as the pipelines use by default (the transformer sees the padding).
    max_sequence_length: ClassVar[int] = 512
    input_size_policy = (
        "Each reference image (_start, _start1, _start2, … any number) is resized to the target's bucket size "
        "when its aspect ratio nearly matches the target's (within 5 %, or one 16-pixel step at small sizes); a "
        "reference of a clearly different shape keeps its own aspect ratio at the target's pixel area (sides "
        "multiples of 16). FLUX.2 pipelines keep each reference's own aspect ratio (scaled down to at most "
        "1024² pixels, sides floored to multiples of 16), so at training resolution 1024 this is what inference "
        "shows the model. Each reference gets its own time coordinate in the position ids, as in the pipeline. "
        "Text-to-image sets (no _start) train the same model without references. With train.input_size = "
        "\"pipeline\" each reference keeps its own size up to 1024² pixels, as the pipeline does."
    )

    #: The FLUX.2 pipelines refuse reference images with a side under 64 pixels.
    min_reference_side: ClassVar[int] = 64

    def input_size(self, input_size: tuple[int, int], target_size: tuple[int, int],
                   resolution: int) -> tuple[int, int]:
        """The rule's size (``train.input_size``), scaled up to the pipeline's 64-pixel minimum.
        The pipeline refuses a smaller reference, so a preview (and the artist's own call) hands
        it one at least 64 pixels a side; training encodes the reference at that same size, or
        at a tiny resolution the LoRA would learn a reference layout inference never shows it
        (at 32 px, 2×2 reference tokens in training against 4×4 in the pipeline)."""
        return at_least_size(super().input_size(input_size, target_size, resolution),
                             self.min_reference_side, self.size_multiple)

    def pipeline_input_size(self, input_size: tuple[int, int]) -> tuple[int, int]:
        """The FLUX.2 pipelines' default: the reference's own size, scaled down to 1024²
        pixels when it is larger, sides floored to multiples of 16."""
        return own_size_within_area(input_size, self.record.pipeline_input_area, self.size_multiple)

    # -- encoding (the pipeline's own code) -----------------------------------------------------

    def _vae_encode(self, pipe, pixels: torch.Tensor) -> torch.Tensor:
        """The pipeline's ``_encode_vae_image``: mode, 2×2 patchify, batch-norm statistics."""
        return pipe._encode_vae_image(pixels, generator=None)

    def _encode_text(self, pipe, caption: str, input_images: list[Image.Image]) -> dict[str, torch.Tensor]:
        prompt_embeds, _text_ids = pipe.encode_prompt(prompt=caption, device=self.device,
                                                      max_sequence_length=self.max_sequence_length)
        return {"prompt_embeds": prompt_embeds}

    # -- training ---------------------------------------------------------------------------------

    def predict(self, transformer: torch.nn.Module, noisy_target: torch.Tensor, sigmas: torch.Tensor,
                input_latents: list[torch.Tensor], prompt: dict[str, torch.Tensor]) -> torch.Tensor:
        self.check_input_count(len(input_latents))
        pipe_class = self.pipeline_class()
        batch, channels, height, width = noisy_target.shape
        device, dtype = noisy_target.device, self.dtype

        tokens = [pipe_class._pack_latents(noisy_target.to(dtype))]
        ids = [pipe_class._prepare_latent_ids(noisy_target)]
        if input_latents:
            # One time coordinate per reference, exactly as prepare_image_latents assigns them.
            ref_ids = pipe_class._prepare_image_ids([lat[:1] for lat in input_latents])
            ids.append(ref_ids.expand(batch, -1, -1))
            tokens += [pipe_class._pack_latents(lat.to(device, dtype)) for lat in input_latents]

        prompt_embeds = prompt["prompt_embeds"].to(device, dtype)
        guidance = None
        if transformer_config(transformer).guidance_embeds:
            guidance = torch.full((batch,), self.train_guidance, device=device, dtype=torch.float32)
        output = transformer(
            hidden_states=torch.cat(tokens, dim=1),
            timestep=sigmas.to(device, dtype),
            guidance=guidance,
            encoder_hidden_states=prompt_embeds,
            txt_ids=pipe_class._prepare_text_ids(prompt_embeds).to(device),
            img_ids=torch.cat(ids, dim=1).to(device),
            return_dict=False,
        )[0]
        target_tokens = output[:, : tokens[0].shape[1]]
        unpacked = target_tokens.permute(0, 2, 1).reshape(batch, channels, height, width)
        return unpacked.to(noisy_target.dtype)

    # -- sampling --------------------------------------------------------------------------------

    def _sample_call_kwargs(self, inputs: list[Image.Image], prompt: dict[str, torch.Tensor],
                            width: int, height: int) -> dict[str, Any]:
        kwargs: dict[str, Any] = {
            "prompt_embeds": prompt["prompt_embeds"].to(self.dtype),
            "guidance_scale": self.sample_guidance,
            "max_sequence_length": self.max_sequence_length,
        }
        if inputs:
            kwargs["image"] = list(inputs)  # sized by ``input_size``: at least the pipeline's minimum
        return kwargs


class Flux2Family(Flux2FamilyBase):
    """FLUX.2 [dev] folders (``Flux2Pipeline``; Mistral-Small-3.1 text encoder)."""

    record = catalog.family("flux2")


class Flux2KleinFamily(Flux2FamilyBase):
    """FLUX.2 [klein] folders (``Flux2KleinPipeline``; Qwen3 text encoder, no guidance
    embedding). Previews of the non-distilled "base" models use true classifier-free
    guidance with the pipeline's empty negative prompt; step-distilled ones run without."""

    record = catalog.family("flux2-klein")

    def _distilled(self) -> bool:
        return bool(read_model_index(self.model_dir).get("is_distilled", False))

    def _encode_for_sampling(self, pipe, caption: str, input_images: list[Image.Image]) -> dict[str, torch.Tensor]:
        out = self._encode_text(pipe, caption, input_images)
        if not self._distilled():
            out["negative_prompt_embeds"] = self._encode_text(pipe, "", input_images)["prompt_embeds"]
        return out

    def _sample_call_kwargs(self, inputs: list[Image.Image], prompt: dict[str, torch.Tensor],
                            width: int, height: int) -> dict[str, Any]:
        kwargs = super()._sample_call_kwargs(inputs, prompt, width, height)
        if "negative_prompt_embeds" in prompt:
            kwargs["negative_prompt_embeds"] = prompt["negative_prompt_embeds"].to(self.dtype)
        else:
            kwargs["guidance_scale"] = 1.0  # distilled: the pipeline ignores (and warns about) guidance
        return kwargs
