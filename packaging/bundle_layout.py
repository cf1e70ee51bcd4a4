"""What goes into the bundle, in one place: the spec, build.py and the tests read these lists.

Pure Python (no PyInstaller import), so a fast test can check the lists against the source
tree without building anything.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

#: The app's executable (``LoRAStudio`` / ``LoRAStudio.exe``) and the bundle folder's name.
APP_NAME = "LoRAStudio"
#: Windows only: the console twin of the windowed app. Children (worker, demo, sample) run
#: it, and artists use it from a terminal. Not ``lorastudio.exe``: Windows file names ignore
#: case, so it would clash with ``LoRAStudio.exe``.
CLI_NAME = "lorastudio-cli"

#: Distributions whose metadata (``*.dist-info``) the bundle must carry: libraries that check
#: versions at import time (``importlib.metadata.version``) — diffusers decides torch is
#: absent without torch's, transformers and peft check their dependencies' versions.
METADATA_PACKAGES = (
    "lorastudio",
    "torch", "torchvision", "numpy", "safetensors",
    "diffusers", "transformers", "tokenizers", "huggingface_hub", "hf-xet",
    "accelerate", "peft",
    "pillow", "filelock", "fsspec", "packaging", "regex", "requests", "tqdm", "pyyaml", "psutil",
    "importlib_metadata", "typing_extensions", "jinja2", "sympy",
    "platformdirs", "qasync", "PySide6_Essentials", "shiboken6", "tomli_w", "bitsandbytes",
)

#: Packages kept as ``.py`` sources next to their bytecode (``pyz+py``): they read their own
#: sources (``inspect.getsource``) or locate files relative to ``__file__``.
SOURCE_PACKAGES = ("diffusers", "transformers", "peft", "accelerate")

#: Never collected. Other Qt bindings (qasync or a library probing for one must not drag
#: a second Qt in); GUI toolkits and the scientific/notebook stack nothing here uses; test
#: code; triton (torch.compile's GPU compiler, ~0.9 GB, not used: torch runs eager without it).
EXCLUDES = (
    "PyQt5", "PyQt6", "PySide2", "sip", "tkinter", "_tkinter", "turtle", "idlelib",
    "matplotlib", "scipy", "pandas", "sklearn", "IPython", "ipykernel", "jupyter", "notebook",
    "tensorboard", "tensorflow", "keras", "jax", "jaxlib", "flax", "onnx", "onnxruntime", "cv2",
    "triton", "torch.utils.tensorboard",
    "pytest", "_pytest", "pytestqt", "py", "tests",
)

#: Qt plugins the app needs at run time; build.py fails the build if one is missing.
#: (``platforms``: the window itself, ``offscreen`` for the smoke test; ``imageformats``:
#: the dataset's JPEG/WebP/TIFF pictures and SVG; ``iconengines``: the SVG icons.)
REQUIRED_QT_PLUGINS = {
    "linux": ("platforms/libqxcb.so", "platforms/libqoffscreen.so", "imageformats/libqjpeg.so",
              "imageformats/libqwebp.so", "imageformats/libqtiff.so", "imageformats/libqsvg.so",
              "iconengines/libqsvgicon.so"),
    "win32": ("platforms/qwindows.dll", "platforms/qoffscreen.dll", "imageformats/qjpeg.dll",
              "imageformats/qwebp.dll", "imageformats/qtiff.dll", "imageformats/qsvg.dll",
              "iconengines/qsvgicon.dll"),
}


def family_modules(root: Path) -> list[str]:
    """Every module under ``lorastudio/training/families`` (hidden imports of the spec)."""
    folder = Path(root) / "lorastudio" / "training" / "families"
    return sorted(f"lorastudio.training.families.{p.stem}" for p in folder.glob("*.py") if p.stem != "__init__") + [
        "lorastudio.training.families"]


def executable_name(name: str = APP_NAME, platform: str = sys.platform) -> str:
    return f"{name}.exe" if platform == "win32" else name


def child_executable_name(platform: str = sys.platform) -> str:
    """The executable the app starts its children with (see CLI_NAME)."""
    return executable_name(CLI_NAME if platform == "win32" else APP_NAME, platform)



def windows_version_text(version: str) -> str:
    """The exe's Windows version resource (Explorer's Details tab) in the text format of
    PyInstaller's ``version=`` file (the format ``pyi-grab_version`` writes). A text file and
    not a ``VSVersionInfo`` object because PyInstaller's versioninfo module imports only on
    Windows, and the text can be checked anywhere."""
    numbers = [int(p) for p in version.split(".")[:4] if p.isdigit()]
    parts = tuple(numbers + [0] * (4 - len(numbers)))
    strings = {
        "CompanyName": "LoRA Studio",
        "FileDescription": "LoRA Studio: train LoRAs on your own GPU, offline",
        "FileVersion": version,
        "InternalName": APP_NAME,
        "OriginalFilename": f"{APP_NAME}.exe",
        "ProductName": "LoRA Studio",
        "ProductVersion": version,
        "LegalCopyright": "Apache-2.0 license",
    }
    table = ",\n".join(f"          StringStruct({k!r}, {v!r})" for k, v in strings.items())
    return f"""# UTF-8
VSVersionInfo(
  ffi=FixedFileInfo(
    filevers={parts!r},
    prodvers={parts!r},
    mask=0x3f,
    flags=0x0,
    OS=0x40004,
    fileType=0x1,
    subtype=0x0,
    date=(0, 0)
  ),
  kids=[
    StringFileInfo([
      StringTable(
        '040904B0',
        [
{table}
        ])
    ]),
    VarFileInfo([VarStruct('Translation', [1033, 1200])])
  ]
)
"""


_BNB_LIB = re.compile(r"libbitsandbytes_(cuda\d+|rocm\d+|xpu\d+)\.(so|dll|dylib)$")


def keep_binary(dest_name: str, torch_cuda: str | None) -> bool:
    """False for bitsandbytes kernels built for another CUDA (or ROCm/XPU) than the bundled torch.

    bitsandbytes ships one library per toolkit (cuda118 … cuda132, rocm…, xpu…: ~125 MB) and
    loads the one named after ``torch.version.cuda``; the bundle has exactly one torch, so
    it needs exactly that one (and the CPU one). Without a CUDA torch, nothing is dropped.
    """
    match = _BNB_LIB.search(dest_name.replace("\\", "/").rsplit("/", 1)[-1])
    if match is None or not torch_cuda:
        return True
    return match.group(1) == "cuda" + torch_cuda.replace(".", "")
