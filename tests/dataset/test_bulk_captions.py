"""Bulk caption edits: a preview plan first, then atomic writes that survive failures."""

from __future__ import annotations

from pathlib import Path

import pytest

from lorastudio.dataset import (
    CaptionChange,
    apply_caption_changes,
    plan_add_trigger,
    plan_fill_empty,
    plan_find_replace,
    scan_dataset,
)
from lorastudio.dataset import bulk


@pytest.fixture
def captioned(folder, make_files):
    """Four sets: a and b captioned, c with an empty caption file, d with none."""
    make_files("a_start.jpg", "a_end.jpg", "b_start.jpg", "b_end.jpg", "c_start.jpg", "c_end.jpg",
               "d_start.jpg", "d_end.jpg")
    (folder / "a.txt").write_text("a red car on a Street", encoding="utf-8")
    (folder / "b.txt").write_bytes(b"\xef\xbb\xbfzkw, a blue car\r\n")
    (folder / "c.txt").write_text("", encoding="utf-8")
    return folder


def _by_set(changes):
    return {c.set_name: c for c in changes}


def test_add_trigger_as_prefix_skips_captions_that_have_it(captioned):
    changes = plan_add_trigger(scan_dataset(captioned), "zkw")
    assert [(c.set_name, c.old, c.new) for c in changes] == [("a", "a red car on a Street", "zkw, a red car on a Street")]
    assert changes[0].path == captioned / "a.txt"
    assert (captioned / "a.txt").read_text(encoding="utf-8") == "a red car on a Street"  # only a plan


def test_add_trigger_as_suffix(captioned):
    changes = _by_set(plan_add_trigger(scan_dataset(captioned), "zkw", position="suffix"))
    assert set(changes) == {"a", "b"}
    assert changes["a"].new == "a red car on a Street, zkw"
    assert changes["b"].new == "zkw, a blue car, zkw"
    (captioned / "a.txt").write_text("a red car, zkw.", encoding="utf-8")
    assert "a" not in _by_set(plan_add_trigger(scan_dataset(captioned), "zkw", position="suffix"))


@pytest.mark.parametrize("word, position", [("", "prefix"), ("  ", "prefix"), ("zkw", "middle")])
def test_add_trigger_rejects_bad_input(captioned, word, position):
    with pytest.raises(ValueError):
        plan_add_trigger(scan_dataset(captioned), word, position=position)


def test_find_replace_plain_text_is_literal(captioned):
    dataset = scan_dataset(captioned)
    changes = plan_find_replace(dataset, "car", "truck (1.2)")
    assert {c.set_name: c.new for c in changes} == {"a": "a red truck (1.2) on a Street",
                                                     "b": "zkw, a blue truck (1.2)"}
    assert plan_find_replace(dataset, "r.d", "x") == []  # "." is not a wildcard without regex
    assert plan_find_replace(dataset, "street", "road") == []  # case-sensitive by default
    [change] = plan_find_replace(dataset, "street", "Road", case_sensitive=False)
    assert change.new == "a red car on a Road"
    [change] = plan_find_replace(dataset, "red", r"\1 \g<0>")  # backslashes stay literal
    assert change.new == r"a \1 \g<0> car on a Street"


def test_find_replace_with_regex(captioned):
    dataset = scan_dataset(captioned)
    changes = _by_set(plan_find_replace(dataset, r"a (\w+) car", r"the \1 car", regex=True))
    assert changes["a"].new == "the red car on a Street"
    assert changes["b"].new == "zkw, the blue car"
    with pytest.raises(ValueError, match="regular expression"):
        plan_find_replace(dataset, "(unclosed", "x", regex=True)
    with pytest.raises(ValueError, match="replacement"):
        plan_find_replace(dataset, "car", r"\2", regex=True)
    with pytest.raises(ValueError):
        plan_find_replace(dataset, "", "x")


def test_find_replace_that_changes_nothing_plans_nothing(captioned):
    assert plan_find_replace(scan_dataset(captioned), "car", "car") == []


def test_fill_empty_covers_missing_and_empty_captions(captioned):
    changes = _by_set(plan_fill_empty(scan_dataset(captioned), " make it night \n"))
    assert set(changes) == {"c", "d"}
    assert changes["c"].old == "" and changes["d"].old is None
    assert changes["d"].path == captioned / "d.txt"
    assert all(c.new == "make it night" for c in changes.values())
    with pytest.raises(ValueError):
        plan_fill_empty(scan_dataset(captioned), "  ")


def test_apply_writes_every_change_and_a_rescan_sees_them(captioned):
    dataset = scan_dataset(captioned)
    changes = plan_fill_empty(dataset, "make it night") + plan_add_trigger(dataset, "zkw")
    result = apply_caption_changes(changes)
    assert result.ok and result.written_count == 3 and result.written == changes
    after = scan_dataset(captioned)
    assert {s.name: s.caption for s in after.sets} == {
        "a": "zkw, a red car on a Street", "b": "zkw, a blue car", "c": "make it night", "d": "make it night"}
    assert (captioned / "d.txt").read_bytes() == b"make it night\n"
    assert not any(p.code in ("missing_caption", "empty_caption") for p in after.problems)


def test_one_failing_file_does_not_stop_the_others(captioned, monkeypatch):
    dataset = scan_dataset(captioned)
    changes = plan_fill_empty(dataset, "default")
    real = bulk.write_caption

    def read_only_c(path, text):
        if Path(path).name == "c.txt":
            raise PermissionError(13, "Permission denied", str(path))
        real(path, text)

    monkeypatch.setattr(bulk, "write_caption", read_only_c)
    result = apply_caption_changes(changes)
    assert [c.set_name for c in result.written] == ["d"]
    [failure] = result.failures
    assert failure.change.set_name == "c" and "Permission denied" in failure.reason
    assert not result.ok
    assert (captioned / "c.txt").read_bytes() == b""
    assert (captioned / "d.txt").read_text(encoding="utf-8") == "default\n"


def test_read_only_folder_reports_each_file(captioned):
    """A real write failure (not a patched one): the caption's folder is gone."""
    change = CaptionChange("x", captioned / "missing-dir" / "x.txt", None, "text")
    result = apply_caption_changes([change])
    assert result.written == [] and len(result.failures) == 1
    assert "cannot write" in result.failures[0].reason


def test_a_caption_edited_since_the_preview_is_not_overwritten(captioned):
    dataset = scan_dataset(captioned)
    changes = plan_add_trigger(dataset, "zkw")
    (captioned / "a.txt").write_text("edited in another app", encoding="utf-8")
    created = plan_fill_empty(dataset, "default")
    (captioned / "d.txt").write_text("created meanwhile", encoding="utf-8")
    result = apply_caption_changes(changes + created)
    assert {f.change.set_name for f in result.failures} == {"a", "d"}
    assert all("changed on disk" in f.reason for f in result.failures)
    assert [c.set_name for c in result.written] == ["c"]
    assert (captioned / "a.txt").read_text(encoding="utf-8") == "edited in another app"
    assert (captioned / "d.txt").read_text(encoding="utf-8") == "created meanwhile"
