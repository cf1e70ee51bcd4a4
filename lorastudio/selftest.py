"""``LoRAStudio --self-test`` (``lorastudio self-test``): is this install whole?

Made for the frozen bundle, where a missing hidden import, Qt plugin, data file or package
metadata shows up only when that code path runs. It walks the path an artist takes, through
the app's own code and its own child processes:

1. the main window opens (offscreen unless a display is asked for), themed, with its icons,
   and the image formats the dataset grid needs (JPEG, PNG, WebP, SVG) are readable;
2. the demo is created by the window's own ``DemoMaker``, i.e. ``<app> demo DIR`` as a
   child process of the app;
3. the demo project opens in the window and trains a few steps through the window's Train
   action: the worker is ``<app> --worker CONFIG`` (a Python interpreter is never needed);
4. the LoRA it wrote is a safetensors file with LoRA keys and our metadata, and it loads:
   ``<app> sample --lora …`` reads it with diffusers' own LoRA loader and generates a
   picture with it.

Each step prints one line with its time; a failure prints what failed and why, and the
command exits 1. This module runs in the GUI process: it imports Qt and our light modules,
never torch (the check at the end makes sure of that).
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import shutil
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable


class SelfTestError(RuntimeError):
    """A step failed; the message says what and why."""


def read_safetensors_header(path: Path) -> dict[str, Any]:
    """The JSON header of a ``.safetensors`` file (tensor names → dtype/shape, plus ``__metadata__``).

    The format is an 8-byte little-endian length, then that many bytes of JSON: reading it
    needs no torch, so the GUI-side check stays light.
    """
    with open(path, "rb") as fh:
        raw = fh.read(8)
        if len(raw) != 8:
            raise SelfTestError(f"{path} is too short to be a safetensors file ({len(raw)} bytes)")
        (length,) = struct.unpack("<Q", raw)
        if length <= 0 or length > 100 * 1024 * 1024:
            raise SelfTestError(f"{path}: implausible safetensors header length {length}")
        data = fh.read(length)
    try:
        header = json.loads(data)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise SelfTestError(f"{path}: the safetensors header is not JSON ({exc})") from None
    if not isinstance(header, dict):
        raise SelfTestError(f"{path}: the safetensors header is not an object")
    return header


def check_lora_file(path: Path, family: str | None = None) -> dict[str, Any]:
    """Raise SelfTestError unless ``path`` looks like one of our LoRAs; returns its header."""
    if not path.is_file():
        raise SelfTestError(f"the LoRA file {path} does not exist")
    header = read_safetensors_header(path)
    tensors = [k for k in header if k != "__metadata__"]
    lora_a = [k for k in tensors if "lora_A" in k or "lora_down" in k]
    lora_b = [k for k in tensors if "lora_B" in k or "lora_up" in k]
    if not lora_a or len(lora_a) != len(lora_b):
        raise SelfTestError(f"{path} has no matching LoRA A/B tensors ({len(lora_a)} A, {len(lora_b)} B, "
                            f"{len(tensors)} tensors in all)")
    metadata = header.get("__metadata__") or {}
    if family is not None:
        found = json.dumps(metadata)
        if family not in found:
            raise SelfTestError(f"{path}: the metadata does not name the family {family!r}: {found[:300]}")
    return header


# -- the Qt side -------------------------------------------------------------------------------


async def _wait_for(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise SelfTestError(f"timed out after {timeout:.0f} s waiting for {what}")
        await asyncio.sleep(0.05)


async def _wait_signal(ok, fail, timeout: float, what: str) -> Any:
    """Wait until ``ok`` or ``fail`` (Qt signals) fires; return ``ok``'s argument, raise on ``fail``."""
    loop = asyncio.get_running_loop()
    future: asyncio.Future = loop.create_future()

    def on_ok(*args):
        if not future.done():
            future.set_result(args[0] if args else None)

    def on_fail(*args):
        if not future.done():
            future.set_exception(SelfTestError(f"{what} failed: {_describe_failure(args[0] if args else None)}"))

    ok.connect(on_ok)
    fail.connect(on_fail)
    try:
        return await asyncio.wait_for(future, timeout)
    except asyncio.TimeoutError:
        raise SelfTestError(f"timed out after {timeout:.0f} s waiting for {what}") from None
    finally:
        for signal, slot in ((ok, on_ok), (fail, on_fail)):
            try:
                signal.disconnect(slot)
            except (RuntimeError, TypeError):
                pass


def _describe_failure(failure: Any) -> str:
    if isinstance(failure, dict):
        parts = [str(failure.get("message", "")), f"(kind {failure.get('kind')})"]
        for key in ("stderr", "log_tail"):
            text = (failure.get(key) or "").strip()
            if text:
                parts.append(f"\n--- {key} (last lines) ---\n" + "\n".join(text.splitlines()[-25:]))
        return " ".join(parts[:2]) + "".join(parts[2:])
    return str(failure)


class _Steps:
    """Runs the named steps in order, printing one line each."""

    def __init__(self) -> None:
        self.t0 = time.monotonic()
        self.times: dict[str, float] = {}

    async def run(self, name: str, coro) -> Any:
        t = time.monotonic()
        print(f"self-test: {name} …", flush=True)
        try:
            result = await coro
        except SelfTestError:
            raise
        except Exception as exc:  # an unexpected crash in a step is a failed step, with its traceback
            import traceback

            raise SelfTestError(f"{name}: {type(exc).__name__}: {exc}\n{traceback.format_exc()}") from exc
        self.times[name] = time.monotonic() - t
        print(f"self-test: {name}: ok ({self.times[name]:.1f} s)", flush=True)
        return result


async def _check_window(window, app) -> None:
    from PySide6.QtGui import QImageReader

    from lorastudio.ui import theme

    window.show()
    await _wait_for(window.isVisible, 10, "the main window to show")
    await asyncio.sleep(0.2)
    res = theme.resources_dir()
    if res is None:
        raise SelfTestError("the resources folder (style sheet, icons) was not found "
                            f"(frozen={getattr(sys, 'frozen', False)}, _MEIPASS={getattr(sys, '_MEIPASS', None)})")
    if not app.styleSheet().strip():
        raise SelfTestError(f"the style sheet from {res} was not applied")
    if theme.icon("app").isNull() or theme.icon("train").isNull():
        raise SelfTestError(f"the SVG icons in {res / 'icons'} did not load (Qt's svg plugins missing?)")
    formats = {bytes(f.data()).decode().lower() for f in QImageReader.supportedImageFormats()}
    missing = {"png", "jpeg", "webp", "svg"} - formats
    if missing:
        raise SelfTestError(f"Qt cannot read {', '.join(sorted(missing))} images (image format plugins missing); "
                            f"it reads: {', '.join(sorted(formats))}")
    grab = window.grab()
    if grab.isNull() or grab.width() < 100:
        raise SelfTestError("the main window did not render")


async def _make_demo(window, out_dir: Path) -> Path:
    from lorastudio.ui.welcome import DemoMaker

    maker: DemoMaker = window.demo
    task = _wait_signal(maker.ready, maker.failed, 600, "creating the demo (`demo` child process)")
    waiter = asyncio.ensure_future(task)
    await asyncio.sleep(0)  # connect before the signal can fire
    started = maker.make(out_dir)
    if not started and not waiter.done():
        await asyncio.sleep(0.1)
    project = Path(await waiter)
    if not project.is_file():
        raise SelfTestError(f"the demo reported {project}, which does not exist")
    return project


def shorten_demo(project: Path, steps: int) -> None:
    """Make the demo project train ``steps`` quick steps (one set each), with one preview and no
    checkpoints before the end."""
    from lorastudio.config import load_config, save_config

    config = load_config(project)
    fields = {f.name for f in dataclasses.fields(config.train)}
    changes: dict[str, Any] = {"steps": steps, "sample_every": 0, "checkpoint_every": 0, "batch_size": 1}
    if "sample_steps" in fields:
        changes["sample_steps"] = 2
    if "sample_sets" in fields:
        changes["sample_sets"] = 1
    config = dataclasses.replace(config, train=dataclasses.replace(config.train, **changes))
    save_config(config, project)


async def _open_project(window, project: Path) -> None:
    if not window.open_path(project):
        raise SelfTestError(f"the window could not open {project}: {window.statusBar().currentMessage()}")
    await _wait_for(lambda: window.dataset is not None, 120, "the dataset scan")
    sets = window.dataset.trainable_sets()
    if not sets:
        raise SelfTestError(f"the demo dataset has no trainable sets ({window.dataset!r})")


async def _train(window, steps: int, timeout: float) -> dict:
    runner = window.runner
    progress: list[dict] = []
    runner.progress.connect(progress.append)
    waiter = asyncio.ensure_future(_wait_signal(runner.finished, runner.failed, timeout,
                                                "training (`--worker` child process)"))
    await asyncio.sleep(0)
    if not window.start_training(False):
        waiter.cancel()
        raise SelfTestError("the Train action refused to start: "
                            f"{window.form.error.text() if window.form.error.isVisible() else 'no reason shown'}")
    done = await waiter
    if not progress:
        raise SelfTestError("training finished without a single progress event")
    last = progress[-1]
    if last.get("step") != steps or last.get("total") != steps:
        raise SelfTestError(f"expected {steps} steps, the last progress event was {last}")
    return done


def _child(*args: str) -> list[str]:
    from lorastudio import protocol

    return protocol.lorastudio_command_line(*args)


async def _sample_with_lora(model: Path, lora: Path, image: Path | None, out: Path, timeout: float) -> None:
    argv = _child("sample", "--model", str(model), "--lora", str(lora), "--prompt", "self-test",
                  "--out", str(out), "--steps", "2", "--size", "64", *(["--input", str(image)] if image else []))
    loop = asyncio.get_running_loop()
    env = dict(os.environ, PYTHONIOENCODING="utf-8")
    flags = getattr(subprocess, "CREATE_NO_WINDOW", 0) if sys.platform == "win32" else 0

    def run() -> subprocess.CompletedProcess:
        return subprocess.run(argv, capture_output=True, text=True, encoding="utf-8", errors="replace",
                              timeout=timeout, env=env, stdin=subprocess.DEVNULL, creationflags=flags)

    try:
        result = await loop.run_in_executor(None, run)
    except subprocess.TimeoutExpired:
        raise SelfTestError(f"`sample` with the LoRA took longer than {timeout:.0f} s") from None
    if result.returncode != 0:
        tail = "\n".join((result.stderr or result.stdout).strip().splitlines()[-25:])
        raise SelfTestError(f"`sample` with the LoRA exited with {result.returncode}:\n{tail}")
    from PySide6.QtGui import QImage

    picture = QImage(str(out))
    if picture.isNull():
        raise SelfTestError(f"`sample` wrote no readable picture at {out}")


async def run_self_test(work: Path, steps: int, timeout: float, screenshot: Path | None) -> dict:
    family = "kontext"  # the app's demo (what DemoMaker makes)
    from PySide6.QtWidgets import QApplication

    from lorastudio.ui.app import create_window

    app = QApplication.instance()
    steps_runner = _Steps()
    window = await steps_runner.run("open the main window", _window(create_window))
    await steps_runner.run("check the window, theme, icons and image formats", _check_window(window, app))
    project = await steps_runner.run("create the demo (child process)", _make_demo(window, work / "data" / "demo"))
    shorten_demo(project, steps)
    await steps_runner.run("open the demo project", _open_project(window, project))
    done = await steps_runner.run(f"train {steps} steps (worker child process)", _train(window, steps, timeout))
    lora = Path(done.get("lora") or "")
    header = await steps_runner.run("check the LoRA file", _async(lambda: check_lora_file(lora, family)))
    dataset = project.parent / "dataset"
    image = next(iter(sorted(dataset.glob("*_start.png"))), None)
    await steps_runner.run("load the LoRA and generate with it (child process)",
                           _sample_with_lora(project.parent / "model", lora, image, work / "sample.png", timeout))
    if screenshot is not None:
        screenshot.parent.mkdir(parents=True, exist_ok=True)
        window.grab().save(str(screenshot))
    if "torch" in sys.modules:
        raise SelfTestError("the GUI process imported torch (it must stay in the worker)")
    window.ask = lambda *a, **k: True  # never block on a question while closing
    window.close()
    app.processEvents()
    return {"times": steps_runner.times, "total": time.monotonic() - steps_runner.t0, "lora": str(lora),
            "lora_tensors": len([k for k in header if k != "__metadata__"])}


async def _window(create_window):
    return create_window(kill_timeout=30)


async def _async(fn):
    return fn()


def self_test_command(args) -> int:
    """``self-test [--keep DIR] [--steps N] [--timeout S] [--screenshot PNG]``: exit 0 when all is well."""
    keep = getattr(args, "keep", None)
    work = Path(keep).expanduser().absolute() if keep else Path(tempfile.mkdtemp(prefix="lorastudio-selftest-"))
    work.mkdir(parents=True, exist_ok=True)
    # Offscreen unless asked for a display; the artist's settings, data and cache untouched.
    if not os.environ.get("LORASTUDIO_SELFTEST_DISPLAY"):
        os.environ["QT_QPA_PLATFORM"] = "offscreen"
    os.environ["LORASTUDIO_DATA_DIR"] = str(work / "data")
    os.environ["LORASTUDIO_CACHE_DIR"] = str(work / "cache")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    os.environ.pop("LORASTUDIO_THEME", None)

    from PySide6.QtCore import QSettings

    for fmt in (QSettings.Format.NativeFormat, QSettings.Format.IniFormat):
        QSettings.setPath(fmt, QSettings.Scope.UserScope, str(work / "settings"))
    if sys.platform == "win32":  # QSettings' native format there is the registry: use a file instead
        QSettings.setDefaultFormat(QSettings.Format.IniFormat)

    import qasync

    from lorastudio.ui.app import make_app

    app = make_app()
    loop = qasync.QEventLoop(app)
    asyncio.set_event_loop(loop)
    screenshot = Path(args.screenshot).absolute() if getattr(args, "screenshot", None) else None
    frozen = "frozen bundle" if getattr(sys, "frozen", False) else "Python"
    print(f"self-test: {sys.executable} ({frozen}), working in {work}", flush=True)
    code = 0
    try:
        with loop:
            result = loop.run_until_complete(
                run_self_test(work, args.steps, args.timeout, screenshot))
    except SelfTestError as exc:
        print(f"self-test FAILED: {exc}", file=sys.stderr, flush=True)
        code = 1
    except Exception as exc:  # pragma: no cover - a crash outside any step
        import traceback

        traceback.print_exc()
        print(f"self-test FAILED: {type(exc).__name__}: {exc}", file=sys.stderr, flush=True)
        code = 1
    else:
        print(f"self-test: passed in {result['total']:.1f} s (LoRA with {result['lora_tensors']} tensors: "
              f"{result['lora']})", flush=True)
    finally:
        asyncio.set_event_loop(None)
    if not keep and code == 0:
        shutil.rmtree(work, ignore_errors=True)
    elif code:
        print(f"self-test: files kept for inspection in {work}", file=sys.stderr, flush=True)
    return code
