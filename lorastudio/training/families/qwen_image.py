"""Qwen-Image text-to-image LoRAs (``QwenImagePipeline`` folders): image + caption, no inputs.

Tensor layout and sampling are shared with Qwen-Image-Edit-Plus in ``_qwen_common``; the
text encoder here sees the caption alone, in the text-to-image prompt template.
"""

from __future__ import annotations

from typing import ClassVar

import torch
from PIL import Image

from lorastudio import catalog
from lorastudio.training.families._qwen_common import QwenFamilyBase


class QwenImageFamily(QwenFamilyBase):
    record = catalog.family("qwen-image")
    input_size_policy = "Text-to-image: there are no input images; only the target is sized (bucketed)."
    #: QwenImagePipeline's default prompt length cap (tokens after the template prefix).
    max_sequence_length: ClassVar[int] = 512

    def input_size(self, input_size: tuple[int, int], target_size: tuple[int, int],
                   resolution: int) -> tuple[int, int]:
        return tuple(target_size)  # type: ignore[return-value]  # never called: no inputs

    def _encode_text(self, pipe, caption: str, input_images: list[Image.Image]) -> dict[str, torch.Tensor]:
        embeds, mask = pipe.encode_prompt(prompt=caption, device=self.device,
                                          max_sequence_length=self.max_sequence_length)
        return self._with_mask(embeds, mask)

    def _sample_call_kwargs(self, inputs, prompt, width, height):
        return {**super()._sample_call_kwargs(inputs, prompt, width, height),
                "max_sequence_length": self.max_sequence_length}
