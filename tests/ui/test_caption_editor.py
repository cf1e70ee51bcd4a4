"""Caption autosave (debounced, flushed on set change, focus change and close) and
detection of captions changed on disk by another program."""

from __future__ import annotations

import os

from PySide6.QtWidgets import QLineEdit, QVBoxLayout, QWidget

from lorastudio.dataset import scan_dataset
from lorastudio.ui import caption_editor as ce
from lorastudio.ui.caption_editor import CaptionEditor

from .conftest import make_dataset


def _sets(tmp_path, **kw):
    root = make_dataset(tmp_path / "ds", **kw)
    return root, scan_dataset(root).sets


def _editor(qtbot, delay=150) -> CaptionEditor:
    holder = QWidget()
    layout = QVBoxLayout(holder)
    editor = CaptionEditor(holder, delay_ms=delay)
    other = QLineEdit(holder)  # something else to move the focus to
    layout.addWidget(editor)
    layout.addWidget(other)
    holder.other = other  # type: ignore[attr-defined]
    editor.holder = holder  # type: ignore[attr-defined]  (keep the parent alive)
    qtbot.addWidget(holder)
    holder.show()
    return editor


def _type(qtbot, editor: CaptionEditor, text: str) -> None:
    editor.edit.setFocus()
    editor.edit.moveCursor(editor.edit.textCursor().MoveOperation.End)
    qtbot.keyClicks(editor.edit, text)


def _touch_later(path):
    """Make sure an external write gets a different mtime even on coarse file systems."""
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 2_000_000_000))


def test_autosave_is_debounced(qtbot, tmp_path):
    root, sets = _sets(tmp_path, sets=2)
    editor = _editor(qtbot, delay=300)
    editor.set_image_set(sets[0])
    assert editor.text() == "caption 0"
    _type(qtbot, editor, " and more")
    assert editor.is_dirty()
    qtbot.wait(100)
    assert (root / "set000.txt").read_text(encoding="utf-8") == "caption 0\n", "saved before the pause"
    with qtbot.waitSignal(editor.saved, timeout=3000) as blocker:
        pass
    assert blocker.args == ["set000", "caption 0 and more"]
    assert (root / "set000.txt").read_text(encoding="utf-8") == "caption 0 and more\n"
    assert not editor.is_dirty()
    assert editor.state() == "Saved"
    assert sets[0].caption == "caption 0 and more"


def test_many_keystrokes_make_one_write(qtbot, tmp_path, monkeypatch):
    _root, sets = _sets(tmp_path, sets=1)
    writes = []
    real = ce.write_disk_caption
    monkeypatch.setattr(ce, "write_disk_caption", lambda p, t: (writes.append(t), real(p, t)))
    editor = _editor(qtbot, delay=200)
    editor.set_image_set(sets[0])
    _type(qtbot, editor, " typed quickly")
    qtbot.waitUntil(lambda: not editor.is_dirty(), timeout=3000)
    assert writes == ["caption 0 typed quickly"]


def test_set_change_flushes_at_once(qtbot, tmp_path):
    root, sets = _sets(tmp_path, sets=2)
    editor = _editor(qtbot, delay=60_000)  # the timer would never fire within the test
    editor.set_image_set(sets[0])
    _type(qtbot, editor, "!")
    editor.set_image_set(sets[1])
    assert (root / "set000.txt").read_text(encoding="utf-8") == "caption 0!\n"
    assert editor.text() == "caption 1"
    editor.edit.undo()  # undo history belongs to the set: nothing of set000 to undo here
    assert editor.text() == "caption 1"


def test_focus_out_flushes(qtbot, tmp_path):
    root, sets = _sets(tmp_path, sets=1)
    editor = _editor(qtbot, delay=60_000)
    editor.set_image_set(sets[0])
    holder = editor.holder
    holder.activateWindow()
    qtbot.waitUntil(holder.isActiveWindow, timeout=2000)
    _type(qtbot, editor, " focus")
    assert editor.edit.hasFocus()
    holder.other.setFocus()
    qtbot.waitUntil(lambda: (root / "set000.txt").read_text(encoding="utf-8") == "caption 0 focus\n", timeout=2000)


def test_new_caption_file_is_created_only_with_text(qtbot, tmp_path):
    root, sets = _sets(tmp_path, sets=2, captions=0)
    editor = _editor(qtbot, delay=60_000)
    editor.set_image_set(sets[0])
    assert editor.text() == "" and editor.state() == "No caption file yet"
    editor.set_image_set(sets[1])
    assert not (root / "set000.txt").exists()
    _type(qtbot, editor, "brand new")
    assert editor.flush()
    assert (root / "set001.txt").read_text(encoding="utf-8") == "brand new\n"


def test_external_change_with_unsaved_edits_is_never_overwritten(qtbot, tmp_path):
    root, sets = _sets(tmp_path, sets=1)
    path = root / "set000.txt"
    editor = _editor(qtbot, delay=60_000)
    editor.set_image_set(sets[0])
    _type(qtbot, editor, " mine")
    path.write_text("theirs\n", encoding="utf-8")
    _touch_later(path)
    assert editor.flush() is False
    assert path.read_text(encoding="utf-8") == "theirs\n"
    assert editor.has_conflict()
    assert editor.conflict_bar.isVisible()
    assert editor.text() == "caption 0 mine"  # nothing lost either
    # More typing while the question is open still doesn't write.
    _type(qtbot, editor, "!")
    assert editor.flush() is False
    assert path.read_text(encoding="utf-8") == "theirs\n"
    # Keep mine: our text wins, explicitly.
    editor.keep_mine()
    assert path.read_text(encoding="utf-8") == "caption 0 mine!\n"
    assert not editor.conflict_bar.isVisible()


def test_reload_takes_theirs_and_undo_brings_mine_back(qtbot, tmp_path):
    root, sets = _sets(tmp_path, sets=1)
    path = root / "set000.txt"
    editor = _editor(qtbot, delay=60_000)
    editor.set_image_set(sets[0])
    _type(qtbot, editor, " mine")
    path.write_text("theirs\n", encoding="utf-8")
    _touch_later(path)
    editor.check_disk()  # e.g. after the folder watcher fired
    assert editor.has_conflict() and editor.conflict_bar.isVisible()
    editor.reload_from_disk()
    assert editor.text() == "theirs"
    assert not editor.is_dirty() and not editor.has_conflict()
    assert path.read_text(encoding="utf-8") == "theirs\n"
    editor.edit.undo()
    assert editor.text() == "caption 0 mine"


def test_external_change_without_edits_reloads_quietly(qtbot, tmp_path):
    root, sets = _sets(tmp_path, sets=1)
    path = root / "set000.txt"
    editor = _editor(qtbot, delay=60_000)
    editor.set_image_set(sets[0])
    path.write_text("changed elsewhere\n", encoding="utf-8")
    _touch_later(path)
    with qtbot.waitSignal(editor.saved, timeout=1000):
        editor.check_disk()
    assert editor.text() == "changed elsewhere"
    assert not editor.has_conflict()
    assert "Reloaded" in editor.state()


def test_own_writes_are_not_conflicts(qtbot, tmp_path):
    _root, sets = _sets(tmp_path, sets=1)
    editor = _editor(qtbot, delay=50)
    editor.set_image_set(sets[0])
    for word in (" one", " two", " three "):  # trailing space: the file is normalised, still no conflict
        _type(qtbot, editor, word)
        qtbot.waitUntil(lambda: editor.state() == "Saved", timeout=3000)
        editor.check_disk()
        assert not editor.has_conflict()
    _type(qtbot, editor, "four")
    assert editor.flush()
    assert not editor.has_conflict()
    assert sets[0].caption == "caption 0 one two three four"


def test_write_error_keeps_the_text_and_says_why(qtbot, tmp_path, monkeypatch):
    root, sets = _sets(tmp_path, sets=2)

    def refuse(path, text):
        raise PermissionError(13, "Permission denied", str(path))

    editor = _editor(qtbot, delay=60_000)
    editor.set_image_set(sets[0])
    monkeypatch.setattr(ce, "write_disk_caption", refuse)
    _type(qtbot, editor, " unsaved")
    assert editor.flush() is False
    assert editor.error_bar.isVisible() and "Permission denied" in editor.error_bar.label.text()
    editor.set_image_set(sets[1])  # leaving: the edit is held, not dropped
    assert editor.has_unsaved()
    monkeypatch.undo()
    editor.set_image_set(sets[0])
    assert editor.text() == "caption 0 unsaved"
    assert not editor.has_conflict()  # the file did not change meanwhile: it just saves now
    assert editor.flush_all() == []
    assert (root / "set000.txt").read_text(encoding="utf-8") == "caption 0 unsaved\n"


def test_close_flushes(qtbot, tmp_path):
    """The main window flushes on close; quitting mid-typing loses nothing."""
    from lorastudio.ui.app import create_window

    root = make_dataset(tmp_path / "ds", sets=2)
    window = create_window()
    qtbot.addWidget(window)
    window.ask = lambda *a: "keep"
    window.show()
    window.open_path(root)
    qtbot.waitUntil(lambda: window.dataset is not None and window.editor.image_set is not None, timeout=10000)
    editor = window.editor
    editor.edit.setFocus()
    editor.edit.moveCursor(editor.edit.textCursor().MoveOperation.End)
    qtbot.keyClicks(editor.edit, " before quit")
    assert (root / "set000.txt").read_text(encoding="utf-8") == "caption 0\n"
    window.close()
    assert (root / "set000.txt").read_text(encoding="utf-8") == "caption 0 before quit\n"
