"""Entry point for ``python main.py`` and for the frozen (PyInstaller) bundle.

In a bundle ``sys.executable`` is the app itself, not a Python interpreter, so the GUI
starts its training worker as ``<app> --worker CONFIG``; this file routes that to the
worker. ``freeze_support`` must run first so multiprocessing children of a frozen app
(DataLoader workers, accelerate) don't start a second GUI.
"""

import multiprocessing
import sys


def _entry(argv: list[str]) -> int:
    from lorastudio.cli import main as cli_main

    if argv and argv[0] == "--worker":
        return cli_main(["worker", *argv[1:]])
    return cli_main(argv)


if __name__ == "__main__":
    multiprocessing.freeze_support()
    sys.exit(_entry(sys.argv[1:]))
