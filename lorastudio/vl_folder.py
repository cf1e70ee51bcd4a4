"""Which local folder can draft captions: a Qwen2.5-VL / Qwen3-VL model, or an edit pipeline
that holds one. Torch-free, so the app can check a folder the moment the artist picks it.

Two layouts are accepted:

* a **model folder** as transformers saves it: ``config.json`` whose ``model_type`` is
  ``qwen2_5_vl`` or ``qwen3_vl``, the weights, and the processor beside them
  (``preprocessor_config.json`` or ``processor_config.json``, a tokenizer, a chat template);
* a **Qwen-Image-Edit(-Plus) pipeline folder** (``model_index.json``): its ``text_encoder/``
  is a complete Qwen2.5-VL-7B (musubi-tuner captions with it too) and its ``processor/``
  holds the image processor, tokenizer and chat template. A text-to-image Qwen-Image
  folder has no ``processor/`` (its text encoder never sees images): refused, naming that.

Whatever is missing is named in a :class:`VLFolderError` (the language-model head, the
processor, the chat template), before minutes go into loading 16 GB of weights. The counts
for the memory estimate come from the safetensors headers (no weights read).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lorastudio.estimate import EstimateError, read_safetensors_header
from lorastudio.model_folder import MODEL_INDEX, ModelFolderError, read_model_index

#: ``config.json`` ``model_type`` → (name for people, the transformers class that generates text).
VL_MODEL_TYPES = {
    "qwen2_5_vl": ("Qwen2.5-VL", "Qwen2_5_VLForConditionalGeneration"),
    "qwen3_vl": ("Qwen3-VL", "Qwen3VLForConditionalGeneration"),
}
#: Files that hold an image processor's settings (older and newer transformers layouts).
IMAGE_PROCESSOR_FILES = ("preprocessor_config.json", "processor_config.json")
TOKENIZER_FILES = ("tokenizer.json", "vocab.json")
CHAT_TEMPLATE_FILES = ("chat_template.jinja", "chat_template.json")
SUPPORTED = "a Qwen2.5-VL or Qwen3-VL model folder, or a Qwen-Image-Edit(-Plus) pipeline folder"


class VLFolderError(ValueError):
    """The folder cannot draft captions; the message names the missing piece and what to do."""


@dataclass(frozen=True)
class VLFolder:
    """A folder that can draft captions, and where its parts are."""

    root: Path
    #: ``"model"`` (a VL model folder) or ``"pipeline"`` (an edit pipeline's text encoder).
    kind: str
    model_type: str
    #: Where ``config.json`` and the weights are.
    model_dir: Path
    #: Where the image processor, the tokenizer and the chat template are.
    processor_dir: Path
    #: Weights of the linear layers (what int8/int4 quantize) and of everything else.
    linear_params: int
    other_params: int
    hidden: int
    #: Width of one token's keys (= values) in a layer: key/value heads × head size.
    kv_width: int
    layers: int

    @property
    def name(self) -> str:
        return VL_MODEL_TYPES[self.model_type][0]

    @property
    def class_name(self) -> str:
        return VL_MODEL_TYPES[self.model_type][1]

    @property
    def params(self) -> int:
        return self.linear_params + self.other_params

    def describe(self) -> str:
        where = f"the text encoder of the pipeline {self.root.name}" if self.kind == "pipeline" else self.root.name
        return f"{self.name}, {self.params / 1e9:.1f} B parameters ({where})" if self.params >= 1e8 else \
            f"{self.name}, {self.params / 1e6:.1f} M parameters ({where})"


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8-sig"))
    except (OSError, ValueError) as exc:
        raise VLFolderError(f"{path}: cannot read it ({exc})") from None
    if not isinstance(data, dict):
        raise VLFolderError(f"{path}: not a JSON object")
    return data


def detect_vl_folder(path: str | Path) -> VLFolder:
    """Check ``path`` and say where its parts are, or raise :class:`VLFolderError`."""
    root = Path(path).expanduser()
    if not root.is_dir():
        raise VLFolderError(f"{root}: folder not found (choose {SUPPORTED})")
    if (root / MODEL_INDEX).is_file():
        return _pipeline_folder(root)
    if (root / "config.json").is_file():
        return _model_folder(root, root, kind="model")
    raise VLFolderError(f"{root}: not a model folder (no config.json or model_index.json); choose {SUPPORTED}")


def _pipeline_folder(root: Path) -> VLFolder:
    try:
        index = read_model_index(root)
    except ModelFolderError as exc:
        raise VLFolderError(str(exc)) from None
    pipeline = index.get("_class_name", "a pipeline")
    if "text_encoder" not in index or not (root / "text_encoder" / "config.json").is_file():
        raise VLFolderError(f"{root}: {pipeline} has no text_encoder/ with a config.json, so there is no "
                            f"vision-language model in it; choose {SUPPORTED}")
    encoder_type = _read_json(root / "text_encoder" / "config.json").get("model_type", "")
    if encoder_type not in VL_MODEL_TYPES:
        raise VLFolderError(f"{root}: the text encoder of {pipeline} ({encoder_type or 'unknown type'}) is not a "
                            f"vision-language model, so it cannot look at images; choose {SUPPORTED}")
    processor = root / "processor"
    if not processor.is_dir() or not _any_file(processor, IMAGE_PROCESSOR_FILES):
        raise VLFolderError(
            f"{root}: {pipeline} has no processor/ folder (no image processor): its text encoder never sees "
            "images, as in the text-to-image Qwen-Image. Choose a Qwen-Image-Edit(-Plus) folder, or a Qwen2.5-VL / "
            "Qwen3-VL model folder.")
    return _model_folder(root, root / "text_encoder", kind="pipeline", processor_dir=processor)


def _any_file(folder: Path, names: tuple[str, ...]) -> bool:
    return any((folder / n).is_file() for n in names)


def _model_folder(root: Path, model_dir: Path, kind: str, processor_dir: Path | None = None) -> VLFolder:
    config_path = model_dir / "config.json"
    config = _read_json(config_path)
    model_type = config.get("model_type", "")
    if model_type not in VL_MODEL_TYPES:
        raise VLFolderError(f"{config_path}: model_type {model_type or '(none)'!r} is not a vision-language model "
                            f"that drafts captions here; choose {SUPPORTED}")
    architectures = config.get("architectures") or []
    if architectures and not any(a.endswith("ForConditionalGeneration") for a in architectures):
        raise VLFolderError(f"{config_path}: this is {', '.join(architectures)}, the model without its "
                            "language-model head (lm_head), so it cannot write text; use the full "
                            f"{VL_MODEL_TYPES[model_type][1]} folder")
    shapes = _tensor_shapes(model_dir)
    text_config = config.get("text_config") or config
    tied = bool(config.get("tie_word_embeddings", text_config.get("tie_word_embeddings", False)))
    if not tied and not any(name.endswith("lm_head.weight") for name in shapes):
        raise VLFolderError(f"{model_dir}: the weights have no language-model head (lm_head.weight), so the "
                            "model cannot write text; use a complete model folder")
    processor_dir = processor_dir or root
    if not _any_file(processor_dir, IMAGE_PROCESSOR_FILES):
        raise VLFolderError(f"{processor_dir}: no image processor ({' or '.join(IMAGE_PROCESSOR_FILES)}); "
                            "the folder is incomplete: copy the processor files from the model's release")
    if not _any_file(processor_dir, TOKENIZER_FILES):
        raise VLFolderError(f"{processor_dir}: no tokenizer ({' or '.join(TOKENIZER_FILES)}); the folder is "
                            "incomplete: copy the tokenizer files from the model's release")
    if not _has_chat_template(processor_dir):
        raise VLFolderError(f"{processor_dir}: no chat template ({' or '.join(CHAT_TEMPLATE_FILES)}, or "
                            "chat_template in tokenizer_config.json); the model's prompt layout comes from it")
    hidden = int(text_config.get("hidden_size", 0))
    heads = int(text_config.get("num_attention_heads", 1)) or 1
    kv_heads = int(text_config.get("num_key_value_heads") or heads)
    head_dim = int(text_config.get("head_dim") or hidden // heads)
    linear = other = 0
    for name, shape in shapes.items():
        n = math.prod(shape)
        if len(shape) == 2 and name.endswith(".weight") and "embed" not in name and "lm_head" not in name:
            linear += n
        else:
            other += n
    return VLFolder(root=root, kind=kind, model_type=model_type, model_dir=model_dir, processor_dir=processor_dir,
                    linear_params=linear, other_params=other,
                    hidden=hidden, kv_width=kv_heads * head_dim, layers=int(text_config.get("num_hidden_layers", 0)))


def _has_chat_template(folder: Path) -> bool:
    if _any_file(folder, CHAT_TEMPLATE_FILES):
        return True
    for name in ("tokenizer_config.json", "processor_config.json"):
        path = folder / name
        if path.is_file():
            try:
                if json.loads(path.read_text(encoding="utf-8-sig")).get("chat_template"):
                    return True
            except (OSError, ValueError, AttributeError):
                continue
    return False


def _tensor_shapes(model_dir: Path) -> dict[str, tuple[int, ...]]:
    files = sorted(model_dir.glob("*.safetensors"))
    if not files:
        raise VLFolderError(f"{model_dir}: no .safetensors weights found")
    shapes: dict[str, tuple[int, ...]] = {}
    for file in files:
        try:
            header = read_safetensors_header(file)
        except EstimateError as exc:
            raise VLFolderError(str(exc)) from None
        for name, info in header.items():
            shapes[name] = tuple(int(d) for d in info["shape"])
    return shapes
