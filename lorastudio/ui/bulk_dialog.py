"""Bulk caption edits (trigger word, find/replace, fill empty) with a preview before applying.

The dataset core plans the change (``plan_add_trigger`` / ``plan_find_replace`` /
``plan_fill_empty``); this dialog shows how many captions change and a before → after table,
and only ``Apply`` writes (``apply_caption_changes``, atomic per file, refusing to
overwrite a caption edited elsewhere since the preview).
"""

from __future__ import annotations

from PySide6.QtCore import Qt, QTimer, Signal
from PySide6.QtWidgets import (QCheckBox, QComboBox, QDialog, QDialogButtonBox, QFormLayout, QHeaderView, QLabel,
                               QLineEdit, QTabWidget, QTreeWidget, QTreeWidgetItem, QVBoxLayout, QWidget)

from lorastudio.dataset import (CaptionApplyResult, CaptionChange, Dataset, apply_caption_changes, plan_add_trigger,
                                plan_fill_empty, plan_find_replace)
from lorastudio.dataset.captions import normalize_caption
from lorastudio.ui import theme
from lorastudio.ui.window_geometry import size_dialog

PREVIEW_ROWS = 300


class BulkCaptionDialog(QDialog):
    """Window-modal but opened with ``open()`` (never ``exec()``), so nothing blocks."""

    #: Emitted after Apply with the result (the main window rescans).
    applied = Signal(object)

    def __init__(self, dataset: Dataset, parent: QWidget | None = None, trigger: str = "",
                 default_caption: str = "") -> None:
        super().__init__(parent)
        self.setWindowTitle("Edit captions in bulk")
        self.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        size_dialog(self, (820, 560))
        self.dataset = dataset
        self.changes: list[CaptionChange] = []
        self.result: CaptionApplyResult | None = None
        layout = QVBoxLayout(self)

        self.tabs = QTabWidget()
        # Trigger word.
        page = QWidget()
        form = QFormLayout(page)
        self.trigger_word = QLineEdit(trigger)
        self.trigger_word.setPlaceholderText("e.g. sks_style")
        self.trigger_position = QComboBox()
        self.trigger_position.addItem("at the start", "prefix")
        self.trigger_position.addItem("at the end", "suffix")
        form.addRow("Word", self.trigger_word)
        form.addRow("Put it", self.trigger_position)
        note = QLabel("Captions that already have the word are left alone; sets without a caption are too "
                      "(fill them first, or use the trigger setting in the Train tab, which adds the word at "
                      "training time without touching files).")
        note.setWordWrap(True)
        theme.set_role(note, "muted")
        form.addRow(note)
        self.tabs.addTab(page, "Trigger word")
        # Find / replace.
        page = QWidget()
        form = QFormLayout(page)
        self.find = QLineEdit()
        self.replace = QLineEdit()
        self.regex = QCheckBox("Regular expression (\\1 in the replacement refers to a group)")
        self.case = QCheckBox("Match case")
        self.case.setChecked(True)
        form.addRow("Find", self.find)
        form.addRow("Replace with", self.replace)
        form.addRow("", self.regex)
        form.addRow("", self.case)
        self.tabs.addTab(page, "Find and replace")
        # Fill empty.
        page = QWidget()
        form = QFormLayout(page)
        self.fill = QLineEdit(default_caption)
        self.fill.setPlaceholderText("the caption for every set that has none")
        form.addRow("Caption", self.fill)
        self.tabs.addTab(page, "Fill empty captions")
        layout.addWidget(self.tabs)

        self.count = QLabel("")
        theme.set_role(self.count, "heading")
        layout.addWidget(self.count)
        self.table = QTreeWidget()
        self.table.setColumnCount(3)
        self.table.setHeaderLabels(["Set", "Now", "After"])
        self.table.setRootIsDecorated(False)
        self.table.setUniformRowHeights(True)
        self.table.header().setSectionResizeMode(0, QHeaderView.ResizeMode.ResizeToContents)
        self.table.header().setSectionResizeMode(1, QHeaderView.ResizeMode.Stretch)
        self.table.header().setSectionResizeMode(2, QHeaderView.ResizeMode.Stretch)
        layout.addWidget(self.table, 1)
        self.buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Apply | QDialogButtonBox.StandardButton.Close)
        self.apply_button = self.buttons.button(QDialogButtonBox.StandardButton.Apply)
        self.apply_button.clicked.connect(self.apply)
        self.buttons.rejected.connect(self.reject)
        layout.addWidget(self.buttons)

        self._timer = QTimer(self)
        self._timer.setSingleShot(True)
        self._timer.setInterval(150)
        self._timer.timeout.connect(self.update_preview)
        for w in (self.trigger_word, self.find, self.replace, self.fill):
            w.textChanged.connect(self._timer.start)
        self.trigger_position.currentIndexChanged.connect(self._timer.start)
        self.regex.toggled.connect(self._timer.start)
        self.case.toggled.connect(self._timer.start)
        self.tabs.currentChanged.connect(self._timer.start)
        self.update_preview()

    def operation(self) -> str:
        return ("trigger", "replace", "fill")[self.tabs.currentIndex()]

    def plan(self) -> list[CaptionChange]:
        op = self.operation()
        if op == "trigger":
            return plan_add_trigger(self.dataset, self.trigger_word.text(), self.trigger_position.currentData())
        if op == "replace":
            return plan_find_replace(self.dataset, self.find.text(), self.replace.text(), regex=self.regex.isChecked(),
                                     case_sensitive=self.case.isChecked())
        return plan_fill_empty(self.dataset, self.fill.text())

    def update_preview(self) -> None:
        self._timer.stop()
        self.table.clear()
        try:
            self.changes = self.plan()
        except ValueError as exc:
            self.changes = []
            self.count.setText(str(exc))
            theme.set_role(self.count, "muted")
            self.apply_button.setEnabled(False)
            return
        n = len(self.changes)
        self.count.setText("No caption changes." if n == 0 else
                           f"{n} caption{'s' * (n != 1)} will change.")
        theme.set_role(self.count, "heading")
        self.apply_button.setEnabled(n > 0)
        self.apply_button.setText(f"Apply to {n}" if n else "Apply")
        items = []
        for c in self.changes[:PREVIEW_ROWS]:
            item = QTreeWidgetItem([c.set_name, c.old if c.old is not None else "(no caption)", c.new])
            item.setToolTip(1, c.old or "")
            item.setToolTip(2, c.new)
            items.append(item)
        self.table.addTopLevelItems(items)
        if n > PREVIEW_ROWS:
            self.table.addTopLevelItem(QTreeWidgetItem(["…", f"and {n - PREVIEW_ROWS} more", ""]))

    def apply(self) -> None:
        self.update_preview()
        if not self.changes:
            return
        self.result = apply_caption_changes(self.changes)
        r = self.result
        for c in r.written:  # keep the in-memory dataset in step until the rescan lands
            s = self.dataset.set_by_name(c.set_name)
            if s is not None:
                s.caption = normalize_caption(c.new)
        if r.failures:
            lines = [f"{f.change.set_name}: {f.reason}" for f in r.failures[:8]]
            more = f"\n… and {len(r.failures) - 8} more" if len(r.failures) > 8 else ""
            self.count.setText(f"Wrote {r.written_count}; {len(r.failures)} not written:\n" + "\n".join(lines) + more)
            theme.set_role(self.count, "error")
        self.applied.emit(r)
        if not r.failures:
            self.accept()
