"""A base-model folder's ``model_index.json``, read in one place, and which family it holds.

A base model is a local diffusers folder; its ``model_index.json`` names the pipeline
class (``_class_name``), which names the family (:mod:`lorastudio.catalog`), and lists the
components (``transformer``, ``vae`` …). Everything that needs those facts — the trainer's
folder check, the estimate, the FLUX.2 [klein] previews, the GUI's model field — reads them
through :func:`read_model_index`, so a missing or broken index gets one clear message.

Pure Python (no Qt, no torch): the GUI shows the family as soon as a folder is picked.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from lorastudio import catalog
from lorastudio.config import DEMO_LEARNING_RATES, TYPICAL_LEARNING_RATE

#: The file that makes a folder a diffusers model folder.
MODEL_INDEX = "model_index.json"
#: Written by ``lorastudio demo`` into its tiny model's folder, so the app knows the model
#: (its learning-rate range); diffusers ignores it.
DEMO_MODEL_FILE = "lorastudio-demo-model.txt"
#: Component classes that carry no weights (tokenizers, schedulers …), so their folders
#: need no .safetensors.
WEIGHTLESS_SUFFIXES = ("Tokenizer", "TokenizerFast", "Processor", "Scheduler", "FeatureExtractor")


class ModelFolderError(ValueError):
    """A model folder that is missing, incomplete or not a supported family (message says which)."""


def listing(folder: Path, limit: int = 8) -> str:
    """"found: a, b/, …" — what is in a folder, for messages about the wrong folder."""
    names = sorted(p.name + ("/" if p.is_dir() else "") for p in folder.iterdir())
    if not names:
        return "the folder is empty"
    more = f", … ({len(names) - limit} more)" if len(names) > limit else ""
    return "found: " + ", ".join(names[:limit]) + more


def read_model_index(model_dir: str | Path) -> dict:
    """``model_index.json`` of a folder as a dict, or a ModelFolderError saying what is there instead."""
    model_dir = Path(model_dir).expanduser()
    if not model_dir.exists():
        raise ModelFolderError(f"Model folder not found: {model_dir}")
    if not model_dir.is_dir():
        raise ModelFolderError(
            f"{model_dir} is a file, not a folder. LoRA Studio loads diffusers model folders (the folder with "
            f"{MODEL_INDEX}, transformer/, vae/ …), not single-file checkpoints.")
    index_path = model_dir / MODEL_INDEX
    if not index_path.is_file():
        raise ModelFolderError(
            f"{model_dir} is not a diffusers model folder: it has no {MODEL_INDEX} ({listing(model_dir)}). "
            f"Choose the folder that contains {MODEL_INDEX}, transformer/, vae/ ….")
    try:
        data = json.loads(index_path.read_text(encoding="utf-8-sig"))
    except (OSError, UnicodeDecodeError) as exc:
        raise ModelFolderError(f"{index_path} cannot be read ({exc})") from None
    except json.JSONDecodeError as exc:
        raise ModelFolderError(f"{index_path} cannot be read: it is not valid JSON ({exc}); the download may be "
                               "incomplete") from None
    if not isinstance(data, dict):
        raise ModelFolderError(f"{index_path} cannot be read: it is not a JSON object (found {type(data).__name__})")
    return data


def pipeline_class_name(model_dir: str | Path, index: dict) -> str:
    """The index's ``_class_name``, or a ModelFolderError when it names none."""
    class_name = index.get("_class_name")
    if not isinstance(class_name, str) or not class_name:
        raise ModelFolderError(f"{Path(model_dir) / MODEL_INDEX} names no pipeline (_class_name is missing)")
    return class_name


def index_components(index: dict) -> dict[str, str]:
    """Component name → class name for the non-empty entries (``"vae": ["diffusers", "AutoencoderKL"]``)."""
    out = {}
    for key, value in index.items():
        if key.startswith("_") or not isinstance(value, list) or len(value) != 2:
            continue
        library, class_name = value
        if library and class_name:
            out[key] = str(class_name)
    return out


def family_of(model_dir: str | Path, index: dict | None = None) -> catalog.FamilyRecord:
    """The catalog record of the family a folder holds, or a ModelFolderError naming what it is."""
    model_dir = Path(model_dir).expanduser()
    index = read_model_index(model_dir) if index is None else index
    class_name = pipeline_class_name(model_dir, index)
    record = catalog.family_for_pipeline(class_name)
    if record is None:
        raise ModelFolderError(f"{model_dir.name} is a {class_name} model, which LoRA Studio does not train. "
                               f"Supported: {catalog.supported_models_text()}.")
    return record


# -- the GUI's view ------------------------------------------------------------------------------


@dataclass(frozen=True)
class ModelFolderInfo:
    """What the training panel shows about the chosen model folder."""

    path: Path
    #: True when the folder holds a family LoRA Studio trains.
    supported: bool
    #: The pipeline class named in ``model_index.json`` ("" when unreadable).
    class_name: str = ""
    #: The config's family id ("kontext" …), "" when unsupported.
    family: str = ""
    #: What to show the artist: the family's name, or what is wrong.
    display_name: str = ""
    #: Trains image-editing datasets (before/after pairs).
    edit: bool = False
    #: Trains text-to-image datasets (image + caption); FLUX.2 trains both kinds.
    text_to_image: bool = False
    #: A sentence explaining an unsupported or broken folder ("" when supported).
    message: str = ""
    #: The demo's tiny model (``DEMO_MODEL_FILE`` in the folder).
    demo: bool = False

    @property
    def typical_learning_rate(self) -> tuple[float, float]:
        """The usual learning-rate range for this model: the guide's, or the demo model's own."""
        return DEMO_LEARNING_RATES if self.demo else TYPICAL_LEARNING_RATE

    @property
    def summary(self) -> str:
        if not self.supported:
            return self.message
        kinds = (["image editing (before → after pairs)"] if self.edit else []) + \
            (["text-to-image (image + caption)"] if self.text_to_image else [])
        return f"{self.display_name} · {' and '.join(kinds)}"

    def dataset_note(self, mode: str) -> str:
        """Why this model cannot train a dataset of ``mode`` ("paired"/"single"), or "" when it
        can: the same check the trainer makes before it loads anything."""
        if not self.supported or mode not in (catalog.PAIRED, catalog.SINGLE):
            return ""
        if mode == catalog.PAIRED and not self.edit:
            editors = ", ".join(r.display_name for r in catalog.families_for_mode(catalog.PAIRED))
            return (f"{self.display_name} is a text-to-image model, but the dataset has before/after pairs. "
                    f"Choose an image-editing model folder ({editors}).")
        if mode == catalog.SINGLE and not self.text_to_image:
            t2i = ", ".join(r.display_name for r in catalog.families_for_mode(catalog.SINGLE))
            return (f"{self.display_name} is an image-editing model, but the dataset has no _start/_end pairs "
                    f"(text-to-image sets). Choose a text-to-image model folder ({t2i}).")
        return ""


def detect_model_folder(path: str | Path | None) -> ModelFolderInfo:
    """Read ``path/model_index.json`` and name the family, or say clearly what is wrong (never raises)."""
    if not path or not str(path).strip():
        return ModelFolderInfo(Path(""), False, message="No base model chosen yet: pick a local diffusers "
                                                        f"model folder (the one with {MODEL_INDEX}).")
    folder = Path(path).expanduser()
    try:
        index = read_model_index(folder)
        class_name = pipeline_class_name(folder, index)
    except ModelFolderError as exc:
        return ModelFolderInfo(folder, False, message=str(exc))
    record = catalog.family_for_pipeline(class_name)
    if record is None:
        names = ", ".join(sorted({r.display_name for r in catalog.FAMILIES}))
        return ModelFolderInfo(folder, False, class_name=class_name,
                               message=f"Unsupported model: {class_name}. LoRA Studio trains {names}.")
    return ModelFolderInfo(folder, True, class_name=class_name, family=record.id, display_name=record.display_name,
                           edit=record.edit, text_to_image=record.text_to_image,
                           demo=(folder / DEMO_MODEL_FILE).is_file())
