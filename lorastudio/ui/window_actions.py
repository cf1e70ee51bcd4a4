"""The main window's actions, menus and toolbar, as tables.

Each action is one row (text, shortcuts, tip, icon, and the ``Actions`` fact that enables
it); the menus and the toolbar list action names. ``WindowActions`` builds them once and
enables them from the session's ``Actions``: adding a command is one row here plus its slot.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Mapping

from PySide6.QtCore import Qt
from PySide6.QtGui import QAction, QActionGroup, QKeySequence
from PySide6.QtWidgets import QMainWindow, QToolBar, QToolButton

from lorastudio.session import Actions
from lorastudio.ui import theme

K = QKeySequence.StandardKey


@dataclass(frozen=True)
class ActionSpec:
    name: str
    text: str
    shortcuts: tuple = ()
    tip: str = ""
    #: Icon name in ``resources/icons`` (refreshed when the theme changes).
    icon: str = ""
    #: The ``Actions`` property that enables it; empty: always enabled.
    enabled_when: str = ""


ACTIONS = (
    ActionSpec("open", "&Open Folder…", (K.Open,), "Open a folder of training images", "open"),
    ActionSpec("open_project", "Open &Project…", ("Ctrl+Shift+O",), "Open a saved project (.toml)", "project"),
    ActionSpec("save", "&Save Project", (K.Save,), "Save the dataset and settings as a project file the CLI can train",
               "save", "has_project"),
    ActionSpec("save_as", "Save Project &As…", ("Ctrl+Shift+S",), enabled_when="has_project"),
    ActionSpec("close", "&Close Project", ("Ctrl+W",), enabled_when="can_close"),
    ActionSpec("quit", "&Quit", (K.Quit,)),
    ActionSpec("demo", "Open the &Demo", (), "The built-in demo: tiny model + dataset", "demo"),
    ActionSpec("bulk", "&Bulk Caption Edits…", ("Ctrl+B",),
               "Add a trigger word, find and replace, or fill empty captions", "captions", "can_bulk_edit"),
    ActionSpec("draft", "&Draft Captions…", ("Ctrl+Shift+D",),
               "Draft captions with a local vision-language model (Qwen2.5-VL / Qwen3-VL)", "", "can_bulk_edit"),
    ActionSpec("next", "&Next Set", ("PgDown", "Alt+Right"), "Select the next set", "next", "has_project"),
    ActionSpec("prev", "&Previous Set", ("PgUp", "Alt+Left"), "Select the previous set", "previous", "has_project"),
    ActionSpec("find", "&Find Sets", (K.Find,), "Search set names and captions", enabled_when="has_project"),
    ActionSpec("rescan", "&Rescan Folder", (K.Refresh,), "Read the folder again", enabled_when="has_project"),
    ActionSpec("train", "&Train", ("Ctrl+Return", "Ctrl+Enter"), "Start training with these settings", "train",
               "can_train"),
    ActionSpec("resume", "&Resume", ("Ctrl+Shift+Return", "Ctrl+Shift+Enter"),
               "Continue training from the last checkpoint", "resume", "can_resume"),
    ActionSpec("stop", "S&top", ("Ctrl+.", "Esc"), "Stop gracefully (saves a checkpoint and the LoRA so far)", "stop",
               "can_stop"),
    *(ActionSpec(f"tab_{i}", f"&{name}", (f"Ctrl+{i + 1}",), f"Show the {name} tab")
      for i, name in enumerate(("Dataset", "Train", "Test"))),
    ActionSpec("tips", "&Training Tips"),
    ActionSpec("about", "&About LoRA Studio"),
)

#: Menu title → action names; "-" a separator, "@recent" / "@theme" the submenus.
MENUS = (
    ("&File", ("open", "open_project", "demo", "@recent", "-", "save", "save_as", "close", "-", "quit")),
    ("&Dataset", ("next", "prev", "find", "-", "bulk", "draft", "rescan")),
    ("&Training", ("train", "stop", "resume")),
    ("&View", ("tab_0", "tab_1", "tab_2", "-", "@theme")),
    ("&Help", ("tips", "about")),
)
TOOLBAR = ("open", "save", "-", "bulk", "draft", "-", "train", "stop", "resume")
#: Shorter labels beside the toolbar icons.
ICON_TEXT = {"open": "Open", "save": "Save", "bulk": "Captions", "draft": "Draft"}
THEMES = (("system", "Follow the &System"), ("light", "&Light"), ("dark", "&Dark"))


def make_action(owner: QMainWindow, spec: ActionSpec, slot: Callable) -> QAction:
    a = QAction(spec.text, owner)
    if spec.shortcuts:
        a.setShortcuts([QKeySequence(s) for s in spec.shortcuts])
        a.setShortcutContext(Qt.ShortcutContext.WindowShortcut)
    keys = ", ".join(QKeySequence(s).toString(QKeySequence.SequenceFormat.NativeText) for s in spec.shortcuts)
    tip = spec.tip or spec.text
    a.setToolTip(f"{tip} ({keys})" if keys else tip)
    a.setStatusTip(tip)
    a.triggered.connect(slot)
    owner.addAction(a)
    return a


class WindowActions:
    """Builds the table's actions into a window (with its menus and toolbar) and enables them."""

    def __init__(self, window: QMainWindow, slots: Mapping[str, Callable], theme_choice: str,
                 recent: Callable[[], list[str]]) -> None:
        """``slots``: one per action name, plus ``theme(key)``, ``open_recent(path)`` and ``clear_recent()``;
        ``recent()`` lists the recent projects for the File menu."""
        self.specs = {spec.name: spec for spec in ACTIONS}
        self.by_name = {spec.name: make_action(window, spec, slots[spec.name]) for spec in ACTIONS}
        self._slots = slots
        self._recent = recent
        self.theme_group = QActionGroup(window)
        self.theme = {}
        for key, label in THEMES:
            a = QAction(label, window, checkable=True)
            a.triggered.connect(lambda _=False, key=key: slots["theme"](key))
            self.theme_group.addAction(a)
            self.theme[key] = a
        self.theme.get(theme_choice, self.theme["system"]).setChecked(True)
        self._make_menus(window)
        self.toolbar = self._make_toolbar(window)

    def __getitem__(self, name: str) -> QAction:
        return self.by_name[name]

    def _make_menus(self, window: QMainWindow) -> None:
        bar = window.menuBar()
        for title, names in MENUS:
            menu = bar.addMenu(title)
            for name in names:
                if name == "-":
                    menu.addSeparator()
                elif name == "@recent":
                    self.recent_menu = menu.addMenu("Open &Recent")
                    self.recent_menu.aboutToShow.connect(self._fill_recent_menu)
                elif name == "@theme":
                    sub = menu.addMenu("&Theme")
                    for a in self.theme.values():
                        sub.addAction(a)
                else:
                    menu.addAction(self.by_name[name])

    def _make_toolbar(self, window: QMainWindow) -> QToolBar:
        tb = QToolBar("Main")
        tb.setObjectName("mainToolbar")
        tb.setMovable(False)
        tb.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextBesideIcon)
        window.addToolBar(Qt.ToolBarArea.TopToolBarArea, tb)
        for name in TOOLBAR:
            if name == "-":
                tb.addSeparator()
                continue
            a = self.by_name[name]
            tb.addAction(a)
            w = tb.widgetForAction(a)
            if isinstance(w, QToolButton):
                w.setToolTip(a.toolTip())
        for name, text in ICON_TEXT.items():
            self.by_name[name].setIconText(text)
        return tb

    def _fill_recent_menu(self) -> None:
        menu = self.recent_menu
        menu.clear()
        recent = self._recent()
        for p in recent:
            a = menu.addAction(p)
            a.triggered.connect(lambda _=False, p=p: self._slots["open_recent"](p))
        if recent:
            menu.addSeparator()
            menu.addAction("Clear", self._slots["clear_recent"])
        else:
            menu.addAction("(none)").setEnabled(False)

    def enable(self, actions: Actions) -> None:
        for name, spec in self.specs.items():
            if spec.enabled_when:
                self.by_name[name].setEnabled(bool(getattr(actions, spec.enabled_when)))

    def refresh_icons(self) -> None:
        for name, spec in self.specs.items():
            if spec.icon:
                self.by_name[name].setIcon(theme.icon(spec.icon))
