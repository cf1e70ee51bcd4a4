"""``lorastudio check [DIR] [--json] [--config PROJECT.toml]``: validate a dataset folder from
the command line (with a project, its held-out validation sets are marked).

Exit status: 0 when at least one set is ready to train and nothing is an error, 1 when
there is an error or nothing to train, 2 when the folder does not exist (or cannot be
read). ``--json`` prints the one object DESIGN.md defines; the text report is for people.

Output never crashes on a console that cannot show a file name (a Windows code page, a
pipe with an ASCII locale): text is printed with unknown characters replaced, and JSON is
escaped to pure ASCII unless the stream is UTF-8, so machine readers always get the exact
names back.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TextIO

from lorastudio.dataset.held_out import held_out_problem
from lorastudio.dataset.model import Dataset
from lorastudio.dataset.report import format_report
from lorastudio.dataset.scan import scan_dataset

EXIT_OK = 0
EXIT_NOT_READY = 1
EXIT_NO_FOLDER = 2


def check_command(path: Path | None, as_json: bool, config: Path | None = None) -> int:
    """Scan ``path``, print the report (or JSON) to stdout and return the exit status.

    With ``config`` (a project .toml), ``path`` defaults to its ``dataset.path`` and its
    held-out sets (``dataset.validation``) are marked; a held-out list the dataset cannot
    satisfy is an error on stderr (exit 1), as the trainer would refuse it."""
    out = _tolerant(sys.stdout)
    err = _tolerant(sys.stderr)
    held_out: list[str] = []
    if config is not None:
        from lorastudio.config import ConfigError, load_config

        try:
            project = load_config(config, check_paths=False)
        except ConfigError as exc:
            print(f"lorastudio check: {exc}", file=err)
            return EXIT_NO_FOLDER
        path = path or project.dataset.path
        held_out = project.dataset.validation
    if path is None:
        print("lorastudio check: give a dataset folder, or --config PROJECT.toml", file=err)
        return EXIT_NO_FOLDER
    try:
        dataset = scan_dataset(path)
    except FileNotFoundError:
        print(f"lorastudio check: no such folder: {path}", file=err)
        return EXIT_NO_FOLDER
    except NotADirectoryError:
        print(f"lorastudio check: not a folder: {path}", file=err)
        return EXIT_NO_FOLDER
    except OSError as exc:
        print(f"lorastudio check: cannot read {path}: {exc.strerror or exc}", file=err)
        return EXIT_NO_FOLDER

    if as_json:
        ascii_only = not _is_utf8(out)
        out.write(json.dumps(dataset.to_check_json(held_out), ensure_ascii=ascii_only, indent=2) + "\n")
    else:
        out.write(format_report(dataset, held_out))
    out.flush()
    problem = held_out_problem(dataset, held_out) if held_out else None
    if problem:
        print(f"lorastudio check: {config}: {problem}", file=err)
        err.flush()
        return EXIT_NOT_READY
    return exit_status(dataset)


def exit_status(dataset: Dataset) -> int:
    """0 when something trains and nothing is an error, else 1."""
    return EXIT_OK if dataset.trainable_sets() and not dataset.error_count else EXIT_NOT_READY


def _tolerant(stream: TextIO) -> TextIO:
    """The same stream, set to replace characters its encoding cannot represent."""
    reconfigure = getattr(stream, "reconfigure", None)
    if reconfigure is not None:
        try:
            reconfigure(errors="replace")
        except (ValueError, OSError):  # closed or detached: leave it as it is
            pass
    return stream


def _is_utf8(stream: TextIO) -> bool:
    encoding = (getattr(stream, "encoding", None) or "").lower().replace("_", "-")
    return encoding in ("utf-8", "utf8", "utf-8-sig")
