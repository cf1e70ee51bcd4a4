"""FLUX.1-dev text-to-image LoRAs (``FluxPipeline`` folders): image + caption, no inputs.

Everything but the mode is shared with Kontext in ``_flux_common``.
"""

from __future__ import annotations

from lorastudio import catalog
from lorastudio.training.families._flux_common import FluxFamilyBase


class FluxFamily(FluxFamilyBase):
    record = catalog.family("flux")
    #: FluxPipeline's default (and BFL's recommended) guidance for FLUX.1-dev.
    sample_guidance = 3.5
    input_size_policy = "Text-to-image: there are no input images; only the target is sized (bucketed)."

    def input_size(self, input_size: tuple[int, int], target_size: tuple[int, int],
                   resolution: int) -> tuple[int, int]:
        return tuple(target_size)  # type: ignore[return-value]  # never called: no inputs
