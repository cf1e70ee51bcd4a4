"""Entry point for ``python main.py`` and for the frozen (PyInstaller) bundle.

In a bundle ``sys.executable`` is the app itself, not a Python interpreter, so the GUI
starts its training worker as ``<app> --worker CONFIG``; this file routes that to the
worker, ``--self-test`` to the bundle's smoke test, a lone existing path (a folder dropped
on the app's icon) to the app with that folder open, and everything else to the CLI
(``<app> demo DIR``, ``<app> train …``, no arguments: the app). ``freeze_support`` must run
first so multiprocessing children of a frozen app (DataLoader workers, accelerate) don't
start a second GUI.

A windowed Windows exe starts with ``sys.stdout``/``sys.stderr``/``sys.stdin`` = None:
libraries that print or log (tqdm, warnings, transformers) would then crash. Before
anything else runs, each missing stream is re-attached to the OS handle the parent passed
(a pipe, when the app itself started this process with subprocess), or else to the null
device.
"""

import multiprocessing
import os
import sys


def _stream_from_std_handle(fd: int):
    """Windows: a text stream on the std handle ``fd`` (0, 1, 2) that the parent passed, or None."""
    if sys.platform != "win32":
        return None
    try:
        import ctypes
        import msvcrt

        kernel32 = ctypes.WinDLL("kernel32", use_last_error=True)
        kernel32.GetStdHandle.restype = ctypes.c_void_p
        handle = kernel32.GetStdHandle((-10, -11, -12)[fd])  # STD_INPUT/OUTPUT/ERROR_HANDLE
        if not handle or handle == ctypes.c_void_p(-1).value:
            return None
        new_fd = msvcrt.open_osfhandle(handle, os.O_RDONLY if fd == 0 else os.O_WRONLY)
        if new_fd != fd:
            os.dup2(new_fd, fd)
            os.close(new_fd)
        return open(fd, "r" if fd == 0 else "w", encoding="utf-8", errors="replace",
                    buffering=1, closefd=False)
    except (OSError, ValueError, AttributeError):
        return None


def ensure_std_streams() -> None:
    """Give every missing standard stream a usable object (see the module docstring)."""
    for fd, name in enumerate(("stdin", "stdout", "stderr")):
        if getattr(sys, name) is not None:
            continue
        stream = _stream_from_std_handle(fd)
        if stream is None:
            stream = open(os.devnull, "r" if fd == 0 else "w", encoding="utf-8")
        setattr(sys, name, stream)
        if getattr(sys, f"__{name}__", None) is None:
            setattr(sys, f"__{name}__", stream)


def _commands() -> set[str]:
    import argparse

    from lorastudio.cli import build_parser

    return {name for action in build_parser()._actions if isinstance(action, argparse._SubParsersAction)
            for name in action.choices}


def _entry(argv: list[str]) -> int:
    from lorastudio.cli import main as cli_main

    if argv and argv[0] == "--worker":
        return cli_main(["worker", *argv[1:]])
    if argv and argv[0] == "--self-test":
        return cli_main(["self-test", *argv[1:]])
    if len(argv) == 1 and not argv[0].startswith("-") and argv[0] not in _commands() and os.path.exists(argv[0]):
        # A folder or project dropped on the app's icon, or "Open with LoRA Studio".
        return cli_main(["gui", argv[0]])
    return cli_main(argv)


if __name__ == "__main__":
    multiprocessing.freeze_support()
    ensure_std_streams()
    sys.exit(_entry(sys.argv[1:]))
