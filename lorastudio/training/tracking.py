"""Logging for power users (``train.log_with = "tensorboard"``), through accelerate's trackers.

accelerate owns the tracker (``Accelerator(log_with=..., project_dir=...)``): the loss and
learning rate every step, the held-out ``validation/loss``, and the preview images, go to
``run_dir/logs/`` for ``tensorboard --logdir``. tensorboard is an optional dependency (``pip install
lorastudio[tensorboard]``); :func:`check_available` says so before any model loads.
"""

from __future__ import annotations

from typing import Any

from lorastudio.run_folder import logs_dir  # noqa: F401  (the tracker's folder, stated once there)

#: The tracker's project name: the subfolder of ``run_dir/logs`` it writes to.
PROJECT = "lorastudio"


def check_available(log_with: str) -> str | None:
    """None when ``log_with`` can run here, else the message for a config error."""
    if not log_with:
        return None
    from accelerate.utils import is_tensorboard_available

    if log_with == "tensorboard" and not is_tensorboard_available():
        return ("train.log_with: \"tensorboard\" needs the tensorboard package, which is not installed "
                "(pip install \"lorastudio[tensorboard]\", or remove the key)")
    return None


class Tracker:
    """The run's tracker on the main process (no-op when ``train.log_with`` is empty)."""

    def __init__(self, accelerator, log_with: str, hyperparameters: dict[str, Any]) -> None:
        self.accelerator = accelerator
        self.on = bool(log_with) and accelerator.is_main_process
        if self.on:
            accelerator.init_trackers(PROJECT, config=hyperparameters)

    def log(self, values: dict[str, float], step: int) -> None:
        if self.on:
            self.accelerator.log(values, step=step)

    def image(self, name: str, image, step: int) -> None:
        """One preview (a PIL image) under ``samples/<name>``."""
        if not self.on:
            return
        import numpy as np

        array = np.asarray(image.convert("RGB"))[None]  # (1, H, W, 3)
        for tracker in self.accelerator.trackers:
            tracker.log_images({f"samples/{name}": array}, step=step, dataformats="NHWC")

    def end(self) -> None:
        """Finish the trackers only: ``Accelerator.end_training`` would also destroy the process
        group, and in a multi-process run the other ranks still meet rank 0 at the final barrier."""
        if self.on:
            for tracker in self.accelerator.trackers:
                tracker.finish()
