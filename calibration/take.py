"""Calibration views from a recorded calibration take: the moments the board was held still, found in
every camera's frames (or the moments the wizard captured, from the take's events), detected at full
resolution, matched across cameras on the take's aligned times (/sync) when it has them.

Marks in the take's /markers/events (the wizard writes them; an operator can add them with Note):
"calibration view" captures a view at that time, "floor" says the board lies on the floor (the view
that sets the world frame).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

import cv2
import h5py
import numpy as np

from acquisition.takefile import find_take_file, stream_strings
from calibration.board import BoardSpec
from calibration.detect import BoardDetector, Detection, diagnose, full_pixels
from calibration.result import Advice, Calibration
from calibration.solve import View, calibrate
from drivers.camera.framestore import FrameFile

VIEW_MARK = "calibration view"
FLOOR_MARK = "floor"
SCAN_HZ = 3.0  # how often each camera's frames are scanned for a still board
SCAN_WIDTH = 900  # ...at no less than this width
STILL_PX = 0.6  # corners that moved less than this (full-size pixels) between two scans: the board is still
MIN_STILL_S = 0.35  # a still run must last this long to be a view
MERGE_S = 0.5  # still runs of several cameras that overlap (or come this close) are one moment

Progress = Callable[[float, str], None]


class TakeError(ValueError):
    """A take that cannot be calibrated from; the message says why and what to do."""


@dataclass
class _Camera:
    camera_id: str
    path: Path
    times: np.ndarray  # per frame: aligned (or recorded) host time
    size: tuple[int, int]
    stamps: np.ndarray  # per frame: as recorded (the clock of the wizard's marks: its previews' frame stamps)


def take_cameras(take: Path) -> tuple[dict[str, _Camera], list[tuple[float, str]], str]:
    """The take's cameras (with per-frame times), its events and where the times come from."""
    take_h5 = find_take_file(take)
    folder = take_h5.parent
    cams: dict[str, _Camera] = {}
    aligned = 0
    with h5py.File(take_h5, "r") as f:
        events = []
        if "markers/events" in f:
            g = f["markers/events"]
            events = [(float(t), row[0]) for t, row in zip(g["time_stamps"][()], stream_strings(g), strict=False)]
        for cid in f.get("cameras", {}):
            path = folder / f"{cid}.h5"
            if not path.exists():
                continue
            with FrameFile(path) as ff:
                times = stamps = ff.time_stamps.astype(np.float64)
                index = ff.frame_index
                size = (int(ff.attrs["width"]), int(ff.attrs["height"]))
            if f"sync/{cid}/time_stamps" in f and f"streams/{cid}" in f:
                idx = f[f"streams/{cid}/time_series"][:, 0].astype(np.float64)
                corrected = f[f"sync/{cid}/time_stamps"][()]
                if len(idx) == len(corrected) and len(idx) >= 2:
                    times = np.interp(index.astype(np.float64), idx, corrected)
                    aligned += 1
            cams[cid] = _Camera(cid, path, times, size, stamps)
    source = ("the take's /sync times" if aligned == len(cams) and cams else
              "the recorded frame times (the take has no /sync for every camera)")
    return cams, events, source


def calibrate_take(take: Path, spec: BoardSpec, cameras: list[str] | None = None,
                   progress: Progress | None = None) -> Calibration:
    """Calibrate from a take: its views, the adjustment, and for a camera that found no board in any
    view, why (a board that does not match the definition). Raises TakeError for a take without frames."""
    say = progress or (lambda _f, _t: None)
    cams, events, source = take_cameras(Path(take))
    sizes, views, how = _views(take, cams, events, source, spec, cameras, lambda f, t: say(0.5 * f, t))
    cal = calibrate(spec, sizes, views, progress=lambda f, t: say(0.5 + 0.5 * f, t))
    cal.source = f"take {take}: {how}"
    found = []
    for c in sizes:
        if len(cams[c].times) < 2:
            found.append(Advice("error", c, f"{c}: {len(cams[c].times)} frames in this take: was it connected?"))
        elif not any(c in v.detections for v in views):
            reason = _diagnose_camera(cams[c], spec)
            if reason:
                found.append(Advice("error", c, f"{c}: no board found in its frames: {reason}"))
    cal.advice[:0] = found  # first: they explain the errors that follow from them
    return cal


def _views(take: Path, cams: dict[str, _Camera], events: list[tuple[float, str]], source: str, spec: BoardSpec,
           cameras: list[str] | None, say: Progress) -> tuple[dict[str, tuple[int, int]], list[View], str]:
    if not cams:
        raise TakeError(f"{take}: the take has no camera frame files")
    wanted = cameras or list(cams)
    missing = [c for c in wanted if c not in cams]
    if missing:
        raise TakeError(f"{take}: no frames of {', '.join(missing)} in this take (it has {', '.join(cams)})")
    detector = BoardDetector(spec)
    marks = [t for t, text in events if text == VIEW_MARK]
    floors = [t for t, text in events if text == FLOOR_MARK]
    if marks:  # the wizard's captures: times of the frames its previews showed, on the recorded stamps
        moments = sorted(marks + floors)
        clock = {c: cams[c].stamps for c in wanted}
        how = f"{len(marks)} captured views and {len(floors)} floor marks from the take's events"
    else:
        runs = {}
        for n, c in enumerate(wanted):
            say(0.5 * n / len(wanted), f"looking for a still board in {c}")
            runs[c] = _still_runs(cams[c], detector)
        moments = _merge_runs(runs)
        clock = {c: cams[c].times for c in wanted}
        how = f"{len(moments)} moments with the board held still, on {source}"
    t0 = min((float(cams[c].times[0]) for c in wanted if len(cams[c].times)), default=0.0)
    views = []
    with ExitStack() as files:
        frames = {c: files.enter_context(FrameFile(cams[c].path)) for c in wanted}
        for n, t in enumerate(moments):
            say(0.5 + 0.5 * n / max(len(moments), 1), f"detecting the board at {len(moments)} moments")
            dets: dict[str, Detection] = {}
            for c in wanted:
                if not len(clock[c]):
                    continue
                k = int(np.argmin(np.abs(clock[c] - t)))
                if abs(clock[c][k] - t) > 0.5 / SCAN_HZ:
                    continue
                img = _decode(frames[c], k, cv2.IMREAD_GRAYSCALE)
                d = detector.detect(img) if img is not None else Detection.empty()
                if d.usable:
                    dets[c] = d
            floor = any(abs(t - ft) < 0.6 for ft in floors)
            views.append(View(f"{t - t0:.2f} s", dets, floor=floor))
    return {c: cams[c].size for c in wanted}, views, how


def _decode(ff: FrameFile, k: int, flag: int) -> np.ndarray | None:
    """Frame k decoded (None when its JPEG does not decode)."""
    return cv2.imdecode(np.frombuffer(ff.frame(k), np.uint8), flag)


def _diagnose_camera(cam: _Camera, spec: BoardSpec, samples: int = 24) -> str | None:
    """Why a camera found no board: a look at frames across the take with other board definitions (enough of
    them that some show the board: 8 missed it in one camera in CI, where the board faced the others)."""
    with FrameFile(cam.path) as ff:
        for k in np.linspace(0, len(ff) - 1, samples).astype(int) if len(ff) else []:
            img = _decode(ff, int(k), cv2.IMREAD_GRAYSCALE)
            reason = diagnose(img, spec) if img is not None else None
            if reason:
                return reason
    return None


def _still_runs(cam: _Camera, detector: BoardDetector) -> list[tuple[float, float]]:
    """Time spans in which this camera saw the board still (scanned at SCAN_HZ, reduced size)."""
    if len(cam.times) < 2:
        return []
    step = max(1, int(round(1.0 / SCAN_HZ / max(float(np.median(np.diff(cam.times))), 1e-3))))
    flag, scale = _reduced(cam.size[0])
    runs: list[tuple[float, float]] = []
    prev: Detection | None = None
    start = None
    with FrameFile(cam.path) as ff:
        for k in range(0, len(ff), step):
            img = _decode(ff, k, flag)
            d = detector.detect(img) if img is not None else Detection.empty()
            d.corners = full_pixels(d.corners, scale)
            still = prev is not None and d.usable and prev.max_shift(d) < STILL_PX
            t = float(cam.times[k])
            if still and start is None:
                start = float(cam.times[max(k - step, 0)])
            if not still and start is not None:
                runs.append((start, float(cam.times[k - step])))
                start = None
            prev = d if d.usable else None
        if start is not None:
            runs.append((start, t))
    return [r for r in runs if r[1] - r[0] >= MIN_STILL_S]


def _reduced(width: int) -> tuple[int, float]:
    for factor, flag in ((4, cv2.IMREAD_REDUCED_GRAYSCALE_4), (2, cv2.IMREAD_REDUCED_GRAYSCALE_2)):
        if width // factor >= SCAN_WIDTH:
            return flag, float(factor)
    return cv2.IMREAD_GRAYSCALE, 1.0


def _merge_runs(runs: dict[str, list[tuple[float, float]]]) -> list[float]:
    """One moment per group of overlapping still runs (of any cameras): the middle of their common
    part when they have one, else of the longest run."""
    spans = sorted((a, b) for rs in runs.values() for a, b in rs)
    moments = []
    group: list[tuple[float, float]] = []
    for span in spans:
        if group and span[0] > max(b for _, b in group) + MERGE_S:
            moments.append(_middle(group))
            group = []
        group.append(span)
    if group:
        moments.append(_middle(group))
    return moments


def _middle(group: list[tuple[float, float]]) -> float:
    lo, hi = max(a for a, _ in group), min(b for _, b in group)
    if lo <= hi:
        return (lo + hi) / 2
    a, b = max(group, key=lambda s: s[1] - s[0])
    return (a + b) / 2


def board_of_rig(rig_json: str | None) -> BoardSpec | None:
    """The board a take's rig names in its [calibration] table (None: the default board)."""
    if not rig_json:
        return None
    board = json.loads(rig_json).get("calibration", {}).get("board")
    return BoardSpec.model_validate(board) if board else None
