"""The main window: welcome page or a project (Dataset · Train · Test tabs), menus, shortcuts.

The window opens, closes and saves projects and quits; the rest is in pieces with one job
each (listed in ``lorastudio.ui``): the Qt-free ``Session`` holds the state and says what
may be done, ``WindowActions`` builds the menus from tables, ``DatasetControl`` shows the
folder's scans, ``RunControl`` runs the worker, ``CompareWiring`` feeds the Test tab.
Modal dialogs are only ever shown from plain (synchronous) slots, never inside an async slot.
"""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import Qt, QTimer, Signal
from PySide6.QtGui import QCloseEvent, QDragEnterEvent, QDropEvent
from PySide6.QtWidgets import QApplication, QLabel, QMainWindow, QStackedWidget

from lorastudio.config import ConfigError
from lorastudio.dataset.model import Dataset
from lorastudio.project import Project
from lorastudio.session import Actions, CannotOpen, Session, project_for_path
from lorastudio.ui import dialogs, theme
from lorastudio.ui.caption_guard import save_captions_or_ask
from lorastudio.ui.compare_wiring import CompareWiring
from lorastudio.ui.dataset_control import DatasetControl
from lorastudio.ui.holdout import HoldOut
from lorastudio.ui.run_control import RunControl
from lorastudio.ui.runner import WorkerRunner
from lorastudio.ui.sample_gallery import Sample, SampleViewers
from lorastudio.ui.session_signals import SessionSignals
from lorastudio.ui.settings import Settings
from lorastudio.ui.thumbnails import ThumbnailLoader
from lorastudio.ui.welcome import DemoMaker, WelcomePage
from lorastudio.ui.window_actions import WindowActions
from lorastudio.ui.window_geometry import remember_layout, restore_layout
from lorastudio.ui.workspace import Workspace
from lorastudio.user_folders import cache_dir, demo_dir

APP_TITLE = "LoRA Studio"


class MainWindow(QMainWindow):
    #: A scan finished and the grid shows it (for tests and the benchmark).
    dataset_loaded = Signal()
    project_opened = Signal(str)

    def __init__(self, settings: Settings | None = None, theme_manager: theme.ThemeManager | None = None,
                 kill_timeout: float = 5.0) -> None:
        super().__init__()
        self.settings = settings or Settings()
        self.theme_manager = theme_manager
        self.session = Session()
        self.signals = SessionSignals(self.session, self)
        self._shut_down = False
        #: Asked before quitting with unsaved work; tests replace it.
        self.ask = lambda title, text, choices: dialogs.ask_user(self, title, text, choices)

        self.setWindowTitle(APP_TITLE)
        self.setWindowIcon(theme.icon("app"))
        self.setAcceptDrops(True)

        self.loader = ThumbnailLoader(cache_dir(), self)
        self.viewers = SampleViewers(self.loader, self)
        self.runner = WorkerRunner(self, kill_timeout=kill_timeout)
        self.demo = DemoMaker(self)

        # Pages: the welcome page, or a project's tabs.
        self.stack = QStackedWidget()
        self.welcome = WelcomePage()
        self.workspace = ws = Workspace(self.loader)
        self.stack.addWidget(self.welcome)
        self.stack.addWidget(ws)
        self.setCentralWidget(self.stack)
        self.banner, self.tabs = ws.banner, ws.tabs
        self.dataset_page, self.training_page, self.compare_page = ws.dataset_page, ws.training_page, ws.compare_page
        self.editor = self.dataset_page.caption_editor
        self.form = self.training_page.form
        self.run_panel = self.training_page.run

        self.commands = WindowActions(self, self._action_slots(), theme_manager.choice if theme_manager else "system",
                                      self.settings.recent)
        for name, action in self.commands.by_name.items():
            setattr(self, f"act_{name}", action)  # window.act_train … for shortcuts and tests
        self.toolbar = self.commands.toolbar
        self.dataset_page.grid.addAction(self.act_draft)  # in the grid's right-click menu
        self.dataset_status = QLabel("")
        self.train_status = QLabel("")
        self.statusBar().setSizeGripEnabled(True)
        self.statusBar().addPermanentWidget(self.train_status)
        self.statusBar().addPermanentWidget(self.dataset_status)
        self.dataset_control = DatasetControl(self.signals, self.dataset_page, self.dataset_status, self.banner, self)
        self.run_control = RunControl(self.signals, self.runner, ws, self.train_status, self)
        self.compare = CompareWiring(self.signals, ws, self.run_control)
        self.hold_out = HoldOut(self.signals, ws, self)
        self._connect()
        restore_layout(self, self.settings, self._splitters())
        self.welcome.set_recent(self.settings.recent())
        self.dataset_page.set_thumb_size(self.settings.thumb_size(self.dataset_page.thumb_size()))
        self.dataset_page.thumb_size_changed.connect(self.settings.set_thumb_size)
        self._show_actions(self.session.actions())
        self.refresh_theme()
        if self.theme_manager is not None:
            self.theme_manager.changed.connect(self.refresh_theme)
        app = QApplication.instance()
        if app is not None:
            app.applicationStateChanged.connect(self._app_state_changed)
            app.aboutToQuit.connect(self._about_to_quit)

    # -- construction ---------------------------------------------------------------------

    def _action_slots(self) -> dict:
        slots = {"open": self.open_folder_dialog, "open_project": self.open_project_dialog,
                 "save": self.save_project, "save_as": self.save_project_as, "close": self.close_project,
                 "quit": self.close, "demo": self.open_demo, "bulk": self.open_bulk_dialog,
                 "draft": self.open_draft_dialog,
                 "next": self.dataset_page.next_set, "prev": self.dataset_page.previous_set,
                 "find": self._focus_search, "rescan": self.rescan, "train": lambda: self.start_training(False),
                 "resume": lambda: self.start_training(True), "stop": self.stop_training,
                 "tips": lambda: dialogs.show_tips(self), "about": lambda: dialogs.show_about(self),
                 "theme": self.set_theme, "open_recent": self.open_path, "clear_recent": self._clear_recent}
        for i in range(self.tabs.count()):
            slots[f"tab_{i}"] = lambda _=False, i=i: self.tabs.setCurrentIndex(i)
        return slots

    def _connect(self) -> None:
        w = self.welcome
        w.demo_requested.connect(self.open_demo)
        w.open_folder_requested.connect(self.open_folder_dialog)
        w.open_project_requested.connect(self.open_project_dialog)
        w.recent_requested.connect(self.open_path)
        self.demo.ready.connect(self._demo_ready)
        self.demo.failed.connect(self.welcome.show_demo_error)
        self.form.changed.connect(self._form_changed)
        rp = self.run_panel
        rp.train_clicked.connect(lambda: self.start_training(False))
        rp.resume_clicked.connect(lambda: self.start_training(True))
        rp.stop_clicked.connect(self.stop_training)
        rp.sample_clicked.connect(self.show_sample)
        self.dataset_control.loaded.connect(self.dataset_loaded)
        rc = self.run_control
        rc.message.connect(self.statusBar().showMessage)
        self.hold_out.message.connect(self.statusBar().showMessage)
        self.dataset_control.message.connect(self.statusBar().showMessage)
        rc.attention.connect(lambda: QApplication.alert(self))
        self.signals.dataset_changed.connect(self._dataset_changed)
        self.signals.actions_changed.connect(self._show_actions)

    # -- compatibility views of the session ------------------------------------------------

    @property
    def project(self) -> Project | None:
        return self.session.project

    @property
    def dataset(self) -> Dataset | None:
        return self.session.dataset

    # -- opening --------------------------------------------------------------------------

    def open_folder_dialog(self) -> None:
        folder = dialogs.choose_dataset_folder(self, self.settings)
        if folder:
            self.open_path(folder)

    def open_project_dialog(self) -> None:
        path = dialogs.choose_project_file(self, self.settings)
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
        if path.exists() and self.session.running:
            self.statusBar().showMessage("Stop the training before opening another project.", 8000)
            return False
        try:
            project = project_for_path(path, model_path=self.settings.last_model())
        except CannotOpen as exc:
            self.statusBar().showMessage(str(exc), 8000 if exc.missing else 12000)
            if exc.missing:
                self.settings.remove_recent(path)
                self.welcome.set_recent(self.settings.recent())
            else:
                self.welcome.show_demo_error(f"Cannot open {path}: {exc.__cause__}")
            return False
        self.settings.set_last_dir("dataset" if path.is_dir() else "project", path.parent)
        self.load_project(project)
        self.settings.add_recent(project.path or project.dataset_dir)
        self.project_opened.emit(str(path))
        return True

    def load_project(self, project: Project) -> None:
        """Show ``project`` (the pieces reset themselves on ``project_changed``; then its folder is read)."""
        self.loader.forget()
        self.session.open(project)
        self.form.load(project.config, project.path)
        self._sync_caption_context()
        self.stack.setCurrentIndex(1)
        self.tabs.setCurrentWidget(self.dataset_page)
        self.setWindowModified(False)
        self._update_title()
        self._sync_settings()
        self.dataset_control.rescan()

    def close_project(self) -> None:
        if self.session.running:
            self.statusBar().showMessage("Stop the training before closing the project.", 8000)
            return
        if not save_captions_or_ask(self.editor, self.ask):
            return
        self.session.close()
        self.welcome.set_recent(self.settings.recent())
        self.stack.setCurrentWidget(self.welcome)
        self.setWindowModified(False)
        self._update_title()

    # -- the dataset ----------------------------------------------------------------------

    def rescan(self) -> None:
        """Scan the dataset folder again (coalesced: one scan at a time, the latest wins)."""
        self.dataset_control.rescan()

    def _dataset_changed(self, dataset: Dataset | None) -> None:
        if dataset is not None:
            self.form.set_dataset_mode(dataset.mode)
            self._sync_settings()

    def _app_state_changed(self, state: Qt.ApplicationState) -> None:
        if state == Qt.ApplicationState.ApplicationActive:
            self.dataset_control.look_soon()

    def open_bulk_dialog(self) -> None:
        """Trigger word, find and replace, fill empty captions (with the settings' trigger and default)."""
        self.bulk_dialog = self.dataset_control.open_bulk_dialog(self, *self.form.caption_context())

    def open_draft_dialog(self) -> None:
        """"Draft captions…" for the selected set or every set without a caption."""
        project = self.session.project
        if project is None:
            return
        c = project.config.caption
        model = str(c.model) if c.model else self.settings.caption_model() or self.form.model_path()
        self.draft_dialog = self.dataset_control.open_draft_dialog(self, self.loader, self.form.caption_context()[0],
                                                                   model, c)
        if self.draft_dialog is not None:
            edit = self.draft_dialog.model_edit
            edit.editingFinished.connect(lambda: self.settings.set_caption_model(edit.text()))

    def _focus_search(self) -> None:
        if self.session.project is not None:
            self.tabs.setCurrentWidget(self.dataset_page)
            self.dataset_page.focus_search()

    # -- settings / saving ----------------------------------------------------------------

    def _form_changed(self) -> None:
        self.setWindowModified(True)
        self._sync_caption_context()
        self._sync_settings()
        self.compare.update()
        model = self.form.model_path()
        if model and self.form.model_info.supported:
            self.settings.set_last_model(model)

    def _sync_settings(self) -> None:
        self.session.set_settings(self.form.valid_config(), self.form.model_info.supported)

    def _sync_caption_context(self) -> None:
        self.editor.set_caption_context(*self.form.caption_context())

    def _config_from_form(self):
        try:
            return self.form.config()
        except ConfigError as exc:
            self.tabs.setCurrentWidget(self.training_page)
            self.form.show_error(str(exc))
            self.statusBar().showMessage(str(exc), 10000)
            return None

    def save_project(self, path: Path | None = None) -> bool:
        project = self.session.project
        if project is None:
            return False
        self.editor.flush()
        config = self._config_from_form()
        if config is None:
            return False
        project.config = config
        try:
            saved = project.save(path)
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
        project = self.session.project
        if project is None:
            return
        path = dialogs.choose_save_path(self, project.path or project.default_path())
        if path is not None:
            self.save_project(path)

    # -- training -------------------------------------------------------------------------

    def start_training(self, resume: bool = False) -> bool:
        if self.session.project is None or self.runner.is_running():
            return False
        self.editor.flush()
        return self._config_from_form() is not None and self.run_control.start(resume, self.save_project)

    def stop_training(self) -> None:
        self.run_control.stop()

    def show_sample(self, sample: Sample) -> None:
        self.viewers.show(self.run_panel.samples(), sample)

    # -- look -----------------------------------------------------------------------------

    def set_theme(self, key: str) -> None:
        self.settings.set_theme(key)
        if self.theme_manager is not None:
            self.theme_manager.set_choice(key)

    def refresh_theme(self) -> None:
        self.commands.refresh_icons()
        self.setWindowIcon(theme.icon("app"))
        self.welcome.refresh_icons()
        self.workspace.refresh_theme()

    def _update_title(self) -> None:
        project = self.session.project
        self.setWindowTitle(APP_TITLE if project is None else f"{project.title}[*] — {APP_TITLE}")

    def _show_actions(self, actions: Actions) -> None:
        self.commands.enable(actions)
        self.run_panel.set_state(actions.run_state, can_resume=actions.resumable, can_train=actions.model_supported)

    def _clear_recent(self) -> None:
        self.settings.clear_recent()
        self.welcome.set_recent([])

    # -- window events --------------------------------------------------------------------

    def dragEnterEvent(self, event: QDragEnterEvent) -> None:
        if dialogs.dropped_path(event.mimeData()) is not None:
            event.acceptProposedAction()
        else:
            event.ignore()

    dragMoveEvent = dragEnterEvent

    def dropEvent(self, event: QDropEvent) -> None:
        path = dialogs.dropped_path(event.mimeData())
        if path is not None:
            event.acceptProposedAction()
            # Open after the drop returns, so the drag source is not kept waiting.
            QTimer.singleShot(0, lambda: self.open_path(path))

    def closeEvent(self, event: QCloseEvent) -> None:
        if self.runner.is_running():
            answer = self.ask("Training is running",
                              "Training is still running. Stop it (a checkpoint and the LoRA so far are saved) "
                              "and quit?", ("stop", "cancel"))
            if answer != "stop":
                event.ignore()
                return
        if not save_captions_or_ask(self.editor, self.ask):
            event.ignore()
            return
        self._shutdown()
        event.accept()

    def _about_to_quit(self) -> None:
        # Quitting by other means (session end, Ctrl+C): still never lose a caption.
        self.editor.flush()
        self._shutdown()

    def _shutdown(self) -> None:
        if self._shut_down:
            return
        self._shut_down = True
        remember_layout(self, self.settings, self._splitters())
        self.run_control.shutdown()
        self.compare_page.shutdown()
        self.demo.cancel()
        self.viewers.close_all()
        self.loader.shutdown()

    def _splitters(self) -> dict:
        return {**self.dataset_page.splitters(), **self.training_page.splitters()}


