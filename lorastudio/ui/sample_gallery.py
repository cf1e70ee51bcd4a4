"""Sample previews by step, and a viewer that compares a sample with its set's target."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from PySide6.QtCore import QSize, Qt, Signal
from PySide6.QtGui import QIcon, QKeySequence, QPixmap, QShortcut
from PySide6.QtWidgets import (QDialog, QHBoxLayout, QLabel, QListView, QListWidget, QListWidgetItem, QPushButton,
                               QVBoxLayout, QWidget)

from lorastudio.ui import theme
from lorastudio.ui.image_strip import ImageStrip, StripItem
from lorastudio.ui.thumbnails import ImageRef, ThumbnailLoader, device_box, thumb_key
from lorastudio.ui.window_geometry import size_dialog

ICON = 112


@dataclass
class Sample:
    step: int
    path: Path
    set_name: str
    target: Path | None
    inputs: tuple[Path, ...] = ()


class SampleGallery(QListWidget):
    """Icons of every sample the worker wrote, labelled with step and set; click to compare."""

    sample_activated = Signal(object)

    def __init__(self, loader: ThumbnailLoader, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._loader = loader
        self.samples: list[Sample] = []
        self._pending: dict[str, QListWidgetItem] = {}
        self.setViewMode(QListView.ViewMode.IconMode)
        self.setIconSize(QSize(ICON, ICON))
        self.setGridSize(QSize(ICON + 24, ICON + 44))
        self.setResizeMode(QListView.ResizeMode.Adjust)
        self.setMovement(QListView.Movement.Static)
        self.setWrapping(True)
        self.setWordWrap(True)
        self.setSpacing(4)
        self.setToolTip("Sample previews the trainer made along the way. Click one to compare it with the target.")
        self.itemClicked.connect(self._clicked)
        self.itemActivated.connect(self._clicked)
        loader.ready.connect(self._ready)

    def clear_samples(self) -> None:
        self.samples.clear()
        self._pending.clear()
        self.clear()

    def add_sample(self, sample: Sample) -> QListWidgetItem:
        self.samples.append(sample)
        item = QListWidgetItem(f"Step {sample.step:,}\n{sample.set_name}")
        item.setData(Qt.ItemDataRole.UserRole, len(self.samples) - 1)
        item.setToolTip(f"Step {sample.step} · set {sample.set_name}\n{sample.path}")
        item.setTextAlignment(Qt.AlignmentFlag.AlignHCenter | Qt.AlignmentFlag.AlignTop)
        item.setSizeHint(QSize(ICON + 20, ICON + 40))
        item.setIcon(self._placeholder())
        self.addItem(item)
        self._set_icon(item, sample)
        self.scrollToItem(item)
        return item

    def _placeholder(self) -> QIcon:
        pm = QPixmap(ICON, ICON)
        pm.fill(theme.colors().q("placeholder"))
        return QIcon(pm)

    def _box(self) -> int:
        return device_box(self, ICON)

    def _icon(self, pm: QPixmap) -> QIcon:
        box = self._box()
        if pm.width() < box and pm.height() < box:  # small previews (the demo's 64 px) fill the cell
            pm = pm.scaled(box, box, Qt.AspectRatioMode.KeepAspectRatio, Qt.TransformationMode.SmoothTransformation)
        else:
            pm = QPixmap(pm)  # the loader's pixmap is shared: mark the pixel ratio on a copy
        pm.setDevicePixelRatio(box / ICON)  # decoded at the screen's pixel ratio: drawn sharp, not blown up
        return QIcon(pm)

    def _set_icon(self, item: QListWidgetItem, sample: Sample) -> None:
        ref = ImageRef.of(sample.path)
        pm = self._loader.pixmap(ref, self._box())
        if pm is not None:
            item.setIcon(self._icon(pm))
        else:
            self._pending[thumb_key(ref, self._box())] = item

    def _ready(self, key: str) -> None:
        item = self._pending.pop(key, None)
        if item is None:
            return
        index = item.data(Qt.ItemDataRole.UserRole)
        if index is not None and 0 <= index < len(self.samples):
            pm = self._loader.cached(ImageRef.of(self.samples[index].path), self._box())
            if pm is not None:
                item.setIcon(self._icon(pm))

    def _clicked(self, item: QListWidgetItem) -> None:
        index = item.data(Qt.ItemDataRole.UserRole)
        if index is not None and 0 <= index < len(self.samples):
            self.sample_activated.emit(self.samples[index])


class SampleViewer(QDialog):
    """Non-modal: a sample large, beside the set's inputs and target; ←/→ walk the samples."""

    def __init__(self, loader: ThumbnailLoader, samples: list[Sample], index: int,
                 parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Sample preview")
        self.setModal(False)
        self.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        size_dialog(self, (1100, 520))
        self.samples = samples
        self.index = index
        layout = QVBoxLayout(self)
        self.title = QLabel()
        theme.set_role(self.title, "heading")
        layout.addWidget(self.title)
        self.strip = ImageStrip(loader, self, box=1024)
        layout.addWidget(self.strip, 1)
        row = QHBoxLayout()
        self.prev_button = QPushButton(theme.icon("previous"), "Earlier")
        self.next_button = QPushButton(theme.icon("next"), "Later")
        self.prev_button.clicked.connect(lambda: self.show_index(self.index - 1))
        self.next_button.clicked.connect(lambda: self.show_index(self.index + 1))
        close = QPushButton("Close")
        close.clicked.connect(self.close)
        hint = QLabel("Double-click an image to open it full size.")
        theme.set_role(hint, "muted")
        row.addWidget(self.prev_button)
        row.addWidget(self.next_button)
        row.addWidget(hint, 1)
        row.addWidget(close)
        layout.addLayout(row)
        QShortcut(QKeySequence(Qt.Key.Key_Left), self, lambda: self.show_index(self.index - 1))
        QShortcut(QKeySequence(Qt.Key.Key_Right), self, lambda: self.show_index(self.index + 1))
        self.show_index(index)

    def show_index(self, index: int) -> None:
        if not self.samples:
            return
        self.index = max(0, min(len(self.samples) - 1, index))
        s = self.samples[self.index]
        self.title.setText(f"Step {s.step:,} · set {s.set_name}")
        items = [StripItem(f"input {i + 1}", p) for i, p in enumerate(s.inputs)]
        items.append(StripItem(f"sample · step {s.step:,}", s.path, arrow_before=bool(s.inputs)))
        items.append(StripItem("target (_end)", s.target, "no target"))
        self.strip.set_items(items)
        self.prev_button.setEnabled(self.index > 0)
        self.next_button.setEnabled(self.index < len(self.samples) - 1)


class SampleViewers:
    """The sample viewer windows the artist opened: several may be open at once, and all close
    with the main window."""

    def __init__(self, loader: ThumbnailLoader, parent: QWidget) -> None:
        self.loader, self.parent = loader, parent
        self.open: list[SampleViewer] = []

    def show(self, samples: list[Sample], sample: Sample) -> SampleViewer:
        index = next((i for i, s in enumerate(samples) if s is sample), 0)
        viewer = SampleViewer(self.loader, samples, index, self.parent)
        viewer.destroyed.connect(lambda *_: self.open.remove(viewer) if viewer in self.open else None)
        self.open.append(viewer)
        viewer.show()
        return viewer

    def close_all(self) -> None:
        for viewer in list(self.open):
            viewer.close()
