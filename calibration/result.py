"""A calibration and where it goes: the session's calibration.h5, every take's /calibration group
(the same layout, written by one function), and an anipose-style calibration.toml.

Units: millimetres; x_cam = R @ x_world + t (OpenCV camera axes); the world frame is the board laid on
the floor (origin at its centre, x along its long edge, z up), when a floor view was given."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from calibration.board import BoardSpec
from calibration.geometry import rotvec, scale_intrinsics

FORMAT = "flexcap.calibration"
FORMAT_VERSION = 1
CALIBRATION_FILE = "calibration.h5"
TOML_FILE = "calibration.toml"


@dataclass
class Advice:
    """Something a person must know about a calibration: an error makes it unusable (it cannot be
    accepted), a warning is worth fixing. `camera` names the camera it is about (None: all)."""

    level: str  # "error" | "warning"
    camera: str | None
    text: str

    def line(self) -> str:
        return f"{self.level}: {self.text}"


@dataclass
class CameraCalibration:
    camera_id: str
    image_size: tuple[int, int]  # (width, height)
    K: np.ndarray
    dist: np.ndarray  # k1, k2, p1, p2, k3
    R: np.ndarray  # world -> camera
    t: np.ndarray  # mm
    reprojection_rms: float  # px, over the corners the adjustment kept
    views: int = 0
    corners: int = 0

    @property
    def center(self) -> np.ndarray:
        return -self.R.T @ self.t


@dataclass
class Calibration:
    board: BoardSpec
    cameras: dict[str, CameraCalibration]
    requested: list[str]
    world: str  # how the world frame was set
    view_errors: list[dict[str, Any]] = field(default_factory=list)  # {view, camera, rms_px, corners}
    shared_views: dict[str, int] = field(default_factory=dict)  # "camA-camB" -> views both saw
    triangulation: dict[str, float] = field(default_factory=dict)  # rms_mm, p95_mm, points, views
    advice: list[Advice] = field(default_factory=list)
    held_out: list[dict[str, Any]] = field(default_factory=list)  # triangulated held-out corners (world, mm)
    stats: dict[str, Any] = field(default_factory=dict)  # views used, corners rejected, iterations, seconds
    source: str = ""
    created_at: str = field(default_factory=lambda: datetime.now(UTC).isoformat(timespec="seconds"))

    @property
    def errors(self) -> list[Advice]:
        return [a for a in self.advice if a.level == "error"]

    @property
    def ok(self) -> bool:
        """Usable: every requested camera calibrated and nothing that makes it wrong."""
        return not self.errors and set(self.requested) <= set(self.cameras)

    def summary(self) -> str:
        rms = ", ".join(f"{c} {cc.reprojection_rms:.2f} px" for c, cc in self.cameras.items())
        tri = self.triangulation
        check = f"; held-out corners triangulated to {tri['rms_mm']:.2f} mm rms" if tri.get("points") else ""
        return f"{len(self.cameras)} of {len(self.requested)} cameras: {rms}{check}"

    def report(self) -> str:
        """What a person reads: per camera, per pair, the check, and the advice."""
        lines = [f"calibration of {', '.join(self.requested)} ({self.board.describe()})",
                 f"world frame: {self.world}", ""]
        lines.append(f"{'camera':10}{'rms px':>8}{'views':>7}{'corners':>9}{'fx':>9}{'fy':>9}"
                     f"{'x mm':>9}{'y mm':>9}{'z mm':>9}")
        for c in self.requested:
            cc = self.cameras.get(c)
            if cc is None:
                lines.append(f"{c:10}{'not calibrated':>30}")
                continue
            x, y, z = cc.center
            lines.append(f"{c:10}{cc.reprojection_rms:8.3f}{cc.views:7d}{cc.corners:9d}{cc.K[0, 0]:9.1f}"
                         f"{cc.K[1, 1]:9.1f}{x:9.1f}{y:9.1f}{z:9.1f}")
        if self.shared_views:
            lines += ["", "views shared by pairs: " + ", ".join(f"{p} {n}" for p, n in self.shared_views.items())]
        tri = self.triangulation
        if tri.get("points"):
            lines.append(f"triangulation check: {int(tri['points'])} held-out corners in {int(tri['views'])} views, "
                         f"{tri['rms_mm']:.3f} mm rms, {tri['p95_mm']:.3f} mm p95 from the board's true shape")
        if self.stats:
            lines.append("adjustment: " + ", ".join(f"{k} {v}" for k, v in self.stats.items()))
        if self.advice:
            lines += [""] + [a.line() for a in self.advice]
        return "\n".join(lines)


# --- HDF5 ----------------------------------------------------------------------------------------


CAMERA_DATASETS = {"K": (3, 3), "dist": (5,), "R": (3, 3), "t": (3,), "image_size": (2,)}  # name: shape


def write_camera_groups(group: h5py.Group, cal: Calibration,
                        frame_sizes: dict[str, tuple[int, int]] | None = None) -> list[str]:
    """/calibration/<camera_id>/ K, dist, R, t, image_size (+ reprojection_rms): the layout of
    calibration.h5 and of every take's /calibration (DESIGN.md). With `frame_sizes` (a take's cameras),
    a camera recorded at another size of the same shape gets its camera matrix scaled to it; one
    recorded at another shape is left out. Returns what was left out, for people."""
    group.attrs["format"] = FORMAT
    group.attrs["format_version"] = FORMAT_VERSION
    group.attrs["units"] = "mm"
    group.attrs["world"] = cal.world
    group.attrs["board"] = cal.board.model_dump_json()
    group.attrs["created_at"] = cal.created_at
    group.attrs["source"] = cal.source
    group.attrs["summary"] = cal.summary()
    left_out = []
    for cid, cc in cal.cameras.items():
        K, size = cc.K, tuple(cc.image_size)
        frame = (frame_sizes or {}).get(cid, size)
        if frame != size:
            if abs(frame[0] / frame[1] - size[0] / size[1]) > 1e-3:
                left_out.append(f"{cid}: calibrated at {size[0]}x{size[1]}, recorded at {frame[0]}x{frame[1]} "
                                "(another shape: calibrate this camera at the size it records)")
                continue
            K, size = scale_intrinsics(cc.K, size, frame), frame
        g = group.create_group(cid)
        g["K"] = K
        g["dist"] = cc.dist
        g["R"] = cc.R
        g["t"] = cc.t
        g["image_size"] = np.array(size, dtype=np.int64)
        g.attrs["reprojection_rms"] = cc.reprojection_rms
        g.attrs["views"] = cc.views
        g.attrs["corners"] = cc.corners
        if size != tuple(cc.image_size):
            g.attrs["calibrated_at"] = np.array(cc.image_size, dtype=np.int64)
    return left_out


def save(cal: Calibration, path: Path) -> Path:
    """Write calibration.h5. The new file is complete before anything is renamed; an existing one is kept
    as calibration-<its time>[-N].h5."""
    path = Path(path)
    tmp = path.with_suffix(".h5.part")
    with h5py.File(tmp, "w") as f:
        write_camera_groups(f, cal)
        f.attrs["requested"] = json.dumps(cal.requested)
        f.attrs["shared_views"] = json.dumps(cal.shared_views)
        f.attrs["triangulation"] = json.dumps(cal.triangulation)
        f.attrs["stats"] = json.dumps(cal.stats)
        f.attrs["advice"] = json.dumps([a.__dict__ for a in cal.advice])
        f.attrs["report"] = cal.report()
        if cal.view_errors:
            f.attrs["view_errors"] = json.dumps(cal.view_errors)
    if path.exists():
        stamp = datetime.fromtimestamp(path.stat().st_mtime, UTC).strftime("%Y%m%dT%H%M%S")
        kept = path.with_name(f"{path.stem}-{stamp}{path.suffix}")
        n = 1
        while kept.exists():
            n += 1
            kept = path.with_name(f"{path.stem}-{stamp}-{n}{path.suffix}")
        path.rename(kept)
    tmp.replace(path)
    return path


def load(path: Path) -> Calibration:
    """Read calibration.h5 (or a take.h5's /calibration)."""
    path = Path(path)
    with h5py.File(path, "r") as f:
        g = f if f.attrs.get("format") == FORMAT else f.get("calibration")
        if g is None or g.attrs.get("format") != FORMAT:
            raise ValueError(f"{path}: no flexcap calibration in it")
        if int(g.attrs["format_version"]) > FORMAT_VERSION:
            raise ValueError(f"{path}: calibration format {g.attrs['format_version']} is newer than this flexcap")
        cams = {cid: CameraCalibration(cid, tuple(int(v) for v in c["image_size"][()]), c["K"][()], c["dist"][()],
                                       c["R"][()], c["t"][()], float(c.attrs["reprojection_rms"]),
                                       int(c.attrs.get("views", 0)), int(c.attrs.get("corners", 0)))
                for cid, c in g.items() if isinstance(c, h5py.Group)}
        attrs = dict(g.attrs)
    return Calibration(
        board=BoardSpec.model_validate_json(attrs["board"]), cameras=cams,
        requested=json.loads(attrs.get("requested", json.dumps(sorted(cams)))), world=str(attrs["world"]),
        view_errors=json.loads(attrs.get("view_errors", "[]")),
        shared_views=json.loads(attrs.get("shared_views", "{}")),
        triangulation=json.loads(attrs.get("triangulation", "{}")),
        advice=[Advice(**a) for a in json.loads(attrs.get("advice", "[]"))],
        stats=json.loads(attrs.get("stats", "{}")),
        source=str(attrs.get("source", "")), created_at=str(attrs.get("created_at", "")))


def copy_into_take(cal_path: Path, take_h5: Path) -> list[str] | None:
    """Give a finished take the session's calibration as /calibration, scaled to the sizes its cameras
    recorded at. None when it was not written: the take has one already (a take's calibration is never
    replaced) or is still being recorded; else what was left out (cameras of another shape)."""
    cal = load(cal_path)
    take_h5 = Path(take_h5)
    with h5py.File(take_h5, "r") as f:
        if "calibration" in f or "stopped_lsl" not in f.attrs:
            return None
        sizes = {}
        for cid in f.get("cameras", {}):
            frames = take_h5.parent / f"{cid}.h5"
            if frames.exists():
                with h5py.File(frames, "r") as cf:
                    sizes[cid] = (int(cf.attrs["width"]), int(cf.attrs["height"]))
    with h5py.File(take_h5, "r+") as f:
        return write_camera_groups(f.create_group("calibration"), cal, sizes)


def calibration_in_force(session_dir: Path) -> Path | None:
    """The calibration for a session's takes: its own calibration.h5, else the newest one accepted in
    another session of the same sessions folder (a lab calibrates once, then records its subjects)."""
    own = Path(session_dir) / CALIBRATION_FILE
    if own.exists():
        return own
    others = [p for p in Path(session_dir).parent.glob(f"*/{CALIBRATION_FILE}") if p.is_file()]
    return max(others, key=lambda p: p.stat().st_mtime, default=None)


# --- anipose's calibration.toml ---------------------------------------------------------------------


def export_toml(cal: Calibration, path: Path) -> Path:
    """calibration.toml as anipose (aniposelib's CameraGroup.dump) writes it: one [cam_N] table per camera
    with name, size, matrix, distortions, rotation (Rodrigues) and translation (here mm), then [metadata].
    FreeMoCap and Caliscope read the same layout."""
    out = []
    for i, (cid, cc) in enumerate(cal.cameras.items()):
        out += [f"[cam_{i}]", f"name = {json.dumps(cid)}", f"size = [ {cc.image_size[0]}, {cc.image_size[1]},]",
                f"matrix = [ {', '.join(_row(r) for r in cc.K)},]", f"distortions = {_row(cc.dist)}",
                f"rotation = {_row(rotvec(cc.R))}", f"translation = {_row(cc.t)}", ""]
    errors = [cc.reprojection_rms for cc in cal.cameras.values()]
    out += ["[metadata]", "adjusted = true", f"error = {_num(float(np.mean(errors)) if errors else 0.0)}",
            'units = "mm"', f"world = {json.dumps(cal.world)}", f"board = {json.dumps(cal.board.describe())}", ""]
    path = Path(path)
    path.write_text("\n".join(out))
    return path


def _num(v: float) -> str:
    return repr(float(v)) if math.isfinite(v) else "nan"


def _row(values: Any) -> str:
    return "[ " + ", ".join(_num(v) for v in np.asarray(values, dtype=np.float64).ravel()) + ",]"
