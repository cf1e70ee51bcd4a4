"""FLUX.1 tensor work shared by Kontext (edit) and FLUX.1-dev (text-to-image).

Both pipelines have the same components (FluxTransformer2DModel, the 16-channel
AutoencoderKL, CLIP-L pooled + T5-XXL sequence embeddings) and the same token layout;
Kontext only appends the input image's tokens. What this module does, and why, mirrors
``diffusers.pipelines.flux.pipeline_flux_kontext``:

* latents are normalized ``(z - shift_factor) * scaling_factor`` (as Kontext's
  ``_encode_vae_image``, which takes the distribution's mode, not a sample);
* the (B, 16, h, w) latents are packed in 2×2 patches into (B, h/2·w/2, 64) tokens;
  position ids are (0, row, col) for the target, (1, row, col) for the input image,
  whose tokens follow the target's along the sequence; text ids are zeros;
* the transformer gets ``timestep = sigma`` (the pipeline passes ``t / 1000``) and the
  output is cut back to the target tokens and unpacked to (B, 16, h, w).

Guidance embedding: FLUX.1-dev and Kontext are guidance-distilled (``guidance_embeds``).
Training feeds guidance **1.0**, as musubi-tuner ("use 1.0 as guidance scale for
FLUX.1 Kontext training") and ai-toolkit (``guidance_embedding_scale`` 1.0) do: the
LoRA learns the conditional prediction without leaning on the distilled guidance, and
inference at the usual 2.5 (Kontext) / 3.5 (dev) then works as with the base model.
Previews use those inference values.
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
from PIL import Image

from lorastudio.training.families._common import transformer_config
from lorastudio.training.families._pipeline_family import PipelineFamily


class FluxFamilyBase(PipelineFamily):
    transformer_class_name = "FluxTransformer2DModel"
    size_multiple = 16
    #: Guidance embedding value used in training (see the module docstring).
    train_guidance: ClassVar[float] = 1.0
    #: Guidance for previews: the pipeline's recommended inference value.
    sample_guidance: ClassVar[float] = 3.5
    #: T5 tokens, as the pipelines use by default (padding included), so the LoRA trains on
    #: the same sequence it will see at inference.
    max_sequence_length: ClassVar[int] = 512

    # -- encoding (the pipeline's own code) -----------------------------------------------------

    def _vae_encode(self, pipe, pixels: torch.Tensor) -> torch.Tensor:
        """Kontext's ``_encode_vae_image`` (which FluxPipeline lacks): the distribution's
        mode, shifted and scaled as the transformer expects."""
        vae = pipe.vae
        latents = vae.encode(pixels).latent_dist.mode()
        return (latents - vae.config.shift_factor) * vae.config.scaling_factor

    def _encode_text(self, pipe, caption: str, input_images: list[Image.Image]) -> dict[str, torch.Tensor]:
        prompt_embeds, pooled, _text_ids = pipe.encode_prompt(
            prompt=caption, prompt_2=None, device=self.device, max_sequence_length=self.max_sequence_length)
        return {"prompt_embeds": prompt_embeds, "pooled_prompt_embeds": pooled}

    # -- training ---------------------------------------------------------------------------------

    def predict(self, transformer: torch.nn.Module, noisy_target: torch.Tensor, sigmas: torch.Tensor,
                input_latents: list[torch.Tensor], prompt: dict[str, torch.Tensor]) -> torch.Tensor:
        self.check_input_count(len(input_latents))
        pipe_class = self.pipeline_class()
        batch, channels, height, width = noisy_target.shape
        device, dtype = noisy_target.device, self.dtype

        tokens = [pipe_class._pack_latents(noisy_target.to(dtype), batch, channels, height, width)]
        ids = [pipe_class._prepare_latent_image_ids(batch, height // 2, width // 2, device, dtype)]
        for latents in input_latents:
            h, w = latents.shape[-2:]
            tokens.append(pipe_class._pack_latents(latents.to(device, dtype), batch, channels, h, w))
            input_ids = pipe_class._prepare_latent_image_ids(batch, h // 2, w // 2, device, dtype)
            input_ids[..., 0] = 1  # the pipeline's marker for "input image", not "target"
            ids.append(input_ids)

        prompt_embeds = prompt["prompt_embeds"].to(device, dtype)
        guidance = None
        if transformer_config(transformer).guidance_embeds:
            guidance = torch.full((batch,), self.train_guidance, device=device, dtype=torch.float32)
        output = transformer(
            hidden_states=torch.cat(tokens, dim=1),
            timestep=sigmas.to(device, dtype),
            guidance=guidance,
            pooled_projections=prompt["pooled_prompt_embeds"].to(device, dtype),
            encoder_hidden_states=prompt_embeds,
            txt_ids=torch.zeros(prompt_embeds.shape[1], 3, device=device, dtype=dtype),
            img_ids=torch.cat(ids, dim=0),
            return_dict=False,
        )[0]
        target_tokens = output[:, : tokens[0].shape[1]]
        vae_scale = 8
        unpacked = pipe_class._unpack_latents(target_tokens, height * vae_scale, width * vae_scale, vae_scale)
        return unpacked.to(noisy_target.dtype)

    # -- sampling --------------------------------------------------------------------------------

    def _sample_call_kwargs(self, inputs: list[Image.Image], prompt: dict[str, torch.Tensor],
                            width: int, height: int) -> dict[str, Any]:
        return {
            "prompt_embeds": prompt["prompt_embeds"].to(self.dtype),
            "pooled_prompt_embeds": prompt["pooled_prompt_embeds"].to(self.dtype),
            "guidance_scale": self.sample_guidance,
            "max_sequence_length": self.max_sequence_length,
        }

