"""The lock ``constraints.txt`` pins what a new machine installs: every runtime and test
dependency of ``pyproject.toml`` at one exact version, for Linux and Windows, and never torch.

torch and torchvision (and the CUDA libraries only they pull in) stay outside: the right
build depends on the machine's GPU and is chosen by TORCH_INDEX/TORCH_SPEC. A dependency
added to pyproject.toml without refreshing the lock (``bash tools/lock.sh``) fails here.
"""

from __future__ import annotations

import sys
from pathlib import Path

from packaging.markers import Marker
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[1]
LOCK = ROOT / "constraints.txt"
OUTSIDE_THE_LOCK = {"torch", "torchvision"}
#: Marker environments of the two platforms the app ships for (CPython 3.11, x86-64).
PLATFORMS = {
    "linux": {"sys_platform": "linux", "platform_system": "Linux", "os_name": "posix", "platform_machine": "x86_64"},
    "windows": {"sys_platform": "win32", "platform_system": "Windows", "os_name": "nt", "platform_machine": "AMD64"},
}


def _declared() -> list[Requirement]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    return [Requirement(r) for r in [*project["dependencies"], *project["optional-dependencies"]["test"]]]


def _locked() -> list[Requirement]:
    pins = []
    for line in LOCK.read_text(encoding="utf-8").splitlines():
        text = line.split("#", 1)[0].strip()
        if text:
            pins.append(Requirement(text))
    return pins


def _applies(pin: Requirement, platform: str) -> bool:
    env = {"python_version": "3.11", "python_full_version": "3.11.7", **PLATFORMS[platform]}
    return pin.marker is None or Marker(str(pin.marker)).evaluate(env)


def test_every_line_is_one_exact_version():
    for pin in _locked():
        specs = list(pin.specifier)
        assert len(specs) == 1 and specs[0].operator == "==", f"{pin} in {LOCK.name} is not an exact pin"


def test_every_declared_dependency_is_pinned_on_linux_and_windows_within_its_range():
    pins = _locked()
    for declared in _declared():
        name = canonicalize_name(declared.name)
        if name in OUTSIDE_THE_LOCK:
            continue
        for platform in PLATFORMS:
            found = [p for p in pins if canonicalize_name(p.name) == name and _applies(p, platform)]
            assert len(found) == 1, f"{declared.name} has {len(found)} pins for {platform} in {LOCK.name}: " \
                                    "run bash tools/lock.sh"
            version = next(iter(found[0].specifier)).version
            assert declared.specifier.contains(version, prereleases=True), \
                f"{LOCK.name} pins {declared.name}=={version}, outside pyproject's {declared.specifier}"


def test_torch_and_its_cuda_libraries_stay_outside_the_lock():
    names = {canonicalize_name(p.name) for p in _locked()}
    assert not names & OUTSIDE_THE_LOCK
    assert not {n for n in names if n.startswith(("nvidia-", "cuda-")) or n == "triton"}


def test_the_lock_says_how_to_refresh_it():
    assert "bash tools/lock.sh" in LOCK.read_text(encoding="utf-8").splitlines()[1]
