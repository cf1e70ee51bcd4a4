"""Z-Image: text-to-image LoRAs (``ZImagePipeline``) and Z-Image Omni edit LoRAs (``ZImageOmniPipeline``).

Both pipelines drive one transformer class (``ZImageTransformer2DModel``, a single-stream DiT:
text, image and — in Omni — SigLIP tokens form one sequence), FLUX.1's 16-channel VAE and a
Qwen3 text encoder. What this file does, and why, mirrors ``diffusers.pipelines.z_image``:

* latents are the VAE's mode, ``(z - shift_factor) * scaling_factor`` (Omni's
  ``prepare_image_latents``); the transformer patchifies them itself (2×2, so sides are
  multiples of 16) and takes one ``(C, 1, h, w)`` tensor per image, as a list;
* the prompt is the Qwen3 encoder's second-to-last hidden state of the chat-templated
  caption, trimmed to its real tokens (``encode_prompt``, no padding reaches the model).
  Omni cuts its prompt into segments around the images (``<|vision_start|>`` …
  ``<|vision_end|>``), one per input, one holding the caption, one closing; the cache keeps
  the segments concatenated plus their lengths (``prompt_lengths``), so captions of any
  length pad and batch, and ``predict`` hands the transformer the segments back;
* **time runs the other way**: the pipelines feed ``t = (1000 - timestep) / 1000``, i.e.
  ``1 - σ`` (0 = pure noise, 1 = clean), and the model predicts ``x0 - noise``, which the
  pipelines negate before the scheduler step. ``predict`` does the same: it passes
  ``1 - σ`` and returns the negated output, the velocity ``noise - x0`` the loop's loss expects;
* Omni: each input image joins the sequence twice, as VAE latents with the "clean" flag
  (``image_noise_mask`` 0, which gives its tokens the timestep embedding of ``t = 1``) and
  as SigLIP2 features of the same image (``prepare_siglip_embeds``: the vision tower sees
  the input at its training size, at most ``max_num_patches`` patches). The SigLIP features
  are encoded with the prompt in the caching phase (``prompt_depends_on_inputs``); the
  target is the last image, the only noisy one, and the only one the model returns.
  A set without inputs is text-to-image through the same pipeline (``image=None``).

Previews are the pipeline's ``__call__`` with the cached prompt (and, for Omni, the cached
SigLIP features in place of ``prepare_siglip_embeds``, so the vision tower is not reloaded
next to the training transformer) and without classifier-free guidance (``guidance_scale``
0, as Z-Image-Turbo is run; a base model's previews are then unguided).
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
from PIL import Image

from lorastudio import catalog
from lorastudio.training.families._common import at_least_size, own_size_within_area
from lorastudio.training.families._pipeline_family import PipelineFamily
from lorastudio.training.families.base import EncodedPrompt


class ZImageFamilyBase(PipelineFamily):
    transformer_class_name = "ZImageTransformer2DModel"
    #: VAE factor 8 × the transformer's 2×2 patches: the pipelines require multiples of 16.
    size_multiple = 16
    #: The pipelines' default cap on prompt tokens (before trimming to the real ones).
    max_sequence_length: ClassVar[int] = 512
    #: Previews without classifier-free guidance (see the module docstring).
    sample_guidance: ClassVar[float] = 0.0

    # -- encoding (the pipeline's own code) -----------------------------------------------------

    def _vae_encode(self, pipe, pixels: torch.Tensor) -> torch.Tensor:
        """Omni's ``prepare_image_latents``: the distribution's mode, shifted and scaled."""
        vae = pipe.vae
        latents = vae.encode(pixels).latent_dist.mode()
        return (latents - vae.config.shift_factor) * vae.config.scaling_factor

    def _encode_text(self, pipe, caption: str, input_images: list[Image.Image]) -> dict[str, torch.Tensor]:
        segments = self._prompt_segments(pipe, caption, len(input_images))
        return {"prompt_embeds": torch.cat(segments)[None],
                "prompt_lengths": torch.tensor([[len(s) for s in segments]], dtype=torch.long)}

    def _prompt_segments(self, pipe, caption: str, num_inputs: int) -> list[torch.Tensor]:
        """The pipeline's ``encode_prompt`` output for one caption: its (tokens, width) segments."""
        raise NotImplementedError

    def collate_prompts(self, prompts: list[EncodedPrompt]) -> dict[str, torch.Tensor]:
        """Prompts differ in length: pad them (the lengths say where each segment ends);
        everything else (the segment counts, Omni's SigLIP grids) has one shape per batch,
        since a batch's sets share their input count and sizes."""
        length = max(p.tensors["prompt_embeds"].shape[0] for p in prompts)
        out = {"prompt_embeds": torch.stack([
            torch.cat([e, e.new_zeros(length - e.shape[0], e.shape[1])])
            for e in (p.tensors["prompt_embeds"] for p in prompts)])}
        for name in prompts[0].tensors:
            if name != "prompt_embeds":
                out[name] = torch.stack([p.tensors[name] for p in prompts])
        return out

    @staticmethod
    def _segments(prompt: dict[str, torch.Tensor], index: int) -> list[torch.Tensor]:
        """Sample ``index``'s prompt segments, as the pipeline's ``encode_prompt`` returned them."""
        lengths = [int(n) for n in prompt["prompt_lengths"][index]]
        return list(prompt["prompt_embeds"][index, : sum(lengths)].split(lengths))

    # -- training ---------------------------------------------------------------------------------

    def predict(self, transformer: torch.nn.Module, noisy_target: torch.Tensor, sigmas: torch.Tensor,
                input_latents: list[torch.Tensor], prompt: dict[str, torch.Tensor]) -> torch.Tensor:
        self.check_input_count(len(input_latents))
        batch = noisy_target.shape[0]
        device, dtype = noisy_target.device, self.dtype
        prompt = {k: (v.to(device, dtype) if v.is_floating_point() else v.to(device)) for k, v in prompt.items()}
        targets = list(noisy_target.to(dtype).unsqueeze(2).unbind(0))  # (C, 1, h, w) each
        inputs = [latents.to(device, dtype).unsqueeze(2) for latents in input_latents]
        output = transformer(
            t=(1.0 - sigmas.float()).to(device),  # the pipelines' (1000 - timestep) / 1000
            return_dict=False,
            **self._transformer_inputs(targets, inputs, prompt, batch),
        )[0]
        # The model predicts x0 - noise (the pipelines negate it before stepping).
        return -torch.stack(output).squeeze(2).to(noisy_target.dtype)

    def _transformer_inputs(self, targets: list[torch.Tensor], inputs: list[torch.Tensor],
                            prompt: dict[str, torch.Tensor], batch: int) -> dict[str, Any]:
        """``x``, ``cap_feats`` (and Omni's extra arguments) for one batch, as the pipeline builds them."""
        raise NotImplementedError

    # -- sampling --------------------------------------------------------------------------------

    def _sample_call_kwargs(self, inputs: list[Image.Image], prompt: dict[str, torch.Tensor],
                            width: int, height: int) -> dict[str, Any]:
        segments = [s.to(self.dtype) for s in self._segments(prompt, 0)]
        return {"prompt_embeds": self._pipeline_prompt(segments), "guidance_scale": self.sample_guidance,
                "max_sequence_length": self.max_sequence_length}

    def _pipeline_prompt(self, segments: list[torch.Tensor]) -> list:
        """One prompt's segments in the shape the pipeline's ``prompt_embeds`` argument takes."""
        raise NotImplementedError


class ZImageFamily(ZImageFamilyBase):
    """Z-Image text-to-image folders (``ZImagePipeline``: Z-Image-Turbo, Z-Image)."""

    record = catalog.family("zimage")
    input_size_policy = "Text-to-image: there are no input images; only the target is sized (bucketed)."

    def input_size(self, input_size: tuple[int, int], target_size: tuple[int, int],
                   resolution: int) -> tuple[int, int]:
        return tuple(target_size)  # type: ignore[return-value]  # never called: no inputs

    def _prompt_segments(self, pipe, caption: str, num_inputs: int) -> list[torch.Tensor]:
        embeds, _negative = pipe.encode_prompt(prompt=caption, device=self.device, do_classifier_free_guidance=False,
                                               max_sequence_length=self.max_sequence_length)
        return [embeds[0]]

    def _transformer_inputs(self, targets, inputs, prompt, batch):
        # Basic mode: one image per sample, one caption tensor each.
        return {"x": targets, "cap_feats": [self._segments(prompt, i)[0] for i in range(batch)]}

    def _pipeline_prompt(self, segments):
        return segments


class ZImageOmniFamily(ZImageFamilyBase):
    """Z-Image Omni folders (``ZImageOmniPipeline``): edits with reference images, or text alone."""

    record = catalog.family("zimage-omni")
    prompt_depends_on_inputs = True  # the SigLIP features of the inputs are cached with the prompt
    #: SigLIP sees each reference as the pipeline is handed it: at the size ``input_size`` gives
    #: it (as the training cache encodes it), not at the size a caller of a preview has it.
    prompt_sees_preview_inputs = True
    input_names = ("_start", "_start1", "_start2", "_start3")
    #: The pipeline refuses reference images with a side under 64 pixels.
    min_reference_side: ClassVar[int] = 64
    input_size_policy = (
        "Each reference image (_start, _start1, … any number: ZImageOmniPipeline sets no limit) goes to the VAE at "
        "the target's bucket size when its aspect ratio nearly matches the target's (within 5 %, or one 16-pixel "
        "step at small sizes); a reference of a clearly different shape keeps its own aspect ratio at the "
        "target's pixel area (sides multiples of 16). The pipeline keeps each reference's own size and aspect "
        "ratio (scaled down to the output's area only above 1024² pixels, sides floored to multiples of 16), so "
        "at training resolution 1024 this is what inference shows the model. The SigLIP2 vision encoder sees "
        "each reference at that same size, as the pipeline shows it (its processor scales it to at most "
        "max_num_patches patches). The pipeline refuses a reference with a side under 64 pixels, so below that "
        "(training resolutions under 64) the reference is scaled up to a 64-pixel short side in training and "
        "previews alike. Text-to-image sets (no _start) train the same model without references."
    )

    def input_size(self, input_size: tuple[int, int], target_size: tuple[int, int],
                   resolution: int) -> tuple[int, int]:
        """Either ``train.input_size`` rule's size, scaled up (aspect kept) to the pipeline's
        64-pixel minimum side where it is smaller: the pipeline refuses a smaller reference, so
        a preview has to hand it this size, and training must show the model the reference
        as the pipeline does (its latent grid and positions, and SigLIP's view). Only training
        resolutions below 64 (the tiny models') meet it."""
        size = super().input_size(input_size, target_size, resolution)
        return at_least_size(size, self.min_reference_side, self.size_multiple)

    def pipeline_input_size(self, input_size: tuple[int, int]) -> tuple[int, int]:
        """ZImageOmniPipeline's default (FLUX.2's, copied): the reference's own size, scaled down
        to 1024² pixels when it is larger, sides floored to multiples of 16."""
        return own_size_within_area(input_size, self.record.pipeline_input_area, self.size_multiple)

    def _encode_text(self, pipe, caption: str, input_images: list[Image.Image]) -> dict[str, torch.Tensor]:
        out = super()._encode_text(pipe, caption, input_images)
        if input_images:
            features = pipe.prepare_siglip_embeds(input_images, batch_size=1, device=self.device,
                                                  dtype=torch.float32)[0]
            out.update({f"siglip_{i}": grid[None] for i, grid in enumerate(features)})
        return out

    def _prompt_segments(self, pipe, caption: str, num_inputs: int) -> list[torch.Tensor]:
        embeds, _negative = pipe.encode_prompt(prompt=caption, device=self.device, do_classifier_free_guidance=False,
                                               max_sequence_length=self.max_sequence_length,
                                               num_condition_images=num_inputs)
        return list(embeds[0])

    def _transformer_inputs(self, targets, inputs, prompt, batch):
        # Omni mode, as the pipeline's denoising loop: per sample, the references then the
        # target; SigLIP features per reference plus None for the target; only the target noisy.
        siglip = [[prompt[f"siglip_{j}"][i] for j in range(len(inputs))] + [None] if inputs else None
                  for i in range(batch)]
        return {"x": [[latents[i] for latents in inputs] + [targets[i]] for i in range(batch)],
                "cap_feats": [self._segments(prompt, i) for i in range(batch)],
                "siglip_feats": siglip,
                "image_noise_mask": [[0] * len(inputs) + [1] for _ in range(batch)]}

    def _pipeline_prompt(self, segments):
        return [segments]

    def _sample_call_kwargs(self, inputs: list[Image.Image], prompt: dict[str, torch.Tensor],
                            width: int, height: int) -> dict[str, Any]:
        kwargs = super()._sample_call_kwargs(inputs, prompt, width, height)
        self._preview_siglip = [prompt[f"siglip_{j}"][0] for j in range(len(inputs))]
        if inputs:
            kwargs["image"] = inputs  # sized by ``input_size``: never under the pipeline's minimum
        return kwargs

    def _sampling_pipeline(self, transformer: torch.nn.Module):
        """The pipeline without its SigLIP tower: ``prepare_siglip_embeds`` returns the features
        cached with the preview's prompt (computed by that same method while the encoders were
        loaded). And where the VAE is not bf16 (CPU runs), ``prepare_image_latents``, which casts
        the images to bf16 for the VAE, encodes at the VAE's own dtype instead (same math)."""
        pipe = super()._sampling_pipeline(transformer)
        original_latents = pipe.prepare_image_latents

        def siglip_embeds(images, batch_size, device, dtype):
            return [[grid.to(device, dtype) for grid in self._preview_siglip] for _ in range(batch_size)]

        def image_latents(images, batch_size, device, dtype):
            if pipe.vae.dtype == torch.bfloat16:
                return original_latents(images, batch_size, device, dtype)
            with torch.no_grad():
                latents = [self._vae_encode(pipe, image.to(device, pipe.vae.dtype))[0].unsqueeze(1).to(dtype)
                           for image in images]
            return [list(latents) for _ in range(batch_size)]

        pipe.prepare_siglip_embeds = siglip_embeds
        pipe.prepare_image_latents = image_latents
        return pipe
