"""The Qt face of ``lorastudio.session.Session``: its observer lists re-emitted as signals.

Widgets connect to these signals (queued, thread-safe, disconnected with their receiver)
instead of to the session's plain callbacks; the session itself stays Qt-free.
"""

from __future__ import annotations

from PySide6.QtCore import QObject, Signal

from lorastudio.session import Session


class SessionSignals(QObject):
    project_changed = Signal(object)  # Project | None
    dataset_changed = Signal(object)  # Dataset | None
    run_state_changed = Signal(str)
    actions_changed = Signal(object)  # session.Actions

    def __init__(self, session: Session, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.session = session
        session.project_changed.connect(self.project_changed.emit)
        session.dataset_changed.connect(self.dataset_changed.emit)
        session.run_state_changed.connect(self.run_state_changed.emit)
        session.actions_changed.connect(self.actions_changed.emit)
