"""Qwen-Image 2.1 (``QwenImage21Pipeline`` folders): one model for edit LoRAs (one to ten
input images) and text-to-image LoRAs.

Mirrors ``diffusers.pipelines.qwenimage21``, which differs from Qwen-Image(-Edit) in ways
that matter for training:

* The VAE (``AutoencoderKLQwenImage21``) reads RGBA and compresses 16x into 64 channels; the
  transformer takes the latents unpatched (``_pack_latents`` is a plain flatten), so one
  token covers 16x16 pixels. Normalization is the same per-channel mean/std as Qwen-Image's,
  so ``QwenFamilyBase._vae_encode`` (the pipeline's ``_encode_vae_image``) serves as it is.
* ONE sequence (``QwenImage21Transformer2DModel`` is single-stream): the Qwen3-VL encoder sees
  the prompt and every input image together, each input taking one ``<|image_pad|>`` slot
  per 32x32 pixels; the transformer swaps each slot for the input's 2x2 latent tokens and
  appends the target's tokens. The prompt therefore carries ``image_pad_mask`` (where the
  slots are) besides the embeddings and their mask, and the VL encoder must see each input
  at exactly the size the VAE does — the pipeline feeds both from one resize.
* ``img_shapes`` lists the inputs first and the target last; the output keeps the target's
  tokens at the end of the sequence; the transformer gives text and input tokens timestep 0
  itself (``causal_condition``).
* Qwen recommends sampling without guidance (``true_cfg_scale`` 1.0, the pipeline's default).

Sizes: ``QwenImage21Pipeline`` resizes every condition image to ``output_resolution²`` pixels
at its own aspect ratio (sides multiples of 32, ``calculate_dimensions``), whatever the
output size; training does the same at ``resolution²``, so a LoRA trained at 1024 sees the
inputs exactly as the pipeline's default call shows them.
"""

from __future__ import annotations

import functools
import math
from typing import Any, ClassVar

import torch
from PIL import Image

from lorastudio import catalog
from lorastudio.training.families._common import check_latent_size, resize_to
from lorastudio.training.families._qwen_common import QwenFamilyBase
from lorastudio.training.families.base import EncodedPrompt

#: Pixels per side of one VL image slot: 16-pixel patches merged 2x2 (= 2x2 latent tokens).
SLOT_PIXELS = 32
#: The pipeline's ``vae_scale_factor``: pixels per latent (and transformer token) side.
VAE_SCALE = 16


def _pipeline_module():
    from diffusers.pipelines.qwenimage21 import pipeline_qwenimage21

    return pipeline_qwenimage21


def condition_size(size: tuple[int, int], resolution: int) -> tuple[int, int]:
    """(width, height) the pipeline gives a condition image of ``size`` at ``output_resolution``
    = ``resolution``: its own aspect ratio at ``resolution²`` pixels, sides multiples of 32
    (the pipeline's ``calculate_dimensions``). Repeated until it no longer changes, so the
    pipeline, handed an image of this size, leaves it as it is (previews hand it the inputs
    whose prompt they encoded; checked for all sizes to 2048 px at resolutions 64-1100)."""
    calculate = _pipeline_module().calculate_dimensions
    width, height = size
    for _ in range(8):
        new_width, new_height, _ = calculate(resolution * resolution, width / height)
        new = (max(SLOT_PIXELS, int(new_width)), max(SLOT_PIXELS, int(new_height)))
        if new == (width, height):
            break
        width, height = new
    return width, height


class QwenImage21Family(QwenFamilyBase):
    record = catalog.family("qwen-image-2.1")
    transformer_class_name = "QwenImage21Transformer2DModel"
    prompt_depends_on_inputs = True
    prompt_sees_preview_inputs = True
    #: The pipeline's default: no classifier-free guidance (Qwen's recommendation for 2.1).
    sample_true_cfg: ClassVar[float] = 1.0
    #: The processor builds the prompt template; previews keep it (it holds no weights).
    sample_components: ClassVar[tuple[str, ...]] = ("transformer", "vae", "scheduler", "processor")
    input_size_policy = (
        "QwenImage21Pipeline resizes every condition image to output_resolution² pixels at its own aspect ratio "
        "(sides multiples of 32; 1024² by default), whatever the output size. train.input_size \"target\" (the "
        "default) trains each input at the target's bucket size, or at its own aspect at the target's area when "
        "the shapes clearly differ: at resolution 1024 that is the pipeline's default call; \"pipeline\" trains "
        "every input at the pipeline's default ~1024². One resize feeds both the VAE and the Qwen3-VL text "
        "encoder, which sees every input at that same size (one vision slot per 32×32 pixels). Previews pass "
        "the pipeline an output_resolution that leaves the training-sized inputs as they are. Text-to-image "
        "sets have no inputs; only the target is sized (bucketed)."
    )

    def pipeline_input_size(self, input_size: tuple[int, int]) -> tuple[int, int]:
        """The pipeline's default call: ``output_resolution`` 1024, so each input at about 1024²
        pixels in its own aspect (the catalog's ``pipeline_input_area``)."""
        return condition_size(input_size, round(math.sqrt(self.record.pipeline_input_area)))

    # -- encoding ---------------------------------------------------------------------------------

    def encode_image(self, image: Image.Image) -> torch.Tensor:
        """The VAE reads RGBA: the pipeline converts every image so (alpha 255 for RGB)."""
        pipe = self._require_encoders()
        check_latent_size(image, self.size_multiple)
        width, height = image.size
        pixels = pipe.image_processor.preprocess(_rgba(image), height=height, width=width)
        with torch.no_grad():
            latents = self._vae_encode(pipe, pixels.to(self.device, self.dtype))
        return latents[0].cpu()

    def encode_prompt(self, caption: str, input_images: list[Image.Image]) -> EncodedPrompt:
        self.check_input_count(len(input_images))
        pipe = self._require_encoders()
        with torch.no_grad():
            tensors = self._encode_text(pipe, caption, list(input_images))
        return EncodedPrompt({name: t[0].cpu() for name, t in tensors.items()})

    def _encode_text(self, pipe, caption: str, input_images: list[Image.Image]) -> dict[str, torch.Tensor]:
        """The pipeline's ``encode_prompt``: the Qwen3-VL encoder reads the caption with every input
        image (at its final size, as the pipeline hands them over), in the image-conditioned
        template when there are inputs and the text-to-image one otherwise."""
        images = [_rgb(i) for i in input_images] or None
        embeds, mask, image_pad_mask = pipe.encode_prompt(prompt=caption, image=images, device=self.device)
        slots = int(image_pad_mask.sum())
        expected = sum((w // SLOT_PIXELS) * (h // SLOT_PIXELS) for w, h in (i.size for i in input_images))
        if slots != expected:
            sizes = ", ".join(f"{w}x{h}" for w, h in (i.size for i in input_images))
            raise ValueError(
                f"Qwen-Image 2.1's text encoder gave the input images ({sizes}) {slots} vision slots, but their "
                f"latents need {expected}: its processor resized them (its pixel limits, processor/"
                "preprocessor_config.json 'size', do not allow these sizes). Train at a resolution the processor "
                "accepts (256 or more for the released model).")
        return {**self._with_mask(embeds, mask), "image_pad_mask": image_pad_mask.to(torch.long)}

    def collate_prompts(self, prompts: list[EncodedPrompt]) -> dict[str, torch.Tensor]:
        """Pad to the longest prompt (mask 0; ``predict`` trims each prompt back). The transformer
        reads the image slots' positions from the first row, so every row must have them in the
        same places: they do, because a batch holds sets of one input layout and the images
        come before the caption."""
        length = max(p.tensors["prompt_embeds"].shape[0] for p in prompts)

        def padded(name: str, p: EncodedPrompt) -> torch.Tensor:
            t = p.tensors[name]
            return torch.cat([t, t.new_zeros(length - t.shape[0], *t.shape[1:])])

        out = {name: torch.stack([padded(name, p) for p in prompts])
               for name in ("prompt_embeds", "prompt_embeds_mask", "image_pad_mask")}
        if not bool((out["image_pad_mask"] == out["image_pad_mask"][:1]).all()):
            raise ValueError("sets with different input-image layouts cannot share a batch")
        return out

    # -- training ---------------------------------------------------------------------------------

    def predict(self, transformer: torch.nn.Module, noisy_target: torch.Tensor, sigmas: torch.Tensor,
                input_latents: list[torch.Tensor], prompt: dict[str, torch.Tensor]) -> torch.Tensor:
        """One transformer call per prompt length in the batch, each prompt trimmed to its real
        tokens. Padding cannot simply be masked here: it sits between the prompt and the target
        in the one sequence, and the rotary positions count it, so a padded prompt would move
        the target's position and change the prediction."""
        self.check_input_count(len(input_latents))
        lengths = prompt["prompt_embeds_mask"].sum(dim=1)
        out = None
        for length in lengths.unique().tolist():
            rows = (lengths == length).nonzero(as_tuple=True)[0]
            part = self._predict_rows(transformer, noisy_target[rows], sigmas[rows],
                                      [latents[rows] for latents in input_latents],
                                      {name: t[rows, :length] for name, t in prompt.items()})
            if out is None:
                if len(rows) == len(lengths):
                    return part
                out = part.new_zeros(noisy_target.shape)
            out = out.index_copy(0, rows.to(out.device), part)
        return out

    def _predict_rows(self, transformer: torch.nn.Module, noisy_target: torch.Tensor, sigmas: torch.Tensor,
                      input_latents: list[torch.Tensor], prompt: dict[str, torch.Tensor]) -> torch.Tensor:
        """The pipeline's transformer call for rows whose prompts have the same length."""
        pipe_class = self.pipeline_class()
        batch, channels, height, width = noisy_target.shape
        device, dtype = noisy_target.device, self.dtype

        tokens, shapes = [], []
        for latents in [*input_latents, noisy_target]:  # inputs first, the target last
            h, w = latents.shape[-2:]
            tokens.append(pipe_class._pack_latents(latents.to(device, dtype), batch, channels, h, w))
            shapes.append((1, h, w))
        image_pad_mask = prompt["image_pad_mask"].to(device).bool()
        target_slots = image_pad_mask.new_ones(batch, height * width // 4)  # one slot per 2x2 target tokens
        output = transformer(
            hidden_states=torch.cat(tokens, dim=1),
            timestep=sigmas.to(device, dtype),
            encoder_hidden_states=prompt["prompt_embeds"].to(device, dtype),
            img_shapes=[list(shapes)] * batch,
            img_mask=torch.cat([image_pad_mask, target_slots], dim=1),
            return_dict=False,
        )[0]
        target_tokens = output[:, -tokens[-1].shape[1]:]
        unpacked = pipe_class._unpack_latents(target_tokens, height * VAE_SCALE, width * VAE_SCALE, VAE_SCALE)
        return unpacked[:, :, 0].to(noisy_target.dtype)

    # -- sampling ---------------------------------------------------------------------------------

    def _encode_for_sampling(self, pipe, caption: str, input_images: list[Image.Image]) -> dict[str, torch.Tensor]:
        return self._encode_text(pipe, caption, input_images)  # no guidance: no negative prompt

    def _preview_inputs(self, input_images: list[Image.Image], size: tuple[int, int],
                        resolution: int) -> list[Image.Image]:
        """The inputs at the size the pipeline will give them. Its ``output_resolution`` is taken
        from the last input's area, so training-sized inputs go through unchanged (and their
        cached prompt encoding fits)."""
        if not input_images:
            return []
        self._output_resolution = round(math.sqrt(input_images[-1].width * input_images[-1].height))
        return [resize_to(i, condition_size(i.size, self._output_resolution)) for i in input_images]

    def _sampling_pipeline(self, transformer: torch.nn.Module):
        pipe = super()._sampling_pipeline(transformer)
        self._preview_pipe = pipe
        return pipe

    def _sample_call_kwargs(self, inputs: list[Image.Image], prompt: dict[str, torch.Tensor],
                            width: int, height: int) -> dict[str, Any]:
        """Pre-encoded prompt, the inputs, and the ``output_resolution`` that leaves them at
        their size. ``__call__`` does not pass ``image_pad_mask`` on to ``encode_prompt`` with
        pre-encoded embeddings (diffusers 0.42), so the call's ``encode_prompt`` gets it bound."""
        mask = prompt.pop("image_pad_mask").bool()
        pipe = self._preview_pipe
        pipe.encode_prompt = functools.partial(type(pipe).encode_prompt, pipe, image_pad_mask=mask)
        kwargs = {**super()._sample_call_kwargs(inputs, prompt, width, height), "true_cfg_scale": 1.0}
        if inputs:
            kwargs.update(image=[_rgb(i) for i in inputs], output_resolution=self._output_resolution)
        return kwargs

    def sample(self, transformer: torch.nn.Module, input_images: list[Image.Image], caption: str,
               size: tuple[int, int], steps: int, seed: int) -> Image.Image:
        """The pipeline's RGBA output as RGB, like the dataset's images (read as RGB)."""
        return super().sample(transformer, input_images, caption, size, steps, seed).convert("RGB")


def _rgba(image: Image.Image) -> Image.Image:
    return image if image.mode == "RGBA" else image.convert("RGBA")


def _rgb(image: Image.Image) -> Image.Image:
    return image if image.mode == "RGB" else image.convert("RGB")
