"""``lorastudio export RUN_DIR [--step N | --best] [--out FILE] [--format …] [--raw]``: the LoRA
of any kept checkpoint, as a file like the one the run writes at its end.

RUN_DIR is a run folder (``OUTPUT/NAME.run``); its ``config.toml`` (``run_folder.CONFIG``,
written when the run starts) says which model, output name and format the run had. The file
goes through :class:`run_lora.RunLora`, the trainer's own writer: same header (with the
checkpoint's step), same key format, same atomic write. Default: the latest checkpoint;
``--best`` the one whose manifest says ``"best": true`` (lowest validation loss). Default
output ``OUTPUT/NAME.step000020.safetensors`` (``.raw`` before ``.safetensors`` with ``--raw``),
beside the run's other files.

EMA (``train.ema_decay``): a checkpoint keeps the raw weights (``lora.safetensors``, peft
names) and the averaged ones (``ema.safetensors``, one tensor per trainable parameter in the
order the trainer created them). Like the run's ``NAME.safetensors``, the export holds the
average; ``--raw`` the raw weights. The average is put back under peft's names by building
the transformer's layout on PyTorch's ``meta`` device (no weights read, so a 12B model costs
nothing), adding the same adapter with ``lora.add_lora`` and letting peft name it.

Bad input (not a run folder, no such checkpoint, a format the adapter cannot be written in)
ends in one ``error:`` line that says what to do, exit status 2; never a traceback.
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch

from lorastudio import catalog, run_folder
from lorastudio.config import Config, ConfigError, load_config
from lorastudio.config_rules import check_adapter_format
from lorastudio.run_folder import Checkpoint


class ExportError(ValueError):
    """Bad input to ``export``/``grid`` (the message names the folder or flag and what to do)."""


def load_run_config(run_dir: Path) -> Config:
    """The config the run in ``run_dir`` was started with; ExportError when it is not a run folder."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise ExportError(f"{run_dir}: folder not found (give a run folder, OUTPUT/NAME.run)")
    path = run_folder.config_path(run_dir)
    if not path.is_file():
        if run_folder.checkpoint_dir(run_dir).is_dir():
            raise ExportError(f"{run_dir}: this run folder has no {run_folder.CONFIG} (it was trained by an older "
                              "LoRA Studio); resume the run once with this version, which writes it")
        raise ExportError(f"{run_dir}: not a run folder (a run folder is OUTPUT/NAME.run, with "
                          f"{run_folder.CONFIG} and {run_folder.CHECKPOINTS}/ inside)")
    try:
        return load_config(path, check_paths=False)
    except ConfigError as exc:
        raise ExportError(f"{path}: {exc}") from None


def kept_steps(run_dir: Path) -> str:
    steps = [str(c.step) for c in run_folder.list_checkpoints(run_dir)]
    return ", ".join(steps) if steps else "none"


def choose_checkpoint(run_dir: Path, step: int | None = None, best: bool = False) -> Checkpoint:
    """The checkpoint ``--step``/``--best`` name (default: the latest); ExportError naming the kept steps."""
    if not run_folder.list_checkpoints(run_dir):
        raise ExportError(f"{run_dir}: no complete checkpoint is kept (train with train.checkpoint_every, or let "
                          "the run reach its end)")
    if best:
        cp = run_folder.best_checkpoint(run_dir)
        if cp is None:
            raise ExportError(f"{run_dir}: no checkpoint is marked best (validation did not run: hold sets out with "
                              f"dataset.validation); kept checkpoints: steps {kept_steps(run_dir)}")
        return cp
    if step is not None:
        cp = run_folder.checkpoint_at(run_dir, step)
        if cp is None:
            raise ExportError(f"--step {step}: no checkpoint is kept at that step in {run_dir}; kept checkpoints: "
                              f"steps {kept_steps(run_dir)}")
        return cp
    cp = run_folder.latest_checkpoint(run_dir)
    assert cp is not None
    return cp


def resolve_export_format(config: Config, family: str, fmt: str | None) -> str:
    """``--format`` (default: the run's ``output.format``) resolved for the family; ExportError
    when the adapter cannot be written so in full (``config_rules.check_adapter_format``)."""
    chosen = catalog.resolve_format(fmt or config.output.format, family)
    try:
        check_adapter_format(config.train.adapter, chosen, family)
    except ConfigError as exc:
        raise ExportError(f"--format {fmt or config.output.format}: {exc}") from None
    return chosen


def family_class(config: Config, family: str):
    """The family of the run's model folder (needed only for EMA and ComfyUI DoRA exports)."""
    from lorastudio.training.families import ModelFolderError, detect_family

    try:
        return detect_family(config.model.path, config.model.family or family)
    except ModelFolderError as exc:
        raise ExportError(f"model.path: {exc} (the run's base model is needed to write this checkpoint's "
                          "weights; put it back where the run found it)") from None


def adapter_skeleton(config: Config, family_cls) -> tuple[torch.nn.Module, list[torch.nn.Parameter]]:
    """The transformer's layout on the ``meta`` device with the run's adapter added, and the
    adapter's parameters in the trainer's order (what ``LoraEMA`` and ``ema.safetensors`` index)."""
    from accelerate import init_empty_weights

    from lorastudio.training.lora import add_lora

    t = config.train
    cls = family_cls.transformer_class()
    with init_empty_weights():
        model = cls.from_config(cls.load_config(str(config.model.path), subfolder="transformer", local_files_only=True))
    params = add_lora(model, t.rank, t.alpha or float(t.rank), family_cls.lora_target_modules, t.adapter,
                      t.lokr_factor)
    return model, params


def ema_peft_state(cp: Checkpoint, config: Config, family_cls) -> dict[str, torch.Tensor]:
    """The checkpoint's EMA weights as peft's state dict (the names ``lora.safetensors`` has)."""
    from lorastudio.training.checkpoint import load_extra
    from lorastudio.training.lora import peft_state_dict

    model, params = adapter_skeleton(config, family_cls)
    shadow = load_extra(cp, "ema")
    names = {id(p): n for n, p in model.named_parameters()}
    if len(shadow) != len(params):
        raise ExportError(f"{cp.path}: its EMA weights ({len(shadow)} tensors) do not fit the run's adapter "
                          f"({len(params)} parameters); was the model folder replaced?")
    model.load_state_dict({names[id(p)]: shadow[f"ema.{i}"] for i, p in enumerate(params)}, strict=False, assign=True)
    return peft_state_dict(model)


def checkpoint_weights(cp: Checkpoint, config: Config, raw: bool, family_cls=None) -> tuple[dict[str, torch.Tensor], str]:
    """(peft state dict, ``raw``/``ema``): the weights the run's LoRA file holds at this
    checkpoint (the EMA average when the run used one), or the raw ones with ``raw``."""
    from safetensors.torch import load_file

    if cp.manifest.get("ema_decay") and not raw:
        return ema_peft_state(cp, config, family_cls or family_class(config, cp.manifest["family"])), "ema"
    return load_file(str(cp.path / "lora.safetensors")), "raw"


def export_checkpoint(run_dir: Path, step: int | None = None, best: bool = False, out: Path | None = None,
                      fmt: str | None = None, raw: bool = False) -> tuple[Path, list[str]]:
    """Write the LoRA of a kept checkpoint; returns (the file, notes for the user)."""
    from lorastudio.training.run_lora import RunLora

    run_dir = Path(run_dir)
    config = load_run_config(run_dir)
    cp = choose_checkpoint(run_dir, step, best)
    family = cp.manifest.get("family") or config.model.family
    writer = RunLora.from_manifest(config, cp.manifest, resolve_export_format(config, family, fmt))
    notes = []
    if raw and not writer.ema:
        notes.append("the run did not average its weights (train.ema_decay = 0): --raw writes the same weights "
                     "as without it")
    family_cls = family_class(config, family) if (writer.ema and not raw) or writer.needs_base_weights() else None
    state, weights = checkpoint_weights(cp, config, raw, family_cls)
    transformer = None
    if writer.needs_base_weights():  # a ComfyUI DoRA stores its scale against the base weights' row norms
        transformer = family_cls(config.model.path, torch.device("cpu"), torch.float32).load_transformer()
    suffix = ".raw" if raw and writer.ema else ""
    path = Path(out) if out else run_dir.parent / f"{config.output.name}.{run_folder.step_name(cp.step)}{suffix}.safetensors"
    if path.suffix.lower() != ".safetensors":
        raise ExportError(f"--out {path}: a LoRA file must end in .safetensors")
    writer.write(path, state, cp.step, weights, transformer)
    return path, notes


def export_command(args) -> int:
    try:
        path, notes = export_checkpoint(Path(args.run_dir), step=args.step, best=args.best,
                                        out=Path(args.out) if args.out else None, fmt=args.format, raw=args.raw)
    except (ExportError, FileNotFoundError) as exc:  # FileNotFoundError: a checkpoint saved without its EMA
        print(f"error: {exc}", file=sys.stderr)
        return 2
    for note in notes:
        print(f"note: {note}", file=sys.stderr)
    print(str(path))
    return 0
