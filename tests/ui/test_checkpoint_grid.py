"""Issue 14 in the Test tab: pick any kept checkpoint (exported first), and the checkpoint grid
as a child process with progress, cancel and the saved PNG (a stand-in that speaks the
`lorastudio grid --jsonl` contract: tests/ui/fake_grid.py)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from lorastudio import run_folder
from lorastudio.cli import build_parser
from lorastudio.config import OutputConfig
from lorastudio.dataset import scan_dataset
from lorastudio.ui import checkpoint_choice, compare_page
from lorastudio.ui.checkpoint_choice import export_command, grid_command, lora_choices
from lorastudio.ui.compare_page import ComparePage
from lorastudio.ui.grid_panel import GridPanel
from lorastudio.ui.thumbnails import ThumbnailLoader

from .conftest import make_dataset
from .test_compare_page import FAKE_SAMPLER

FAKE_GRID = Path(__file__).with_name("fake_grid.py")


def make_run(tmp_path: Path, steps=(10, 20, 30), best: int | None = 20, losses=None) -> tuple[Path, Path, Path]:
    """A run folder as the trainer leaves it: kept checkpoints (manifest last), the final and best LoRA."""
    output = OutputConfig(dir=tmp_path / "output", name="demo")
    run_dir = output.run_dir
    for step in steps:
        folder = run_folder.checkpoint_path(run_dir, step)
        folder.mkdir(parents=True)
        (folder / "lora.safetensors").write_bytes(b"lora")
        loss = (losses or {}).get(step, 0.5 - step / 100)
        (folder / run_folder.MANIFEST).write_text(json.dumps(
            {"step": step, "files": ["lora.safetensors"], "validation_loss": loss, "best": step == best}))
    incomplete = run_folder.checkpoint_path(run_dir, 40)  # no manifest: not kept
    incomplete.mkdir()
    output.lora_path.write_bytes(b"final")
    if best is not None:
        output.best_lora_path.write_bytes(b"best")
    return run_dir, output.lora_path, output.best_lora_path


def test_the_checkpoint_list_reads_the_run_folder(tmp_path):
    run_dir, final, best = make_run(tmp_path)
    labels = [c.label for c in lora_choices(run_dir, final, best)]
    assert labels == ["final (demo.safetensors)", "best (step 20)", "step 30 · held-out loss 0.2000",
                      "step 20 · held-out loss 0.3000", "step 10 · held-out loss 0.4000"]
    choices = lora_choices(run_dir, final, best)
    assert (choices[0].lora, choices[1].lora, choices[2].step) == (final, best, 30)
    assert best.name == "demo.best.safetensors"
    # no validation ran: no best, no losses
    other, final2, best2 = make_run(tmp_path / "b", steps=(5,), best=None, losses={5: None})
    assert not best2.exists()
    assert [c.label for c in lora_choices(other, final2, best2)] == ["final (demo.safetensors)", "step 5"]
    assert lora_choices(None, None, None) == []


def test_export_and_grid_command_lines():
    argv = export_command(Path("/r/x.run"), 20, Path("/r/x.run/tests/step_000020.safetensors"))
    assert argv[3:] == ["export", "/r/x.run", "--step", "20", "--out", "/r/x.run/tests/step_000020.safetensors"]
    argv = grid_command(Path("/r/x.run"), ["a", "b"], [10, 20], True, Path("/g.png"))
    assert argv[3:] == ["grid", "/r/x.run", "--sets", "a", "b", "--steps", "10", "20", "--best", "--out", "/g.png",
                        "--jsonl"]
    args = build_parser().parse_args(argv[3:])  # the real commands take them
    assert args.sets == ["a", "b"] and args.steps == [10, 20] and args.best and args.jsonl
    assert args.out == "/g.png" and args.run_dir == "/r/x.run"
    args = build_parser().parse_args(export_command(Path("/r/x.run"), 20, Path("/o.safetensors"))[3:])
    assert (args.run_dir, args.step, args.out) == ("/r/x.run", 20, "/o.safetensors")


def test_a_kept_checkpoint_is_exported_before_sampling(qtbot, tmp_path, monkeypatch):
    run_dir, final, best = make_run(tmp_path)
    root = make_dataset(tmp_path / "ds", sets=1)
    calls = []

    def command_line(*args):
        calls.append(args)
        if args[0] == "export":
            return [sys.executable, str(FAKE_GRID), "normal", *args]
        return [sys.executable, "-c", FAKE_SAMPLER, *args]

    monkeypatch.setattr(checkpoint_choice.protocol, "lorastudio_command_line", command_line)
    loader = ThumbnailLoader(None)
    page = ComparePage(loader)
    qtbot.addWidget(page)
    page.configure(str(tmp_path / "model"), run_dir, True, scan_dataset(root).sets)
    page.set_lora(str(final))
    page.set_choices(lora_choices(run_dir, final, best))
    assert page.checkpoint.currentText() == "final (demo.safetensors)"
    page.set_lora(str(best))  # "Test best" from the finished banner
    assert page.checkpoint.currentText() == "best (step 20)"
    index = page.checkpoint.findText("step 10 · held-out loss 0.4000")
    page.checkpoint.setCurrentIndex(index)
    page.checkpoint.activated.emit(index)
    exported = run_dir / "tests" / "step_000010.safetensors"
    assert page.export_step == 10 and page.lora.text() == str(exported)
    monkeypatch.setattr(compare_page.protocol, "lorastudio_command_line", command_line)
    with qtbot.waitSignal(page.finished, timeout=30000) as blocker:
        page.generate()
    assert blocker.args == [True]
    assert [c[0] for c in calls] == ["export", "sample", "sample"]
    assert calls[0][1:] == (str(run_dir), "--step", "10", "--out", str(exported))
    assert exported.read_bytes() == b"exported step 10" and "--lora" in calls[2]
    assert calls[2][calls[2].index("--lora") + 1] == str(exported)
    page.lora.textEdited.emit("/elsewhere.safetensors")  # typing a path: "Other file"
    assert page.export_step is None and page.checkpoint.currentText() == "Other file (below)"
    loader.shutdown()


@pytest.fixture
def grid_panel(qtbot, tmp_path, monkeypatch):
    run_dir, _final, _best = make_run(tmp_path)
    mode = {"value": "normal"}
    calls = []

    def command_line(*args):
        calls.append(args)
        return [sys.executable, str(FAKE_GRID), mode["value"], *args]

    monkeypatch.setattr(checkpoint_choice.protocol, "lorastudio_command_line", command_line)
    panel = GridPanel(kill_timeout=1.0)
    qtbot.addWidget(panel)
    panel.configure(run_dir, ["set000", "set001", "set002", "set003", "set004"], ["set003", "set001"])
    panel.mode, panel.calls = mode, calls
    yield panel
    panel.shutdown()


def test_the_grid_lists_held_out_sets_first_and_renders(qtbot, grid_panel):
    panel = grid_panel
    labels = [panel.sets.item(i).text() for i in range(panel.sets.count())]
    assert labels[:2] == ["set003 (held out)", "set001 (held out)"] and len(labels) == 5
    assert panel.chosen_sets() == ["set003", "set001"]  # held-out sets are ticked to start with
    assert [panel.steps.item(i).text() for i in range(panel.steps.count())] == \
        ["best (step 20)", "step 10", "step 20", "step 30"]
    assert panel.chosen_steps() == ([10, 20, 30], True)
    with qtbot.waitSignal(panel.rendered, timeout=30000) as rendered:
        panel.render()
        assert panel.is_running() and not panel.render_button.isEnabled() and panel.cancel_button.isEnabled()
    png = Path(rendered.args[0])
    assert png.is_file() and png.parent == panel.run_dir / "tests"
    assert panel.calls[0][:4] == ("grid", str(panel.run_dir), "--sets", "set003")
    assert panel.progress.isHidden() and panel.render_button.isEnabled() and not panel.cancel_button.isEnabled()
    assert panel.progress.maximum() == 2 * 6 and panel.progress.value() == 12
    assert panel.status.text() == f"Saved: {png}"
    # the Test tab refreshes on every settings change: the ticks stay
    panel.sets.item(2).setCheckState(panel.sets.item(2).checkState().Checked)
    panel.configure(panel.run_dir, ["set000", "set001", "set002", "set003", "set004"], ["set003", "set001"])
    assert panel.chosen_sets() == ["set003", "set001", "set000"]


def test_the_grid_can_be_cancelled_and_is_killed_if_it_lingers(qtbot, grid_panel):
    panel = grid_panel
    panel.mode["value"] = "slow"
    with qtbot.waitSignal(panel.finished, timeout=30000) as finished:
        panel.render()
        qtbot.waitUntil(lambda: panel.progress.value() == 1, timeout=20000)
        assert panel.status.text() == "rendering cell 1 of 12"
        panel.cancel()
        assert panel.status.text() == "Cancelling…" and not panel.cancel_button.isEnabled()
    assert finished.args == [False] and panel.grid_path is None
    assert panel.status.text() == "Cancelled: no grid was written."
    assert not list((panel.run_dir / "tests").glob("*.png"))
    panel.mode["value"] = "ignore_stop"  # does not listen: ended after the grace period
    with qtbot.waitSignal(panel.finished, timeout=30000) as finished:
        panel.render()
        qtbot.waitUntil(lambda: panel.progress.value() == 1, timeout=20000)
        panel.cancel()
    assert finished.args == [False] and not panel.is_running() and panel.render_button.isEnabled()


def test_grid_failures_are_explained(qtbot, grid_panel):
    panel = grid_panel
    panel.mode["value"] = "error"
    with qtbot.waitSignal(panel.finished, timeout=30000):
        panel.render()
    assert not panel.error_bar.isHidden()
    assert "out of memory while rendering step 10" in panel.error_bar.label.text()
    for i in range(1, panel.steps.count()):  # only "best": its step, or the grid would draw every kept one
        panel.steps.item(i).setCheckState(panel.steps.item(i).checkState().Unchecked)
    with qtbot.waitSignal(panel.finished, timeout=30000):
        panel.render()
    assert panel.calls[-1][-7:] == ("set001", "--steps", "20", "--best", "--out", str(panel._out), "--jsonl")
    panel.steps.item(0).setCheckState(panel.steps.item(0).checkState().Unchecked)
    panel.render()
    assert "Tick at least one checkpoint" in panel.error_bar.label.text() and not panel.is_running()


def test_the_test_tab_shows_the_rendered_grid(qtbot, tmp_path, monkeypatch):
    run_dir, final, best = make_run(tmp_path)
    monkeypatch.setattr(checkpoint_choice.protocol, "lorastudio_command_line",
                        lambda *args: [sys.executable, str(FAKE_GRID), "normal", *args])
    loader = ThumbnailLoader(None)
    page = ComparePage(loader)
    qtbot.addWidget(page)
    page.configure("/model", run_dir, True, scan_dataset(make_dataset(tmp_path / "ds", sets=2)).sets)
    page.grid_panel.configure(run_dir, ["set000", "set001"], [])
    page.modes.setCurrentWidget(page.grid_panel)
    assert [(i.label, i.path) for i in page.strip.items()] == [("checkpoint grid", None)]
    with qtbot.waitSignal(page.grid_panel.rendered, timeout=30000) as rendered:
        page.grid_panel.render_button.click()
    assert [(i.label, str(i.path)) for i in page.strip.items()] == [("checkpoint grid", rendered.args[0])]
    page.modes.setCurrentIndex(0)  # back to base vs LoRA: its own images
    assert [i.label for i in page.strip.items()][-2:] == ["with LoRA", "training target"]
    loader.shutdown()
