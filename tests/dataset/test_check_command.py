"""``lorastudio check``: DESIGN.md's JSON contract, the exit codes, the text report, and
the promise that the dataset core needs neither Qt nor torch."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest

from lorastudio.dataset import SEVERITY_OF
from lorastudio.dataset.check import check_command

SEVERITIES = {"error", "warning", "info"}


def run_check(*args: str, env_extra: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, **(env_extra or {})}
    return subprocess.run([sys.executable, "-m", "lorastudio", "check", *args],
                          capture_output=True, timeout=120, env=env)


def validate_contract(report: dict) -> None:
    """DESIGN.md: {"mode", "sets": [{"name", "inputs", "target", "caption"}],
    "problems": [{"severity", "code", "files", "message"}]}, nothing more, nothing less
    (a held-out set, with --config, also carries "validation": true)."""
    assert set(report) == {"mode", "sets", "problems"}
    assert report["mode"] in ("paired", "single")
    assert isinstance(report["sets"], list) and isinstance(report["problems"], list)
    for image_set in report["sets"]:
        assert set(image_set) - {"validation"} == {"name", "inputs", "target", "caption"}
        assert image_set.get("validation", True) is True
        assert isinstance(image_set["name"], str) and image_set["name"]
        assert isinstance(image_set["inputs"], list) and all(isinstance(f, str) for f in image_set["inputs"])
        assert isinstance(image_set["target"], str) and image_set["target"]
        assert image_set["caption"] is None or isinstance(image_set["caption"], str)
        if report["mode"] == "single":
            assert image_set["inputs"] == []
    for problem in report["problems"]:
        assert set(problem) == {"severity", "code", "files", "message"}
        assert problem["severity"] in SEVERITIES
        assert SEVERITY_OF[problem["code"]].value == problem["severity"]
        assert isinstance(problem["files"], list) and problem["files"]  # every problem names its files
        assert all(isinstance(f, str) and f and "\\" not in f for f in problem["files"])
        assert isinstance(problem["message"], str) and problem["message"]


@pytest.fixture
def mixed(folder, make_files):
    """Three good sets (one with two inputs and a caption), one broken, one stray file."""
    make_files("a_start.jpg", "a_end.jpg", "b_start.png", "b_start1.png", "b_end.png", "b.txt",
               "c_start.jpg", "c_end.jpg", "broken_start.jpg", "stray.jpg", "notes.md", ".DS_Store")
    return folder


def test_json_contract_paired(mixed):
    done = run_check(str(mixed), "--json")
    assert done.returncode == 1, done.stderr  # an error exists
    report = json.loads(done.stdout)
    validate_contract(report)
    assert report["mode"] == "paired"
    assert [s["name"] for s in report["sets"]] == ["a", "b", "c"]  # "broken" has an error: not listed
    b = report["sets"][1]
    assert b == {"name": "b", "inputs": ["b_start.png", "b_start1.png"], "target": "b_end.png",
                 "caption": "caption of b"}
    assert report["sets"][0]["caption"] is None
    codes = [(p["severity"], p["code"], p["files"]) for p in report["problems"]]
    assert codes[0] == ("error", "missing_end", ["broken_start.jpg"])
    assert ("warning", "stray_image", ["stray.jpg"]) in codes
    assert [p["severity"] for p in report["problems"]] == sorted(
        (p["severity"] for p in report["problems"]), key=["error", "warning", "info"].index)
    for problem in report["problems"]:
        for file in problem["files"]:
            assert (mixed / file).exists()


def test_json_contract_single(folder, make_files):
    make_files("cat.jpg", "cat.txt", "dog.png", "dog.txt")
    done = run_check(str(folder), "--json")
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    validate_contract(report)
    assert report["mode"] == "single"
    assert report["sets"] == [
        {"name": "cat", "inputs": [], "target": "cat.jpg", "caption": "caption of cat"},
        {"name": "dog", "inputs": [], "target": "dog.png", "caption": "caption of dog"},
    ]
    assert [p["code"] for p in report["problems"]] == ["small_dataset"]


def test_json_is_one_object_and_nothing_else(mixed):
    out = run_check(str(mixed), "--json").stdout.decode("utf-8")
    assert json.loads(out)  # json.loads fails on any extra text
    assert out.strip().startswith("{") and out.strip().endswith("}")


def test_exit_0_when_sets_train_and_only_warnings_or_info(folder, make_files):
    make_files("a_start.jpg", "a_end.jpg", "stray.jpg")
    assert check_command(folder, as_json=False) == 0
    assert run_check(str(folder)).returncode == 0


def test_exit_1_when_any_error(mixed, capsys):
    assert check_command(mixed, as_json=True) == 1
    assert json.loads(capsys.readouterr().out)["sets"]


def test_exit_1_when_nothing_to_train(folder, make_files, capsys):
    assert check_command(folder, as_json=False) == 1  # empty folder
    make_files("a_start.jpg")
    assert check_command(folder, as_json=False) == 1
    assert "NOT READY" in capsys.readouterr().out


def test_exit_2_for_a_folder_that_does_not_exist(tmp_path):
    done = run_check(str(tmp_path / "nope"))
    assert done.returncode == 2
    assert done.stdout == b""
    assert b"no such folder" in done.stderr and b"nope" in done.stderr
    (tmp_path / "file.txt").write_text("x")
    done = run_check(str(tmp_path / "file.txt"), "--json")
    assert done.returncode == 2 and b"not a folder" in done.stderr


def test_text_report_is_readable(mixed):
    done = run_check(str(mixed))
    assert done.returncode == 1
    text = done.stdout.decode("utf-8")
    for expected in [
        f"Dataset: {mixed}",
        "Kind: image editing",
        "Sets: 4 found, 3 ready to train, 1 left out because of errors",
        "Inputs per set: 1 input (3 sets), 2 inputs (1 set)",
        "Captions: 1 of 4 sets have one",
        "  b: b_start.png + b_start1.png -> b_end.png  [caption, warning]",  # 2 inputs, others 1
        "  broken: broken_start.jpg -> (no target)  [ERROR]",
        "Errors (1)",
        "[missing_end]",
        "      - broken_start.jpg",
        "Warnings (",
        "[stray_image]",
        "Advice (1)",
        "15-30 sets  simple concept",
        "30-60 sets",
        "60-100+ sets",
        "Result: NOT READY - fix the 1 error above (3 sets would train as it is).",
    ]:
        assert expected in text, expected
    assert text.index("Errors") < text.index("Warnings") < text.index("Advice")
    assert "notes.md" not in text and ".DS_Store" not in text
    assert max(len(line) for line in text.splitlines() if not line.startswith("Dataset:")) <= 110


def test_text_report_for_a_good_dataset(folder, make_files, pair_names, capsys):
    make_files(*pair_names(20))
    assert check_command(folder, as_json=False) == 0
    text = capsys.readouterr().out
    assert "Result: ready to train 20 sets." in text
    assert "20 sets: enough for a simple concept (a single style)." in text
    assert "Errors" not in text and "Warnings" not in text


def test_long_set_lists_are_shortened(folder, make_files, pair_names, capsys):
    make_files(*pair_names(60))
    check_command(folder, as_json=False)
    text = capsys.readouterr().out
    assert "... and 10 more (--json lists them all)" in text
    assert "photo049" in text and "photo050:" not in text


def test_output_survives_a_console_that_cannot_show_the_names(folder, make_files):
    names = ("фото_start.jpg", "фото_end.jpg", "写真_start.jpg", "写真_end.jpg", "写真.txt")
    make_files(*names)
    (folder / "写真.txt").write_text("猫 → 犬", encoding="utf-8")
    ascii_console = {"PYTHONIOENCODING": "ascii", "PYTHONUTF8": "0"}
    text = run_check(str(folder), env_extra=ascii_console)
    assert text.returncode == 0, text.stderr
    assert b"Sets: 2 found, 2 ready to train" in text.stdout
    assert b"Traceback" not in text.stderr
    as_json = run_check(str(folder), "--json", env_extra=ascii_console)
    assert as_json.returncode == 0, as_json.stderr
    report = json.loads(as_json.stdout.decode("ascii"))  # pure ASCII, yet exact names
    assert [s["name"] for s in report["sets"]] == ["фото", "写真"]
    assert report["sets"][1]["caption"] == "猫 → 犬"
    utf8 = run_check(str(folder), "--json", env_extra={"PYTHONIOENCODING": "utf-8"})
    assert "写真_end.jpg" in utf8.stdout.decode("utf-8")  # readable when the console can show it


def test_dataset_core_needs_neither_qt_nor_torch(folder, make_files):
    """Import the package, scan, run the check, load an image and edit captions in a fresh
    interpreter where importing PySide6 or torch fails, then assert neither got imported."""
    make_files("a_start.jpg", "a_end.jpg", "a.txt", "b_start.jpg", "b_end.jpg")
    script = textwrap.dedent(f"""
        import sys

        class Refuse:
            def find_spec(self, name, path=None, target=None):
                if name.split(".")[0] in ("PySide6", "torch", "shiboken6"):
                    raise ImportError("dataset core must not import " + name)

        sys.meta_path.insert(0, Refuse())
        from pathlib import Path
        import lorastudio.dataset as ds
        from lorastudio.dataset.check import check_command

        folder = Path({str(folder)!r})
        dataset = ds.scan_dataset(folder)
        assert len(dataset.trainable_sets()) == 2, dataset.problems
        assert ds.load_image(dataset.sets[0].target).mode == "RGB"
        assert ds.apply_caption_changes(ds.plan_fill_empty(dataset, "x")).written_count == 1
        assert check_command(folder, as_json=True) == 0
        heavy = sorted(m for m in sys.modules if m.split(".")[0] in ("PySide6", "torch", "shiboken6"))
        assert not heavy, heavy
        print("CLEAN")
    """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().endswith("CLEAN")


def _project(tmp_path, folder, validation) -> "Path":
    project = tmp_path / "project.toml"
    names = ", ".join(f'"{n}"' for n in validation)
    project.write_text(f'[model]\npath = "m"\n[dataset]\npath = "{folder.name}"\nvalidation = [{names}]\n',
                       encoding="utf-8")
    return project


def test_config_marks_held_out_sets_which_are_checked_like_the_others(tmp_path, mixed, capsys):
    """``check --config PROJECT.toml``: the project's dataset, its held-out sets marked
    (``"validation": true``); a held-out set with an error is reported like any other."""
    project = _project(tmp_path, mixed, ["c", "broken"])
    assert check_command(None, as_json=True, config=project) == 1  # "broken" has an error
    report = json.loads(capsys.readouterr().out)
    validate_contract(report)
    assert [(s["name"], s.get("validation", False)) for s in report["sets"]] == [("a", False), ("b", False),
                                                                                 ("c", True)]
    assert report["problems"][0]["code"] == "missing_end"
    assert check_command(None, as_json=False, config=project) == 1
    text = capsys.readouterr().out
    assert "3 ready to train (1 of them held out for validation)" in text
    assert "  c: c_start.jpg -> c_end.jpg  [held out" in text
    assert "(2 sets would train as it is)" in text


@pytest.mark.parametrize("validation, message", [
    (["a", "nope"], "dataset.validation: no set named 'nope'"),
    (["a", "b"], "dataset.validation: holds out every set (2)"),
])
def test_config_with_held_out_sets_the_dataset_cannot_have_is_not_ready(tmp_path, folder, make_files, capsys,
                                                                       validation, message):
    make_files("a_start.jpg", "a_end.jpg", "b_start.jpg", "b_end.jpg")
    assert check_command(folder, as_json=True, config=_project(tmp_path, folder, validation)) == 1
    captured = capsys.readouterr()
    json.loads(captured.out)  # stdout is still the one report object
    assert message in captured.err and "project.toml" in captured.err
    if "nope" in validation:
        assert "(sets: a, b)" in captured.err  # the names that exist
