"""From board detections in synchronised views to a calibration of every camera in one metric frame.

1. Intrinsics per camera (cv2.calibrateCamera on its own views), unless a starting guess is given.
2. The board's pose in each camera's view (planar PnP), and from the views two cameras share their
   relative pose (a robust average); the cameras joined by the pairs that share the most views.
3. A bundle adjustment of everything at once, intrinsics included: scipy's least_squares over the
   reprojection errors of every corner, with a sparse Jacobian (a corner depends on one camera and one
   board pose) and a robust loss; then corners and views that disagree are dropped and it runs again.
4. The world frame from the view of the board lying on the floor: origin at its centre, x along its
   long edge, z up; millimetres, as the board is measured.
5. Checks: reprojection RMS per camera and per view, the views each pair shares, and held-out views
   (never adjusted) triangulated and compared with the board's true shape, in millimetres.

Every problem found on the way is Advice that names the camera and what to do.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from itertools import combinations

import cv2
import numpy as np
from scipy.optimize import least_squares
from scipy.sparse import lil_matrix

from calibration.board import BoardSpec
from calibration.detect import MIN_CORNERS, Detection
from calibration.geometry import (
    compose,
    distort_project,
    intrinsics_matrices,
    intrinsics_vector,
    invert,
    mean_pose,
    rigid_fit,
    rodrigues,
    rotvec,
    triangulate,
    undistort_normalised,
)
from calibration.result import Advice, Calibration, CameraCalibration

MIN_VIEWS = 6  # per camera: fewer do not pin down its intrinsics
MIN_SHARED = 2  # views two cameras must share for a trusted relative pose
HOLDOUT_EVERY = 8  # every 8th view seen by >= 2 cameras is kept out of the adjustment for the check
MIN_HOLDOUT_TOTAL = 16  # ...when there are at least this many such views
MAX_RMS_PX = 1.0  # a camera adjusted to more than this does not fit the board model
MIN_REJECT_PX = 0.35  # a corner is never called an outlier for missing by less than this
MAX_REJECTED = 0.2  # a camera losing more of its corners than this as outliers gets a warning
MIN_VIEW_KEPT = 0.5  # a camera's view that loses more of its corners than this as outliers is dropped whole
MAX_CHECK_MM = 2.0  # held-out corners triangulated further than this (rms) from the board's shape: warning
BAD_CHECK_MM = 5.0  # ...and this far: the calibration is wrong
MIN_TILT_SPREAD_DEG = 15.0
FLOOR_TILT_DEG = 20.0  # a board this close to level may be the floor view (when none is marked)
FLOOR_SAME_MM = 5.0  # floor views whose board poses differ by more were not of one board lying still
MIN_COVERAGE = 0.25
MAX_NFEV = 500  # per round: a cap; on 100 views of 5 cameras each round converges in 10-35
N_CAM = 15  # rvec, tvec, fx, fy, cx, cy, k1, k2, p1, p2, k3
N_VIEW = 6

Progress = Callable[[float, str], None]


@dataclass
class View:
    """One moment seen by several cameras: their detections of the board (held still)."""

    label: str
    detections: dict[str, Detection]
    floor: bool = False  # the board lies on the floor: this view sets the world frame


@dataclass
class SolveOptions:
    fix_k3: bool = True  # k3 is rarely needed by cinema lenses and soaks up noise when free
    holdout: bool = True
    loss: str = "soft_l1"
    f_scale_px: float = 1.0
    initial: dict[str, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)  # camera -> (K, dist)


class _Problem:
    """The adjustment's observations and parameters (cameras then board poses, in one vector)."""

    def __init__(self, cams: list[str], obj: np.ndarray, views: list[View], used: list[int]) -> None:
        self.cams = cams
        self.view_ids = used
        cam_i, view_i, ids, uv = [], [], [], []
        for vi, v in enumerate(used):
            for ci, c in enumerate(cams):
                d = views[v].detections.get(c)
                if d is None or not d.usable:
                    continue
                cam_i.append(np.full(len(d.ids), ci))
                view_i.append(np.full(len(d.ids), vi))
                ids.append(d.ids)
                uv.append(d.corners)
        self.cam_i = np.concatenate(cam_i)
        self.view_i = np.concatenate(view_i)
        self.corner_id = np.concatenate(ids)
        self.pts = obj[self.corner_id]
        self.uv = np.concatenate(uv)
        self.keep = np.ones(len(self.uv), dtype=bool)

    def unpack(self, full: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        n = len(self.cams) * N_CAM
        return full[:n].reshape(-1, N_CAM), full[n:].reshape(-1, N_VIEW)

    def project(self, full: np.ndarray, rows: np.ndarray | None = None) -> np.ndarray:
        cam, vw = self.unpack(full)
        sel = np.flatnonzero(self.keep) if rows is None else rows
        ci, vi = self.cam_i[sel], self.view_i[sel]
        Rv, Rc = rodrigues(vw[:, :3]), rodrigues(cam[:, :3])
        x_ref = np.einsum("nij,nj->ni", Rv[vi], self.pts[sel]) + vw[vi, 3:]
        x_cam = np.einsum("nij,nj->ni", Rc[ci], x_ref) + cam[ci, 3:6]
        return distort_project(x_cam, cam[ci, 6:])

    def sparsity(self, free: np.ndarray) -> lil_matrix:
        sel = np.flatnonzero(self.keep)
        n_cam = len(self.cams) * N_CAM
        full = lil_matrix((2 * len(sel), len(free)), dtype=np.int8)
        rows = np.arange(len(sel))
        col_of = -np.ones(n_cam + len(self.view_ids) * N_VIEW, dtype=np.int64)
        col_of[free] = np.arange(len(free))
        for k in range(N_CAM):
            cols = col_of[self.cam_i[sel] * N_CAM + k]
            ok = cols >= 0
            for d in (0, 1):
                full[2 * rows[ok] + d, cols[ok]] = 1
        for k in range(N_VIEW):
            cols = col_of[n_cam + self.view_i[sel] * N_VIEW + k]
            for d in (0, 1):
                full[2 * rows + d, cols] = 1
        return full


def calibrate(spec: BoardSpec, image_sizes: dict[str, tuple[int, int]], views: list[View],
              options: SolveOptions | None = None, progress: Progress | None = None) -> Calibration:
    """Calibrate the cameras of `image_sizes` from `views`. Never raises on bad data: what went wrong is in
    the result's advice (and `ok` is False)."""
    opt = options or SolveOptions()
    say = progress or (lambda _f, _t: None)
    started = time.perf_counter()
    requested = list(image_sizes)
    views = [View(v.label, {c: d for c, d in v.detections.items() if c in image_sizes}, v.floor) for v in views]
    advice: list[Advice] = []
    obj = spec.object_points()
    out = Calibration(spec, {}, requested, "not set", advice=advice)

    # which views each camera can use, and which views are held out for the check
    usable = {c: [i for i, v in enumerate(views) if c in v.detections and v.detections[c].usable] for c in requested}
    multi = [i for i, v in enumerate(views) if not v.floor and sum(d.usable for d in v.detections.values()) >= 2]
    held = set(multi[HOLDOUT_EVERY // 2::HOLDOUT_EVERY]) if opt.holdout and len(multi) >= MIN_HOLDOUT_TOTAL else set()
    fit_views = {c: [i for i in usable[c] if i not in held] for c in requested}

    # 1. intrinsics
    say(0.05, "intrinsics per camera")
    intr: dict[str, np.ndarray] = {}
    for c in requested:
        n = len(fit_views[c])
        if n < MIN_VIEWS:
            seen = f"in {n} view{'s' if n != 1 else ''}" if n else "in no view"
            advice.append(Advice("error", c, f"{c}: the board was found {seen}; at least {MIN_VIEWS} are needed: "
                                 f"show it to {c} at several places and tilts"))
            continue
        if c in opt.initial:
            intr[c] = intrinsics_vector(*opt.initial[c])
            continue
        o = [obj[views[i].detections[c].ids].astype(np.float32) for i in fit_views[c]]
        p = [views[i].detections[c].corners.astype(np.float32) for i in fit_views[c]]
        try:
            _rms, K, dist, _r, _t = cv2.calibrateCamera(o, p, image_sizes[c], None, None,
                                                        flags=cv2.CALIB_FIX_K3 if opt.fix_k3 else 0)
        except cv2.error as exc:
            advice.append(Advice("error", c, f"{c}: its views do not determine a camera ({exc.msg.strip()}): "
                                 "tilt the board more, and fill the image"))
            continue
        intr[c] = intrinsics_vector(K, dist)

    # 2. board poses per camera and view, and relative camera poses
    say(0.15, "board poses and shared views")
    pose: dict[tuple[str, int], tuple[np.ndarray, np.ndarray]] = {}
    for c, v_all in intr.items():
        K, dist = intrinsics_matrices(v_all)
        for i in usable[c]:
            d = views[i].detections[c]
            ok, rvec, tvec = cv2.solvePnP(obj[d.ids], d.corners, K, dist, flags=cv2.SOLVEPNP_IPPE)
            if ok:
                ok, rvec, tvec = cv2.solvePnP(obj[d.ids], d.corners, K, dist, rvec, tvec, True,
                                              flags=cv2.SOLVEPNP_ITERATIVE)
            if ok and tvec[2, 0] > 0:
                pose[(c, i)] = (rodrigues(rvec)[0], tvec.reshape(3))
    cams = list(intr)
    shared = {(a, b): [i for i in fit_views[a] if (a, i) in pose and (b, i) in pose]
              for a, b in combinations(cams, 2)}
    out.shared_views = {f"{a}-{b}": len(shared[(a, b)]) for a, b in combinations(requested, 2)
                        if (a, b) in shared}
    reference, rel = _join_cameras(cams, shared, pose)
    if reference is None:
        return _finish(out, started)
    joined = list(rel)
    for c in cams:
        if c not in rel:
            together = len({i for i in usable[c] if any((o, i) in pose for o in cams if o != c)})
            advice.append(Advice("error", c, f"{c} shares no view with {reference}'s group (it saw the board in "
                                 f"{len(usable[c])} views, {together} of them with another camera: too few to place "
                                 f"it): hold the board where {c} and a neighbouring camera both see it"))
    # board pose per view in the reference camera's frame, from the camera that sees most of it
    fit_ids = sorted({i for c in joined for i in fit_views[c] if (c, i) in pose})
    vposes = []
    for i in fit_ids:
        c = max((c for c in joined if (c, i) in pose), key=lambda c: len(views[i].detections[c].ids))
        vposes.append(compose(*invert(*rel[c]), *pose[(c, i)]))

    # 3. bundle adjustment
    say(0.3, f"adjusting {len(joined)} cameras and {len(fit_ids)} board poses")
    problem = _Problem(joined, obj, views, fit_ids)
    full = np.concatenate([np.concatenate([rotvec(rel[c][0]), rel[c][1], intr[c]]) for c in joined]
                          + [np.concatenate([rotvec(R), t]) for R, t in vposes])
    fixed = np.zeros(len(full), dtype=bool)
    ref_i = joined.index(reference)
    fixed[ref_i * N_CAM:ref_i * N_CAM + 6] = True  # the reference camera's pose sets the frame
    if opt.fix_k3:
        fixed[np.arange(len(joined)) * N_CAM + 14] = True
    free = np.flatnonzero(~fixed)
    rounds = []
    f_scale = opt.f_scale_px
    for round_no in range(4):
        full, result = _adjust(problem, full, free, opt, f_scale)
        rounds.append(result)
        rejected, sigma = _reject_outliers(problem, full)
        # the robust loss's scale follows the corners' own scatter once it is known
        f_scale = max(3 * sigma, 0.05)
        say(0.3 + 0.2 * (round_no + 1), f"adjusted (round {round_no + 1}): {rejected} corners rejected")
        if rejected == 0:
            break
    cam_params, view_params = problem.unpack(full)
    if rounds[-1].status == 0:  # still moving when it was stopped: its numbers are not the optimum
        advice.append(Advice("error", None, f"the bundle adjustment did not converge in {MAX_NFEV} steps: "
                             "check the board definition and capture the views again"))

    # 4. the world frame
    say(0.9, "world frame and checks")
    floor = [k for k, i in enumerate(fit_ids) if views[i].floor and (problem.keep & (problem.view_i == k)).any()]
    found = "marked"
    if any(v.floor for v in views) and not floor:
        advice.append(Advice("warning", None, "the view marked as the floor shows no board that fits (too slanted or "
                             "hidden?): the floor was looked for among the other views"))
    if not floor:
        floor, found = _find_floor(cam_params, view_params, problem, spec), "found: flat and lowest"
    if floor:
        Rf, tf = _floor_pose(view_params[floor], advice)  # board -> reference
        R_w, t_w = world_from_floor(Rf, tf, spec)
        labels = ", ".join(views[fit_ids[k]].label for k in floor)
        out.world = (f"the board on the floor (view {labels}, {found}): origin at its centre, "
                     "x along its long edge, z up, mm")
    else:
        R_w, t_w = np.eye(3), np.zeros(3)
        out.world = f"{reference}'s camera frame (no view of the board on the floor), mm"
        advice.append(Advice("warning", None, "no view of the board lying on the floor: the world frame is "
                             f"{reference}'s; lay the board flat at the centre and capture it (Floor)"))
    R_wi, t_wi = invert(R_w, t_w)  # world -> reference
    res = problem.uv - problem.project(full, np.arange(len(problem.uv)))
    err = np.linalg.norm(res, axis=1)
    for ci, c in enumerate(joined):
        K, dist = intrinsics_matrices(cam_params[ci, 6:])
        R, t = compose(rodrigues(cam_params[ci, :3])[0], cam_params[ci, 3:6], R_wi, t_wi)
        mine = (problem.cam_i == ci) & problem.keep
        out.cameras[c] = CameraCalibration(c, tuple(image_sizes[c]), K, dist, R, t,
                                           float(np.sqrt(np.mean(err[mine] ** 2))) if mine.any() else float("nan"),
                                           int(len(np.unique(problem.view_i[mine]))), int(mine.sum()))
    out.cameras = {c: out.cameras[c] for c in requested if c in out.cameras}  # in the order asked for
    for vi, i in enumerate(fit_ids):
        for ci, c in enumerate(joined):
            rows = (problem.view_i == vi) & (problem.cam_i == ci)
            if rows.any():
                kept = rows & problem.keep
                out.view_errors.append({"view": views[i].label, "camera": c, "corners": int(rows.sum()),
                                        "rejected": int(rows.sum() - kept.sum()),
                                        "rms_px": round(float(np.sqrt(np.mean(err[rows] ** 2))), 4)})
    if floor:
        below = [c for c, cc in out.cameras.items() if cc.center[2] <= 0]
        if below:
            advice.append(Advice("error", None, f"{', '.join(below)} would be below the floor: the view taken as "
                                 f"the floor ({labels}) does not show the board lying on it; "
                                 "capture the floor view again"))
    for ci, c in enumerate(joined):
        mine = problem.cam_i == ci
        cc = out.cameras[c]
        if cc.views < MIN_VIEWS:
            advice.append(Advice("error", c, f"{c}: only {cc.views} of its views fit the others once the outliers were "
                                 f"dropped ({int((mine & ~problem.keep).sum())} of {int(mine.sum())} corners): check "
                                 f"{c}'s focus and the board's flatness, and capture more views"))
        elif (mine & ~problem.keep).sum() > MAX_REJECTED * mine.sum():
            advice.append(Advice("warning", c, f"{c}: {int((mine & ~problem.keep).sum())} of its {int(mine.sum())} "
                                 "corners did not fit and were dropped (blur, glare, a bent board?)"))
    out.triangulation = _triangulation_check(out, obj, [views[i] for i in sorted(held)])
    tri = out.triangulation.get("rms_mm")
    if tri is not None and tri > MAX_CHECK_MM:
        advice.append(Advice("error" if tri > BAD_CHECK_MM else "warning", None,
                             f"the check failed: corners of views kept out of the adjustment triangulate {tri:.1f} mm "
                             "(rms) from the board's shape; capture more views, with every camera pair sharing some"))
    _judge(out, views, usable, image_sizes, obj)
    out.stats = {"views": len(fit_ids), "held_out": len(held), "corners": int(problem.keep.sum()),
                 "rejected": int((~problem.keep).sum()), "reference": reference,
                 "iterations": int(sum(r.nfev for r in rounds))}
    say(1.0, "done")
    return _finish(out, started)


def world_from_floor(Rf: np.ndarray, tf: np.ndarray, spec: BoardSpec) -> tuple[np.ndarray, np.ndarray]:
    """reference -> world, given the floor board's pose in the reference frame (board -> reference): the
    origin at the board's centre, x along its long edge, z up out of its printed face."""
    flip = np.diag([1.0, -1.0, -1.0])  # board x, -y, -z
    return flip @ Rf.T, -flip @ Rf.T @ tf - flip @ spec.centre_mm()


def _find_floor(cam_params: np.ndarray, view_params: np.ndarray, problem: _Problem, spec: BoardSpec) -> list[int]:
    """Without a marked floor view: the board lying flat below the cameras. Cameras on tripods stand
    nearly level and look inwards from around the area, so their "up" directions (-y) average to about
    the vertical; the floor view is the lowest board whose printed face points within FLOOR_TILT_DEG of
    it, seen by at least two cameras."""
    ups = rodrigues(cam_params[:, :3]).transpose(0, 2, 1)[:, :, 1] * -1.0  # each camera's up, reference frame
    up = ups.mean(axis=0)
    up /= np.linalg.norm(up)
    R_v = rodrigues(view_params[:, :3])
    faces = -R_v[:, :, 2]  # the printed face's normal (board z points into the board)
    centres = np.einsum("nij,j->ni", R_v, spec.centre_mm()) + view_params[:, 3:]
    cams_per_view = np.array([len(np.unique(problem.cam_i[problem.keep & (problem.view_i == k)]))
                              for k in range(len(view_params))])
    flat = np.flatnonzero((faces @ up > np.cos(np.radians(FLOOR_TILT_DEG))) & (cams_per_view >= 2))
    if not len(flat):
        return []
    heights = centres[flat] @ up
    lowest = heights.min()
    # the same board lying there in several views (captured more than once): all of them
    return [int(k) for k, h in zip(flat, heights, strict=True) if h - lowest < FLOOR_SAME_MM]


def _floor_pose(params: np.ndarray, advice: list[Advice]) -> tuple[np.ndarray, np.ndarray]:
    """The floor board's pose from its views: their average when the board lay still between them (each
    adds detections with their own noise), else the last one."""
    Rs = list(rodrigues(params[:, :3]))
    ts = list(params[:, 3:])
    R, t = mean_pose(Rs, ts)
    moved = max(max(np.linalg.norm(t_k - t) for t_k in ts), 0.0)
    if moved > FLOOR_SAME_MM:
        advice.append(Advice("warning", None, f"the floor views do not show the board at one place (they differ by "
                             f"{moved:.0f} mm): the last one sets the world frame"))
        return Rs[-1], ts[-1]
    return R, t


def _finish(out: Calibration, started: float) -> Calibration:
    out.stats["seconds"] = round(time.perf_counter() - started, 2)
    if not out.cameras and not out.errors:
        out.advice.append(Advice("error", None, "no camera could be calibrated: no view shows the board to "
                                 f"enough cameras at once (at least {MIN_SHARED} shared views per camera)"))
    return out


def _join_cameras(cams: list[str], shared: dict[tuple[str, str], list[int]],
                  pose: dict[tuple[str, int], tuple[np.ndarray, np.ndarray]]
                  ) -> tuple[str | None, dict[str, tuple[np.ndarray, np.ndarray]]]:
    """The reference camera (most shared views) and each joined camera's pose in its frame, along the
    pairs that share the most views (a maximum spanning tree)."""
    if not cams:
        return None, {}
    weight = {k: len(v) for k, v in shared.items() if len(v) >= MIN_SHARED}
    reference = max(cams, key=lambda c: sum(n for k, n in weight.items() if c in k))
    rel = {reference: (np.eye(3), np.zeros(3))}
    while True:
        edges = [(n, a, b) for (a, b), n in weight.items() if (a in rel) != (b in rel)]
        if not edges:
            return reference, rel
        _, a, b = max(edges)
        known, new = (a, b) if a in rel else (b, a)
        # new <- known, from each shared view: T_new,v * T_known,v^-1
        Rs, ts = [], []
        for i in shared[(a, b)]:
            R, t = compose(*pose[(new, i)], *invert(*pose[(known, i)]))
            Rs.append(R)
            ts.append(t)
        R_nk, t_nk = mean_pose(Rs, ts)
        rel[new] = compose(R_nk, t_nk, *rel[known])  # reference -> new


def _adjust(problem: _Problem, full: np.ndarray, free: np.ndarray, opt: SolveOptions, f_scale: float):
    base = full.copy()

    def residuals(x: np.ndarray) -> np.ndarray:
        base[free] = x
        return (problem.project(base) - problem.uv[problem.keep]).ravel()

    result = least_squares(residuals, full[free], jac_sparsity=problem.sparsity(free), method="trf",
                           x_scale="jac", loss=opt.loss, f_scale=f_scale, ftol=1e-10, xtol=1e-10, gtol=1e-10,
                           max_nfev=MAX_NFEV, tr_solver="lsmr",
                           # LSMR's own default tolerance (1e-6) leaves steps so rough that the adjustment
                           # crawls: 60 evaluations did not converge; with 1e-10 it does in 10-35
                           tr_options={"atol": 1e-10, "btol": 1e-10})
    out = full.copy()
    out[free] = result.x
    return out, result


def _reject_outliers(problem: _Problem, full: np.ndarray) -> tuple[int, float]:
    """Drop corners far outside the others' scatter (a corner refined onto a marker's edge at a steep
    angle), and camera views that fit badly as a whole (a misdetected board, motion blur): judged on all
    their corners, so that a bad view cannot pass on the few that happen to fit, and dropped when fewer
    than MIN_CORNERS or under MIN_VIEW_KEPT of their corners remain. Returns how many corners were newly
    dropped and the scatter (1-sigma per axis, px)."""
    err = np.linalg.norm(problem.uv - problem.project(full, np.arange(len(problem.uv))), axis=1)
    kept = problem.keep
    sigma = float(np.median(err[kept])) / 1.1774 if kept.any() else 0.0  # median radius of a 2-D Gaussian
    keep = kept & (err <= max(5 * sigma, MIN_REJECT_PX))
    groups = problem.cam_i * (len(problem.view_ids) + 1) + problem.view_i
    ids, inverse = np.unique(groups, return_inverse=True)
    total = np.bincount(inverse)
    rms_all = np.sqrt(np.bincount(inverse, err ** 2) / total)
    left = np.bincount(inverse, keep.astype(np.float64))
    alive = np.bincount(inverse, kept.astype(np.float64)) > 0
    median_rms = float(np.median(rms_all[alive])) if alive.any() else 0.0
    bad = (rms_all > max(4 * median_rms, 1.0)) | (left < MIN_CORNERS) | (left < MIN_VIEW_KEPT * total)
    keep &= ~bad[inverse]
    newly = int((kept & ~keep).sum())
    problem.keep = keep
    return newly, sigma


def _triangulation_check(out: Calibration, obj: np.ndarray, held: list[View]) -> dict[str, float]:
    """Held-out views, never adjusted: their corners triangulated from the calibrated cameras, and the
    board's true shape fitted to them; the residuals are the check (mm)."""
    resid, n_views = [], 0
    for v in held:
        dets = {c: d for c, d in v.detections.items() if c in out.cameras and d.usable}
        if len(dets) < 2:
            continue
        by_id: dict[int, list[tuple[np.ndarray, tuple[np.ndarray, np.ndarray]]]] = {}
        for c, d in dets.items():
            cc = out.cameras[c]
            for k, xy in zip(d.ids, undistort_normalised(d.corners, cc.K, cc.dist), strict=True):
                by_id.setdefault(int(k), []).append((xy, (cc.R, cc.t)))
        ids = [k for k, obs in by_id.items() if len(obs) >= 2]
        if len(ids) < 4:
            continue
        pts = np.array([triangulate([o[0] for o in by_id[k]], [o[1] for o in by_id[k]]) for k in ids])
        R, t = rigid_fit(obj[ids], pts)
        resid.append(np.linalg.norm(obj[ids] @ R.T + t - pts, axis=1))
        out.held_out.append({"view": v.label, "ids": ids, "world_mm": pts.round(4).tolist()})
        n_views += 1
    if not resid:
        return {}
    r = np.concatenate(resid)
    return {"rms_mm": float(np.sqrt(np.mean(r ** 2))), "p95_mm": float(np.percentile(r, 95)),
            "points": float(len(r)), "views": float(n_views)}


def _judge(out: Calibration, views: list[View], usable: dict[str, list[int]],
           image_sizes: dict[str, tuple[int, int]], obj: np.ndarray) -> None:
    """Advice on each calibrated camera: its fit, the spread of tilts it saw, the image area covered."""
    for c, cc in out.cameras.items():
        if not np.isfinite(cc.reprojection_rms) or cc.reprojection_rms > MAX_RMS_PX:
            out.advice.append(Advice("error", c, f"{c}: reprojection error {cc.reprojection_rms:.2f} px (over "
                                     f"{MAX_RMS_PX:g} px): check the board definition and that the board is flat "
                                     "and in focus"))
        w, h = image_sizes[c]
        grid = np.zeros((6, 8), dtype=bool)
        normals = []
        for i in usable[c]:
            d = views[i].detections[c]
            gx = np.clip((d.corners[:, 0] / w * 8).astype(int), 0, 7)
            gy = np.clip((d.corners[:, 1] / h * 6).astype(int), 0, 5)
            grid[gy, gx] = True
            if len(d.ids) >= MIN_CORNERS:
                normals.append(_view_normal(d, cc, obj))
        coverage = float(grid.mean())
        if coverage < MIN_COVERAGE:
            out.advice.append(Advice("warning", c, f"{c}: the board covered {coverage:.0%} of its image: move it "
                                     f"into the corners and edges of {c}'s view (lens distortion is learnt there)"))
        if len(normals) >= 2:
            n = np.array(normals)
            spread = float(np.degrees(np.arccos(np.clip(n @ n.T, -1, 1))).max())
            if spread < MIN_TILT_SPREAD_DEG:
                out.advice.append(Advice("error" if spread < 5 else "warning", c,
                                         f"{c}: the board was seen at nearly one tilt (its views differ by at most "
                                         f"{spread:.0f} degrees): tilt it 30 degrees up, down and sideways "
                                         f"in {c}'s view"))


def _view_normal(d: Detection, cc: CameraCalibration, obj: np.ndarray) -> np.ndarray:
    """The board's normal in the camera's frame for one detection."""
    ok, rvec, _t = cv2.solvePnP(obj[d.ids], d.corners, cc.K, cc.dist, flags=cv2.SOLVEPNP_IPPE)
    return rodrigues(rvec)[0][:, 2] if ok else np.array([0.0, 0.0, 1.0])
