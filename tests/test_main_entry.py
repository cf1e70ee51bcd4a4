"""main.py as the frozen bundle runs it, and the PyInstaller spec's sanity (no build here).

Building the bundle takes many minutes (``packaging/build.py``); these tests cover, in
seconds, what the bundle relies on: ``main.py`` routes ``--worker`` to the worker and the
subcommands to the CLI, a frozen app's children are started through it, a windowed app's
missing std streams are replaced, and the spec names the entry script, every model family,
no other Qt binding and no UPX.
"""

from __future__ import annotations

import ast
import importlib.util
import os
import pkgutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from lorastudio import protocol

ROOT = Path(__file__).resolve().parents[1]
MAIN = ROOT / "main.py"
SPEC = ROOT / "packaging" / "lorastudio.spec"
sys.path.insert(0, str(ROOT / "packaging"))

import bundle_layout  # noqa: E402


def _env() -> dict[str, str]:
    return dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", PYTHONIOENCODING="utf-8")


def _events(stdout: str) -> list[dict]:
    return protocol.decode_stream(stdout.splitlines())


def _load_main():
    spec = importlib.util.spec_from_file_location("lorastudio_main_entry", MAIN)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# -- main.py dispatch ------------------------------------------------------------------------


def test_worker_flag_runs_the_worker_on_a_bad_config(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("[train]\nsteps = \n", encoding="utf-8")
    proc = subprocess.run([sys.executable, str(MAIN), "--worker", str(bad)], capture_output=True, text=True,
                          timeout=120, env=_env(), stdin=subprocess.DEVNULL)
    events = _events(proc.stdout)  # stdout carries only events: every line decodes
    assert proc.returncode != 0
    assert [e["event"] for e in events] == ["error"]
    assert events[0]["kind"] == "config"
    assert str(bad) in events[0]["message"]


def test_worker_flag_on_a_missing_config_names_it(tmp_path):
    missing = tmp_path / "nowhere" / "project.toml"
    proc = subprocess.run([sys.executable, str(MAIN), "--worker", str(missing)], capture_output=True, text=True,
                          timeout=120, env=_env(), stdin=subprocess.DEVNULL)
    events = _events(proc.stdout)
    assert proc.returncode != 0
    assert events[-1]["event"] == "error" and "not found" in events[-1]["message"]


def test_other_arguments_go_to_the_cli():
    proc = subprocess.run([sys.executable, str(MAIN), "--version"], capture_output=True, text=True, timeout=60,
                          env=_env())
    assert proc.returncode == 0
    assert proc.stdout.startswith("LoRA Studio ")
    proc = subprocess.run([sys.executable, str(MAIN), "self-test", "--help"], capture_output=True, text=True,
                          timeout=60, env=_env())
    assert proc.returncode == 0 and "--steps" in proc.stdout


def test_entry_maps_the_bundle_flags(monkeypatch):
    main = _load_main()
    seen = []
    monkeypatch.setattr("lorastudio.cli.main", lambda argv: seen.append(argv) or 0)
    assert main._entry(["--worker", "p.toml", "--resume"]) == 0
    assert main._entry(["--self-test", "--steps", "2"]) == 0
    assert main._entry(["check", "DIR"]) == 0
    assert seen == [["worker", "p.toml", "--resume"], ["self-test", "--steps", "2"], ["check", "DIR"]]


def test_a_dropped_path_opens_in_the_app(monkeypatch, tmp_path):
    main = _load_main()
    seen = []
    monkeypatch.setattr("lorastudio.cli.main", lambda argv: seen.append(argv) or 0)
    main._entry([str(tmp_path)])
    main._entry([str(tmp_path / "missing.toml")])  # not a path that exists: the CLI says what is wrong
    monkeypatch.chdir(tmp_path)
    (tmp_path / "check").mkdir()  # a folder named like a command is still the command
    main._entry(["check"])
    assert seen == [["gui", str(tmp_path)], [str(tmp_path / "missing.toml")], ["check"]]


# -- a windowed app's missing std streams ---------------------------------------------------


def test_missing_std_streams_get_usable_objects(monkeypatch):
    main = _load_main()
    for name in ("stdin", "stdout", "stderr"):
        monkeypatch.setattr(sys, name, None)
    main.ensure_std_streams()
    try:
        assert sys.stdout is not None and sys.stderr is not None and sys.stdin is not None
        sys.stdout.write("ignored\n")  # libraries write without checking; must not raise
        sys.stderr.write("ignored\n")
        sys.stdout.flush()
        assert sys.stdin.read() == ""
    finally:
        for stream in (sys.stdin, sys.stdout, sys.stderr):
            stream.close()


def test_closed_std_fds_at_start_are_replaced():
    """fd 0-2 closed at start-up, as in a windowed exe with nothing attached: Python then sets
    the streams to None, and main.py's guard must give them objects libraries can write to."""
    if sys.platform == "win32":
        pytest.skip("closes POSIX file descriptors")
    code = ("import runpy, sys\n"
            "if sys.stdout is not None or sys.stderr is not None: sys.exit(10)  # nothing to test\n"
            f"main = runpy.run_path({str(MAIN)!r})\n"
            "main['ensure_std_streams']()\n"
            "sys.stdout.write('x'); sys.stderr.write('y'); sys.stdout.flush(); sys.stdin.read()\n")

    def close_std_fds():
        for fd in (0, 1, 2):
            os.close(fd)

    proc = subprocess.run([sys.executable, "-c", code], timeout=60, env=_env(), preexec_fn=close_std_fds)
    assert proc.returncode == 0, proc.returncode


# -- a frozen app starts its children through main.py ---------------------------------------


def _fake_bundle(tmp_path: Path) -> Path:
    """An executable standing in for the bundle: runs main.py with this interpreter."""
    exe = tmp_path / "bundle" / "LoRAStudio"
    exe.parent.mkdir()
    exe.write_text(f"#!/bin/sh\nexec {sys.executable} {MAIN} \"$@\"\n", encoding="utf-8")
    exe.chmod(exe.stat().st_mode | stat.S_IXUSR)
    return exe


@pytest.mark.slow
def test_frozen_command_lines_make_the_demo_and_train_through_main(tmp_path, monkeypatch):
    """What the app does in a bundle: ``<app> demo DIR``, then ``<app> --worker CONFIG``."""
    if sys.platform == "win32":
        pytest.skip("uses a POSIX shell script as the stand-in bundle")
    exe = _fake_bundle(tmp_path)
    monkeypatch.setattr(sys, "frozen", True, raising=False)
    monkeypatch.setattr(sys, "executable", str(exe))
    demo_argv = protocol.lorastudio_command_line("demo", str(tmp_path / "demo"))
    worker_argv = protocol.worker_command_line(tmp_path / "demo" / "project.toml")
    monkeypatch.undo()
    assert demo_argv == [str(exe), "demo", str(tmp_path / "demo")]
    assert worker_argv == [str(exe), "--worker", str(tmp_path / "demo" / "project.toml")]

    made = subprocess.run(demo_argv, capture_output=True, text=True, timeout=300, env=_env())
    assert made.returncode == 0, made.stderr
    project = tmp_path / "demo" / "project.toml"
    from lorastudio.selftest import check_lora_file, shorten_demo

    shorten_demo(project, steps=2)
    # stdin stays open, as the app keeps it: the worker stops when its stdin ends.
    with open(tmp_path / "stderr.txt", "w+", encoding="utf-8") as err:
        proc = subprocess.Popen(worker_argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=err, text=True,
                                encoding="utf-8", env=_env(), cwd=str(project.parent))
        try:
            stdout = proc.stdout.read()  # until the worker exits after its last event
            returncode = proc.wait(timeout=600)
        finally:
            proc.stdin.close()
            if proc.poll() is None:
                proc.kill()
        err.seek(0)
        stderr = err.read()
    events = _events(stdout)
    kinds = [e["event"] for e in events]
    assert returncode == 0, (kinds, stderr[-3000:])
    assert kinds[0] == "started" and kinds[-1] == "done"
    assert [e["step"] for e in events if e["event"] == "progress"] == [1, 2]
    header = check_lora_file(Path(events[-1]["lora"]), "kontext")
    assert any(k.endswith(".alpha") for k in header)


def test_windows_children_use_the_console_twin(tmp_path, monkeypatch):
    app = tmp_path / "LoRAStudio.exe"
    app.write_bytes(b"")
    monkeypatch.setattr(sys, "frozen", True, raising=False)
    monkeypatch.setattr(sys, "executable", str(app))
    monkeypatch.setattr(sys, "platform", "win32")
    assert protocol.frozen_child_executable() == str(app)  # no twin: the app itself
    (tmp_path / protocol.WINDOWS_CLI_EXE).write_bytes(b"")
    assert protocol.worker_command_line("p.toml") == [str(tmp_path / protocol.WINDOWS_CLI_EXE), "--worker", "p.toml"]
    assert protocol.WINDOWS_CLI_EXE == bundle_layout.child_executable_name("win32")


# -- the self-test's LoRA check --------------------------------------------------------------


def test_lora_header_check(tmp_path):
    import torch
    from safetensors.torch import save_file

    good = tmp_path / "good.safetensors"
    save_file({"transformer.x.lora_A.weight": torch.zeros(2, 4), "transformer.x.lora_B.weight": torch.zeros(4, 2),
               "transformer.x.alpha": torch.tensor(2.0)}, str(good), metadata={"lorastudio.family": "kontext"})
    from lorastudio.selftest import SelfTestError, check_lora_file, read_safetensors_header

    assert set(read_safetensors_header(good)) == {"__metadata__", "transformer.x.lora_A.weight",
                                                 "transformer.x.lora_B.weight", "transformer.x.alpha"}
    check_lora_file(good, "kontext")
    with pytest.raises(SelfTestError, match="family"):
        check_lora_file(good, "qwen-image")
    plain = tmp_path / "plain.safetensors"
    save_file({"w": torch.zeros(2)}, str(plain))
    with pytest.raises(SelfTestError, match="LoRA A/B"):
        check_lora_file(plain)
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(b"\x05\x00\x00\x00\x00\x00\x00\x00{oops")
    with pytest.raises(SelfTestError, match="not JSON"):
        read_safetensors_header(junk)


# -- the spec --------------------------------------------------------------------------------


def _spec_tree() -> ast.Module:
    return ast.parse(SPEC.read_text(encoding="utf-8"), filename=str(SPEC))


def _calls(tree: ast.AST, name: str) -> list[ast.Call]:
    return [n for n in ast.walk(tree) if isinstance(n, ast.Call) and isinstance(n.func, ast.Name) and n.func.id == name]


def test_spec_is_one_folder_without_upx_and_names_main():
    tree = _spec_tree()
    (analysis,) = _calls(tree, "Analysis")
    assert "main.py" in ast.unparse(analysis.args[0])
    assert _calls(tree, "COLLECT"), "one-folder builds end in COLLECT"
    for call in _calls(tree, "EXE") + _calls(tree, "COLLECT"):
        keywords = {k.arg: ast.unparse(k.value) for k in call.keywords}
        if "upx" in keywords:
            assert keywords["upx"] == "False"
    common = next(n for n in ast.walk(tree) if isinstance(n, ast.Assign) and getattr(n.targets[0], "id", "") == "common")
    common_kw = {k.arg: ast.unparse(k.value) for k in common.value.keywords}
    assert common_kw["upx"] == "False" and common_kw["exclude_binaries"] == "True"
    text = ast.unparse(analysis)
    assert "EXCLUDES" in text and "family_modules" in ast.unparse(tree)


def test_spec_hidden_imports_cover_every_family_module():
    import lorastudio.training.families as families

    on_disk = {f"lorastudio.training.families.{m.name}" for m in pkgutil.iter_modules(families.__path__)}
    listed = set(bundle_layout.family_modules(ROOT))
    assert on_disk <= listed
    assert "lorastudio.training.families" in listed
    for name in listed:
        assert importlib.util.find_spec(name) is not None, name
    hidden = next(n for n in ast.walk(_spec_tree())
                  if isinstance(n, ast.Assign) and getattr(n.targets[0], "id", "") == "hiddenimports")
    assert "family_modules(ROOT)" in ast.unparse(hidden.value)


def test_bundle_lists_exclude_other_qt_bindings_and_keep_what_the_app_needs():
    for name in ("PyQt5", "PyQt6", "PySide2", "tkinter", "triton", "pytest"):
        assert name in bundle_layout.EXCLUDES
    for name in ("torch", "diffusers", "transformers", "tokenizers", "safetensors", "accelerate", "peft",
                 "huggingface_hub"):
        assert name in bundle_layout.METADATA_PACKAGES
    assert {"diffusers", "transformers"} <= set(bundle_layout.SOURCE_PACKAGES)
    for platform in ("linux", "win32"):
        plugins = bundle_layout.REQUIRED_QT_PLUGINS[platform]
        assert any("webp" in p for p in plugins) and any("svgicon" in p for p in plugins)
    # the core names are real, installed distributions (a typo would be skipped with a message)
    from importlib import metadata

    for dist in ("lorastudio", "torch", "diffusers", "transformers", "tokenizers", "safetensors", "accelerate",
                 "peft", "huggingface_hub", "numpy", "pillow", "PySide6_Essentials", "qasync", "platformdirs"):
        assert dist in bundle_layout.METADATA_PACKAGES
        metadata.distribution(dist)


def test_resources_are_found_in_a_bundle(tmp_path, monkeypatch):
    """ui/theme.py looks in sys._MEIPASS/resources first when frozen (where the spec puts them)."""
    from lorastudio.ui import theme

    (tmp_path / "resources" / "icons").mkdir(parents=True)
    (tmp_path / "resources" / "style.qss").write_text("/* bundled */", encoding="utf-8")
    monkeypatch.setattr(sys, "frozen", True, raising=False)
    monkeypatch.setattr(sys, "_MEIPASS", str(tmp_path), raising=False)
    assert theme.resources_dir() == tmp_path / "resources"
    spec_text = SPEC.read_text(encoding="utf-8")
    assert '(str(ROOT / "resources"), "resources")' in spec_text


def test_windows_icon_is_made_from_the_svg(tmp_path):
    from PIL import Image

    from make_icon import ICO_SIZES, make_ico

    ico = make_ico(ROOT / "resources" / "icons" / "app.svg", tmp_path / "app.ico")
    with Image.open(ico) as image:
        assert {s[0] for s in image.info["sizes"]} == set(ICO_SIZES)
        image.size = (256, 256)
        rgba = image.convert("RGBA")
        assert rgba.getpixel((128, 128))[3] == 255  # the icon is drawn, not blank
        assert rgba.getpixel((0, 0))[3] == 0  # rounded corners stay transparent


def test_windows_version_resource_text():
    """The text PyInstaller evals into a VSVersionInfo on Windows (its module imports only there):
    evaluated here against stand-ins with the same signatures."""
    import lorastudio

    made: dict[str, list] = {}

    def recorder(name, *params):
        def make(*args, **kwargs):
            bound = dict(zip(params, args), **kwargs)
            assert set(bound) <= set(params), (name, bound)
            made.setdefault(name, []).append(bound)
            return (name, bound)
        return make

    namespace = {
        "VSVersionInfo": recorder("VSVersionInfo", "ffi", "kids"),
        "FixedFileInfo": recorder("FixedFileInfo", "filevers", "prodvers", "mask", "flags", "OS", "fileType",
                                  "subtype", "date"),
        "StringFileInfo": recorder("StringFileInfo", "kids"),
        "StringTable": recorder("StringTable", "name", "kids"),
        "StringStruct": recorder("StringStruct", "name", "val"),
        "VarFileInfo": recorder("VarFileInfo", "kids"),
        "VarStruct": recorder("VarStruct", "name", "kids"),
    }
    text = bundle_layout.windows_version_text(lorastudio.__version__)
    result = eval(compile(text, "version_info.txt", "eval"), namespace)  # noqa: S307 - our own text
    assert result[0] == "VSVersionInfo"
    (ffi,) = made["FixedFileInfo"]
    numbers = [int(p) for p in lorastudio.__version__.split(".")]
    assert list(ffi["filevers"][:len(numbers)]) == numbers and len(ffi["filevers"]) == 4
    strings = {s["name"]: s["val"] for s in made["StringStruct"]}
    assert strings["FileVersion"] == strings["ProductVersion"] == lorastudio.__version__
    assert strings["OriginalFilename"] == "LoRAStudio.exe" and strings["ProductName"] == "LoRA Studio"


def test_only_the_bitsandbytes_kernels_for_the_bundled_cuda():
    keep = bundle_layout.keep_binary
    assert keep("bitsandbytes/libbitsandbytes_cuda130.so", "13.0")
    assert keep("bitsandbytes/libbitsandbytes_cpu.so", "13.0")
    assert not keep("bitsandbytes/libbitsandbytes_cuda118.so", "13.0")
    assert not keep("bitsandbytes/libbitsandbytes_rocm72.so", "13.0")
    assert not keep("bitsandbytes\\libbitsandbytes_cuda126.dll", "12.8")
    assert keep("bitsandbytes\\libbitsandbytes_cuda128.dll", "12.8")
    assert keep("bitsandbytes/libbitsandbytes_cuda118.so", None)  # CPU torch: leave them all
    assert keep("torch/lib/libtorch_cuda.so", "13.0") and keep("libcudart.so.13", "13.0")
