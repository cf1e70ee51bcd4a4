"""Qwen-Image-Edit-Plus (2509 / 2511): edit LoRAs with one to three input images.

``QwenImageEditPlusPipeline`` folders. Each input image reaches the model twice: through
the VAE, as latent tokens appended after the target's with its own ``img_shapes`` entry
(``_qwen_common``), and through the Qwen2.5-VL text encoder, which sees it as
"Picture N: <|vision_start|><|image_pad|><|vision_end|>" in the prompt — so a set's prompt
encoding depends on its images (``prompt_depends_on_inputs``).

Sizes. At inference the pipeline gives the VAE each input at ~1024² pixels
(``VAE_IMAGE_SIZE``) with its own aspect ratio, and the VL encoder each input at ~384²
(``CONDITION_IMAGE_SIZE``), whatever the output size. Training scales the VAE view with
the training resolution (the target's area: exactly the pipeline at ``resolution`` 1024)
and keeps the VL view at the pipeline's 384², because the prompt embedding the
transformer learns to read should be the one it gets at inference.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import torch
from PIL import Image

from lorastudio import catalog
from lorastudio.training.families._qwen_common import QwenFamilyBase


def _pipeline_module():
    from diffusers.pipelines.qwenimage import pipeline_qwenimage_edit_plus

    return pipeline_qwenimage_edit_plus


class QwenEditPlusFamily(QwenFamilyBase):
    record = catalog.family("qwen-edit-plus")
    prompt_depends_on_inputs = True
    input_size_policy = (
        "Each input image goes to the VAE at the target's bucket size when its aspect ratio nearly matches the "
        "target's (within 5 %, or one 32-pixel step at small sizes); an input of a clearly different shape keeps "
        "its own aspect ratio at the target's pixel area (sides multiples of 32), as QwenImageEditPlusPipeline "
        "sizes every input by its own aspect (at 1024² there, at the training area here). The Qwen2.5-VL text "
        "encoder sees every input at about 384×384 pixels, exactly as the pipeline shows it at inference. With "
        "train.input_size = \"pipeline\" the VAE sees each input at the pipeline's own ~1 MP instead, whatever "
        "the training resolution."
    )

    def pipeline_input_size(self, input_size: tuple[int, int]) -> tuple[int, int]:
        """QwenImageEditPlusPipeline's VAE view of an input: ``VAE_IMAGE_SIZE`` pixels (about
        1 MP) at the input's aspect ratio, whatever the output size."""
        module = _pipeline_module()
        width, height = module.calculate_dimensions(module.VAE_IMAGE_SIZE, input_size[0] / input_size[1])
        return (int(width), int(height))

    @staticmethod
    def condition_images(pipe, input_images: list[Image.Image]) -> list[Image.Image]:
        """The inputs as the VL encoder sees them: the pipeline's own resize to
        ``CONDITION_IMAGE_SIZE`` pixels (~384²) at each image's aspect ratio."""
        module = _pipeline_module()
        out = []
        for image in input_images:
            width, height = module.calculate_dimensions(module.CONDITION_IMAGE_SIZE, image.width / image.height)
            out.append(pipe.image_processor.resize(image, height, width))
        return out

    def _encode_text(self, pipe, caption: str, input_images: list[Image.Image]) -> dict[str, torch.Tensor]:
        embeds, mask = pipe.encode_prompt(prompt=caption, image=self.condition_images(pipe, input_images),
                                          device=self.device)
        return self._with_mask(embeds, mask)

    def _sample_call_kwargs(self, inputs: list[Image.Image], prompt: dict[str, torch.Tensor],
                            width: int, height: int) -> dict[str, Any]:
        return {**super()._sample_call_kwargs(inputs, prompt, width, height), "image": list(inputs)}

    @contextlib.contextmanager
    def _sampling_context(self, width: int, height: int) -> Iterator[None]:
        """The pipeline has no argument for the VAE's view of the inputs (a module constant,
        ~1024²); previews set it to the preview's area for the call, so they show the model
        the inputs at the size training did. Restored afterwards, even on errors."""
        if self.input_size_rule == "pipeline":  # the pipeline's own ~1 MP view is the training one
            yield
            return
        module = _pipeline_module()
        saved = module.VAE_IMAGE_SIZE
        module.VAE_IMAGE_SIZE = width * height
        try:
            yield
        finally:
            module.VAE_IMAGE_SIZE = saved
