"""Light and dark look: a Fusion palette, the style sheet from ``resources/`` and SVG icons.

The theme follows the system (``QStyleHints.colorScheme``) unless the artist picked one in
View ▸ Theme. Widgets that paint themselves (the set grid, the loss chart) read colours
from ``colors()`` so they change with the theme too.
"""

from __future__ import annotations

from dataclasses import dataclass

from PySide6.QtCore import QObject, Qt, Signal
from PySide6.QtGui import QColor, QGuiApplication, QIcon, QPalette
from PySide6.QtWidgets import QApplication, QStyleFactory

from lorastudio.ui.svg_icon import svg_icon
from lorastudio.user_folders import resources_dir

THEMES = ("system", "light", "dark")


@dataclass(frozen=True)
class Colors:
    dark: bool
    window: str
    base: str
    panel: str
    grid: str
    button: str
    hover: str
    pressed: str
    border: str
    text: str
    muted: str
    accent: str
    accent_hover: str
    accent_text: str
    selection: str
    error: str
    warning: str
    info: str
    success: str
    error_bg: str
    warning_bg: str
    info_bg: str
    success_bg: str
    placeholder: str

    def q(self, name: str) -> QColor:
        return QColor(getattr(self, name))


LIGHT = Colors(
    dark=False, window="#f4f5f7", base="#ffffff", panel="#fbfbfc", grid="#eceef2", button="#ffffff",
    hover="#e7e9ee", pressed="#dadde4", border="#d5d8de", text="#1c1f24", muted="#6a707c",
    accent="#4d63e8", accent_hover="#3d52d6", accent_text="#ffffff", selection="#dfe4fd",
    error="#cf3f3f", warning="#c7800f", info="#2f74e0", success="#25915a",
    error_bg="#fdecec", warning_bg="#fdf4e3", info_bg="#e8f1fe", success_bg="#e6f5ec",
    placeholder="#dcdfe5",
)
DARK = Colors(
    dark=True, window="#1e2024", base="#25282d", panel="#2a2d33", grid="#191b1e", button="#2e3238",
    hover="#363a41", pressed="#40454d", border="#3b3f47", text="#e5e7eb", muted="#9aa1ad",
    accent="#7487ff", accent_hover="#8797ff", accent_text="#10121a", selection="#343c66",
    error="#ff6b6b", warning="#f2b14a", info="#62a4ff", success="#4fcf8a",
    error_bg="#3a2224", warning_bg="#3a3020", info_bg="#1f2c40", success_bg="#1f3529",
    placeholder="#33363d",
)

_current: Colors = LIGHT


def colors() -> Colors:
    return _current


def system_prefers_dark() -> bool:
    app = QGuiApplication.instance()
    if app is None:
        return False
    hints = QGuiApplication.styleHints()
    scheme = getattr(hints, "colorScheme", None)
    if scheme is None:  # Qt < 6.5
        return QGuiApplication.palette().color(QPalette.ColorRole.Window).lightness() < 128
    return scheme() == Qt.ColorScheme.Dark


def _palette(c: Colors) -> QPalette:
    p = QPalette()
    role = QPalette.ColorRole
    p.setColor(role.Window, QColor(c.window))
    p.setColor(role.WindowText, QColor(c.text))
    p.setColor(role.Base, QColor(c.base))
    p.setColor(role.AlternateBase, QColor(c.panel))
    p.setColor(role.ToolTipBase, QColor(c.panel))
    p.setColor(role.ToolTipText, QColor(c.text))
    p.setColor(role.PlaceholderText, QColor(c.muted))
    p.setColor(role.Text, QColor(c.text))
    p.setColor(role.Button, QColor(c.button))
    p.setColor(role.ButtonText, QColor(c.text))
    p.setColor(role.BrightText, QColor(c.error))
    p.setColor(role.Highlight, QColor(c.accent))
    p.setColor(role.HighlightedText, QColor(c.accent_text))
    p.setColor(role.Link, QColor(c.accent))
    p.setColor(role.Mid, QColor(c.border))
    p.setColor(role.Midlight, QColor(c.hover))
    p.setColor(role.Dark, QColor(c.pressed))
    p.setColor(role.Light, QColor(c.base))
    p.setColor(role.Shadow, QColor("#000000"))
    for r in (role.WindowText, role.Text, role.ButtonText):
        p.setColor(QPalette.ColorGroup.Disabled, r, QColor(c.muted))
    return p


def style_sheet(c: Colors) -> str:
    res = resources_dir()
    text = ""
    if res is not None and (res / "style.qss").is_file():
        text = (res / "style.qss").read_text(encoding="utf-8")
    for name in Colors.__dataclass_fields__:
        value = getattr(c, name)
        if isinstance(value, str):
            text = text.replace(f"@{name}@", value)
    return text


class ThemeManager(QObject):
    """Applies the chosen theme and re-applies it when the system switches light/dark."""

    changed = Signal()

    def __init__(self, app: QApplication, choice: str = "system") -> None:
        super().__init__(app)
        self._app = app
        self._choice = choice if choice in THEMES else "system"
        if "Fusion" in QStyleFactory.keys():
            app.setStyle("Fusion")
        hints = QGuiApplication.styleHints()
        if hasattr(hints, "colorSchemeChanged"):
            hints.colorSchemeChanged.connect(self._system_changed)
        self.apply()

    @property
    def choice(self) -> str:
        return self._choice

    def set_choice(self, choice: str) -> None:
        self._choice = choice if choice in THEMES else "system"
        self.apply()

    def _system_changed(self, *_args) -> None:
        if self._choice == "system":
            self.apply()

    def apply(self) -> None:
        global _current
        dark = self._choice == "dark" or (self._choice == "system" and system_prefers_dark())
        _current = DARK if dark else LIGHT
        _icon_cache.clear()
        self._app.setPalette(_palette(_current))
        self._app.setStyleSheet(style_sheet(_current))
        self.changed.emit()


# -- icons -----------------------------------------------------------------------------------

_icon_cache: dict[tuple[str, str], QIcon] = {}


def icon(name: str, color: str | None = None) -> QIcon:
    """An icon from ``resources/icons/NAME.svg`` with ``currentColor`` in the theme's text colour."""
    color = color or _current.text
    key = (name, color)
    cached = _icon_cache.get(key)
    if cached is not None:
        return cached
    result = QIcon()
    res = resources_dir()
    path = res / "icons" / f"{name}.svg" if res else None
    if path is not None and path.is_file():
        data = path.read_text(encoding="utf-8").replace("currentColor", color)
        muted = data.replace(color, _current.muted) if color == _current.text else None
        result = svg_icon(data, muted)
    _icon_cache[key] = result
    return result


def set_role(widget, role: str) -> None:
    """Give a widget a style-sheet role (``primary``, ``muted`` …) and re-polish it."""
    widget.setProperty("role", role)
    style = widget.style()
    style.unpolish(widget)
    style.polish(widget)
