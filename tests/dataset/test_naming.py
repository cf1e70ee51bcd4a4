"""The guide's naming convention, name by name (no disk involved)."""

import pytest

from lorastudio.dataset.naming import (
    Role,
    is_clutter,
    natural_key,
    normalize,
    parse_stem,
    role_suffix,
    suggested_name,
)


@pytest.mark.parametrize(
    ("stem", "base", "role", "index"),
    [
        ("image001_start", "image001", Role.INPUT, 0),
        ("image001_end", "image001", Role.TARGET, 0),
        ("sample035_start1", "sample035", Role.INPUT, 1),
        ("sample035_start2", "sample035", Role.INPUT, 2),
        ("sample035_start12", "sample035", Role.INPUT, 12),
        ("sample035_start0", "sample035", Role.INPUT, 0),  # counting from 0 lines up with _start
        # Underscores, spaces and non-ASCII letters belong to the base name.
        ("my_photo_001_start", "my_photo_001", Role.INPUT, 0),
        ("my photo 1_end", "my photo 1", Role.TARGET, 0),
        ("фото_собака_start1", "фото_собака", Role.INPUT, 1),
        ("写真_end", "写真", Role.TARGET, 0),
        # Only the LAST suffix decides.
        ("my_start_photo_end", "my_start_photo", Role.TARGET, 0),
        ("before_end_start", "before_end", Role.INPUT, 0),
        ("a_end_end", "a_end", Role.TARGET, 0),
        # The suffix is matched in any letter case.
        ("Photo_START", "Photo", Role.INPUT, 0),
        ("Photo_End", "Photo", Role.TARGET, 0),
    ],
)
def test_role_suffixes(stem, base, role, index):
    parsed = parse_stem(stem)
    assert (parsed.base, parsed.role, parsed.index) == (base, role, index)


@pytest.mark.parametrize("stem", ["photo", "photo_starter", "photo_ending", "photo-start", "photo start",
                                  "photo_start_1", "photo_end1", "_start", "_end", "start", "photo_startx"])
def test_names_without_a_role_are_plain(stem):
    parsed = parse_stem(stem)
    assert parsed.role is Role.PLAIN
    assert parsed.base == stem


def test_names_are_nfc_normalised_so_macos_and_windows_spellings_group():
    decomposed = "cafe\u0301_start"  # é as e + combining accent (macOS)
    composed = "caf\u00e9"
    assert parse_stem(decomposed).base == composed
    assert normalize(decomposed + ".txt") == composed + "_start.txt"


def test_role_suffix_spells_the_guides_numbering():
    assert [role_suffix(i) for i in range(4)] == ["_start", "_start1", "_start2", "_start3"]


@pytest.mark.parametrize(
    ("stem", "suggestion"),
    [
        ("photo-start", "photo_start"),
        ("photo start", "photo_start"),
        ("photo.end", "photo_end"),
        ("photo_start_1", "photo_start1"),
        ("photo_start-2", "photo_start2"),
        ("photo-start1", "photo_start1"),
        ("photo_end1", "photo_end"),
        ("photo", None),
        ("photo_start", None),  # already right
        ("weekend", None),
    ],
)
def test_near_misses_get_a_suggestion(stem, suggestion):
    assert suggested_name(stem) == suggestion


@pytest.mark.parametrize("name", [".DS_Store", "._photo_start.jpg", "Thumbs.db", "desktop.ini", "Desktop.INI",
                                  ".photo.txt.abc123.tmp", "~$notes.txt"])
def test_clutter(name):
    assert is_clutter(name)


@pytest.mark.parametrize("name", ["photo_start.jpg", "notes.md", "a.txt"])
def test_not_clutter(name):
    assert not is_clutter(name)


def test_natural_sort_orders_numbers_by_value_and_ignores_case():
    names = ["img10", "img2", "Img1", "img1b", "a", "B", "img02x"]
    assert sorted(names, key=natural_key) == ["a", "B", "Img1", "img1b", "img2", "img02x", "img10"]
