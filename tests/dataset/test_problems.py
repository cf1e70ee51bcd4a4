"""Every problem code: what triggers it, its severity, the files it names, its set."""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest
from PIL import Image

from lorastudio.dataset import SEVERITY_OF, Severity, scan_dataset
from lorastudio.dataset import scan as scan_module

GOOD = ["ok1_start.jpg", "ok1_end.jpg", "ok2_start.jpg", "ok2_end.jpg"]


def _garbage(folder: Path, name: str, data: bytes) -> None:
    (folder / name).write_bytes(data)


def _sized(size):
    def make(folder: Path, make_files, make_image) -> None:
        make_image(folder / "a_end.jpg", size)
    return make


def _cp1252_caption(folder: Path, make_files, make_image) -> None:
    (folder / "ok1.txt").write_bytes("caf\xe9 au lait, na\xefve".encode("cp1252"))


def _empty_caption(folder: Path, make_files, make_image) -> None:
    (folder / "ok1.txt").write_text("a caption", encoding="utf-8")
    (folder / "ok2.txt").write_text("  \r\n", encoding="utf-8")


#: code -> (files to create, extra setup, expected files of the problem, expected set name)
SCENARIOS = {
    "missing_end": (["a_start.jpg", *GOOD], None, ("a_start.jpg",), "a"),
    "missing_start": (["a_end.jpg", *GOOD], None, ("a_end.jpg",), "a"),
    "input_gap": (["a_start.jpg", "a_start2.jpg", "a_end.jpg", *GOOD], None, ("a_start.jpg", "a_start2.jpg"), "a"),
    "duplicate_role": (["a_start.jpg", "a_start.png", "a_end.jpg", *GOOD], None, ("a_start.jpg", "a_start.png"), "a"),
    "unreadable_image": (["a_start.jpg", *GOOD], lambda f, *_: _garbage(f, "a_end.jpg", b"this is not a jpeg"),
                         ("a_end.jpg",), "a"),
    "empty_file": (["a_start.jpg", *GOOD], lambda f, *_: _garbage(f, "a_end.jpg", b""), ("a_end.jpg",), "a"),
    "image_too_large": None,  # needs a lowered pixel limit: test_image_too_large below
    "no_images": ([".DS_Store", "notes.md"], None, (".",), None),
    "stray_image": (["foo.jpg", *GOOD], None, ("foo.jpg",), None),
    "orphan_caption": (["b.txt", *GOOD], None, ("b.txt",), None),
    "size_mismatch": (["a_start.jpg", *GOOD], _sized((32, 48)), ("a_start.jpg", "a_end.jpg"), "a"),
    "input_count_mismatch": (["a_start.jpg", "a_start1.jpg", "a_end.jpg", *GOOD], None,
                             ("a_start.jpg", "a_start1.jpg"), "a"),
    "missing_caption": (["ok1.txt", *GOOD], None, ("ok2_start.jpg", "ok2_end.jpg"), "ok2"),
    "empty_caption": (GOOD, _empty_caption, ("ok2.txt",), "ok2"),
    "caption_encoding": (GOOD, _cp1252_caption, ("ok1.txt",), "ok1"),
    "unreadable_caption": None,  # needs a read that fails: test_unreadable_caption below
    "suspicious_name": (["cat-start.jpg", "cat-end.jpg", "dog.jpg"], None, ("cat-end.jpg",), "cat-end"),
    "small_dataset": (GOOD, None, (".",), None),
}


def test_every_code_has_a_scenario_and_a_severity():
    assert set(SCENARIOS) == set(SEVERITY_OF)
    assert all(isinstance(severity, Severity) for severity in SEVERITY_OF.values())


@pytest.mark.parametrize("code", [c for c, s in SCENARIOS.items() if s is not None])
def test_problem_code(code, folder, make_files, make_image):
    names, setup, files, set_name = SCENARIOS[code]
    make_files(*names)
    if setup:
        setup(folder, make_files, make_image)
    dataset = scan_dataset(folder)
    found = [p for p in dataset.problems if p.code == code]
    assert found, f"{code} not reported; got {[p.code for p in dataset.problems]}"
    problem = found[0]
    assert problem.severity is SEVERITY_OF[code]
    assert problem.files == files
    assert problem.set_name == set_name
    # Words for an artist: about something they can find, and saying what to do.
    assert len(problem.message) > 60
    assert any(f'"{f}"' in problem.message for f in files) or f'"{set_name}"' in problem.message \
        or files == (".",)
    for file in problem.files:
        assert (folder / file).exists(), file  # every problem names files that exist
    if set_name is not None:
        assert problem in dataset.set_by_name(set_name).problems
        if problem.severity is Severity.ERROR:
            assert set_name not in [s.name for s in dataset.trainable_sets()]
        else:
            assert set_name in [s.name for s in dataset.trainable_sets()]


def test_problems_are_ordered_errors_warnings_info(folder, make_files):
    make_files("a_start.jpg", "stray.jpg", "b.txt", *GOOD)
    severities = [p.severity for p in scan_dataset(folder).problems]
    assert severities == sorted(severities, key=[Severity.ERROR, Severity.WARNING, Severity.INFO].index)
    assert severities[0] is Severity.ERROR and severities[-1] is Severity.INFO


def test_missing_end_message_says_what_to_add(folder, make_files):
    make_files("photo7_start.jpg", *GOOD)
    [problem] = [p for p in scan_dataset(folder).problems if p.code == "missing_end"]
    assert '"photo7_end"' in problem.message


def test_inputs_without_start_are_a_gap(folder, make_files):
    make_files("a_start1.jpg", "a_end.jpg", *GOOD)
    dataset = scan_dataset(folder)
    [problem] = [p for p in dataset.problems if p.code == "input_gap"]
    assert problem.files == ("a_start1.jpg",)
    assert '"a_start"' in problem.message
    assert "missing_start" not in {p.code for p in dataset.problems}


def test_gap_message_names_every_missing_input(folder, make_files):
    make_files("a_start.jpg", "a_start3.jpg", "a_end.jpg", *GOOD)
    [problem] = [p for p in scan_dataset(folder).problems if p.code == "input_gap"]
    assert '"a_start1" and "a_start2"' in problem.message


@pytest.mark.parametrize("files, expected", [
    (["a_start.jpg", "a_end.jpg", "a_end.png"], ("a_end.jpg", "a_end.png")),
    (["a_start.jpg", "a_start0.jpg", "a_end.jpg"], ("a_start.jpg", "a_start0.jpg")),
    (["a_start.jpg", "a_end.jpg", "a.txt", "a.TXT"], ("a.TXT", "a.txt")),
])
def test_duplicate_roles(folder, make_files, files, expected):
    make_files(*files, *GOOD)
    dataset = scan_dataset(folder)
    [problem] = [p for p in dataset.problems if p.code == "duplicate_role"]
    assert sorted(problem.files) == sorted(expected)
    assert dataset.set_by_name("a").has_error


def test_same_name_twice_in_a_text_to_image_folder(folder, make_files):
    make_files("cat.jpg", "cat.png", "dog.jpg")
    dataset = scan_dataset(folder)
    [problem] = [p for p in dataset.problems if p.code == "duplicate_role"]
    assert problem.files == ("cat.jpg", "cat.png")
    assert [s.name for s in dataset.trainable_sets()] == ["dog"]


@pytest.mark.parametrize("limit_factor", [0.7, 0.45], ids=["pillow-warning-range", "pillow-error-range"])
def test_image_too_large(folder, make_files, make_image, monkeypatch, limit_factor):
    """Above Pillow's limit (where it only warns) and above twice it (where it raises):
    both are a clear error, never a crash, and no warning leaks out."""
    make_files(*GOOD)
    make_image(folder / "big_start.png", (40, 40))
    make_image(folder / "big_end.png", (40, 40))
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", int(40 * 40 * limit_factor))
    # 40x40 = 1600 pixels: between the limit and twice it (0.7: Pillow only warns), or over
    # twice it (0.45: Pillow raises). The 32x32 good sets stay under the limit at 0.7.
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # any DecompressionBombWarning escaping fails the test
        dataset = scan_dataset(folder)
    big = [p for p in dataset.problems if p.code == "image_too_large" and p.set_name == "big"]
    assert [p.files for p in big] == [("big_start.png",), ("big_end.png",)]
    assert all(p.severity is Severity.ERROR for p in big)
    assert "big_start.png" in big[0].message and "Scale it down" in big[0].message
    if limit_factor == 0.7:
        assert [s.name for s in dataset.trainable_sets()] == ["ok1", "ok2"]


def test_unreadable_caption(folder, make_files, monkeypatch):
    make_files("ok1.txt", *GOOD)
    real = scan_module.read_caption_text

    def failing(path):
        if Path(path).name == "ok1.txt":
            raise PermissionError(13, "Permission denied", str(path))
        return real(path)

    monkeypatch.setattr(scan_module, "read_caption_text", failing)
    dataset = scan_dataset(folder)
    [problem] = [p for p in dataset.problems if p.code == "unreadable_caption"]
    assert problem.files == ("ok1.txt",)
    assert problem.severity is Severity.WARNING
    assert "Permission denied" in problem.message
    assert dataset.set_by_name("ok1").caption is None
    assert "missing_caption" not in {p.code for p in dataset.problems}  # not reported twice


def test_caption_encoding_still_reads_the_text(folder, make_files):
    make_files(*GOOD)
    (folder / "ok1.txt").write_bytes("caf\xe9".encode("cp1252"))
    (folder / "ok2.txt").write_text("th\u00e9", encoding="utf-8")
    dataset = scan_dataset(folder)
    assert dataset.set_by_name("ok1").caption == "café"
    assert "Windows-1252" in [p for p in dataset.problems if p.code == "caption_encoding"][0].message
    assert [p.set_name for p in dataset.problems if p.code == "caption_encoding"] == ["ok1"]


def test_stray_image_hints(folder, make_files):
    make_files("ok1.jpg", "photo-end.jpg", "x_start_1.png", *GOOD)
    messages = {p.files[0]: p.message for p in scan_dataset(folder).problems if p.code == "stray_image"}
    assert 'rename it to "ok1_startN"' in messages["ok1.jpg"]
    assert '"photo_end.jpg"' in messages["photo-end.jpg"]
    assert '"x_start1.png"' in messages["x_start_1.png"]


def test_caption_named_after_an_image_is_an_orphan_with_a_hint(folder, make_files):
    make_files("ok1_start.txt", *GOOD)
    [problem] = [p for p in scan_dataset(folder).problems if p.code == "orphan_caption"]
    assert '"ok1.txt"' in problem.message


def test_size_mismatch_uses_displayed_size(folder, make_files, make_image):
    """A portrait photo stored landscape + EXIF rotation matches a portrait target."""
    make_files(*GOOD)
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90° when displayed
    make_image(folder / "r_start.jpg", (48, 32), exif=exif.tobytes())
    make_image(folder / "r_end.jpg", (32, 48))
    dataset = scan_dataset(folder)
    assert dataset.set_by_name("r").image_sizes[folder / "r_start.jpg"] == (32, 48)
    assert "size_mismatch" not in {p.code for p in dataset.problems}


def test_every_input_is_compared_with_the_target(folder, make_files, make_image):
    make_files("a_start.jpg", "a_end.jpg", *GOOD)
    make_image(folder / "a_start1.jpg", (20, 20))
    make_image(folder / "ok1_start1.jpg", (32, 32))
    make_image(folder / "ok2_start1.jpg", (32, 32))
    [problem] = [p for p in scan_dataset(folder).problems if p.code == "size_mismatch"]
    assert problem.files == ("a_start1.jpg", "a_end.jpg")
    assert "20x20" in problem.message and "32x32" in problem.message


def test_input_count_mismatch_follows_the_majority(folder, make_files):
    make_files("a_start.jpg", "a_start1.jpg", "a_end.jpg",
               "b_start.jpg", "b_start1.jpg", "b_end.jpg", "c_start.jpg", "c_end.jpg")
    [problem] = [p for p in scan_dataset(folder).problems if p.code == "input_count_mismatch"]
    assert problem.set_name == "c"
    assert "1 input image" in problem.message and "(2 of 3)" in problem.message


def test_broken_sets_do_not_count_for_the_input_majority(folder, make_files):
    make_files("a_start.jpg", "a_start2.jpg", "a_end.jpg", *GOOD)
    assert "input_count_mismatch" not in {p.code for p in scan_dataset(folder).problems}


def test_no_caption_warnings_when_no_set_has_one(folder, make_files):
    make_files(*GOOD)
    assert {p.code for p in scan_dataset(folder).problems} == {"small_dataset"}


def test_no_caption_warnings_when_every_set_has_one(folder, make_files):
    make_files("ok1.txt", "ok2.txt", *GOOD)
    assert {p.code for p in scan_dataset(folder).problems} == {"small_dataset"}


def test_a_lone_photo_called_the_end_is_not_suspicious(folder, make_files):
    make_files("the end.jpg", "cat.jpg")
    assert "suspicious_name" not in {p.code for p in scan_dataset(folder).problems}


@pytest.mark.parametrize("count, expected", [(1, True), (14, True), (15, False), (40, False)])
def test_small_dataset_threshold_is_the_guides_15(folder, make_files, pair_names, count, expected):
    make_files(*pair_names(count))
    problems = [p for p in scan_dataset(folder).problems if p.code == "small_dataset"]
    assert bool(problems) is expected
    if problems:
        message = problems[0].message
        assert "15-30" in message and "30-60" in message and "60-100+" in message
        assert message.startswith(f"{count} set" + ("s" if count > 1 else "") + " ready")


def test_small_dataset_counts_only_trainable_sets(folder, make_files, pair_names):
    make_files(*pair_names(15))
    (folder / "photo000_end.jpg").unlink()
    [problem] = [p for p in scan_dataset(folder).problems if p.code == "small_dataset"]
    assert problem.message.startswith("14 sets ready")


def test_empty_folder_is_no_images(folder):
    dataset = scan_dataset(folder)
    assert [p.code for p in dataset.problems] == ["no_images"]
    assert dataset.sets == [] and dataset.trainable_sets() == []
