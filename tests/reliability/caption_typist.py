"""A stand-in for the app with the real CaptionEditor, typing by itself, run as a process.

``caption_typist.py DATASET SET_NAME`` opens the set's caption in a ``CaptionEditor`` (default
delays) and types one character every 40 ms through Qt key events, as a person would, without
ever pausing. After each keystroke it prints ``typed <count> <time.time()>``. The test
SIGKILLs it mid-typing and compares the file with what was typed when.
"""

from __future__ import annotations

import os
import sys
import time

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

TEXT = "the quick brown fox jumps over the lazy dog and keeps on running far away " * 4


def main() -> int:
    from PySide6.QtCore import Qt, QTimer
    from PySide6.QtTest import QTest
    from PySide6.QtWidgets import QApplication

    from lorastudio.dataset import scan_dataset
    from lorastudio.ui.caption_editor import CaptionEditor

    app = QApplication(sys.argv[:1])
    dataset = scan_dataset(sys.argv[1])
    image_set = next(s for s in dataset.sets if s.name == sys.argv[2])
    editor = CaptionEditor()
    editor.set_image_set(image_set)
    editor.show()
    editor.edit.setFocus()
    editor.edit.moveCursor(editor.edit.textCursor().MoveOperation.End)
    print(f"start {editor.text()!r}", flush=True)
    count = [0]

    def type_one() -> None:
        if count[0] >= len(TEXT):
            return
        QTest.keyClick(editor.edit, TEXT[count[0]], Qt.KeyboardModifier.NoModifier)
        count[0] += 1
        print(f"typed {count[0]} {time.time():.4f}", flush=True)

    timer = QTimer()
    timer.setInterval(40)
    timer.timeout.connect(type_one)
    timer.start()
    return app.exec()


if __name__ == "__main__":
    sys.exit(main())
