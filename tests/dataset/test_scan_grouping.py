"""Scanning groups files into sets exactly as the guide names them."""

import os
import unicodedata

import pytest

from lorastudio.dataset import Mode, scan_dataset


def test_a_pair_with_a_caption(make_files, folder):
    make_files("image001_start.jpg", "image001_end.jpg", "image001.txt")
    dataset = scan_dataset(folder)
    assert dataset.mode is Mode.PAIRED
    [image_set] = dataset.sets
    assert image_set.name == "image001"
    assert image_set.inputs == [folder / "image001_start.jpg"]
    assert image_set.target == folder / "image001_end.jpg"
    assert image_set.caption_path == folder / "image001.txt"
    assert image_set.caption == "caption of image001"
    assert image_set.problems == []
    assert image_set.image_sizes == {folder / "image001_start.jpg": (32, 32), folder / "image001_end.jpg": (32, 32)}


def test_caption_is_optional(make_files, folder):
    make_files("image001_start.jpg", "image001_end.jpg")
    [image_set] = scan_dataset(folder).sets
    assert image_set.caption is None
    assert image_set.caption_path == folder / "image001.txt"  # where the editor will create it
    assert image_set.problems == []


def test_multiple_inputs_are_ordered_start_start1_start2(make_files, folder):
    # Created out of order, with a two-digit index, to make sure order is numeric.
    make_files("sample035_start2.jpg", "sample035_end.jpg", "sample035_start.jpg",
               "sample035_start10.jpg", "sample035_start1.jpg", *[f"sample035_start{i}.jpg" for i in range(3, 10)])
    [image_set] = scan_dataset(folder).sets
    expected = ["sample035_start.jpg"] + [f"sample035_start{i}.jpg" for i in range(1, 11)]
    assert [p.name for p in image_set.inputs] == expected
    assert image_set.images[-1].name == "sample035_end.jpg"


def test_extensions_match_in_any_case_and_formats_mix(make_files, folder):
    make_files("a_start.JPG", "a_end.Png", "b_start.jpeg", "b_end.WEBP", "c_start.bmp", "c_end.tif",
               "d_start.TIFF", "d_end.webp", "a.TXT", "b.txt", "c.Txt", "d.txt")
    dataset = scan_dataset(folder)
    assert [s.name for s in dataset.sets] == ["a", "b", "c", "d"]
    assert all(not s.problems for s in dataset.sets), dataset.problems
    assert [p.code for p in dataset.problems] == ["small_dataset"]
    assert dataset.set_by_name("a").caption == "caption of a"


@pytest.mark.parametrize("base", ["my_photo_001", "my photo 1", "фото собаки", "写真_猫", "Ünïcödé_ß"])
def test_base_names_with_underscores_spaces_and_non_ascii(make_files, folder, base):
    make_files(f"{base}_start.jpg", f"{base}_end.jpg", f"{base}.txt")
    [image_set] = scan_dataset(folder).sets
    assert image_set.name == base
    assert image_set.caption == f"caption of {base}"
    assert not image_set.problems


def test_the_last_suffix_decides(make_files, folder):
    make_files("my_start_photo_start.jpg", "my_start_photo_end.jpg", "my_start_photo.txt")
    [image_set] = scan_dataset(folder).sets
    assert image_set.name == "my_start_photo"
    assert image_set.target.name == "my_start_photo_end.jpg"
    assert image_set.caption is not None


def test_decomposed_unicode_names_find_their_caption(make_files, folder):
    decomposed = unicodedata.normalize("NFD", "café")
    make_files(f"{decomposed}_start.jpg", "café_end.jpg", f"{decomposed}.txt")
    [image_set] = scan_dataset(folder).sets
    assert image_set.name == "café"
    assert image_set.target is not None and len(image_set.inputs) == 1
    assert image_set.caption == f"caption of {decomposed}"


def test_sets_sort_naturally(make_files, folder, pair_names):
    make_files(*[n.replace("photo00", "img") for n in pair_names(11)])
    names = [s.name for s in scan_dataset(folder).sets]
    assert names == [f"img{i}" for i in range(10)] + ["photo010"]
    make_files("img10_start.jpg", "img10_end.jpg", "Img2b_start.jpg", "Img2b_end.jpg")
    names = [s.name for s in scan_dataset(folder).sets]
    assert names.index("img2") < names.index("Img2b") < names.index("img3") < names.index("img10")


def test_clutter_and_other_files_are_ignored_silently(make_files, folder):
    make_files("a_start.jpg", "a_end.jpg", ".DS_Store", "Thumbs.db", "desktop.ini", "._a_start.jpg",
               "notes.md", "project.psd", "archive.zip", "a.json", ".a.txt.x1y2.tmp")
    (folder / "sub").mkdir()
    make_files("sub/b_start.jpg", "sub/b_end.jpg", "sub/b.txt")
    (folder / "folder.jpg").mkdir()  # a folder with an image-like name is still a folder
    dataset = scan_dataset(folder)
    assert [s.name for s in dataset.sets] == ["a"]
    assert [p.code for p in dataset.problems] == ["small_dataset"]  # and nothing about the clutter


def test_text_to_image_folder_has_single_sets(make_files, folder):
    make_files("cat.jpg", "dog.png", "dog.txt", "bird_1.webp", "bird_1.txt")
    dataset = scan_dataset(folder)
    assert dataset.mode is Mode.SINGLE
    assert [s.name for s in dataset.sets] == ["bird_1", "cat", "dog"]
    for image_set in dataset.sets:
        assert image_set.inputs == []
        assert image_set.target.stem == image_set.name
    assert dataset.set_by_name("dog").caption == "caption of dog"
    assert dataset.set_by_name("cat").caption is None
    assert {p.code for p in dataset.problems} == {"missing_caption", "small_dataset"}
    assert [s.name for s in dataset.trainable_sets()] == ["bird_1", "cat", "dog"]


def test_one_role_file_makes_the_folder_paired(make_files, folder):
    make_files("cat.jpg", "dog.jpg", "dog_end.jpg", "dog_start.jpg")
    dataset = scan_dataset(folder)
    assert dataset.mode is Mode.PAIRED
    assert [s.name for s in dataset.sets] == ["dog"]
    assert sorted(p.files[0] for p in dataset.problems if p.code == "stray_image") == ["cat.jpg", "dog.jpg"]


def test_relative_paths_and_user_home_are_made_absolute(make_files, folder, monkeypatch):
    make_files("a_start.jpg", "a_end.jpg")
    monkeypatch.chdir(folder.parent)
    dataset = scan_dataset(folder.name)
    assert dataset.root == folder
    assert dataset.sets[0].target == folder / "a_end.jpg"
    monkeypatch.setenv("HOME", str(folder.parent))
    assert scan_dataset(os.path.join("~", folder.name)).root == folder


def test_without_image_checks_only_names_are_read(make_files, folder):
    make_files("a_start.jpg", "a_end.jpg")
    (folder / "a_end.jpg").write_bytes(b"not an image at all")
    dataset = scan_dataset(folder, check_images=False)
    assert [p.code for p in dataset.problems] == ["small_dataset"]
    assert dataset.sets[0].image_sizes == {}
    assert "unreadable_image" in {p.code for p in scan_dataset(folder).problems}


def test_missing_folder_and_file_raise(tmp_path):
    with pytest.raises(FileNotFoundError):
        scan_dataset(tmp_path / "nope")
    (tmp_path / "file.jpg").write_bytes(b"x")
    with pytest.raises(NotADirectoryError):
        scan_dataset(tmp_path / "file.jpg")


def test_threaded_probing_gives_the_same_result(make_files, folder, pair_names, monkeypatch):
    """The scanner switches to threads on slow disks; force that path and compare."""
    from lorastudio.dataset import scan

    make_files(*pair_names(60))
    (folder / "photo050_end.jpg").write_bytes(b"\xff\xd8broken")
    serial = scan_dataset(folder)
    monkeypatch.setattr(scan, "_SLOW_PROBE_SECONDS", 0.0)
    threaded = scan_dataset(folder)
    assert [(s.name, s.image_sizes, s.problems) for s in threaded.sets] == \
           [(s.name, s.image_sizes, s.problems) for s in serial.sets]
    assert [p.code for p in threaded.problems] == ["unreadable_image"]
