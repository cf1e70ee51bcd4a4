"""Regression guard: the installed PySide6 must not leak references to None.

PySide6 6.12.0 on Python 3.11 drops one reference to ``None`` on every Python method Qt
calls back (``QRunnable.run``, ``QThread.run``, ``event()`` overrides …) and aborts with
``Fatal Python error: none_dealloc`` after a few thousand calls — the thumbnail loader
alone makes that many. pyproject.toml excludes that release; this test catches any other
release with the same bug before an artist does.
"""

import os
import subprocess
import sys
import textwrap

import pytest

pytest.importorskip("PySide6")

CALLBACKS = 5000

_PROBE = textwrap.dedent(
    f"""
    import os, sys
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    from PySide6.QtCore import QCoreApplication, QRunnable, QThreadPool

    app = QCoreApplication([])

    class Job(QRunnable):
        def run(self):
            pass

    pool = QThreadPool.globalInstance()
    # Warm up so one-time caches don't count as a change.
    for _ in range(50):
        pool.start(Job())
    pool.waitForDone()

    before = sys.getrefcount(None)
    for _ in range({CALLBACKS}):
        pool.start(Job())
    pool.waitForDone()
    after = sys.getrefcount(None)
    print(before, after)
    """
)


def test_qrunnable_callbacks_do_not_leak_none_references():
    # A separate process: if the bug is present the interpreter may abort, which must
    # fail this test rather than take the whole test session down.
    proc = subprocess.run([sys.executable, "-c", _PROBE], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "QT_QPA_PLATFORM": "offscreen"})
    assert proc.returncode == 0, f"probe crashed (PySide6 None-refcount bug?):\n{proc.stderr[-2000:]}"
    before, after = map(int, proc.stdout.split())
    # None is immortal on 3.12+ (refcount constant); on 3.11 it must not fall.
    assert after >= before - 10, f"sys.getrefcount(None) fell from {before} to {after} over {CALLBACKS} callbacks"


def test_excluded_release_is_not_installed():
    from importlib.metadata import version

    import PySide6

    assert PySide6.__version__ != "6.12.0", "PySide6 6.12.0 leaks None references; pyproject.toml excludes it"
    assert version("PySide6-Essentials") != "6.12.0"
