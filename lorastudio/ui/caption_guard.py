"""Never lose a caption when the project closes or the app quits."""

from __future__ import annotations

from typing import Callable

from lorastudio.ui.caption_editor import CaptionEditor

#: ``ask(title, text, choices)`` → one of ``choices`` ("keep", "discard", "cancel"): the window's question box.
Ask = Callable[[str, str, tuple[str, ...]], str]


def save_captions_or_ask(editor: CaptionEditor, ask: Ask) -> bool:
    """Save every edited caption; ask what to do with those that cannot be saved. False = cancel."""
    unsaved = editor.flush_all()
    if not unsaved:
        return True
    names = "\n".join(f"• {p.name}" for p in unsaved[:10])
    answer = ask("Unsaved captions",
                 f"These captions were changed on disk by another program while you edited them, "
                 f"or could not be written:\n\n{names}\n\nKeep your text (overwrite the files)?",
                 ("keep", "discard", "cancel"))
    if answer == "keep":
        editor.force_save_held()
        return True
    if answer == "discard":
        editor.discard_unsaved()
        return True
    return False
