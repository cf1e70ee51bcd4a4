"""Session-wide test settings: offline, headless, and no stray user settings."""

import gc
import os
import tempfile
from pathlib import Path

import pytest

# Nothing may be fetched from a hub: every model the tests use is built locally.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
# Each test process (the suite runs in parallel, ``-n auto``) has its own settings, data and
# cache folders, so no test touches the user's real ones or another process's: QSettings
# writes under XDG_CONFIG_HOME on Linux. Tests that need their own still set them.
_PRIVATE = Path(tempfile.mkdtemp(prefix="lorastudio-tests-"))
os.environ["XDG_CONFIG_HOME"] = str(_PRIVATE / "config")
os.environ["LORASTUDIO_DATA_DIR"] = str(_PRIVATE / "data")
os.environ["LORASTUDIO_CACHE_DIR"] = str(_PRIVATE / "cache")
# With several test processes on the machine's cores (pytest-xdist), each process and the
# workers it starts compute on one thread: two processes of two threads each on a 2-core
# machine slow every tiny-model step several times over (threads wait on each other).
if int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1")) > 1:
    for _threads in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(_threads, "1")
# torch.compile stays off in the tests and the workers they start (it is inherited): LoRA
# Studio never compiles, but bitsandbytes wraps its CPU fallback kernels in torch.compile at
# import, which imports torch's inductor compiler into every process that loads a diffusers
# model: ~17 % of a tiny worker run's CPU time. The kernels then run eagerly, as bitsandbytes
# itself falls back to when compiling fails; what they compute is the same.
os.environ.setdefault("TORCHDYNAMO_DISABLE", "1")
# Qt widgets render offscreen in tests (set before any Qt import), on a 1280×720 screen: a
# common laptop, and what a 1920×1080 panel at 150 % gives Qt. Qt's offscreen platform is
# 800×800 unless a screens file says otherwise. Every GUI test runs on it, alone or in the suite.
SCREEN_FILE = Path(__file__).with_name("offscreen_screen.json")
if os.environ.get("QT_QPA_PLATFORM", "offscreen") == "offscreen":
    os.environ["QT_QPA_PLATFORM"] = f"offscreen:configfile={SCREEN_FILE}"


# Long runs (``@pytest.mark.soak``) are opt-in: skipped unless --run-soak is given or the
# marker is selected explicitly (``-m soak``).
def pytest_addoption(parser):
    parser.addoption("--run-soak", action="store_true", default=False,
                     help="run the @pytest.mark.soak tests (minutes to hours)")


#: The files that take longest (they start worker processes or train tiny models), slowest
#: first. The suite runs one file per process at a time (``--dist loadfile``) in collection order
#: (``--no-loadscope-reorder``: by default xdist sends the files with the most tests first, which
#: put the few-test, long learning files last): run these first, so the last file to finish is a
#: short one and no core sits idle while one long file ends the run (a busy CI machine showed a
#: tail of minutes). Files not named here keep their order after these.
SLOWEST_FIRST = (
    # measured quiet (one core's seconds per file, --durations): the files that start worker
    # processes and the LoRA-learning files first, then the rest
    "reliability/test_worker_faults.py", "training/test_worker.py", "reliability/test_multi_rank.py",
    "training/test_learning_longcat.py", "training/test_learning_flux2.py", "ui/test_main_window.py",
    "reliability/test_security.py", "training/test_learning_t2i.py", "test_main_entry.py", "ui/test_real_worker.py",
    "training/test_learning_edit_new.py", "training/test_learning.py", "reliability/test_gui_faults.py",
    "training/test_demo_transformer.py", "training/test_learning_qwen.py", "training/test_trainer.py",
    "ui/test_caption_dialog.py", "training/test_train_terminal.py", "training/test_learning",
    "reliability/test_bad_input.py", "training/test_families.py", "training/test_memory_options.py",
    "training/test_key_coverage.py", "training/test_flux2.py", "training/test_recipe_training.py",
    "training/test_tiny_models.py", "training/test_t2i.py", "training/test_export_grid.py", "training/test_validation.py",
)


def _slowness_rank(item) -> int:
    path = item.path.as_posix()
    return next((i for i, name in enumerate(SLOWEST_FIRST) if f"/tests/{name}" in path), len(SLOWEST_FIRST))


def pytest_collection_modifyitems(config, items):
    import pytest

    items.sort(key=_slowness_rank)  # stable: each file's tests keep their order
    if config.getoption("--run-soak") or "soak" in (config.getoption("-m") or ""):
        return
    skip = pytest.mark.skip(reason="soak test: run with --run-soak (or -m soak)")
    for item in items:
        if "soak" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="module", autouse=True)
def _frozen_heap():
    """Every full garbage collection skips what earlier test modules left alive for good.

    The trainer frees encoders and previews with ``gc.collect()`` (a few times a run), and a
    full collection walks every object the process tracks: in a test process that has imported
    torch, diffusers, transformers and PySide6 that is over half a million objects (a third of
    a second of CPU or more, per collection). Objects alive when a test module starts (imported
    modules, session fixtures) outlive it, so they are collected once here and then frozen
    (``gc.freeze``: kept out of later collections); what the module creates is collected as usual.
    """
    gc.collect()
    gc.freeze()
    yield


@pytest.fixture
def runners():
    """Register WorkerRunners: whatever a test leaves running is killed and reaped after it."""
    made = []

    def register(runner):
        made.append(runner)
        return runner

    yield register
    for r in made:
        if r.is_running():
            r.kill()
        r.wait(10)
