#!/usr/bin/env python3
"""Screenshots of the real LoRA Studio window under Xvfb, at each step of the workflow.

    python tools/screenshots.py [--out screenshots/out] [--screen WxH@SCALE ...] [--fake-worker] [--keep-data]
    python tools/screenshots.py --demo-run --screen 1280x720@1 --out DIR   # the demo's own run, untouched

Starts Xvfb (Debian's ``xvfb``) unless a DISPLAY is already set, runs the app on Qt's
``xcb`` plugin, drives it like an artist would — real key presses through ``xdotool`` for
the shortcuts — and captures the X screen with ImageMagick's ``import`` after each step:

    01-welcome, 02-dataset-grid, 03-caption-editing, 04-bulk-captions, 05-training-running,
    06-sample-compare, 07-finished, 08-test-tab, 09-dark-dataset, 10-dark-training

once per screen, into ``OUT/WxH@SCALE/``. ``--screen WxH@SCALE`` (repeatable) is a monitor of
W×H pixels at SCALE (1.5 = 150 %): Xvfb gets a W×H screen and Qt ``QT_SCALE_FACTOR=SCALE``,
so the app lays itself out in W/SCALE × H/SCALE logical pixels and draws at SCALE device
pixels per logical one. The default takes the three screens artists have: a 1280×720 laptop
at 100 %, a 1920×1080 panel at 150 % (also 1280×720 logical) and a 4K monitor at 200 %.
The window sizes and places itself from the screen, as it does for an artist.

It uses the built-in demo (``lorastudio demo``) and the real training worker when the
training engine is installed; with ``--fake-worker`` (or when it is not importable) a
generated dataset and a stand-in worker that writes sample images are used instead, so the
screens can be checked before the engine exists. Needs: xvfb, xdotool, imagemagick and Qt's
xcb libraries (see README).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_SCREENS = ("1280x720@1", "1920x1080@1.5", "3840x2160@2")


def parse_screen(text: str) -> tuple[int, int, float]:
    """``WxH@SCALE`` (``@SCALE`` optional) → (width, height, scale); a clear error otherwise."""
    size, _, scale = text.partition("@")
    try:
        w, h = (int(v) for v in size.lower().split("x"))
        factor = float(scale) if scale else 1.0
    except ValueError:
        raise argparse.ArgumentTypeError(f"--screen {text!r}: expected WxH@SCALE, e.g. 1920x1080@1.5") from None
    if w < 320 or h < 240 or not 0.5 <= factor <= 4:
        raise argparse.ArgumentTypeError(f"--screen {text!r}: at least 320x240 pixels, a scale from 0.5 to 4")
    return w, h, factor


# -- a stand-in worker (only with --fake-worker) ------------------------------------------------

def fake_worker(config_path: str, resume: bool) -> int:
    """Speaks the worker protocol and writes sample images, for screenshots without torch."""
    import threading

    from PIL import Image, ImageFilter

    sys.path.insert(0, str(ROOT))
    from lorastudio.config import load_config
    from lorastudio.dataset import scan_dataset

    config = load_config(config_path, check_paths=False)
    sets = scan_dataset(config.dataset.path).trainable_sets()
    run_dir = config.output.run_dir
    (run_dir / "samples").mkdir(parents=True, exist_ok=True)
    stop = threading.Event()
    threading.Thread(target=lambda: (sys.stdin.readline(), stop.set()), daemon=True).start()

    def emit(**e):
        print(json.dumps(e), flush=True)

    total = config.train.steps
    emit(event="started", total=total, family="kontext", sets=len(sets), run_dir=str(run_dir), resumed_from=0)
    for i in range(len(sets)):
        emit(event="status", phase="caching", message="caching latents", current=i + 1, total=len(sets))
        time.sleep(0.05)
    loss = 0.9
    import math
    import random

    rnd = random.Random(1)
    for step in range(1, total + 1):
        if stop.is_set():
            emit(event="checkpoint", step=step - 1, path=str(run_dir / "checkpoint"))
            lora = config.output.lora_path
            lora.parent.mkdir(parents=True, exist_ok=True)
            lora.write_bytes(b"fake")
            emit(event="done", lora=str(lora), step=step - 1, stopped=True)
            return 0
        time.sleep(0.02)
        loss = 0.12 + 0.75 * math.exp(-step / (0.25 * total)) + rnd.uniform(-0.08, 0.08)  # falls, noisily
        emit(event="progress", step=step, total=total, loss=loss, lr=config.train.learning_rate, rate=2.7,
             eta=(total - step) / 2.7)
        validate = config.train.validate_every or config.train.sample_every or total
        if config.dataset.validation and step % validate == 0:  # falls, then climbs: overfitting
            held = 0.32 + 0.3 * math.exp(-step / (0.23 * total)) + max(0.0, step - 0.7 * total) / total
            emit(event="validation", step=step, loss=held, per_sigma={"0.5": held})
        every = config.train.sample_every or total
        if step % every == 0 or step == total:
            for s in sets[:2]:
                out = run_dir / "samples" / f"{step:06d}-{s.name}.png"
                blur = max(0.0, 8.0 * (1 - step / total))
                Image.open(s.target).convert("RGB").filter(ImageFilter.GaussianBlur(blur)).save(out)
                emit(event="sample", step=step, path=str(out), set=s.name, target=str(s.target))
    lora = config.output.lora_path
    lora.parent.mkdir(parents=True, exist_ok=True)
    lora.write_bytes(b"fake")
    best = {}
    if config.dataset.validation:  # the run's best checkpoint's LoRA, as the trainer writes it
        best_lora = lora.with_name(f"{config.output.name}.best.safetensors")
        best_lora.write_bytes(b"fake")
        best = {"best": str(best_lora)}
    emit(event="done", lora=str(lora), step=total, stopped=False, **best)
    return 0


def make_fake_demo(out: Path) -> Path:
    """A paired dataset with real-looking pictures and a project file, like `lorastudio demo`."""
    from PIL import Image, ImageDraw

    ds = out / "dataset"
    ds.mkdir(parents=True, exist_ok=True)
    model = out / "model"
    model.mkdir(exist_ok=True)
    (model / "model_index.json").write_text(json.dumps({"_class_name": "FluxKontextPipeline"}))
    palette = [(231, 111, 81), (42, 157, 143), (233, 196, 106), (38, 70, 83), (244, 162, 97), (138, 177, 125)]
    captions = ["Turn the sky into a starry night", "Make it a pencil sketch", "Remove the background",
                None, "Make it a pencil sketch", "Turn the sky into a starry night"]
    for i in range(18):
        name = f"photo{i + 1:03d}"
        bg = palette[i % len(palette)]
        im = Image.new("RGB", (640, 480), bg)
        d = ImageDraw.Draw(im)
        d.rectangle((0, 330, 640, 480), fill=tuple(max(0, c - 60) for c in bg))
        d.ellipse((220 + (i * 23) % 120, 110, 420 + (i * 23) % 120, 310), fill=(250, 240, 220))
        im.save(ds / f"{name}_start.jpg", quality=92)
        if i % 5 == 2:
            ref = Image.new("RGB", (640, 480), (240, 240, 245))
            ImageDraw.Draw(ref).polygon([(320, 80), (480, 400), (160, 400)], fill=palette[(i + 2) % 6])
            ref.save(ds / f"{name}_start1.jpg", quality=92)
        if i != 7:
            end = Image.new("RGB", (640, 480), (18, 24, 48))
            e = ImageDraw.Draw(end)
            for k in range(40):
                x, y = (k * 97 + i * 13) % 640, (k * 53) % 300
                e.ellipse((x, y, x + 3, y + 3), fill=(255, 255, 220))
            e.rectangle((0, 330, 640, 480), fill=(30, 30, 40))
            e.ellipse((220 + (i * 23) % 120, 110, 420 + (i * 23) % 120, 310), fill=(250, 240, 220))
            end.save(ds / f"{name}_end.jpg", quality=92)
        cap = captions[i % len(captions)]
        if cap:
            (ds / f"{name}.txt").write_text(cap + "\n", encoding="utf-8")
    (out / "project.toml").write_text(
        '[model]\npath = "model"\n[dataset]\npath = "dataset"\nvalidation = ["photo005", "photo014"]\n'
        '[train]\nsteps = 300\nsample_every = 60\nvalidate_every = 30\n'
        'checkpoint_every = 100\n[output]\ndir = "output"\nname = "starry_night"\n', encoding="utf-8")
    return out / "project.toml"


# -- the driver (runs inside the app process) ---------------------------------------------------

def xdotool(*args: str) -> None:
    subprocess.run(["xdotool", *args], check=False, timeout=10)


async def snap(out_dir: Path, name: str) -> Path:
    # Let Qt paint through the event loop (processEvents() inside this coroutine would run
    # another task's step, such as a folder scan, while this one is executing).
    await asyncio.sleep(0.15)
    path = out_dir / f"{name}.png"
    subprocess.run(["import", "-window", "root", str(path)], check=True, timeout=30)
    print(f"  {path}", flush=True)
    return path


async def wait_for(predicate, timeout: float, what: str) -> None:
    t0 = time.monotonic()
    while not predicate():
        if time.monotonic() - t0 > timeout:
            raise TimeoutError(f"timed out waiting for {what}")
        await asyncio.sleep(0.1)


async def drive_demo_run(window, out_dir: Path, app) -> None:
    """``--demo-run``: the built-in demo trained with its own settings, untouched (what README's
    first command gives an artist), then its first and last previews in the viewer and the Test
    tab's checkpoint grid (held-out sets, every kept checkpoint); the pictures themselves are
    copied beside the screenshots, enlarged 4x."""
    from PIL import Image

    await asyncio.sleep(1.0)
    window.activateWindow()
    window.open_demo()
    await wait_for(lambda: window.dataset is not None and window.dataset_page.model.rowCount() > 0, 900, "the demo")
    await wait_for(lambda: window.loader.is_idle(), 60, "thumbnails")
    window.tabs.setCurrentWidget(window.training_page)
    await asyncio.sleep(0.5)
    window.activateWindow()
    await asyncio.sleep(0.2)
    xdotool("key", "--clearmodifiers", "ctrl+Return")
    await wait_for(lambda: window.runner.is_running() or window.run_panel.error_bar.isVisible(), 30, "training start")
    started = time.monotonic()
    await wait_for(lambda: not window.runner.is_running(), 1800, "the end of the demo's run")
    print(f"  Train to done: {time.monotonic() - started:.0f} s", flush=True)
    await asyncio.sleep(1.0)
    await snap(out_dir, "11-demo-finished")

    def enlarged(path: Path, name: str) -> None:
        image = Image.open(path).convert("RGB")
        image.resize((image.width * 4, image.height * 4), Image.Resampling.NEAREST).save(out_dir / name)

    samples = window.run_panel.gallery.samples
    first = samples[0]
    last = [s for s in samples if s.set_name == first.set_name][-1]  # the same set, at the last step
    for label, sample in (("first", first), ("last", last), ("last-other-set", samples[-1])):
        window.show_sample(sample)
        await asyncio.sleep(1.2)
        await snap(out_dir, f"12-demo-{label}-preview")
        enlarged(Path(sample.path), f"demo-{label}-preview-step{sample.step}-{sample.set_name}.png")
        for v in list(window.viewers.open):
            v.close()
        await asyncio.sleep(0.3)
    window.tabs.setCurrentWidget(window.compare_page)
    page = window.compare_page
    page.modes.setCurrentWidget(page.grid_panel)
    await asyncio.sleep(0.5)
    page.grid_panel.render()
    await wait_for(lambda: not page.grid_panel.is_running(), 900, "the checkpoint grid")
    await asyncio.sleep(1.0)
    await snap(out_dir, "13-demo-checkpoint-grid")
    if page.grid_panel.grid_path:
        grid = Image.open(page.grid_panel.grid_path)
        grid.resize((grid.width * 3, grid.height * 3), Image.Resampling.NEAREST).save(out_dir / "demo-grid.png")
    window.ask = lambda *a: "stop" if "stop" in a[2] else "keep"
    window.close()
    app.quit()


async def drive(window, out_dir: Path, use_fake: bool, app) -> None:
    await asyncio.sleep(1.0)
    window.activateWindow()
    window.raise_()
    await asyncio.sleep(0.5)
    await snap(out_dir, "01-welcome")

    # The demo: the real one (tiny model + dataset, made by `lorastudio demo`) or a stand-in.
    if use_fake:
        project = make_fake_demo(Path(os.environ["LORASTUDIO_DATA_DIR"]) / "demo")
        window.open_path(project)
    else:
        window.open_demo()
        await asyncio.sleep(1.0)
        await snap(out_dir, "01b-demo-creating")
    await wait_for(lambda: window.dataset is not None and window.dataset_page.model.rowCount() > 0, 600, "the demo")
    await wait_for(lambda: window.loader.is_idle(), 60, "thumbnails")
    await asyncio.sleep(1.0)
    await snap(out_dir, "02-dataset-grid")

    # Caption editing: pick a set with a problem, type with real key presses.
    page = window.dataset_page
    names = [e.name for e in page.model.entries()]
    page.select_set(names[min(3, len(names) - 1)])
    await asyncio.sleep(0.5)
    window.editor.edit.setFocus()
    window.editor.edit.moveCursor(window.editor.edit.textCursor().MoveOperation.End)
    await asyncio.sleep(0.3)
    xdotool("type", "--delay", "30", ", keep the edges crisp" if not use_fake else " and make the moon glow")
    await asyncio.sleep(0.2)
    await snap(out_dir, "03-caption-editing")
    await asyncio.sleep(1.0)  # autosave

    window.open_bulk_dialog()
    await asyncio.sleep(0.5)
    dlg = window.bulk_dialog
    dlg.trigger_word.setFocus()
    xdotool("type", "--delay", "30", "zkw_night")
    await asyncio.sleep(0.8)
    await snap(out_dir, "04-bulk-captions")
    dlg.reject()
    await asyncio.sleep(0.3)

    # Training: settings, then Ctrl+Return through the real keyboard path.
    window.tabs.setCurrentWidget(window.training_page)
    form = window.form
    if use_fake:
        form.steps.setValue(300)
    else:
        form.steps.setValue(60)
        form.sample_every.setValue(10)
        form.checkpoint_every.setValue(20)
    await asyncio.sleep(0.3)
    window.activateWindow()
    window.setFocus()
    await asyncio.sleep(0.2)
    xdotool("key", "--clearmodifiers", "ctrl+Return")
    await wait_for(lambda: window.runner.is_running() or window.run_panel.error_bar.isVisible(), 30, "training start")
    rp = window.run_panel
    await wait_for(lambda: len(rp.gallery.samples) >= 4 or not window.runner.is_running(), 900, "samples")
    await asyncio.sleep(0.5)
    await snap(out_dir, "05-training-running")
    if rp.gallery.samples:
        window.show_sample(rp.gallery.samples[-1])
        await asyncio.sleep(1.2)
        await snap(out_dir, "06-sample-compare")
        for v in list(window.viewers.open):
            v.close()
        await asyncio.sleep(0.3)
    if window.runner.is_running():
        window.activateWindow()
        await asyncio.sleep(0.2)
        if use_fake:
            await wait_for(lambda: not window.runner.is_running(), 120, "the end of training")
        else:
            xdotool("key", "--clearmodifiers", "ctrl+period")  # Stop (graceful)
            await asyncio.sleep(0.3)
            await snap(out_dir, "06b-stopping")
            await wait_for(lambda: not window.runner.is_running(), 120, "the stop")
    await asyncio.sleep(0.8)
    await snap(out_dir, "07-finished")

    # Test tab.
    window.tabs.setCurrentWidget(window.compare_page)
    await asyncio.sleep(0.5)
    tp = window.compare_page
    if not use_fake and tp.lora.text():
        tp.steps.setValue(4)
        tp.generate()
        await wait_for(lambda: not tp.is_running(), 600, "test images")
        await wait_for(lambda: window.loader.is_idle(), 30, "thumbnails")
        await asyncio.sleep(1.0)
    await snap(out_dir, "08-test-tab")

    # Dark theme.
    window.set_theme("dark")
    window.tabs.setCurrentWidget(window.dataset_page)
    await asyncio.sleep(1.0)
    await snap(out_dir, "09-dark-dataset")
    window.tabs.setCurrentWidget(window.training_page)
    await asyncio.sleep(0.8)
    await snap(out_dir, "10-dark-training")
    window.set_theme("system")
    window.ask = lambda *a: "stop" if "stop" in a[2] else "keep"
    window.close()
    app.quit()


def run_app(out_dir: Path, use_fake: bool, demo_run: bool = False) -> int:
    sys.path.insert(0, str(ROOT))
    from PySide6.QtWidgets import QApplication  # noqa: F401  (before qasync)

    import qasync

    from lorastudio.ui import runner as runner_module
    from lorastudio.ui.app import create_window, make_app

    if use_fake:
        runner_module.protocol.worker_command_line = lambda config, resume=False: [
            sys.executable, str(Path(__file__).resolve()), "--fake-worker", str(config)]
    app = make_app([])
    loop = qasync.QEventLoop(app)
    asyncio.set_event_loop(loop)
    window = create_window()
    window.show()
    screen = window.screen()
    print(f"  screen {screen.geometry().width()}x{screen.geometry().height()} logical at "
          f"{screen.devicePixelRatio():g}x; window {window.width()}x{window.height()}", flush=True)
    failure: list[BaseException] = []

    async def main():
        try:
            await (drive_demo_run(window, out_dir, app) if demo_run else drive(window, out_dir, use_fake, app))
        except BaseException as exc:  # report, but always quit
            failure.append(exc)
            import traceback

            traceback.print_exc()
            try:
                await snap(out_dir, "zz-failure")
            except Exception:
                pass
            window.ask = lambda *a: "stop" if "stop" in a[2] else "keep"
            window.close()
            app.quit()

    with loop:
        loop.run_until_complete(main())
    return 1 if failure else 0


# -- the orchestrator ---------------------------------------------------------------------------

def training_available() -> bool:
    import importlib.util

    try:
        return importlib.util.find_spec("lorastudio.training.worker") is not None and \
            importlib.util.find_spec("lorastudio.training.demo") is not None
    except (ImportError, ValueError):
        return False


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default=str(ROOT / "screenshots" / "out"))
    parser.add_argument("--fake-worker", nargs="?", const="", default=None, metavar="CONFIG",
                        help="use a stand-in worker and dataset (no torch needed)")
    parser.add_argument("--screen", action="append", type=parse_screen, metavar="WxH@SCALE",
                        help=f"a screen of W×H pixels at SCALE (repeatable; default: {' '.join(DEFAULT_SCREENS)})")
    parser.add_argument("--keep-data", action="store_true", help="keep the temporary data folder")
    parser.add_argument("--demo-run", action="store_true",
                        help="train the built-in demo with its own settings; shoot its first and last previews "
                             "and the checkpoint grid (needs the training engine)")
    parser.add_argument("--in-app", action="store_true", help=argparse.SUPPRESS)
    args, rest = parser.parse_known_args()

    if args.fake_worker:  # invoked as the worker itself
        return fake_worker(args.fake_worker, "--resume" in rest)
    out_dir = Path(args.out)
    use_fake = args.fake_worker is not None or not training_available()
    if args.demo_run and use_fake:
        print("--demo-run needs the training engine (torch, diffusers)", file=sys.stderr)
        return 2
    if args.in_app:
        return run_app(out_dir, use_fake, args.demo_run)

    for tool in ("Xvfb", "xdotool", "import"):
        if shutil.which(tool) is None and not (tool == "Xvfb" and os.environ.get("DISPLAY")):
            print(f"missing {tool}: apt-get install xvfb xdotool imagemagick", file=sys.stderr)
            return 2
    screens = args.screen or [parse_screen(s) for s in DEFAULT_SCREENS]
    print(f"{'fake' if use_fake else 'real'} worker; screenshots → {out_dir}", flush=True)
    rc = 0
    for w, h, scale in screens:
        rc = take_screen(out_dir / f"{w}x{h}@{scale:g}", w, h, scale, use_fake, args.keep_data, args.demo_run) or rc
    return rc


def take_screen(out_dir: Path, w: int, h: int, scale: float, use_fake: bool, keep_data: bool,
                demo_run: bool = False) -> int:
    """The whole workflow on one Xvfb screen of w×h pixels with Qt scaled by ``scale``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    for old in out_dir.glob("*.png"):
        old.unlink()
    work = Path(tempfile.mkdtemp(prefix="lorastudio-shots-"))
    env = {**os.environ, "QT_QPA_PLATFORM": "xcb", "LORASTUDIO_DATA_DIR": str(work / "data"),
           "LORASTUDIO_CACHE_DIR": str(work / "cache"), "XDG_CONFIG_HOME": str(work / "config"),
           "QT_SCALE_FACTOR": f"{scale:g}", "QT_SCALE_FACTOR_ROUNDING_POLICY": "PassThrough"}
    for name in ("LORASTUDIO_THEME", "QT_SCREEN_SCALE_FACTORS", "QT_AUTO_SCREEN_SCALE_FACTOR"):
        env.pop(name, None)
    xvfb = None
    if not os.environ.get("DISPLAY") or os.environ.get("LORASTUDIO_FORCE_XVFB"):
        display = ":97"
        xvfb = subprocess.Popen(["Xvfb", display, "-screen", "0", f"{w}x{h}x24", "-dpi", "96", "-nolisten", "tcp"],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(1.0)
        env["DISPLAY"] = display
    print(f"{w}x{h} at {scale:g}x → {out_dir}", flush=True)
    try:
        cmd = [sys.executable, str(Path(__file__).resolve()), "--in-app", "--out", str(out_dir)]
        if use_fake:
            cmd.append("--fake-worker")
        if demo_run:
            cmd.append("--demo-run")
        return subprocess.run(cmd, env=env, timeout=3600).returncode
    finally:
        if xvfb is not None:
            xvfb.terminate()
            xvfb.wait(10)
        if not keep_data:
            shutil.rmtree(work, ignore_errors=True)
        else:
            print(f"data kept in {work}")


if __name__ == "__main__":
    sys.exit(main())
