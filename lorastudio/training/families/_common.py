"""Plumbing every family shares: offline loading, the input-size rule, memory, sampling cache.

Kept apart from ``base.py`` (the interface the loop is written against) so the interface
stays small; kept apart from the family files so no family repeats it.
"""

from __future__ import annotations

import gc
import hashlib
import math
from collections import OrderedDict
from pathlib import Path
from typing import Any

import torch
from PIL import Image

# -- loading -------------------------------------------------------------------------------------


def dtype_kwargs(dtype: torch.dtype) -> dict[str, torch.dtype]:
    """``from_pretrained`` keyword for the weights' dtype: diffusers renamed ``torch_dtype``
    to ``dtype`` (0.42); older releases (which pyproject still allows) only know the old name."""
    try:
        from diffusers.utils import deprecation_utils

        renamed = hasattr(deprecation_utils, "_TORCH_DTYPE_DEPRECATION_MESSAGE")
    except ImportError:  # pragma: no cover - older diffusers
        renamed = False
    return {"dtype": dtype} if renamed else {"torch_dtype": dtype}


def offline_kwargs() -> dict[str, Any]:
    """What every ``from_pretrained`` call here passes: local folder only, safetensors only.

    ``trust_remote_code`` is never passed (it defaults to off), so no code from a model
    folder ever runs.
    """
    return {"local_files_only": True, "use_safetensors": True}


def check_component_files(model_dir: Path) -> None:
    """Every weight-carrying component of a local folder is complete on disk, cheaply.

    ``detect_family`` already checked that each component folder exists and holds
    safetensors (never pickles). This goes one level deeper, reading only file headers, so
    an interrupted download or copy is named in a sentence before anything loads instead of
    failing deep inside diffusers: a component without its ``config.json``, a sharded
    model whose ``*.safetensors.index.json`` names a shard that is not there, and a
    ``.safetensors`` file cut short (its header says the data is longer than the file).
    Raises :class:`ModelFolderError`.
    """
    import json as _json

    from lorastudio.model_folder import WEIGHTLESS_SUFFIXES, ModelFolderError, index_components, read_model_index

    model_dir = Path(model_dir)
    for name, class_name in index_components(read_model_index(model_dir)).items():
        if class_name.endswith(WEIGHTLESS_SUFFIXES):
            continue
        folder = model_dir / name
        if not folder.is_dir():
            continue  # detect_family names missing component folders
        if not (folder / "config.json").is_file():
            raise ModelFolderError(f"{name}/ in {model_dir} has no config.json, so {class_name} cannot be built from "
                                   "it. The download or copy is incomplete: get this folder again.")
        for shard_index in folder.glob("*.safetensors.index.json"):
            try:
                shards = set(_json.loads(shard_index.read_text(encoding="utf-8"))["weight_map"].values())
            except (OSError, ValueError, KeyError, AttributeError) as exc:
                raise ModelFolderError(f"{shard_index} cannot be read ({exc}); the download may be incomplete") \
                    from None
            missing = sorted(s for s in shards if not (folder / s).is_file())
            if missing:
                raise ModelFolderError(
                    f"{name}/ in {model_dir} is incomplete: {shard_index.name} lists {len(shards)} weight files, "
                    f"but {', '.join(missing[:3])}{' …' if len(missing) > 3 else ''} "
                    f"{'is' if len(missing) == 1 else 'are'} missing. Was the download interrupted?")
        for weights in folder.glob("*.safetensors"):
            problem = safetensors_problem(weights)
            if problem:
                raise ModelFolderError(f"{name}/{weights.name} in {model_dir} {problem}. The download or copy was "
                                       "probably interrupted: get this file again.")


def safetensors_problem(path: Path) -> str:
    """Why ``path`` is not a whole safetensors file ("" when it looks whole), from its header.

    A safetensors file is an 8-byte header length, a JSON header giving every tensor's byte
    range, then the data: a file shorter than the header says is cut short.
    """
    import json as _json
    import struct

    try:
        size = path.stat().st_size
        with open(path, "rb") as fh:
            head = fh.read(8)
            if len(head) < 8:
                return "is empty or cut short (no header)"
            (length,) = struct.unpack("<Q", head)
            if length > min(size - 8, 100 * 1024 * 1024):
                return "is cut short or not a safetensors file (its header is incomplete)"
            header = _json.loads(fh.read(length))
    except OSError as exc:
        return f"cannot be read ({exc.strerror or exc})"
    except (ValueError, UnicodeDecodeError):
        return "is not a valid safetensors file (its header is not readable)"
    ends = [int(v["data_offsets"][1]) for k, v in header.items()
            if k != "__metadata__" and isinstance(v, dict) and "data_offsets" in v]
    if ends and 8 + length + max(ends) > size:
        return f"is cut short ({size:,} bytes, its header needs {8 + length + max(ends):,})"
    return ""


def load_pipeline(pipeline_class: type, model_dir: Path, dtype: torch.dtype, **components: Any):
    """``pipeline_class.from_pretrained`` on a local folder: the path a real model takes.

    ``components`` overrides or skips components (``transformer=None`` loads everything
    but the transformer), as diffusers allows.
    """
    return pipeline_class.from_pretrained(str(model_dir), **offline_kwargs(), **dtype_kwargs(dtype), **components)


def quiet_progress(pipeline) -> None:
    """No tqdm bars from pipeline calls: the worker's stdout carries events only, and bars
    on stderr would flood the run log at every preview."""
    pipeline.set_progress_bar_config(disable=True)


def free_memory(device: torch.device | None = None) -> None:
    """Return freed tensors' memory to the device now, not at the allocator's leisure."""
    gc.collect()
    if device is not None and device.type == "cuda" and torch.cuda.is_available():
        torch.cuda.empty_cache()
    elif device is not None and device.type == "mps" and hasattr(torch, "mps"):
        torch.mps.empty_cache()


def unwrap_peft(transformer: torch.nn.Module) -> torch.nn.Module:
    """The diffusers model inside a ``peft.PeftModel`` (LoRA layers stay in it), or the
    model itself: pipelines want their own transformer class, not peft's wrapper."""
    try:
        from peft import PeftModel
    except ImportError:  # pragma: no cover - peft is a dependency
        return transformer
    if isinstance(transformer, PeftModel):
        return transformer.base_model.model
    return transformer


def transformer_config(transformer: torch.nn.Module):
    """The diffusers config of a transformer, through a peft wrapper if there is one."""
    return unwrap_peft(transformer).config


# -- sizes ---------------------------------------------------------------------------------------


def check_latent_size(image: Image.Image, multiple: int) -> None:
    """``encode_image`` receives images already at their final size; a side that is not a
    multiple of ``multiple`` would be silently cropped by the VAE/packing, so refuse it."""
    w, h = image.size
    if w % multiple or h % multiple or w < multiple or h < multiple:
        raise ValueError(f"image size {w}x{h} is not a multiple of {multiple} on both sides; "
                         "resize it to its bucket before encoding")


def snap_size(size: tuple[int, int], multiple: int) -> tuple[int, int]:
    """(width, height) rounded down to ``multiple`` (at least one ``multiple``)."""
    return tuple(max(multiple, int(s) // multiple * multiple) for s in size)  # type: ignore[return-value]


def input_size_matching_target(input_size: tuple[int, int], target_size: tuple[int, int],
                               multiple: int, tolerance: float = 0.05) -> tuple[int, int]:
    """The input-image size rule the edit families share.

    * Input and target have (nearly) the same aspect ratio — the usual before/after pair —
      → the input takes exactly the target's bucket size. This is what musubi-tuner and
      ai-toolkit do for Kontext and Qwen-Image-Edit control images, keeps the input and
      target pixels aligned, and lets sets batch by target bucket.
    * Otherwise (a portrait input next to a square target, a product shot for a try-on)
      → the input keeps its own aspect ratio at the target's pixel area, sides rounded to
      ``multiple``; squashing it into the target's shape would teach the LoRA a distortion
      the pipeline never shows it (both pipelines size each input by its own aspect).

    "Nearly" is ``tolerance`` (5 %) in aspect ratio, or one ``multiple`` step on the
    target's short side when that is coarser (at small sizes no closer size exists).
    """
    iw, ih = input_size
    tw, th = target_size
    in_aspect, target_aspect = iw / ih, tw / th
    close = max(tolerance, multiple / min(tw, th))
    if abs(math.log(in_aspect / target_aspect)) <= close:
        return (tw, th)
    area = tw * th
    width = math.sqrt(area * in_aspect)
    height = width / in_aspect
    return (max(multiple, round(width / multiple) * multiple), max(multiple, round(height / multiple) * multiple))


def own_size_within_area(input_size: tuple[int, int], area: int, multiple: int) -> tuple[int, int]:
    """An input's own size, scaled down (aspect kept) to ``area`` pixels when it is larger,
    sides floored to ``multiple``: what the FLUX.2 and Z-Image Omni pipelines (the latter's
    reference handling is FLUX.2's, copied) give each reference image by default."""
    width, height = input_size
    if width * height > area:
        scale = (area / (width * height)) ** 0.5
        width, height = int(width * scale), int(height * scale)
    return snap_size((width, height), multiple)


def resize_to(image: Image.Image, size: tuple[int, int]) -> Image.Image:
    """RGB ``image`` at ``size`` (Lanczos; no copy when it already is)."""
    image = image.convert("RGB") if image.mode != "RGB" else image
    return image if image.size == tuple(size) else image.resize(tuple(size), Image.Resampling.LANCZOS)


def at_least_side(image: Image.Image, min_side: int, multiple: int) -> Image.Image:
    """``image`` scaled up (aspect kept, sides rounded up to ``multiple``) only when a side is
    under ``min_side``: the FLUX.2 and Z-Image Omni pipelines refuse reference images with a
    side under 64 pixels, which only training resolutions far below any real use (the tiny
    demo's) produce, never 512 or 1024."""
    size = at_least_size(image.size, min_side, multiple)
    return image if size == image.size else resize_to(image, size)


def at_least_size(size: tuple[int, int], min_side: int, multiple: int) -> tuple[int, int]:
    """(width, height) ``size`` scaled up as :func:`at_least_side` scales an image of that size."""
    short = min(size)
    if short >= min_side:
        return tuple(size)
    factor = min_side / short
    return tuple(-(-round(s * factor) // multiple) * multiple for s in size)


# -- sampling ------------------------------------------------------------------------------------


def image_key(image: Image.Image) -> str:
    """A content hash of an image (size and pixels), for caching sample prompts."""
    digest = hashlib.blake2b(digest_size=16)
    digest.update(f"{image.mode}{image.size}".encode())
    digest.update(image.tobytes())
    return digest.hexdigest()


class PromptMemo:
    """Prompt encodings for previews, kept across sampling points.

    Previews use the same few sets every ``sample_every`` steps. Encoding their captions
    needs the text encoder(s) (T5-XXL, Qwen2.5-VL-7B: many GB), which are freed during
    training; re-loading them at each preview would cost more than the preview itself.
    So the first preview of a set loads the encoders, encodes, frees them, and keeps the
    small result here.
    """

    def __init__(self, capacity: int = 32) -> None:
        self.capacity = capacity
        self._items: OrderedDict[tuple, dict[str, torch.Tensor]] = OrderedDict()

    def get(self, key: tuple) -> dict[str, torch.Tensor] | None:
        item = self._items.get(key)
        if item is not None:
            self._items.move_to_end(key)
        return item

    def put(self, key: tuple, value: dict[str, torch.Tensor]) -> None:
        self._items[key] = value
        self._items.move_to_end(key)
        while len(self._items) > self.capacity:
            self._items.popitem(last=False)

    def __len__(self) -> int:
        return len(self._items)
