"""JoyImage-Edit-Plus (``JoyImageEditPlusPipeline`` folders: jdopensource/JoyAI-Image-Edit-Plus-Diffusers):
edit LoRAs with one to five reference images, and text-to-image LoRAs through the same pipeline.

What it does, and why, mirrors ``diffusers.pipelines.joyimage.pipeline_joyimage_edit_plus``:

* **Latents** are Wan 2.1's VAE (``AutoencoderKLWan``) on one frame: the distribution's mode,
  normalized per channel, ``(z - latents_mean) / latents_std`` (``prepare_latents``; the same
  code as Qwen-Image's ``_encode_vae_image``, reused).
* **One patch sequence.** ``prepare_latents`` cuts the target and then every reference into
  1×2×2 patches and lays them end to end, target first; ``shape_list`` names each part's
  (t, h, w) and the transformer gives part k the RoPE time index k (one temporal offset per
  image; references may differ in size). References stay clean (the pipeline restores them
  every step) and get the target's timestep; the transformer's output is cut back to the
  target's patches. ``predict`` builds the same sequence; the transformer gets
  ``timestep = 1000 σ`` (the scheduler's timesteps, as the pipeline passes them) and predicts
  the velocity ``noise - x0`` the pipeline's Euler step uses.
* **Text.** The Qwen3-VL encoder reads ``<|im_start|>user\\n`` + one ``<image>`` block per reference
  + the caption, in the pipeline's system template, with every reference image; the pipeline
  keeps the last decoder layer's *pre-norm* output (``encode_prompt_multiple_images``, called
  as it is) and drops the 34 system-template tokens. The prompt therefore depends on the
  inputs. The encoder sees each reference as the pipeline shows it at inference, whatever the
  training size: resized and centre-cropped to its ~1 MP bucket (``get_default_height_width``,
  ``resize_center_crop``), which the Qwen3-VL processor then cuts into 32×32-pixel tokens.
  Text tokens have no position encoding in the transformer, so prompts of different lengths
  pad and batch exactly (the mask hides the padding, as in the pipeline's CFG batch).
* **Sizes.** ``JoyImageEditPlusPipeline`` gives every reference its own ~1 MP bucket (the 1024
  bucket list of ``image_processor.BUCKETS`` closest in aspect, resize to cover, centre crop)
  and generates, unless told a size, at the last reference's bucket.
* **Previews** are the pipeline's ``__call__`` with its defaults (guidance 4.0 with the norm
  rescale, the blank negative prompt) around the training transformer. Its ``__call__`` cannot
  take ``prompt_embeds`` in diffusers 0.42 (it formats ``prompt`` even then), so the preview
  pipeline's ``encode_prompt_multiple_images`` hands back the encodings the pipeline's own
  method made while the encoders were loaded; and its ``get_default_height_width`` is the
  plain one (the image's own size), so references go to the VAE at their training size, as
  in training, instead of being re-bucketed to ~1 MP.
* **LoRA loading.** diffusers 0.42 has no LoRA loader for JoyImage (the transformer lacks
  ``PeftAdapterMixin``); :meth:`transformer_class` is diffusers' class with that mixin added,
  so ``load_lora_adapter`` — the loader ``load_lora_weights`` ends in for every other DiT —
  reads our files (``lorastudio sample``, the learning test and the key-coverage test use it).
"""

from __future__ import annotations

import functools
import types
from typing import Any, ClassVar

import torch
from PIL import Image

from lorastudio import catalog
from lorastudio.training.families._common import check_latent_size, resize_to
from lorastudio.training.families._pipeline_family import PipelineFamily
from lorastudio.training.families._qwen_common import QwenFamilyBase

#: Stand-ins for the prompt texts of a preview call; its ``encode_prompt_multiple_images``
#: answers with the cached encodings (see the module docstring).
_PROMPT, _NEGATIVE = "\x00prompt", "\x00negative"


@functools.cache
def transformer_with_lora_loading(class_name: str) -> type:
    """diffusers' JoyImage transformer ``class_name`` with diffusers' ``PeftAdapterMixin``
    (``load_lora_adapter``, ``set_adapters`` …), which diffusers 0.42 leaves out of both
    (``JoyImageEditPlusTransformer3DModel``, ``JoyImageEditTransformer3DModel``)."""
    import diffusers
    from diffusers.loaders.peft import PeftAdapterMixin

    base = getattr(diffusers, class_name)
    return type(base.__name__, (base, PeftAdapterMixin), {"__module__": base.__module__, "__doc__": base.__doc__})


class JoyImageEditPlusFamily(PipelineFamily):
    record = catalog.family("joyimage-edit-plus")
    transformer_class_name = "JoyImageEditPlusTransformer3DModel"
    prompt_depends_on_inputs = True
    input_names = ("_start", "_start1", "_start2", "_start3", "_start4")
    #: VAE factor 8 × the transformer's 2×2 patches.
    size_multiple = 16
    #: The pipeline's defaults: guidance 4.0 (with its norm rescale) against a blank prompt.
    sample_guidance: ClassVar[float] = 4.0
    sample_negative_prompt: ClassVar[str] = " "
    #: ``__call__``'s default cap on prompt tokens.
    max_sequence_length: ClassVar[int] = 4096
    input_size_policy = (
        "JoyImageEditPlusPipeline gives every reference image (_start … _start4, up to five) its own ~1 MP bucket "
        "(the 1024 bucket list closest in aspect ratio: resized to cover it, centre-cropped) and generates at the "
        "last reference's bucket unless told a size. train.input_size \"target\" (the default) trains each "
        "reference at the target's bucket size, or at its own aspect at the target's area when the shapes clearly "
        "differ; \"pipeline\" trains it at its ~1 MP bucket, as the pipeline's default call does. The Qwen3-VL text "
        "encoder always sees each reference as the pipeline shows it: at its ~1 MP bucket (one vision token per "
        "32×32 pixels). Previews hand the pipeline the references at their training size. Text-to-image sets "
        "(no _start) train the same model without references."
    )

    @classmethod
    def transformer_class(cls) -> type:
        return transformer_with_lora_loading(cls.transformer_class_name)

    def pipeline_input_size(self, input_size: tuple[int, int]) -> tuple[int, int]:
        """The pipeline's own view of a reference: its ~1 MP bucket (``find_best_bucket``)."""
        from diffusers.pipelines.joyimage.image_processor import find_best_bucket

        height, width = find_best_bucket(input_size[1], input_size[0], 1024)
        return width, height

    # -- encoding (the pipeline's own code) -----------------------------------------------------

    _vae_encode = QwenFamilyBase._vae_encode  # per-channel mean/std on one frame, as prepare_latents
    collate_prompts = QwenFamilyBase.collate_prompts  # pad with mask 0 (text has no positions here)

    def encode_image(self, image: Image.Image) -> torch.Tensor:
        """The VAE's latents of ``image`` at its size. The pipeline's own image processor would
        re-bucket it to ~1 MP (its ``get_default_height_width``), so the plain one normalizes it."""
        from diffusers.image_processor import VaeImageProcessor

        pipe = self._require_encoders()
        check_latent_size(image, self.size_multiple)
        width, height = image.size
        pixels = VaeImageProcessor(vae_scale_factor=8).preprocess(resize_to(image, image.size), height=height,
                                                                 width=width)
        with torch.no_grad():
            latents = self._vae_encode(pipe, pixels.to(self.device, self.dtype))
        return latents[0].cpu()

    @staticmethod
    def condition_image(pipe, image: Image.Image) -> Image.Image:
        """A reference as ``__call__`` hands it to the encoders: resized to cover its ~1 MP bucket
        and centre-cropped to it."""
        processor = pipe.image_processor
        return processor.resize_center_crop(image, processor.get_default_height_width(image))

    def _encode_text(self, pipe, caption: str, input_images: list[Image.Image]) -> dict[str, torch.Tensor]:
        """``__call__``'s prompt for one sample and ``encode_prompt_multiple_images`` on it."""
        tags = "<image>\n" * len(input_images)
        images = [self.condition_image(pipe, i) for i in input_images] or None
        embeds, mask = pipe.encode_prompt_multiple_images(
            prompt=[f"<|im_start|>user\n{tags}{caption}<|im_end|>\n"], images=images, device=self.device,
            max_sequence_length=self.max_sequence_length)
        return {"prompt_embeds": embeds, "prompt_embeds_mask": mask.to(torch.long)}

    def _encode_for_sampling(self, pipe, caption: str, input_images: list[Image.Image]) -> dict[str, torch.Tensor]:
        positive = self._encode_text(pipe, caption, input_images)
        negative = self._encode_text(pipe, self.sample_negative_prompt, input_images)
        return {**positive, **{f"negative_{k}": v for k, v in negative.items()}}

    # -- training ---------------------------------------------------------------------------------

    @staticmethod
    def patchify(latents: torch.Tensor, patch: tuple[int, int, int]) -> torch.Tensor:
        """(B, C, h, w) latents as ``prepare_latents`` cuts one frame: (B, N, C, pt, ph, pw)."""
        pt, ph, pw = patch
        b, c, h, w = latents.shape
        x = latents.reshape(b, c, 1 // pt, pt, h // ph, ph, w // pw, pw)
        return x.permute(0, 2, 4, 6, 1, 3, 5, 7).reshape(b, -1, c, pt, ph, pw)

    @staticmethod
    def unpatchify(patches: torch.Tensor, height: int, width: int) -> torch.Tensor:
        """The first (target) part of a patch sequence back to (B, C, height, width) latents, as
        the pipeline does before decoding."""
        b, _, c, pt, ph, pw = patches.shape
        lh, lw = height // ph, width // pw
        x = patches[:, : lh * lw].reshape(b, 1, lh, lw, c, pt, ph, pw)
        return x.permute(0, 4, 1, 5, 2, 6, 3, 7).reshape(b, c, pt, height, width)[:, :, 0]

    def pipeline_target_latents(self, latents: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        """The target's (B, C, h, w) latents in the pipeline's denoised patch sequence, for an
        output of ``size`` = (width, height) pixels (what the pipeline decodes)."""
        return self.unpatchify(latents, size[1] // 8, size[0] // 8)

    def predict(self, transformer: torch.nn.Module, noisy_target: torch.Tensor, sigmas: torch.Tensor,
                input_latents: list[torch.Tensor], prompt: dict[str, torch.Tensor]) -> torch.Tensor:
        self.check_input_count(len(input_latents))
        patch = tuple(transformer.config.patch_size)
        batch, _, height, width = noisy_target.shape
        device, dtype = noisy_target.device, self.dtype
        parts = [noisy_target.to(dtype), *(latents.to(device, dtype) for latents in input_latents)]  # target first
        shapes = [(1, p.shape[-2] // patch[1], p.shape[-1] // patch[2]) for p in parts]
        output = transformer(
            hidden_states=torch.cat([self.patchify(p, patch) for p in parts], dim=1),
            timestep=(sigmas.float() * 1000).to(device),  # the scheduler's timesteps, as the pipeline passes them
            encoder_hidden_states=prompt["prompt_embeds"].to(device, dtype),
            encoder_hidden_states_mask=prompt["prompt_embeds_mask"].to(device),
            shape_list=[list(shapes) for _ in range(batch)],
            return_dict=False,
        )[0]
        return self.unpatchify(output, height, width).to(noisy_target.dtype)

    # -- sampling ---------------------------------------------------------------------------------

    def _sampling_pipeline(self, transformer: torch.nn.Module):
        from diffusers.image_processor import VaeImageProcessor

        pipe = super()._sampling_pipeline(transformer)
        # This pipe only (see the module docstring): cached prompts, references at their own size.
        pipe.encode_prompt_multiple_images = self._preview_encode_prompt
        pipe.image_processor.get_default_height_width = types.MethodType(VaeImageProcessor.get_default_height_width,
                                                                         pipe.image_processor)
        return pipe

    def _preview_encode_prompt(self, prompt, device=None, images=None, max_sequence_length=None):
        """``encode_prompt_multiple_images`` for a preview: the cached encoding of the prompt the
        call formatted around ``_PROMPT`` or ``_NEGATIVE``."""
        negative = "negative_" if _NEGATIVE in prompt[0] else ""
        embeds = self._preview_prompt[f"{negative}prompt_embeds"]
        return embeds.to(device, self.dtype), self._preview_prompt[f"{negative}prompt_embeds_mask"].to(device)

    def _sample_call_kwargs(self, inputs: list[Image.Image], prompt: dict[str, torch.Tensor],
                            width: int, height: int) -> dict[str, Any]:
        self._preview_prompt = dict(prompt)
        return {"prompt": _PROMPT, "negative_prompt": _NEGATIVE, "guidance_scale": self.sample_guidance,
                "images": list(inputs) or None, "max_sequence_length": self.max_sequence_length}
