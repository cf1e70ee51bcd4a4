"""Where the app keeps files on the artist's behalf (torch-free, Qt-free).

The user data folder (platformdirs) holds the demo, projects saved for a dataset on a
read-only drive and their output; the user cache folder holds thumbnails. Tests and
benchmarks point both elsewhere with ``LORASTUDIO_DATA_DIR`` / ``LORASTUDIO_CACHE_DIR``.
"""

from __future__ import annotations

import os
from pathlib import Path


def data_dir() -> Path:
    env = os.environ.get("LORASTUDIO_DATA_DIR")
    if env:
        return Path(env)
    from platformdirs import user_data_dir

    return Path(user_data_dir("lorastudio", appauthor=False))


def cache_dir() -> Path:
    env = os.environ.get("LORASTUDIO_CACHE_DIR")
    if env:
        return Path(env)
    from platformdirs import user_cache_dir

    return Path(user_cache_dir("lorastudio", appauthor=False))


def demo_dir() -> Path:
    return data_dir() / "demo"


def resources_dir() -> Path | None:
    """The ``resources`` folder (style sheet, icons, the demo's VAE): in a frozen bundle, in a
    source checkout, or in the installed package (pyproject ships it as ``lorastudio/resources``)."""
    import sys

    candidates = []
    if getattr(sys, "frozen", False):
        candidates.append(Path(getattr(sys, "_MEIPASS", Path(sys.executable).parent)) / "resources")
    here = Path(__file__).resolve()
    candidates += [here.parents[1] / "resources", here.parent / "resources"]
    for c in candidates:
        if (c / "style.qss").is_file() or (c / "icons").is_dir():
            return c
    return None
