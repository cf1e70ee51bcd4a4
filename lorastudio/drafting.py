"""Drafting captions with a vision-language model: what is asked, of which sets, and how the
answer is tidied. Torch-free: the CLI, the worker and the app's dialog share these facts.

For a paired (edit) set the model sees every input image and then the target, each
labelled, and is asked for the guide's kind of caption: one imperative sentence that turns
the inputs into the target ("make it night", "replace the cat with a dog"). For a
text-to-image set it sees the one image and is asked for a description. The instruction
is editable (``--instruction``, ``[caption] instruction``, the dialog); the image labels
are not, since they say which picture is which.

A draft never contains the trigger word: training adds it (``dataset.trigger``), so a
generated one is taken out here.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from lorastudio.dataset.captions import has_caption
from lorastudio.dataset.model import Dataset, ImageSet
from lorastudio.estimate import caption_memory, format_gib
from lorastudio.vl_folder import VLFolder

DEFAULT_EDIT_INSTRUCTION = (
    "The pictures above are the input image(s) of a photo edit and its result. Write the edit "
    "instruction that turns the input into the result: ONE short imperative sentence, like "
    "\"make it night\" or \"replace the cat with a dog\". Name only what changes. Reply with the "
    "sentence alone.")
DEFAULT_SINGLE_INSTRUCTION = (
    "Describe this image in one or two sentences for a text-to-image training caption: the subject, "
    "the setting and the style. Reply with the description alone.")
#: New tokens a draft may take (a sentence is ~20; a description ~60).
DEFAULT_MAX_TOKENS = 80
#: Each image is scaled down to at most this many pixels before the model sees it: 768² is
#: ~750 vision tokens for Qwen2.5-VL (28 px per token after merging), plenty for a caption.
MAX_PIXELS = 768 * 768
PIXELS_PER_VISION_TOKEN = 28 * 28
#: Text tokens around the images (chat template, labels, instruction), for the estimate.
PROMPT_TEXT_TOKENS = 200
QUANTIZATIONS = ("none", "int8", "int4")
QUANTIZATION_LABELS = {"none": "full precision (bf16 on a GPU)", "int8": "8-bit (int8)", "int4": "4-bit (int4, NF4)"}


def default_instruction(paired: bool) -> str:
    return DEFAULT_EDIT_INSTRUCTION if paired else DEFAULT_SINGLE_INSTRUCTION


def input_label(index: int, count: int) -> str:
    return "Input image:" if count == 1 else f"Input image {index + 1}:"


def prompt_content(num_inputs: int, instruction: str) -> list[dict[str, str]]:
    """The user turn's parts, in the chat-template format transformers' processors read:
    a labelled image block per input image, one for the target, then the instruction (a
    single-image set: the image, then the instruction)."""
    parts: list[dict[str, str]] = []
    if num_inputs:
        for i in range(num_inputs):
            parts += [{"type": "text", "text": input_label(i, num_inputs)}, {"type": "image"}]
        parts += [{"type": "text", "text": "Result:"}, {"type": "image"}]
    else:
        parts.append({"type": "image"})
    parts.append({"type": "text", "text": instruction})
    return parts


_THINK = re.compile(r"<think>.*?(</think>|$)", re.DOTALL)


def clean_draft(text: str, trigger: str = "") -> str:
    """The draft as a caption: a thinking block, wrapping quotes, a "Caption:"-style label and
    the trigger word (any case, as a whole word) removed; one line, spaces collapsed."""
    text = _THINK.sub(" ", text)
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    text = lines[0] if lines else ""
    text = re.sub(r"^(caption|instruction|edit|answer)\s*:\s*", "", text, flags=re.IGNORECASE)
    trigger = trigger.strip()
    if trigger:
        text = re.sub(rf"(?<!\w){re.escape(trigger)}(?!\w)[,;:]?", " ", text, flags=re.IGNORECASE)
    text = re.sub(r"\s+", " ", text).strip()
    text = re.sub(r"\s+([,.;:!?])", r"\1", text)
    text = text.strip(" \"'“”‘’`,;:")
    return text


@dataclass
class DraftPlan:
    """Which sets get a draft, and which are left alone (and why)."""

    todo: list[ImageSet] = field(default_factory=list)
    #: Sets that already have a caption and were not asked to be replaced.
    skipped_existing: list[ImageSet] = field(default_factory=list)
    #: Asked-for names that are not a usable set (unknown, or with an error).
    unknown: list[str] = field(default_factory=list)


def plan_drafts(dataset: Dataset, names: list[str] | None = None, missing: bool = False,
                overwrite: bool = False) -> DraftPlan:
    """Sets to draft: ``names`` (or every usable set; with ``missing`` only those without a
    caption). A set with a caption is skipped unless ``overwrite``."""
    usable = {s.name: s for s in dataset.trainable_sets()}
    plan = DraftPlan()
    if names:
        chosen = []
        for name in dict.fromkeys(names):
            if name in usable:
                chosen.append(usable[name])
            else:
                plan.unknown.append(name)
    else:
        chosen = list(usable.values())
    for image_set in chosen:
        if not has_caption(image_set):
            plan.todo.append(image_set)
        elif missing or not overwrite:
            plan.skipped_existing.append(image_set)
        else:
            plan.todo.append(image_set)
    return plan


def prompt_tokens(images: int) -> int:
    return images * MAX_PIXELS // PIXELS_PER_VISION_TOKEN + PROMPT_TEXT_TOKENS


def memory_needed(folder: VLFolder, quantization: str, images: int = 3) -> float:
    """Bytes of GPU memory to draft a caption from ``images`` pictures (two inputs and a target)."""
    return caption_memory(folder.linear_params, folder.other_params, folder.hidden, folder.kv_width, folder.layers,
                          prompt_tokens(images), quantization)


def memory_text(folder: VLFolder, images: int = 3) -> str:
    """"bf16 ≈ 18.5 GB · int8 ≈ 11.2 GB · int4 ≈ 7.9 GB" for the dialog and ``caption --help``."""
    return " · ".join(f"{q if q != 'none' else 'bf16'} ≈ {format_gib(memory_needed(folder, q, images))}"
                      for q in QUANTIZATIONS)
