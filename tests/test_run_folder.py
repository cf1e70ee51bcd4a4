"""The run folder's layout is one module both sides read: what the worker writes is what the
GUI finds (a resumable checkpoint, previews, the log)."""

from __future__ import annotations

import json

from lorastudio import run_folder


def test_names(tmp_path):
    assert run_folder.step_name(20) == "step_000020"
    assert run_folder.checkpoint_path(tmp_path, 20) == tmp_path / "checkpoints" / "step_000020"
    assert run_folder.sample_path(tmp_path, 20, "cat") == tmp_path / "samples" / "step_000020_cat.png"
    assert run_folder.log_path(tmp_path) == tmp_path / "log.txt"
    assert run_folder.log_path(tmp_path, 2) == tmp_path / "log.rank2.txt"
    assert run_folder.config_path(tmp_path) == tmp_path / "config.toml"
    assert run_folder.grid_path(tmp_path) == tmp_path / "grid.png"


def test_only_a_complete_checkpoint_can_be_resumed(tmp_path):
    assert not run_folder.has_checkpoint(tmp_path / "nowhere")
    folder = run_folder.checkpoint_path(tmp_path, 20)
    folder.mkdir(parents=True)
    assert not run_folder.has_checkpoint(tmp_path), "no manifest yet: an interrupted save"
    (folder / run_folder.MANIFEST).write_text(json.dumps({"step": 20, "files": ["lora.safetensors"]}))
    assert not run_folder.has_checkpoint(tmp_path), "the manifest names a file that is not there"
    (folder / "lora.safetensors").write_bytes(b"")
    assert run_folder.has_checkpoint(tmp_path)
    assert run_folder.latest_checkpoint(tmp_path).step == 20


def test_a_checkpoint_the_trainer_writes_is_the_one_the_gui_sees(tmp_path):
    import torch

    from lorastudio.training import checkpoint as ckpt

    param = torch.nn.Parameter(torch.ones(2))
    optimizer = torch.optim.AdamW([param])
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda _step: 1.0)
    param.grad = torch.ones(2)
    optimizer.step()
    path = ckpt.save_checkpoint(tmp_path, 7, {"w": param.detach()}, optimizer, scheduler, {"total": 10})
    assert path == run_folder.checkpoint_path(tmp_path, 7)
    assert run_folder.has_checkpoint(tmp_path) and run_folder.latest_checkpoint(tmp_path).path == path


def _checkpoint(run_dir, step: int, **manifest) -> None:
    folder = run_folder.checkpoint_path(run_dir, step)
    folder.mkdir(parents=True)
    (folder / run_folder.MANIFEST).write_text(json.dumps({"step": step, "files": [], **manifest}))


def test_the_best_and_a_given_steps_checkpoint(tmp_path):
    """``best_checkpoint`` is the complete checkpoint whose manifest says ``"best": true``
    (valcore's field); ``checkpoint_at`` the complete one at a step; None where there is none."""
    assert run_folder.best_checkpoint(tmp_path) is None and run_folder.checkpoint_at(tmp_path, 20) is None
    _checkpoint(tmp_path, 20, best=False, validation_loss=0.4)
    _checkpoint(tmp_path, 40, best=True, validation_loss=0.3)
    _checkpoint(tmp_path, 60, validation_loss=None)
    run_folder.checkpoint_path(tmp_path, 80).mkdir()  # incomplete (no manifest): never chosen
    assert run_folder.best_checkpoint(tmp_path).step == 40
    assert run_folder.checkpoint_at(tmp_path, 60).step == 60
    assert run_folder.checkpoint_at(tmp_path, 80) is None and run_folder.checkpoint_at(tmp_path, 30) is None
    (run_folder.checkpoint_path(tmp_path, 40) / run_folder.MANIFEST).write_text(json.dumps({"step": 40, "best": False}))
    assert run_folder.best_checkpoint(tmp_path) is None, "validation never ran: no best"
