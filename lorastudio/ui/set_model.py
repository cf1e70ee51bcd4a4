"""The dataset as a Qt list model: one row per image set (not per file), and its filter.

Rows carry the dataset core's ``ImageSet`` plus an ``ImageRef`` (path, mtime, size) per
image, gathered off the UI thread at scan time, so painting never touches the disk and a
thumbnail's cache key changes exactly when its file does.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import partial
from html import escape
from pathlib import Path

from PySide6.QtCore import QAbstractListModel, QModelIndex, QPersistentModelIndex, QSortFilterProxyModel, Qt

from lorastudio.dataset.model import Dataset, ImageSet, Problem, Severity
from lorastudio.ui.thumbnails import ImageRef

#: Text shown inside rich text (names, captions, messages): only & < > escaped, as Qt needs.
_escape = partial(escape, quote=False)

SetRole = Qt.ItemDataRole.UserRole + 1
NameRole = Qt.ItemDataRole.UserRole + 2
ImagesRole = Qt.ItemDataRole.UserRole + 3
SeverityRole = Qt.ItemDataRole.UserRole + 4
ProblemCountRole = Qt.ItemDataRole.UserRole + 5
HasCaptionRole = Qt.ItemDataRole.UserRole + 6
InputCountRole = Qt.ItemDataRole.UserRole + 7
CaptionRole = Qt.ItemDataRole.UserRole + 8
#: Held out for validation (``dataset.validation``): never trained on.
HeldOutRole = Qt.ItemDataRole.UserRole + 9

_SEVERITY_ORDER = {Severity.ERROR: 0, Severity.WARNING: 1, Severity.INFO: 2}


@dataclass
class SetEntry:
    image_set: ImageSet
    #: One per image in display order (inputs, then the target).
    refs: tuple[ImageRef, ...] = field(default_factory=tuple)
    #: Input slots shown for this set; the target (or a "missing" slot) comes after them.
    input_slots: int = 0

    @property
    def name(self) -> str:
        return self.image_set.name

    @property
    def worst(self) -> Severity | None:
        if not self.image_set.problems:
            return None
        return min((p.severity for p in self.image_set.problems), key=lambda s: _SEVERITY_ORDER[s])


def make_entries(dataset: Dataset) -> list[SetEntry]:
    """Stat every image (call this off the UI thread: it touches the disk)."""
    entries = []
    for s in dataset.sets:
        refs = tuple(ImageRef.of(p) for p in s.images)
        entries.append(SetEntry(s, refs, len(s.inputs)))
    return entries


def problem_summary(problems: list[Problem]) -> str:
    return "\n".join(f"{p.severity.value.capitalize()}: {p.message}" for p in problems)


class SetListModel(QAbstractListModel):
    """Rows = image sets of one dataset, sorted as the dataset core sorted them."""

    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        self._entries: list[SetEntry] = []
        self._rows: dict[str, int] = {}
        self._paired = True
        self._max_inputs = 1
        self._held_out: set[str] = set()

    # -- Qt model interface ---------------------------------------------------------------

    def rowCount(self, parent: QModelIndex | QPersistentModelIndex = QModelIndex()) -> int:
        return 0 if parent.isValid() else len(self._entries)

    def data(self, index: QModelIndex | QPersistentModelIndex, role: int = Qt.ItemDataRole.DisplayRole):
        if not index.isValid() or not (0 <= index.row() < len(self._entries)):
            return None
        e = self._entries[index.row()]
        s = e.image_set
        if role == Qt.ItemDataRole.DisplayRole or role == NameRole:
            return s.name
        if role == Qt.ItemDataRole.ToolTipRole:
            parts = [f"<b>{_escape(s.name)}</b>"]
            if s.name in self._held_out:
                parts.append("<b>Held out for validation</b>: never trained on; its loss shows overfitting")
            names = [p.name for p in s.inputs] + ([s.target.name] if s.target else ["(no target image)"])
            parts.append(_escape(" → ".join(names)) if s.inputs else _escape(names[-1]))
            if s.caption:
                cap = s.caption if len(s.caption) < 200 else s.caption[:200] + "…"
                parts.append(f"<i>{_escape(cap)}</i>")
            else:
                parts.append("<i>no caption</i>")
            for p in s.problems:
                parts.append(f"{p.severity.value.capitalize()}: {_escape(p.message)}")
            return "<br>".join(parts)
        if role == Qt.ItemDataRole.AccessibleTextRole:
            return f"Set {s.name}, {len(s.inputs)} inputs, {len(s.problems)} problems"
        if role == SetRole:
            return s
        if role == ImagesRole:
            return e
        if role == SeverityRole:
            w = e.worst
            return w.value if w else ""
        if role == ProblemCountRole:
            return len(s.problems)
        if role == HasCaptionRole:
            return bool(s.caption and s.caption.strip())
        if role == InputCountRole:
            return len(s.inputs)
        if role == CaptionRole:
            return s.caption
        if role == HeldOutRole:
            return s.name in self._held_out
        return None

    def flags(self, index: QModelIndex | QPersistentModelIndex) -> Qt.ItemFlag:
        if not index.isValid():
            return Qt.ItemFlag.NoItemFlags
        return Qt.ItemFlag.ItemIsEnabled | Qt.ItemFlag.ItemIsSelectable | Qt.ItemFlag.ItemNeverHasChildren

    def roleNames(self) -> dict[int, bytes]:
        names = dict(super().roleNames())
        names.update({SetRole: b"set", NameRole: b"name", SeverityRole: b"severity",
                      ProblemCountRole: b"problemCount", HasCaptionRole: b"hasCaption"})
        return names

    # -- our interface --------------------------------------------------------------------

    @property
    def paired(self) -> bool:
        return self._paired

    @property
    def max_inputs(self) -> int:
        """Input slots every cell shows (the most any set has; uniform cells scroll fast)."""
        return self._max_inputs

    @property
    def images_per_cell(self) -> int:
        return self._max_inputs + 1 if self._paired else 1

    def entries(self) -> list[SetEntry]:
        return list(self._entries)

    def entry(self, row: int) -> SetEntry:
        return self._entries[row]

    def row_of(self, name: str) -> int:
        return self._rows.get(name, -1)

    def index_of(self, name: str) -> QModelIndex:
        row = self.row_of(name)
        return self.index(row, 0) if row >= 0 else QModelIndex()

    def set_entries(self, entries: list[SetEntry], paired: bool) -> bool:
        """Show a (re)scanned dataset. Returns True if rows were reset, False if updated in place.

        When the same sets in the same order come back (a caption edited, an image
        re-saved), rows are updated in place so the selection and scroll position stay.
        """
        max_inputs = max((len(e.image_set.inputs) for e in entries), default=0)
        max_inputs = max(1, max_inputs) if paired else 0
        same_rows = ([e.name for e in entries] == [e.name for e in self._entries]
                     and paired == self._paired and max_inputs == self._max_inputs)
        if same_rows and entries:
            self._entries = list(entries)
            self.dataChanged.emit(self.index(0, 0), self.index(len(entries) - 1, 0))
            return False
        self.beginResetModel()
        self._entries = list(entries)
        self._rows = {e.name: i for i, e in enumerate(entries)}
        self._paired = paired
        self._max_inputs = max_inputs
        self.endResetModel()
        return True

    def clear(self) -> None:
        self.set_entries([], True)

    def held_out(self) -> set[str]:
        return set(self._held_out)

    def is_held_out(self, name: str) -> bool:
        return name in self._held_out

    def set_held_out(self, names) -> None:
        """The sets held out for validation; their cells repaint with the mark."""
        names = set(names)
        if names != self._held_out:
            self._held_out = names
            if self._entries:
                self.dataChanged.emit(self.index(0, 0), self.index(len(self._entries) - 1, 0))

    def update_caption(self, name: str, caption: str | None) -> None:
        """The caption editor saved: reflect it in badges and filters without a rescan."""
        row = self.row_of(name)
        if row < 0:
            return
        self._entries[row].image_set.caption = caption
        idx = self.index(row, 0)
        self.dataChanged.emit(idx, idx)


class SetFilterModel(QSortFilterProxyModel):
    """Filter rows by problem kind and by text in the set's name or caption."""

    ALL = "all"
    PROBLEMS = "problems"
    ERRORS = "errors"
    MISSING_CAPTION = "missing_caption"
    HELD_OUT = "held_out"
    MODES = (ALL, PROBLEMS, ERRORS, MISSING_CAPTION, HELD_OUT)

    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        self._mode = self.ALL
        self._text = ""

    @property
    def mode(self) -> str:
        return self._mode

    def set_mode(self, mode: str) -> None:
        if mode not in self.MODES:
            raise ValueError(mode)
        if mode != self._mode:
            self._change_filter(lambda: setattr(self, "_mode", mode))

    def set_text(self, text: str) -> None:
        text = text.strip().casefold()
        if text != self._text:
            self._change_filter(lambda: setattr(self, "_text", text))

    def refilter(self) -> None:
        """The rows' data changed in a way the filter reads (which sets are held out)."""
        self._change_filter(lambda: None)

    def _change_filter(self, change) -> None:
        if hasattr(self, "endFilterChange"):  # Qt 6.10+
            self.beginFilterChange()
            change()
            self.endFilterChange(QSortFilterProxyModel.Direction.Rows)
        else:  # pragma: no cover - older Qt
            change()
            self.invalidateRowsFilter()

    def filterAcceptsRow(self, source_row: int, source_parent: QModelIndex | QPersistentModelIndex) -> bool:
        model = self.sourceModel()
        if not isinstance(model, SetListModel) or source_row >= model.rowCount():
            return True
        s = model.entry(source_row).image_set
        if self._mode == self.PROBLEMS and not s.problems:
            return False
        if self._mode == self.ERRORS and not s.has_error:
            return False
        if self._mode == self.MISSING_CAPTION and s.caption is not None and s.caption.strip():
            return False
        if self._mode == self.HELD_OUT and not model.is_held_out(s.name):
            return False
        if self._text:
            hay = s.name.casefold() + "\n" + (s.caption or "").casefold()
            if self._text not in hay:
                return False
        return True


__all__ = ["SetListModel", "SetFilterModel", "SetEntry", "make_entries", "Path"]
