"""The Dataset tab's problems panel: the dataset core's findings, errors first."""

from __future__ import annotations

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import QHBoxLayout, QHeaderView, QLabel, QTreeWidget, QTreeWidgetItem, QVBoxLayout, QWidget

from lorastudio.dataset.model import Problem, Severity
from lorastudio.ui import theme


class ProblemsPanel(QWidget):
    """The dataset core's findings, errors first; clicking one asks to select its set."""

    set_requested = Signal(str)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 6, 0, 0)
        layout.setSpacing(4)
        head = QHBoxLayout()
        self.title = QLabel("Problems")
        theme.set_role(self.title, "heading")
        self.summary = QLabel("")
        theme.set_role(self.summary, "muted")
        head.addWidget(self.title)
        head.addWidget(self.summary, 1)
        layout.addLayout(head)
        self.tree = QTreeWidget(self)
        self.tree.setColumnCount(3)
        self.tree.setHeaderLabels(["Set", "Problem", "Files"])
        self.tree.setRootIsDecorated(False)
        self.tree.setUniformRowHeights(True)
        self.tree.setAlternatingRowColors(False)
        self.tree.setWordWrap(False)
        self.tree.header().setSectionResizeMode(0, QHeaderView.ResizeMode.Interactive)
        self.tree.header().setSectionResizeMode(1, QHeaderView.ResizeMode.Stretch)
        self.tree.header().setSectionResizeMode(2, QHeaderView.ResizeMode.Interactive)
        self.tree.header().setStretchLastSection(False)
        self.tree.setColumnWidth(0, 160)
        self.tree.setColumnWidth(2, 220)
        self.tree.itemClicked.connect(self._clicked)
        self.tree.itemActivated.connect(self._clicked)
        layout.addWidget(self.tree, 1)
        self.problems: list[Problem] = []

    def set_problems(self, problems: list[Problem]) -> None:
        self.problems = list(problems)
        self.tree.clear()
        order = {Severity.ERROR: 0, Severity.WARNING: 1, Severity.INFO: 2}
        icons = {Severity.ERROR: theme.icon("error"), Severity.WARNING: theme.icon("warning"),
                 Severity.INFO: theme.icon("info")}
        items = []
        for p in sorted(self.problems, key=lambda p: (order[p.severity], p.set_name or "")):
            files = [f for f in p.files if f not in ("", ".")]
            item = QTreeWidgetItem([p.set_name or "(dataset)", p.message, ", ".join(files)])
            item.setIcon(0, icons[p.severity])
            item.setToolTip(1, f"{p.severity.value.capitalize()} ({p.code}): {p.message}")
            item.setToolTip(2, "\n".join(files))
            item.setData(0, Qt.ItemDataRole.UserRole, p.set_name or "")
            items.append(item)
        self.tree.addTopLevelItems(items)
        counts = {s: sum(p.severity is s for p in self.problems) for s in Severity}
        parts = []
        if counts[Severity.ERROR]:
            parts.append(f"{counts[Severity.ERROR]} error{'s' * (counts[Severity.ERROR] != 1)}")
        if counts[Severity.WARNING]:
            parts.append(f"{counts[Severity.WARNING]} warning{'s' * (counts[Severity.WARNING] != 1)}")
        if counts[Severity.INFO]:
            parts.append(f"{counts[Severity.INFO]} note{'s' * (counts[Severity.INFO] != 1)}")
        self.summary.setText(" · ".join(parts) if parts else "No problems found")

    def _clicked(self, item: QTreeWidgetItem, _column: int = 0) -> None:
        name = item.data(0, Qt.ItemDataRole.UserRole)
        if name:
            self.set_requested.emit(name)
