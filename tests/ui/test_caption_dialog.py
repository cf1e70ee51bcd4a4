""""Draft captions…" against the real drafting worker (``lorastudio caption --jsonl --no-write``)
on a tiny random Qwen3-VL: drafts arrive beside their images, nothing is
written until Accept, an existing caption only goes with "Replace caption", Cancel stops."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from PySide6.QtCore import Qt

from lorastudio.dataset import read_caption, scan_dataset
from lorastudio.ui.caption_dialog import DraftCaptionsDialog
from lorastudio.ui.thumbnails import ThumbnailLoader

from .conftest import make_dataset

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def vl_model(tmp_path_factory) -> Path:
    """The tiny Qwen3-VL model folder, built in another process (this one stays torch-free)."""
    out = tmp_path_factory.mktemp("vl") / "Qwen3-VL-tiny"
    code = "import sys; from lorastudio.training.tiny_vl import build_tiny_qwen3_vl; build_tiny_qwen3_vl(sys.argv[1])"
    proc = subprocess.run([sys.executable, "-c", code, str(out)], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return out


@pytest.fixture
def loader(qtbot):
    loader = ThumbnailLoader()
    yield loader
    loader.shutdown()


def _dialog(qtbot, dataset_dir, loader, vl_model, selected="") -> DraftCaptionsDialog:
    dialog = DraftCaptionsDialog(scan_dataset(dataset_dir), loader, selected=selected, model=str(vl_model),
                                 max_tokens=5)
    qtbot.addWidget(dialog)
    dialog.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose, False)  # qtbot closes it at the end
    dialog.show()
    return dialog


def _run(qtbot, dialog) -> tuple[int, bool]:
    with qtbot.waitSignal(dialog.session.finished, timeout=240_000, raising=True) as blocker:
        qtbot.mouseClick(dialog.start_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: not dialog.session.is_running(), timeout=30_000)
    return tuple(blocker.args)


def test_drafts_are_written_only_on_accept(qtbot, tmp_path, loader, vl_model):
    data = make_dataset(tmp_path / "ds", sets=4, captions=1)  # set000 has a caption, set001…003 not
    dialog = _dialog(qtbot, data, loader, vl_model, selected="set000")
    assert dialog.folder is not None and "Qwen3-VL" in dialog.model_info.text()
    assert "GPU memory" in dialog.memory.text()
    assert dialog.scope_missing.isChecked() and "(3)" in dialog.scope_missing.text()
    written = []
    dialog.caption_written.connect(lambda name, text: written.append((name, text)))

    drafted, stopped = _run(qtbot, dialog)
    assert (drafted, stopped) == (3, False)
    assert set(dialog.rows) == {"set001", "set002", "set003"}
    assert sorted(p.name for p in data.glob("*.txt")) == ["set000.txt"]  # nothing written yet
    row = dialog.rows["set001"]
    assert [i.path for i in row.strip.items()] == [data / "set001_start.png", data / "set001_end.png"]
    assert row.accept_button.text() == "Accept" and "No caption yet" in row.existing.text()
    row.text.setPlainText("make it night")
    row.accept_button.click()
    assert read_caption(data / "set001.txt") == "make it night"
    assert written == [("set001", "make it night")] and not row.accept_button.isEnabled()
    dialog.rows["set003"].reject_button.click()
    assert not (data / "set003.txt").exists()

    # A caption appeared meanwhile (another program): Accept does not overwrite it; the row now
    # shows it and offers "Replace caption", and only that choice replaces it.
    (data / "set002.txt").write_text("edited elsewhere\n", encoding="utf-8")
    row = dialog.rows["set002"]
    row.text.setPlainText("replace the red with blue")
    row.accept_button.click()
    assert read_caption(data / "set002.txt") == "edited elsewhere"
    assert "changed since" in row.note.text() and "edited elsewhere" in row.existing.text()
    assert row.accept_button.text() == "Replace caption"
    row.accept_button.click()
    assert read_caption(data / "set002.txt") == "replace the red with blue"
    assert read_caption(data / "set000.txt") == "caption 0"


def test_selected_set_is_drafted_even_with_a_caption():
    """The "selected set" scope drafts that set whatever it has (the worker writes nothing)."""
    from lorastudio.ui.caption_drafts import caption_command_line

    argv = caption_command_line(Path("/d"), "/m", ["a,b"], "say it", "int8", "zkw", 7)
    tail = argv[argv.index("caption"):]
    assert tail == ["caption", "/d", "--model", "/m", "--jsonl", "--no-write", "--quantization", "int8",
                    "--max-tokens", "7", "--overwrite", "--set", "a,b", "--instruction", "say it", "--trigger", "zkw"]
    assert "--missing" in caption_command_line(Path("/d"), "/m", None, "", "none", "")


def test_cancel_stops_the_worker(qtbot, tmp_path, loader, vl_model):
    data = make_dataset(tmp_path / "ds", sets=2, captions=False)
    dialog = _dialog(qtbot, data, loader, vl_model)
    with qtbot.waitSignal(dialog.session.finished, timeout=120_000) as blocker:
        dialog.start_button.click()
        assert dialog.cancel_button.isEnabled()
        dialog.cancel_button.click()
    assert blocker.args == [0, True]
    assert "Cancelled" in dialog.status_label.text()
    qtbot.waitUntil(lambda: not dialog.session.is_running(), timeout=30_000)
    assert not dialog.rows and not list(data.glob("*.txt"))


def test_a_folder_that_cannot_draft_is_refused_before_start(qtbot, tmp_path, loader, vl_model):
    data = make_dataset(tmp_path / "ds", sets=1, captions=False)
    dialog = _dialog(qtbot, data, loader, tmp_path)
    assert dialog.folder is None and not dialog.start_button.isEnabled()
    assert "not a model folder" in dialog.model_info.text()
    # A text-to-image Qwen-Image folder: a Qwen2.5-VL text encoder but no processor/.
    t2i = tmp_path / "Qwen-Image"
    (t2i / "text_encoder").mkdir(parents=True)
    (t2i / "model_index.json").write_text('{"_class_name": "QwenImagePipeline", "text_encoder": '
                                          '["transformers", "Qwen2_5_VLForConditionalGeneration"]}', encoding="utf-8")
    (t2i / "text_encoder" / "config.json").write_text('{"model_type": "qwen2_5_vl"}', encoding="utf-8")
    dialog.model_edit.setText(str(t2i))
    assert "no processor/ folder" in dialog.model_info.text() and not dialog.start_button.isEnabled()
    dialog.model_edit.setText(str(vl_model))
    assert dialog.start_button.isEnabled()


def test_main_window_offers_it_for_the_selected_set(qtbot, tmp_path):
    from lorastudio.ui.app import create_window

    window = create_window(kill_timeout=2.0)
    qtbot.addWidget(window)
    window.show()
    root = make_dataset(tmp_path / "ds", sets=3, captions=1)
    with qtbot.waitSignal(window.dataset_loaded, timeout=15000):
        assert window.open_path(root)
    assert window.act_draft.isEnabled() and window.act_draft in window.dataset_page.grid.actions()
    window.dataset_page.select_set("set001")
    window.act_draft.trigger()
    dialog = window.draft_dialog
    assert dialog.selected == "set001" and "(2)" in dialog.scope_missing.text()
    assert dialog.folder is None and not dialog.start_button.isEnabled()  # no model chosen yet
    dialog.close()
    window.close()
