""""Fit to my GPU": the resolution and memory savers a card size calls for.

With the model folder's counts (``estimate.ModelFacts``) the savers are worked out for
this model (``estimate.fit_options``: the fastest combination that fits); without them the
preset's own defaults apply.
"""

from __future__ import annotations

from lorastudio import catalog
from lorastudio import estimate as memory_estimate
from lorastudio.memory_presets import memory_preset


def preset_savers(preset_id: str, facts: object, rank: int,
                  input_size: str = catalog.AUTO_INPUT_SIZE) -> tuple[int, dict]:
    """The preset's resolution and the memory savers (as ``train`` keys) for ``facts`` at ``rank``,
    input images sized by ``input_size`` (``train.input_size``)."""
    preset = memory_preset(preset_id)
    if isinstance(facts, memory_estimate.ModelFacts):
        options, _est, _fits = memory_estimate.fit_options(facts, preset.vram_gb, resolution=preset.resolution,
                                                           rank=rank, input_size=input_size)
        return preset.resolution, {"gradient_checkpointing": options.gradient_checkpointing,
                                   "quantization": options.quantization, "cpu_offload": options.cpu_offload,
                                   "optimizer": options.optimizer}
    return preset.resolution, preset.option_dict()
