"""The calibration wizard's window: pick cameras, capture views of the board (live previews with the
found corners, coverage per camera, views shared per pair, auto-capture when the board is held still),
calibrate in the background, read the result and accept it.

It records a calibration take while capturing; each capture is a mark in it ("calibration view",
"floor"), and the calibration detects the board in the take's full-resolution frames at those marks.
The same take can be calibrated again later with `flexcap calibrate run TAKE`."""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import numpy as np
from PyQt6.QtCore import QThread, QTimer, pyqtSignal
from PyQt6.QtGui import QCloseEvent, QKeySequence, QShortcut
from PyQt6.QtWidgets import (
    QCheckBox,
    QGridLayout,
    QHBoxLayout,
    QLabel,
    QMainWindow,
    QMessageBox,
    QProgressBar,
    QPushButton,
    QStackedWidget,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from acquisition.config import RigError, load_rig
from acquisition.console.feed import LiveFeed
from acquisition.console.widgets import PreviewGrid
from acquisition.console.worker import on_own_thread
from acquisition.lslconfig import apply_lsl_settings
from acquisition.rig import expected_streams
from acquisition.supervisor import camera_ids
from calibration.board import BoardSpec
from calibration.commands import DEFAULT_BOARD_WARNING
from calibration.detect import Detection
from calibration.result import Calibration
from calibration.solve import MIN_SHARED, MIN_VIEWS
from calibration.take import FLOOR_MARK, VIEW_MARK
from calibration.wizard.live import CaptureTracker, LiveDetector
from calibration.wizard.widgets import CoverageMap, PairTable, PosePicture
from calibration.wizard.worker import CalibrateJob, CalibrationWorker

log = logging.getLogger(__name__)

PREVIEW_INTERVAL_MS = 80
HOW_TO = ("Walk the board over the whole capture area. At each place hold it still for a second, tilted "
          "differently each time (up to 45 degrees), so that two or more cameras see it: a view is captured "
          "by itself when every camera that sees the board has it still (or press Space). Fill every "
          "camera's image, its corners too. At the end lay the board flat on the floor at the centre and "
          "press Floor (F): that sets the world frame.")


class DetectingPreviews(PreviewGrid):
    """The preview grid, handing each new image of a selected camera to the live detector."""

    def __init__(self, cameras: list[str], detector: LiveDetector) -> None:
        super().__init__(cameras, columns=2)
        self.detector = detector
        self.active: set[str] = set()
        self.sizes: dict[str, tuple[int, int]] = {}
        self.stamps: dict[str, float] = {}  # each camera's newest frame time stamp
        self.notes: dict[str, str] = {}  # each camera's board: "24 corners, still"

    def refresh(self, statuses: dict) -> None:
        super().refresh(statuses)
        for camera, note in self.notes.items():  # what the detector sees, instead of the camera's rates
            self.tiles[camera].overlay = f"{camera}: {note}"

    def frame_arrived(self, camera: str, image: Any, stamp: float, index: int) -> None:
        super().frame_arrived(camera, image, stamp, index)
        self.sizes[camera] = (image.shape[1], image.shape[0])
        self.stamps[camera] = stamp
        if camera in self.active:
            self.detector.offer(camera, image, stamp)


class CalibrationWizard(QMainWindow):
    ask = pyqtSignal(str, object)
    run_job = pyqtSignal(str, object, str)

    def __init__(self, rig_path: str | None, sessions: str | None, subject: str) -> None:
        super().__init__()
        self.setWindowTitle("flexcap calibration")
        self.resize(1280, 780)
        self.subject = subject
        self.rig = None
        self.feed: LiveFeed | None = None
        self.worker: CalibrationWorker | None = None
        self.thread_: QThread | None = None
        self.detector_thread: QThread | None = None
        self.job_thread: QThread | None = None
        self.take: str | None = None
        self.take_started = 0.0
        self.rig_up = False  # the rig worker has started the rig
        self.result: Calibration | None = None
        self.tracker: CaptureTracker | None = None
        self.captures = 0
        self.floors = 0
        self.capturing = False
        self.closing = False
        self.dialogs: list[QMessageBox] = []
        self.pages = QStackedWidget()
        self.setCentralWidget(self.pages)
        try:
            self.rig = load_rig(rig_path)
        except RigError as exc:
            self.pages.addWidget(QLabel(f"The rig file does not load:\n{exc}"))
            self.message("The rig file does not load", str(exc))
            return
        self.cameras = camera_ids(self.rig)
        self.spec = self.rig.calibration.board or BoardSpec()
        self.board_warning = "" if self.rig.calibration.board else DEFAULT_BOARD_WARNING.format(self.spec.describe())
        self.sessions = Path(sessions or self.rig.sessions_dir)
        apply_lsl_settings(self.rig.lsl)
        self._build_cameras_page()
        self._build_capture_page()
        self._build_result_page()
        self._start_rig()

    # -- pages ------------------------------------------------------------------------------------------
    def _build_cameras_page(self) -> None:
        page = QWidget()
        lay = QVBoxLayout(page)
        lay.addWidget(_heading("1. Cameras"))
        lay.addWidget(QLabel(f"Rig: {self.rig.name}.  Board: {self.spec.describe()}  "
                             "(print it with `flexcap calibrate board --out board.pdf`)."))
        if self.board_warning:
            warn = QLabel(f"Warning: {self.board_warning}.")
            warn.setStyleSheet("color: #b71c1c; font-weight: bold")
            warn.setWordWrap(True)
            lay.addWidget(warn)
        self.camera_boxes = {}
        for c in self.cameras:
            box = QCheckBox(c)
            box.setChecked(True)
            box.toggled.connect(self._update_start)
            self.camera_boxes[c] = box
            lay.addWidget(box)
        self.rig_status = QLabel("Starting the rig...")
        lay.addWidget(self.rig_status)
        self.start_button = QPushButton("Start capturing")
        self.start_button.setEnabled(False)
        self.start_button.clicked.connect(self.start_capture)
        lay.addWidget(self.start_button)
        lay.addStretch(1)
        self.pages.addWidget(page)

    def _build_capture_page(self) -> None:
        self.detector = LiveDetector(self.spec)
        self.detector_thread = on_own_thread(self.detector, "board-detector")
        self.detector.detected.connect(self._detected)
        page = QWidget()
        outer = QHBoxLayout(page)
        left = QVBoxLayout()
        left.addWidget(_heading("2. Capture views"))
        how = QLabel(HOW_TO)
        how.setWordWrap(True)
        left.addWidget(how)
        self.previews = DetectingPreviews(self.cameras, self.detector)
        left.addWidget(self.previews, 1)
        outer.addLayout(left, 3)
        right = QVBoxLayout()
        self.coverage = {c: CoverageMap(c) for c in self.cameras}
        grid = QGridLayout()
        for i, c in enumerate(self.cameras):
            self.coverage[c].needed = MIN_VIEWS
            grid.addWidget(self.coverage[c], i // 2, i % 2)
        right.addWidget(QLabel("Where each camera has seen the board:"))
        right.addLayout(grid)
        right.addWidget(QLabel("Views shared by each pair of cameras:"))
        self.pairs = PairTable(self.cameras, MIN_SHARED)
        right.addWidget(self.pairs)
        self.auto = QCheckBox("Capture by itself when the board is held still")
        self.auto.setChecked(True)
        right.addWidget(self.auto)
        self.count_label = QLabel("No view captured yet")
        right.addWidget(self.count_label)
        buttons = QHBoxLayout()
        self.capture_button = QPushButton("Capture view (Space)")
        self.capture_button.clicked.connect(lambda: self.capture(floor=False))
        self.floor_button = QPushButton("Board on the floor (F)")
        self.floor_button.clicked.connect(lambda: self.capture(floor=True))
        self.calibrate_button = QPushButton("Calibrate")
        self.calibrate_button.clicked.connect(self.calibrate)
        for b in (self.capture_button, self.floor_button, self.calibrate_button):
            buttons.addWidget(b)
        right.addLayout(buttons)
        self.progress = QProgressBar()
        self.progress.setVisible(False)
        right.addWidget(self.progress)
        outer.addLayout(right, 2)
        QShortcut(QKeySequence("Space"), page, lambda: self.capture(floor=False))
        QShortcut(QKeySequence("F"), page, lambda: self.capture(floor=True))
        self.pages.addWidget(page)

    def _build_result_page(self) -> None:
        page = QWidget()
        outer = QVBoxLayout(page)
        outer.addWidget(_heading("3. Result"))
        row = QHBoxLayout()
        left = QVBoxLayout()
        self.table = QTableWidget(0, 8)
        self.table.setHorizontalHeaderLabels(["camera", "error px", "views", "corners", "fx", "x mm", "y mm",
                                              "z mm"])
        self.table.setEditTriggers(QTableWidget.EditTrigger.NoEditTriggers)
        self.table.verticalHeader().setVisible(False)
        left.addWidget(self.table)
        self.check_label = QLabel()
        self.check_label.setWordWrap(True)
        left.addWidget(self.check_label)
        self.advice_label = QLabel()
        self.advice_label.setWordWrap(True)
        left.addWidget(self.advice_label)
        left.addStretch(1)
        row.addLayout(left, 2)
        self.poses = PosePicture()
        row.addWidget(self.poses, 3)
        outer.addLayout(row, 1)
        buttons = QHBoxLayout()
        self.back_button = QPushButton("Capture again")
        self.back_button.clicked.connect(self.capture_again)
        self.accept_button = QPushButton("Accept and save")
        self.accept_button.clicked.connect(self.accept)
        buttons.addStretch(1)
        buttons.addWidget(self.back_button)
        buttons.addWidget(self.accept_button)
        outer.addLayout(buttons)
        self.saved_label = QLabel()
        self.saved_label.setWordWrap(True)
        outer.addWidget(self.saved_label)
        self.pages.addWidget(page)

    # -- the rig ----------------------------------------------------------------------------------------
    def _start_rig(self) -> None:
        wanted = {s["source_id"]: s["stream_id"] for s in expected_streams(self.rig)}
        self.feed = LiveFeed(wanted, self.sessions)
        self.feed.start()
        self.worker = CalibrationWorker(self.rig, self.sessions)
        self.thread_ = on_own_thread(self.worker, "rig")
        self.ask.connect(self.worker.call)
        self.worker.done.connect(self._done)
        self.worker.failed.connect(self._failed)
        self.preview_timer = QTimer(self)
        self.preview_timer.timeout.connect(lambda: self.previews.refresh(self.feed.status_snapshot()))
        self.preview_timer.start(PREVIEW_INTERVAL_MS)
        self.ask.emit("start_rig", {})
        self.job = CalibrateJob()
        self.job_thread = on_own_thread(self.job, "calibrate")
        self.run_job.connect(self.job.run)
        self.job.progress.connect(self._progress)
        self.job.done.connect(self._calibrated)
        self.job.failed.connect(self._calibration_failed)

    def _done(self, name: str, result: Any) -> None:
        getattr(self, f"_done_{name}", lambda _r: None)(result)

    def _failed(self, name: str, text: str) -> None:
        self.progress.setVisible(False)
        if name == "shutdown":
            self._finish_close()
            return
        if name in ("start_capture", "stop_take"):  # back to the first page, ready to start again
            self.capturing = False
            self.calibrate_button.setEnabled(True)
            self.pages.setCurrentIndex(0)
            self._update_start()
        if name == "accept":
            self.accept_button.setEnabled(True)
        self.message(f"{name.replace('_', ' ').capitalize()} failed", text)

    def _progress(self, fraction: float, text: str) -> None:
        self.progress.setValue(int(fraction * 100))
        self.progress.setFormat(f"%p %  {text}")

    def _calibration_failed(self, text: str) -> None:
        self.progress.setVisible(False)
        self.calibrate_button.setEnabled(True)
        self.pages.setCurrentIndex(0)  # the take is kept; the operator starts capturing again when ready
        self._update_start()
        self.message("The calibration failed", f"{text}\n\nThe calibration take is kept: {self.take}")

    def _done_start_rig(self, result: dict) -> None:
        missing = result.get("missing", [])
        problems = result.get("camera_problems", [])
        text = f"The rig is up: {len(self.cameras)} cameras."
        if missing:
            text += f" Not connected yet: {', '.join(missing)}."
        self.rig_status.setText(text + (" " + " ".join(problems) if problems else ""))
        self.rig_up = True
        self._update_start()

    def _update_start(self) -> None:
        chosen = self.selected()
        self.start_button.setEnabled(self.rig_up and len(chosen) >= 1)
        self.start_button.setText(f"Start capturing with {len(chosen)} camera{'s' if len(chosen) != 1 else ''}")

    def selected(self) -> list[str]:
        return [c for c, box in self.camera_boxes.items() if box.isChecked()]

    # -- capturing --------------------------------------------------------------------------------------
    def start_capture(self) -> None:
        self.start_button.setEnabled(False)
        self.ask.emit("start_capture", {"subject": self.subject})

    def _done_start_capture(self, result: dict) -> None:
        self.take = result["path"]
        self.take_started = float(result["started_lsl"])
        chosen = self.selected()
        for c in self.cameras:
            self.coverage[c].reset()
        self.pairs.reset()
        self.tracker = CaptureTracker(chosen)
        self.previews.active = set(chosen)
        for c, tile in self.previews.tiles.items():
            tile.setEnabled(c in chosen)
        self.capturing = True
        self.captures = self.floors = 0
        self.pages.setCurrentIndex(1)
        self.statusBar().showMessage(f"Recording the calibration take {Path(self.take).name}")

    def _detected(self, camera: str, det: Detection, stamp: float) -> None:
        tile = self.previews.tiles[camera]
        tile.points = det.corners if det.usable else None
        if not self.capturing or self.tracker is None:
            return
        now = time.monotonic()
        self.tracker.update(camera, det, stamp, now)
        state = "still" if self.tracker.still(camera, now) else "moving" if det.usable else "no board"
        self.previews.notes[camera] = f"{len(det.ids)} corners, {state}" if det.usable else "no board"
        if self.auto.isChecked() and self.tracker.due(now):
            self.capture(floor=False)

    def capture(self, floor: bool) -> None:
        if not self.capturing or self.tracker is None:
            return
        stamp, dets = self.tracker.capture(time.monotonic())
        if not dets:
            # pressed by hand while the previews find no board (the floor board is seen at 60-70 degrees,
            # too slanted for a preview): the newest frames' moment, detected at full size later
            stamps = [self.previews.stamps[c] for c in self.tracker.cameras if c in self.previews.stamps]
            stamp = float(np.median(stamps)) if stamps else 0.0
        if stamp < self.take_started:  # frames from before the take are not in it
            self.statusBar().showMessage("Nothing captured: no frame of this take yet")
            return
        self.ask.emit("mark", {"text": FLOOR_MARK if floor else VIEW_MARK, "stamp": stamp})
        if not dets:
            self.statusBar().showMessage(f"{'Floor' if floor else 'View'} captured; no preview shows the board: "
                                         "the full frames will be searched for it", 8000)
        for c, d in dets.items():
            self.coverage[c].add(d.corners, self.previews.sizes.get(c, (640, 360)))
        self.pairs.add(list(dets))
        if floor:
            self.floors += 1
        else:
            self.captures += 1
        self.count_label.setText(f"{self.captures} views captured" + (f", floor {self.floors}x" if self.floors else "")
                                 + f" (the last one by {', '.join(dets)})")

    def calibrate(self) -> None:
        if not self.capturing:
            return
        self.capturing = False
        self.calibrate_button.setEnabled(False)
        self.progress.setVisible(True)
        self.progress.setValue(0)
        self.progress.setFormat("stopping the take")
        self.ask.emit("stop_take", {})

    def _done_stop_take(self, result: dict) -> None:
        self.run_job.emit(result["path"], self.tracker.cameras, self.spec.model_dump_json())

    def _calibrated(self, cal: Calibration) -> None:
        self.progress.setVisible(False)
        self.calibrate_button.setEnabled(True)
        self.result = cal
        self.show_result(cal)
        self.pages.setCurrentIndex(2)
        self.statusBar().clearMessage()

    def show_result(self, cal: Calibration) -> None:
        self.table.setRowCount(len(cal.requested))
        for r, c in enumerate(cal.requested):
            cc = cal.cameras.get(c)
            cells = [c] + (["not calibrated"] + [""] * 6 if cc is None else
                           [f"{cc.reprojection_rms:.3f}", str(cc.views), str(cc.corners), f"{cc.K[0, 0]:.1f}",
                            *(f"{v:.0f}" for v in cc.center)])
            for k, text in enumerate(cells):
                self.table.setItem(r, k, QTableWidgetItem(text))
        self.table.resizeColumnsToContents()
        self.table.setFixedHeight(self.table.horizontalHeader().height() + sum(
            self.table.rowHeight(r) for r in range(self.table.rowCount())) + 2 * self.table.frameWidth())
        tri = cal.triangulation
        check = (f"Check: {int(tri['points'])} corners of {int(tri['views'])} views kept out of the adjustment, "
                 f"triangulated: {tri['rms_mm']:.2f} mm rms from the board's true shape."
                 if tri.get("points") else "Check: no held-out view was seen by two cameras (capture more views).")
        self.check_label.setText(f"World frame: {cal.world}.\n{check}")
        lines = [f"<p style='color:{'#b71c1c' if a.level == 'error' else '#e65100'}'>{a.line()}</p>"
                 for a in cal.advice]
        verdict = ("<p style='color:#1b5e20'><b>Good: every camera is calibrated. Accept saves it for the "
                   "session and its takes.</b></p>" if cal.ok else
                   "<p style='color:#b71c1c'><b>Not usable yet: fix what is listed, then capture again.</b></p>")
        self.advice_label.setText(verdict + "".join(lines))
        self.accept_button.setEnabled(cal.ok)
        self.poses.show_calibration(cal)

    def accept(self) -> None:
        if self.result is None or not self.result.ok or self.take is None:
            return
        self.accept_button.setEnabled(False)
        self.ask.emit("accept", {"calibration": self.result, "session_dir": str(Path(self.take).parent)})

    def _done_accept(self, text: str) -> None:
        self.saved_label.setText(text)
        self.statusBar().showMessage("Calibration saved")

    def capture_again(self) -> None:
        self.pages.setCurrentIndex(0)
        self.start_capture()

    # -- messages and closing ---------------------------------------------------------------------------
    def message(self, title: str, text: str) -> None:
        box = QMessageBox(QMessageBox.Icon.Warning, title, text, QMessageBox.StandardButton.Ok, self)
        box.setModal(False)
        self.dialogs.append(box)
        box.show()

    def closeEvent(self, event: QCloseEvent) -> None:  # noqa: N802 - Qt's name
        if self.closing or self.worker is None:
            self._finish_close()
            event.accept()
            return
        event.ignore()
        self.capturing = False
        if self.feed is not None:
            self.feed.stop()
        self.setEnabled(False)
        self.statusBar().showMessage("Stopping the rig...")
        self.ask.emit("shutdown", {})

    def _done_shutdown(self, _result: Any) -> None:
        self._finish_close()
        self.close()

    def _finish_close(self) -> None:
        self.closing = True
        if getattr(self, "preview_timer", None) is not None:
            self.preview_timer.stop()
        if self.feed is not None:
            self.feed.stop()
        if self.job_thread is not None:
            self.job.cancel()  # a calibration under way stops at its next step (a few seconds at most)
        for t in (self.thread_, self.detector_thread, self.job_thread):
            if t is not None:
                t.quit()
                t.wait(60000)


def _heading(text: str) -> QLabel:
    label = QLabel(text)
    font = label.font()
    font.setPointSize(font.pointSize() + 4)
    font.setBold(True)
    label.setFont(font)
    return label
