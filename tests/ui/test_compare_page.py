"""The Test tab: `lorastudio sample` twice (base, then with the LoRA), results side by side."""

from __future__ import annotations

import sys

from lorastudio.cli import build_parser
from lorastudio.dataset import scan_dataset
from lorastudio.ui import compare_page
from lorastudio.ui.compare_page import ComparePage, sample_command
from lorastudio.ui.thumbnails import ThumbnailLoader

from .conftest import make_dataset

FAKE_SAMPLER = (
    "import sys\n"
    "from PIL import Image\n"
    "args = sys.argv[1:]\n"
    "out = args[args.index('--out') + 1]\n"
    "Image.new('RGB', (48, 48), (0, 200, 0) if '--lora' in args else (200, 0, 0)).save(out)\n"
)


def test_sample_command_matches_the_cli():
    argv = sample_command("/m", "/l.safetensors", ["/a.png", "/b.png"], "-make it blue", "/o.png", 8, 3, 0.8)
    assert argv[:3] == [sys.executable, "-m", "lorastudio"]
    args = build_parser().parse_args(argv[3:])
    assert args.command == "sample" and args.model == "/m" and args.lora == "/l.safetensors"
    assert args.input == ["/a.png", "/b.png"] and args.prompt == "-make it blue"
    assert (args.out, args.steps, args.seed, args.scale) == ("/o.png", 8, 3, 0.8)
    base = build_parser().parse_args(sample_command("/m", None, [], "x", "/o.png", 8, 3, 1.0)[3:])
    assert base.lora is None and base.input == [] and args.input_size == base.input_size == "auto"
    rule = build_parser().parse_args(sample_command("/m", None, [], "x", "/o.png", 8, 3, 1.0, "target")[3:])
    assert rule.input_size == "target"  # the project's train.input_size: inputs sized as the LoRA trained


def test_generate_base_and_lora_side_by_side(qtbot, tmp_path, monkeypatch):
    root = make_dataset(tmp_path / "ds", sets=2, inputs=2)
    sets = scan_dataset(root).sets
    lora = tmp_path / "out" / "x.safetensors"
    lora.parent.mkdir()
    lora.write_bytes(b"lora")
    calls = []

    def command_line(*args):
        calls.append(args)
        return [sys.executable, "-c", FAKE_SAMPLER, *args]

    monkeypatch.setattr(compare_page.protocol, "lorastudio_command_line", command_line)
    loader = ThumbnailLoader(None)
    page = ComparePage(loader)
    qtbot.addWidget(page)
    page.configure(str(tmp_path / "model"), tmp_path / "out", True, sets, trigger="zkw", input_size="target")
    page.set_lora(str(lora))
    assert page.set_combo.currentText() == "set000"
    assert page.prompt.toPlainText() == "zkw caption 0"
    assert [p.name for p in page.inputs()] == ["set000_start.png", "set000_start1.png"]
    with qtbot.waitSignal(page.finished, timeout=30000) as blocker:
        page.generate()
        assert page.is_running()
    assert blocker.args == [True]
    assert len(calls) == 2 and "--lora" not in calls[0] and "--lora" in calls[1]
    assert all(c[c.index("--input-size") + 1] == "target" for c in calls)  # sampled as the project trains
    labels = [i.label for i in page.strip.items()]
    assert labels == ["input 1", "input 2", "base model", "with LoRA", "training target"]
    base, with_lora = page.strip.items()[2].path, page.strip.items()[3].path
    assert base.is_file() and with_lora.is_file() and base != with_lora
    loader.shutdown()


def test_failures_are_explained(qtbot, tmp_path, monkeypatch):
    monkeypatch.setattr(compare_page.protocol, "lorastudio_command_line",
                        lambda *a: [sys.executable, "-c", "import sys; print('CUDA out of memory'); sys.exit(1)"])
    root = make_dataset(tmp_path / "ds", sets=1)
    loader = ThumbnailLoader(None)
    page = ComparePage(loader)
    qtbot.addWidget(page)
    page.configure("", tmp_path, True, scan_dataset(root).sets)
    page.generate()
    assert "base model in the Train tab" in page.error_bar.label.text()
    page.configure(str(tmp_path), tmp_path, True, scan_dataset(root).sets)
    page.generate()
    assert "LoRA file" in page.error_bar.label.text()
    lora = tmp_path / "l.safetensors"
    lora.write_bytes(b"x")
    page.set_lora(str(lora))
    with qtbot.waitSignal(page.finished, timeout=30000) as blocker:
        page.generate()
    assert blocker.args == [False]
    assert "CUDA out of memory" in page.error_bar.label.text()
    assert page.generate_button.isEnabled()
    loader.shutdown()


def test_the_samplers_one_line_error_is_shown_alone(qtbot, tmp_path, monkeypatch):
    """``lorastudio sample`` ends a LoRA it cannot load with one ``error:`` line (file, format,
    what to do): the tab shows that sentence, not the log lines before it."""
    lora = tmp_path / "l.safetensors"
    lora.write_bytes(b"x")
    message = f"error: --lora {lora}: diffusers' FluxKontextPipeline loader cannot load this LoRA; use one in the 'diffusers' format"
    sampler = ("import sys\nfrom PIL import Image\nargs = sys.argv[1:]\n"
               "if '--lora' not in args: Image.new('RGB', (8, 8)).save(args[args.index('--out') + 1]); sys.exit(0)\n"
               f"print('Loading pipeline components...'); print({message!r}, file=sys.stderr); sys.exit(2)\n")
    monkeypatch.setattr(compare_page.protocol, "lorastudio_command_line", lambda *a: [sys.executable, "-c", sampler, *a])
    root = make_dataset(tmp_path / "ds", sets=1)
    loader = ThumbnailLoader(None)
    page = ComparePage(loader)
    qtbot.addWidget(page)
    page.configure(str(tmp_path / "model"), tmp_path, True, scan_dataset(root).sets)
    page.set_lora(str(lora))
    with qtbot.waitSignal(page.finished, timeout=30000) as blocker:
        page.generate()
    assert blocker.args == [False]
    text = page.error_bar.label.text()
    assert f"Generating with the LoRA failed: --lora {lora}: diffusers' FluxKontextPipeline loader" in text
    assert "Loading pipeline components" not in text and "exit code" not in text
    loader.shutdown()
