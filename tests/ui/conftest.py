"""Fixtures for the GUI tests: offscreen Qt, isolated settings/cache/data, a qasync loop,
small generated datasets, and the real demo (tiny model + dataset)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

#: The screen every GUI test runs on (tests/conftest.py hands it to Qt's offscreen platform).
SCREEN_FILE = Path(__file__).parents[1] / "offscreen_screen.json"
SCREEN = json.loads(SCREEN_FILE.read_text(encoding="utf-8"))["screens"][0]


def offscreen_platform(folder: Path, **screen) -> str:
    """A ``QT_QPA_PLATFORM`` value for Qt's offscreen plugin with one screen of this size and
    device pixel ratio (the plugin reads ``{"screens": [...]}`` from ``configfile``)."""
    path = folder / f"screen-{screen['width']}x{screen['height']}@{screen['dpr']}.json"
    path.write_text(json.dumps({"screens": [screen]}), encoding="utf-8")
    return f"offscreen:configfile={path}"


# Before anything imports Qt: render offscreen (on SCREEN: tests/conftest.py), and keep the
# user's settings out of the tests (tests/conftest.py does the cache and data folders).
if not os.environ.get("QT_QPA_PLATFORM", "").startswith("offscreen"):
    os.environ["QT_QPA_PLATFORM"] = f"offscreen:configfile={SCREEN_FILE}"
_SANDBOX = Path(tempfile.mkdtemp(prefix="lorastudio-ui-tests-"))
os.environ.pop("LORASTUDIO_THEME", None)

import pytest  # noqa: E402
from PySide6.QtCore import QSettings  # noqa: E402

for _fmt in (QSettings.Format.NativeFormat, QSettings.Format.IniFormat):
    QSettings.setPath(_fmt, QSettings.Scope.UserScope, str(_SANDBOX / "settings"))

HERE = Path(__file__).parent
FAKE_WORKER = HERE / "fake_worker.py"


@pytest.fixture(scope="session", autouse=True)
def qasync_loop(qapp):
    """An asyncio loop driven by Qt's own loop, as in the app (pytest-qt spins Qt)."""
    import asyncio

    import qasync

    loop = qasync.QEventLoop(qapp, already_running=True)
    asyncio.set_event_loop(loop)
    yield loop
    # Join the executor's threads so the interpreter doesn't exit under them.
    loop.stop()
    loop.close()
    asyncio.set_event_loop(None)


@pytest.fixture(autouse=True)
def _fresh_settings(tmp_path, monkeypatch):
    """Each test starts with empty settings and its own data folder (demo, projects)."""
    QSettings("LoRA Studio", "LoRA Studio").clear()
    monkeypatch.setenv("LORASTUDIO_DATA_DIR", str(tmp_path / "user-data"))
    yield


def write_image(path: Path, size=(64, 48), color=(200, 40, 40)) -> Path:
    from PIL import Image

    Image.new("RGB", size, color).save(path)
    return path


def make_dataset(root: Path, sets: int = 4, inputs: int = 1, size=(64, 48), captions: bool | int = True,
                 color=(200, 40, 40), missing_end: tuple[int, ...] = ()) -> Path:
    """A paired dataset: ``set000_start.png`` (+ ``_start1`` …) and ``set000_end.png`` (+ ``.txt``)."""
    root.mkdir(parents=True, exist_ok=True)
    for i in range(sets):
        name = f"set{i:03d}"
        for j in range(inputs):
            write_image(root / f"{name}_start{j if j else ''}.png", size, color)
        if i not in missing_end:
            write_image(root / f"{name}_end.png", size, (40, 40, 200))
        if captions is True or (isinstance(captions, int) and not isinstance(captions, bool) and i < captions):
            (root / f"{name}.txt").write_text(f"caption {i}\n", encoding="utf-8")
    return root


@pytest.fixture
def dataset_dir(tmp_path) -> Path:
    return make_dataset(tmp_path / "ds", sets=4)


@pytest.fixture(scope="session")
def demo_dir(tmp_path_factory) -> Path:
    """The real demo (tiny model + dataset) made by `python -m lorastudio demo DIR`."""
    out = tmp_path_factory.mktemp("demo") / "demo"
    proc = subprocess.run([sys.executable, "-m", "lorastudio", "demo", str(out)], capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, f"lorastudio demo failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-4000:]}"
    assert (out / "project.toml").is_file()
    return out


@pytest.fixture
def demo_project(demo_dir, tmp_path) -> Path:
    """A copy of the demo's project.toml set up for a short run, with its output in tmp_path."""
    from lorastudio.config import load_config, save_config

    config = load_config(demo_dir / "project.toml")
    config.train.steps = 1000  # long enough never to finish by itself: the tests stop it
    config.train.batch_size = 1  # quick steps (the demo run trains all its sets in each)
    config.train.sample_every = 3
    config.train.checkpoint_every = 0  # a checkpoint only when stopping
    config.train.sample_steps = 2
    config.train.sample_sets = 1
    config.output.dir = tmp_path / "output"
    config.output.name = "demo_test"
    path = tmp_path / "project.toml"
    save_config(config, path)
    return path

