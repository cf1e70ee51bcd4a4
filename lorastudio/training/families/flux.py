"""FLUX.1-dev text-to-image LoRAs (``FluxPipeline`` folders): image + caption, no inputs.

Everything but the mode is shared with Kontext in ``_flux_common``.
"""

from __future__ import annotations

from lorastudio.dataset.model import Mode
from lorastudio.training.families._flux_common import FluxFamilyBase


class FluxFamily(FluxFamilyBase):
    name = "flux"
    display_name = "FLUX.1 (text-to-image)"
    pipeline_class_names = ("FluxPipeline",)
    pipeline_class_name = "FluxPipeline"
    mode = Mode.SINGLE
    max_inputs = 0
    #: FluxPipeline's default (and BFL's recommended) guidance for FLUX.1-dev.
    sample_guidance = 3.5
    input_size_policy = "Text-to-image: there are no input images; only the target is sized (bucketed)."

    def input_size(self, input_size: tuple[int, int], target_size: tuple[int, int],
                   resolution: int) -> tuple[int, int]:
        return tuple(target_size)  # type: ignore[return-value]  # never called: no inputs
