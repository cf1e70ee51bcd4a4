"""The main window: welcome page, opening folders, the watcher, problems, shortcuts,
saving the project, and a training run against a fake worker."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from PySide6.QtCore import QMimeData, QPoint, Qt, QUrl
from PySide6.QtGui import QDropEvent
from PySide6.QtWidgets import QApplication

from lorastudio.config import load_config
from lorastudio.ui.app import create_window
from lorastudio.ui.settings import Settings

from .conftest import FAKE_WORKER, make_dataset, write_image


@pytest.fixture
def window(qtbot):
    w = create_window(kill_timeout=2.0)
    w.ask = lambda *a: "keep" if "keep" in a[2] else "stop"
    qtbot.addWidget(w)
    w.resize(1280, 800)
    w.show()
    yield w
    w.close()


def model_folder(tmp_path: Path, class_name: str = "FluxKontextPipeline") -> Path:
    m = tmp_path / "model"
    m.mkdir(exist_ok=True)
    (m / "model_index.json").write_text(json.dumps({"_class_name": class_name}), encoding="utf-8")
    return m


def open_and_wait(qtbot, window, path) -> None:
    with qtbot.waitSignal(window.dataset_loaded, timeout=15000):
        assert window.open_path(path)


def test_starts_on_the_welcome_page(window):
    assert window.windowTitle() == "LoRA Studio"
    assert window.stack.currentWidget() is window.welcome
    assert window.welcome.demo_button.isEnabled()
    assert not window.act_train.isEnabled() and not window.act_stop.isEnabled()


def test_open_folder_shows_the_grid_and_remembers_it(qtbot, window, tmp_path):
    root = make_dataset(tmp_path / "ds", sets=5, captions=3, missing_end=(4,))
    open_and_wait(qtbot, window, root)
    assert window.stack.currentIndex() == 1
    assert window.dataset_page.model.rowCount() == 5
    assert window.dataset_page.current_name() == "set000"
    assert window.editor.text() == "caption 0"
    assert "LoRA Studio" in window.windowTitle() and "ds" in window.windowTitle()
    assert "5 sets" in window.dataset_status.text()
    assert str(root.resolve()) in Settings().recent()
    # Problems panel: clicking a problem selects its set.
    panel = window.dataset_page.problems_panel
    item = next(panel.tree.topLevelItem(i) for i in range(panel.tree.topLevelItemCount())
                if panel.tree.topLevelItem(i).data(0, Qt.ItemDataRole.UserRole) == "set004")
    panel.tree.itemClicked.emit(item, 0)
    assert window.dataset_page.current_name() == "set004"
    assert window.dataset_page.detail.name.text() == "set004"


def test_filter_and_navigation_shortcuts(qtbot, window, tmp_path):
    root = make_dataset(tmp_path / "ds", sets=4, captions=2)
    open_and_wait(qtbot, window, root)
    page = window.dataset_page
    window.act_next.trigger()
    assert page.current_name() == "set001"
    qtbot.keyClick(page.grid, Qt.Key.Key_Right, Qt.KeyboardModifier.AltModifier)
    assert page.current_name() == "set002"
    window.act_prev.trigger()
    assert page.current_name() == "set001"
    assert {s.toString() for s in window.act_next.shortcuts()} == {"PgDown", "Alt+Right"}
    assert {s.toString() for s in window.act_stop.shortcuts()} == {"Ctrl+.", "Esc"}
    page.set_filter("missing_caption")
    assert page.proxy.rowCount() == 2
    assert page.count_label.text() == "2 of 4 sets"


def test_external_changes_are_picked_up_keeping_the_selection(qtbot, window, tmp_path):
    root = make_dataset(tmp_path / "ds", sets=3)
    open_and_wait(qtbot, window, root)
    window.dataset_page.select_set("set001")
    write_image(root / "new_start.png")
    write_image(root / "new_end.png")
    qtbot.waitUntil(lambda: window.dataset_page.model.row_of("new") >= 0, timeout=10000)
    assert window.dataset_page.current_name() == "set001"
    (root / "set002_end.png").rename(root / "set002_done.png")
    qtbot.waitUntil(lambda: window.dataset_page.model.entry(window.dataset_page.model.row_of("set002"))
                    .image_set.target is None, timeout=10000)
    assert window.dataset_page.current_name() == "set001"


def test_drop_a_folder_to_open_it(qtbot, window, tmp_path):
    root = make_dataset(tmp_path / "dropped", sets=2)
    mime = QMimeData()
    mime.setUrls([QUrl.fromLocalFile(str(root))])
    event = QDropEvent(QPoint(10, 10), Qt.DropAction.CopyAction, mime, Qt.MouseButton.LeftButton,
                       Qt.KeyboardModifier.NoModifier)
    with qtbot.waitSignal(window.dataset_loaded, timeout=15000):
        window.dropEvent(event)
    assert window.project.dataset_dir == root.resolve()


def test_model_family_is_shown(qtbot, window, tmp_path):
    root = make_dataset(tmp_path / "ds", sets=2)
    open_and_wait(qtbot, window, root)
    form = window.form
    assert not window.act_train.isEnabled()
    form.model.set_text(str(model_folder(tmp_path, "QwenImageEditPlusPipeline")))
    assert "Qwen-Image-Edit-Plus" in form.family.text()
    assert window.act_train.isEnabled()
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "model_index.json").write_text(json.dumps({"_class_name": "StableDiffusionXLPipeline"}))
    form.model.set_text(str(bad))
    assert "Unsupported model" in form.family.text()
    assert not window.act_train.isEnabled()
    form.model.set_text(str(model_folder(tmp_path, "FluxPipeline")))
    assert "text-to-image model" in form.family.text()  # paired dataset + t2i model: a note


def test_defaults_tooltips_and_saving_the_project(qtbot, window, tmp_path):
    root = make_dataset(tmp_path / "ds", sets=2)
    open_and_wait(qtbot, window, root)
    form = window.form
    assert form.steps.value() == 1000
    assert form.lr.currentText() == "1e-4"
    assert "how many times you blow" in form.steps.toolTip()
    assert "how hard you blow" in form.lr.toolTip()
    assert "1e-4 to 5e-4" in form.lr.toolTip()
    model = model_folder(tmp_path)
    form.model.set_text(str(model))
    form.steps.setValue(1500)
    form.lr.setEditText("3e-4")
    form.rank.setEditText("32")
    form.trigger.setText("zkw")
    form.output_name.setText("mine")
    assert window.isWindowModified()
    assert window.save_project()
    assert not window.isWindowModified()
    config = load_config(window.project.path)
    assert config.train.steps == 1500 and config.train.learning_rate == pytest.approx(3e-4)
    assert config.train.rank == 32 and config.dataset.trigger == "zkw" and config.output.name == "mine"
    assert config.model.path == model.resolve() and config.dataset.path == root.resolve()
    form.lr.setEditText("2")
    assert form.lr_note.isVisible() or not form.error.isHidden()
    assert not window.save_project()  # invalid: not saved, the message says why
    assert "learning_rate" in form.error.text()


def test_training_with_a_fake_worker(qtbot, window, tmp_path, monkeypatch):
    """The whole run panel against a stand-in worker: progress, samples, done, then a failure."""
    from lorastudio.ui import runner as runner_module

    mode = {"value": "normal"}
    monkeypatch.setattr(runner_module.protocol, "worker_command_line",
                        lambda config, resume=False: [sys.executable, str(FAKE_WORKER), mode["value"], "40"])
    root = make_dataset(tmp_path / "ds", sets=2)
    open_and_wait(qtbot, window, root)
    window.form.model.set_text(str(model_folder(tmp_path)))
    rp = window.run_panel
    with qtbot.waitSignal(window.runner.finished, timeout=20000):
        assert window.start_training()
        assert window.tabs.currentWidget() is window.training_page
        assert not window.act_train.isEnabled()
    assert rp.progress.value() == 40 and rp.progress.maximum() == 40
    assert "Step 40 / 40" == rp.step_label.text()
    assert len(rp.chart.losses) == 40
    assert len(rp.gallery.samples) == 1 and rp.gallery.samples[0].set_name == "set000"
    assert rp.gallery.samples[0].inputs == tuple(window.dataset.set_by_name("set000").inputs)
    assert rp.done_bar.isVisible() and "fake.safetensors" in rp.done_bar.label.text()
    rp.copy_path()
    assert QApplication.clipboard().text() == "fake.safetensors"
    assert window.compare_page.lora.text() == "fake.safetensors"
    assert window.project.path is not None and window.project.path.is_file()
    assert window.act_train.isEnabled()

    mode["value"] = "crash"
    with qtbot.waitSignal(window.runner.failed, timeout=20000):
        window.act_train.trigger()
    assert rp.error_bar.isVisible() and "exited with code 3" in rp.error_bar.label.text()
    assert "fake crash" in rp.log_view.toPlainText()
    assert window.act_train.isEnabled()  # the app keeps working


def test_stop_from_the_window(qtbot, window, tmp_path, monkeypatch):
    from lorastudio.ui import runner as runner_module

    monkeypatch.setattr(runner_module.protocol, "worker_command_line",
                        lambda config, resume=False: [sys.executable, str(FAKE_WORKER), "normal", "100000"])
    root = make_dataset(tmp_path / "ds", sets=2)
    open_and_wait(qtbot, window, root)
    window.form.model.set_text(str(model_folder(tmp_path)))
    window.act_train.trigger()
    qtbot.waitUntil(lambda: window.run_panel.progress.value() >= 3, timeout=20000)
    assert window.act_stop.isEnabled()
    assert not window.form.steps.isEnabled()  # settings are locked while training
    with qtbot.waitSignal(window.runner.finished, timeout=10000) as blocker:
        window.act_stop.trigger()
        assert "Stopping" in window.run_panel.phase.text()
    assert blocker.args[0]["stopped"] is True
    assert "Stopped" in window.run_panel.done_bar.label.text()


def test_closing_while_training_stops_the_worker(qtbot, tmp_path, monkeypatch):
    from lorastudio.ui import runner as runner_module

    monkeypatch.setattr(runner_module.protocol, "worker_command_line",
                        lambda config, resume=False: [sys.executable, str(FAKE_WORKER), "ignore_stop"])
    w = create_window(kill_timeout=0.5)
    asked = []
    w.ask = lambda *a: asked.append(a[0]) or "stop"
    qtbot.addWidget(w)
    w.show()
    root = make_dataset(tmp_path / "ds", sets=2)
    open_and_wait(qtbot, w, root)
    w.form.model.set_text(str(model_folder(tmp_path)))
    w.act_train.trigger()
    qtbot.waitUntil(lambda: w.runner.pid is not None, timeout=10000)
    w.close()
    assert asked == ["Training is running"]
    assert not w.runner.is_running()


def test_demo_is_made_on_first_use_with_a_busy_indicator(qtbot, window, tmp_path, monkeypatch):
    """The welcome page's demo button runs `lorastudio demo DIR` (here a stand-in) and opens it."""
    from lorastudio.ui import welcome

    script = (
        "import sys, pathlib, json\n"
        "out = pathlib.Path(sys.argv[-1]); ds = out / 'dataset'; ds.mkdir(parents=True)\n"
        "from PIL import Image\n"
        "for i in range(3):\n"
        "    Image.new('RGB', (32, 32), (i * 60, 0, 0)).save(ds / f'p{i}_start.png')\n"
        "    Image.new('RGB', (32, 32), (0, 0, i * 60)).save(ds / f'p{i}_end.png')\n"
        "m = out / 'model'; m.mkdir(); (m / 'model_index.json').write_text(json.dumps({'_class_name': "
        "'FluxKontextPipeline'}))\n"
        "(out / 'project.toml').write_text('[model]\\npath = \"model\"\\n[dataset]\\npath = \"dataset\"\\n')\n"
    )
    calls = []

    def command_line(*args):
        calls.append(args)
        return [sys.executable, "-c", script, args[-1]]

    monkeypatch.setattr(welcome.protocol, "lorastudio_command_line", command_line)
    with qtbot.waitSignal(window.dataset_loaded, timeout=30000):
        window.welcome.demo_button.click()
        assert window.welcome.busy.isVisible()
        assert not window.welcome.demo_button.isEnabled()
    assert calls and calls[0][0] == "demo"
    assert window.project.path.name == "project.toml"
    assert window.dataset_page.model.rowCount() == 3
    assert window.form.model_info.supported
    # Second use: it exists, no new process.
    window.close_project()
    with qtbot.waitSignal(window.dataset_loaded, timeout=30000):
        window.open_demo()
    assert len(calls) == 1


def test_demo_failure_is_shown_and_the_app_keeps_working(qtbot, window, monkeypatch):
    from lorastudio.ui import welcome

    monkeypatch.setattr(welcome.protocol, "lorastudio_command_line",
                        lambda *a: [sys.executable, "-c", "import sys; print('no model for you'); sys.exit(4)"])
    with qtbot.waitSignal(window.demo.failed, timeout=30000):
        window.open_demo()
    assert window.welcome.demo_error.isVisible()
    assert "no model for you" in window.welcome.demo_error.text()
    assert window.welcome.demo_button.isEnabled()


def test_theme_follows_the_system_and_the_menu(qtbot, window, monkeypatch):
    from PySide6.QtGui import QPalette

    from lorastudio.ui import theme

    window.set_theme("dark")
    assert theme.colors().dark
    assert QApplication.palette().color(QPalette.ColorRole.Window).lightness() < 80
    assert Settings().theme() == "dark"
    window.set_theme("light")
    assert not theme.colors().dark
    window.set_theme("system")
    # The offscreen platform has no colour scheme of its own: play the system switching to
    # dark (QStyleHints.colorSchemeChanged) and back.
    manager = window.theme_manager
    monkeypatch.setattr(theme, "system_prefers_dark", lambda: True)
    manager._system_changed(Qt.ColorScheme.Dark)
    assert theme.colors().dark
    monkeypatch.setattr(theme, "system_prefers_dark", lambda: False)
    manager._system_changed(Qt.ColorScheme.Light)
    assert not theme.colors().dark
    window.set_theme("light")
    monkeypatch.setattr(theme, "system_prefers_dark", lambda: True)
    manager._system_changed(Qt.ColorScheme.Dark)
    assert not theme.colors().dark, "an explicit choice wins over the system"
    window.set_theme("system")
    assert Settings().theme() == "system"


def test_recent_projects_and_geometry_persist(qtbot, tmp_path):
    root = make_dataset(tmp_path / "ds", sets=1)
    w = create_window()
    qtbot.addWidget(w)
    w.show()
    open_and_wait(qtbot, w, root)
    w.setGeometry(50, 40, 1100, 640)  # fits the 1280×720 test screen, so it is restored
    w.dataset_page.set_thumb_size(160)
    size = w.size()
    w.close()
    again = create_window()
    qtbot.addWidget(again)
    assert again.welcome.recent.count() == 1
    assert again.welcome.recent.item(0).data(Qt.ItemDataRole.UserRole) == str(root.resolve())
    assert Settings().geometry() is not None
    assert again.size() == size, "restored, not the default for the screen"
    assert again.dataset_page.delegate.thumb == 160
    again.close()


def test_opening_another_folder_during_a_scan_shows_the_new_one(qtbot, window, tmp_path):
    a = make_dataset(tmp_path / "a", sets=2)
    b = make_dataset(tmp_path / "b", sets=5)
    assert window.open_path(a)
    assert window.open_path(b)  # while a's scan is still running
    qtbot.waitUntil(lambda: window.dataset is not None and window.dataset.root == b.resolve()
                    and "checking" not in window.dataset_status.text(), timeout=15000)
    assert window.dataset_page.model.rowCount() == 5


def test_missing_folder_and_bad_project_are_reported(qtbot, window, tmp_path):
    assert not window.open_path(tmp_path / "nope")
    bad = tmp_path / "bad.toml"
    bad.write_text("[train]\nsteps = 'many'\n", encoding="utf-8")
    assert not window.open_path(bad)
    assert "Cannot open" in window.statusBar().currentMessage()
    assert window.project is None


def test_resume_needs_a_complete_checkpoint(qtbot, window, tmp_path):
    from lorastudio.run_folder import has_checkpoint

    root = make_dataset(tmp_path / "ds", sets=2)
    open_and_wait(qtbot, window, root)
    window.form.model.set_text(str(model_folder(tmp_path)))
    run_dir = window.form.config().output.run_dir
    assert not has_checkpoint(run_dir) and not window.act_resume.isEnabled()
    half = run_dir / "checkpoints" / "step_000020"
    half.mkdir(parents=True)
    assert not has_checkpoint(run_dir), "no manifest yet: an interrupted save"
    (half / "manifest.json").write_text('{"step": 20, "files": []}', encoding="utf-8")
    assert has_checkpoint(run_dir)
    window.form.steps.setValue(1200)  # any change refreshes the actions
    assert window.act_resume.isEnabled() and window.run_panel.resume_button.isEnabled()


def test_the_real_demo_opens_without_a_learning_rate_warning(qtbot, window, demo_dir, tmp_path):
    """A newcomer's first screen: the demo project (made by `lorastudio demo`) shows its own
    learning rate (2e-2, for its tiny pretrained transformer) without the "outside the typical range"
    advice, which it gives for another model."""
    open_and_wait(qtbot, window, demo_dir / "project.toml")
    form = window.form
    assert form.model_info.supported and form.model_info.demo
    assert form.lr.currentText() == "0.02"
    assert not form.lr_note.isVisible() and form.lr_note.text() == ""
    # the demo trains inputs at its 64-px target size, and the Test tab samples them so
    assert form.advanced.fields["input_size"].currentData() == "target"
    window.tabs.setCurrentWidget(window.compare_page)
    assert window.compare_page.input_size == "target"
    form.model.set_text(str(model_folder(tmp_path)))
    assert "Too hard" in form.lr_note.text()
