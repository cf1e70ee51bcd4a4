"""The model families LoRA Studio trains, and how a model folder is matched to one.

A base model is a local diffusers folder; its ``model_index.json`` names the pipeline
class (``_class_name``), and that names the family. :func:`detect_family` also checks the
folder before anything heavy loads — components present, weights in safetensors — so a
wrong or broken folder costs the artist a second and a sentence that says what was found,
not a traceback minutes into loading a 12B model.

Importing this package is cheap (torch, no diffusers): each family imports diffusers
only when it loads a model.
"""

from __future__ import annotations

import importlib
from pathlib import Path

from lorastudio import catalog
from lorastudio.dataset.model import Mode
from lorastudio.model_folder import (WEIGHTLESS_SUFFIXES, ModelFolderError, family_of, index_components, listing,
                                     read_model_index)
from lorastudio.training.families._pipeline_family import InputCountError
from lorastudio.training.families.base import EncodedPrompt, ModelFamily


def _family_class(record: catalog.FamilyRecord) -> type[ModelFamily]:
    """The class in ``families/<record.family_module>.py`` whose ``record`` is ``record``."""
    module = importlib.import_module(f"{__name__}.{record.family_module}")
    found = [cls for cls in vars(module).values()
             if isinstance(cls, type) and issubclass(cls, ModelFamily) and cls.__dict__.get("record") is record]
    if len(found) != 1:
        raise ImportError(f"{module.__name__} must define exactly one family class with record = the "
                          f"{record.id!r} catalog record (found {len(found)})")
    return found[0]


#: Family id (config ``[model] family``, CLI, LoRA metadata) → family class, one per catalog record.
FAMILIES: dict[str, type[ModelFamily]] = {record.id: _family_class(record) for record in catalog.FAMILIES}

#: ``model_index.json`` ``_class_name`` → family class.
PIPELINE_CLASSES: dict[str, type[ModelFamily]] = {
    class_name: cls for cls in FAMILIES.values() for class_name in cls.pipeline_class_names
}

#: Pickle-based weight files: loading one can run arbitrary code, so we never do.
_PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl")

__all__ = [
    "FAMILIES",
    "PIPELINE_CLASSES",
    "EncodedPrompt",
    "FamilyModeError",
    "InputCountError",
    "ModelFamily",
    "ModelFolderError",
    "check_dataset_mode",
    "detect_family",
    "family_by_name",
    "families_for_mode",
]


class FamilyModeError(ValueError):
    """The dataset's kind (edit pairs / text-to-image) does not fit the chosen model."""


def family_by_name(name: str) -> type[ModelFamily]:
    """The family class for a family id, or a ModelFolderError listing the known ones."""
    try:
        return FAMILIES[catalog.family(name).id]
    except catalog.UnknownFamilyError as exc:
        raise ModelFolderError(str(exc)) from None


def families_for_mode(mode: Mode) -> list[type[ModelFamily]]:
    """The families that train datasets of ``mode`` (edit pairs or text-to-image)."""
    return [FAMILIES[record.id] for record in catalog.families_for_mode(mode)]


def check_dataset_mode(family: type[ModelFamily], mode: Mode) -> None:
    """Refuse, in words, a dataset whose kind the model does not train.

    Edit models learn from before/after pairs; text-to-image sets (an image and a caption)
    train on the text-to-image model of the same family, and the message says which.
    """
    if family.trains(mode):
        return
    if mode is Mode.SINGLE:
        alternatives = " or ".join(f"{c.display_name} ({c.pipeline_class_names[0]})"
                                   for c in families_for_mode(Mode.SINGLE))
        raise FamilyModeError(
            f"This dataset has text-to-image sets (an image and a caption, no _start/_end pairs), but "
            f"{family.display_name} is an image-editing model that learns from before/after pairs. "
            f"Choose a text-to-image model folder instead: {alternatives}.")
    alternatives = " or ".join(c.display_name for c in families_for_mode(Mode.PAIRED))
    raise FamilyModeError(
        f"This dataset has before/after pairs (NAME_start / NAME_end), but {family.display_name} is a "
        f"text-to-image model. Choose an image-editing model folder instead: {alternatives}.")


def check_model_folder(model_dir: Path, index: dict | None = None) -> None:
    """Every component the index lists is there, and weights are safetensors.

    Pickle weights (``.bin``, ``.pt``, ``.ckpt`` …) are refused rather than loaded: loading
    a pickle can run code hidden in the file, and a model folder may come from anywhere.
    """
    model_dir = Path(model_dir).expanduser()
    index = read_model_index(model_dir) if index is None else index
    components = index_components(index)
    missing = [name for name in components if not (model_dir / name).is_dir()]
    if missing:
        raise ModelFolderError(
            f"{model_dir} is incomplete: model_index.json lists {', '.join(components)}, but "
            f"{', '.join(m + '/' for m in missing)} {'is' if len(missing) == 1 else 'are'} missing "
            f"({listing(model_dir)}). Was the download or copy interrupted?")
    for name, class_name in components.items():
        if class_name.endswith(WEIGHTLESS_SUFFIXES):
            continue
        folder = model_dir / name
        files = [p for p in folder.rglob("*") if p.is_file()]
        if any(p.name.endswith(".safetensors") for p in files):
            continue
        pickles = sorted(p.name for p in files if p.name.endswith(_PICKLE_SUFFIXES))
        if pickles:
            raise ModelFolderError(
                f"{name}/ holds its weights only as {', '.join(pickles)} (PyTorch pickle files). LoRA Studio "
                "loads safetensors only, because loading a pickle can run code hidden in it. Get the .safetensors "
                "version of this model (or convert these files to safetensors).")
        raise ModelFolderError(f"{name}/ has no weights in it (no .safetensors file; {listing(folder)})")


def detect_family(model_dir: Path, override: str = "") -> type[ModelFamily]:
    """The family of a local diffusers folder, after checking the folder is usable.

    ``override`` (the config's ``[model] family``) picks the family by id instead of by
    ``_class_name``, for folders whose index names another (compatible) pipeline class.
    Raises :class:`ModelFolderError` with a message that names what was found.
    """
    model_dir = Path(model_dir).expanduser()
    index = read_model_index(model_dir)
    family = family_by_name(override) if override else FAMILIES[family_of(model_dir, index).id]
    check_model_folder(model_dir, index)
    return family
