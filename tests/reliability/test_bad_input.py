"""Bad input: every broken, odd or hostile file is named in a clear message, nothing crashes,
and odd-but-valid images train the way they look.

Three places read images — the dataset check (headers), the thumbnails (Qt) and training
(full decode) — and each is fed the same files. Model folders that are incomplete, wrongly
indexed or hold pickle weights are refused before anything loads.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

import bad_images as bad
from rel_helpers import write_config, worker_env

# -- the dataset check, thumbnails and decoding of broken files ---------------------------------

#: file → (maker, problem code the check gives, or None when only a full decode can tell)
BROKEN = {
    "trunc_jpeg_start.jpg": (lambda p: bad.truncated(p, "JPEG"), "unreadable_image"),
    "trunc_png_start.png": (lambda p: bad.truncated(p, "PNG"), "unreadable_image"),
    "trunc_webp_start.webp": (lambda p: bad.truncated(p, "WEBP"), "unreadable_image"),
    "corrupt_jpeg_start.jpg": (lambda p: bad.corrupt_middle(p, "JPEG"), "unreadable_image"),
    "corrupt_png_start.png": (lambda p: bad.corrupt_middle(p, "PNG"), None),
    "corrupt_webp_start.webp": (lambda p: bad.corrupt_middle(p, "WEBP"), None),
    "zero_bytes_start.png": (bad.empty, "empty_file"),
    "bomb_start.png": (bad.bomb, "image_too_large"),
    "huge_photo_start.png": (lambda p: bad.bomb(p, side=20000), "image_too_large"),  # 20,000 × 20,000
}


@pytest.fixture
def broken_dataset(tmp_path) -> Path:
    ds = tmp_path / "broken"
    ds.mkdir()
    for name, (make, _code) in BROKEN.items():
        make(ds / name)
        bad.save(ds / name.replace("_start", "_end").rsplit(".", 1)[0].__add__(".png"), bad.picture((64, 64)))
    bad.save(ds / "fine_start.png", bad.picture((64, 64)))
    bad.save(ds / "fine_end.png", bad.picture((64, 64)))
    return ds


def test_check_names_every_broken_file_and_keeps_the_good_set(broken_dataset):
    from lorastudio.dataset import Severity, scan_dataset

    dataset = scan_dataset(broken_dataset)
    by_file = {f: p for p in dataset.problems for f in p.files}
    for name, (_make, code) in BROKEN.items():
        if code is None:
            continue
        problem = by_file.get(name)
        assert problem is not None, f"no problem names {name}: {[(p.code, p.files) for p in dataset.problems]}"
        assert problem.code == code and problem.severity is Severity.ERROR, (name, problem)
        assert f'"{name}"' in problem.message and len(problem.message) > 40, problem.message
    trainable = {s.name for s in dataset.trainable_sets()}
    assert "fine" in trainable
    assert not trainable & {n.split("_start")[0] for n, (_m, c) in BROKEN.items() if c}

    # the same through the command line, as JSON (exit status 1: problems)
    proc = subprocess.run([sys.executable, "-m", "lorastudio", "check", str(broken_dataset), "--json"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1, proc.stderr
    report = json.loads(proc.stdout)
    named = {f for p in report["problems"] for f in p["files"]}
    assert {n for n, (_m, c) in BROKEN.items() if c} <= named
    print("\n" + "\n".join(f"{p['code']}: {p['message']}" for p in report["problems"] if p["severity"] == "error"))


def test_every_broken_file_fails_decoding_with_its_name(broken_dataset):
    """Training decodes fully: what the header check cannot see (bit rot in the middle of a
    PNG or WebP) is caught here, as an ImageError naming the file, never a crash."""
    from lorastudio.dataset import ImageError, load_image

    for name in BROKEN:
        with pytest.raises(ImageError) as info:
            load_image(broken_dataset / name)
        assert f'"{name}"' in str(info.value), str(info.value)


def test_thumbnails_of_broken_and_odd_files_never_crash(broken_dataset, tmp_path, qapp):
    from lorastudio.ui.thumbnails import decode_thumbnail

    odd = _odd_dataset(tmp_path / "odd")
    errors = {}
    for path in sorted(broken_dataset.iterdir()) + sorted(odd.iterdir()):
        if path.suffix == ".txt":
            continue
        image, error = decode_thumbnail(str(path), 96)
        assert image.isNull() == bool(error), (path.name, error)
        if error:
            errors[path.name] = error
        else:
            assert image.width() <= 96 and image.height() <= 96
    for name in ("zero_bytes_start.png", "bomb_start.png", "huge_photo_start.png", "trunc_webp_start.webp"):
        assert name in errors, f"{name} made a thumbnail: {errors}"
    rotated, _ = decode_thumbnail(str(odd / "exif_start.jpg"), 96)
    assert rotated.height() > rotated.width(), "the EXIF orientation is applied in thumbnails"


# -- odd but valid images: converted to RGB and trained the way they look -----------------------

WEIRD_NAME = "my cat 'single' \"double\" 🐱 café ü"


def _odd_dataset(ds: Path) -> Path:
    ds.mkdir(parents=True)
    bad.png16(ds / "sixteen_bit_start.png")
    bad.palette_with_transparency(ds / "palette_start.png")
    bad.cmyk_jpeg(ds / "cmyk_start.jpg")
    bad.rgba_png(ds / "alpha_start.png")
    bad.exif_rotated_jpeg(ds / "exif_start.jpg")
    bad.exif_rotated_jpeg(ds / "exif_end.jpg")
    bad.one_pixel(ds / "one_pixel_start.png")
    bad.one_pixel(ds / "one_pixel_end.png")
    bad.panorama(ds / "panorama_start.png")
    bad.panorama(ds / "panorama_end.png")
    bad.save(ds / f"{WEIRD_NAME}_start.png", bad.picture((48, 48)))
    for name in ("sixteen_bit", "palette", "cmyk", "alpha", WEIRD_NAME):
        bad.save(ds / f"{name}_end.png", bad.picture((48, 48)))
    # captions in other encodings
    (ds / f"{WEIRD_NAME}.txt").write_bytes("café crème, naïve".encode("cp1252"))
    (ds / "palette.txt").write_bytes("\ufeffnaïve palette — “quoted”".encode("utf-16"))
    (ds / "cmyk.txt").write_bytes("\ufeffcyan ink".encode("utf-8") + b"\r\n")
    return ds


def test_odd_modes_become_the_rgb_a_viewer_shows():
    from lorastudio.dataset import load_image

    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        ds = _odd_dataset(Path(tmp) / "odd")
        expect = {  # file → (left/top pixel, right/bottom pixel) as a viewer shows it
            "sixteen_bit_start.png": ((255, 255, 255), (0, 0, 0)),  # 16-bit white scaled, not clipped
            "palette_start.png": ((255, 255, 255), (30, 30, 220)),  # transparent index → white
            "alpha_start.png": ((255, 255, 255), (30, 30, 220)),  # transparent red → white
            "cmyk_start.jpg": ((255, 255, 255), (0, 255, 255)),  # no ink → white, cyan ink → cyan
        }
        for name, (left, right) in expect.items():
            im = load_image(ds / name)
            assert im.mode == "RGB" and im.size == (48, 48), name
            assert _close(im.getpixel((2, 24)), left) and _close(im.getpixel((45, 24)), right), \
                (name, im.getpixel((2, 24)), im.getpixel((45, 24)))
        upright = load_image(ds / "exif_start.jpg")  # stored 64×32 landscape, EXIF "rotate 90°"
        assert upright.size == (32, 64)
        assert _close(upright.getpixel((16, 4)), (220, 30, 30)) and _close(upright.getpixel((16, 60)), (30, 30, 220))
        assert load_image(ds / "one_pixel_start.png").size == (1, 1)
        assert load_image(ds / "panorama_start.png").size == (20000, 16)


def _close(a, b, tol=12) -> bool:
    return all(abs(x - y) <= tol for x, y in zip(a, b))


def test_odd_images_names_and_encodings_train_and_sample(demo, tmp_path):
    """16-bit, palette, CMYK, alpha, EXIF-rotated, 1×1, 20,000-pixel-wide images, a set name
    with spaces, quotes, emoji and accents, captions in cp1252/UTF-16/UTF-8-BOM: the check
    warns where it should, and a real run caches, trains and writes previews for all of them."""
    from lorastudio.config import load_config
    from lorastudio.dataset import scan_dataset
    from lorastudio.training.events import NullSink
    from lorastudio.training.trainer import train

    ds = _odd_dataset(tmp_path / "odd")
    dataset = scan_dataset(ds)
    names = {s.name for s in dataset.trainable_sets()}
    assert names == {"sixteen_bit", "palette", "cmyk", "alpha", "exif", "one_pixel", "panorama", WEIRD_NAME}
    sets = {s.name: s for s in dataset.sets}
    assert sets[WEIRD_NAME].caption == "café crème, naïve"
    assert sets["palette"].caption == "naïve palette — “quoted”"
    assert sets["cmyk"].caption == "cyan ink"
    enc = [p for p in dataset.problems if p.code == "caption_encoding"]
    assert [list(p.files) for p in enc] == [[f"{WEIRD_NAME}.txt"]] and "Windows-1252" in enc[0].message, enc

    cfg = write_config(demo, tmp_path / "run", dataset=ds, steps=2, checkpoint_every=0, sample_sets=8,
                       sample_steps=1)
    sink = NullSink()
    result = train(load_config(cfg), sink, keep_model=True)
    assert sink.history[-1]["event"] == "done" and result.lora.is_file()
    cached = {c.name: c for c in result.cached}
    w, h = cached["exif"].bucket
    assert h > w, f"the EXIF-rotated photo must train upright (portrait), got bucket {w}x{h}"
    assert cached[WEIRD_NAME].caption == "café crème, naïve"
    samples = [e for e in sink.history if e["event"] == "sample"]
    assert {e["set"] for e in samples} == names
    for e in samples:
        assert Path(e["path"]).is_file() and Path(e["path"]).parent == load_config(cfg).output.run_dir / "samples"


def test_bit_rot_found_only_by_decoding_stops_training_naming_the_file(demo, tmp_path):
    from lorastudio.config import load_config
    from lorastudio.training.events import NullSink
    from lorastudio.training.plan import classify
    from lorastudio.training.trainer import train

    ds = tmp_path / "ds"
    ds.mkdir()
    bad.save(ds / "good_start.png", bad.picture((48, 48)))
    bad.save(ds / "good_end.png", bad.picture((48, 48)))
    bad.corrupt_middle(ds / "rotten_start.png", "PNG")
    bad.save(ds / "rotten_end.png", bad.picture((64, 64)))
    cfg = write_config(demo, tmp_path / "run", dataset=ds, steps=2)
    with pytest.raises(Exception) as info:
        train(load_config(cfg), NullSink())
    kind, message = classify(info.value)
    assert kind == "data" and '"rotten_start.png"' in message and "export it again" in message, message


# -- a dataset on a read-only disk --------------------------------------------------------------


@contextlib.contextmanager
def read_only(folder: Path):
    """Make ``folder`` read-only as a disk is: a read-only bind mount when we may mount
    (root on Linux), else os.replace/os.open patched to fail with EROFS (and say so)."""
    if sys.platform == "linux" and os.geteuid() == 0 and shutil.which("mount"):
        mounted = subprocess.run(["mount", "--bind", "-o", "ro", str(folder), str(folder)],
                                 capture_output=True).returncode == 0
        if mounted:
            try:
                probe = folder / ".probe"
                try:
                    probe.write_text("x")
                    probe.unlink()
                    raise AssertionError("the read-only bind mount is writable")
                except OSError:
                    pass
                yield "bind mount"
            finally:
                subprocess.run(["umount", str(folder)], check=False)
            return
    import errno

    real_mkstemp = __import__("tempfile").mkstemp

    def refuse(*args, **kwargs):
        if Path(kwargs.get("dir", "")).resolve() == folder.resolve():
            raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(folder))
        return real_mkstemp(*args, **kwargs)

    import tempfile

    tempfile.mkstemp = refuse
    try:
        print("\n(read-only disk simulated: no permission to mount here; tempfile.mkstemp raises EROFS)")
        yield "patched"
    finally:
        tempfile.mkstemp = real_mkstemp


def test_read_only_dataset_browses_and_caption_save_says_why(qtbot, tmp_path):
    from lorastudio.dataset import scan_dataset
    from lorastudio.ui.caption_editor import CaptionEditor
    from lorastudio.ui.thumbnails import decode_thumbnail

    ds = tmp_path / "ro"
    ds.mkdir()
    for part in ("start", "end"):
        bad.save(ds / f"cat_{part}.png", bad.picture((48, 48)))
    (ds / "cat.txt").write_text("a cat\n", encoding="utf-8")
    with read_only(ds) as how:
        dataset = scan_dataset(ds)
        assert [s.name for s in dataset.trainable_sets()] == ["cat"]
        assert not any(p.severity.value == "error" for p in dataset.problems)
        image, error = decode_thumbnail(str(ds / "cat_start.png"), 64)
        assert not image.isNull() and not error
        editor = CaptionEditor(delay_ms=50)
        qtbot.addWidget(editor)
        editor.set_image_set(dataset.sets[0])
        editor.edit.setPlainText("a cat on a read-only disk")
        assert editor.flush() is False
        message = editor.error_bar.label.text()
        print(f"\n[{how}] caption save: {message}")
        assert "Read-only file system" in message and "Your text stays here" in message
        assert editor.text() == "a cat on a read-only disk" and editor.has_unsaved()
        assert (ds / "cat.txt").read_text(encoding="utf-8") == "a cat\n"


# -- model folders --------------------------------------------------------------------------------

def _broken_model(demo: Path, tmp_path: Path, how: str) -> Path:
    model = tmp_path / f"model-{how}"
    shutil.copytree(demo / "model", model)
    index = model / "model_index.json"
    if how == "missing-component":
        shutil.rmtree(model / "vae")
    elif how == "missing-weights":
        (model / "transformer" / "diffusion_pytorch_model.safetensors").unlink()
    elif how == "missing-config":
        (model / "transformer" / "config.json").unlink()
    elif how == "truncated-weights":
        f = model / "transformer" / "diffusion_pytorch_model.safetensors"
        f.write_bytes(f.read_bytes()[: f.stat().st_size // 2])
    elif how == "missing-shard":
        f = model / "transformer" / "diffusion_pytorch_model.safetensors"
        f.rename(f.with_name("diffusion_pytorch_model-00001-of-00002.safetensors"))
        (model / "transformer" / "diffusion_pytorch_model.safetensors.index.json").write_text(json.dumps(
            {"metadata": {}, "weight_map": {"a": "diffusion_pytorch_model-00001-of-00002.safetensors",
                                            "b": "diffusion_pytorch_model-00002-of-00002.safetensors"}}))
    elif how == "pickle-weights":
        for f in (model / "transformer").glob("*.safetensors"):
            f.rename(f.with_suffix(".bin"))
    elif how == "unknown-pipeline":
        data = json.loads(index.read_text())
        data["_class_name"] = "StableDiffusionXLPipeline"
        index.write_text(json.dumps(data))
    elif how == "no-class-name":
        data = json.loads(index.read_text())
        del data["_class_name"]
        index.write_text(json.dumps(data))
    elif how == "not-json":
        index.write_text('{"_class_name": "FluxKontextPipeline", ')
    elif how == "no-index":
        index.unlink()
    return model


MODEL_CASES = {
    "missing-component": "vae/ is missing",
    "missing-weights": "transformer/ has no weights",
    "missing-config": "transformer/ in",
    "truncated-weights": "is cut short",
    "missing-shard": "diffusion_pytorch_model-00002-of-00002.safetensors is missing",
    "pickle-weights": "loads safetensors only",
    "unknown-pipeline": "StableDiffusionXLPipeline model, which LoRA Studio does not train",
    "no-class-name": "_class_name is missing",
    "not-json": "is not valid JSON",
    "no-index": "has no model_index.json",
}


@pytest.mark.parametrize("how", list(MODEL_CASES))
def test_bad_model_folder_is_refused_before_loading(how, demo, tmp_path, monkeypatch):
    """Refused with a sentence naming what is wrong, and nothing is unpickled or half loaded."""
    from lorastudio.training.families import ModelFolderError, detect_family
    from lorastudio.training.families.kontext import KontextFamily

    import torch

    model = _broken_model(demo, tmp_path, how)
    monkeypatch.setattr(torch, "load", lambda *a, **k: pytest.fail("torch.load was called"))
    with pytest.raises(ModelFolderError) as info:
        family_cls = detect_family(model)
        family = family_cls(model, torch.device("cpu"), torch.float32)
        assert isinstance(family, KontextFamily)
        family.load_encoders()  # the deeper checks run before the first load
    message = str(info.value)
    print(f"\n{how}: {message}")
    assert MODEL_CASES[how] in message, message


def test_bad_model_folder_through_the_worker_is_a_config_error(demo, tmp_path):
    """The worker process reports an incomplete folder as a ``config`` error naming model.path."""
    from lorastudio import protocol

    model = _broken_model(demo, tmp_path, "missing-config")
    cfg = write_config(demo, tmp_path / "run", model=model)
    proc = subprocess.run([sys.executable, "-m", "lorastudio", "train", str(cfg), "--jsonl"], capture_output=True,
                          text=True,
                          timeout=300, stdin=subprocess.DEVNULL, env=worker_env(tmp_path))
    events = [protocol.decode(line) for line in proc.stdout.splitlines() if line.strip()]
    assert proc.returncode == 1 and events[-1]["event"] == "error", proc.stdout[-2000:]
    assert events[-1]["kind"] == "config" and "model.path" in events[-1]["message"]
    assert "config.json" in events[-1]["message"]


def test_gui_names_a_wrong_model_index_without_torch(demo, tmp_path):
    from lorastudio.model_folder import detect_model_folder

    for how in ("unknown-pipeline", "not-json", "no-index"):
        info = detect_model_folder(_broken_model(demo, tmp_path, how))
        assert not info.supported and len(info.message) > 20, (how, info)
