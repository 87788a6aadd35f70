"""Live board detection for the wizard's previews, and the rule for auto-capture.

Detection runs on its own thread, on the cameras' preview images (640 pixels wide), at most
DETECT_HZ per camera, and a camera's next image waits only while its previous one is detected: the
GUI never waits and never queues work. The capture rule (CaptureTracker) is plain Python so that it
can be tested without images."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field

import numpy as np
from PyQt6.QtCore import QObject, pyqtSignal, pyqtSlot

from calibration.board import BoardSpec
from calibration.detect import BoardDetector, Detection

DETECT_HZ = 4.0
STILL_PX = 1.0  # corners moving less than this (preview pixels) between two detections: held still
STILL_FOR_S = 0.5  # ...for this long before a view is captured
SEEN_WITHIN_S = 0.6  # a detection older than this no longer counts as "in view"
MIN_CAPTURE_GAP_S = 1.0
NEW_POSE_PX = 15.0  # a capture needs the board this far (mean corner, preview pixels) from the last one


@dataclass
class CameraState:
    detection: Detection | None = None
    seen_at: float = 0.0
    still_since: float | None = None
    frame_stamp: float = 0.0  # the frame's own time stamp (host LSL clock, as the take records it)


@dataclass
class CaptureTracker:
    """Which cameras see the board and hold it still; when to capture a view."""

    cameras: list[str]
    states: dict[str, CameraState] = field(default_factory=dict)
    last_capture: float = -1e9
    last_corners: dict[str, np.ndarray] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.states = {c: CameraState() for c in self.cameras}

    def update(self, camera: str, det: Detection, frame_stamp: float, now: float) -> None:
        s = self.states[camera]
        if not det.usable:
            s.detection, s.still_since = None, None
            return
        moved = s.detection.max_shift(det) if s.detection is not None and now - s.seen_at < SEEN_WITHIN_S else np.inf
        if moved >= STILL_PX:
            s.still_since = None
        elif s.still_since is None:
            s.still_since = s.seen_at  # still since the previous detection
        s.detection, s.seen_at, s.frame_stamp = det, now, frame_stamp

    def seeing(self, now: float) -> list[str]:
        return [c for c, s in self.states.items() if s.detection is not None and now - s.seen_at < SEEN_WITHIN_S]

    def still(self, camera: str, now: float) -> bool:
        s = self.states[camera]
        return s.still_since is not None and now - s.still_since >= STILL_FOR_S

    def due(self, now: float) -> bool:
        """Capture now: every camera that sees the board holds it still, and it is a new pose."""
        seeing = self.seeing(now)
        if not seeing or now - self.last_capture < MIN_CAPTURE_GAP_S:
            return False
        if not all(self.still(c, now) for c in seeing):
            return False
        common = [c for c in seeing if c in self.last_corners]
        if not common:  # other cameras than at the last capture: a new place
            return True
        # a new pose: the board moved in a camera that saw it at the last capture too (a camera joining or
        # leaving at the edge of its view is no new pose)
        return any(self.last_corners[c].mean_shift(self.states[c].detection) > NEW_POSE_PX for c in common)

    def capture(self, now: float) -> tuple[float, dict[str, Detection]]:
        """(the moment on the frames' clock, the cameras' detections) of a view captured now."""
        seeing = self.seeing(now)
        self.last_capture = now
        self.last_corners = {c: self.states[c].detection for c in seeing}
        stamps = [self.states[c].frame_stamp for c in seeing]
        return (float(np.median(stamps)) if stamps else 0.0), dict(self.last_corners)


class LiveDetector(QObject):
    """Detects the board in preview images on its own thread; `offer()` is called on the GUI thread."""

    detected = pyqtSignal(str, object, float)  # camera, Detection, frame stamp
    _work = pyqtSignal(str, object, float)

    def __init__(self, spec: BoardSpec) -> None:
        super().__init__()
        self.detector = BoardDetector(spec)
        self._busy: set[str] = set()
        self._last: dict[str, float] = {}
        self._lock = threading.Lock()
        self._work.connect(self._detect)

    def offer(self, camera: str, image: np.ndarray, stamp: float) -> bool:
        """Hand over a preview image; False when it is skipped (rate limit, or the last one is still
        being detected)."""
        now = time.monotonic()
        with self._lock:
            if camera in self._busy or now - self._last.get(camera, 0.0) < 1.0 / DETECT_HZ:
                return False
            self._busy.add(camera)
            self._last[camera] = now
        self._work.emit(camera, image, stamp)
        return True

    @pyqtSlot(str, object, float)
    def _detect(self, camera: str, image: np.ndarray, stamp: float) -> None:
        try:
            det = self.detector.detect(image)
        except Exception:  # a damaged image: nothing found in it
            det = Detection.empty()
        with self._lock:
            self._busy.discard(camera)
        self.detected.emit(camera, det, stamp)
