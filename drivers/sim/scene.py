"""The simulated lab as one 3D world, seen by five cameras at known poses with known intrinsics.

World frame: origin on the floor at the centre of the capture area, z up, metres. Camera R, t map
world points into OpenCV camera coordinates (x right, y down, z forward), so `CameraModel.project`
is exactly cv2.projectPoints, lens distortion included, and is the ground truth for every pixel the
renderer draws:

- the floor, walls and a static ChArUco board are ray-cast once per (camera, render size) through
  that camera's own undistortion map, so they are distorted exactly as projectPoints distorts;
- a moving board is textured per frame by mapping each pixel of its bounding box through the same
  map and the board's plane homography (a remap over the box only: distorting whole pinhole frames
  with cv2.remap would cost ~10 ms per 1080p frame, about all of a camera's render budget);
- the subject proxy, the trigger box and its LED are projected vertices (with distortion) filled as
  convex polygons and circles; their straight edges ignore the tiny curvature between vertices.

Rendering is painter's algorithm (far to near by part centre); nothing here needs a depth buffer.
A frame costs ~0.3-0.6 ms at 480x270 and ~1-3 ms at 1080p (up to ~14 ms with a large, slanted,
supersampled moving board), after ~1 s of per-camera precomputation at 1080p.

The static board lies on the floor where the subject stands: record calibration with subject=false
(the lifter's legs hide most of it from the corner cameras, as a real lifter would).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Literal

import cv2
import numpy as np
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from drivers.sim.lab import SimLabSettings
from drivers.sim.triggerline import FreeRunningPulses, PulseLine

BARCODE_BITS = 24

Color = tuple[int, int, int]

ROOM_HALF_M = 4.5  # the walls stand at x, y = +-ROOM_HALF_M
ROOM_HEIGHT_M = 3.2
AREA_HALF_M = 2.5  # the taped 5 m x 5 m capture area
NEAR_M = 0.05  # anything closer to a camera than this (or behind it) is not drawn
LED_WORLD = np.array([0.75, -1.55, 1.02])  # the trigger box's LED, on a stand beside the subject
LED_RADIUS_M = 0.02
LED_UNLIT = 60  # green level of the unlit LED (it reflects the room's light); lit: 255
CAMERA_GAMMA = 2.2  # the cameras encode light as level = 255 * light ** (1 / gamma)
BOARD_WHITE, BOARD_BLACK = 225, 25  # printed board under lab light: neither paper nor ink is ideal
_SHIFT = 4  # fixed-point bits for sub-pixel polygon and circle drawing
_ONE = 1 << _SHIFT
_ZERO3 = np.zeros(3)
HOLD_S, MOVE_S = 1.0, 1.0  # a handheld board: still for a second at each pose, a second to the next
FLOOR_EVERY = 12
# board texture pyramid, sqrt(2) apart, each level generated directly (even sizes: the margin is half a square)
_TEXTURE_PX_PER_SQUARE = (10, 14, 20, 28, 40, 56, 80, 112, 160)
_SHIRT, _SKIN, _SHORTS, _SHOES = (150, 80, 40), (120, 150, 200), (50, 50, 60), (35, 35, 38)
_STEEL, _PLATE_RED = (150, 150, 155), (40, 40, 170)


def sensor_noise(shape: tuple[int, ...], k: int, sigma: float = 4.0) -> np.ndarray:
    """Sensor noise for frame k (a fixed random field, shifted per frame: cheap, and enough to give a
    synthetic frame the JPEG size of a camera's)."""
    if _NOISE.get(shape) is None:
        _NOISE[shape] = np.random.default_rng(0).normal(0.0, sigma, shape).astype(np.float32)
    return np.roll(_NOISE[shape], 7 * k, axis=1)


_NOISE: dict[tuple[int, ...], np.ndarray] = {}


def encode_barcode(image: np.ndarray, value: int) -> None:
    """Draw `value` as BARCODE_BITS black/white blocks along the bottom edge (MSB first)."""
    h, w = image.shape[:2]
    bh = max(8, h // 20)
    bw = w // BARCODE_BITS
    for bit in range(BARCODE_BITS):
        on = (value >> (BARCODE_BITS - 1 - bit)) & 1
        image[h - bh : h, bit * bw : (bit + 1) * bw] = 255 if on else 0


def decode_barcode(image: np.ndarray) -> int:
    """Read the frame counter back from a (decoded) frame."""
    gray = image if image.ndim == 2 else image.mean(axis=2)
    h, w = gray.shape[:2]
    bh = max(8, h // 20)
    bw = w // BARCODE_BITS
    value = 0
    for bit in range(BARCODE_BITS):
        block = gray[h - bh + 2 : h - 2, bit * bw + 2 : (bit + 1) * bw - 2]
        value = (value << 1) | int(block.mean() > 127)
    return value


# --- cameras ------------------------------------------------------------------------------------


@dataclass(eq=False)
class CameraModel:
    """A pinhole camera with OpenCV's 5-coefficient distortion; R, t map world to camera."""

    name: str
    role: Literal["cinema", "phone"]
    image_size: tuple[int, int]  # (width, height) in pixels
    K: np.ndarray
    dist: np.ndarray
    R: np.ndarray
    t: np.ndarray

    def __post_init__(self) -> None:
        self.image_size = (int(self.image_size[0]), int(self.image_size[1]))
        self.K = np.asarray(self.K, dtype=np.float64).reshape(3, 3)
        self.dist = np.asarray(self.dist, dtype=np.float64).reshape(5)
        self.R = np.asarray(self.R, dtype=np.float64).reshape(3, 3)
        self.t = np.asarray(self.t, dtype=np.float64).reshape(3)
        self.rvec = cv2.Rodrigues(self.R)[0].reshape(3)

    @property
    def center_world(self) -> np.ndarray:
        return -self.R.T @ self.t

    def scaled(self, width: int, height: int) -> CameraModel:
        """The same camera rendering at another size, as if the full frame were resized (pixel centres
        kept: x' = (x + 0.5) * sx - 0.5). Distortion is in normalised coordinates, so it is unchanged."""
        sx, sy = width / self.image_size[0], height / self.image_size[1]
        K = self.K.copy()
        K[0, 0] *= sx
        K[0, 1] *= sx
        K[1, 1] *= sy
        K[0, 2] = (K[0, 2] + 0.5) * sx - 0.5
        K[1, 2] = (K[1, 2] + 0.5) * sy - 0.5
        return CameraModel(self.name, self.role, (width, height), K, self.dist.copy(), self.R.copy(), self.t.copy())

    def to_camera(self, points_world: np.ndarray) -> np.ndarray:
        """(N, 3) world points in camera coordinates (z = depth along the optical axis)."""
        return np.asarray(points_world, dtype=np.float64).reshape(-1, 3) @ self.R.T + self.t

    def project(self, points_world: np.ndarray) -> np.ndarray:
        """(N, 3) world points to (N, 2) distorted pixel coordinates (points behind the camera too:
        check to_camera()[:, 2] > 0 where that matters)."""
        pts = np.asarray(points_world, dtype=np.float64).reshape(-1, 1, 3)
        if len(pts) == 0:
            return np.zeros((0, 2))
        img, _ = cv2.projectPoints(pts, self.rvec, self.t, self.K, self.dist)
        return img.reshape(-1, 2)


def look_at(position: np.ndarray, target: np.ndarray, roll_deg: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """World->camera (R, t) for a camera at `position` aimed at `target`, horizon level unless rolled."""
    position = np.asarray(position, dtype=np.float64)
    forward = np.asarray(target, dtype=np.float64) - position
    forward /= np.linalg.norm(forward)
    right = np.cross(forward, [0.0, 0.0, 1.0])
    right /= np.linalg.norm(right)
    down = np.cross(forward, right)
    c, s = math.cos(math.radians(roll_deg)), math.sin(math.radians(roll_deg))
    R = np.stack([c * right + s * down, -s * right + c * down, forward])
    return R, -R @ position


# name, role, (w, h), position, aim point, fx, fy/fx, principal point offset (px), roll (deg), dist
_LAYOUT = (
    ("cam1", "cinema", (1920, 1080), (2.50, 2.50, 1.70), (0.03, -0.02, 0.78), 1500.0, 1.0004, (3.6, -2.9),
     0.6, (-0.062, 0.081, 0.0004, -0.0003, 0.0)),
    ("cam2", "cinema", (1920, 1080), (-2.55, 2.45, 1.92), (-0.02, 0.04, 0.72), 1620.0, 0.9997, (-4.1, 3.3),
     -0.9, (-0.048, 0.052, -0.0002, 0.0005, 0.0)),
    ("cam3", "cinema", (1920, 1080), (-2.45, -2.55, 1.45), (0.05, 0.02, 0.80), 1440.0, 1.0002, (2.2, 4.4),
     1.1, (-0.071, 0.093, 0.0003, 0.0002, 0.0)),
    ("cam4", "cinema", (1920, 1080), (2.55, -2.50, 1.83), (-0.04, -0.03, 0.75), 1680.0, 0.9995, (-2.7, -3.8),
     -0.4, (-0.055, 0.064, -0.0004, -0.0002, 0.0)),
    ("phone", "phone", (1280, 720), (0.35, -3.10, 1.05), (0.0, 0.0, 0.85), 1010.0, 1.0, (5.3, -2.1),
     0.8, (0.041, -0.093, 0.0006, 0.0004, 0.0)),
)


def lab_cameras() -> dict[str, CameraModel]:
    """The lab's cameras: four cinema cameras at the corners of the 5 m x 5 m capture area, 1.45-1.92 m
    high, aimed at the subject; a phone at 1.05 m on the -y side, filming the lift from the side."""
    cams = {}
    for name, role, size, pos, aim, fx, aspect, (dx, dy), roll, dist in _LAYOUT:
        w, h = size
        K = np.array([[fx, 0.0, (w - 1) / 2 + dx], [0.0, fx * aspect, (h - 1) / 2 + dy], [0.0, 0.0, 1.0]])
        R, t = look_at(np.array(pos), np.array(aim), roll)
        cams[name] = CameraModel(name, role, size, K, np.array(dist), R, t)
    return cams


# --- settings -----------------------------------------------------------------------------------


class SceneSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    board: Literal["static", "moving", "handheld", "none"] = Field(
        "static", description="static: lying on the floor at the centre, seen by all four cinema cameras; "
        "moving: carried around the centre for a calibration take; handheld: the same sweep as an operator "
        "calibrating does it, held still for HOLD_S at each pose (and laid on the floor every FLOOR_EVERY poses)")
    squares_x: int = Field(7, ge=3, le=20)
    squares_y: int = Field(5, ge=3, le=20)
    square_m: float = Field(0.10, gt=0.0, le=0.5)
    marker_m: float = Field(0.075, gt=0.0, le=0.5)
    dictionary: str = Field("DICT_4X4_50", description="4x4 markers have bigger cells than 5x5 ones: on "
                            "the static board, 60-68 degrees from the corner cameras, DICT_5X5_100 lost up to 12 "
                            "of 24 corners in some views, DICT_4X4_50 found all of them")
    subject: bool = True

    @field_validator("dictionary")
    @classmethod
    def _known_dictionary(cls, v: str) -> str:
        if not v.startswith("DICT_") or not isinstance(getattr(cv2.aruco, v, None), int):
            raise ValueError(f"unknown ArUco dictionary {v!r} (e.g. DICT_5X5_100)")
        return v

    @model_validator(mode="after")
    def _fits(self) -> SceneSettings:
        if self.marker_m >= self.square_m:
            raise ValueError("marker_m must be smaller than square_m")
        needed = (self.squares_x * self.squares_y) // 2
        size = cv2.aruco.getPredefinedDictionary(getattr(cv2.aruco, self.dictionary)).bytesList.shape[0]
        if needed > size:
            raise ValueError(f"{self.dictionary} has {size} markers, the board needs {needed}")
        return self


# --- geometry helpers ---------------------------------------------------------------------------


_BOX_SIGNS = np.array([[x, y, z] for x in (-1, 1) for y in (-1, 1) for z in (-1, 1)], dtype=np.float64)


def _unit(v: np.ndarray) -> np.ndarray:
    return v / np.linalg.norm(v)


def _box(center: np.ndarray, axes: np.ndarray, half: tuple[float, float, float]) -> np.ndarray:
    """The 8 corners of a box; axes' columns are its unit directions."""
    return center + (_BOX_SIGNS * np.asarray(half)) @ axes.T


def _limbs(a: np.ndarray, b: np.ndarray, width: np.ndarray) -> np.ndarray:
    """(n, 8, 3) corners of square-section boxes from a[i] to b[i], all at once (this runs per frame)."""
    d = b - a
    length = np.linalg.norm(d, axis=1)
    u = d / length[:, None]
    ref = np.where(np.abs(u[:, 2:3]) < 0.9, [[0.0, 0.0, 1.0]], [[1.0, 0.0, 0.0]])
    side = np.cross(u, ref)
    side /= np.linalg.norm(side, axis=1)[:, None]
    axes = np.stack([u, side, np.cross(u, side)], axis=1)  # (n, 3 axes, xyz)
    half = np.stack([length / 2, width / 2, width / 2], axis=1)
    return (a + b)[:, None, :] / 2 + (_BOX_SIGNS[None] * half[:, None, :]) @ axes


def _disc(axis: np.ndarray, radius: float, thickness: float, n: int = 14) -> np.ndarray:
    """Rim points of both faces of a disc at the origin (its projection is their convex hull)."""
    axis = _unit(axis)
    e1 = _unit(np.cross(axis, [0.0, 0.0, 1.0] if abs(axis[2]) < 0.9 else [1.0, 0.0, 0.0]))
    e2 = np.cross(axis, e1)
    ang = np.linspace(0, 2 * np.pi, n, endpoint=False)
    rim = radius * (np.cos(ang)[:, None] * e1 + np.sin(ang)[:, None] * e2)
    return np.concatenate([rim + axis * thickness / 2, rim - axis * thickness / 2])


_PLATE = _disc(np.array([0.0, 1.0, 0.0]), 0.225, 0.06)  # a 20 kg bumper plate on a bar along y


@dataclass
class _Part:
    """One convex piece of the scene: filled as the hull of its projected points, or a sphere."""

    points: np.ndarray  # (n, 3) world
    color: Color
    sphere_radius_m: float = 0.0  # > 0: points is the centre, drawn as a disc of the projected size


@dataclass
class _View:
    """What is precomputed per camera and render size."""

    rays: np.ndarray  # (h, w, 2) float32: undistorted normalised coordinates of every pixel
    background: np.ndarray  # (h, w, 3) uint8: room, floor and (if static) the board


def _camera_key(cam: CameraModel) -> tuple:
    return cam.image_size, cam.K.tobytes(), cam.dist.tobytes(), cam.R.tobytes(), cam.t.tobytes()


_PRECOMPUTED: dict[tuple, tuple[np.ndarray, np.ndarray]] = {}
_PRECOMPUTED_MAX = 12  # five cameras at two sizes; 23 MB each at 1080p


def _precomputed(cam: CameraModel) -> tuple[np.ndarray, np.ndarray]:
    """(pixel rays, room image) of a camera at its size: about 1 s at 1080p, so shared process-wide."""
    key = _camera_key(cam)
    hit = _PRECOMPUTED.get(key)
    if hit is None:
        rays = _pixel_rays(cam)
        room = _room(cam, rays)
        rays.setflags(write=False)
        room.setflags(write=False)
        if len(_PRECOMPUTED) >= _PRECOMPUTED_MAX:
            _PRECOMPUTED.pop(next(iter(_PRECOMPUTED)))
        hit = _PRECOMPUTED[key] = (rays, room)
    return hit


def _pixel_rays(cam: CameraModel) -> np.ndarray:
    """For every pixel of the distorted image, the normalised pinhole coordinates (x/z, y/z) of the
    ray it sees: the inverse of projectPoints' distortion, solved to 1e-12."""
    w, h = cam.image_size
    u, v = np.meshgrid(np.arange(w, dtype=np.float64), np.arange(h, dtype=np.float64))
    pts = np.stack([u, v], axis=-1).reshape(-1, 1, 2)
    criteria = (cv2.TERM_CRITERIA_COUNT | cv2.TERM_CRITERIA_EPS, 30, 1e-12)
    rays = cv2.undistortPoints(pts, cam.K, cam.dist, None, None, None, criteria)
    return rays.reshape(h, w, 2).astype(np.float32)


def _room(cam: CameraModel, rays: np.ndarray) -> np.ndarray:
    """Ray-cast the room (floor with a 0.5 m grid and the taped capture area, walls, ceiling)."""
    h, w = rays.shape[:2]
    d = np.concatenate([rays.astype(np.float64), np.ones((h, w, 1))], axis=2) @ cam.R  # world directions
    dx, dy, dz = d[..., 0], d[..., 1], d[..., 2]
    c = cam.center_world
    with np.errstate(divide="ignore", invalid="ignore"):
        s_floor = np.where(dz < 0, -c[2] / dz, np.inf)
        s_ceil = np.where(dz > 0, (ROOM_HEIGHT_M - c[2]) / dz, np.inf)
        s_wx = np.where(dx != 0, (np.sign(dx) * ROOM_HALF_M - c[0]) / dx, np.inf)
        s_wy = np.where(dy != 0, (np.sign(dy) * ROOM_HALF_M - c[1]) / dy, np.inf)
    s_wall = np.minimum(s_wx, s_wy)
    img = np.empty((h, w, 3), np.float32)

    # walls: a two-tone paint with a dark skirting board; x and y walls differ a little in shade
    z_wall = c[2] + s_wall * dz
    wall = np.where((s_wx < s_wy)[..., None], np.float32([150, 142, 132]), np.float32([138, 134, 128]))
    wall = wall * (1.0 - 0.12 * np.clip(z_wall / ROOM_HEIGHT_M, 0, 1))[..., None]
    wall[z_wall < 0.12] = (55, 55, 60)
    img[:] = wall
    img[s_ceil < s_wall] = (175, 175, 172)

    # floor: anti-aliased grid lines, their width against the pixel's footprint on the floor
    floor = s_floor < s_wall
    s = s_floor[floor]
    fx, fy = c[0] + s * dx[floor], c[1] + s * dy[floor]
    norm = np.linalg.norm(d[floor], axis=1)
    footprint = s * norm / cam.K[0, 0] / np.maximum(np.abs(dz[floor]) / norm, 0.15)

    def coverage(dist: np.ndarray, half_width: float) -> np.ndarray:
        return np.clip(0.5 + (half_width - dist) / footprint, 0.0, 1.0)[:, None]

    grid = np.maximum(coverage(np.abs(fx - 0.5 * np.round(fx / 0.5)), 0.006),
                      coverage(np.abs(fy - 0.5 * np.round(fy / 0.5)), 0.006))
    inside = np.maximum(np.abs(fx), np.abs(fy))
    tape = coverage(np.abs(inside - AREA_HALF_M), 0.025)
    col = np.float32([92, 96, 100]) * (1 - grid) + np.float32([64, 66, 70]) * grid
    col = col * (1 - tape) + np.float32([40, 175, 215]) * tape
    img[floor] = col
    return np.clip(img + 0.5, 0, 255).astype(np.uint8)


# --- the scene ----------------------------------------------------------------------------------


class Scene:
    """The lab's 3D world at true time t: room, ChArUco board, subject proxy, trigger box LED."""

    def __init__(self, sim: SimLabSettings, settings: SceneSettings | None = None,
                 line: PulseLine | None = None) -> None:
        self.sim = sim
        self.line = line or FreeRunningPulses(sim)
        self.settings = s = settings or SceneSettings()
        self.dictionary = cv2.aruco.getPredefinedDictionary(getattr(cv2.aruco, s.dictionary))
        self.board = cv2.aruco.CharucoBoard((s.squares_x, s.squares_y), s.square_m, s.marker_m, self.dictionary)
        self.margin_m = s.square_m / 2  # white border of the print around the squares
        self.board_size_m = (s.squares_x * s.square_m, s.squares_y * s.square_m)
        self._corners_board = np.asarray(self.board.getChessboardCorners(), dtype=np.float64).reshape(-1, 3)
        self._textures = [self._texture(pp) for pp in _TEXTURE_PX_PER_SQUARE]
        self._outline = self._board_outline()
        self._fixed = self._fixed_parts(s.subject)
        self._views: dict[tuple, _View] = {}

    # board geometry

    def _texture(self, px_per_square: int) -> tuple[float, np.ndarray, np.ndarray]:
        """(pixels per metre, BGR image, gray + alpha image) of the printed board. generateImage puts pixel
        centre u at board x = (u + 0.5) / ppm - margin when sizes are exact multiples (a test checks)."""
        s = self.settings
        m = px_per_square // 2
        gray = self.board.generateImage((s.squares_x * px_per_square + 2 * m, s.squares_y * px_per_square + 2 * m),
                                        marginSize=m, borderBits=1)
        gray = (BOARD_BLACK + gray.astype(np.float32) * ((BOARD_WHITE - BOARD_BLACK) / 255.0) + 0.5).astype(np.uint8)
        gray_alpha = np.dstack([gray, np.full_like(gray, 255)])
        return px_per_square / s.square_m, cv2.cvtColor(gray, cv2.COLOR_GRAY2BGR), gray_alpha

    def _board_outline(self) -> np.ndarray:
        """The print's edge (with margin) in board coordinates, 6 points per side so that the bounding
        box also covers edges bowed by distortion."""
        m = self.margin_m
        bw, bh = self.board_size_m
        a = np.linspace(0.0, 1.0, 6, endpoint=False)
        x0, x1, y0, y1 = -m, bw + m, -m, bh + m
        top = np.column_stack([x0 + a * (x1 - x0), np.full_like(a, y0)])
        right = np.column_stack([np.full_like(a, x1), y0 + a * (y1 - y0)])
        bottom = np.column_stack([x1 - a * (x1 - x0), np.full_like(a, y1)])
        left = np.column_stack([np.full_like(a, x0), y1 - a * (y1 - y0)])
        pts = np.concatenate([top, right, bottom, left])
        return np.column_stack([pts, np.zeros(len(pts))])

    def _pose_facing(self, center: np.ndarray, front: np.ndarray, roll: float) -> tuple[np.ndarray, np.ndarray]:
        """Board pose whose printed side faces `front`, its top edge up (then rolled), centred at `center`.
        Board axes follow OpenCV: x along squares_x, y down the print, z into the board (away from a
        viewer who can read it)."""
        z_b = -_unit(front)
        up = np.array([0.0, 0.0, 1.0])
        y_b = -_unit(up - (up @ front) * front / (front @ front))
        x_b = np.cross(y_b, z_b)
        c, s = math.cos(roll), math.sin(roll)
        x_r, y_r = c * x_b + s * y_b, -s * x_b + c * y_b
        R = np.column_stack([x_r, y_r, z_b])
        mid = np.array([self.board_size_m[0] / 2, self.board_size_m[1] / 2, 0.0])
        return R, center - R @ mid

    def board_pose(self, t: float) -> tuple[np.ndarray, np.ndarray]:
        """(R, t) of the board in the world: world = R @ board + t, board coordinates as OpenCV's
        CharucoBoard object points (origin at the squares' outer top-left corner)."""
        if self.settings.board == "moving":
            return self._moving_pose(t)
        if self.settings.board == "handheld":
            return self._handheld_pose(t)
        return self._floor_pose()

    def _floor_pose(self) -> tuple[np.ndarray, np.ndarray]:
        # Static: lying face up on the floor at the centre. A one-sided board standing up can face at
        # most two of the four corner cameras; flat on the floor all four see it (at 58-68 degrees).
        z_b = np.array([0.0, 0.0, -1.0])
        x_b = np.array([1.0, 0.0, 0.0])
        R = np.column_stack([x_b, np.cross(z_b, x_b), z_b])
        mid = np.array([self.board_size_m[0] / 2, self.board_size_m[1] / 2, 0.0])
        return R, np.array([0.0, 0.0, 0.0]) - R @ mid

    def _moving_pose(self, t: float) -> tuple[np.ndarray, np.ndarray]:
        """An operator's calibration sweep, about 60 s: the board wanders within ~0.8 m of the centre at
        0.9-1.4 m height, nearly upright (cameras are barely higher), and turns a quarter every 7.5 s to
        dwell facing between two corner cameras, so that mostly two of them see it at 25-60 degrees;
        it wobbles, tilts and rolls on the way for varied views."""
        w = 2 * math.pi
        center = np.array([0.55 * math.cos(w * t / 60) + 0.25 * math.sin(w * t / 13),
                           0.55 * math.sin(w * t / 60) + 0.25 * math.cos(w * t / 11),
                           1.15 + 0.25 * math.sin(w * t / 17 + 0.5)])
        u = t / 7.5  # quarter turns; yaw rests (zero rate) at whole u, facing +x, +y, -x, -y in turn
        yaw = math.pi / 2 * (u - math.sin(w * u) / w) + 0.3 * math.sin(w * t / 5.3)
        tilt = 0.2 + 0.25 * math.sin(w * t / 9 + 1.0)  # back from vertical, -3 to 26 degrees
        roll = 0.45 * math.sin(w * t / 6.5 + 2.0)
        front = np.array([math.cos(tilt) * math.cos(yaw), math.cos(tilt) * math.sin(yaw), math.sin(tilt)])
        return self._pose_facing(center, front, roll)

    def _hold_pose(self, k: int) -> tuple[np.ndarray, np.ndarray]:
        """The k-th pose an operator holds the board still at, walking it over the capture area (so that it
        reaches the edges of the cameras' images) at 0.6-1.8 m, facing between two cameras in turn, tilted
        and rolled; flat on the floor at the centre every FLOOR_EVERY poses (the view that sets the world
        frame). Each pose is drawn from its own seed: the same k is always the same pose."""
        if k % FLOOR_EVERY == 0:
            return self._floor_pose()
        rng = np.random.default_rng([self.sim.seed, k])
        centre = np.array([rng.uniform(-1.5, 1.5), rng.uniform(-1.5, 1.5), rng.uniform(0.6, 1.8)])
        yaw = k * math.pi / 2 + rng.uniform(-0.6, 0.6)  # +x (between cam1 and cam4), +y, -x, -y, ...
        tilt = rng.uniform(-0.35, 0.55)
        front = np.array([math.cos(tilt) * math.cos(yaw), math.cos(tilt) * math.sin(yaw), math.sin(tilt)])
        return self._pose_facing(centre, front, rng.uniform(-0.5, 0.5))

    def hold_index(self, t: float) -> int | None:
        """Which held pose the board is still at, at time t (None while it moves)."""
        k, into = divmod(t, HOLD_S + MOVE_S)
        return int(k) if into < HOLD_S else None

    def _handheld_pose(self, t: float) -> tuple[np.ndarray, np.ndarray]:
        k, into = divmod(t, HOLD_S + MOVE_S)
        Ra, ta = self._hold_pose(int(k))
        if into < HOLD_S:
            return Ra, ta
        Rb, tb = self._hold_pose(int(k) + 1)
        u = (into - HOLD_S) / MOVE_S
        u = u * u * (3 - 2 * u)  # smooth start and stop
        turn = cv2.Rodrigues(Rb @ Ra.T)[0] * u
        R = cv2.Rodrigues(turn)[0] @ Ra
        # the board's centre moves on a straight line (its origin corner follows the rotation)
        mid = np.array([self.board_size_m[0] / 2, self.board_size_m[1] / 2, 0.0])
        centre = (1 - u) * (Ra @ mid + ta) + u * (Rb @ mid + tb)
        return R, centre - R @ mid

    def board_corners_world(self, t: float) -> tuple[np.ndarray, np.ndarray]:
        """(ids, (N, 3) world positions) of the ChArUco inner corners at time t."""
        R, tb = self.board_pose(t)
        return np.arange(len(self._corners_board)), self._corners_board @ R.T + tb

    def board_spec(self) -> dict:
        s = self.settings
        return {"type": "charuco", "squares_x": s.squares_x, "squares_y": s.squares_y, "square_m": s.square_m,
                "marker_m": s.marker_m, "dictionary": s.dictionary, "legacy_pattern": False,
                "margin_m": self.margin_m, "motion": s.board}

    def export_truth(self, cameras: dict[str, CameraModel]) -> dict:
        """JSON-able ground truth for calibration benchmarks: every camera and the board."""
        out: dict = {
            "world": "origin on the floor at the capture area's centre, z up, metres; "
                     "x_cam = R @ x_world + t (OpenCV camera axes)",
            "cameras": {name: {"role": c.role, "image_size": list(c.image_size), "K": c.K.tolist(),
                               "dist": c.dist.tolist(), "R": c.R.tolist(), "t": c.t.tolist(),
                               "rvec": c.rvec.tolist(), "center_world": c.center_world.tolist()}
                        for name, c in cameras.items()},
            "board": self.board_spec(),
            "led_world": LED_WORLD.tolist(),
        }
        if self.settings.board == "static":
            R, tb = self.board_pose(0.0)
            out["board"]["pose"] = {"R": R.tolist(), "t": tb.tolist()}
        return out

    # rendering

    def _view(self, cam: CameraModel) -> _View:
        key = _camera_key(cam)
        view = self._views.get(key)
        if view is None:
            rays, room = _precomputed(cam)
            view = _View(rays, room)
            if self.settings.board == "static":
                # baked in once, so it can afford up to 8 x 8 samples and no blur: 60-68 degrees from the
                # cameras, detection is fragile (a 1.2x blur lost 8 of 24 corners in two views)
                view.background = room.copy()
                self._draw_board(view.background, rays, cam, *self.board_pose(0.0), max_samples=8)
            self._views[key] = view
        return view

    def _draw_board(self, img: np.ndarray, rays: np.ndarray, cam: CameraModel, R_b: np.ndarray,
                    t_b: np.ndarray, max_samples: int = 1, magnify: float = 1.0) -> None:
        """Texture the board into img: each pixel of its bounding box looks its ray up on the board plane.
        max_samples: supersampling per axis at most; magnify: how far the texture may be magnified
        (blurred) along the board's less foreshortened axis to save samples."""
        Rc, tc = cam.R @ R_b, cam.R @ t_b + cam.t  # board -> camera
        outline_cam = self._outline @ Rc.T + tc
        if (outline_cam[:, 2] < NEAR_M).any():
            return  # (partly) behind the camera: the operator is walking past it
        px = cv2.projectPoints(outline_cam.reshape(-1, 1, 3), _ZERO3, _ZERO3, cam.K, cam.dist)[0].reshape(-1, 2)
        if Rc[:, 2] @ tc <= 0:  # the camera sees the back of the board
            hull = cv2.convexHull(np.round(px * _ONE).astype(np.int32))
            cv2.fillConvexPoly(img, hull, (70, 72, 75), cv2.LINE_AA, _SHIFT)
            return
        h, w = img.shape[:2]
        x0, y0 = np.maximum(np.floor(px.min(axis=0)).astype(int) - 2, 0)
        x1, y1 = np.minimum(np.ceil(px.max(axis=0)).astype(int) + 3, (w, h))
        if x1 - x0 < 3 or y1 - y0 < 3:
            return  # out of view
        # on-screen scale (px per metre) along the board's two axes (the outline has 6 points a side)
        side_px = np.linalg.norm(np.diff(px, axis=0, append=px[:1]), axis=1).reshape(4, 6).sum(axis=1)
        w_m, h_m = self.board_size_m[0] + 2 * self.margin_m, self.board_size_m[1] + 2 * self.margin_m
        s_min, s_max = sorted(((side_px[0] + side_px[2]) / (2 * w_m), (side_px[1] + side_px[3]) / (2 * h_m)))
        # the coarsest texture level that (nearly) resolves the less foreshortened axis; where the other
        # axis is squeezed (a slanted board), supersample rather than let bilinear sampling alias:
        # single-sampled, aliasing shifts detected ChArUco corners by 0.2-0.3 px at 50 degrees, and
        # worse in a few frames
        ppm, tex, tex_ga = next((lv for lv in self._textures if lv[0] >= s_max / magnify), self._textures[-1])
        n = min(max_samples, max(1, math.ceil(ppm / s_min - 0.25)))
        # normalised camera coordinates -> board metres (inverse plane homography) -> texture pixels
        H = np.column_stack([Rc[:, 0], Rc[:, 1], tc])
        offset = self.margin_m * ppm - 0.5
        S = np.array([[ppm, 0.0, offset], [0.0, ppm, offset], [0.0, 0.0, 1.0]])
        maps = cv2.perspectiveTransform(rays[y0:y1, x0:x1], S @ np.linalg.inv(H))
        if n == 1:
            cv2.remap(tex, maps, None, cv2.INTER_LINEAR, dst=img[y0:y1, x0:x1], borderMode=cv2.BORDER_TRANSPARENT)
            return
        # n x n sub-pixel samples, offset in texture space by the map's Jacobian at the board's centre:
        # symmetric offsets average to the pixel centre whatever the Jacobian, so one is enough
        cx, cy = np.clip(np.round(px.mean(axis=0)).astype(int) - (x0, y0), 1, (x1 - x0 - 2, y1 - y0 - 2))
        jx, jy = (maps[cy, cx + 1] - maps[cy, cx - 1]) / 2, (maps[cy + 1, cx] - maps[cy - 1, cx]) / 2
        acc = np.zeros((y1 - y0, x1 - x0, 2), np.float32)
        steps = ((np.arange(n) + 0.5) / n - 0.5).astype(np.float32)
        for oy in steps:
            for ox in steps:
                acc += cv2.remap(tex_ga, maps + (ox * jx + oy * jy), None, cv2.INTER_LINEAR,
                                 borderMode=cv2.BORDER_CONSTANT)
        acc /= n * n  # gray premultiplied by coverage, which anti-aliases the board's edge too
        patch = img[y0:y1, x0:x1]
        patch[:] = (patch * (1.0 - acc[..., 1:] / 255.0) + acc[..., :1] + 0.5).astype(np.uint8)

    def _subject_parts(self, t: float) -> list[_Part]:
        """A deadlift proxy facing +x: hips hinge and drop as the bar goes from the floor to lockout."""
        lift = float(self.sim.lift_position(t))
        low = 1.0 - lift
        bar_x, bar_z = 0.12, 0.225 + 0.62 * lift
        hip = np.array([-0.12 * low, 0.0, 0.95 - 0.32 * low])
        lean = math.radians(55.0 * low)
        c, s = math.cos(lean), math.sin(lean)
        shoulder = hip + 0.55 * np.array([s, 0.0, c])
        starts, ends, widths, colors = [], [], [], []
        for side in (-1.0, 1.0):
            knee = np.array([0.10 + 0.12 * low, 0.15 * side, 0.50 - 0.04 * low])
            starts += [np.array([0.0, 0.16 * side, 0.04]), knee, shoulder + np.array([0.0, 0.2 * side, 0.0])]
            ends += [knee, hip + np.array([0.0, 0.11 * side, 0.0]), np.array([bar_x, 0.26 * side, bar_z])]
            widths += [0.12, 0.16, 0.09]
            colors += [_SKIN, _SHORTS, _SKIN]  # shin, thigh, arm
        starts.append(np.array([bar_x, -1.1, bar_z]))
        ends.append(np.array([bar_x, 1.1, bar_z]))
        widths.append(0.03)
        colors.append(_STEEL)
        boxes = _limbs(np.array(starts), np.array(ends), np.array(widths))
        parts = [_Part(box, color) for box, color in zip(boxes, colors, strict=True)]
        torso_axes = np.array([[c, 0.0, s], [0.0, 1.0, 0.0], [-s, 0.0, c]])  # columns: chest, side, spine
        parts += [_Part(_PLATE + [bar_x, side * 0.86, bar_z], _PLATE_RED) for side in (-1.0, 1.0)]
        parts.append(_Part(_box((hip + shoulder) / 2, torso_axes, (0.11, 0.2, 0.3)), _SHIRT))
        parts.append(_Part((shoulder + [0.05 * s, 0.0, 0.2]).reshape(1, 3), _SKIN, sphere_radius_m=0.11))
        return parts

    @staticmethod
    def _fixed_parts(subject: bool) -> list[_Part]:
        """What never moves: the trigger box on its stand (and the lifter's feet)."""
        top = LED_WORLD - np.array([0.0, 0.0, 0.02])
        stand = _limbs(np.array([[top[0], top[1], 0.0]]), (top - [0.0, 0.0, 0.08]).reshape(1, 3), np.array([0.03]))
        parts = [_Part(stand[0], (30, 30, 30)), _Part(_box(top - [0.0, 0.0, 0.04], np.eye(3), (0.09, 0.06, 0.04)),
                                                      (45, 45, 50))]
        if subject:
            parts += [_Part(_box(np.array([0.06, 0.16 * side, 0.02]), np.eye(3), (0.13, 0.05, 0.03)), _SHOES)
                      for side in (-1.0, 1.0)]
        return parts

    def led_level(self, t: float, exposure_s: float) -> int:
        """Green level of the LED in a frame exposed from t for exposure_s. The light it collects grows
        with the lit fraction of the exposure (a flash that starts mid-exposure gives a partial level);
        the camera's gamma curve then bends light into level."""
        if exposure_s > 0:
            lit = self.line.overlap(t, t + exposure_s) / exposure_s
        else:
            lit = float(self.line.active(np.array([t]))[0])
        return led_level_of(min(max(lit, 0.0), 1.0))

    def render(self, cam: CameraModel, t: float, exposure_s: float, counter: int) -> np.ndarray:
        """The frame `cam` exposes from true time t for exposure_s, with `counter` burnt in as a barcode.
        BGR uint8 of cam.image_size (render smaller with cam.scaled())."""
        view = self._view(cam)
        img = view.background.copy()
        fx = cam.K[0, 0]
        parts = self._fixed + (self._subject_parts(t) if self.settings.subject else [])
        pts = np.concatenate([p.points for p in parts] + [LED_WORLD.reshape(1, 3)])
        px = cam.project(pts)  # one projectPoints call for everything drawn as polygons
        depth = cam.to_camera(pts)[:, 2]

        draws: list[tuple[float, Callable[[], None]]] = []  # (depth, draw), painted far to near
        start = 0
        for part in parts:
            sl = slice(start, start + len(part.points))
            start = sl.stop
            if depth[sl].min() > NEAR_M:
                d = float(depth[sl].mean())
                draws.append((d, partial(_draw_part, img, part, px[sl], fx / d)))
        if depth[-1] > NEAR_M:
            # the LED sits on top of its box: count it a little nearer so it is painted after the box
            radius = max(1.5, fx * LED_RADIUS_M / depth[-1])
            color = (0, self.led_level(t, exposure_s), 0)
            draws.append((depth[-1] - 0.05, partial(_draw_disc, img, px[-1], radius, color)))
        if self.settings.board in ("moving", "handheld"):
            R_b, t_b = self.board_pose(t)
            mid = R_b @ np.array([self.board_size_m[0] / 2, self.board_size_m[1] / 2, 0.0]) + t_b
            # a board held still is drawn sharper (no motion to hide the cheaper sampling); on the floor it is
            # seen at 60-68 degrees, where detection needs it
            hold = self.hold_index(t) if self.settings.board == "handheld" else None
            samples = 2 if hold is None else 8 if hold % FLOOR_EVERY == 0 else 4
            draws.append((float(cam.to_camera(mid)[0, 2]),
                          partial(self._draw_board, img, view.rays, cam, R_b, t_b, samples,
                                  1.2 if hold is None else 1.0)))
        for _, draw in sorted(draws, key=lambda d: -d[0]):  # stable: equal depths keep their order
            draw()
        encode_barcode(img, counter)
        return img


def led_level_of(lit: float) -> int:
    """The LED's level when lit for fraction `lit` of the exposure, through the camera's gamma."""
    dark = (LED_UNLIT / 255.0) ** CAMERA_GAMMA
    return int(round(255.0 * (dark + (1.0 - dark) * lit) ** (1.0 / CAMERA_GAMMA)))


def _draw_disc(img: np.ndarray, center: np.ndarray, radius: float, color: Color) -> None:
    c = np.round(center * _ONE).astype(int)
    cv2.circle(img, (int(c[0]), int(c[1])), int(round(radius * _ONE)), color, -1, cv2.LINE_AA, _SHIFT)


def _draw_part(img: np.ndarray, part: _Part, px: np.ndarray, px_per_m: float) -> None:
    if part.sphere_radius_m > 0:
        _draw_disc(img, px[0], part.sphere_radius_m * px_per_m, part.color)
    else:
        hull = cv2.convexHull(np.round(px * _ONE).astype(np.int32))
        cv2.fillConvexPoly(img, hull, part.color, cv2.LINE_AA, _SHIFT)
