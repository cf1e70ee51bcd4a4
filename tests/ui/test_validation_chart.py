"""Issue 14 on the Train page: the held-out loss as a second series, the overfitting warning
in words, and the finished-run banner offering the last and the best LoRA."""

from __future__ import annotations

from PySide6.QtGui import QColor

from lorastudio.ui import theme
from lorastudio.ui.loss_chart import LossChart, overfitting, overfitting_message
from lorastudio.ui.run_panel import RunPanel
from lorastudio.ui.thumbnails import ThumbnailLoader

#: Training loss falling from 1.0 to about 0.25 over 100 steps.
TRAIN = [(step, 1.0 / (1 + step / 33)) for step in range(1, 101)]


def test_overfitting_needs_two_rises_in_a_row_while_training_falls():
    steps = [s for s, _ in TRAIN]
    smooth = [v for _, v in TRAIN]
    val_steps = [20, 40, 60, 80, 100]
    assert overfitting(steps, smooth, val_steps[:4], [0.5, 0.4, 0.35, 0.37]) is None  # one rise is noise
    assert overfitting(steps, smooth, val_steps, [0.5, 0.4, 0.35, 0.37, 0.40]) == (60, 60)
    # the climb began at step 40, but step 20 is still the best
    assert overfitting(steps, smooth, val_steps, [0.3, 0.4, 0.35, 0.37, 0.40]) == (60, 20)
    # both rising: a learning-rate problem, not overfitting
    rising = [1.0 - v for v in smooth]
    assert overfitting(steps, rising, val_steps, [0.5, 0.4, 0.35, 0.37, 0.40]) is None
    assert overfitting_message((60, 20)) == ("Held-out loss rising since step 60: the LoRA may be overfitting; "
                                             "the best so far is step 20.")


def _has_color(image, color: QColor) -> bool:
    for y in range(0, image.height(), 1):
        for x in range(0, image.width(), 1):
            if image.pixelColor(x, y) == color:
                return True
    return False


def test_the_chart_draws_the_held_out_series(qtbot):
    chart = LossChart()
    qtbot.addWidget(chart)
    chart.resize(400, 200)
    for step, loss in TRAIN:
        chart.add(step, loss, 100)
    green = theme.colors().q("success")
    assert not _has_color(chart.grab().toImage(), green)
    for step, loss in ((25, 0.6), (50, 0.5), (75, 0.45)):
        chart.add_validation(step, loss)
    assert chart.val_steps == [25, 50, 75]
    assert _has_color(chart.grab().toImage(), green)
    chart.add_validation(50, 0.52)  # a resumed run evaluates step 50 again: it replaces what came after
    assert (chart.val_steps, chart.val_losses) == ([25, 50], [0.6, 0.52])
    chart.resume_at(30, 100)
    assert chart.val_steps == [25] and chart.steps[-1] == 30


def test_the_run_panel_says_when_the_held_out_loss_climbs(qtbot):
    loader = ThumbnailLoader(None)
    panel = RunPanel(loader)
    qtbot.addWidget(panel)
    panel.show()
    panel.on_started({"event": "started", "total": 100, "family": "kontext", "sets": 10, "resumed_from": 0})
    val = {20: 0.5, 40: 0.4, 60: 0.35, 80: 0.37, 100: 0.40}
    for step, loss in TRAIN:
        panel.on_progress({"event": "progress", "step": step, "total": 100, "loss": loss})
        if step in val:
            panel.on_validation({"event": "validation", "step": step, "loss": val[step],
                                 "per_sigma": {"0.1": val[step], "0.5": val[step]}})
            if step == 80:
                assert not panel.overfit_note.isVisible()
    assert panel.chart.val_steps == list(val)
    assert panel.val_label.text() == "held-out 0.4000"
    assert panel.overfit_note.isVisible()
    assert panel.overfit_note.text() == ("Held-out loss rising since step 60: the LoRA may be overfitting; "
                                         "the best so far is step 60.")
    panel.begin(resume=False)  # a new run starts clean
    assert not panel.overfit_note.isVisible() and panel.chart.val_steps == []
    loader.shutdown()


def test_a_run_resumed_after_a_restart_redraws_its_held_out_points(qtbot, tmp_path):
    """The app was closed and reopened: Resume's chart starts empty, so the held-out points up to
    the checkpoint come back from the run folder's validation.jsonl (later ones, which the
    killed run wrote after its checkpoint, and a line cut short by the kill, do not)."""
    from lorastudio import protocol, run_folder

    lines = [protocol.encode(protocol.make_event(protocol.VALIDATION, step=step, loss=loss,
                                                 per_sigma={"0.5": loss}))
             for step, loss in ((20, 0.5), (40, 0.4), (60, 0.45))]
    run_folder.validation_path(tmp_path).write_text("\n".join(lines) + '\n{"event": "valid', encoding="utf-8")
    loader = ThumbnailLoader(None)
    panel = RunPanel(loader)
    qtbot.addWidget(panel)
    panel.begin(resume=True)
    panel.on_started({"event": "started", "total": 100, "family": "kontext", "sets": 10, "resumed_from": 40,
                      "run_dir": str(tmp_path)})
    assert (panel.chart.val_steps, panel.chart.val_losses) == ([20, 40], [0.5, 0.4])
    loader.shutdown()


def test_the_finished_banner_offers_the_last_and_the_best_lora(qtbot, tmp_path):
    loader = ThumbnailLoader(None)
    panel = RunPanel(loader)
    qtbot.addWidget(panel)
    panel.show()
    last, best = tmp_path / "x.safetensors", tmp_path / "x.best.safetensors"
    panel.on_finished({"event": "done", "lora": str(last), "step": 100, "stopped": False})
    assert panel.test_button.text() == "Test it" and not panel.test_best_button.isVisible()
    panel.on_finished({"event": "done", "lora": str(last), "best": str(best), "step": 100, "stopped": False})
    assert panel.done_bar.isVisible() and best.name in panel.done_bar.label.text()
    assert panel.test_button.text() == "Test last" and panel.test_best_button.isVisible()
    assert panel.show_folder_button.isVisible()
    with qtbot.waitSignal(panel.test_clicked) as signal:
        panel.test_best_button.click()
    assert signal.args == [str(best)]
    with qtbot.waitSignal(panel.test_clicked) as signal:
        panel.test_button.click()
    assert signal.args == [str(last)]
    loader.shutdown()


def test_validation_events_reach_the_chart_and_the_banner(qtbot, tmp_path, monkeypatch):
    """Through the real runner and window: a stand-in worker's validation events and best LoRA."""
    import sys

    from lorastudio.ui import runner as runner_module
    from lorastudio.ui.app import create_window

    from .conftest import FAKE_WORKER, make_dataset
    from .test_main_window import model_folder, open_and_wait

    monkeypatch.setattr(runner_module.protocol, "worker_command_line",
                        lambda config, resume=False: [sys.executable, str(FAKE_WORKER), "validate", "40"])
    window = create_window(kill_timeout=2.0)
    window.ask = lambda *a: "keep" if "keep" in a[2] else "stop"
    qtbot.addWidget(window)
    window.show()
    open_and_wait(qtbot, window, make_dataset(tmp_path / "ds", sets=2))
    window.form.model.set_text(str(model_folder(tmp_path)))
    rp = window.run_panel
    with qtbot.waitSignal(window.runner.finished, timeout=20000):
        assert window.start_training()
    assert rp.chart.val_steps == [10, 20, 30, 40] and rp.chart.val_losses[-1] == 0.5
    assert rp.overfit_note.isVisible() and "rising since step 20" in rp.overfit_note.text()
    assert "the best so far is step 20" in rp.overfit_note.text()
    assert rp.test_best_button.isVisible()
    rp.test_best_button.click()
    assert window.tabs.currentWidget() is window.compare_page
    assert window.compare_page.lora.text() == "fake.best.safetensors"
    window.close()
