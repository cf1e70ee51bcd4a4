"""Held-out validation sets (``dataset.validation``, issue 14): which sets a run never
trains on, and what is wrong with a list of them.

One place for the rules, so ``lorastudio check --config`` and the trainer's plan (before
any model loads) refuse the same lists with the same words.
"""

from __future__ import annotations

from lorastudio.dataset.model import Dataset, ImageSet

#: How many set names a message lists before it says "…".
LISTED_NAMES = 8


def held_out_problem(dataset: Dataset, names: list[str]) -> str | None:
    """The config error of ``dataset.validation = names`` on ``dataset``, or None if it is fine:
    a name that is no set (the message lists the sets that exist), or every trainable set held out."""
    existing = sorted(s.name for s in dataset.sets)
    unknown = [name for name in names if name not in existing]
    if unknown:
        listing = ", ".join(existing[:LISTED_NAMES]) + (" …" if len(existing) > LISTED_NAMES else "")
        return (f"dataset.validation: no set named {', '.join(map(repr, unknown))} in {dataset.root} "
                f"(sets: {listing or 'none'})")
    trainable = dataset.trainable_sets()
    if trainable and all(s.name in names for s in trainable):
        return (f"dataset.validation: holds out every set ({len(trainable)}), so nothing would be trained; "
                "keep at least one set for training (about 10 % held out is usual)")
    return None


def split_held_out(sets: list[ImageSet], names: list[str]) -> tuple[list[ImageSet], list[ImageSet]]:
    """(trained, held out): ``sets`` in their order, split by ``dataset.validation``."""
    held = set(names)
    return [s for s in sets if s.name not in held], [s for s in sets if s.name in held]
