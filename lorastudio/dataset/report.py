"""The human-readable dataset report that ``lorastudio check`` prints.

It answers, in order, what an artist wants to know: what kind of dataset this is, how many
sets will train, what is wrong with the others (grouped by severity, each with its files
and what to do), whether the dataset is big enough by the guide's standard, and the
verdict. Only ASCII punctuation is used in the frame, so the report reads the same in a
Windows console; file names and captions are printed as they are.
"""

from __future__ import annotations

import textwrap
from collections import Counter

from lorastudio.dataset.captions import has_caption
from lorastudio.dataset.model import Dataset, ImageSet, Mode, Severity
from lorastudio.dataset.problems import SIZE_GUIDANCE, size_guidance_verdict, span_text
from lorastudio.dataset.scan import unit_of

#: At most this many sets are listed one per line; ``--json`` has all of them.
MAX_LISTED_SETS = 50
_WIDTH = 100
_HEADINGS = {
    Severity.ERROR: "Errors ({n}) - a set with an error is left out of training",
    Severity.WARNING: "Warnings ({n}) - training works, but the result may suffer",
    Severity.INFO: "Advice ({n})",
}
_MODE_TEXT = {
    Mode.PAIRED: "image editing (before/after sets named NAME_start / NAME_end)",
    Mode.SINGLE: "text-to-image (single images with optional captions)",
}


def format_report(dataset: Dataset, held_out: list[str] | tuple[str, ...] = ()) -> str:
    """The whole report as one string ending in a newline; ``held_out``: a project's
    ``dataset.validation`` (those sets are checked the same, and marked)."""
    trainable = dataset.trainable_sets()
    lines = [f"Dataset: {dataset.root}", f"Kind: {_MODE_TEXT[dataset.mode]}"]
    left_out = len(dataset.sets) - len(trainable)
    summary = f"Sets: {len(dataset.sets)} found, {len(trainable)} ready to train"
    held = sum(s.name in held_out for s in trainable)
    if held:
        summary += f" ({held} of them held out for validation)"
    if left_out:
        summary += f", {left_out} left out because of errors"
    lines.append(summary)
    if dataset.mode is Mode.PAIRED and dataset.sets:
        lines.append(f"Inputs per set: {_input_counts(dataset.sets)}")
    if dataset.sets:
        captioned = sum(has_caption(s) for s in dataset.sets)
        lines.append(f"Captions: {captioned} of {len(dataset.sets)} sets have one")

    if dataset.sets:
        lines += ["", "Sets:"]
        lines += [_set_line(dataset, s, s.name in held_out) for s in dataset.sets[:MAX_LISTED_SETS]]
        if len(dataset.sets) > MAX_LISTED_SETS:
            lines.append(f"  ... and {len(dataset.sets) - MAX_LISTED_SETS} more (--json lists them all)")

    for severity in (Severity.ERROR, Severity.WARNING, Severity.INFO):
        found = [p for p in dataset.problems if p.severity is severity]
        if not found:
            continue
        lines += ["", _HEADINGS[severity].format(n=len(found)) + ":"]
        for problem in found:
            lines += textwrap.wrap(f"[{problem.code}] {problem.message}", _WIDTH,
                                   initial_indent="  ", subsequent_indent="      ")
            lines += [f"      - {f}" for f in problem.files]

    unit = unit_of(dataset.mode)
    lines += ["", f"Dataset size (the guide): {size_guidance_verdict(len(trainable), unit)}"]
    for low, high, kind in SIZE_GUIDANCE:
        lines.append(f"  {span_text(low, high):>8} {unit}  {kind}")

    lines += ["", verdict(dataset, held)]
    return "\n".join(lines) + "\n"


def verdict(dataset: Dataset, held_out: int = 0) -> str:
    """One line: ready or not, and why (``held_out`` of the ready sets are not trained)."""
    trainable = len(dataset.trainable_sets()) - held_out
    errors = dataset.error_count
    if errors:
        plural = "error" if errors == 1 else "errors"
        return (f"Result: NOT READY - fix the {errors} {plural} above "
                f"({trainable} {unit_of(dataset.mode)} would train as it is).")
    if not trainable:
        return "Result: NOT READY - nothing to train."
    held = f", {held_out} held out for validation" if held_out else ""
    return f"Result: ready to train {trainable} {unit_of(dataset.mode)}{held}."


def _input_counts(sets: list[ImageSet]) -> str:
    counts = Counter(len(s.inputs) for s in sets if s.inputs)
    if not counts:
        return "none"
    parts = []
    for count, n in sorted(counts.items()):
        parts.append(f"{count} input{'s' if count != 1 else ''} ({n} set{'s' if n != 1 else ''})")
    return ", ".join(parts)


def _set_line(dataset: Dataset, image_set: ImageSet, held_out: bool = False) -> str:
    inputs = " + ".join(dataset.relative(p) for p in image_set.inputs)
    target = dataset.relative(image_set.target) if image_set.target else "(no target)"
    files = f"{inputs} -> {target}" if inputs else target
    flags = ["held out"] if held_out else []
    if has_caption(image_set):
        flags.append("caption")
    if image_set.has_error:
        flags.append("ERROR")
    elif image_set.problems:
        flags.append("warning")
    suffix = f"  [{', '.join(flags)}]" if flags else ""
    return f"  {image_set.name}: {files}{suffix}"
