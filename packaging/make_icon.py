"""Render ``resources/icons/app.svg`` into a Windows ``.ico`` at build time.

The SVG stays the one source of the app icon: Qt renders it (the same renderer the app
uses), Pillow writes the multi-size ``.ico`` the Windows exe embeds. No binary icon is kept
in git. Runs in the build venv, which has PySide6 and Pillow anyway.

    python packaging/make_icon.py OUT.ico
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

ICO_SIZES = (16, 24, 32, 48, 64, 128, 256)


def render_png(svg: Path, size: int = 256):
    """The SVG as a ``size``×``size`` RGBA Pillow image."""
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    from PIL import Image
    from PySide6.QtCore import QBuffer, QByteArray, QIODevice, QRectF, Qt
    from PySide6.QtGui import QImage, QPainter
    from PySide6.QtSvg import QSvgRenderer
    from PySide6.QtWidgets import QApplication

    # QPainter wants an application object. A full QApplication rather than a QGuiApplication,
    # so that a widget test run later in the same process (pytest-qt) can reuse it.
    _app = QApplication.instance() or QApplication([sys.argv[0]])  # noqa: F841
    renderer = QSvgRenderer(str(svg))
    if not renderer.isValid():
        raise ValueError(f"{svg} is not a valid SVG")
    image = QImage(size, size, QImage.Format.Format_ARGB32)
    image.fill(Qt.GlobalColor.transparent)
    painter = QPainter(image)
    painter.setRenderHint(QPainter.RenderHint.Antialiasing)
    renderer.render(painter, QRectF(0, 0, size, size))
    painter.end()
    data = QByteArray()
    buffer = QBuffer(data)
    buffer.open(QIODevice.OpenModeFlag.WriteOnly)
    image.save(buffer, "PNG")
    buffer.close()
    import io

    return Image.open(io.BytesIO(bytes(data.data()))).convert("RGBA")


def make_ico(svg: Path, out: Path) -> Path:
    """Write ``out`` (.ico with ICO_SIZES) from ``svg``; returns ``out``."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    image = render_png(Path(svg), max(ICO_SIZES))
    image.save(out, format="ICO", sizes=[(s, s) for s in ICO_SIZES])
    return out


if __name__ == "__main__":
    root = Path(__file__).resolve().parents[1]
    target = Path(sys.argv[1]) if len(sys.argv) > 1 else root / "build" / "LoRAStudio.ico"
    print(make_ico(root / "resources" / "icons" / "app.svg", target))
