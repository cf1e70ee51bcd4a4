"""The app session without a window: opening, the dataset snapshot, the run state, and what
the toolbar may do — plain Python, no Qt, no torch."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from PIL import Image

from lorastudio.dataset import scan_dataset
from lorastudio.project import Project
from lorastudio.run_folder import has_checkpoint
from lorastudio.session import Actions, CannotOpen, Session, dataset_summary, folder_snapshot, project_for_path

ROOT = Path(__file__).resolve().parents[1]


def make_pairs(root: Path, sets: int = 2, targets: int | None = None) -> Path:
    """``setN_start.png`` / ``setN_end.png`` pairs; only the first ``targets`` sets have an end image."""
    root.mkdir(parents=True, exist_ok=True)
    for i in range(sets):
        Image.new("RGB", (32, 32), (200, 0, 0)).save(root / f"set{i}_start.png")
        if targets is None or i < targets:
            Image.new("RGB", (32, 32), (0, 0, 200)).save(root / f"set{i}_end.png")
    return root


def model_folder(tmp_path: Path) -> Path:
    m = tmp_path / "model"
    m.mkdir(exist_ok=True)
    (m / "model_index.json").write_text(json.dumps({"_class_name": "FluxKontextPipeline"}), encoding="utf-8")
    return m


@pytest.fixture(autouse=True)
def _user_data(tmp_path, monkeypatch):
    monkeypatch.setenv("LORASTUDIO_DATA_DIR", str(tmp_path / "user-data"))


class Recorder:
    """Connects to every observer list of a session and keeps what each was called with."""

    def __init__(self, session: Session) -> None:
        self.calls: dict[str, list] = {}
        for name in ("project_changed", "dataset_changed", "run_state_changed", "actions_changed"):
            self.calls[name] = []
            getattr(session, name).connect(self.calls[name].append)

    @property
    def last_actions(self) -> Actions:
        return self.calls["actions_changed"][-1]


def opened(tmp_path: Path, sets: int = 2, targets: int | None = None) -> tuple[Session, Recorder]:
    session = Session()
    recorder = Recorder(session)
    folder = make_pairs(tmp_path / "ds", sets, targets)
    session.open(project_for_path(folder, model_path=str(model_folder(tmp_path))))
    return session, recorder


def test_nothing_is_possible_without_a_project():
    actions = Session().actions()
    assert not (actions.has_project or actions.can_train or actions.can_resume or actions.can_stop
                or actions.can_close or actions.can_bulk_edit)


def test_opening_a_folder_tells_the_observers_and_allows_training_once_the_model_is_usable(tmp_path):
    session, rec = opened(tmp_path)
    assert rec.calls["project_changed"] == [session.project]
    assert session.project.dataset_dir == (tmp_path / "ds").resolve()
    assert rec.last_actions.has_project and rec.last_actions.can_close
    assert not rec.last_actions.can_train, "the form has not said yet that the model folder is usable"
    assert not rec.last_actions.can_bulk_edit, "no dataset read yet"
    session.set_settings(None, model_supported=True)
    assert rec.last_actions.can_train and not rec.last_actions.can_resume


def test_cannot_open_says_why(tmp_path):
    with pytest.raises(CannotOpen, match="Not found") as missing:
        project_for_path(tmp_path / "nope")
    assert missing.value.missing
    bad = tmp_path / "bad.toml"
    bad.write_text("[train]\nsteps = 'many'\n", encoding="utf-8")
    with pytest.raises(CannotOpen, match="Cannot open bad.toml") as broken:
        project_for_path(bad)
    assert not broken.value.missing


def test_the_dataset_snapshot_decides_rescans_and_ignores_our_own_caption_writes(tmp_path):
    session, rec = opened(tmp_path)
    root = session.project.dataset_dir
    snapshot = folder_snapshot(root)
    dataset = scan_dataset(root)
    session.set_dataset(dataset, snapshot)
    assert rec.calls["dataset_changed"] == [dataset] and rec.last_actions.can_bulk_edit
    assert not session.folder_changed(folder_snapshot(root))
    caption = root / "set0.txt"
    caption.write_text("a caption", encoding="utf-8")
    assert session.folder_changed(folder_snapshot(root)), "a new file is a change"
    session.note_written(caption)
    assert not session.folder_changed(folder_snapshot(root)), "our own save is not"
    (root / "set9_start.png").write_bytes((root / "set0_start.png").read_bytes())
    assert session.folder_changed(folder_snapshot(root))


def test_dataset_summary_counts_sets_problems_and_trainable_sets(tmp_path):
    root = make_pairs(tmp_path / "ds", sets=3, targets=2)
    assert dataset_summary(scan_dataset(root, check_images=False), final=False) == \
        "3 sets · paired (before → after) · checking images…"
    final = dataset_summary(scan_dataset(root), final=True)
    assert final.startswith("3 sets · paired (before → after) · 1 error") and final.endswith("2 trainable")


def test_training_is_blocked_when_no_set_can_be_trained(tmp_path):
    session, _rec = opened(tmp_path, sets=1, targets=0)
    assert session.training_blocker() is None, "nothing read yet: the worker's own check decides"
    session.set_dataset(scan_dataset(session.project.dataset_dir), {})
    assert session.training_blocker() == "No set can be trained yet."


def test_run_states_decide_train_stop_close_and_opening(tmp_path):
    session, rec = opened(tmp_path)
    session.set_settings(None, model_supported=True)
    session.set_run_state("starting")
    assert rec.calls["run_state_changed"] == ["starting"]
    a = rec.last_actions
    assert a.can_stop and not a.can_train and not a.can_close
    session.set_run_state("running")
    session.set_run_state("stopping")
    assert not rec.last_actions.can_stop, "already stopping"
    with pytest.raises(CannotOpen, match="Stop the training"):
        session.open(Project.for_folder(session.project.dataset_dir))
    with pytest.raises(CannotOpen, match="Stop the training"):
        session.close()
    session.set_run_state("idle")
    assert rec.calls["run_state_changed"] == ["starting", "running", "stopping", "idle"]
    assert rec.last_actions.can_train and rec.last_actions.can_close
    with pytest.raises(ValueError):
        session.set_run_state("paused")
    session.close()
    assert rec.calls["project_changed"][-1] is None and not rec.last_actions.has_project


def test_resume_needs_a_complete_checkpoint_in_the_run_folder_of_the_current_settings(tmp_path):
    session, rec = opened(tmp_path)
    session.set_settings(None, model_supported=True)
    run_dir = session.run_dir
    assert run_dir == session.project.config.output.run_dir
    half = run_dir / "checkpoints" / "step_000020"
    half.mkdir(parents=True)
    session.refresh()
    assert not has_checkpoint(run_dir) and not rec.last_actions.can_resume, "no manifest yet: an interrupted save"
    (half / "manifest.json").write_text('{"step": 20, "files": []}', encoding="utf-8")
    session.refresh()
    assert rec.last_actions.resumable and rec.last_actions.can_resume
    session.set_run_state("running")
    assert not rec.last_actions.resumable, "nothing to resume while a run goes on"
    session.set_run_state("idle")
    # Settings naming another output folder: that folder's checkpoints count.
    config = session.project.config
    config.output.dir = tmp_path / "elsewhere"
    session.set_settings(config, model_supported=True)
    assert session.run_dir != run_dir and not rec.last_actions.can_resume


def test_session_imports_neither_qt_nor_torch():
    """In a fresh interpreter where importing PySide6 or torch fails."""
    script = textwrap.dedent("""
        import sys

        class Refuse:
            def find_spec(self, name, path=None, target=None):
                if name.split(".")[0] in ("PySide6", "shiboken6", "torch", "diffusers", "transformers"):
                    raise ImportError("the session must not import " + name)

        sys.meta_path.insert(0, Refuse())
        import lorastudio.session, lorastudio.project, lorastudio.user_folders
        print("CLEAN")
    """)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert proc.returncode == 0 and "CLEAN" in proc.stdout, proc.stderr
