"""The main window: welcome page or a project (Dataset · Train · Test tabs), menus, shortcuts.

Folder scans run on the asyncio loop that qasync drives from the Qt event loop: the scan
itself goes to an executor thread and the coroutine resumes on the UI thread with the
result, so opening or rescanning 2,000 sets never freezes the window. Modal dialogs are
only ever shown from plain (synchronous) slots, never inside an async slot.
"""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path

from PySide6.QtCore import QByteArray, QFileSystemWatcher, Qt, QTimer, Signal
from PySide6.QtGui import QAction, QActionGroup, QCloseEvent, QDragEnterEvent, QDropEvent, QKeySequence
from PySide6.QtWidgets import (QApplication, QFileDialog, QLabel, QMainWindow, QMessageBox, QStackedWidget, QTabWidget,
                               QToolBar, QToolButton, QVBoxLayout, QWidget)

from qasync import asyncSlot  # noqa: E402  (PySide6 is imported above, so qasync binds to it)

from lorastudio.config import ConfigError
from lorastudio.dataset.model import Dataset, Mode, Severity
from lorastudio.ui import theme
from lorastudio.ui.bulk_dialog import BulkCaptionDialog
from lorastudio.ui.caption_editor import MessageBar
from lorastudio.ui.compare_page import ComparePage
from lorastudio.ui.dataset_page import DatasetPage
from lorastudio.project import Project
from lorastudio.ui.runner import WorkerRunner
from lorastudio.ui.sample_gallery import Sample, SampleViewer
from lorastudio.ui.set_model import SetEntry, make_entries
from lorastudio.ui.settings import Settings
from lorastudio.user_folders import cache_dir, demo_dir
from lorastudio.ui.thumbnails import ThumbnailLoader
from lorastudio.ui.training_page import TrainingPage
from lorastudio.ui.welcome import DemoMaker, WelcomePage

APP_TITLE = "LoRA Studio"


def folder_snapshot(root: Path) -> dict[str, tuple[int, int]]:
    """Name → (mtime_ns, size) of every entry in the folder (cheap: one scandir)."""
    snap = {}
    with os.scandir(root) as it:
        for e in it:
            try:
                st = e.stat()
            except OSError:
                continue
            snap[e.name] = (st.st_mtime_ns, st.st_size)
    return snap


def scan_job(root: Path, check_images: bool) -> tuple[Dataset, list[SetEntry], dict[str, tuple[int, int]]]:
    """Runs in an executor thread: snapshot first (a change during the scan is seen next time)."""
    from lorastudio.dataset import scan_dataset

    snapshot = folder_snapshot(root)
    dataset = scan_dataset(root, check_images=check_images)
    return dataset, make_entries(dataset), snapshot


def has_checkpoint(run_dir: Path) -> bool:
    """A complete checkpoint Resume can continue from: the worker writes
    ``RUN/checkpoints/step_NNNNNN/`` and marks it complete with a ``manifest.json`` last."""
    return run_dir.is_dir() and any((run_dir / "checkpoints").glob("*/manifest.json"))


class MainWindow(QMainWindow):
    #: A scan finished and the grid shows it (for tests and the benchmark).
    dataset_loaded = Signal()
    project_opened = Signal(str)

    def __init__(self, settings: Settings | None = None, theme_manager: theme.ThemeManager | None = None,
                 kill_timeout: float = 5.0) -> None:
        super().__init__()
        self.settings = settings or Settings()
        self.theme_manager = theme_manager
        self.project: Project | None = None
        self.dataset: Dataset | None = None
        self._snapshot: dict[str, tuple[int, int]] = {}
        self._scan_task: asyncio.Task | None = None
        self._scan_again = False
        self._scan_generation = 0
        self._run_resume = False
        self._viewers: list[SampleViewer] = []
        #: Asked before quitting with unsaved work; tests replace it.
        self.ask = self._ask_user

        self.setWindowTitle(APP_TITLE)
        self.setWindowIcon(theme.icon("app"))
        self.setAcceptDrops(True)
        self.setMinimumSize(960, 640)
        self.resize(1360, 860)

        self.loader = ThumbnailLoader(cache_dir(), self)
        self.runner = WorkerRunner(self, kill_timeout=kill_timeout)
        self.demo = DemoMaker(self)
        self.watcher = QFileSystemWatcher(self)
        self.watcher.directoryChanged.connect(self._folder_touched)
        self.watcher.fileChanged.connect(self._folder_touched)
        self._watch_timer = QTimer(self)
        self._watch_timer.setSingleShot(True)
        self._watch_timer.setInterval(400)
        self._watch_timer.timeout.connect(self.check_for_changes)

        # Pages.
        self.stack = QStackedWidget()
        self.welcome = WelcomePage()
        self.tabs = QTabWidget()
        self.tabs.setDocumentMode(True)
        self.dataset_page = DatasetPage(self.loader)
        self.training_page = TrainingPage(self.loader)
        self.compare_page = ComparePage(self.loader)
        self.tabs.addTab(self.dataset_page, "Dataset")
        self.tabs.addTab(self.training_page, "Train")
        self.tabs.addTab(self.compare_page, "Test")
        self.banner = MessageBar("error")
        workspace = QWidget()
        wl = QVBoxLayout(workspace)
        wl.setContentsMargins(0, 0, 0, 0)
        wl.setSpacing(0)
        wl.addWidget(self.banner)
        wl.addWidget(self.tabs, 1)
        self.stack.addWidget(self.welcome)
        self.stack.addWidget(workspace)
        self.setCentralWidget(self.stack)

        self.editor = self.dataset_page.detail.caption
        self.form = self.training_page.form
        self.run_panel = self.training_page.run

        self._make_actions()
        self._make_menus()
        self._make_toolbar()
        self._make_statusbar()
        self._connect()
        self._restore_geometry()
        self.welcome.set_recent(self.settings.recent())
        try:
            self.dataset_page.set_thumb_size(int(self.settings.q.value("thumb_size", self.dataset_page.delegate.thumb)))
        except (TypeError, ValueError):
            pass
        self.dataset_page.zoom.valueChanged.connect(lambda v: self.settings.q.setValue("thumb_size", int(v)))
        self._update_actions()
        self.refresh_theme()
        if self.theme_manager is not None:
            self.theme_manager.changed.connect(self.refresh_theme)
        app = QApplication.instance()
        if app is not None:
            app.applicationStateChanged.connect(self._app_state_changed)
            app.aboutToQuit.connect(self._about_to_quit)

    # -- construction ---------------------------------------------------------------------

    def _action(self, text: str, slot, shortcuts=(), tip: str = "", icon: str = "") -> QAction:
        a = QAction(text, self)
        if shortcuts:
            a.setShortcuts([QKeySequence(s) for s in shortcuts])
            a.setShortcutContext(Qt.ShortcutContext.WindowShortcut)
        keys = ", ".join(QKeySequence(s).toString(QKeySequence.SequenceFormat.NativeText) for s in shortcuts)
        a.setToolTip(f"{tip or text} ({keys})" if keys else (tip or text))
        a.setStatusTip(tip or text)
        if icon:
            a.setData(icon)
        a.triggered.connect(slot)
        self.addAction(a)
        return a

    def _make_actions(self) -> None:
        K = QKeySequence.StandardKey
        self.act_open = self._action("&Open Folder…", self.open_folder_dialog, [K.Open],
                                     "Open a folder of training images", "open")
        self.act_open_project = self._action("Open &Project…", self.open_project_dialog, ["Ctrl+Shift+O"],
                                             "Open a saved project (.toml)", "project")
        self.act_save = self._action("&Save Project", self.save_project, [K.Save],
                                     "Save the dataset and settings as a project file the CLI can train", "save")
        self.act_save_as = self._action("Save Project &As…", self.save_project_as, ["Ctrl+Shift+S"])
        self.act_close = self._action("&Close Project", self.close_project, ["Ctrl+W"])
        self.act_quit = self._action("&Quit", self.close, [K.Quit])
        self.act_demo = self._action("Open the &Demo", self.open_demo, [], "The built-in demo: tiny model + dataset",
                                     "demo")
        self.act_bulk = self._action("&Bulk Caption Edits…", self.open_bulk_dialog, ["Ctrl+B"],
                                     "Add a trigger word, find and replace, or fill empty captions", "captions")
        self.act_next = self._action("&Next Set", self.dataset_page.next_set, ["PgDown", "Alt+Right"],
                                     "Select the next set", "next")
        self.act_prev = self._action("&Previous Set", self.dataset_page.previous_set, ["PgUp", "Alt+Left"],
                                     "Select the previous set", "previous")
        self.act_find = self._action("&Find Sets", self._focus_search, [K.Find], "Search set names and captions")
        self.act_rescan = self._action("&Rescan Folder", self.rescan, [K.Refresh], "Read the folder again")
        self.act_train = self._action("&Train", lambda: self.start_training(False), ["Ctrl+Return", "Ctrl+Enter"],
                                      "Start training with these settings", "train")
        self.act_resume = self._action("&Resume", lambda: self.start_training(True),
                                       ["Ctrl+Shift+Return", "Ctrl+Shift+Enter"],
                                       "Continue training from the last checkpoint", "resume")
        self.act_stop = self._action("S&top", self.stop_training, ["Ctrl+.", "Esc"],
                                     "Stop gracefully (saves a checkpoint and the LoRA so far)", "stop")
        self.act_tab = []
        for i, name in enumerate(("Dataset", "Train", "Test")):
            self.act_tab.append(self._action(f"&{name}", lambda _=False, i=i: self.tabs.setCurrentIndex(i),
                                             [f"Ctrl+{i + 1}"], f"Show the {name} tab"))
        self.theme_group = QActionGroup(self)
        self.act_theme = {}
        for key, label in (("system", "Follow the &System"), ("light", "&Light"), ("dark", "&Dark")):
            a = QAction(label, self, checkable=True)
            a.setData(key)
            a.triggered.connect(lambda _=False, key=key: self.set_theme(key))
            self.theme_group.addAction(a)
            self.act_theme[key] = a
        current = self.theme_manager.choice if self.theme_manager else "system"
        self.act_theme.get(current, self.act_theme["system"]).setChecked(True)

    def _make_menus(self) -> None:
        mb = self.menuBar()
        m = mb.addMenu("&File")
        for a in (self.act_open, self.act_open_project, self.act_demo):
            m.addAction(a)
        self.recent_menu = m.addMenu("Open &Recent")
        self.recent_menu.aboutToShow.connect(self._fill_recent_menu)
        m.addSeparator()
        for a in (self.act_save, self.act_save_as, self.act_close):
            m.addAction(a)
        m.addSeparator()
        m.addAction(self.act_quit)
        m = mb.addMenu("&Dataset")
        for a in (self.act_next, self.act_prev, self.act_find):
            m.addAction(a)
        m.addSeparator()
        m.addAction(self.act_bulk)
        m.addAction(self.act_rescan)
        m = mb.addMenu("&Training")
        for a in (self.act_train, self.act_stop, self.act_resume):
            m.addAction(a)
        m = mb.addMenu("&View")
        for a in self.act_tab:
            m.addAction(a)
        m.addSeparator()
        tm = m.addMenu("&Theme")
        for a in self.act_theme.values():
            tm.addAction(a)
        m = mb.addMenu("&Help")
        m.addAction("&Training Tips", self.show_tips)
        m.addAction("&About LoRA Studio", self.show_about)

    def _make_toolbar(self) -> None:
        tb = QToolBar("Main")
        tb.setObjectName("mainToolbar")
        tb.setMovable(False)
        tb.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextBesideIcon)
        self.addToolBar(Qt.ToolBarArea.TopToolBarArea, tb)
        for a in (self.act_open, self.act_save):
            tb.addAction(a)
        tb.addSeparator()
        tb.addAction(self.act_bulk)
        tb.addSeparator()
        for a in (self.act_train, self.act_stop, self.act_resume):
            tb.addAction(a)
        self.toolbar = tb
        for a in (self.act_open, self.act_save, self.act_bulk, self.act_train, self.act_stop, self.act_resume):
            w = tb.widgetForAction(a)
            if isinstance(w, QToolButton):
                w.setToolTip(a.toolTip())
        self.act_open.setIconText("Open")
        self.act_save.setIconText("Save")
        self.act_bulk.setIconText("Captions")

    def _make_statusbar(self) -> None:
        sb = self.statusBar()
        sb.setSizeGripEnabled(True)
        self.dataset_status = QLabel("")
        self.train_status = QLabel("")
        sb.addPermanentWidget(self.train_status)
        sb.addPermanentWidget(self.dataset_status)

    def _connect(self) -> None:
        w = self.welcome
        w.demo_requested.connect(self.open_demo)
        w.open_folder_requested.connect(self.open_folder_dialog)
        w.open_project_requested.connect(self.open_project_dialog)
        w.recent_requested.connect(self.open_path)
        self.demo.ready.connect(self._demo_ready)
        self.demo.failed.connect(self.welcome.show_demo_error)
        self.dataset_page.current_set_changed.connect(self._current_set_changed)
        self.editor.saved.connect(self._caption_saved)
        self.form.changed.connect(self._form_changed)
        rp = self.run_panel
        rp.train_clicked.connect(lambda: self.start_training(False))
        rp.resume_clicked.connect(lambda: self.start_training(True))
        rp.stop_clicked.connect(self.stop_training)
        rp.test_clicked.connect(self._test_lora)
        rp.sample_clicked.connect(self.show_sample)
        r = self.runner
        r.started.connect(rp.on_started)
        r.status.connect(rp.on_status)
        r.progress.connect(rp.on_progress)
        r.progress.connect(self._progress_status)
        r.sample.connect(self._on_sample)
        r.checkpoint.connect(rp.on_checkpoint)
        r.checkpoint.connect(lambda _e: self._update_actions())
        r.finished.connect(self._on_finished)
        r.failed.connect(self._on_failed)
        r.log.connect(rp.log)
        r.state_changed.connect(self._runner_state)

    # -- opening --------------------------------------------------------------------------

    def open_folder_dialog(self) -> None:
        start = self.settings.last_dir("dataset") or str(Path.home())
        folder = QFileDialog.getExistingDirectory(self, "Open a folder of training images", start)
        if folder:
            self.open_path(folder)

    def open_project_dialog(self) -> None:
        start = self.settings.last_dir("project") or str(Path.home())
        path, _ = QFileDialog.getOpenFileName(self, "Open a project", start, "LoRA Studio project (*.toml)")
        if path:
            self.open_path(path)

    def open_demo(self) -> None:
        if self.demo.is_running():
            return
        self.welcome.set_demo_busy(True, "Creating the demo: a tiny model and example pairs (about a minute)…")
        self.stack.setCurrentWidget(self.welcome)
        self.demo.make(demo_dir())

    def _demo_ready(self, project_file: str) -> None:
        self.welcome.set_demo_busy(False)
        self.open_path(project_file)

    def open_path(self, path: str | Path) -> bool:
        """Open a dataset folder or a project .toml. False (with a message) if it can't be opened."""
        path = Path(path).expanduser()
        if not path.exists():
            self.statusBar().showMessage(f"Not found: {path}", 8000)
            self.settings.remove_recent(path)
            self.welcome.set_recent(self.settings.recent())
            return False
        if self.runner.is_running():
            self.statusBar().showMessage("Stop the training before opening another project.", 8000)
            return False
        try:
            if path.is_dir():
                project = Project.for_folder(path, model_path=self.settings.q.value("last_model", "") or "")
                self.settings.set_last_dir("dataset", path.parent)
            else:
                project = Project.load(path)
                self.settings.set_last_dir("project", path.parent)
        except (ConfigError, OSError) as exc:
            self.statusBar().showMessage(f"Cannot open {path.name}: {exc}", 12000)
            self.welcome.show_demo_error(f"Cannot open {path}: {exc}")
            return False
        self.load_project(project)
        self.settings.add_recent(project.path or project.dataset_dir)
        self.project_opened.emit(str(path))
        return True

    def load_project(self, project: Project) -> None:
        if self.project is not None:
            self.editor.set_image_set(None)
        self.project = project
        self.dataset = None
        self._snapshot = {}
        self.loader.forget()
        self.banner.hide()
        self.form.load(project.config, project.path)
        self._sync_caption_context()
        self.run_panel.chart.clear()
        self.run_panel.gallery.clear_samples()
        self.run_panel.error_bar.hide()
        self.run_panel.done_bar.hide()
        self.run_panel.phase.setText("Ready to train.")
        self.dataset_page.set_dataset(None, [])
        lora = project.config.output.lora_path
        self.compare_page.set_lora(str(lora) if lora.is_file() else "")
        self.stack.setCurrentIndex(1)
        self.tabs.setCurrentWidget(self.dataset_page)
        self._watch(project.dataset_dir)
        self.setWindowModified(False)
        self._update_title()
        self._update_actions()
        self.rescan()

    def close_project(self) -> None:
        if self.runner.is_running():
            self.statusBar().showMessage("Stop the training before closing the project.", 8000)
            return
        if not self._flush_captions():
            return
        self.editor.set_image_set(None)
        self.project = None
        self.dataset = None
        self._watch(None)
        self.dataset_page.set_dataset(None, [])
        self.welcome.set_recent(self.settings.recent())
        self.stack.setCurrentWidget(self.welcome)
        self.setWindowModified(False)
        self._update_title()
        self._update_actions()

    # -- scanning (asyncio via qasync) ----------------------------------------------------

    def rescan(self) -> None:
        """Scan the dataset folder again (coalesced: one scan at a time, the latest wins)."""
        if self.project is None:
            return
        if self._scan_task is not None and not self._scan_task.done():
            self._scan_again = True
            return
        self._scan_task = self._scan()

    @asyncSlot()
    async def _scan(self) -> None:
        loop = asyncio.get_event_loop()
        while self.project is not None:
            self._scan_again = False
            project = self.project
            root = project.dataset_dir
            self.dataset_status.setText("Reading folder…")
            first = self.dataset is None
            try:
                # A first look by names only shows the grid at once; then the full check.
                for check_images in ((False, True) if first else (True,)):
                    dataset, entries, snapshot = await loop.run_in_executor(None, scan_job, root, check_images)
                    if self.project is not project:
                        break  # another project was opened meanwhile: scan that one instead
                    self._show_dataset(dataset, entries, snapshot, final=check_images)
            except OSError as exc:
                if self.project is project:
                    self.banner.show_message(f"Cannot read the dataset folder {root}: {exc.strerror or exc}")
                    self.dataset_status.setText("Folder unavailable")
            if self.project is not project:
                continue
            if not self._scan_again:
                return

    def _show_dataset(self, dataset: Dataset, entries: list[SetEntry], snapshot: dict, final: bool) -> None:
        self.dataset = dataset
        self._snapshot = snapshot
        self.banner.hide()
        self.dataset_page.set_dataset(dataset, entries)
        self._watch_current_set()
        self.editor.check_disk()
        n = len(dataset.sets)
        errors = dataset.error_count
        warnings = sum(p.severity is Severity.WARNING for p in dataset.problems)
        parts = [f"{n} set{'s' * (n != 1)}", "paired (before → after)" if dataset.mode is Mode.PAIRED else
                 "text-to-image"]
        if final:
            if errors:
                parts.append(f"{errors} error{'s' * (errors != 1)}")
            if warnings:
                parts.append(f"{warnings} warning{'s' * (warnings != 1)}")
            parts.append(f"{len(dataset.trainable_sets())} trainable")
        else:
            parts.append("checking images…")
        self.dataset_status.setText(" · ".join(parts))
        self.form.set_dataset_mode(dataset.mode)
        self._configure_compare_page()
        self._update_actions()
        if final:
            self.dataset_loaded.emit()

    # -- watching -------------------------------------------------------------------------

    def _watch(self, folder: Path | None) -> None:
        paths = self.watcher.directories() + self.watcher.files()
        if paths:
            self.watcher.removePaths(paths)
        if folder is not None and folder.is_dir():
            self.watcher.addPath(str(folder))

    def _watch_current_set(self) -> None:
        """Also watch the selected set's files: in-place edits don't touch the folder's mtime."""
        files = self.watcher.files()
        if files:
            self.watcher.removePaths(files)
        entry = self.dataset_page.current_entry()
        if entry is None:
            return
        wanted = [str(p) for p in [*entry.image_set.images, entry.image_set.caption_path] if p.exists()]
        if wanted:
            self.watcher.addPaths(wanted)

    def _folder_touched(self, _path: str) -> None:
        self._watch_timer.start()

    def check_for_changes(self) -> None:
        """Rescan if the folder's listing differs from the last scan (our own caption saves excluded)."""
        if self.project is None:
            return
        self._check_task = self._check()

    @asyncSlot()
    async def _check(self) -> None:
        project = self.project
        if project is None:
            return
        loop = asyncio.get_event_loop()
        try:
            snapshot = await loop.run_in_executor(None, folder_snapshot, project.dataset_dir)
        except OSError:
            if self.project is project:
                self.banner.show_message(f"The dataset folder {project.dataset_dir} is no longer available.")
            return
        if self.project is not project:
            return
        self.editor.check_disk()
        if snapshot != self._snapshot:
            self.rescan()
        else:
            self._watch_current_set()

    def _app_state_changed(self, state: Qt.ApplicationState) -> None:
        if state == Qt.ApplicationState.ApplicationActive and self.project is not None:
            self._watch_timer.start()

    # -- captions -------------------------------------------------------------------------

    def _current_set_changed(self, _name: str) -> None:
        self._watch_current_set()

    def _caption_saved(self, name: str, _text: str) -> None:
        self.dataset_page.model.update_caption(name, _text)
        if self.project is None:
            return
        entry = self.dataset_page.current_entry()
        path = entry.image_set.caption_path if entry and entry.name == name else None
        if path is not None:
            try:
                st = path.stat()
                self._snapshot[path.name] = (st.st_mtime_ns, st.st_size)
            except OSError:
                pass
        self._watch_current_set()

    def _flush_captions(self) -> bool:
        """Save captions before closing; ask what to do if some cannot be saved. False = cancel."""
        unsaved = self.editor.flush_all()
        if not unsaved:
            return True
        names = "\n".join(f"• {p.name}" for p in unsaved[:10])
        answer = self.ask("Unsaved captions",
                          f"These captions were changed on disk by another program while you edited them, "
                          f"or could not be written:\n\n{names}\n\nKeep your text (overwrite the files)?",
                          ("keep", "discard", "cancel"))
        if answer == "keep":
            self.editor.force_save_held()
            return True
        if answer == "discard":
            self.editor.discard_unsaved()
            return True
        return False

    def open_bulk_dialog(self) -> None:
        if self.dataset is None:
            return
        self.editor.flush()
        dialog = BulkCaptionDialog(self.dataset, self, trigger=self.form.trigger.text(),
                                   default_caption=self.form.default_caption.text())
        dialog.applied.connect(self._bulk_applied)
        self.bulk_dialog = dialog
        dialog.open()

    def _bulk_applied(self, result) -> None:
        self.statusBar().showMessage(f"Updated {result.written_count} captions", 6000)
        for change in result.written:
            self.dataset_page.model.update_caption(change.set_name, change.new)
        self.editor.check_disk()
        self.rescan()

    def _focus_search(self) -> None:
        if self.project is not None:
            self.tabs.setCurrentWidget(self.dataset_page)
            self.dataset_page.search.setFocus()
            self.dataset_page.search.selectAll()

    # -- settings / saving ----------------------------------------------------------------

    def _form_changed(self) -> None:
        self.setWindowModified(True)
        self._sync_caption_context()
        self._configure_compare_page()
        self._update_actions()
        model = self.form.model.text()
        if model and self.form.model_info.supported:
            self.settings.q.setValue("last_model", model)

    def _sync_caption_context(self) -> None:
        self.editor.set_caption_context(self.form.trigger.text(), self.form.default_caption.text())

    def _config_from_form(self):
        try:
            return self.form.config()
        except ConfigError as exc:
            self.tabs.setCurrentWidget(self.training_page)
            self.form.error.setText(str(exc))
            self.form.error.show()
            self.statusBar().showMessage(str(exc), 10000)
            return None

    def save_project(self, path: Path | None = None) -> bool:
        if self.project is None:
            return False
        self.editor.flush()
        config = self._config_from_form()
        if config is None:
            return False
        self.project.config = config
        try:
            saved = self.project.save(path)
        except (OSError, ConfigError) as exc:
            self.statusBar().showMessage(f"Could not save the project: {exc}", 12000)
            return False
        self.form.set_project_path(saved)
        self.settings.add_recent(saved)
        self.setWindowModified(False)
        self._update_title()
        self.statusBar().showMessage(f"Project saved: {saved}", 6000)
        return True

    def save_project_as(self) -> None:
        if self.project is None:
            return
        start = str(self.project.path or self.project.default_path())
        path, _ = QFileDialog.getSaveFileName(self, "Save project as", start, "LoRA Studio project (*.toml)")
        if path:
            if not path.endswith(".toml"):
                path += ".toml"
            self.save_project(Path(path))

    # -- training -------------------------------------------------------------------------

    def can_resume(self) -> bool:
        if self.project is None:
            return False
        try:
            config = self.form.config()
        except ConfigError:
            config = self.project.config
        return has_checkpoint(config.output.run_dir)

    def start_training(self, resume: bool = False) -> bool:
        if self.project is None or self.runner.is_running():
            return False
        self.editor.flush()
        config = self._config_from_form()
        if config is None:
            return False
        info = self.form.model_info
        if not info.supported:
            self.tabs.setCurrentWidget(self.training_page)
            self.form.error.setText(info.message)
            self.form.error.show()
            return False
        if self.dataset is not None and not self.dataset.trainable_sets():
            self.run_panel.on_failed({"message": "No set can be trained yet.", "kind": "data"})
            self.tabs.setCurrentWidget(self.training_page)
            return False
        if not self.save_project():
            return False
        assert self.project.path is not None
        self._run_resume = resume
        self.run_panel.begin(resume)
        self.tabs.setCurrentWidget(self.training_page)
        self.runner.start_training(self.project.path, resume=resume)
        return True

    def stop_training(self) -> None:
        if self.runner.is_running():
            self.runner.stop()

    def _runner_state(self, state: str) -> None:
        running = state != "idle"
        self.form.set_enabled_for_run(running)
        self._update_actions()
        if state == "idle":
            self.train_status.setText("")
        elif state == "stopping":
            self.train_status.setText("Stopping…")
        else:
            self.train_status.setText("Training…")
        self.tabs.setTabText(1, "Train ●" if running else "Train")

    def _progress_status(self, e: dict) -> None:
        self.train_status.setText(f"Training {e.get('step', 0):,} / {e.get('total', 0):,}")

    def _on_sample(self, e: dict) -> None:
        inputs: tuple[Path, ...] = ()
        if self.dataset is not None:
            s = self.dataset.set_by_name(str(e.get("set", "")))
            if s is not None:
                inputs = tuple(s.inputs)
                if not e.get("target") and s.target is not None:
                    e = {**e, "target": str(s.target)}
        self.run_panel.on_sample(e, inputs)

    def _on_finished(self, e: dict) -> None:
        self.run_panel.on_finished(e)
        lora = str(e.get("lora") or "")
        if lora:
            self.compare_page.set_lora(lora)
        self._configure_compare_page()
        self._update_actions()
        if lora:
            self.statusBar().showMessage(f"LoRA saved: {lora}", 10000)
        else:
            self.statusBar().showMessage("Training stopped before the first step: no LoRA was written", 10000)
        QApplication.alert(self)

    def _on_failed(self, e: dict) -> None:
        self.run_panel.on_failed(e)
        self._update_actions()
        QApplication.alert(self)

    def _test_lora(self, path: str) -> None:
        self.compare_page.set_lora(path)
        self._configure_compare_page()
        self.tabs.setCurrentWidget(self.compare_page)

    def show_sample(self, sample: Sample) -> None:
        samples = self.run_panel.gallery.samples
        index = next((i for i, s in enumerate(samples) if s is sample), 0)
        viewer = SampleViewer(self.loader, samples, index, self)
        viewer.destroyed.connect(lambda *_: self._viewers.remove(viewer) if viewer in self._viewers else None)
        self._viewers.append(viewer)
        viewer.show()

    def _configure_compare_page(self) -> None:
        if self.project is None:
            return
        try:
            config = self.form.config()
        except ConfigError:
            config = self.project.config
        model = self.form.model.text()
        sets = self.dataset.sets if self.dataset else []
        paired = self.dataset is None or self.dataset.mode is Mode.PAIRED
        self.compare_page.configure(model, config.output.run_dir if config else None, paired, sets,
                                 self.form.trigger.text().strip(), self.form.default_caption.text().strip())

    # -- look -----------------------------------------------------------------------------

    def set_theme(self, key: str) -> None:
        self.settings.set_theme(key)
        if self.theme_manager is not None:
            self.theme_manager.set_choice(key)

    def refresh_theme(self) -> None:
        for a in self.findChildren(QAction):
            name = a.data()
            if isinstance(name, str) and name and name not in ("system", "light", "dark"):
                a.setIcon(theme.icon(name))
        self.setWindowIcon(theme.icon("app"))
        self.tabs.setTabIcon(0, theme.icon("dataset"))
        self.tabs.setTabIcon(1, theme.icon("train"))
        self.tabs.setTabIcon(2, theme.icon("test"))
        self.welcome.refresh_icons()
        self.dataset_page.refresh_theme()
        self.run_panel.chart.update()

    def _update_title(self) -> None:
        if self.project is None:
            self.setWindowTitle(APP_TITLE)
        else:
            self.setWindowTitle(f"{self.project.title}[*] — {APP_TITLE}")

    def _update_actions(self) -> None:
        has_project = self.project is not None
        state = self.runner.state
        running = state != "idle"
        can_train = has_project and self.form.model_info.supported
        resume = has_project and not running and self.can_resume()
        for a in (self.act_save, self.act_save_as, self.act_close, self.act_rescan, self.act_find, self.act_next,
                  self.act_prev):
            a.setEnabled(has_project)
        self.act_bulk.setEnabled(has_project and self.dataset is not None)
        self.act_train.setEnabled(can_train and not running)
        self.act_resume.setEnabled(can_train and resume)
        self.act_stop.setEnabled(state in ("starting", "running"))
        self.act_close.setEnabled(has_project and not running)
        self.run_panel.set_state(state, can_resume=resume, can_train=can_train)

    def _fill_recent_menu(self) -> None:
        self.recent_menu.clear()
        recent = self.settings.recent()
        for p in recent:
            a = self.recent_menu.addAction(p)
            a.triggered.connect(lambda _=False, p=p: self.open_path(p))
        if recent:
            self.recent_menu.addSeparator()
            self.recent_menu.addAction("Clear", lambda: (self.settings.clear_recent(),
                                                         self.welcome.set_recent([])))
        else:
            self.recent_menu.addAction("(none)").setEnabled(False)

    def show_tips(self) -> None:
        QMessageBox.information(
            self, "Training tips",
            "• Quality over quantity: 20 good pairs beat 100 mediocre ones.\n"
            "• Cover your variations: include an example for every use case.\n"
            "• Match resolutions: keep the images of a set the same size.\n"
            "• Steps: start with 1,000 for ~20 pairs. Learning rate: start with 1e-4 (typical 1e-4 … 5e-4).\n"
            "  Balloon analogy: steps = how many times you blow, learning rate = how hard.\n"
            "• Iterate: the first attempt is rarely perfect; refine and retrain.")

    def show_about(self) -> None:
        from lorastudio import __version__

        QMessageBox.about(self, "About LoRA Studio",
                          f"<b>LoRA Studio {__version__}</b><br>Train image-editing and text-to-image LoRAs on "
                          "your own GPU, offline.")

    # -- window events --------------------------------------------------------------------

    def dragEnterEvent(self, event: QDragEnterEvent) -> None:
        if self._dropped_path(event) is not None:
            event.acceptProposedAction()
        else:
            event.ignore()

    def dragMoveEvent(self, event) -> None:
        if self._dropped_path(event) is not None:
            event.acceptProposedAction()

    def dropEvent(self, event: QDropEvent) -> None:
        path = self._dropped_path(event)
        if path is not None:
            event.acceptProposedAction()
            # Open after the drop returns, so the drag source is not kept waiting.
            QTimer.singleShot(0, lambda: self.open_path(path))

    @staticmethod
    def _dropped_path(event) -> Path | None:
        mime = event.mimeData()
        if not mime.hasUrls():
            return None
        for url in mime.urls():
            if url.isLocalFile():
                p = Path(url.toLocalFile())
                if p.is_dir() or p.suffix.lower() == ".toml":
                    return p
        return None

    def _ask_user(self, title: str, text: str, choices: tuple[str, ...]) -> str:
        box = QMessageBox(QMessageBox.Icon.Question, title, text, parent=self)
        buttons = {}
        labels = {"keep": ("Keep my text", QMessageBox.ButtonRole.AcceptRole),
                  "discard": ("Discard my edits", QMessageBox.ButtonRole.DestructiveRole),
                  "stop": ("Stop training and quit", QMessageBox.ButtonRole.AcceptRole),
                  "cancel": ("Cancel", QMessageBox.ButtonRole.RejectRole)}
        for c in choices:
            label, role = labels[c]
            buttons[box.addButton(label, role)] = c
        box.exec()
        return buttons.get(box.clickedButton(), "cancel")

    def closeEvent(self, event: QCloseEvent) -> None:
        if self.runner.is_running():
            answer = self.ask("Training is running",
                              "Training is still running. Stop it (a checkpoint and the LoRA so far are saved) "
                              "and quit?", ("stop", "cancel"))
            if answer != "stop":
                event.ignore()
                return
        if not self._flush_captions():
            event.ignore()
            return
        self._shutdown()
        event.accept()

    def _about_to_quit(self) -> None:
        # Quitting by other means (session end, Ctrl+C): still never lose a caption.
        self.editor.flush()
        self._shutdown()

    def _shutdown(self) -> None:
        if getattr(self, "_shut_down", False):
            return
        self._shut_down = True
        self.settings.set_geometry(self.saveGeometry(), self.saveState())
        self.settings.set_splitter("dataset", self.dataset_page.splitter.saveState())
        self.settings.set_splitter("dataset_v", self.dataset_page.vsplit.saveState())
        self.settings.set_splitter("train", self.training_page.splitter.saveState())
        self.settings.sync()
        if self.runner.is_running():
            self.runner.stop()
            deadline = time.monotonic() + self.runner.kill_timeout + 3
            while self.runner.is_running() and time.monotonic() < deadline:
                QApplication.processEvents()
                time.sleep(0.02)
            if self.runner.is_running():
                self.runner.kill()
                self.runner.wait(3)
        self.compare_page.shutdown()
        self.demo.cancel()
        for v in list(self._viewers):
            v.close()
        self.loader.shutdown()

    def _restore_geometry(self) -> None:
        g = self.settings.geometry()
        if g is not None:
            self.restoreGeometry(g)
        s = self.settings.window_state()
        if s is not None:
            self.restoreState(s)
        for name, splitter in (("dataset", self.dataset_page.splitter), ("dataset_v", self.dataset_page.vsplit),
                               ("train", self.training_page.splitter)):
            state = self.settings.splitter(name)
            if isinstance(state, QByteArray):
                splitter.restoreState(state)


