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

#: ``model_index.json`` ``_class_name`` → (config family id, display name, edit model?)
PIPELINES: dict[str, tuple[str, str, bool]] = {
    "FluxKontextPipeline": ("kontext", "FLUX.1 Kontext", True),
    "QwenImageEditPlusPipeline": ("qwen-edit-plus", "Qwen-Image-Edit-Plus", True),
    "FluxPipeline": ("flux", "FLUX.1 (text-to-image)", False),
    "QwenImagePipeline": ("qwen-image", "Qwen-Image (text-to-image)", False),
    "Flux2Pipeline": ("flux2", "FLUX.2", True),
    "Flux2KleinPipeline": ("flux2-klein", "FLUX.2", True),
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
    #: Image-editing model (paired datasets) rather than text-to-image.
    edit: bool = False
    #: A sentence explaining an unsupported or broken folder ("" when supported).
    message: str = ""

    @property
    def summary(self) -> str:
        if not self.supported:
            return self.message
        kind = "image editing (before → after pairs)" if self.edit else "text-to-image (image + caption)"
        return f"{self.display_name} · {kind}"


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
    family, display, edit = known
    return ModelFolderInfo(folder, True, class_name=class_name, family=family, display_name=display, edit=edit)
