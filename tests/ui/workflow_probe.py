"""A whole GUI session in a fresh interpreter, for the "never imports torch" checks.

    python workflow_probe.py PROJECT_OR_FOLDER MODEL_DIR (real|fake)

Opens the project in the real window on the qasync loop, edits the first set's caption
with key presses, starts training, waits for progress, stops, waits for the end, closes
the window — then prints one JSON line: what happened and which heavy modules are loaded.
"""

import asyncio
import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

from PySide6.QtTest import QTest  # noqa: E402  (PySide6 before qasync)

import qasync  # noqa: E402

HERE = Path(__file__).resolve().parent


async def until(predicate, timeout):
    t0 = time.monotonic()
    while not predicate():
        if time.monotonic() - t0 > timeout:
            raise TimeoutError
        await asyncio.sleep(0.05)


async def session(target: str, model: str, mode: str, result: dict) -> None:
    from lorastudio.ui import runner as runner_module
    from lorastudio.ui.app import create_window

    if mode == "fake":
        runner_module.protocol.worker_command_line = lambda config, resume=False: [
            sys.executable, str(HERE / "fake_worker.py"), "normal", "100000"]
    window = create_window(kill_timeout=30)
    window.ask = lambda *a: "stop" if "stop" in a[2] else "keep"
    window.show()
    window.open_path(target)
    await until(lambda: window.dataset is not None and "checking" not in window.dataset_status.text(), 120)
    if model:
        window.form.model.set_text(model)
    first = window.dataset_page.model.entry(0).image_set
    window.dataset_page.select_set(first.name)
    window.editor.edit.setFocus()
    window.editor.edit.moveCursor(window.editor.edit.textCursor().MoveOperation.End)
    QTest.keyClicks(window.editor.edit, " (edited)")
    await asyncio.sleep(0.8)  # the autosave fires
    result["caption_saved"] = first.caption_path.read_text(encoding="utf-8").rstrip().endswith("(edited)")
    result["train_started"] = window.start_training()
    rp = window.run_panel
    await until(lambda: rp.chart.losses or rp.error_bar.isVisible(), 600)
    result["error"] = rp.error_bar.label.text() if rp.error_bar.isVisible() else ""
    result["progress_steps"] = len(rp.chart.losses)
    t0 = time.monotonic()
    window.stop_training()
    await until(lambda: not window.runner.is_running(), 120)
    result["stop_seconds"] = round(time.monotonic() - t0, 2)
    result["finished"] = rp.done_bar.isVisible()
    window.close()
    result["torch"] = "torch" in sys.modules
    result["heavy"] = sorted(m for m in ("torch", "diffusers", "transformers", "peft", "accelerate")
                             if m in sys.modules)
    result["training_modules"] = sorted(m for m in sys.modules if m.startswith("lorastudio.training"))


def main() -> int:
    target, model, mode = sys.argv[1], sys.argv[2], sys.argv[3]
    from lorastudio.ui.app import make_app

    app = make_app([])
    loop = qasync.QEventLoop(app)
    asyncio.set_event_loop(loop)
    result: dict = {}
    with loop:
        loop.run_until_complete(session(target, model, mode, result))
    print("RESULT " + json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
