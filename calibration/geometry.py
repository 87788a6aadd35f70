"""Camera geometry in numpy, vectorised over many points and poses: rotations, OpenCV's pinhole model
with its 5-coefficient distortion (the same numbers as cv2.projectPoints), rigid transforms and
multi-view triangulation."""

from __future__ import annotations

import cv2
import numpy as np


def rodrigues(r: np.ndarray) -> np.ndarray:
    """(M, 3) rotation vectors -> (M, 3, 3) matrices."""
    r = np.asarray(r, dtype=np.float64).reshape(-1, 3)
    theta = np.linalg.norm(r, axis=1)
    small = theta < 1e-12
    k = r / np.where(small, 1.0, theta)[:, None]
    kx = np.zeros((len(r), 3, 3))
    kx[:, 0, 1], kx[:, 0, 2], kx[:, 1, 2] = -k[:, 2], k[:, 1], -k[:, 0]
    kx = kx - kx.transpose(0, 2, 1)
    s, c = np.sin(theta)[:, None, None], np.cos(theta)[:, None, None]
    R = np.eye(3)[None] + s * kx + (1 - c) * (kx @ kx)
    R[small] = np.eye(3)
    return R


def rotvec(R: np.ndarray) -> np.ndarray:
    return cv2.Rodrigues(np.asarray(R, dtype=np.float64))[0].reshape(3)


def nearest_rotation(M: np.ndarray) -> np.ndarray:
    u, _, vt = np.linalg.svd(M)
    d = np.sign(np.linalg.det(u @ vt))
    return u @ np.diag([1.0, 1.0, d]) @ vt


def rotation_angle_deg(Ra: np.ndarray, Rb: np.ndarray) -> float:
    c = (np.trace(Ra.T @ Rb) - 1) / 2
    return float(np.degrees(np.arccos(np.clip(c, -1.0, 1.0))))


def distort_project(points_cam: np.ndarray, intr: np.ndarray) -> np.ndarray:
    """(N, 3) camera-frame points with per-point intrinsics (N, 9): fx, fy, cx, cy, k1, k2, p1, p2, k3
    -> (N, 2) pixels, as cv2.projectPoints computes them."""
    z = points_cam[:, 2]
    x, y = points_cam[:, 0] / z, points_cam[:, 1] / z
    fx, fy, cx, cy, k1, k2, p1, p2, k3 = intr.T
    r2 = x * x + y * y
    radial = 1 + r2 * (k1 + r2 * (k2 + r2 * k3))
    xd = x * radial + 2 * p1 * x * y + p2 * (r2 + 2 * x * x)
    yd = y * radial + p1 * (r2 + 2 * y * y) + 2 * p2 * x * y
    return np.column_stack([fx * xd + cx, fy * yd + cy])


def intrinsics_vector(K: np.ndarray, dist: np.ndarray) -> np.ndarray:
    d = np.zeros(5)
    flat = np.asarray(dist, dtype=np.float64).ravel()[:5]
    d[:len(flat)] = flat
    return np.array([K[0, 0], K[1, 1], K[0, 2], K[1, 2], *d])


def intrinsics_matrices(v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    K = np.array([[v[0], 0.0, v[2]], [0.0, v[1], v[3]], [0.0, 0.0, 1.0]])
    return K, np.array(v[4:9], dtype=np.float64)


def scale_intrinsics(K: np.ndarray, from_size: tuple[int, int], to_size: tuple[int, int]) -> np.ndarray:
    """The camera matrix for frames resized from from_size to to_size (pixel centres kept:
    x' = (x + 0.5) * s - 0.5). Distortion is in normalised coordinates and does not change."""
    sx, sy = to_size[0] / from_size[0], to_size[1] / from_size[1]
    out = np.array(K, dtype=np.float64)
    out[0, 0] *= sx
    out[0, 1] *= sx
    out[1, 1] *= sy
    out[0, 2] = (out[0, 2] + 0.5) * sx - 0.5
    out[1, 2] = (out[1, 2] + 0.5) * sy - 0.5
    return out


def invert(R: np.ndarray, t: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return R.T, -R.T @ t


def compose(Ra: np.ndarray, ta: np.ndarray, Rb: np.ndarray, tb: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """a after b: x -> Ra (Rb x + tb) + ta."""
    return Ra @ Rb, Ra @ tb + ta


def mean_pose(Rs: list[np.ndarray], ts: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """A robust average of poses that should agree: the chordal mean of the rotations closest to their
    median, and the median translation."""
    Rs_a, ts_a = np.array(Rs), np.array(ts)
    first = nearest_rotation(np.median(Rs_a, axis=0))
    angles = np.array([rotation_angle_deg(first, R) for R in Rs_a])
    close = angles <= max(np.median(angles) * 3, 0.5)
    R = nearest_rotation(Rs_a[close].mean(axis=0))
    return R, np.median(ts_a[close], axis=0)


def undistort_normalised(px: np.ndarray, K: np.ndarray, dist: np.ndarray) -> np.ndarray:
    return cv2.undistortPoints(np.asarray(px, dtype=np.float64).reshape(-1, 1, 2), K, dist,
                               criteria=(cv2.TERM_CRITERIA_COUNT | cv2.TERM_CRITERIA_EPS, 50, 1e-12)).reshape(-1, 2)


def triangulate(normalised: list[np.ndarray], poses: list[tuple[np.ndarray, np.ndarray]]) -> np.ndarray:
    """One point from >= 2 views: normalised image coordinates (2,) per view and world->camera poses.
    Linear (DLT) with each row scaled to unit length, which on normalised coordinates is close to the
    least-squares point for the small noise of detected corners."""
    rows = []
    for (x, y), (R, t) in zip(normalised, poses, strict=True):
        P = np.column_stack([R, t])
        for row in (x * P[2] - P[0], y * P[2] - P[1]):
            rows.append(row / np.linalg.norm(row[:3]))
    _, _, vt = np.linalg.svd(np.array(rows))
    X = vt[-1]
    return X[:3] / X[3]


def rigid_fit(src: np.ndarray, dst: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """R, t minimising |R src + t - dst| (Kabsch)."""
    cs, cd = src.mean(axis=0), dst.mean(axis=0)
    u, _, vt = np.linalg.svd((src - cs).T @ (dst - cd))
    d = np.sign(np.linalg.det(vt.T @ u.T))
    R = vt.T @ np.diag([1.0, 1.0, d]) @ u.T
    return R, cd - R @ cs
