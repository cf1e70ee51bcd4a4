"""FLUX.1 Kontext: edit LoRAs with one input image (``FluxKontextPipeline`` folders).

The tensor layout and the guidance choice are in ``_flux_common`` (shared with FLUX.1-dev);
this file adds what is Kontext's own: one input image, its size policy, and the
pipeline arguments for previews.
"""

from __future__ import annotations

from typing import Any

import torch
from PIL import Image

from lorastudio import catalog
from lorastudio.training.families._common import snap_size
from lorastudio.training.families._flux_common import FluxFamilyBase


class KontextFamily(FluxFamilyBase):
    record = catalog.family("kontext")
    #: BFL's recommended guidance for Kontext (the diffusers example uses 2.5).
    sample_guidance = 2.5
    input_size_policy = (
        "The input image is resized to the target's bucket size when the two have nearly the same "
        "aspect ratio (within 5 %, or one 16-pixel step at small sizes), so before and after stay pixel-aligned, "
        "as musubi-tuner and ai-toolkit train Kontext. An input of a clearly different shape keeps its own "
        "aspect ratio at the target's pixel area (sides multiples of 16), as FluxKontextPipeline keeps the "
        "input's aspect when it picks a preferred resolution. (At inference the pipeline by default resizes the "
        "input to the closest of its preferred ~1 MP Kontext resolutions, i.e. the target's size when the output "
        "is generated at that resolution.) Previews call the pipeline with the training input size (auto-resize "
        "off) and the target's size. With train.input_size = \"pipeline\" the input takes the preferred "
        "resolution the pipeline picks (~1 MP) instead."
    )

    def pipeline_input_size(self, input_size: tuple[int, int]) -> tuple[int, int]:
        """FluxKontextPipeline's default (``_auto_resize``): the preferred Kontext resolution
        (all about 1 MP) closest to the input's aspect ratio."""
        from diffusers.pipelines.flux.pipeline_flux_kontext import PREFERRED_KONTEXT_RESOLUTIONS

        aspect = input_size[0] / input_size[1]
        _, width, height = min((abs(aspect - w / h), w, h) for w, h in PREFERRED_KONTEXT_RESOLUTIONS)
        return snap_size((width, height), self.size_multiple)

    def _sample_call_kwargs(self, inputs: list[Image.Image], prompt: dict[str, torch.Tensor],
                            width: int, height: int) -> dict[str, Any]:
        kwargs = super()._sample_call_kwargs(inputs, prompt, width, height)
        # The pipeline would otherwise rescale the output to ~1 MP (max_area) and the input
        # to a preferred Kontext resolution; previews must show what training sees.
        kwargs.update(image=inputs[0], max_area=width * height, _auto_resize=False)
        return kwargs
