"""Calibration views from the simulated lab: its five cameras (known poses and intrinsics) photograph the
handheld board at its held poses; each image gets a camera's troubles (exposure and contrast changes,
defocus blur, sensor noise) and is then detected like any other. The truth comes along for checking."""

from __future__ import annotations

from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass

import cv2
import numpy as np

from calibration.board import BoardSpec
from calibration.detect import BoardDetector, Detection
from calibration.solve import View
from drivers.sim.lab import SimLabSettings
from drivers.sim.scene import FLOOR_EVERY, HOLD_S, MOVE_S, CameraModel, Scene, SceneSettings, lab_cameras

EXPOSURE_S = 1 / 120


@dataclass
class SimViews:
    views: list[View]
    cameras: dict[str, CameraModel]  # the truth (world in metres, as the scene has it)
    spec: BoardSpec
    board_poses: list[tuple[np.ndarray, np.ndarray]]  # world = R @ board_m + t, per view


def board_spec(scene: Scene) -> BoardSpec:
    s = scene.settings
    return BoardSpec(squares_x=s.squares_x, squares_y=s.squares_y, square_mm=s.square_m * 1000,
                     marker_mm=s.marker_m * 1000, dictionary=s.dictionary)


def hold_time(k: int) -> float:
    """The middle of the k-th hold of the handheld board."""
    return k * (HOLD_S + MOVE_S) + HOLD_S / 2


def _camera_troubles(img: np.ndarray, rng: np.random.Generator, noise: float) -> np.ndarray:
    gain, offset = rng.uniform(0.55, 1.15), rng.uniform(-15, 20)  # exposure and lighting
    out = img.astype(np.float32) * gain + offset
    blur = rng.uniform(0.0, 0.9)  # defocus, in pixels (sigma)
    if blur > 0.2:
        out = cv2.GaussianBlur(out, (0, 0), blur)
    out += rng.normal(0.0, noise, out.shape).astype(np.float32)
    return np.clip(out + 0.5, 0, 255).astype(np.uint8)


def _render_detect(args: tuple) -> dict[str, Detection]:
    k, cams, noise, seed = args
    scene = _scene()
    detector = BoardDetector(board_spec(scene))
    out = {}
    for i, (name, cam) in enumerate(cams.items()):
        rng = np.random.default_rng([seed, k, i])
        img = _camera_troubles(scene.render(cam, hold_time(k), EXPOSURE_S, k), rng, noise)
        d = detector.detect(img)
        if d.usable:
            out[name] = d
    return out


_SCENE: list[Scene] = []


def _scene() -> Scene:
    if not _SCENE:
        _SCENE.append(Scene(SimLabSettings(), SceneSettings(board="handheld", subject=False)))
    return _SCENE[0]


def sim_views(n_poses: int = 60, scale: float = 1.0, noise: float = 2.0, seed: int = 1,
              cameras: list[str] | None = None, workers: int = 1) -> SimViews:
    """Render and detect the first n_poses held poses (every FLOOR_EVERY-th lies on the floor) in the lab's
    cameras, resized by `scale`."""
    lab = lab_cameras()
    names = cameras or list(lab)
    cams = {n: lab[n] if scale == 1.0 else lab[n].scaled(round(lab[n].image_size[0] * scale),
                                                         round(lab[n].image_size[1] * scale)) for n in names}
    jobs = [(k, cams, noise, seed) for k in range(n_poses)]
    if workers > 1:
        with ProcessPoolExecutor(workers) as pool:
            found = list(pool.map(_render_detect, jobs, chunksize=4))
    else:
        found = [_render_detect(j) for j in jobs]
    scene = _scene()
    views = [View(f"hold {k}", dets, floor=k % FLOOR_EVERY == 0) for k, dets in enumerate(found)]
    poses = [scene.board_pose(hold_time(k)) for k in range(n_poses)]
    return SimViews(views, cams, board_spec(scene), poses)


def errors_against_truth(cal, truth: dict[str, CameraModel]) -> dict[str, dict[str, float]]:
    """Per calibrated camera: position (mm) and rotation (degrees) error in the world frame, focal length
    error (relative) and principal point error (px), against the simulated lab's cameras."""
    from calibration.geometry import rotation_angle_deg

    out = {}
    for c, cc in cal.cameras.items():
        t = truth[c]
        out[c] = {"position_mm": float(np.linalg.norm(cc.center - t.center_world * 1000)),
                  "rotation_deg": rotation_angle_deg(cc.R, t.R),
                  "focal_rel": float(abs(cc.K[0, 0] / t.K[0, 0] - 1)),
                  "principal_px": float(np.linalg.norm(cc.K[:2, 2] - t.K[:2, 2]))}
    return out
