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
