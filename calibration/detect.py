"""Finding the board in an image (OpenCV 5's CharucoDetector), and saying why it was not found when
markers are there: another dictionary, the legacy pattern, or a board with more squares."""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from calibration.board import BoardSpec

MIN_CORNERS = 6  # fewer corners than this in a view tell too little about the board's pose
# dictionaries a lab's board is likely printed from (checked when the configured one finds nothing)
COMMON_DICTIONARIES = ("DICT_4X4_50", "DICT_4X4_100", "DICT_5X5_100", "DICT_5X5_250", "DICT_6X6_250",
                       "DICT_7X7_250", "DICT_ARUCO_ORIGINAL")


@dataclass
class Detection:
    """The ChArUco corners found in one image: ids into BoardSpec.object_points() and pixel positions."""

    ids: np.ndarray  # (N,) int
    corners: np.ndarray  # (N, 2) float64, full-resolution pixels
    markers: int = 0  # markers found (corners are interpolated between them)

    @property
    def usable(self) -> bool:
        return len(self.ids) >= MIN_CORNERS

    def max_shift(self, other: Detection) -> float:
        """The largest move (pixels) of a corner both detections found (inf with fewer than 4 in common)."""
        return _shift(self, other, np.max)

    def mean_shift(self, other: Detection) -> float:
        return _shift(self, other, np.mean)

    @staticmethod
    def empty(markers: int = 0) -> Detection:
        return Detection(np.zeros(0, dtype=np.int64), np.zeros((0, 2)), markers)


class BoardDetector:
    """One board's detector. `detect(image, scale)` runs at a reduced size when scale < 1 (live previews:
    a full 1080p detection costs ~48 ms) and returns corners in the image's own pixels."""

    def __init__(self, spec: BoardSpec) -> None:
        self.spec = spec
        self.board = spec.cv_board()
        self.detector = cv2.aruco.CharucoDetector(self.board)  # it refines the corners itself (sub-pixel)

    def detect(self, image: np.ndarray, scale: float = 1.0) -> Detection:
        gray = image if image.ndim == 2 else cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
        if scale < 1.0:
            gray = cv2.resize(gray, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
        corners, ids, _marker_corners, marker_ids = self.detector.detectBoard(gray)
        markers = 0 if marker_ids is None else len(marker_ids)
        if ids is None or len(ids) == 0:
            return Detection.empty(markers)
        if len(ids) >= 3 and self.board.checkCharucoCornersCollinear(ids):
            return Detection.empty(markers)  # corners on one line (a row at the image's edge) fix no pose
        return Detection(ids.reshape(-1).astype(np.int64), full_pixels(corners.reshape(-1, 2), 1.0 / scale), markers)


def full_pixels(px: np.ndarray, factor: float) -> np.ndarray:
    """Pixel positions found in an image reduced by `factor`, in the full image (pixel centres kept:
    x_full = (x + 0.5) * factor - 0.5)."""
    px = np.asarray(px, dtype=np.float64)
    return px if factor == 1.0 else (px + 0.5) * factor - 0.5


def _shift(a: Detection, b: Detection, reduce) -> float:  # noqa: ANN001 - np.max or np.mean
    common, ia, ib = np.intersect1d(a.ids, b.ids, return_indices=True)
    if len(common) < 4:
        return float("inf")
    return float(reduce(np.linalg.norm(a.corners[ia] - b.corners[ib], axis=1)))


def diagnose(image: np.ndarray, spec: BoardSpec) -> str | None:
    """Why the configured board finds no corners in an image that shows a board (None: no board seen).
    It is slow (a detection per dictionary): for the advice after a failed calibration, not per frame."""
    gray = image if image.ndim == 2 else cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
    mine = cv2.aruco.ArucoDetector(cv2.aruco.getPredefinedDictionary(getattr(cv2.aruco, spec.dictionary)))
    _, ids, _ = mine.detectMarkers(gray)
    if ids is not None and len(ids) >= 4:
        beyond = sorted(int(i) for i in ids.ravel() if i >= spec.marker_count)
        if beyond:
            return (f"markers {beyond[:5]} are not on a {spec.squares_x}x{spec.squares_y} board (ids 0-"
                    f"{spec.marker_count - 1}): the printed board has more squares than configured")
        other = spec.model_copy(update={"legacy_pattern": not spec.legacy_pattern})
        if len(BoardDetector(other).detect(gray).ids) > len(BoardDetector(spec).detect(gray).ids):
            return (f"the board's corners fit the {'legacy' if other.legacy_pattern else 'current'} pattern: "
                    f"set legacy_pattern = {str(other.legacy_pattern).lower()}")
        return None
    for name in COMMON_DICTIONARIES:
        if name == spec.dictionary:
            continue
        det = cv2.aruco.ArucoDetector(cv2.aruco.getPredefinedDictionary(getattr(cv2.aruco, name)))
        _, found, _ = det.detectMarkers(gray)
        if found is not None and len(found) >= 4:
            return f"its markers are from {name}, the board is configured with {spec.dictionary}"
    return None
