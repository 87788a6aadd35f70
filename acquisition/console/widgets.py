"""The console's panels: the rig panel (a row per device), the camera preview tiles and the red banner."""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
from PyQt6.QtCore import QPointF, QRectF, Qt, pyqtSignal
from PyQt6.QtGui import QColor, QFont, QImage, QPainter
from PyQt6.QtWidgets import (
    QAbstractItemView,
    QFrame,
    QGridLayout,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QPushButton,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from acquisition.console.health import AMBER, GREEN, GREY, RED, DeviceRow
from drivers.camera.preview import PreviewReader

LIGHT_COLORS = {GREEN: "#2e7d32", AMBER: "#f9a825", RED: "#c62828", GREY: "#9e9e9e"}
RIG_COLUMNS = ["", "device", "state", "rate Hz", "drops", "latency", "battery", "last error"]
RATE_COLUMN = 3


class RigPanel(QWidget):
    """Every device with its light and numbers; connect, disconnect and restart act on the selected row."""

    action = pyqtSignal(str, str)  # (connect | disconnect | restart, device id)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.table = QTableWidget(0, len(RIG_COLUMNS))
        self.table.setHorizontalHeaderLabels(RIG_COLUMNS)
        self.table.horizontalHeaderItem(RATE_COLUMN).setToolTip("measured (over 10 s) / nominal, per stream")
        self.table.verticalHeader().setVisible(False)
        self.table.verticalHeader().setDefaultSectionSize(22)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        header = self.table.horizontalHeader()
        for i in range(len(RIG_COLUMNS) - 1):
            header.setSectionResizeMode(i, QHeaderView.ResizeMode.ResizeToContents)
        header.setSectionResizeMode(RATE_COLUMN, QHeaderView.ResizeMode.Interactive)  # a strap's is long
        self.table.setColumnWidth(RATE_COLUMN, 170)
        self.table.setTextElideMode(Qt.TextElideMode.ElideRight)
        header.setStretchLastSection(True)
        self.buttons = {}
        row = QHBoxLayout()
        for name in ("connect", "disconnect", "restart"):
            b = QPushButton(name.capitalize())
            b.setToolTip(f"{name.capitalize()} the selected device")
            b.clicked.connect(lambda _=False, n=name: self._act(n))
            row.addWidget(b)
            self.buttons[name] = b
        row.addStretch(1)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.table, 1)
        layout.addLayout(row)
        self.rows: dict[str, DeviceRow] = {}

    def selected(self) -> str | None:
        items = self.table.selectedItems()
        return self.table.item(items[0].row(), 1).text() if items else None

    def select(self, device: str) -> None:
        for r in range(self.table.rowCount()):
            if self.table.item(r, 1).text() == device:
                self.table.selectRow(r)

    def _act(self, name: str) -> None:
        device = self.selected()
        if device is not None:
            self.action.emit(name, device)

    def show_rows(self, rows: list[DeviceRow]) -> None:
        if self.table.rowCount() != len(rows):
            self.table.setRowCount(len(rows))
        for r, row in enumerate(rows):
            values = ["●", row.device, row.state, row.rate, row.drops, row.latency, row.battery, row.error]
            for c, text in enumerate(values):
                item = self.table.item(r, c)
                if item is None:
                    item = QTableWidgetItem()
                    self.table.setItem(r, c, item)
                if item.text() != text:
                    item.setText(text)
                    if c in (RATE_COLUMN, len(values) - 1):
                        item.setToolTip(text)
            light = self.table.item(r, 0)
            light.setForeground(QColor(LIGHT_COLORS[row.light]))
            self.rows[row.device] = row


class PreviewTile(QWidget):
    """One camera's newest preview image with its id, measured fps and drops drawn over it."""

    clicked = pyqtSignal(str)

    def __init__(self, camera: str, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.camera = camera
        self.image: QImage | None = None
        self._pixels: np.ndarray | None = None  # QImage borrows this memory
        self.overlay = camera
        self.points: np.ndarray | None = None  # (N, 2) image pixels to mark over the image (found corners)
        self.frames_shown = 0
        self.setMinimumSize(120, 68)
        self.setCursor(Qt.CursorShape.PointingHandCursor)
        self.setToolTip(f"{camera}: click to enlarge, click again to see all cameras")

    def set_frame(self, img: np.ndarray) -> None:
        if img.ndim != 3 or img.shape[0] == 0 or img.shape[1] == 0:
            return  # nothing to show (a preview file being set up)
        self._pixels = np.ascontiguousarray(img)
        h, w, _ = self._pixels.shape
        self.image = QImage(self._pixels.data, w, h, 3 * w, QImage.Format.Format_BGR888)
        self.frames_shown += 1
        self.update()

    def paintEvent(self, _event: object) -> None:  # noqa: N802 - Qt's name
        p = QPainter(self)
        p.fillRect(self.rect(), QColor("#101010"))
        if self.image is not None:
            iw, ih = self.image.width(), self.image.height()
            s = min(self.width() / iw, self.height() / ih)
            target = QRectF((self.width() - iw * s) / 2, (self.height() - ih * s) / 2, iw * s, ih * s)
            p.drawImage(target, self.image)
            if self.points is not None and len(self.points):
                p.setPen(QColor("#00e676"))
                p.setBrush(QColor("#00e676"))
                r = max(2.0, 2.5 * s)
                for x, y in self.points:
                    p.drawEllipse(QPointF(target.left() + (x + 0.5) * s, target.top() + (y + 0.5) * s), r, r)
        else:
            p.setPen(QColor("#bbbbbb"))
            p.drawText(self.rect(), Qt.AlignmentFlag.AlignCenter, "no preview yet")
        font = QFont(p.font())
        font.setBold(True)
        p.setFont(font)
        metrics = p.fontMetrics()
        box = metrics.boundingRect(self.overlay).adjusted(-4, -2, 4, 2)
        box.moveTopLeft(self.rect().topLeft())
        p.fillRect(box, QColor(0, 0, 0, 170))
        p.setPen(QColor("#ffffff"))
        p.drawText(box, Qt.AlignmentFlag.AlignCenter, self.overlay)
        p.end()

    def mousePressEvent(self, _event: object) -> None:  # noqa: N802 - Qt's name
        self.clicked.emit(self.camera)


class PreviewGrid(QWidget):
    """The cameras' tiles in one row; a click enlarges one tile to the whole area, another click restores."""

    enlarged_changed = pyqtSignal(bool)

    def __init__(self, cameras: list[str], parent: QWidget | None = None, columns: int = 0) -> None:
        super().__init__(parent)
        self.columns = columns or len(cameras)  # tiles per row
        self.tiles = {c: PreviewTile(c) for c in cameras}
        self.readers: dict[str, tuple[tuple[Path, int], PreviewReader]] = {}
        self.enlarged: str | None = None
        self.grid = QGridLayout(self)
        self.grid.setContentsMargins(0, 0, 0, 0)
        self.grid.setSpacing(3)
        for tile in self.tiles.values():
            tile.clicked.connect(self.toggle)
        self._lay_out()

    def _lay_out(self) -> None:
        for tile in self.tiles.values():
            self.grid.removeWidget(tile)
            tile.setVisible(self.enlarged in (None, tile.camera))
        if self.enlarged is not None:
            self.grid.addWidget(self.tiles[self.enlarged], 0, 0)
            return
        for i, tile in enumerate(self.tiles.values()):
            self.grid.addWidget(tile, i // self.columns, i % self.columns)

    def toggle(self, camera: str) -> None:
        self.enlarged = None if self.enlarged == camera else camera
        self._lay_out()
        self.enlarged_changed.emit(self.enlarged is not None)

    def refresh(self, statuses: dict[str, tuple[dict, float]]) -> None:
        """Show each camera's newest preview (the path comes from the camera's status) and its numbers."""
        for cam, tile in self.tiles.items():
            status = statuses.get(cam, ({}, 0.0))[0]
            rate = status.get("rates", {}).get(cam, {})
            fps = f"{rate['measured']:.1f} fps" if "measured" in rate else "- fps"
            tile.overlay = f"{cam}  {fps}  {status.get('drops', 0)} drops"
            path = status.get("preview")
            reader = self._reader(cam, Path(path)) if path else None
            try:
                got = reader.read() if reader is not None else None
            except (ValueError, OSError, struct.error):  # a restarting camera rewrites its file
                self.readers.pop(cam, None)
                got = None
            if got is not None:
                self.frame_arrived(cam, *got)
            elif not tile.isHidden():
                tile.update()

    def frame_arrived(self, camera: str, image: np.ndarray, stamp: float, index: int) -> None:
        """A new preview image (BGR), its frame's time stamp and index: shown here; a subclass may look
        at it too."""
        self.tiles[camera].set_frame(image)

    def _reader(self, cam: str, path: Path) -> PreviewReader | None:
        """The reader of this camera's preview file; a restarted camera writes a new file at the same
        path, so the file's identity (inode) decides, not its name."""
        try:
            ident = (path, path.stat().st_ino)
        except OSError:
            return None
        known = self.readers.get(cam)
        if known is not None and known[0] == ident:
            return known[1]
        try:
            reader = PreviewReader(path)
        except (OSError, ValueError):
            return None
        if known is not None:
            known[1].close()
        self.readers[cam] = (ident, reader)
        return reader


class Banner(QFrame):
    """The red banner: lost devices, dropped frames, low disk. It stays until acknowledged."""

    acknowledged = pyqtSignal()

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setStyleSheet("Banner { background: #c62828; } QLabel { color: white; font-weight: bold; }")
        self.label = QLabel("")
        self.label.setWordWrap(True)
        self.button = QPushButton("Acknowledge (F9)")
        self.button.clicked.connect(self.acknowledge)
        layout = QHBoxLayout(self)
        layout.addWidget(self.label, 1)
        layout.addWidget(self.button)
        self.messages: dict[str, str] = {}  # alarm key -> text, shown until acknowledged
        self.seen: set[str] = set()         # keys acknowledged while their condition lasts
        self.hide()

    def raise_alarms(self, alarms: list) -> None:
        current = {a.key for a in alarms}
        self.seen &= current  # a condition that ended may alarm again
        for a in alarms:
            if a.key not in self.seen:
                self.messages[a.key] = a.text
        self._show()

    def add(self, key: str, text: str) -> None:
        self.messages[key] = text
        self._show()

    def _show(self) -> None:
        if self.messages:
            self.label.setText("\n".join(self.messages.values()))
        self.setVisible(bool(self.messages))

    def acknowledge(self) -> None:
        self.seen |= set(self.messages)
        self.messages.clear()
        self._show()
        self.acknowledged.emit()
