"""The set model (one row per set) under Qt's model tester, and its filter."""

from __future__ import annotations

from PySide6.QtCore import Qt

from lorastudio.dataset import scan_dataset
from lorastudio.ui.set_model import (HasCaptionRole, ImagesRole, InputCountRole, ProblemCountRole, SetFilterModel,
                                     SetListModel, SetRole, SeverityRole, make_entries)

from .conftest import make_dataset


def _model(root):
    dataset = scan_dataset(root)
    model = SetListModel()
    model.set_entries(make_entries(dataset), paired=dataset.mode.value == "paired")
    return dataset, model


def test_model_passes_qt_model_tester(qtmodeltester, tmp_path):
    root = make_dataset(tmp_path / "ds", sets=6, inputs=2, captions=3, missing_end=(4,))
    _dataset, model = _model(root)
    qtmodeltester.check(model, force_py=True)
    qtmodeltester.check(model)


def test_rows_are_sets_not_files(tmp_path):
    root = make_dataset(tmp_path / "ds", sets=5, inputs=3)
    dataset, model = _model(root)
    assert model.rowCount() == 5 == len(dataset.sets)
    index = model.index(2, 0)
    assert index.data(Qt.ItemDataRole.DisplayRole) == "set002"
    assert index.data(SetRole).name == "set002"
    assert index.data(InputCountRole) == 3
    entry = index.data(ImagesRole)
    assert [r.path.rsplit("/", 1)[-1] for r in entry.refs] == [
        "set002_start.png", "set002_start1.png", "set002_start2.png", "set002_end.png"]
    assert all(r.mtime_ns > 0 for r in entry.refs)
    assert model.max_inputs == 3 and model.images_per_cell == 4
    assert "set002" in index.data(Qt.ItemDataRole.ToolTipRole)


def test_problem_and_caption_roles(tmp_path):
    root = make_dataset(tmp_path / "ds", sets=4, captions=2, missing_end=(3,))
    _dataset, model = _model(root)
    assert model.index(0, 0).data(HasCaptionRole) is True
    assert model.index(2, 0).data(HasCaptionRole) is False
    broken = model.index(model.row_of("set003"), 0)
    assert broken.data(SeverityRole) == "error"
    assert broken.data(ProblemCountRole) >= 1


def test_filter_modes(tmp_path):
    root = make_dataset(tmp_path / "ds", sets=6, captions=4, missing_end=(5,))
    dataset, model = _model(root)
    proxy = SetFilterModel()
    proxy.setSourceModel(model)
    assert proxy.rowCount() == 6
    proxy.set_mode(SetFilterModel.ERRORS)
    assert [proxy.index(i, 0).data() for i in range(proxy.rowCount())] == ["set005"]
    proxy.set_mode(SetFilterModel.MISSING_CAPTION)
    assert {proxy.index(i, 0).data() for i in range(proxy.rowCount())} == {"set004", "set005"}
    proxy.set_mode(SetFilterModel.PROBLEMS)
    expected = {s.name for s in dataset.sets if s.problems}
    assert {proxy.index(i, 0).data() for i in range(proxy.rowCount())} == expected
    proxy.set_mode(SetFilterModel.ALL)
    proxy.set_text("caption 1")
    assert [proxy.index(i, 0).data() for i in range(proxy.rowCount())] == ["set001"]
    proxy.set_text("SET00")
    assert proxy.rowCount() == 6


def test_rescan_with_the_same_sets_updates_in_place(qtbot, tmp_path):
    root = make_dataset(tmp_path / "ds", sets=3)
    _dataset, model = _model(root)
    resets: list[int] = []
    model.modelReset.connect(lambda: resets.append(1))
    (root / "set001.txt").write_text("new words", encoding="utf-8")
    dataset = scan_dataset(root)
    with qtbot.waitSignal(model.dataChanged, timeout=1000):
        assert model.set_entries(make_entries(dataset), True) is False
    assert not resets
    assert model.index(1, 0).data(SetRole).caption == "new words"
    # A new set changes the rows: a reset.
    make_dataset(root, sets=4)
    dataset = scan_dataset(root)
    assert model.set_entries(make_entries(dataset), True) is True
    assert resets and model.rowCount() == 4


def test_update_caption_without_rescan(qtbot, tmp_path):
    root = make_dataset(tmp_path / "ds", sets=2, captions=0)
    _dataset, model = _model(root)
    assert model.index(0, 0).data(HasCaptionRole) is False
    with qtbot.waitSignal(model.dataChanged, timeout=1000):
        model.update_caption("set000", "a caption")
    assert model.index(0, 0).data(HasCaptionRole) is True
