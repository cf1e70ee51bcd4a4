"""Which model family a base-model folder holds, read without torch.

The training panel shows the family as soon as a folder is picked. The worker detects the
family itself (``lorastudio.training``), but the GUI may not import that package, so this
is a small pure mapping of ``model_index.json``'s ``_class_name``: cheap, Qt-free and
torch-free.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

#: ``model_index.json`` ``_class_name`` → (config family id, display name, trains edit pairs?,
#: trains text-to-image sets?). Kept equal to the training families (a test checks it).
PIPELINES: dict[str, tuple[str, str, bool, bool]] = {
    "FluxKontextPipeline": ("kontext", "FLUX.1 Kontext", True, False),
    "QwenImageEditPlusPipeline": ("qwen-edit-plus", "Qwen-Image-Edit-Plus", True, False),
    "FluxPipeline": ("flux", "FLUX.1 (text-to-image)", False, True),
    "QwenImagePipeline": ("qwen-image", "Qwen-Image (text-to-image)", False, True),
    "Flux2Pipeline": ("flux2", "FLUX.2", True, True),
    "Flux2KleinPipeline": ("flux2-klein", "FLUX.2 [klein]", True, True),
}


@dataclass(frozen=True)
class ModelFolderInfo:
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
        if not self.supported or mode not in ("paired", "single"):
            return ""
        if mode == "paired" and not self.edit:
            editors = ", ".join(v[1] for v in PIPELINES.values() if v[2])
            return (f"{self.display_name} is a text-to-image model, but the dataset has before/after pairs. "
                    f"Choose an image-editing model folder ({editors}).")
        if mode == "single" and not self.text_to_image:
            t2i = ", ".join(v[1] for v in PIPELINES.values() if v[3])
            return (f"{self.display_name} is an image-editing model, but the dataset has no _start/_end pairs "
                    f"(text-to-image sets). Choose a text-to-image model folder ({t2i}).")
        return ""


def detect_model_folder(path: str | Path | None) -> ModelFolderInfo:
    """Read ``path/model_index.json`` and name the family, or say clearly what is wrong."""
    if not path or not str(path).strip():
        return ModelFolderInfo(Path(""), False, message="No base model chosen yet: pick a local diffusers "
                                                        "model folder (the one with model_index.json).")
    folder = Path(path).expanduser()
    if not folder.is_dir():
        return ModelFolderInfo(folder, False, message=f"Folder not found: {folder}")
    index = folder / "model_index.json"
    if not index.is_file():
        return ModelFolderInfo(folder, False, message="Not a diffusers model folder: there is no model_index.json "
                                                      "in it. Choose the folder that contains model_index.json, "
                                                      "transformer/, vae/ …")
    try:
        data = json.loads(index.read_text(encoding="utf-8-sig"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        return ModelFolderInfo(folder, False, message=f"model_index.json cannot be read ({exc}).")
    class_name = data.get("_class_name") if isinstance(data, dict) else None
    if not isinstance(class_name, str) or not class_name:
        return ModelFolderInfo(folder, False, message="model_index.json names no pipeline (_class_name is missing).")
    known = PIPELINES.get(class_name)
    if known is None:
        names = ", ".join(sorted({v[1] for v in PIPELINES.values()}))
        return ModelFolderInfo(folder, False, class_name=class_name,
                               message=f"Unsupported model: {class_name}. LoRA Studio trains {names}.")
    family, display, edit, text_to_image = known
    return ModelFolderInfo(folder, True, class_name=class_name, family=family, display_name=display, edit=edit,
                           text_to_image=text_to_image)
