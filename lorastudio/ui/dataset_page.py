"""The Dataset tab: the grid of sets, the problems panel, the large preview and the caption.

The grid is a ``QListView`` in icon mode over ``SetListModel`` (through a filter proxy)
with ``SetDelegate`` painting each set; uniform item sizes keep 2,000 sets cheap. The
problems panel lists the dataset core's findings; clicking one selects its set. Its context
menu holds selected sets out for validation (or gives them back to training), sets a set's
repeats and drafts captions.
"""

from __future__ import annotations

from functools import partial
from html import escape

from PySide6.QtCore import QItemSelectionModel, QModelIndex, Qt, Signal
from PySide6.QtWidgets import (QAbstractItemView, QComboBox, QHBoxLayout, QInputDialog, QLabel, QLineEdit, QListView,
                               QMenu, QPushButton, QSlider, QSplitter, QVBoxLayout, QWidget)

from lorastudio.dataset.model import Dataset, Severity
from lorastudio.ui import theme
from lorastudio.ui.caption_editor import CaptionEditor
from lorastudio.ui.image_strip import ImageStrip, StripItem
from lorastudio.ui.problems_panel import ProblemsPanel
from lorastudio.ui.set_delegate import THUMB, SetDelegate
from lorastudio.ui.set_model import SetEntry, SetFilterModel, SetListModel
from lorastudio.ui.thumbnails import ThumbnailLoader

#: Text shown inside rich text (names, captions, messages): only & < > escaped, as Qt needs.
_escape = partial(escape, quote=False)

FILTERS = [
    (SetFilterModel.ALL, "All sets"),
    (SetFilterModel.PROBLEMS, "Sets with problems"),
    (SetFilterModel.ERRORS, "Sets with errors"),
    (SetFilterModel.MISSING_CAPTION, "Missing caption"),
    (SetFilterModel.HELD_OUT, "Held out for validation"),
]


def input_label(i: int) -> str:
    return "_start" if i == 0 else f"_start{i}"


class SetGrid(QListView):
    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("setGrid")
        self.setViewMode(QListView.ViewMode.IconMode)
        self.setFlow(QListView.Flow.LeftToRight)
        self.setWrapping(True)
        self.setResizeMode(QListView.ResizeMode.Adjust)
        self.setMovement(QListView.Movement.Static)
        self.setUniformItemSizes(True)
        self.setLayoutMode(QListView.LayoutMode.Batched)
        self.setBatchSize(500)
        self.setSpacing(6)
        self.setSelectionMode(QAbstractItemView.SelectionMode.ExtendedSelection)  # Ctrl/Shift: several sets
        self.setVerticalScrollMode(QAbstractItemView.ScrollMode.ScrollPerPixel)
        self.verticalScrollBar().setSingleStep(24)
        self.setMouseTracking(True)
        self.setDragEnabled(False)
        self.setAcceptDrops(False)  # folder drops go to the main window
        self.setToolTip("")


class SetDetail(QWidget):
    """The selected set: large before → after preview, its problems and its caption."""

    def __init__(self, loader: ThumbnailLoader, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(12, 8, 12, 12)
        layout.setSpacing(8)
        head = QHBoxLayout()
        self.name = QLabel("No set selected")
        theme.set_role(self.name, "heading")
        self.name.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.prev_button = QPushButton()
        self.next_button = QPushButton()
        self.prev_button.setToolTip("Previous set (PgUp, Alt+Left)")
        self.next_button.setToolTip("Next set (PgDown, Alt+Right)")
        for b in (self.prev_button, self.next_button):
            b.setFixedWidth(36)
        head.addWidget(self.name, 1)
        head.addWidget(self.prev_button)
        head.addWidget(self.next_button)
        layout.addLayout(head)
        self.preview = ImageStrip(loader, self, box=768, empty_message="Select a set in the grid to see it here.")
        self.preview.setMinimumHeight(160)
        self.preview.set_fit_height(True, 560)
        layout.addWidget(self.preview)
        self.problems = QLabel("")
        self.problems.setWordWrap(True)
        self.problems.setTextFormat(Qt.TextFormat.RichText)
        self.problems.hide()
        layout.addWidget(self.problems)
        self.caption = CaptionEditor(self)
        layout.addWidget(self.caption, 1)
        self.refresh_icons()

    def refresh_icons(self) -> None:
        self.prev_button.setIcon(theme.icon("previous"))
        self.next_button.setIcon(theme.icon("next"))

    def show_set(self, entry: SetEntry | None, paired: bool) -> None:
        if entry is None:
            self.name.setText("No set selected")
            self.preview.set_items([])
            self.problems.hide()
            self.caption.set_image_set(None)
            return
        s = entry.image_set
        self.name.setText(s.name)
        items: list[StripItem] = []
        if paired:
            for i, p in enumerate(s.inputs):
                items.append(StripItem(f"{input_label(i)} · {p.name}", p))
            if not s.inputs:
                items.append(StripItem("_start", None, "no _start image"))
            items.append(StripItem(f"_end · {s.target.name}" if s.target else "_end", s.target,
                                   "no _end image", arrow_before=True))
        else:
            items.append(StripItem(s.target.name if s.target else "image", s.target, "no image"))
        self.preview.set_items(items)
        if s.problems:
            c = theme.colors()
            rows = []
            for p in s.problems:
                color = {Severity.ERROR: c.error, Severity.WARNING: c.warning}.get(p.severity, c.info)
                rows.append(f"<span style='color:{color}'>●</span> {_escape(p.message)}")
            self.problems.setText("<br>".join(rows))
            self.problems.show()
        else:
            self.problems.hide()
        self.caption.set_image_set(s)


class DatasetPage(QWidget):
    """Grid + problems (left), selected set (right)."""

    #: The selected set changed (name, or "" for none).
    current_set_changed = Signal(str)
    #: The grid's thumbnail size changed (the zoom slider).
    thumb_size_changed = Signal(int)
    #: The artist set how often a set is shown per epoch (name, count): ``dataset.repeats``.
    repeats_requested = Signal(str, int)
    #: Hold these sets out for validation (True) or use them for training again (False).
    hold_out_requested = Signal(list, bool)

    def __init__(self, loader: ThumbnailLoader, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.loader = loader
        self.model = SetListModel(self)
        self.proxy = SetFilterModel(self)
        self.proxy.setSourceModel(self.model)
        self.dataset: Dataset | None = None

        outer = QHBoxLayout(self)
        outer.setContentsMargins(0, 0, 0, 0)
        self.splitter = QSplitter(Qt.Orientation.Horizontal, self)
        outer.addWidget(self.splitter)

        left = QWidget()
        left_layout = QVBoxLayout(left)
        left_layout.setContentsMargins(10, 8, 6, 8)
        left_layout.setSpacing(6)
        bar = QHBoxLayout()
        self.filter_combo = QComboBox()
        for mode, label in FILTERS:
            self.filter_combo.addItem(label, mode)
        self.filter_combo.setToolTip("Show all sets, or only those that need attention")
        self.filter_combo.currentIndexChanged.connect(self._filter_changed)
        self.search = QLineEdit()
        self.search.setPlaceholderText("Search names and captions")
        self.search.setClearButtonEnabled(True)
        self.search.textChanged.connect(self.proxy.set_text)
        self.search.textChanged.connect(lambda _t: self._update_count())
        self.count_label = QLabel("")
        theme.set_role(self.count_label, "muted")
        self.zoom = QSlider(Qt.Orientation.Horizontal)
        self.zoom.setRange(64, 240)
        self.zoom.setSingleStep(8)
        self.zoom.setPageStep(32)
        self.zoom.setValue(THUMB)
        self.zoom.setFixedWidth(110)
        self.zoom.setToolTip("Thumbnail size")
        self.zoom.valueChanged.connect(self.set_thumb_size)
        self.zoom.valueChanged.connect(self.thumb_size_changed)
        bar.addWidget(self.filter_combo)
        bar.addWidget(self.search, 1)
        bar.addWidget(self.count_label)
        bar.addSpacing(8)
        bar.addWidget(self.zoom)
        left_layout.addLayout(bar)

        self.vsplit = QSplitter(Qt.Orientation.Vertical)
        self.grid = SetGrid()
        self.grid.setModel(self.proxy)
        self.delegate = SetDelegate(self.grid, loader)
        self.grid.setItemDelegate(self.delegate)
        self.grid.selectionModel().currentChanged.connect(self._current_changed)
        self.grid.setContextMenuPolicy(Qt.ContextMenuPolicy.CustomContextMenu)
        self.grid.customContextMenuRequested.connect(self._grid_menu)
        #: A set's current repeats (the settings hold them; the workspace wires this).
        self.repeats_of = lambda _name: 1
        self.vsplit.addWidget(self.grid)
        self.problems_panel = ProblemsPanel()
        self.problems_panel.set_requested.connect(self.select_set)
        self.vsplit.addWidget(self.problems_panel)
        self.vsplit.setStretchFactor(0, 4)
        self.vsplit.setStretchFactor(1, 1)
        self.vsplit.setSizes([600, 230])  # a short (720 px) screen still shows three or four problems
        left_layout.addWidget(self.vsplit, 1)

        self.detail = SetDetail(loader)
        self.detail.prev_button.clicked.connect(self.previous_set)
        self.detail.next_button.clicked.connect(self.next_set)
        self.detail.caption.saved.connect(self.model.update_caption)
        self.detail.caption.saved.connect(lambda *_: self._update_count())

        self.splitter.addWidget(left)
        self.splitter.addWidget(self.detail)
        self.splitter.setStretchFactor(0, 3)
        self.splitter.setStretchFactor(1, 2)
        self.splitter.setSizes([760, 520])
        self._model_counts = ""

    # -- data -----------------------------------------------------------------------------

    def set_dataset(self, dataset: Dataset | None, entries: list[SetEntry]) -> None:
        """Show a dataset (a first scan or a rescan: the selected set stays selected)."""
        previous = self.current_name()
        self.dataset = dataset
        paired = dataset is None or dataset.mode.value == "paired"
        max_inputs = max((len(e.image_set.inputs) for e in entries), default=0)
        self.delegate.configure(max(1, max_inputs) if paired else 0, paired)
        self.detail.caption.set_paired(paired)
        reset = self.model.set_entries(entries, paired)
        if reset:
            self.grid.doItemsLayout()
        self.problems_panel.set_problems(dataset.problems if dataset else [])
        self._update_count()
        name = previous if previous and self.model.row_of(previous) >= 0 else None
        if name is None and entries:
            name = entries[0].name
        if reset or name != previous:
            if name:
                self.select_set(name)
            else:
                self.detail.show_set(None, paired)
        elif name:
            self.detail.show_set(self.model.entry(self.model.row_of(name)), paired)

    def current_name(self) -> str:
        idx = self.grid.currentIndex()
        if not idx.isValid():
            return ""
        return idx.data(Qt.ItemDataRole.DisplayRole) or ""

    def current_entry(self) -> SetEntry | None:
        row = self.model.row_of(self.current_name())
        return self.model.entry(row) if row >= 0 else None

    def select_set(self, name: str) -> bool:
        src = self.model.index_of(name)
        if not src.isValid():
            return False
        idx = self.proxy.mapFromSource(src)
        if not idx.isValid():  # filtered out: show everything again
            self.filter_combo.setCurrentIndex(0)
            self.search.clear()
            idx = self.proxy.mapFromSource(src)
        self.grid.selectionModel().setCurrentIndex(
            idx, QItemSelectionModel.SelectionFlag.ClearAndSelect)
        self.grid.scrollTo(idx, QAbstractItemView.ScrollHint.EnsureVisible)
        return True

    def selected_names(self) -> list[str]:
        """The selected sets, in grid order."""
        rows = sorted(self.grid.selectionModel().selectedIndexes(), key=lambda i: i.row())
        return [i.data(Qt.ItemDataRole.DisplayRole) for i in rows]

    def grid_menu(self, name: str) -> QMenu:
        """The right-click menu of set ``name`` (acting on the whole selection when it is in it)."""
        selected = self.selected_names()
        names = selected if name in selected else [name]
        held = self.model.held_out()
        hold = not all(n in held for n in names)
        many = f" ({len(names)} sets)" if len(names) > 1 else ""
        menu = QMenu(self)
        menu.addAction(("Hold out for validation" if hold else "Use for training") + many,
                       lambda: self.hold_out_requested.emit(names, hold))
        repeats = menu.addAction(f"Repeats per epoch… (now ×{self.repeats_of(name)})",
                                 lambda: self.ask_repeats(name))
        if name in held:  # never trained on: repeats mean nothing
            repeats.setEnabled(False)
            repeats.setText("Repeats per epoch… (held out: not trained on)")
        menu.addActions(self.grid.actions())  # the window's (Draft Captions…)
        return menu

    def _grid_menu(self, pos) -> None:
        idx = self.grid.indexAt(pos)
        name = idx.data(Qt.ItemDataRole.DisplayRole) if idx.isValid() else ""
        if name:
            self.grid_menu(name).popup(self.grid.viewport().mapToGlobal(pos))

    def ask_repeats(self, name: str) -> None:
        """Weight a rare case: the set is shown this many times per epoch (dataset.repeats)."""
        count, ok = QInputDialog.getInt(self, "Repeats", f"How many times “{name}” is shown per epoch "
                                        "(1 = once, like every other set):", self.repeats_of(name), 1, 100)
        if ok:
            self.repeats_requested.emit(name, count)

    def next_set(self) -> None:
        self._step(1)

    def previous_set(self) -> None:
        self._step(-1)

    def _step(self, delta: int) -> None:
        n = self.proxy.rowCount()
        if n == 0:
            return
        cur = self.grid.currentIndex()
        row = cur.row() + delta if cur.isValid() else 0
        row = max(0, min(n - 1, row))
        idx = self.proxy.index(row, 0)
        self.grid.selectionModel().setCurrentIndex(idx, QItemSelectionModel.SelectionFlag.ClearAndSelect)
        self.grid.scrollTo(idx)

    @property
    def caption_editor(self) -> CaptionEditor:
        return self.detail.caption

    def update_caption(self, name: str, text: str) -> None:
        """A caption was written outside the editor (the bulk dialog): show it in the grid."""
        self.model.update_caption(name, text)

    def focus_search(self) -> None:
        self.search.setFocus()
        self.search.selectAll()

    def splitters(self) -> dict[str, QSplitter]:
        """The splitters whose positions are remembered between runs, by settings name."""
        return {"dataset": self.splitter, "dataset_v": self.vsplit}

    def thumb_size(self) -> int:
        return self.delegate.thumb

    def set_thumb_size(self, size: int) -> None:
        """Zoom the grid: every cell gets the new size at once (uniform item sizes)."""
        size = max(32, int(size))
        if size == self.delegate.thumb:
            return
        if self.zoom.value() != size:
            self.zoom.setValue(size)
        self.delegate.thumb = size
        self.delegate.sizeHintChanged.emit(QModelIndex())
        self.grid.doItemsLayout()
        current = self.grid.currentIndex()
        if current.isValid():
            self.grid.scrollTo(current)

    def set_filter(self, mode: str) -> None:
        for i in range(self.filter_combo.count()):
            if self.filter_combo.itemData(i) == mode:
                self.filter_combo.setCurrentIndex(i)

    def refresh_theme(self) -> None:
        self.detail.refresh_icons()
        self.problems_panel.set_problems(self.problems_panel.problems)
        self.grid.viewport().update()

    # -- internals --------------------------------------------------------------------------

    def _filter_changed(self, _i: int) -> None:
        self.proxy.set_mode(self.filter_combo.currentData())
        self._update_count()
        if not self.grid.currentIndex().isValid() and self.proxy.rowCount():
            self._step(0)

    def _current_changed(self, current: QModelIndex, _previous: QModelIndex) -> None:
        entry = None
        if current.isValid():
            src = self.proxy.mapToSource(current)
            entry = self.model.entry(src.row())
        self.detail.show_set(entry, self.model.paired)
        self.current_set_changed.emit(entry.name if entry else "")

    def _update_count(self) -> None:
        total = self.model.rowCount()
        shown = self.proxy.rowCount()
        text = f"{total} sets" if shown == total else f"{shown} of {total} sets"
        held = len(self.model.held_out())
        self.count_label.setText(text + (f" · {held} held out" if held else ""))

    def set_held_out(self, names: list[str]) -> None:
        """Mark the sets held out for validation (``dataset.validation``) on their thumbnails."""
        self.model.set_held_out(names)
        if self.proxy.mode == SetFilterModel.HELD_OUT:
            self.proxy.refilter()
        self._update_count()

