"""What the app remembers between runs: recent projects, window geometry, theme, folders.

QSettings stores these small things (tests point it elsewhere with QSettings' own path);
the folders the app fills (demo, thumbnails) are ``lorastudio.user_folders``.
"""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import QByteArray, QSettings

APP_NAME = "LoRA Studio"
ORG_NAME = "LoRA Studio"
MAX_RECENT = 10


class Settings:
    def __init__(self, qsettings: QSettings | None = None) -> None:
        self.q = qsettings or QSettings(ORG_NAME, APP_NAME)

    # recent projects: folders or project .toml files, newest first
    def recent(self) -> list[str]:
        value = self.q.value("recent", [])
        if isinstance(value, str):
            value = [value]
        return [str(v) for v in (value or []) if v]

    def add_recent(self, path: str | Path) -> None:
        path = str(Path(path).resolve())
        items = [p for p in self.recent() if p != path]
        self.q.setValue("recent", [path, *items][:MAX_RECENT])

    def remove_recent(self, path: str | Path) -> None:
        self.q.setValue("recent", [p for p in self.recent() if p != str(path)])

    def clear_recent(self) -> None:
        self.q.setValue("recent", [])

    def geometry(self) -> QByteArray | None:
        value = self.q.value("window/geometry")
        return value if isinstance(value, QByteArray) and not value.isEmpty() else None

    def set_geometry(self, geometry: QByteArray, state: QByteArray) -> None:
        self.q.setValue("window/geometry", geometry)
        self.q.setValue("window/state", state)

    def window_state(self) -> QByteArray | None:
        value = self.q.value("window/state")
        return value if isinstance(value, QByteArray) and not value.isEmpty() else None

    def splitter(self, name: str) -> QByteArray | None:
        value = self.q.value(f"splitters/{name}")
        return value if isinstance(value, QByteArray) and not value.isEmpty() else None

    def set_splitter(self, name: str, state: QByteArray) -> None:
        self.q.setValue(f"splitters/{name}", state)

    def theme(self) -> str:
        return str(self.q.value("theme", "system") or "system")

    def set_theme(self, theme: str) -> None:
        self.q.setValue("theme", theme)

    def last_dir(self, kind: str) -> str:
        return str(self.q.value(f"dirs/{kind}", "") or "")

    def set_last_dir(self, kind: str, path: str | Path) -> None:
        self.q.setValue(f"dirs/{kind}", str(path))

    def last_model(self) -> str:
        """The base model folder last chosen (a new project starts with it)."""
        return str(self.q.value("last_model", "") or "")

    def set_last_model(self, path: str) -> None:
        self.q.setValue("last_model", path)

    def caption_model(self) -> str:
        """The vision-language folder last used to draft captions."""
        return str(self.q.value("caption_model", "") or "")

    def set_caption_model(self, path: str) -> None:
        self.q.setValue("caption_model", path)

    def thumb_size(self, default: int) -> int:
        try:
            return int(self.q.value("thumb_size", default))
        except (TypeError, ValueError):
            return default

    def set_thumb_size(self, size: int) -> None:
        self.q.setValue("thumb_size", int(size))

    def sync(self) -> None:
        self.q.sync()
