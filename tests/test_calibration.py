"""Multiview calibration on the simulated lab: its five cameras (known intrinsics and poses) photograph the
handheld board at 1080p (720p for the phone) with exposure, contrast, defocus and noise changes; the
board is detected like in any take. The recovered cameras are compared with the truth; bad inputs get
advice that names the camera."""

from __future__ import annotations

import re
import struct
import tomllib
from pathlib import Path

import cv2
import h5py
import numpy as np
import pytest

from calibration.board import BoardSpec, save_printable
from calibration.commands import accept
from calibration.detect import BoardDetector, Detection, diagnose
from calibration.result import CALIBRATION_FILE, TOML_FILE, copy_into_take, load
from calibration.simviews import errors_against_truth, sim_views
from calibration.solve import SolveOptions, View, calibrate
from drivers.sim.lab import SimLabSettings
from drivers.sim.scene import FLOOR_EVERY, Scene, SceneSettings, lab_cameras

pytestmark = pytest.mark.timeout(300)


@pytest.fixture(scope="module")
def lab_views():
    return sim_views(100, workers=2)  # the benchmark's views: 100 held poses, 9 of them on the floor


@pytest.fixture(scope="module")
def lab_calibration(lab_views):
    sizes = {c: m.image_size for c, m in lab_views.cameras.items()}
    return calibrate(lab_views.spec, sizes, lab_views.views)


def sizes_of(sv) -> dict:
    return {c: m.image_size for c, m in sv.cameras.items()}


# --- the board -------------------------------------------------------------------------------------


def test_printable_board_is_at_true_scale_and_detects(tmp_path) -> None:
    spec = BoardSpec()
    png = save_printable(spec, tmp_path / "board.png", dpi=300)
    data = png.read_bytes()
    at = data.index(b"pHYs")
    ppm_x, ppm_y, unit = struct.unpack(">IIB", data[at + 4:at + 13])
    assert (ppm_x, ppm_y, unit) == (11811, 11811, 1)  # 300 dpi in pixels per metre
    img = cv2.imread(str(png), cv2.IMREAD_GRAYSCALE)
    assert img.shape == (7088, 9450)  # (500 + 100) mm and (700 + 100) mm at 300 dpi, margins half a square
    # a square measures 100 mm (to a twentieth of a millimetre) between its edges, found in the image
    row = img[img.shape[0] // 2] < 128
    edges = np.flatnonzero(np.diff(row.astype(np.int8)))
    assert abs((edges[-1] - edges[0]) / 7 * 25.4 / 300 - 100.0) < 0.05
    small = cv2.resize(img, None, fx=0.1, fy=0.1, interpolation=cv2.INTER_AREA)
    det = BoardDetector(spec).detect(small)
    assert sorted(det.ids.tolist()) == list(range(24))
    pdf = save_printable(spec, tmp_path / "board.pdf", dpi=300).read_bytes()
    box = [float(v) for v in re.search(rb"MediaBox \[ *([\d. ]+)\]", pdf).group(1).split()]
    assert box[0] == box[1] == 0 and abs(box[2] / 72 * 25.4 - 800) < 0.2 and abs(box[3] / 72 * 25.4 - 600) < 0.2
    with pytest.raises(ValueError, match=r"board.jpg: the board is written as .png or .pdf"):
        save_printable(spec, tmp_path / "board.jpg")


def test_board_definitions_that_cannot_be_made_are_refused() -> None:
    with pytest.raises(ValueError, match=r"marker_mm \(100\) must be smaller than square_mm \(100\)"):
        BoardSpec(marker_mm=100)
    with pytest.raises(ValueError, match="unknown ArUco dictionary 'DICT_4x4'"):
        BoardSpec(dictionary="DICT_4x4")
    with pytest.raises(ValueError, match="DICT_4X4_50 has 50 markers; a 12x9 board needs 54"):
        BoardSpec(squares_x=12, squares_y=9)


def test_a_wrong_board_definition_is_named() -> None:
    scene = Scene(SimLabSettings(), SceneSettings(board="handheld", subject=False))
    cam = lab_cameras()["cam2"]
    img = scene.render(cam, 5 * 2.0 + 0.5, 1 / 120, 0)  # the 5th held pose: cam2 sees all 17 markers
    right = BoardSpec()
    assert BoardDetector(right).detect(img).usable and diagnose(img, right) is None
    other_dictionary = BoardSpec(dictionary="DICT_5X5_100")
    assert len(BoardDetector(other_dictionary).detect(img).ids) == 0
    assert diagnose(img, other_dictionary) == ("its markers are from DICT_4X4_50, the board is configured with "
                                               "DICT_5X5_100")
    too_small = BoardSpec(squares_x=5, squares_y=5)
    assert diagnose(img, too_small).startswith("markers [12, 13, 14, 15, 16] are not on a 5x5 board (ids 0-11)")


# --- calibrating the lab ---------------------------------------------------------------------------


def test_the_lab_is_recovered(lab_views, lab_calibration) -> None:
    cal = lab_calibration
    assert cal.ok, cal.report()
    assert list(cal.cameras) == ["cam1", "cam2", "cam3", "cam4", "phone"]
    assert "the board on the floor" in cal.world and "marked" in cal.world
    errors = errors_against_truth(cal, lab_views.cameras)
    for c, e in errors.items():
        # the targets: position under 0.5 mm, rotation under 0.05 degrees. The worst camera lands at
        # 0.50 mm: the floor board, seen at 60-68 degrees, sets the world frame for all of them
        assert e["position_mm"] < 0.6 and e["rotation_deg"] < 0.05, (c, e)
        assert e["focal_rel"] < 0.001 and e["principal_px"] < 1.5, (c, e)
        assert cal.cameras[c].reprojection_rms < 0.15, c
    assert np.mean([e["position_mm"] for e in errors.values()]) < 0.4
    tri = cal.triangulation
    assert tri["views"] >= 3 and tri["points"] >= 50 and tri["rms_mm"] < 0.5, tri
    # the held-out corners against their true places (not only the board's shape)
    obj = lab_views.spec.object_points() / 1000
    off = []
    for held in cal.held_out:
        Rb, tb = lab_views.board_poses[int(held["view"].split()[-1])]
        off.append(np.linalg.norm(np.array(held["world_mm"]) - (obj[held["ids"]] @ Rb.T + tb) * 1000, axis=1))
    off = np.concatenate(off)
    assert len(off) == tri["points"] and np.sqrt(np.mean(off ** 2)) < 0.5 and np.median(off) < 0.35
    pairs = cal.shared_views
    assert set(pairs) == {"cam1-cam2", "cam1-cam3", "cam1-cam4", "cam1-phone", "cam2-cam3", "cam2-cam4",
                          "cam2-phone", "cam3-cam4", "cam3-phone", "cam4-phone"}
    assert sum(pairs.values()) >= 40
    rms = np.array([e["rms_px"] for e in cal.view_errors])
    assert len(rms) > 150 and np.median(rms) < 0.15
    assert {e["camera"] for e in cal.view_errors} == set(cal.cameras)


def test_intrinsics_five_percent_off_are_refined(lab_views) -> None:
    sv = lab_views
    initial = {}
    for c, m in sv.cameras.items():
        K = m.K.copy()
        K[:2, :2] *= 1.05
        K[0, 2], K[1, 2] = (m.image_size[0] - 1) / 2, (m.image_size[1] - 1) / 2
        initial[c] = (K, m.dist * 1.05)
    cal = calibrate(sv.spec, sizes_of(sv), sv.views, SolveOptions(initial=initial))
    assert cal.ok
    for c, e in errors_against_truth(cal, sv.cameras).items():
        assert e["focal_rel"] < 0.001 and e["position_mm"] < 0.6 and e["rotation_deg"] < 0.05, (c, e)


def test_the_floor_is_found_when_not_marked(lab_views) -> None:
    views = [View(v.label, v.detections, floor=False) for v in lab_views.views]
    cal = calibrate(lab_views.spec, sizes_of(lab_views), views)
    assert "found: flat and lowest" in cal.world
    assert cal.world.startswith(f"the board on the floor (view hold 0, hold {FLOOR_EVERY}, ")
    for c, e in errors_against_truth(cal, lab_views.cameras).items():
        assert e["position_mm"] < 0.6, (c, e)


def test_a_camera_that_shares_no_view_is_named(lab_views) -> None:
    # the phone sees the board only when no other camera does
    views = []
    for v in lab_views.views:
        if "phone" in v.detections and len(v.detections) > 1:
            views.append(View(v.label, {c: d for c, d in v.detections.items() if c != "phone"}, v.floor))
            views.append(View(v.label + " (phone alone)", {"phone": v.detections["phone"]}))
        else:
            views.append(v)
    cal = calibrate(lab_views.spec, sizes_of(lab_views), views)
    assert not cal.ok
    assert "phone" not in cal.cameras and sorted(cal.cameras) == ["cam1", "cam2", "cam3", "cam4"]
    errors = [a for a in cal.errors if a.camera == "phone"]
    assert len(errors) == 1 and errors[0].text.startswith("phone shares no view with ")
    assert "0 of them with another camera" in errors[0].text
    assert "hold the board where phone and a neighbouring camera both see it" in errors[0].text
    with pytest.raises(ValueError, match="a calibration with errors is never saved: phone shares no view"):
        accept(cal, Path("/nonexistent"))


def test_too_few_views_and_no_board_are_named(lab_views) -> None:
    few = [v for v in lab_views.views if "cam1" in v.detections][:3]
    cal = calibrate(lab_views.spec, {"cam1": (1920, 1080), "cam2": (1920, 1080)}, few + [View("empty", {})])
    assert not cal.ok and cal.cameras == {}
    texts = [a.text for a in cal.errors]
    n2 = sum("cam2" in v.detections for v in few)
    assert texts[:2] == [
        "cam1: the board was found in 3 views; at least 6 are needed: show it to cam1 at several places and tilts",
        f"cam2: the board was found in {n2} view{'s' if n2 != 1 else ''}; at least 6 are needed: show it to cam2 "
        "at several places and tilts" if n2 else
        "cam2: the board was found in no view; at least 6 are needed: show it to cam2 at several places and tilts"]
    nothing = calibrate(lab_views.spec, {"cam3": (1920, 1080)}, [View("empty", {})] * 4)
    assert [a.text for a in nothing.errors] == [
        "cam3: the board was found in no view; at least 6 are needed: show it to cam3 at several places and tilts"]


def test_views_at_one_tilt_are_called_degenerate() -> None:
    cam = lab_cameras()["cam1"]
    spec = BoardSpec()
    obj = spec.object_points() / 1000
    rng = np.random.default_rng(5)
    views = []
    R = cam.R.T  # the board's axes along the camera's: face-on, every time
    for k in range(8):
        side, up = rng.uniform(-0.6, 0.6), rng.uniform(-0.3, 0.3)
        centre = cam.center_world + cam.R[2] * 3.0 + cam.R[0] * side + cam.R[1] * up
        t = centre - R @ spec.centre_mm() / 1000
        px = cam.project(obj @ R.T + t) + rng.normal(0, 0.1, (len(obj), 2))
        views.append(View(f"v{k}", {"cam1": Detection(np.arange(len(obj)), px, 17)}))
    cal = calibrate(spec, {"cam1": cam.image_size}, views)
    tilt = [a for a in cal.advice if "nearly one tilt" in a.text]
    assert len(tilt) == 1 and tilt[0].level == "error" and tilt[0].camera == "cam1"
    # (the tilts come from the poor intrinsics these views give: a degree apart, not zero)
    assert re.fullmatch(r"cam1: the board was seen at nearly one tilt \(its views differ by at most [012] degrees\): "
                        r"tilt it 30 degrees up, down and sideways in cam1's view", tilt[0].text)
    assert not cal.ok


# --- files -----------------------------------------------------------------------------------------


def test_saved_with_the_session_copied_into_takes_and_exported(lab_calibration, tmp_path) -> None:
    cal = lab_calibration
    session = tmp_path / "2026-11-22_S01"
    with pytest.raises(ValueError, match=r"2026-11-22_S01 is not a session folder \(no session.json\)"):
        accept(cal, session)
    take = fake_take(session / "001_squat_1", {})
    recording = fake_take(session / "002_squat_2", {}, finished=False)
    (session / "session.json").write_text("{}")
    text = accept(cal, session)
    assert text == f"saved {session / CALIBRATION_FILE} and {session / TOML_FILE}; copied into 1 take"
    with h5py.File(recording / "take.h5", "r") as f:  # a take still being recorded is left alone
        assert "calibration" not in f
    back = load(session / CALIBRATION_FILE)
    assert back.report() == cal.report()
    for c, cc in cal.cameras.items():
        for name in ("K", "dist", "R", "t"):
            np.testing.assert_array_equal(getattr(back.cameras[c], name), getattr(cc, name))
    with h5py.File(take / "take.h5", "r") as f:
        g = f["calibration/cam3"]
        np.testing.assert_array_equal(g["K"][()], cal.cameras["cam3"].K)
        assert list(g["image_size"][()]) == [1920, 1080] and g.attrs["reprojection_rms"] > 0
        assert f["calibration"].attrs["units"] == "mm"
    assert load(take / "take.h5").cameras["phone"].image_size == (1280, 720)
    # a take's calibration is never replaced; saving again keeps the earlier files
    assert copy_into_take(session / CALIBRATION_FILE, take / "take.h5") is None
    accept(cal, session)
    accept(cal, session)
    assert len(list(session.glob("calibration-*.h5"))) == 2
    toml = tomllib.loads((session / TOML_FILE).read_text())
    assert [toml[f"cam_{i}"]["name"] for i in range(5)] == ["cam1", "cam2", "cam3", "cam4", "phone"]
    c2 = toml["cam_1"]
    assert c2["size"] == [1920, 1080] and np.allclose(c2["matrix"], cal.cameras["cam2"].K)
    np.testing.assert_allclose(cv2.Rodrigues(np.array(c2["rotation"]))[0], cal.cameras["cam2"].R, rtol=0, atol=1e-12)
    assert np.allclose(c2["translation"], cal.cameras["cam2"].t) and toml["metadata"]["units"] == "mm"



def fake_take(folder: Path, cameras: dict[str, tuple[int, int]], finished: bool = True) -> Path:
    """A take folder with a take.h5 and camera files of the given frame sizes (no frames: enough for
    what is copied where)."""
    folder.mkdir(parents=True)
    with h5py.File(folder / "take.h5", "w") as f:
        f.attrs["format"] = "flexcap.take"
        if finished:
            f.attrs["stopped_lsl"] = 1.0
        g = f.create_group("cameras")
        for cam, (w, h) in cameras.items():
            g.create_group(cam)
            with h5py.File(folder / f"{cam}.h5", "w") as cf:
                cf.attrs["width"], cf.attrs["height"] = w, h
    return folder


def test_takes_recorded_at_another_size_get_scaled_intrinsics(lab_calibration, tmp_path) -> None:
    from acquisition.rig import RigController

    cal = lab_calibration
    lab = tmp_path / "2026-11-22_calibration"
    lab.mkdir()
    (lab / "session.json").write_text("{}")
    accept(cal, lab)
    # a subject's session later that day, its cameras recording at half size (the phone at another shape)
    take = fake_take(tmp_path / "2026-11-22_S02" / "001_squat_1", {"cam1": (960, 540), "phone": (640, 480)})
    problems: list[str] = []
    RigController._copy_calibration(take, problems)
    assert problems == ["calibration not copied for phone: calibrated at 1280x720, recorded at 640x480 (another "
                        "shape: calibrate this camera at the size it records)"]
    assert (take.parent / CALIBRATION_FILE).read_bytes() == (lab / CALIBRATION_FILE).read_bytes()
    with h5py.File(take / "take.h5", "r") as f:
        g = f["calibration/cam1"]
        K = cal.cameras["cam1"].K
        np.testing.assert_allclose(g["K"][()], [[K[0, 0] / 2, 0, (K[0, 2] + 0.5) / 2 - 0.5],
                                                [0, K[1, 1] / 2, (K[1, 2] + 0.5) / 2 - 0.5], [0, 0, 1]], rtol=1e-12)
        assert list(g["image_size"][()]) == [960, 540] and list(g.attrs["calibrated_at"]) == [1920, 1080]
        np.testing.assert_array_equal(g["t"][()], cal.cameras["cam1"].t)
        assert "phone" not in f["calibration"] and "cam3" in f["calibration"]


def test_a_camera_whose_views_are_bad_is_not_called_good(lab_views) -> None:
    """cam2's corners are off by several pixels in most of its views (a misdetection, a bent board): the
    adjustment must not keep those views on the few corners that happen to fit."""
    rng = np.random.default_rng(2)
    views, good = [], 0
    for v in lab_views.views:
        d = v.detections.get("cam2")
        if d is not None:
            good += 1
            if good > 4:  # all but four
                d = Detection(d.ids, d.corners + rng.normal(0, 6.0, d.corners.shape), d.markers)
        views.append(View(v.label, {**v.detections, **({"cam2": d} if d is not None else {})}, v.floor))
    cal = calibrate(lab_views.spec, sizes_of(lab_views), views)
    assert not cal.ok
    errors = [a.text for a in cal.errors if a.camera == "cam2"]
    assert len(errors) == 1 and re.fullmatch(r"cam2: only \d of its views fit the others once the outliers were "
                                             r"dropped \(\d+ of \d+ corners\): check cam2's focus and the "
                                             r"board's flatness, and capture more views", errors[0])


# --- the command line ------------------------------------------------------------------------------


def test_command_line_board_and_bad_takes(tmp_path) -> None:
    import subprocess
    import sys

    from tests.conftest import ROOT

    def flexcap(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "acquisition.cli", "calibrate", *args], capture_output=True,
                              text=True, timeout=120, cwd=ROOT)

    done = flexcap("board", "--out", str(tmp_path / "big.pdf"), "--rig", "simlab-calibration")
    assert done.returncode == 0, done.stderr
    assert done.stdout == (f"wrote {tmp_path / 'big.pdf'}: 7x5 squares of 150 mm, markers 112.5 mm, DICT_4X4_50, "
                           "1200 x 900 mm with its margin; print at 100 % (actual size) and check that a square "
                           "measures 150 mm\n")
    missing = flexcap("run", str(tmp_path / "nothing"))
    assert missing.returncode == 2
    assert missing.stderr == f"flexcap: {tmp_path / 'nothing'}: no take file (expected a take folder or its take.h5)\n"
    take = tmp_path / "take"
    take.mkdir()
    with h5py.File(take / "take.h5", "w") as f:
        f.create_group("cameras")
    empty = flexcap("run", str(take))
    assert empty.returncode == 2 and empty.stderr.endswith(f"flexcap: {take}: the take has no camera frame files\n")
    wrong = flexcap("board", "--out", str(tmp_path / "b.svg"))
    assert wrong.returncode == 2 and "b.svg: the board is written as .png or .pdf, not .svg" in wrong.stderr
