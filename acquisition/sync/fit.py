"""Matching detected events to the pulses that caused them, and the per-segment model that maps a
stream's base times onto the true (trigger box) time: true = base + offset + drift * (base - ref).

Matching: every pairing of a detected edge with a fired edge of the same kind proposes an offset
(minus the stream's latency); the offset that lines up the most events wins. Trains are coded (each
has its own widths and gaps), so only the true offset lines up many events at once.

Fitting: weighted least squares over the precise events, with outliers (more than 5 sigma, or far
from the median) rejected, and the drift held at zero unless the events span enough time to measure
it. Events that are only bounded (a flash that began while the shutter was closed) check the fit,
and carry it alone when no precise event is available: the offset must lie in every such interval.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from acquisition.sync.events import Event

MIN_DRIFT_SPAN_S = 3.0  # events spanning less than this: offset only (drift stays the driver's)
# a drift needs precise events at both ends of the take, and one more than the line needs (so that the
# residuals can show a bad one)
MIN_DRIFT_EVENTS_PER_HALF = 1
MIN_DRIFT_EVENTS = 3
BOUNDED_DRIFT_MIN_S = 1.0  # bounded events nearer than this to the precise ones say little of the drift


@dataclass(frozen=True)
class ClockPrior:
    """What is known of a stream's base clock before its events are fitted: how far its drift may be
    from the driver's own fit (the prior of a fitted drift), and how far the driver's fit leaves it when
    the events cannot measure the drift (both relative, 1 sigma)."""

    drift: float
    unfitted: float


# a device counter fitted against arrivals over a long window: the residual drift is small
DEVICE_CLOCK = ClockPrior(drift=100e-6, unfitted=20e-6)


@dataclass
class Match:
    event: Event
    ref_time: float  # the fired edge's time on the recorder's clock
    pulse: tuple[int, int]  # (train, pulse)


@dataclass
class SegmentModel:
    start: float  # base-time range this model covers
    stop: float
    offset: float
    drift: float
    ref: float
    n_events: int
    n_rejected: int
    residual_rms_s: float
    error_s: float  # 1-sigma uncertainty of the model at its worst point in [start, stop]
    method: str  # "fit", "intervals" or "borrowed"
    residuals: np.ndarray = field(default_factory=lambda: np.zeros(0))
    residual_times: np.ndarray = field(default_factory=lambda: np.zeros(0))

    def apply(self, base: np.ndarray) -> np.ndarray:
        return base + self.offset + self.drift * (base - self.ref)


def match_events(events: list[Event], refs: dict[str, np.ndarray], ref_ids: dict[str, list[tuple[int, int]]],
                 offset_range: tuple[float, float], tolerance: float) -> tuple[list[Match], list[Event], float | None]:
    """Pair events with fired edges (refs[kind] sorted). Returns matches, unmatched events, and the offset."""
    kinds = {k: np.array([e.time for e in events if e.kind == k]) for k in {e.kind for e in events}}
    kinds = {k: t for k, t in kinds.items() if len(refs.get(k, ())) and len(t)}
    candidates = np.concatenate([(refs[k][None, :] - t[:, None]).ravel() for k, t in kinds.items()] or [[]])
    candidates = candidates[(candidates >= offset_range[0]) & (candidates <= offset_range[1])]
    if len(candidates) == 0:
        return [], list(events), None
    best, best_n, best_sq = None, 0, np.inf
    for cand in candidates:
        n, sq = 0, 0.0
        for k, t in kinds.items():
            d = _nearest_gap(refs[k], t + cand)
            ok = np.abs(d) <= tolerance
            n += int(ok.sum())
            sq += float(np.sum(d[ok] ** 2))
        if n > best_n or (n == best_n and sq < best_sq):
            best, best_n, best_sq = float(cand), n, sq
    assert best is not None
    # centre on the median offset of the events that line up, then pair each event with its nearest edge
    gaps = np.concatenate([_nearest_gap(refs[k], t + best) for k, t in kinds.items()])
    center = best + float(np.median(gaps[np.abs(gaps) <= tolerance]))
    matches, unmatched, used = [], [], set()
    for ev in events:
        r = refs.get(ev.kind)
        if r is None or len(r) == 0:
            unmatched.append(ev)
            continue
        i = int(np.argmin(np.abs(r - ev.time - center)))
        if abs(r[i] - ev.time - center) > tolerance or (ev.kind, i) in used:
            unmatched.append(ev)
            continue
        used.add((ev.kind, i))
        matches.append(Match(ev, float(r[i]), ref_ids[ev.kind][i]))
    return matches, unmatched, center


def _nearest_gap(r: np.ndarray, t: np.ndarray) -> np.ndarray:
    """For each t, (nearest r) - t, with r sorted."""
    i = np.clip(np.searchsorted(r, t), 0, len(r) - 1)
    j = np.clip(i - 1, 0, len(r) - 1)
    right, left = r[i] - t, r[j] - t
    return np.where(np.abs(left) < np.abs(right), left, right)


def fit_segment(matches: list[Match], start: float, stop: float, extra_sigma: float = 0.0,
                clock: ClockPrior = DEVICE_CLOCK) -> SegmentModel | None:
    """The model for one segment from its matched events (None when there are none)."""
    if not matches:
        return None
    b = np.array([m.event.time for m in matches])
    r = np.array([m.ref_time for m in matches])
    s = np.array([m.event.sigma for m in matches])
    precise = np.array([m.event.precise for m in matches])
    lo = np.array([m.event.lo for m in matches])
    hi = np.array([m.event.hi for m in matches])
    ref = float(np.mean(b))
    if precise.sum() >= 1:
        keep = precise.copy()
        offset, drift, cov = 0.0, 0.0, np.zeros((2, 2))
        for _ in range(4):
            offset, drift, cov = _wls(b[keep], r[keep], s[keep], ref, clock.drift)
            res = r - b - offset - drift * (b - ref)
            med = np.median(res[keep])
            mad = 1.4826 * np.median(np.abs(res[keep] - med))
            new = precise & (np.abs(res) <= np.maximum(5 * s, 5 * mad + 1e-6))
            if new.sum() == 0 or np.array_equal(new, keep):
                break
            keep = new
        res = r - b - offset - drift * (b - ref)
        rms = float(np.sqrt(np.mean(res[keep] ** 2)))
        # the residuals' own scatter scales the covariance (reduced chi-square) when it exceeds what the
        # events claim; it never makes the claimed uncertainties smaller (perfect simulated edges would
        # otherwise claim zero error)
        n_par = 2 if drift != 0.0 else 1
        dof = int(keep.sum()) - n_par
        chi2 = float(np.sum((res[keep] / s[keep]) ** 2)) / max(dof, 1)
        scale2 = max(1.0, chi2)
        half = max(stop - ref, ref - start, 0.0)
        # without precise events at both ends the drift is the driver's own, known to about clock.unfitted, or
        # what the bounded events far from the precise ones leave of it: far from the events that is the error
        # that grows
        drift_sd = clock.unfitted
        if cov[1, 1] == 0.0:
            at = float(np.average(b[keep], weights=1.0 / np.maximum(s[keep], 1e-7) ** 2))
            bounded = _drift_from_bounds(b[~precise] - at, r[~precise] - hi[~precise], r[~precise] - lo[~precise],
                                         offset, 3.0 * float(np.sqrt(scale2 * cov[0, 0])))
            if bounded is not None and bounded[1] < drift_sd:
                drift, drift_sd = bounded
                ref = at  # the offset holds where the precise events are
                half = max(stop - ref, ref - start, 0.0)
                res = r - b - offset - drift * (b - ref)
        unfitted = (drift_sd * half) ** 2 if cov[1, 1] == 0.0 else 0.0
        err = float(np.sqrt(scale2 * (cov[0, 0] + cov[1, 1] * half ** 2) + unfitted + extra_sigma ** 2))
        return SegmentModel(start, stop, offset, drift, ref, int(keep.sum()), int(precise.sum() - keep.sum()), rms,
                            err, "fit", res[keep], b[keep])
    # only bounded events: the offset lies in every interval [r - hi, r - lo]
    low, high = float(np.max(r - hi)), float(np.min(r - lo))
    if low > high:  # contradictory bounds: take the middle of the overlap of most of them
        low, high = float(np.percentile(r - hi, 75)), float(np.percentile(r - lo, 25))
        low, high = min(low, high), max(low, high)
    offset = (low + high) / 2
    half = max(stop - ref, ref - start, 0.0)
    err = float(np.sqrt(((high - low) / np.sqrt(12)) ** 2 + (clock.unfitted * half) ** 2 + extra_sigma ** 2))
    res = r - ((lo + hi) / 2) - offset
    return SegmentModel(start, stop, offset, 0.0, ref, len(matches), 0, float(np.sqrt(np.mean(res ** 2))), err,
                        "intervals", res, b)


def _drift_from_bounds(x: np.ndarray, low: np.ndarray, high: np.ndarray, offset: float,
                      margin: float) -> tuple[float, float] | None:
    """The drift that bounded events at distances x (s) from the precise ones allow, as (middle, 1 sigma):
    each says offset + drift * x lies in [low, high] (widened by the offset's own margin). Flashes that began
    while the shutter was closed are many, each known to a frame period at a different phase, so together
    they narrow the drift where precise events are missing (None: none far enough, or they contradict)."""
    far = np.abs(x) >= BOUNDED_DRIFT_MIN_S
    if not far.any():
        return None
    x, lo, hi = x[far], low[far] - offset - margin, high[far] - offset + margin
    d_lo = float(np.max(np.where(x > 0, lo, hi) / x))
    d_hi = float(np.min(np.where(x > 0, hi, lo) / x))
    if d_lo > d_hi:
        return None
    return (d_lo + d_hi) / 2, (d_hi - d_lo) / np.sqrt(12)


def _wls(b: np.ndarray, r: np.ndarray, s: np.ndarray, ref: float,
         drift_prior: float) -> tuple[float, float, np.ndarray]:
    """offset, drift and their covariance; drift only when the events span MIN_DRIFT_SPAN_S with
    MIN_DRIFT_EVENTS_PER_HALF in each half."""
    w = 1.0 / np.maximum(s, 1e-7) ** 2
    y = r - b
    x = b - ref
    mid = (b.min() + b.max()) / 2
    each_half = min(int(np.sum(b < mid)), int(np.sum(b >= mid)))
    if np.ptp(b) < MIN_DRIFT_SPAN_S or each_half < MIN_DRIFT_EVENTS_PER_HALF or len(b) < MIN_DRIFT_EVENTS:
        offset = float(np.sum(w * y) / np.sum(w))
        return offset, 0.0, np.array([[1.0 / np.sum(w), 0.0], [0.0, 0.0]])
    a = np.stack([np.ones_like(x), x], axis=1)
    ata = a.T @ (a * w[:, None]) + np.diag([0.0, 1.0 / drift_prior ** 2])
    atb = a.T @ (w * y)
    sol = np.linalg.solve(ata, atb)
    return float(sol[0]), float(sol[1]), np.linalg.inv(ata)
