"""The latent and text cache: encode every image and caption once, before training.

Layout under ``run_dir/cache/``::

    latents/<key>.safetensors   {"latents": (C, h, w)}      one per image at its training size
    prompts/<key>.safetensors   the family's named prompt tensors, one file per set
    prompts/sample_<key>.safetensors   the preview prompt of each set that gets previews

Keys are sha256 digests of everything the entry depends on, so a changed input
invalidates exactly its own entry and nothing else:

- an image's latents: the sha256 of the file's bytes, the size it is resized to, the
  family and the model folder;
- a set's prompt: the effective caption, the trigger word, the family and the model folder,
  plus the input images' keys when the family's text encoder sees the images
  (``prompt_depends_on_inputs``, Qwen-Image-Edit).

The encoders are loaded only on the first miss, so a re-run with a warm cache does not load
the VAE or text encoder at all. Files are written atomically (safetensors, no pickle).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch
from PIL import Image

from lorastudio.dataset import ImageSet, effective_caption, image_size, load_image
from lorastudio.fileio import atomic_writer
from lorastudio.training.buckets import bucket_size, resize_to


@dataclass
class CachedSet:
    """One set, ready for training: latents and prompt tensors on the CPU."""

    name: str
    caption: str
    #: (width, height) of the target in pixels: the set's bucket.
    bucket: tuple[int, int]
    target: torch.Tensor
    inputs: list[torch.Tensor]
    prompt: dict[str, torch.Tensor]
    target_path: Path
    input_paths: list[Path]
    #: (width, height) each input was resized to.
    input_sizes: list[tuple[int, int]]
    #: Each input's latent cache key (file content, size, family, model).
    input_keys: list[str]
    #: The empty caption's encoding for this set (caption dropout), when asked for.
    empty_prompt: dict[str, torch.Tensor] | None = None


@dataclass
class CacheStats:
    latent_hits: int = 0
    latent_misses: int = 0
    prompt_hits: int = 0
    prompt_misses: int = 0


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _digest(obj: object) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, ensure_ascii=False).encode("utf-8")).hexdigest()


def latent_key(file_hash: str, size: tuple[int, int], family: str, model_dir: Path) -> str:
    return _digest({"kind": "latents", "file": file_hash, "size": list(size), "family": family,
                    "model": str(Path(model_dir).resolve())})


def prompt_key(caption: str, trigger: str, family: str, model_dir: Path, input_keys: list[str] | None) -> str:
    return _digest({"kind": "prompt", "caption": caption, "trigger": trigger, "family": family,
                    "model": str(Path(model_dir).resolve()), "inputs": input_keys})


def sample_prompt_key(caption: str, family: str, model_dir: Path, input_keys: list[str] | None) -> str:
    """A preview's prompt encoding (it may differ from the training one: negative prompts,
    true CFG), keyed like a set's prompt."""
    return _digest({"kind": "sample-prompt", "caption": caption, "family": family,
                    "model": str(Path(model_dir).resolve()), "inputs": input_keys})


def save_tensors(path: Path, tensors: dict[str, torch.Tensor]) -> None:
    from safetensors.torch import save_file

    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_writer(path) as (_fh, tmp):
        save_file({k: v.detach().to("cpu").contiguous() for k, v in tensors.items()}, str(tmp))


def load_tensors(path: Path) -> dict[str, torch.Tensor] | None:
    from safetensors.torch import load_file

    try:
        return load_file(str(path))
    except FileNotFoundError:
        return None
    except Exception:  # a damaged cache file is recomputed, never trusted
        return None


class TrainingCache:
    """Builds :class:`CachedSet` objects for a list of sets, reusing what is on disk."""

    def __init__(self, root: Path, family, resolution: int, trigger: str = "", default_caption: str = "",
                 write: bool = True) -> None:
        self.root = Path(root)
        self.family = family
        self.resolution = resolution
        self.trigger = trigger
        self.default_caption = default_caption
        #: Only the main process writes cache files; the others read them afterwards.
        self.write = write
        self.stats = CacheStats()
        self._encoders_loaded = False

    # -- sizes ----------------------------------------------------------------------------

    def plan(self, image_set: ImageSet) -> tuple[tuple[int, int], list[tuple[int, int]]]:
        """(target bucket, input sizes) of a set, from image headers only."""
        assert image_set.target is not None
        tw, th = self._size_of(image_set, image_set.target)
        bucket = bucket_size(tw, th, self.resolution, self.family.size_multiple)
        inputs = [tuple(self.family.input_size(self._size_of(image_set, p), bucket, self.resolution))
                  for p in image_set.inputs]
        return bucket, inputs  # type: ignore[return-value]

    @staticmethod
    def _size_of(image_set: ImageSet, path: Path) -> tuple[int, int]:
        size = image_set.image_sizes.get(path)
        return tuple(size) if size else image_size(path)  # type: ignore[return-value]

    # -- building -------------------------------------------------------------------------

    def _ensure_encoders(self) -> None:
        if not self._encoders_loaded:
            self.family.load_encoders()
            self._encoders_loaded = True

    def _latents(self, path: Path, size: tuple[int, int]) -> tuple[torch.Tensor, str, Callable[[], object]]:
        key = latent_key(file_sha256(path), size, self.family.name, self.family.model_dir)
        file = self.root / "latents" / f"{key}.safetensors"
        cached = load_tensors(file)
        image_cache: list[object] = []

        def image():
            if not image_cache:
                image_cache.append(resize_to(load_image(path), size))
            return image_cache[0]

        if cached is not None and "latents" in cached:
            self.stats.latent_hits += 1
            return cached["latents"], key, image
        self.stats.latent_misses += 1
        self._ensure_encoders()
        with torch.no_grad():
            latents = self.family.encode_image(image()).detach().to("cpu")
        if self.write:
            save_tensors(file, {"latents": latents})
        return latents, key, image

    def build_set(self, image_set: ImageSet) -> CachedSet:
        bucket, input_sizes = self.plan(image_set)
        assert image_set.target is not None
        target, _tkey, _timg = self._latents(image_set.target, bucket)
        inputs, input_keys, input_images = [], [], []
        for path, size in zip(image_set.inputs, input_sizes):
            lat, key, img = self._latents(path, size)
            inputs.append(lat)
            input_keys.append(key)
            input_images.append(img)
        caption = effective_caption(image_set, self.trigger, self.default_caption)
        # Families validate the input count when encoding, so the images are always passed;
        # only families whose text encoder sees them key the prompt by them.
        prompt = self._encoded_prompt(caption, self.trigger, input_keys,
                                      lambda: [img() for img in input_images])
        return CachedSet(name=image_set.name, caption=caption, bucket=bucket, target=target, inputs=inputs,
                         prompt=prompt, target_path=image_set.target, input_paths=list(image_set.inputs),
                         input_sizes=list(input_sizes), input_keys=input_keys)

    def _prepare_empty_prompts(self, sets: list[CachedSet]) -> None:
        """Caption dropout's empty caption (no trigger either), encoded once, or once per set
        where the family's prompt encoding sees the input images (Qwen-Image-Edit-Plus)."""
        done: dict[tuple[str, ...] | None, dict[str, torch.Tensor]] = {}
        for s in sets:
            key = tuple(s.input_keys) if self._prompt_depends_on_inputs else None
            if key not in done:
                done[key] = self._encoded_prompt(
                    "", "", s.input_keys,
                    lambda s=s: [resize_to(load_image(p), size) for p, size in zip(s.input_paths, s.input_sizes)])
            s.empty_prompt = done[key]

    @property
    def _prompt_depends_on_inputs(self) -> bool:
        return bool(getattr(self.family, "prompt_depends_on_inputs", False))

    def _encoded_prompt(self, caption: str, trigger: str, input_keys: list[str],
                        images: Callable[[], list[Image.Image]]) -> dict[str, torch.Tensor]:
        """A caption's encoding from the prompt cache, or encoded now (the encoders load only
        on a miss; ``images`` are read only then) and kept on disk."""
        depends = self._prompt_depends_on_inputs
        key = prompt_key(caption, trigger, self.family.name, self.family.model_dir, input_keys if depends else None)
        file = self.root / "prompts" / f"{key}.safetensors"
        tensors = load_tensors(file)
        if tensors is not None:
            self.stats.prompt_hits += 1
            return tensors
        self.stats.prompt_misses += 1
        self._ensure_encoders()
        with torch.no_grad():
            encoded = self.family.encode_prompt(caption, images())
        tensors = {k: v.detach().to("cpu") for k, v in encoded.tensors.items()}
        if self.write:
            save_tensors(file, tensors)
        return tensors

    def _prepare_preview(self, cached: CachedSet) -> None:
        """The preview prompt of one set: from disk when an earlier run encoded it, else
        encoded now (the family loads its encoders only for a miss) and kept on disk."""
        images = [resize_to(load_image(p), size) for p, size in zip(cached.input_paths, cached.input_sizes)]
        depends = self._prompt_depends_on_inputs
        key = sample_prompt_key(cached.caption, self.family.name, self.family.model_dir,
                                cached.input_keys if depends else None)
        file = self.root / "prompts" / f"sample_{key}.safetensors"
        tensors = load_tensors(file)
        if tensors is not None:
            self.family.restore_sample(cached.caption, images, tensors)
            return
        tensors = self.family.prepare_sample(cached.caption, images)
        if tensors and self.write:
            save_tensors(file, tensors)

    def build(self, sets: list[ImageSet], on_progress: Callable[[int, int], None] | None = None,
              should_stop: Callable[[], bool] | None = None, previews: int = 0,
              empty_captions: bool = False) -> list[CachedSet]:
        """Cache every set; then, encoders still loaded, let the family prepare the first
        ``previews`` sets' sampling prompts (``ModelFamily.prepare_sample``) and, with
        ``empty_captions`` (caption dropout), encode the empty caption."""
        out: list[CachedSet] = []
        try:
            for i, image_set in enumerate(sets):
                if should_stop is not None and should_stop():
                    break
                out.append(self.build_set(image_set))
                if on_progress is not None:
                    on_progress(i + 1, len(sets))
            if len(out) == len(sets):
                for s in out[:previews]:
                    self._prepare_preview(s)
                if empty_captions:
                    self._prepare_empty_prompts(out)
        finally:
            if self._encoders_loaded:
                self.family.free_encoders()
                self._encoders_loaded = False
        return out
