"""``lorastudio sample``: generate with a base model plus a LoRA (the guide's "test your LoRA").

    lorastudio sample --model DIR --lora FILE --input IMG… --prompt TEXT --out OUT.png
                      [--steps N] [--seed S] [--scale W] [--size PX] [--input-size RULE]

The LoRA is read with the family pipeline's own diffusers loader (``lora_state_dict`` then
``load_lora_into_transformer``), so any LoRA diffusers accepts works here, ours included,
with its ``.alpha`` tensors honoured; ``--scale`` is the strength on top of that. Our own
``comfyui``-format files (header ``lorastudio.format``) are renamed back to diffusers names
with ``formats``' mapping first, so every file LoRA Studio writes loads here in full. A file
the loader cannot take ends in one line naming the file, its format and what to do (exit
code 2), never a traceback. LoKr files and ``comfyui``-format DoRA files this app wrote
(header ``lorastudio.adapter``) load through peft directly (:func:`load_adapter_with_peft`):
diffusers' loaders for these families read neither ComfyUI's ``dora_scale`` nor a LoKr, and
every file the app writes must be testable (a ``diffusers``-format DoRA goes through
diffusers like a LoRA). Without ``--lora`` the base model alone is sampled. The image comes from ``family.sample``, the
same code that makes training previews, and is written atomically as a PNG.
"""

from __future__ import annotations

import inspect
import sys
from pathlib import Path

import torch

ADAPTER = "sample"


class LoraLoadError(ValueError):
    """A LoRA file the family's diffusers loader cannot take (the message names the file,
    its format and what to do)."""


def lora_format(tensors, metadata: dict[str, str]) -> str:
    """How to call the file's key layout in a message: ours by its header, else by its keys."""
    if metadata.get("lorastudio.format"):
        return f"LoRA Studio '{metadata['lorastudio.format']}'-format"
    if any(".lora_down." in k or k.startswith("lora_unet_") for k in tensors):
        return "kohya/ComfyUI-style (lora_unet_…, lora_down/lora_up keys)"
    if any(".lora_A." in k for k in tensors):
        return "diffusers/peft-style (lora_A/lora_B keys)"
    return "unrecognised (no lora_A/lora_B or lora_down/lora_up keys)"


def _read(lora_path: Path):
    from safetensors import safe_open

    with safe_open(str(lora_path), "pt") as f:
        return {k: f.get_tensor(k) for k in f.keys()}, dict(f.metadata() or {})


def _transformer_state(tensors, metadata, transformer: torch.nn.Module, family: str):
    """Our own ``comfyui``-format file, renamed back to the transformer's diffusers module
    names with ``formats``' own mapping (diffusers' kohya converters are not needed, and
    its FLUX.1 one only takes FLUX.1-dev's widths); None for any other file."""
    from lorastudio.training.formats import peft_state_from_comfyui

    if metadata.get("lorastudio.format") != "comfyui" or metadata.get("lorastudio.family") != family:
        return None
    widths = {n: m.out_features for n, m in transformer.named_modules() if isinstance(m, torch.nn.Linear)}
    return {f"transformer.{k}": v for k, v in peft_state_from_comfyui(tensors, widths, family).items()}


def load_lora_into(transformer: torch.nn.Module, pipe_cls, lora_path: Path, scale: float = 1.0,
                   adapter_name: str = ADAPTER, family: str = "", family_title: str = "") -> None:
    """Load a LoRA file into ``transformer`` the way ``pipe_cls.load_lora_weights`` would
    (our own ``comfyui`` files: renamed back first). Raises LoraLoadError when it cannot."""
    try:
        tensors, metadata = _read(lora_path)
    except Exception as exc:  # noqa: BLE001 - safetensors' errors are not one class
        raise LoraLoadError(f"--lora {lora_path}: not a readable .safetensors file ({exc}); "
                            "choose the .safetensors LoRA file a training run wrote") from None
    what = lora_format(tensors, metadata)
    trained_for = metadata.get("lorastudio.family")
    if trained_for and family and trained_for != family:
        raise LoraLoadError(f"--lora {lora_path}: this {what} LoRA was trained for the {trained_for!r} family, "
                            f"but the model is {family_title or family}; choose a {trained_for} base model")
    try:
        converted = _transformer_state(tensors, metadata, transformer, family)
        if converted is not None:
            pipe_cls.load_lora_into_transformer(converted, transformer=transformer, adapter_name=adapter_name,
                                                **({"network_alphas": None} if _takes_alphas(pipe_cls) else {}))
        else:
            _diffusers_load(transformer, pipe_cls, lora_path, adapter_name)
        if not any("lora_" in n for n, _ in transformer.named_parameters()):
            raise ValueError("no LoRA layer matched this model's transformer")
    except Exception as exc:  # noqa: BLE001 - diffusers' converters raise anything (AssertionError, KeyError …)
        reason = f"{type(exc).__name__}: {str(exc).splitlines()[0]}" if str(exc) else type(exc).__name__
        raise LoraLoadError(
            f"--lora {lora_path}: diffusers' {pipe_cls.__name__} loader cannot load this {what} LoRA ({reason[:200]}); "
            f"use a LoRA trained for {family_title or 'this model'} saved in the 'diffusers' format "
            "(LoRA Studio: output.format = \"diffusers\"), or load this file in ComfyUI's LoraLoader") from None
    transformer.set_adapters([adapter_name], weights=[scale])


def _takes_alphas(pipe_cls) -> bool:
    return "network_alphas" in inspect.signature(pipe_cls.load_lora_into_transformer).parameters


def _diffusers_load(transformer: torch.nn.Module, pipe_cls, lora_path: Path, adapter_name: str) -> None:
    """``lora_state_dict`` (which converts other layouts) then ``load_lora_into_transformer``."""
    network_alphas = None
    if "return_alphas" in inspect.signature(pipe_cls.lora_state_dict).parameters:
        state_dict, network_alphas = pipe_cls.lora_state_dict(str(lora_path), return_alphas=True)
    else:
        state_dict = pipe_cls.lora_state_dict(str(lora_path))
    kwargs = {"transformer": transformer, "adapter_name": adapter_name}
    if _takes_alphas(pipe_cls):
        kwargs["network_alphas"] = network_alphas
    pipe_cls.load_lora_into_transformer(state_dict, **kwargs)


def needs_peft(lora_path: Path) -> bool:
    """Whether diffusers' loader cannot take this file: a LoKr, or a DoRA in the ``comfyui``
    format (header ``lorastudio.adapter``/``format``; files without it are plain LoRAs). A file
    whose header cannot be read goes to the diffusers loader, which reports it in one line."""
    from safetensors import safe_open

    try:
        with safe_open(str(lora_path), framework="pt") as f:
            meta = f.metadata() or {}
    except Exception:  # noqa: BLE001 - any unreadable header: the loader's own message says what is wrong
        return False
    adapter = meta.get("lorastudio.adapter", "lora")
    return adapter == "lokr" or (adapter == "dora" and meta.get("lorastudio.format") != "diffusers")


def load_adapter_with_peft(transformer: torch.nn.Module, family: str, target_modules, lora_path: Path,
                           scale: float = 1.0) -> None:
    """Put a DoRA/LoKr file this app wrote on ``transformer`` with peft (see ``adapter_files``)."""
    from peft import inject_adapter_in_model, set_peft_model_state_dict

    from lorastudio.training.adapter_files import peft_state_from_file
    from lorastudio.training.lora import adapter_config, linear_targets, read_lora_file

    tensors, meta = read_lora_file(lora_path)
    try:
        adapter, fmt, rank = meta["lorastudio.adapter"], meta["lorastudio.format"], int(meta["lorastudio.rank"])
        lokr_factor = int(meta.get("lorastudio.lokr_factor", "-1"))
    except (KeyError, ValueError):
        raise ValueError(f"{lora_path}: the LoRA Studio header (lorastudio.adapter/format/rank) is missing or "
                         "damaged; train or export the file again") from None
    if meta.get("lorastudio.family") and meta["lorastudio.family"] != family:
        raise ValueError(f"{lora_path}: a {meta['lorastudio.family']} {adapter} does not fit this {family} model")
    targets = linear_targets(transformer, target_modules)
    state = peft_state_from_file(tensors, transformer, family, fmt, adapter, rank, targets)
    modules = sorted({k.rsplit(".", 2 if k.endswith(".weight") else 1)[0] for k in state})
    missing = [m for m in modules if m not in set(targets)]
    if not modules or missing:
        raise ValueError(f"{lora_path}: its layers do not match this model's transformer "
                         f"({(missing or ['no layers'])[0]}); is it for another model?")
    inject_adapter_in_model(adapter_config(adapter, rank, rank, modules, lokr_factor), transformer,
                            adapter_name=ADAPTER)
    result = set_peft_model_state_dict(transformer, state, adapter_name=ADAPTER)
    if getattr(result, "unexpected_keys", None):
        raise ValueError(f"{lora_path}: keys that fit no layer: {result.unexpected_keys[:3]}")
    for layer in transformer.modules():
        if hasattr(layer, "set_scale") and ADAPTER in getattr(layer, "scaling", {}):
            layer.set_scale(ADAPTER, scale)


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
    family.use_input_size(args.input_size)  # sized as the LoRA's run sized them (its train.input_size)
    size = _size(args, images)
    inputs = []
    if images:
        from lorastudio.training.buckets import resize_to

        res = int(round((size[0] * size[1]) ** 0.5))
        inputs = [resize_to(im, tuple(family.input_size(im.size, size, res))) for im in images]
    try:
        transformer = family.load_transformer()
        if args.lora and needs_peft(Path(args.lora)):
            load_adapter_with_peft(transformer, family.name, family.lora_target_modules, Path(args.lora), args.scale)
        elif args.lora:
            load_lora_into(transformer, family.lora_loader(), Path(args.lora), args.scale,
                           family=family_cls.name, family_title=family_cls.display_name)
        transformer.eval()
        with torch.no_grad():
            image = family.sample(transformer, inputs, args.prompt, size, args.steps, args.seed)
    except (ValueError, ModelFolderError) as exc:  # wrong input count, a LoRA that does not load (LoraLoadError) …
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
