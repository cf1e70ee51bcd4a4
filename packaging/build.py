"""Build the LoRA Studio bundle from a clean virtual environment, then smoke-test it.

    python packaging/build.py [--venv DIR] [--reuse-venv] [--torch-index URL] [--skip-smoke]

1. creates a fresh venv (outside the repository; default ``../lorastudio-buildvenv``);
2. installs torch + torchvision first (``--torch-index`` picks the CUDA wheels for a real
   build, e.g. https://download.pytorch.org/whl/cu128), then the project and PyInstaller,
   every dependency at the version the tests passed with (the lock ``constraints.txt``);
3. runs PyInstaller on ``packaging/lorastudio.spec`` (one folder, UPX off);
4. checks the bundle (executables, Qt plugins, resources, no other Qt binding, no tests),
   prints where it is, its size and what dominates it;
5. runs ``<bundle> --self-test`` on the finished bundle (window, demo, a short training run
   through the frozen worker, the LoRA loads) and fails the build if it fails.

Figures (build time, size, top folders, smoke-test time) are written to
``dist/build-report.json``. Run it with any Python >= 3.11 (the venv is made with the same
interpreter). It takes a while: most of the time is PyInstaller analysing torch and copying
several GB of CUDA libraries.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import time
import venv
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))

from bundle_layout import APP_NAME, REQUIRED_QT_PLUGINS, executable_name  # noqa: E402

#: What this machine's pip installs (the versions the project is tested with). A real
#: Windows/Linux release build passes ``--torch-index`` for the CUDA wheels.
DEFAULT_TORCH = ("torch==2.14.1", "torchvision==0.29.1")
#: The exact versions the suite passed with (all but torch/torchvision; tools/lock.sh writes it).
LOCK_FILE = ROOT / "constraints.txt"
#: Folders that must never be in the bundle (other Qt bindings, test code, tkinter).
FORBIDDEN = ("PyQt5", "PyQt6", "PySide2", "tkinter", "_tkinter", "tests", "pytest", "triton")


def log(message: str) -> None:
    print(f"[build] {message}", flush=True)


def run(argv: list[str], **kwargs) -> None:
    log("$ " + " ".join(str(a) for a in argv))
    subprocess.run([str(a) for a in argv], check=True, **kwargs)


def venv_python(venv_dir: Path) -> Path:
    return venv_dir / ("Scripts/python.exe" if sys.platform == "win32" else "bin/python")


def make_venv(venv_dir: Path, reuse: bool, torch: list[str], torch_index: str | None, extra_pip: list[str]) -> Path:
    py = venv_python(venv_dir)
    if reuse and py.is_file():
        log(f"reusing the build venv {venv_dir}")
        return py
    if ROOT in venv_dir.resolve().parents or venv_dir.resolve() == ROOT:
        raise SystemExit(f"the build venv must be outside the repository (got {venv_dir})")
    if venv_dir.exists():
        log(f"removing the old build venv {venv_dir}")
        shutil.rmtree(venv_dir)
    log(f"creating a clean venv in {venv_dir}")
    venv.EnvBuilder(with_pip=True, clear=True).create(venv_dir)
    pip = [py, "-m", "pip", "install", "--disable-pip-version-check", *extra_pip]
    # torch first, from the CUDA index when given: the project's own requirement would
    # otherwise pull whatever build the default index has.
    run([*pip, *torch, *(["--index-url", torch_index] if torch_index else [])])
    run([*pip, "-c", LOCK_FILE, str(ROOT), "pyinstaller>=6.10"])
    return py


def folder_size(path: Path) -> int:
    total = 0
    for p in path.rglob("*"):
        if p.is_file() and not p.is_symlink():
            total += p.stat().st_size
    return total


def cuda_bytes(bundle: Path) -> int:
    """Bytes of the CUDA libraries: nvidia/* and torch's own CUDA libraries."""
    contents = bundle / "_internal"
    total = folder_size(contents / "nvidia") if (contents / "nvidia").is_dir() else 0
    for p in (contents / "torch" / "lib").glob("*"):
        if p.is_file() and not p.is_symlink() and ("cuda" in p.name.lower() or "nvrtc" in p.name.lower()
                                                   or "nvshmem" in p.name.lower()):
            total += p.stat().st_size
    return total


def breakdown(bundle: Path, top: int = 15) -> list[tuple[str, int]]:
    """Sizes of what the bundle holds: its executables (the bytecode archive is inside them)
    and one level into the contents folder (and into nvidia/)."""
    contents = bundle / "_internal" if (bundle / "_internal").is_dir() else bundle
    entries: list[tuple[str, int]] = [(p.name, p.stat().st_size) for p in bundle.iterdir() if p.is_file()]
    for child in contents.iterdir():
        if child.name == "nvidia" and child.is_dir():  # the CUDA libraries, one line per package
            for sub in child.iterdir():
                entries.append((f"nvidia/{sub.name}", folder_size(sub) if sub.is_dir() else sub.stat().st_size))
            continue
        if child.is_symlink():
            continue
        entries.append((child.name, folder_size(child) if child.is_dir() else child.stat().st_size))
    entries.sort(key=lambda e: e[1], reverse=True)
    return entries[:top]


def check_bundle(bundle: Path) -> list[str]:
    """Problems with the finished bundle (empty list: fine)."""
    problems = []
    contents = bundle / "_internal"
    exe = bundle / executable_name()
    if not exe.is_file():
        problems.append(f"missing executable {exe}")
    if sys.platform == "win32" and not (bundle / executable_name("lorastudio-cli")).is_file():
        problems.append("missing the console twin lorastudio-cli.exe")
    plugins = contents / "PySide6" / "Qt" / "plugins"
    if sys.platform == "win32":
        plugins = contents / "PySide6" / "plugins"
    for rel in REQUIRED_QT_PLUGINS.get(sys.platform, ()):
        if not (plugins / rel).is_file():
            problems.append(f"missing Qt plugin {rel} (looked in {plugins})")
    for rel in ("resources/style.qss", "resources/icons/app.svg", "resources/demo_vae/config.json",
                "resources/demo_vae/diffusion_pytorch_model.safetensors", "resources/demo_transformer/config.json",
                "resources/demo_transformer/diffusion_pytorch_model.safetensors"):
        if not (contents / rel).is_file():
            problems.append(f"missing {rel}")
    for name in ("torch", "diffusers", "transformers", "peft", "safetensors", "accelerate", "huggingface_hub"):
        if not list(contents.glob(f"{name}-*.dist-info")):
            problems.append(f"missing package metadata of {name} (copy_metadata)")
    if not list((contents / "torchvision").glob("_C*")):
        problems.append("missing torchvision's compiled ops (torchvision/_C*)")
    for name in FORBIDDEN:
        if (contents / name).exists():
            problems.append(f"{name} must not be in the bundle")
    return problems


def smoke_test(bundle: Path, steps: int, keep: Path | None) -> float:
    exe = bundle / executable_name()
    if sys.platform == "win32":
        exe = bundle / executable_name("lorastudio-cli")  # prints to this console; same code as the app
    env = dict(os.environ, QT_QPA_PLATFORM="offscreen", HF_HUB_OFFLINE="1")
    argv = [exe, "--self-test", "--steps", str(steps),
            *(["--keep", keep, "--screenshot", Path(keep) / "window.png"] if keep else [])]
    t = time.monotonic()
    run(argv, env=env, cwd=str(bundle.parent))
    return time.monotonic() - t


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--venv", default=str(ROOT.parent / "lorastudio-buildvenv"),
                        help="the build venv (outside the repo; default: %(default)s)")
    parser.add_argument("--reuse-venv", action="store_true", help="use the venv as it is if it exists")
    parser.add_argument("--torch", nargs="+", default=list(DEFAULT_TORCH), metavar="REQ",
                        help="torch requirements installed first (default: %(default)s)")
    parser.add_argument("--torch-index", help="pip index for torch (the CUDA wheels), e.g. "
                                              "https://download.pytorch.org/whl/cu128")
    parser.add_argument("--pip-arg", action="append", default=[], help="extra argument for every pip install")
    parser.add_argument("--dist", default=str(ROOT / "dist"), help="where the bundle goes (default: %(default)s)")
    parser.add_argument("--work", default=str(ROOT / "build" / "pyinstaller"), help="PyInstaller's work folder")
    parser.add_argument("--skip-smoke", action="store_true", help="do not run the self-test on the bundle")
    parser.add_argument("--smoke-steps", type=int, default=4)
    parser.add_argument("--keep-smoke", metavar="DIR", help="keep the self-test's files in DIR")
    args = parser.parse_args(argv)

    t_start = time.monotonic()
    report: dict = {"platform": platform.platform(), "python": platform.python_version()}
    py = make_venv(Path(args.venv).absolute(), args.reuse_venv, args.torch, args.torch_index, args.pip_arg)
    report["venv_seconds"] = round(time.monotonic() - t_start, 1)
    versions = subprocess.run([py, "-c", "import torch, PyInstaller, PySide6; print(torch.__version__, "
                               "torch.version.cuda, PyInstaller.__version__, PySide6.__version__)"],
                              capture_output=True, text=True, check=True).stdout.split()
    report.update(torch=versions[0], cuda=versions[1], pyinstaller=versions[2], pyside6=versions[3])
    log(f"torch {versions[0]} (CUDA {versions[1]}), PyInstaller {versions[2]}, PySide6 {versions[3]}")

    dist, work = Path(args.dist).absolute(), Path(args.work).absolute()
    t = time.monotonic()
    run([py, "-m", "PyInstaller", HERE / "lorastudio.spec", "--noconfirm", "--clean", "--distpath", dist,
         "--workpath", work], cwd=str(ROOT))
    report["pyinstaller_seconds"] = round(time.monotonic() - t, 1)

    bundle = dist / APP_NAME
    problems = check_bundle(bundle)
    size = folder_size(bundle)
    report["bundle"] = str(bundle)
    report["bundle_bytes"] = size
    report["top"] = [{"path": name, "bytes": n} for name, n in breakdown(bundle)]
    log(f"bundle: {bundle}")
    cuda = cuda_bytes(bundle)
    report["cuda_bytes"] = cuda
    log(f"size:   {size / 1e9:.2f} GB ({sum(1 for _ in bundle.rglob('*'))} files), of which CUDA libraries "
        f"{cuda / 1e9:.2f} GB")
    log("largest parts:")
    for name, n in breakdown(bundle):
        log(f"  {n / 1e6:9.1f} MB  {name}")
    if problems:
        for p in problems:
            log(f"PROBLEM: {p}")
        (dist / "build-report.json").write_text(json.dumps({**report, "problems": problems}, indent=2))
        return 1

    if not args.skip_smoke:
        log("smoke test: <bundle> --self-test")
        keep = Path(args.keep_smoke).absolute() if args.keep_smoke else None
        try:
            report["smoke_test_seconds"] = round(smoke_test(bundle, args.smoke_steps, keep), 1)
        except subprocess.CalledProcessError as exc:
            log(f"the smoke test FAILED (exit {exc.returncode}); see its output above")
            (dist / "build-report.json").write_text(json.dumps({**report, "smoke_test": "failed"}, indent=2))
            return 1
        log(f"smoke test passed in {report['smoke_test_seconds']:.0f} s")
    report["total_seconds"] = round(time.monotonic() - t_start, 1)
    (dist / "build-report.json").write_text(json.dumps(report, indent=2))
    log(f"done in {report['total_seconds'] / 60:.1f} min; figures in {dist / 'build-report.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
