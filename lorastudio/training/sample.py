"""``lorastudio sample``: generate with a base model plus a LoRA (the guide's "test your LoRA").

    lorastudio sample --model DIR --lora FILE --input IMG… --prompt TEXT --out OUT.png
                      [--steps N] [--seed S] [--scale W] [--size PX]

The LoRA is read with the family pipeline's own diffusers loader (``lora_state_dict`` then
``load_lora_into_transformer``), so any LoRA diffusers accepts works here, ours included,
with its ``.alpha`` tensors honoured; ``--scale`` is the strength on top of that. Without
``--lora`` the base model alone is sampled. The image comes from ``family.sample``, the
same code that makes training previews, and is written atomically as a PNG.
"""

from __future__ import annotations

import inspect
import json
import sys
from pathlib import Path

import torch

ADAPTER = "sample"


def pipeline_class(model_dir: Path):
    import diffusers

    name = json.loads((Path(model_dir) / "model_index.json").read_text(encoding="utf-8"))["_class_name"]
    return getattr(diffusers, name)


def load_lora_into(transformer: torch.nn.Module, pipe_cls, lora_path: Path, scale: float = 1.0,
                   adapter_name: str = ADAPTER) -> None:
    """Load a LoRA file into ``transformer`` the way ``pipe_cls.load_lora_weights`` would."""
    sd_params = inspect.signature(pipe_cls.lora_state_dict).parameters
    network_alphas = None
    if "return_alphas" in sd_params:
        state_dict, network_alphas = pipe_cls.lora_state_dict(str(lora_path), return_alphas=True)
    else:
        state_dict = pipe_cls.lora_state_dict(str(lora_path))
    kwargs = {"transformer": transformer, "adapter_name": adapter_name}
    if "network_alphas" in inspect.signature(pipe_cls.load_lora_into_transformer).parameters:
        kwargs["network_alphas"] = network_alphas
    pipe_cls.load_lora_into_transformer(state_dict, **kwargs)
    if not any("lora_" in n for n, _ in transformer.named_parameters()):
        raise ValueError(f"{lora_path}: no LoRA layer matched this model's transformer")
    transformer.set_adapters([adapter_name], weights=[scale])


def _size(args, images) -> tuple[int, int]:
    from lorastudio.training.buckets import bucket_size

    if images:
        w, h = images[0].size
    else:
        w, h = 1, 1
    long_side = args.size or (max(w, h) if images else 512)
    # keep the first input's aspect, long side = --size (or the input's), multiples of 16
    if w >= h:
        tw, th = long_side, long_side * h / w
    else:
        tw, th = long_side * w / h, long_side
    return bucket_size(max(1, round(tw)), max(1, round(th)), int(round((tw * th) ** 0.5)), 16)


def sample_command(args) -> int:
    from lorastudio.dataset import ImageError, load_image
    from lorastudio.fileio import atomic_write_bytes
    from lorastudio.training.families import ModelFolderError, detect_family

    model_dir = Path(args.model)
    try:
        family_cls = detect_family(model_dir, "")
    except ModelFolderError as exc:
        print(f"error: --model {model_dir}: {exc}", file=sys.stderr)
        return 2
    try:
        images = [load_image(p) for p in args.input]
    except ImageError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.lora and not Path(args.lora).is_file():
        print(f"error: --lora {args.lora}: file not found", file=sys.stderr)
        return 2
    if args.lora and Path(args.lora).suffix.lower() != ".safetensors":  # never unpickle a LoRA (.bin/.pt/.ckpt)
        print(f"error: --lora {args.lora}: LoRA Studio reads .safetensors LoRAs only; {Path(args.lora).suffix or 'this'} "
              "files are pickles, and loading a pickle can run code hidden in it", file=sys.stderr)
        return 2
    limit = family_cls.max_inputs
    if limit is not None and len(images) > limit:
        print(f"error: {family_cls.display_name} takes at most {limit} input image(s), got {len(images)}",
              file=sys.stderr)
        return 2
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dtype = torch.bfloat16 if device.type == "cuda" and torch.cuda.is_bf16_supported() else torch.float32
    family = family_cls(model_dir, device, dtype)
    size = _size(args, images)
    inputs = []
    if images:
        from lorastudio.training.buckets import resize_to

        res = int(round((size[0] * size[1]) ** 0.5))
        inputs = [resize_to(im, tuple(family.input_size(im.size, size, res))) for im in images]
    try:
        transformer = family.load_transformer()
        if args.lora:
            load_lora_into(transformer, pipeline_class(model_dir), Path(args.lora), args.scale)
        transformer.eval()
        with torch.no_grad():
            image = family.sample(transformer, inputs, args.prompt, size, args.steps, args.seed)
    except (ValueError, ModelFolderError) as exc:  # wrong input count, a LoRA for another model …
        print(f"error: {exc}", file=sys.stderr)
        return 2
    import io

    buf = io.BytesIO()
    image.save(buf, format="PNG")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(out, buf.getvalue())
    print(str(out))
    return 0
