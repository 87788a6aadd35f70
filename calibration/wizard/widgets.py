"""The wizard's pictures: where in each camera's image the board has been captured, how many views
each pair of cameras shares, and the calibrated cameras seen from above and from the side."""

from __future__ import annotations

from itertools import combinations

import numpy as np
from PyQt6.QtCore import QPointF, QRectF, Qt
from PyQt6.QtGui import QBrush, QColor, QFont, QPainter, QPen, QPolygonF
from PyQt6.QtWidgets import QTableWidget, QTableWidgetItem, QWidget

from calibration.result import Calibration

GRID_X, GRID_Y = 8, 6
CAMERA_COLOURS = ("#1e88e5", "#e53935", "#43a047", "#fb8c00", "#8e24aa", "#00897b", "#6d4c41", "#546e7a")


class CoverageMap(QWidget):
    """One camera's image as an 8 x 6 grid, each cell as dark as the corners captured in it; below it, the
    camera's id and its number of views."""

    def __init__(self, camera: str, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.camera = camera
        self.counts = np.zeros((GRID_Y, GRID_X), dtype=np.int64)
        self.views = 0
        self.needed = 6
        self.setMinimumSize(120, 100)
        self.setToolTip(f"where in {camera}'s image the board was captured, and how much of the image it covered")

    def reset(self) -> None:
        self.counts[:] = 0
        self.views = 0
        self.update()

    def add(self, corners: np.ndarray, size: tuple[int, int]) -> None:
        w, h = size
        gx = np.clip((corners[:, 0] / w * GRID_X).astype(int), 0, GRID_X - 1)
        gy = np.clip((corners[:, 1] / h * GRID_Y).astype(int), 0, GRID_Y - 1)
        np.add.at(self.counts, (gy, gx), 1)
        self.views += 1
        self.update()

    def covered(self) -> float:
        return float((self.counts > 0).mean())

    def paintEvent(self, _event: object) -> None:  # noqa: N802 - Qt's name
        p = QPainter(self)
        text_h = p.fontMetrics().height() + 4
        area = QRectF(2, 2, max(self.width() - 4, 16), max(self.height() - text_h - 4, 9))
        if area.width() / area.height() > 16 / 9:  # keep the image's shape
            area.setWidth(area.height() * 16 / 9)
        else:
            area.setHeight(area.width() * 9 / 16)
        cw, ch = area.width() / GRID_X, area.height() / GRID_Y
        top = max(int(self.counts.max()), 1)
        for y in range(GRID_Y):
            for x in range(GRID_X):
                n = self.counts[y, x]
                level = 0 if n == 0 else 60 + int(170 * min(n / top, 1.0))
                colour = QColor(40, 40, 40) if n == 0 else QColor(0, level, 90)
                p.fillRect(QRectF(area.left() + x * cw, area.top() + y * ch, cw - 1, ch - 1), colour)
        ok = self.views >= self.needed
        p.setPen(QColor("#1b5e20") if ok else QColor("#b71c1c"))
        font = QFont(p.font())
        font.setBold(True)
        p.setFont(font)
        p.drawText(QRectF(0, area.bottom() + 2, self.width(), text_h), Qt.AlignmentFlag.AlignLeft,
                   f"{self.camera}: {self.views} views, {self.covered():.0%}")
        p.end()


class PairTable(QTableWidget):
    """Views shared by each pair of cameras (red: none, amber: fewer than needed)."""

    def __init__(self, cameras: list[str], needed: int = 3, parent: QWidget | None = None) -> None:
        super().__init__(len(cameras), len(cameras), parent)
        self.cameras = cameras
        self.needed = needed
        self.shared = {pair: 0 for pair in combinations(cameras, 2)}
        self.setHorizontalHeaderLabels(cameras)
        self.setVerticalHeaderLabels(cameras)
        self.setEditTriggers(QTableWidget.EditTrigger.NoEditTriggers)
        self.horizontalHeader().setDefaultSectionSize(52)
        self.verticalHeader().setDefaultSectionSize(22)
        self.setToolTip("views in which both cameras saw the board")
        self._fill()
        self.setFixedHeight(self.horizontalHeader().sizeHint().height() + 22 * len(cameras) + 2 * self.frameWidth())
        self.setFixedWidth(self.verticalHeader().sizeHint().width() + 52 * len(cameras) + 2 * self.frameWidth())

    def reset(self) -> None:
        self.shared = dict.fromkeys(self.shared, 0)
        self._fill()

    def add(self, cameras: list[str]) -> None:
        for a, b in combinations([c for c in self.cameras if c in cameras], 2):
            self.shared[(a, b)] += 1
        self._fill()

    def _fill(self) -> None:
        for i, a in enumerate(self.cameras):
            for j, b in enumerate(self.cameras):
                if i == j:
                    item = QTableWidgetItem("")
                    item.setBackground(QColor("#e0e0e0"))
                else:
                    n = self.shared[(a, b) if i < j else (b, a)]
                    item = QTableWidgetItem(str(n))
                    item.setBackground(QColor("#ffcdd2" if n == 0 else "#ffe0b2" if n < self.needed else "#c8e6c9"))
                item.setTextAlignment(Qt.AlignmentFlag.AlignCenter)
                self.setItem(i, j, item)


class PosePicture(QWidget):
    """The calibrated cameras from above (x, y) and from the side (x, z), with the floor board at the
    origin and each camera's viewing direction; in millimetres of the world frame."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.cal: Calibration | None = None
        self.setMinimumSize(520, 260)

    def show_calibration(self, cal: Calibration) -> None:
        self.cal = cal
        self.update()

    def paintEvent(self, _event: object) -> None:  # noqa: N802 - Qt's name
        p = QPainter(self)
        p.setRenderHint(QPainter.RenderHint.Antialiasing)
        p.fillRect(self.rect(), QColor("#fafafa"))
        if self.cal is None or not self.cal.cameras:
            p.drawText(self.rect(), Qt.AlignmentFlag.AlignCenter, "no calibrated camera")
            p.end()
            return
        half = self.width() / 2
        self._panel(p, QRectF(8, 8, half - 16, self.height() - 16), (0, 1), "from above (x, y)")
        self._panel(p, QRectF(half + 8, 8, half - 16, self.height() - 16), (0, 2), "from the side (x, z)")
        p.end()

    def _panel(self, p: QPainter, box: QRectF, axes: tuple[int, int], title: str) -> None:
        cal = self.cal
        assert cal is not None
        a, b = axes
        cams = list(cal.cameras.values())
        pts = np.array([c.center for c in cams])
        w, h = cal.board.size_mm
        board = np.array([[-w / 2, -h / 2, 0], [w / 2, -h / 2, 0], [w / 2, h / 2, 0], [-w / 2, h / 2, 0]])
        every = np.vstack([pts, board, np.zeros(3)])
        lo, hi = every.min(axis=0), every.max(axis=0)
        span = max(hi[a] - lo[a], hi[b] - lo[b], 1.0) * 1.25
        mid = (lo + hi) / 2
        title_h = p.fontMetrics().height() + 4
        inner = box.adjusted(10, title_h + 6, -10, -10)
        scale = min(inner.width(), inner.height()) / span
        cx, cy = inner.center().x(), inner.center().y()

        def to_px(v: np.ndarray) -> QPointF:  # up on the screen is +y (above) or +z (side)
            return QPointF(cx + (v[a] - mid[a]) * scale, cy - (v[b] - mid[b]) * scale)

        p.setPen(QPen(QColor("#bdbdbd")))
        p.setBrush(Qt.BrushStyle.NoBrush)
        p.drawRect(box)
        p.setPen(QColor("#424242"))
        p.drawText(box.adjusted(6, 4, 0, 0), Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignTop, title)
        # floor line (side) or board (above), and the world axes at the origin
        p.setPen(QPen(QColor("#9e9e9e"), 1, Qt.PenStyle.DashLine))
        if b == 2:
            p.drawLine(QPointF(inner.left(), to_px(np.zeros(3)).y()), QPointF(inner.right(), to_px(np.zeros(3)).y()))
        p.setPen(QPen(QColor("#616161"), 1))
        p.setBrush(QBrush(QColor(0, 0, 0, 40)))
        p.drawPolygon(QPolygonF([to_px(c) for c in board]))
        origin = to_px(np.zeros(3))
        for axis, colour in ((a, "#d32f2f"), (b, "#388e3c")):
            tip = np.zeros(3)
            tip[axis] = 500.0
            p.setPen(QPen(QColor(colour), 2))
            p.drawLine(origin, to_px(tip))
        # a 1 m scale bar
        bar = QPointF(inner.left() + 4, inner.bottom() - 4)
        p.setPen(QPen(QColor("#424242"), 2))
        p.drawLine(bar, bar + QPointF(1000.0 * scale, 0))
        p.drawText(bar + QPointF(0, -5), "1 m")
        labels: list[QRectF] = []
        for k, c in enumerate(cams):
            colour = QColor(CAMERA_COLOURS[k % len(CAMERA_COLOURS)])
            centre = to_px(c.center)
            ahead = c.center + c.R[2] * 1000.0  # the optical axis, 1 m of it
            p.setPen(QPen(colour, 2))
            p.drawLine(centre, to_px(ahead))
            p.setBrush(QBrush(colour))
            p.drawEllipse(centre, 5, 5)
            p.setPen(QColor("#212121"))
            rect = QRectF(p.fontMetrics().boundingRect(c.camera_id)).translated(centre + QPointF(8, -8))
            while any(rect.intersects(r) for r in labels):  # cameras in line (seen from the side): stack names
                rect.translate(0, rect.height())
            labels.append(rect)
            p.drawText(rect.bottomLeft() - QPointF(0, p.fontMetrics().descent()), c.camera_id)
