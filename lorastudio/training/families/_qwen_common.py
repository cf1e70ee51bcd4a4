"""Qwen-Image tensor work shared by Qwen-Image-Edit-Plus (edit) and Qwen-Image (text-to-image).

Mirrors ``diffusers.pipelines.qwenimage``:

* the VAE (``AutoencoderKLQwenImage``, a video VAE used on one frame) encodes to
  (B, 16, 1, h, w); latents are normalized per channel ``(z - latents_mean) / latents_std``
  with the means/stds from ``vae.config``;
* latents are packed in 2×2 patches; the transformer's rotary positions come from
  ``img_shapes``, one ``(1, h/2, w/2)`` entry per image in the sequence — the target
  first, then each input image, whose tokens follow the target's;
* ``timestep = sigma`` (the pipeline passes ``t / 1000``); the prompt is the Qwen2.5-VL
  last hidden state with the template's system prefix dropped, plus a mask;
* ``zero_cond_t`` (Qwen-Image-Edit-2511): the transformer itself gives the input-image
  tokens timestep 0, using ``img_shapes`` to know which tokens are inputs, so passing
  correct per-sample ``img_shapes`` is all it needs — which is what the pipeline does too.

Prompts are trimmed to their real tokens, so their length varies from set to set:
``collate_prompts`` pads them and the mask tells the transformer which tokens are real.
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
from PIL import Image

from lorastudio.training.families._common import transformer_config
from lorastudio.training.families._pipeline_family import PipelineFamily
from lorastudio.training.families.base import EncodedPrompt


class QwenFamilyBase(PipelineFamily):
    transformer_class_name = "QwenImageTransformer2DModel"
    #: The pipelines size images with ``calculate_dimensions`` (multiples of 32); buckets on
    #: the same grid mean a preview's sizes are exactly the training sizes.
    size_multiple = 32
    #: Previews use true classifier-free guidance with a blank negative prompt, as the
    #: official Qwen-Image / Qwen-Image-Edit examples do (``true_cfg_scale=4.0``,
    #: ``negative_prompt=" "``); the model is not guidance-distilled.
    sample_true_cfg: ClassVar[float] = 4.0
    sample_negative_prompt: ClassVar[str] = " "
    #: The Qwen schedulers stretch sigmas to ``shift_terminal``; with a single step that
    #: divides by zero and the preview comes out NaN (black), so previews take at least 2.
    min_sample_steps: ClassVar[int] = 2

    # -- encoding ---------------------------------------------------------------------------------

    def _vae_encode(self, pipe, pixels: torch.Tensor) -> torch.Tensor:
        """The edit pipeline's ``_encode_vae_image`` (which the text-to-image pipeline lacks):
        the distribution's mode, normalized per channel; one frame, so the time axis goes."""
        vae = pipe.vae
        latents = vae.encode(pixels.unsqueeze(2)).latent_dist.mode()
        channels = vae.config.z_dim
        mean = torch.tensor(vae.config.latents_mean).view(1, channels, 1, 1, 1).to(latents.device, latents.dtype)
        std = torch.tensor(vae.config.latents_std).view(1, channels, 1, 1, 1).to(latents.device, latents.dtype)
        return ((latents - mean) / std)[:, :, 0]

    @staticmethod
    def _with_mask(prompt_embeds: torch.Tensor, mask: torch.Tensor | None) -> dict[str, torch.Tensor]:
        """The pipeline returns no mask when every token is real; the cache keeps one always,
        so prompts of different lengths can be padded and batched."""
        if mask is None:
            mask = torch.ones(prompt_embeds.shape[:2], dtype=torch.long, device=prompt_embeds.device)
        return {"prompt_embeds": prompt_embeds, "prompt_embeds_mask": mask.to(torch.long)}

    def _encode_for_sampling(self, pipe, caption: str, input_images: list[Image.Image]) -> dict[str, torch.Tensor]:
        positive = self._encode_text(pipe, caption, input_images)
        negative = self._encode_text(pipe, self.sample_negative_prompt, input_images)
        return {**positive, **{f"negative_{k}": v for k, v in negative.items()}}

    def collate_prompts(self, prompts: list[EncodedPrompt]) -> dict[str, torch.Tensor]:
        length = max(p.tensors["prompt_embeds"].shape[0] for p in prompts)
        embeds, masks = [], []
        for p in prompts:
            e, m = p.tensors["prompt_embeds"], p.tensors["prompt_embeds_mask"]
            pad = length - e.shape[0]
            embeds.append(torch.cat([e, e.new_zeros(pad, e.shape[1])]))
            masks.append(torch.cat([m, m.new_zeros(pad)]))
        return {"prompt_embeds": torch.stack(embeds), "prompt_embeds_mask": torch.stack(masks)}

    # -- training ---------------------------------------------------------------------------------

    def predict(self, transformer: torch.nn.Module, noisy_target: torch.Tensor, sigmas: torch.Tensor,
                input_latents: list[torch.Tensor], prompt: dict[str, torch.Tensor]) -> torch.Tensor:
        self.check_input_count(len(input_latents))
        pipe_class = self.pipeline_class()
        batch, channels, height, width = noisy_target.shape
        device, dtype = noisy_target.device, self.dtype

        tokens = [pipe_class._pack_latents(noisy_target.to(dtype), batch, channels, height, width)]
        shapes = [(1, height // 2, width // 2)]
        for latents in input_latents:
            h, w = latents.shape[-2:]
            tokens.append(pipe_class._pack_latents(latents.to(device, dtype), batch, channels, h, w))
            shapes.append((1, h // 2, w // 2))

        guidance = None
        if transformer_config(transformer).guidance_embeds:  # no released Qwen-Image is; kept for parity
            guidance = torch.ones(batch, device=device, dtype=torch.float32)
        output = transformer(
            hidden_states=torch.cat(tokens, dim=1),
            timestep=sigmas.to(device, dtype),
            guidance=guidance,
            encoder_hidden_states=prompt["prompt_embeds"].to(device, dtype),
            encoder_hidden_states_mask=prompt["prompt_embeds_mask"].to(device),
            img_shapes=[list(shapes)] * batch,
            return_dict=False,
        )[0]
        target_tokens = output[:, : tokens[0].shape[1]]
        vae_scale = 8
        unpacked = pipe_class._unpack_latents(target_tokens, height * vae_scale, width * vae_scale, vae_scale)
        return unpacked[:, :, 0].to(noisy_target.dtype)

    # -- sampling --------------------------------------------------------------------------------

    def _sample_call_kwargs(self, inputs: list[Image.Image], prompt: dict[str, torch.Tensor],
                            width: int, height: int) -> dict[str, Any]:
        kwargs = {name: (t.to(self.dtype) if t.is_floating_point() else t) for name, t in prompt.items()}
        kwargs["true_cfg_scale"] = self.sample_true_cfg
        return kwargs
