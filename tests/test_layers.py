"""The layer rules (DESIGN.md "The shape"), checked on every module's import statements.

* the core — ``dataset``, ``config``, ``protocol``, ``catalog``, ``run_folder``,
  ``model_folder``, ``session``, ``project``, ``user_folders``, ``estimate``, ``fileio`` — imports neither Qt nor torch
  (nor anything that pulls torch in), nor ``ui`` or ``training``;
* ``training`` never imports Qt or ``ui``;
* ``ui`` never imports ``training``, torch, diffusers or transformers: the GUI talks to a
  worker process;
* ``ui`` and ``training`` both read the shared facts from the core (the catalog, the run
  folder's layout), rather than each keeping a copy.

Every ``import`` counts, also those inside functions, so a lazy import cannot slip through.
"""

from __future__ import annotations

import ast
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "lorastudio"
CORE_MODULES = ("config", "config_rules", "adapter_rules", "protocol", "catalog", "lora_targets", "run_folder", "model_folder", "session", "project", "user_folders",
                "memory_presets", "estimate", "fileio")
CORE = sorted([*(PACKAGE / "dataset").glob("*.py"),
               *(p for p in (PACKAGE / f"{m}.py" for m in CORE_MODULES) if p.exists())])
TRAINING = sorted((PACKAGE / "training").rglob("*.py"))
UI = sorted((PACKAGE / "ui").rglob("*.py"))

QT = ("PySide6", "shiboken6", "qasync")
TORCH_STACK = ("torch", "torchvision", "diffusers", "transformers", "peft", "accelerate", "bitsandbytes",
               "safetensors")


def imports(path: Path) -> set[str]:
    """Every module name ``path`` imports (absolute names; relative imports resolved)."""
    package = ".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts[:-1])
    names = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*parent, base] if base else parent)
            names.add(base)
            names.update(f"{base}.{a.name}" for a in node.names)  # "from lorastudio import training"
    return names


def offending(path: Path, forbidden: tuple[str, ...]) -> list[str]:
    return sorted(n for n in imports(path) if any(n == f or n.startswith(f + ".") for f in forbidden))


def _id(path: Path) -> str:
    return str(path.relative_to(PACKAGE))


@pytest.mark.parametrize("path", CORE, ids=_id)
def test_core_imports_neither_qt_nor_torch(path):
    assert not offending(path, (*QT, *TORCH_STACK, "lorastudio.ui", "lorastudio.training")), _id(path)


@pytest.mark.parametrize("path", TRAINING, ids=_id)
def test_training_never_imports_qt(path):
    assert not offending(path, (*QT, "lorastudio.ui")), _id(path)


@pytest.mark.parametrize("path", UI, ids=_id)
def test_ui_never_imports_the_training_stack(path):
    assert not offending(path, (*TORCH_STACK, "lorastudio.training")), _id(path)


def test_ui_and_training_read_the_shared_facts_from_the_core():
    def users(paths, module):
        return [p for p in paths if any(n == module or n.startswith(module + ".") for n in imports(p))]

    for module in ("lorastudio.catalog", "lorastudio.run_folder", "lorastudio.model_folder"):
        assert users(TRAINING, module), f"training does not read {module}"
    assert users(UI, "lorastudio.run_folder") and users(UI, "lorastudio.model_folder")


def test_core_modules_import_cleanly_without_qt_or_torch():
    """The same rule at run time: importing the core (and what it imports in turn) in an
    interpreter where Qt and torch cannot be imported at all."""
    names = [f"lorastudio.{p.stem}" for p in CORE if p.parent == PACKAGE]
    script = textwrap.dedent(f"""
        import importlib, sys

        class Refuse:
            def find_spec(self, name, path=None, target=None):
                if name.split(".")[0] in {(*QT, *TORCH_STACK)!r}:
                    raise ImportError("the core must not import " + name)

        sys.meta_path.insert(0, Refuse())
        for name in {names!r}:
            importlib.import_module(name)
        print("CLEAN")
    """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120,
                          cwd=PACKAGE.parent)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "CLEAN"
