"""The install metadata stays in step with the source tree.

The package list in pyproject.toml is explicit (so the top-level ``resources/`` folder can
ship inside the wheel as ``lorastudio.resources``); a new sub-package that is not listed
would silently be missing from a wheel, so this test fails first.
"""

from __future__ import annotations

import fnmatch

import sys
from pathlib import Path

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[1]


def _pyproject() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))


def test_every_subpackage_is_listed_for_the_wheel():
    listed = set(_pyproject()["tool"]["setuptools"]["packages"])
    found = {
        ".".join(p.parent.relative_to(ROOT).parts)
        for p in (ROOT / "lorastudio").rglob("__init__.py")
    }
    assert found - listed == set(), f"add these to [tool.setuptools] packages: {sorted(found - listed)}"


def test_resources_ship_inside_the_package():
    tool = _pyproject()["tool"]["setuptools"]
    assert tool["package-dir"]["lorastudio.resources"] == "resources"
    assert (ROOT / "resources" / "style.qss").is_file()
    icons = list((ROOT / "resources" / "icons").glob("*.svg"))
    assert icons, "resources/icons holds the app's SVG icons"
    # The demo's trained VAE (tools/train_demo_vae.py) and pretrained Kontext transformer
    # (tools/train_demo_transformer.py) ship in the wheel too.
    patterns = tool["package-data"]["lorastudio.resources"]
    for folder in ("demo_vae", "demo_transformer"):
        for name in ("config.json", "diffusion_pytorch_model.safetensors"):
            assert (ROOT / "resources" / folder / name).is_file()
            assert any(fnmatch.fnmatch(f"{folder}/{name}", pattern) for pattern in patterns), (folder, name)


def test_pyside_requirement_excludes_the_leaking_release():
    deps = _pyproject()["project"]["dependencies"]
    pyside = [d for d in deps if d.lower().startswith("pyside6")]
    assert pyside and all("!=6.12.0" in d for d in pyside)


def test_cli_offers_a_demo_of_every_catalog_family():
    from lorastudio import catalog, cli

    parser = cli.build_parser()
    for family in catalog.FAMILY_IDS:
        assert parser.parse_args(["demo", "out", "--family", family]).family == family
