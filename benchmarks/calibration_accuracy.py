"""Calibration accuracy: the simulated lab's five cameras at 1080p (the phone 720p) photograph the handheld
board at its held poses (with exposure, contrast, defocus and sensor-noise changes per image); the
corners are detected as in a real take, and the same detections go to flexcap's calibration and to
OpenCV's calibrateMultiview. Both start from intrinsics 5 % off (focal lengths and distortion; the
principal point at the image centre), and both
get their world frame from the board on the floor. Compared with the scene's truth: reprojection RMS,
camera position and rotation errors, and held-out corners triangulated (never adjusted) against their
true positions.

    .venv/bin/python benchmarks/calibration_accuracy.py [--poses 100] [--workers 2]
"""

from __future__ import annotations

import argparse
import time

import _common  # noqa: F401  (sys.path, loopback LSL)
import cv2
import numpy as np
from _common import emit

from calibration.geometry import compose, invert, rodrigues, rotation_angle_deg, triangulate, undistort_normalised
from calibration.simviews import errors_against_truth, sim_views
from calibration.solve import SolveOptions, calibrate, world_from_floor

TARGETS = {"position_mm": 0.5, "rotation_deg": 0.05, "triangulation_mm": 0.5, "seconds": 30.0}


def off_by(cameras: dict, factor: float) -> dict:
    """A nominal guess: focal lengths and distortion coefficients `factor` off, principal point at the
    image centre."""
    out = {}
    for c, m in cameras.items():
        w, h = m.image_size
        K = np.array([[m.K[0, 0] * factor, 0, (w - 1) / 2], [0, m.K[1, 1] * factor, (h - 1) / 2], [0, 0, 1]])
        out[c] = (K, m.dist * factor)
    return out


def opencv_multiview(sv, names, initial, used):
    """calibrateMultiview on the same detections. Its 5.0 binding needs: object points near metres, the
    same number of points in every frame (so each frame keeps the corners every camera in it saw,
    repeated up to the full count), and intrinsics as a guess that it keeps fixed."""
    obj_m = (sv.spec.object_points() / 1000.0).astype(np.float32)
    n = len(obj_m)
    mask = np.zeros((len(names), len(used)), np.uint8)
    objs, imgs = [], [[] for _ in names]
    for f, vi in enumerate(used):
        dets = sv.views[vi].detections
        seen = [c for c in names if c in dets]
        common: set[int] = set(range(n))
        for c in seen:
            common &= set(dets[c].ids.tolist())
        while seen and len(common) < 8:
            seen.remove(min(seen, key=lambda c: len(dets[c].ids)))
            common = set(range(n))
            for c in seen:
                common &= set(dets[c].ids.tolist())
        idx = np.resize(np.array(sorted(common) if seen else range(n)), n)
        objs.append(np.ascontiguousarray(obj_m[idx]))
        for ci, c in enumerate(names):
            pts = np.full((n, 2), -1, np.float32)
            if c in seen:
                where = {int(k): j for j, k in enumerate(dets[c].ids)}
                pts = dets[c].corners.astype(np.float32)[[where[k] for k in idx]]
                mask[ci, f] = 1
            imgs[ci].append(np.ascontiguousarray(pts))
    t0 = time.perf_counter()
    out = cv2.calibrateMultiviewExtended(
        objs, imgs, [sv.cameras[c].image_size for c in names], mask,
        np.full((len(names), 1), cv2.CALIB_MODEL_PINHOLE, np.uint8),
        [initial[c][0] for c in names], [initial[c][1].reshape(1, 5) for c in names], [], [],
        flags=cv2.CALIB_USE_INTRINSIC_GUESS)
    seconds = time.perf_counter() - t0
    rms, Ks, dists, Rs, Ts, _pairs, rvecs0, tvecs0, _errors = out
    floor = next(f for f, vi in enumerate(used) if sv.views[vi].floor and mask[0, f] and rvecs0[f] is not None
                 and len(rvecs0[f]))
    Rf, tf = rodrigues(np.asarray(rvecs0[floor]).reshape(3))[0], np.asarray(tvecs0[floor]).reshape(3) * 1000
    R_w, t_w = world_from_floor(Rf, tf, sv.spec)  # cam0 -> world
    R_wi, t_wi = invert(R_w, t_w)
    cams = {}
    for ci, c in enumerate(names):
        R, t = compose(rodrigues(np.asarray(Rs[ci]).reshape(3))[0], np.asarray(Ts[ci]).reshape(3) * 1000,
                       R_wi, t_wi)
        cams[c] = (np.asarray(Ks[ci]), np.asarray(dists[ci]).ravel(), R, t)
    return float(rms), cams, seconds


def triangulation_errors(sv, held, cams) -> np.ndarray:
    """|triangulated - true| (mm) of every held-out corner seen by >= 2 cameras."""
    obj_m = sv.spec.object_points() / 1000.0
    errs = []
    for vi in held:
        Rb, tb = sv.board_poses[vi]
        by_id: dict[int, list] = {}
        for c, d in sv.views[vi].detections.items():
            K, dist, R, t = cams[c]
            for k, xy in zip(d.ids, undistort_normalised(d.corners, K, dist), strict=True):
                by_id.setdefault(int(k), []).append((xy, (R, t)))
        for k, obs in by_id.items():
            if len(obs) >= 2:
                p = triangulate([o[0] for o in obs], [o[1] for o in obs])
                errs.append(np.linalg.norm(p - (obj_m[k] @ Rb.T + tb) * 1000))
    return np.array(errs)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--poses", type=int, default=100, help="held board poses (every 12th on the floor)")
    ap.add_argument("--workers", type=int, default=2, help="processes rendering and detecting")
    args = ap.parse_args()

    t0 = time.perf_counter()
    sv = sim_views(args.poses, workers=args.workers)
    detect_s = time.perf_counter() - t0
    names = list(sv.cameras)
    sizes = {c: sv.cameras[c].image_size for c in names}
    initial = off_by(sv.cameras, 1.05)

    t0 = time.perf_counter()
    cal = calibrate(sv.spec, sizes, sv.views, SolveOptions(initial=initial))
    flex_s = time.perf_counter() - t0
    held = sorted({int(h["view"].split()[-1]) for h in cal.held_out})
    used = [i for i, v in enumerate(sv.views) if i not in held and len(v.detections) >= 1]
    flex_cams = {c: (cc.K, cc.dist, cc.R, cc.t) for c, cc in cal.cameras.items()}
    flex_err = errors_against_truth(cal, sv.cameras)
    flex_tri = triangulation_errors(sv, held, flex_cams)

    cv_rms, cv_cams, cv_s = opencv_multiview(sv, names, initial, used)
    cv_err = {c: {"position_mm": float(np.linalg.norm(-R.T @ t - sv.cameras[c].center_world * 1000)),
                  "rotation_deg": rotation_angle_deg(R, sv.cameras[c].R)} for c, (_K, _d, R, t) in cv_cams.items()}
    cv_tri = triangulation_errors(sv, held, cv_cams)

    def summary(err: dict, tri: np.ndarray, rms: float, seconds: float) -> dict:
        return {"reprojection_rms_px": round(rms, 4),
                "position_mm_max": round(max(e["position_mm"] for e in err.values()), 3),
                "position_mm_mean": round(float(np.mean([e["position_mm"] for e in err.values()])), 3),
                "rotation_deg_max": round(max(e["rotation_deg"] for e in err.values()), 4),
                "triangulation_mm_rms": round(float(np.sqrt(np.mean(tri ** 2))), 3),
                "triangulation_mm_p95": round(float(np.percentile(tri, 95)), 3),
                "seconds": round(seconds, 2),
                "per_camera": {c: {k: round(v, 4) for k, v in e.items()} for c, e in err.items()}}

    flex_rms = float(np.sqrt(np.mean([cc.reprojection_rms ** 2 for cc in cal.cameras.values()])))
    result = {"poses": args.poses, "views_used": len(used), "held_out_views": len(held),
              "held_out_corners": int(len(flex_tri)), "detections_per_camera": {
                  c: sum(c in v.detections for v in sv.views) for c in names},
              "render_and_detect_s": round(detect_s, 1), "targets": TARGETS,
              "flexcap": summary(flex_err, flex_tri, flex_rms, flex_s),
              "opencv_calibrateMultiview": summary(cv_err, cv_tri, cv_rms, cv_s),
              "flexcap_advice": [a.line() for a in cal.advice], "flexcap_stats": cal.stats}
    f, o = result["flexcap"], result["opencv_calibrateMultiview"]
    table = [["", "flexcap", "calibrateMultiview", "target"],
             ["reprojection RMS (px)", f"{f['reprojection_rms_px']:.3f}", f"{o['reprojection_rms_px']:.3f}", ""],
             ["camera position, worst (mm)", f"{f['position_mm_max']:.3f}", f"{o['position_mm_max']:.2f}", "0.5"],
             ["camera position, mean (mm)", f"{f['position_mm_mean']:.3f}", f"{o['position_mm_mean']:.2f}", ""],
             ["camera rotation, worst (deg)", f"{f['rotation_deg_max']:.4f}", f"{o['rotation_deg_max']:.4f}", "0.05"],
             ["triangulation rms (mm)", f"{f['triangulation_mm_rms']:.3f}", f"{o['triangulation_mm_rms']:.2f}", "0.5"],
             ["triangulation p95 (mm)", f"{f['triangulation_mm_p95']:.3f}", f"{o['triangulation_mm_p95']:.2f}", ""],
             ["runtime (s)", f"{f['seconds']:.1f}", f"{o['seconds']:.1f}", "30"]]
    emit("calibration_accuracy", result, table)


if __name__ == "__main__":
    main()
