"""The simulated lab's 3D scene: every camera sees the same world, exactly where CameraModel.project
says, so that rendered frames can serve as ground truth for sync (the LED) and calibration (the board)."""

from __future__ import annotations

import json
import math

import cv2
import numpy as np
import pytest
from pydantic import ValidationError

from drivers.sim.lab import SimLabSettings
from drivers.sim.scene import (
    LED_WORLD,
    CameraModel,
    Scene,
    SceneSettings,
    decode_barcode,
    encode_barcode,
    lab_cameras,
)

CAMERAS = lab_cameras()
CINEMA = [name for name, cam in CAMERAS.items() if cam.role == "cinema"]
EXPOSURE = 1 / 120  # 180 degree shutter at 60 fps


@pytest.fixture(scope="module")
def static_scene() -> Scene:
    # the calibration take: the board on the floor, nobody standing on it
    return Scene(SimLabSettings(), SceneSettings(board="static", subject=False))


@pytest.fixture(scope="module")
def static_detections(static_scene: Scene) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Per cinema camera: (ids, detected corners (N, 2)) from the full-size static-board frame."""
    detector = cv2.aruco.CharucoDetector(static_scene.board)
    out = {}
    for name in CINEMA:
        corners, ids, _, _ = detector.detectBoard(static_scene.render(CAMERAS[name], 0.0, EXPOSURE, 0))
        assert ids is not None, f"no board found in {name}"
        out[name] = ids.ravel(), corners.reshape(-1, 2)
    return out


def rotation_error_deg(Ra: np.ndarray, Rb: np.ndarray) -> float:
    return math.degrees(math.acos(min(1.0, (np.trace(Ra.T @ Rb) - 1) / 2)))


# --- cameras ------------------------------------------------------------------------------------


def test_lab_cameras_layout() -> None:
    assert set(CAMERAS) == {"cam1", "cam2", "cam3", "cam4", "phone"}
    corners = set()
    for name in CINEMA:
        cam = CAMERAS[name]
        c = cam.center_world
        assert cam.image_size == (1920, 1080)
        assert 1.4 <= c[2] <= 2.0
        assert 3.3 < math.hypot(c[0], c[1]) < 3.8  # at a corner of the 5 m x 5 m area
        corners.add((np.sign(c[0]), np.sign(c[1])))
        # the subject's middle projects near the image centre
        u, v = cam.project(np.array([[0.0, 0.0, 0.8]]))[0]
        assert abs(u - 960) < 60 and abs(v - 540) < 60
        np.testing.assert_allclose(cam.R @ cam.R.T, np.eye(3), atol=1e-12)
    assert len(corners) == 4
    phone = CAMERAS["phone"]
    assert phone.image_size == (1280, 720)
    assert phone.center_world[2] < min(CAMERAS[n].center_world[2] for n in CINEMA)
    # distinct intrinsics per camera
    assert len({float(CAMERAS[n].K[0, 0]) for n in CINEMA}) == 4
    assert lab_cameras()["cam2"].K.tolist() == CAMERAS["cam2"].K.tolist()  # deterministic


def test_scaled_keeps_projections() -> None:
    rng = np.random.default_rng(1)
    pts = rng.uniform([-1.5, -1.5, 0.0], [1.5, 1.5, 2.0], size=(50, 3))
    for cam in CAMERAS.values():
        w, h = cam.image_size
        small = cam.scaled(w // 4, h // 4)
        assert small.image_size == (w // 4, h // 4)
        np.testing.assert_array_equal(small.dist, cam.dist)
        # a pixel centre x at full size is at (x + 0.5) / 4 - 0.5 in the quarter-size frame
        np.testing.assert_allclose(small.project(pts), (cam.project(pts) + 0.5) / 4 - 0.5, atol=1e-9)
        np.testing.assert_allclose(small.center_world, cam.center_world)


def test_project_matches_pinhole_model_without_distortion() -> None:
    cam = CAMERAS["cam1"]
    flat = CameraModel(cam.name, cam.role, cam.image_size, cam.K, np.zeros(5), cam.R, cam.t)
    p = np.array([[0.3, -0.2, 1.1]])
    x = cam.R @ p[0] + cam.t
    np.testing.assert_allclose(flat.project(p)[0], (cam.K @ (x / x[2]))[:2], atol=1e-9)


# --- barcode ------------------------------------------------------------------------------------


@pytest.mark.parametrize("size", [(480, 270), (1920, 1080)])
def test_barcode_round_trips_through_jpeg(size: tuple[int, int]) -> None:
    scene = Scene(SimLabSettings(), SceneSettings(board="none"))
    cam = CAMERAS["cam2"].scaled(*size)
    for value in (0, 1, 0x5A5A5A, 123456, 2**24 - 1):
        frame = scene.render(cam, 0.7, EXPOSURE, value)
        assert decode_barcode(frame) == value
        ok, jpeg = cv2.imencode(".jpg", frame, [int(cv2.IMWRITE_JPEG_QUALITY), 85])
        assert ok
        assert decode_barcode(cv2.imdecode(jpeg, cv2.IMREAD_COLOR)) == value


def test_barcode_layout() -> None:
    """The layout the flat renderer used (and frame readers rely on): 24 blocks of w // 24 px, MSB
    first, max(8, h // 20) rows high at the bottom; nothing else touched."""
    img = np.full((270, 480, 3), 90, np.uint8)
    encode_barcode(img, 0b1000_0000_0000_0000_0000_0011)
    assert (img[:-13] == 90).all()
    assert (img[-13:, :20] == 255).all() and (img[-13:, 20:440] == 0).all() and (img[-13:, 440:480] == 255).all()
    tiny = np.zeros((100, 120), np.uint8)
    encode_barcode(tiny, 1)
    assert (tiny[-8:, 115:120] == 255).all() and (tiny[:-8] == 0).all() and (tiny[:, :115] == 0).all()
    assert decode_barcode(tiny) == 1


# --- the LED: one 3D point, seen where projected, brightness from the exposure ------------------------


def led_blob(scene: Scene, cam: CameraModel, t_lit: float, t_dark: float) -> np.ndarray:
    """Centroid of what changes between a frame with the LED lit and one with it dark."""
    lit = scene.render(cam, t_lit, EXPOSURE, 0).astype(np.float64)
    dark = scene.render(cam, t_dark, EXPOSURE, 0).astype(np.float64)
    diff = np.abs(lit - dark).sum(axis=2)
    assert diff.max() > 0, f"LED not visible in {cam.name}"
    ys, xs = np.nonzero(diff)
    wgt = diff[ys, xs]
    return np.array([(xs * wgt).sum(), (ys * wgt).sum()]) / wgt.sum()


@pytest.mark.parametrize("quarter", [False, True])
def test_led_is_drawn_where_every_camera_projects_it(quarter: bool) -> None:
    # pulses every 3 s, lifts every 4 s: at t = 12 the LED is lit, at t = 4 dark, the bar in the same place
    sim = SimLabSettings(pulse_period_s=3.0, pulse_width_s=0.05, lift_period_s=4.0)
    scene = Scene(sim, SceneSettings(board="static"))
    for cam in CAMERAS.values():
        if quarter:
            cam = cam.scaled(cam.image_size[0] // 4, cam.image_size[1] // 4)
        expected = cam.project(LED_WORLD.reshape(1, 3))[0]
        got = led_blob(scene, cam, 12.0, 4.0)
        assert np.linalg.norm(got - expected) < 0.3, (cam.name, got, expected)


def test_led_is_not_hidden_by_the_subject() -> None:
    sim = SimLabSettings(pulse_period_s=0.5, pulse_width_s=0.05, lift_period_s=4.0)
    scene = Scene(sim, SceneSettings(board="none"))
    for cam in CAMERAS.values():
        u, v = np.round(cam.project(LED_WORLD.reshape(1, 3))[0]).astype(int)
        for t in np.arange(0.0, 4.0, 0.5):  # through the whole lift, each t at a flash: fully lit
            frame = scene.render(cam, float(t), EXPOSURE, 0)
            assert tuple(frame[v, u]) == (0, 255, 0), (cam.name, t)


def test_led_brightness_is_the_lit_fraction_of_the_exposure() -> None:
    sim = SimLabSettings(pulse_period_s=2.0, pulse_width_s=0.05)
    scene = Scene(sim, SceneSettings(board="none", subject=False))
    cam = CAMERAS["cam3"]
    u, v = np.round(cam.project(LED_WORLD.reshape(1, 3))[0]).astype(int)

    def level(t: float) -> int:
        return int(scene.render(cam, t, EXPOSURE, 0)[v, u, 1])

    assert level(2.0 - 2 * EXPOSURE) == 60  # dark
    # light = dark + (1 - dark) * lit with dark = (60 / 255) ** 2.2, then level = 255 * light ** (1 / 2.2)
    assert level(2.0 - 0.25 * EXPOSURE) == 225  # flash starts 1/4 into the exposure: lit 0.75, light 0.760
    assert level(2.0 - 0.75 * EXPOSURE) == 143  # lit 0.25, light 0.281
    assert level(2.01) == 255  # wholly inside the 50 ms flash
    assert level(2.05 - 0.25 * EXPOSURE) == 143  # flash ends 1/4 into the exposure: lit 0.25
    assert scene.led_level(2.0 - 0.25 * EXPOSURE, EXPOSURE) == 225


# --- the board: rendered views are calibration ground truth -------------------------------------


def test_board_texture_matches_board_coordinates(static_scene: Scene) -> None:
    """The renderer maps texture pixel u to board x = (u + 0.5) / ppm - margin; check on the images."""
    detector = cv2.aruco.CharucoDetector(static_scene.board)
    for ppm, bgr, _ in static_scene._textures:
        if ppm < 20 / static_scene.settings.square_m:
            continue  # too coarse to detect
        corners, ids, _, _ = detector.detectBoard(bgr)
        board_xy = static_scene.board.getChessboardCorners()[ids.ravel(), :2]
        expected = (board_xy + static_scene.margin_m) * ppm - 0.5
        np.testing.assert_allclose(corners.reshape(-1, 2), expected, atol=0.05)


def test_static_board_is_detected_where_projected_in_every_cinema_view(
        static_scene: Scene, static_detections: dict) -> None:
    all_ids, world = static_scene.board_corners_world(0.0)
    assert len(all_ids) == 24 and np.allclose(world[:, 2], 0.0)  # flat on the floor
    for name, (ids, corners) in static_detections.items():
        assert len(ids) >= 20, f"{name}: only {len(ids)} of 24 corners"
        err = np.linalg.norm(corners - CAMERAS[name].project(world[ids]), axis=1)
        # at 60-68 degrees a few corners' refinement windows catch marker edges 2 px away and miss by
        # up to ~2.5 px; a 2x render shows 0.06 px at most, so that is the detector, not the scene
        assert np.median(err) < 0.5, (name, np.median(err))
        assert np.percentile(err, 90) < 1.5, (name, np.percentile(err, 90))


def test_solvepnp_on_detected_corners_recovers_each_camera_pose(
        static_scene: Scene, static_detections: dict) -> None:
    _, world = static_scene.board_corners_world(0.0)
    for name, (ids, corners) in static_detections.items():
        cam = CAMERAS[name]
        ok, rvec, tvec = cv2.solvePnP(world[ids], corners, cam.K, cam.dist)
        assert ok
        R = cv2.Rodrigues(rvec)[0]
        assert rotation_error_deg(R, cam.R) < 0.3, name
        center = -R.T @ tvec.ravel()
        assert np.linalg.norm(center - cam.center_world) < 0.03, name  # 3 cm at 4 m


def test_calibrate_camera_on_the_moving_board_recovers_intrinsics() -> None:
    scene = Scene(SimLabSettings(), SceneSettings(board="moving", subject=False))
    cam = CAMERAS["cam3"]
    detector = cv2.aruco.CharucoDetector(scene.board)
    obj, img, times = [], [], []
    for t in np.arange(0.0, 60.0, 1.5):
        corners, ids, _, _ = detector.detectBoard(scene.render(cam, float(t), EXPOSURE, 0))
        if ids is not None and len(ids) >= 8:
            o, i = scene.board.matchImagePoints(corners, ids)
            obj.append(o)
            img.append(i)
            times.append(float(t))
    assert len(obj) >= 10
    rms, K, dist, rvecs, tvecs = cv2.calibrateCamera(obj, img, cam.image_size, None, None,
                                                      flags=cv2.CALIB_FIX_K3)
    assert rms < 0.4
    assert abs(K[0, 0] / cam.K[0, 0] - 1) < 0.01 and abs(K[1, 1] / cam.K[1, 1] - 1) < 0.01
    assert np.abs(K[:2, 2] - cam.K[:2, 2]).max() < 15
    # the lens distortion is in the frames: the recovered one bends rays as the true one does (~3 px at
    # r = 0.3) to a fraction of a pixel, where the board was seen
    rays = np.column_stack([np.linspace(-0.3, 0.3, 13), np.linspace(0.2, -0.2, 13), np.ones(13)])

    def bent(d: np.ndarray) -> np.ndarray:
        return cv2.projectPoints(rays, np.zeros(3), np.zeros(3), np.eye(3), d)[0].reshape(-1, 2)

    assert np.abs(bent(cam.dist) - rays[:, :2]).max() * cam.K[0, 0] > 2.0
    assert np.abs(bent(dist.ravel()) - bent(cam.dist)).max() * cam.K[0, 0] < 0.5
    for t, rvec in zip(times, rvecs, strict=True):
        R_b, _ = scene.board_pose(t)
        assert rotation_error_deg(cv2.Rodrigues(rvec)[0], cam.R @ R_b) < 1.0


def test_moving_board_is_seen_by_several_cameras_at_a_time() -> None:
    scene = Scene(SimLabSettings(), SceneSettings(board="moving"))
    seen_by = []
    per_camera = dict.fromkeys(CINEMA, 0)
    previous = None
    for t in np.arange(0.0, 60.0, 0.25):
        ids, world = scene.board_corners_world(float(t))
        R_b, _ = scene.board_pose(float(t))
        count = 0
        for name in CINEMA:
            cam = CAMERAS[name]
            px = cam.project(world)
            in_frame = ((px >= 0) & (px < np.array(cam.image_size) - 1)).all()
            to_cam = cam.center_world - world.mean(axis=0)
            slant = math.degrees(math.acos(-R_b[:, 2] @ to_cam / np.linalg.norm(to_cam)))
            if in_frame and slant < 65:
                count += 1
                per_camera[name] += 1
        seen_by.append(count)
        if previous is not None:  # smooth: at 4 Hz sampling no corner jumps more than 0.25 m
            assert np.linalg.norm(world - previous, axis=1).max() < 0.25
        previous = world
    seen_by = np.array(seen_by)
    assert (seen_by >= 1).all()
    assert (seen_by >= 2).mean() > 0.5
    assert min(per_camera.values()) > 0.3 * len(seen_by)


# --- the scene as a whole -----------------------------------------------------------------------


def test_render_sizes_and_determinism() -> None:
    a = Scene(SimLabSettings(), SceneSettings(board="moving"))
    b = Scene(SimLabSettings(), SceneSettings(board="moving"))
    for cam in CAMERAS.values():
        small = cam.scaled(cam.image_size[0] // 4, cam.image_size[1] // 4)
        frame = a.render(small, 3.3, EXPOSURE, 77)
        assert frame.shape == (small.image_size[1], small.image_size[0], 3) and frame.dtype == np.uint8
        np.testing.assert_array_equal(frame, b.render(small, 3.3, EXPOSURE, 77))
    moved = a.render(CAMERAS["cam1"].scaled(480, 270), 10.0, EXPOSURE, 77)
    assert not np.array_equal(moved, a.render(CAMERAS["cam1"].scaled(480, 270), 12.0, EXPOSURE, 77))


def test_export_truth_is_json_and_consistent(static_scene: Scene) -> None:
    truth = json.loads(json.dumps(static_scene.export_truth(CAMERAS)))
    assert set(truth["cameras"]) == set(CAMERAS)
    for name, rec in truth["cameras"].items():
        cam = CAMERAS[name]
        assert rec["role"] == cam.role and rec["image_size"] == list(cam.image_size)
        np.testing.assert_allclose(cv2.Rodrigues(np.array(rec["rvec"]))[0], np.array(rec["R"]), atol=1e-12)
        np.testing.assert_allclose(np.array(rec["K"]), cam.K)
        assert len(rec["dist"]) == 5 and len(rec["t"]) == 3
    board = truth["board"]
    assert (board["squares_x"], board["squares_y"], board["dictionary"]) == (7, 5, static_scene.settings.dictionary)
    R, t = np.array(board["pose"]["R"]), np.array(board["pose"]["t"])
    corners = static_scene.board.getChessboardCorners() @ R.T + t
    np.testing.assert_allclose(corners, static_scene.board_corners_world(0.0)[1])


def test_settings_are_checked() -> None:
    with pytest.raises(ValidationError):
        SceneSettings(dictionary="DICT_NOPE")
    with pytest.raises(ValidationError):
        SceneSettings(marker_m=0.2)
    with pytest.raises(ValidationError):
        SceneSettings(squares_x=12, squares_y=12, dictionary="DICT_4X4_50")  # 72 markers needed
    with pytest.raises(ValidationError):
        SceneSettings(colour="red")
