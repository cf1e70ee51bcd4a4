"""Start the desktop app: ``lorastudio`` / ``lorastudio gui [DIR|PROJECT.toml]``.

Only PySide6, qasync and our own light modules load here — never torch — so the window
is up in well under a second. PySide6 is imported before qasync: qasync picks the first
Qt binding it finds already imported.
"""

from __future__ import annotations

import asyncio
import os
import sys

from PySide6.QtCore import QTimer
from PySide6.QtWidgets import QApplication

import qasync  # noqa: E402  (after PySide6, on purpose)

from lorastudio.ui.settings import APP_NAME, ORG_NAME


def make_app(argv: list[str] | None = None) -> QApplication:
    app = QApplication.instance()
    if app is None:
        app = QApplication(argv if argv is not None else sys.argv[:1])
    app.setApplicationName(APP_NAME)
    app.setOrganizationName(ORG_NAME)
    app.setApplicationDisplayName(APP_NAME)
    app.setDesktopFileName("lorastudio")
    return app  # type: ignore[return-value]


def create_window(target: str | None = None, kill_timeout: float = 5.0):
    """The app's main window, themed and ready (no event loop started). For run_gui, tests, tools."""
    from lorastudio import __version__
    from lorastudio.ui import theme
    from lorastudio.ui.main_window import MainWindow
    from lorastudio.ui.settings import Settings

    app = make_app()
    app.setApplicationVersion(__version__)
    settings = Settings()
    manager = getattr(app, "_lorastudio_theme", None)
    if manager is None:
        manager = theme.ThemeManager(app, os.environ.get("LORASTUDIO_THEME") or settings.theme())
        app._lorastudio_theme = manager  # type: ignore[attr-defined]
    app.setWindowIcon(theme.icon("app"))
    window = MainWindow(settings, manager, kill_timeout=kill_timeout)
    if target:
        QTimer.singleShot(0, lambda: window.open_path(target))
    return window


def run_gui(target: str | None = None) -> int:
    app = make_app()
    loop = qasync.QEventLoop(app)
    asyncio.set_event_loop(loop)
    window = create_window(target)
    window.show()
    closed = asyncio.Event()
    app.aboutToQuit.connect(closed.set)
    with loop:
        loop.run_until_complete(closed.wait())
    return 0
