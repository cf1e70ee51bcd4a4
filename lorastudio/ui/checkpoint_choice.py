"""Which LoRA the Test tab tries: the final one, the best one, or any kept checkpoint.

The final and best LoRA files can be sampled as they are; a checkpoint holds the LoRA in
training form, so ``lorastudio export RUN_DIR --step N`` writes it as a LoRA file first (same
format and metadata as the final file). What is kept is read from the run folder through
``run_folder`` (a checkpoint counts only once its manifest is complete). No Qt here.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from lorastudio import protocol, run_folder


@dataclass(frozen=True)
class LoraChoice:
    label: str
    #: A LoRA file to sample with as it is (final, best), or None for a checkpoint to export.
    lora: Path | None = None
    #: The kept checkpoint's step (exported before sampling).
    step: int | None = None


def lora_choices(run_dir: Path | None, final: Path | None, best: Path | None) -> list[LoraChoice]:
    """"final", "best (step M)" when those files exist, then every kept checkpoint, newest first."""
    checkpoints = run_folder.list_checkpoints(run_dir) if run_dir else []
    choices = []
    if final is not None and final.is_file():
        choices.append(LoraChoice(f"final ({final.name})", lora=final))
    if best is not None and best.is_file():
        cp = run_folder.best_checkpoint(run_dir) if run_dir else None
        choices.append(LoraChoice(f"best (step {cp.step:,})" if cp is not None else "best", lora=best))
    for cp in reversed(checkpoints):
        loss = cp.manifest.get("validation_loss")
        note = f" · held-out loss {loss:.4f}" if isinstance(loss, (int, float)) else ""
        choices.append(LoraChoice(f"step {cp.step:,}{note}", step=cp.step))
    return choices


def exported_path(run_dir: Path, step: int) -> Path:
    """Where the Test tab exports the checkpoint of ``step`` to (replaced on each export)."""
    return run_folder.tests_dir(run_dir) / f"{run_folder.step_name(step)}.safetensors"


def export_command(run_dir: Path, step: int, out: Path) -> list[str]:
    """``lorastudio export RUN_DIR --step N --out FILE`` as a child process's argv."""
    return protocol.lorastudio_command_line("export", str(run_dir), "--step", str(step), "--out", str(out))


def grid_command(run_dir: Path, sets: list[str], steps: list[int], best: bool, out: Path) -> list[str]:
    """``lorastudio grid RUN_DIR --sets … --steps … [--best] --out PNG --jsonl``: events on stdout."""
    args = ["grid", str(run_dir), "--sets", *sets]
    if steps:
        args += ["--steps", *(str(s) for s in steps)]
    if best:
        args.append("--best")
    return protocol.lorastudio_command_line(*args, "--out", str(out), "--jsonl")
