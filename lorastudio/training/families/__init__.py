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

import json
from pathlib import Path

from lorastudio.dataset.model import Mode
from lorastudio.training.families._pipeline_family import InputCountError
from lorastudio.training.families.base import EncodedPrompt, ModelFamily, ModelFolderError
from lorastudio.training.families.flux import FluxFamily
from lorastudio.training.families.flux2 import Flux2Family, Flux2KleinFamily
from lorastudio.training.families.kontext import KontextFamily
from lorastudio.training.families.qwen_edit_plus import QwenEditPlusFamily
from lorastudio.training.families.qwen_image import QwenImageFamily

#: Family id (config ``[model] family``, CLI, LoRA metadata) → family class.
FAMILIES: dict[str, type[ModelFamily]] = {
    cls.name: cls for cls in (KontextFamily, QwenEditPlusFamily, FluxFamily, QwenImageFamily, Flux2Family,
                              Flux2KleinFamily)
}

#: ``model_index.json`` ``_class_name`` → family class.
PIPELINE_CLASSES: dict[str, type[ModelFamily]] = {
    class_name: cls for cls in FAMILIES.values() for class_name in cls.pipeline_class_names
}

#: Component classes that carry no weights (so their folders need no .safetensors).
_WEIGHTLESS_SUFFIXES = ("Tokenizer", "TokenizerFast", "Processor", "Scheduler", "FeatureExtractor")
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
    "supported_models_text",
]


class FamilyModeError(ValueError):
    """The dataset's kind (edit pairs / text-to-image) does not fit the chosen model."""


def supported_models_text() -> str:
    """"FluxKontextPipeline (FLUX.1 Kontext), …" for messages."""
    return ", ".join(f"{name} ({cls.display_name})" for name, cls in PIPELINE_CLASSES.items())


def family_by_name(name: str) -> type[ModelFamily]:
    """The family class for a family id, or a ModelFolderError listing the known ones."""
    from lorastudio.config import KNOWN_FAMILIES

    try:
        return FAMILIES[name]
    except KeyError:
        known = ", ".join(FAMILIES)
        if name in KNOWN_FAMILIES:  # planned (the config accepts it) but not implemented yet
            raise ModelFolderError(f"the {name!r} model family is not supported yet; LoRA Studio trains: "
                                   f"{known}") from None
        raise ModelFolderError(f"unknown model family {name!r}; LoRA Studio trains: {known}") from None


def families_for_mode(mode: Mode) -> list[type[ModelFamily]]:
    """The families that train datasets of ``mode`` (edit pairs or text-to-image)."""
    return [cls for cls in FAMILIES.values() if cls.trains(mode)]


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


def _listing(folder: Path, limit: int = 8) -> str:
    names = sorted(p.name + ("/" if p.is_dir() else "") for p in folder.iterdir())
    if not names:
        return "the folder is empty"
    more = f", … ({len(names) - limit} more)" if len(names) > limit else ""
    return "found: " + ", ".join(names[:limit]) + more


def read_model_index(model_dir: Path) -> dict:
    """``model_index.json`` of a folder, or a ModelFolderError that says what is there instead."""
    model_dir = Path(model_dir).expanduser()
    if not model_dir.exists():
        raise ModelFolderError(f"Model folder not found: {model_dir}")
    if not model_dir.is_dir():
        raise ModelFolderError(
            f"{model_dir} is a file, not a folder. LoRA Studio loads diffusers model folders (the folder with "
            "model_index.json, transformer/, vae/ …), not single-file checkpoints.")
    index_path = model_dir / "model_index.json"
    if not index_path.is_file():
        raise ModelFolderError(
            f"{model_dir} is not a diffusers model folder: it has no model_index.json ({_listing(model_dir)}). "
            "Choose the folder that contains model_index.json, transformer/, vae/ ….")
    try:
        data = json.loads(index_path.read_text(encoding="utf-8-sig"))
    except (OSError, UnicodeDecodeError) as exc:
        raise ModelFolderError(f"{index_path} cannot be read ({exc})") from None
    except json.JSONDecodeError as exc:
        raise ModelFolderError(f"{index_path} is not valid JSON ({exc}); the download may be incomplete") from None
    if not isinstance(data, dict):
        raise ModelFolderError(f"{index_path} is not a JSON object (found {type(data).__name__})")
    return data


def _components(index: dict) -> dict[str, str]:
    """Component name → class name for the non-empty entries of ``model_index.json``."""
    out = {}
    for key, value in index.items():
        if key.startswith("_") or not isinstance(value, list) or len(value) != 2:
            continue
        library, class_name = value
        if library and class_name:
            out[key] = str(class_name)
    return out


def check_model_folder(model_dir: Path, index: dict | None = None) -> None:
    """Every component the index lists is there, and weights are safetensors.

    Pickle weights (``.bin``, ``.pt``, ``.ckpt`` …) are refused rather than loaded: loading
    a pickle can run code hidden in the file, and a model folder may come from anywhere.
    """
    model_dir = Path(model_dir).expanduser()
    index = read_model_index(model_dir) if index is None else index
    components = _components(index)
    missing = [name for name in components if not (model_dir / name).is_dir()]
    if missing:
        raise ModelFolderError(
            f"{model_dir} is incomplete: model_index.json lists {', '.join(components)}, but "
            f"{', '.join(m + '/' for m in missing)} {'is' if len(missing) == 1 else 'are'} missing "
            f"({_listing(model_dir)}). Was the download or copy interrupted?")
    for name, class_name in components.items():
        if class_name.endswith(_WEIGHTLESS_SUFFIXES):
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
        raise ModelFolderError(f"{name}/ has no weights in it (no .safetensors file; {_listing(folder)})")


def detect_family(model_dir: Path, override: str = "") -> type[ModelFamily]:
    """The family of a local diffusers folder, after checking the folder is usable.

    ``override`` (the config's ``[model] family``) picks the family by id instead of by
    ``_class_name``, for folders whose index names another (compatible) pipeline class.
    Raises :class:`ModelFolderError` with a message that names what was found.
    """
    model_dir = Path(model_dir).expanduser()
    index = read_model_index(model_dir)
    class_name = index.get("_class_name")
    if override:
        family = family_by_name(override)
    else:
        if not isinstance(class_name, str) or not class_name:
            raise ModelFolderError(f"{model_dir / 'model_index.json'} names no pipeline (_class_name is missing)")
        family = PIPELINE_CLASSES.get(class_name)
        if family is None:
            raise ModelFolderError(
                f"{model_dir.name} is a {class_name} model, which LoRA Studio does not train. "
                f"Supported: {supported_models_text()}.")
    check_model_folder(model_dir, index)
    return family
