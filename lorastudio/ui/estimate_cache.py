"""The memory and time estimate under the settings, and the model counts it is made from.

Reading a model folder's counts (``estimate.model_facts``: config files only) is done
once per folder; the estimate itself is cheap and redone on every change of the settings.
"""

from __future__ import annotations

from html import escape

from lorastudio import catalog
from lorastudio import estimate as memory_estimate
from lorastudio.memory_presets import memory_preset
from lorastudio.ui.form_mapping import FormValues, whole_number_or


class ModelFactsCache:
    """The last model folder's counts, or the reason there is no estimate."""

    def __init__(self) -> None:
        self._cached: tuple[str, memory_estimate.ModelFacts | str] | None = None

    def get(self, folder: str) -> memory_estimate.ModelFacts | str:
        if self._cached is None or self._cached[0] != folder:
            try:
                facts = memory_estimate.model_facts(folder) if folder else "choose a base model for an estimate"
            except memory_estimate.EstimateError as exc:
                facts = f"no estimate: {exc}"
            self._cached = (folder, facts)
        return self._cached[1]


def estimate_html(facts: memory_estimate.ModelFacts | str, values: FormValues, preset_id: str) -> str:
    """Rich text for the estimate label: memory, whether the preset's card fits, the time for the steps."""
    if not isinstance(facts, memory_estimate.ModelFacts):
        return escape(str(facts), quote=False)
    options = memory_estimate.MemoryOptions(**values.memory_values())
    est = memory_estimate.estimate(facts, resolution=whole_number_or(values.resolution, 512),
                                   rank=whole_number_or(values.rank, 16), options=options,
                                   input_size=values.input_size)
    text = escape(est.summary(), quote=False)
    if preset_id:
        card = memory_preset(preset_id).vram_gb
        text += (f"<br>Fits a {card:g} GB card." if est.fits(card) else
                 f"<br>Does not fit a {card:g} GB card: lower the resolution or rank.")
    steps = values.steps
    text += f"<br>{steps:,} steps {memory_estimate.approx_seconds(est.step_seconds * steps)} on that GPU."
    if facts.edit:
        rule = catalog.resolve_input_size(values.input_size, facts.record.id) if facts.record else "target"
        where = ", at ~1 MP: Advanced, Input image size" if rule == "pipeline" else ""
        text += f" (Counted with one input image per set{where}.)"
    return text
