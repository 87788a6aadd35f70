"""Live signals with pyqtgraph: EMG channels stacked in one plot (one lane per channel, labelled on
the axis), the chest ECG, heart-rate and breathing-rate trends, and markers (sync pulses, the
operator's marks, take start and stop) as vertical lines. A channel picker chooses the EMG lanes.

Kept cheap on purpose: one view for all EMG lanes, traces reduced to min/max pairs per screen
column before drawing, no grid (pyqtgraph's grid costs about 4x), no mouse interaction.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pylsl
import pyqtgraph as pg
from PyQt6.QtCore import Qt
from PyQt6.QtGui import QFont
from PyQt6.QtWidgets import QHBoxLayout, QLabel, QMenu, QToolButton, QVBoxLayout, QWidget

from acquisition.console.feed import LiveFeed

WINDOW_S = 5.0          # EMG and ECG
TREND_S = 300.0         # heart and breathing rate
POINTS_PER_TRACE = 300  # min/max pairs: one per three screen columns of a 900-px plot
SCALE_EVERY_S = 1.0     # a lane's offset and scale are re-measured this often, not every frame
LANE_COLORS = ["#4fc3f7", "#81c784", "#ffb74d", "#e57373", "#ba68c8", "#4db6ac", "#fff176", "#90a4ae"]
MARK_PENS = {"pulse": pg.mkPen("#ffd54f", width=1), "mark": pg.mkPen("w", width=1, style=Qt.PenStyle.DashLine),
             "take": pg.mkPen("#66bb6a", width=2)}


def peak_reduce(x: np.ndarray, y: np.ndarray, points: int) -> tuple[np.ndarray, np.ndarray]:
    """Min and max of each of `points` bins, interleaved: a trace drawn from this keeps every spike."""
    n = len(x)
    if n <= 2 * points:
        return x, y
    b = n // points
    m = b * points
    xs = x[n - m:].reshape(points, b)[:, 0]
    ys = y[n - m:].reshape(points, b)
    out_y = np.empty(2 * points, y.dtype)
    out_y[0::2] = ys.min(axis=1)
    out_y[1::2] = ys.max(axis=1)
    return np.repeat(xs, 2), out_y


def _value(x: float | None, fmt: str) -> str:
    return "-" if x is None or not np.isfinite(x) else format(x, fmt)


@dataclass
class Lane:
    stream_id: str
    column: int
    label: str
    curve: pg.PlotDataItem
    scale: float = 0.0
    center: float = 0.0
    scaled_at: float = -np.inf


class _Markers:
    """A pool of vertical lines in one plot, moved rather than recreated; labelled pools carry text."""

    def __init__(self, plot: pg.PlotItem, labelled: bool) -> None:
        self.plot = plot
        self.labelled = labelled
        self.lines: list[pg.InfiniteLine] = []

    def show(self, marks: list[tuple[float, str, str]]) -> None:
        while len(self.lines) < len(marks):
            opts = {"label": "", "labelOpts": {"position": 0.96, "color": "w"}} if self.labelled else {}
            line = pg.InfiniteLine(angle=90, movable=False, **opts)
            self.plot.addItem(line, ignoreBounds=True)
            self.lines.append(line)
        for line, (x, kind, text) in zip(self.lines, marks, strict=False):
            if getattr(line, "kind", None) != kind:
                line.kind = kind
                line.setPen(MARK_PENS.get(kind, MARK_PENS["mark"]))
            if self.labelled:
                line.label.setFormat(text)
            line.setValue(x)
            line.setVisible(True)
        for line in self.lines[len(marks):]:
            line.setVisible(False)


class LivePlots(QWidget):
    def __init__(self, feed: LiveFeed, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.feed = feed
        self.marks: list[tuple[float, str, str]] = []  # (LSL time, kind, text) of operator marks and takes
        self.hidden: set[tuple[str, int]] = set()     # EMG channels switched off in the picker
        self.lanes: list[Lane] = []
        self._known: list[tuple[str, int, str]] = []

        pg.setConfigOptions(antialias=False)
        self.graphics = pg.GraphicsLayoutWidget()
        self.emg = self.graphics.addPlot(row=0, col=0, colspan=2)
        self.ecg = self.graphics.addPlot(row=1, col=0, colspan=2)
        self.hr = self.graphics.addPlot(row=2, col=0)
        self.breath = self.graphics.addPlot(row=2, col=1)
        self.graphics.ci.layout.setRowStretchFactor(0, 7)
        self.graphics.ci.layout.setRowStretchFactor(1, 2)
        self.graphics.ci.layout.setRowStretchFactor(2, 2)
        small = QFont()
        small.setPointSize(7)
        self.emg.getAxis("left").setTickFont(small)
        self.emg.getAxis("left").setWidth(120)
        for p, title in ((self.emg, "EMG"), (self.ecg, "ECG (µV)"), (self.hr, "heart rate (bpm)"),
                         (self.breath, "breathing (breaths/min)")):
            p.setMenuEnabled(False)
            p.setMouseEnabled(False, False)
            p.hideButtons()
            p.setTitle(title, size="9pt")
        for p in (self.emg, self.ecg):
            p.setXRange(-WINDOW_S, 0, padding=0)
        for p in (self.hr, self.breath):
            p.setXRange(-TREND_S, 0, padding=0)
            p.getAxis("bottom").setLabel("s")
        self.ecg_curve = self.ecg.plot(pen=pg.mkPen("#ef5350", width=1), skipFiniteCheck=True)
        self.hr_curve = self.hr.plot(pen=pg.mkPen("#ef5350", width=2), skipFiniteCheck=True)
        self.breath_curve = self.breath.plot(pen=pg.mkPen("#4fc3f7", width=2),
                                             skipFiniteCheck=True)
        self.emg_pulses = _Markers(self.emg, labelled=False)
        self.emg_marks, self.ecg_marks = _Markers(self.emg, labelled=True), _Markers(self.ecg, labelled=True)

        self.picker = QToolButton(text="EMG channels...")
        self.picker.setPopupMode(QToolButton.ToolButtonPopupMode.InstantPopup)
        self.picker.setMenu(QMenu(self.picker))
        self.readout = QLabel("")
        top = QHBoxLayout()
        top.addWidget(self.picker)
        top.addWidget(self.readout, 1)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addLayout(top)
        layout.addWidget(self.graphics, 1)

    # -- the channel picker ------------------------------------------------------------------------
    def _channels(self) -> list[tuple[str, int, str]]:
        out = []
        for sid, kind, labels in self.feed.signal_list():
            if kind == "EMG":
                out += [(sid, i, label) for i, label in enumerate(labels)]
        return out

    def _rebuild_picker(self) -> None:
        menu = self.picker.menu()
        menu.clear()
        for sid, col, label in self._known:
            action = menu.addAction(f"{sid}  {label}")
            action.setCheckable(True)
            action.setChecked((sid, col) not in self.hidden)
            action.toggled.connect(lambda on, key=(sid, col): self.set_channel(key, on))

    def set_channel(self, key: tuple[str, int], shown: bool) -> None:
        (self.hidden.discard if shown else self.hidden.add)(key)
        self._rebuild_lanes()

    def _rebuild_lanes(self) -> None:
        for lane in self.lanes:
            self.emg.removeItem(lane.curve)
        self.lanes = []
        shown = [c for c in self._known if (c[0], c[1]) not in self.hidden]
        units = sorted({sid for sid, _, _ in shown})
        for i, (sid, col, label) in enumerate(shown):
            pen = pg.mkPen(LANE_COLORS[units.index(sid) % len(LANE_COLORS)], width=1)
            curve = self.emg.plot(pen=pen, skipFiniteCheck=True)
            curve.setPos(0, -i)
            self.lanes.append(Lane(sid, col, label, curve))
        ticks = [(-i, lane.label) for i, lane in enumerate(self.lanes)]
        self.emg.getAxis("left").setTicks([ticks, []])
        self.emg.setYRange(-max(len(self.lanes), 1) + 0.5, 0.5, padding=0)
        self.emg.setTitle(f"EMG: {len(self.lanes)} of {len(self._known)} channels", size="9pt")

    # -- drawing -------------------------------------------------------------------------------------
    def refresh(self) -> None:
        channels = self._channels()
        if channels != self._known:
            self._known = channels
            self._rebuild_picker()
            self._rebuild_lanes()
        now = pylsl.local_clock()
        by_stream: dict[str, tuple[np.ndarray, np.ndarray] | None] = {}
        for lane in self.lanes:
            if lane.stream_id not in by_stream:
                by_stream[lane.stream_id] = self.feed.signal_snapshot(lane.stream_id, WINDOW_S)
            snap = by_stream[lane.stream_id]
            if snap is None or len(snap[0]) < 2:
                lane.curve.setData([], [])
                continue
            stamps, values = snap
            y = values[:, lane.column]
            if now - lane.scaled_at >= SCALE_EVERY_S:
                lane.scaled_at = now
                sample = y[::4]
                lane.center = float(np.median(sample))
                peak = float(np.percentile(np.abs(sample - lane.center), 99.5)) or 1.0
                lane.scale = peak if lane.scale == 0 else max(peak, 0.7 * lane.scale)  # rises at once, falls slowly
            x, yy = peak_reduce(stamps - now, (y - lane.center) * (1 / (2.2 * lane.scale)), POINTS_PER_TRACE)
            lane.curve.setData(x, yy)
        self._draw_single("ECG", self.ecg_curve, WINDOW_S, now)
        hr = self._draw_single("HeartRate", self.hr_curve, TREND_S, now)
        br = self._draw_single("Respiration", self.breath_curve, TREND_S, now)
        self.readout.setText(f"HR {_value(hr, '.0f')} bpm    breathing {_value(br, '.1f')} /min")
        pulses = [(t - now, "pulse", "") for t in self.feed.pulse_snapshot() if t > now - WINDOW_S]
        marks = [(t - now, kind, text) for t, kind, text in self.marks if t > now - WINDOW_S]
        self.emg_pulses.show(pulses)
        self.emg_marks.show(marks)
        self.ecg_marks.show(marks)

    def _draw_single(self, stream_type: str, curve: pg.PlotDataItem, seconds: float, now: float) -> float | None:
        sid = next((s for s, kind, _ in self.feed.signal_list() if kind == stream_type), None)
        snap = None if sid is None else self.feed.signal_snapshot(sid, seconds)
        if snap is None or len(snap[0]) == 0:
            curve.setData([], [])
            return None
        stamps, values = snap
        keep = stamps > now - seconds
        curve.setData(stamps[keep] - now, values[keep, 0])
        return float(values[-1, 0])

    def add_mark(self, stamp: float, kind: str, text: str) -> None:
        self.marks.append((stamp, kind, text))
        del self.marks[:-50]
