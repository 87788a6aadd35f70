"""Matching detected events to the pulses that caused them, and the per-segment model that maps a
stream's base times onto the true (trigger box) time: true = base + offset + drift * (base - ref).

Matching: every pairing of a detected edge with a fired edge of the same kind proposes an offset
(minus the stream's latency); the offset that lines up the most events wins. Trains are coded (each
has its own widths and gaps), so only the true offset lines up many events at once.

Fitting: weighted least squares over the precise events, with outliers (more than 5 sigma, or far
from the median) rejected. The drift is fitted when precise events lie at both ends of the segment;
otherwise the offset comes from the precise events at one end, and the drift from what the events far
from them allow (bounded ones: a flash that began while the shutter was closed lies between two
exposures; a lone precise one at the other end), under the prior of how far the driver's own clock
fit may be off. With no precise event at all, the bounded ones carry the offset alone: it must lie in
every such interval.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy.stats import truncnorm

from acquisition.sync.events import Event

MIN_DRIFT_SPAN_S = 3.0  # events spanning less than this: offset only (drift stays the driver's)
# a drift fitted from precise events needs one at each end of the segment and three in all (one more than
# the line needs); a lone one at one end is checked against the bounded events (_bounds_allow)
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
        keep, offset, drift, cov = _robust_wls(b, r, s, precise, ref, clock.drift)
        lone = _lone_end(b, keep)
        if cov[1, 1] > 0.0 and lone is not None and not _bounds_allow(
                offset, drift, cov, b[~precise] - ref, (r - hi)[~precise], (r - lo)[~precise]):
            # one precise event at one end sets the drift alone, and nothing in its half could show it wrong:
            # bounded events that contradict it overrule it (a misread flash)
            keep, offset, drift, cov = _robust_wls(b, r, s, keep & ~lone, ref, clock.drift)
        drift_sd = 0.0  # a fitted drift's uncertainty is in cov
        if cov[1, 1] == 0.0:
            # without precise events at both ends the drift is the driver's own, known to about clock.unfitted,
            # narrowed by what the events far from the precise ones allow: the bounded ones, and precise ones
            # as intervals (so that they check each other). Bounds that contradict the precise ones are taken
            # alone; bounds that contradict each other leave the prior. The offset-only fit's offset (their
            # weighted mean) holds at the precise events' weighted centre whatever the drift.
            ref = float(np.average(b[keep], weights=1.0 / np.maximum(s[keep], 1e-7) ** 2))
            low, high = np.where(precise, r - b - 5 * s, r - hi), np.where(precise, r - b + 5 * s, r - lo)
            margin = 3.0 * float(np.sqrt(cov[0, 0]))
            found = None
            for use in (keep | ~precise, ~precise):
                found = found or _drift_from_bounds(b[use] - ref, low[use], high[use], offset, margin, clock.unfitted)
            drift, drift_sd = found or (0.0, clock.unfitted)
        res = r - b - offset - drift * (b - ref)
        rms = float(np.sqrt(np.mean(res[keep] ** 2)))
        # the residuals' own scatter scales the covariance (reduced chi-square) when it exceeds what the
        # events claim; it never makes the claimed uncertainties smaller (perfect simulated edges would
        # otherwise claim zero error)
        n_par = 2 if cov[1, 1] > 0.0 else 1
        dof = int(keep.sum()) - n_par
        chi2 = float(np.sum((res[keep] / s[keep]) ** 2)) / max(dof, 1)
        scale2 = max(1.0, chi2)
        half = max(stop - ref, ref - start, 0.0)
        # far from the events the drift's uncertainty is the error that grows
        err = float(np.sqrt(scale2 * (cov[0, 0] + cov[1, 1] * half ** 2) + (drift_sd * half) ** 2 + extra_sigma ** 2))
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


def _robust_wls(b: np.ndarray, r: np.ndarray, s: np.ndarray, start: np.ndarray, ref: float,
                drift_prior: float) -> tuple[np.ndarray, float, float, np.ndarray]:
    """Weighted least squares over the events in `start`, rejecting those over 5 sigma (or 5 MADs) off:
    (kept, offset, drift, covariance)."""
    keep = start.copy()
    offset, drift, cov = 0.0, 0.0, np.zeros((2, 2))
    for _ in range(4):
        offset, drift, cov = _wls(b[keep], r[keep], s[keep], ref, drift_prior)
        res = r - b - offset - drift * (b - ref)
        med = np.median(res[keep])
        mad = 1.4826 * np.median(np.abs(res[keep] - med))
        new = start & (np.abs(res) <= np.maximum(5 * s, 5 * mad + 1e-6))
        if new.sum() == 0 or np.array_equal(new, keep):
            break
        keep = new
    return keep, offset, drift, cov


def _lone_end(b: np.ndarray, keep: np.ndarray) -> np.ndarray | None:
    """The kept event alone in its half of their span (a mask), if one half holds only one."""
    kb = b[keep]
    if len(kb) < 2 or np.ptp(kb) < MIN_DRIFT_SPAN_S:
        return None
    mid = (kb.min() + kb.max()) / 2
    for half in (keep & (b < mid), keep & (b >= mid)):
        if half.sum() == 1:
            return half
    return None


def _bounds_allow(offset: float, drift: float, cov: np.ndarray, x: np.ndarray, low: np.ndarray,
                  high: np.ndarray) -> bool:
    """Whether the model (offset + drift x, with its covariance) lies in every bounded event's interval, to
    within 3 sigma of itself."""
    margin = 3.0 * np.sqrt(cov[0, 0] + cov[1, 1] * x ** 2)
    at = offset + drift * x
    return bool(np.all((at >= low - margin) & (at <= high + margin)))


def _drift_from_bounds(x: np.ndarray, low: np.ndarray, high: np.ndarray, offset: float, margin: float,
                      prior_sd: float) -> tuple[float, float] | None:
    """The drift (mean, 1 sigma) that events at distances x (s) from the precise ones allow, each saying that
    offset + drift * x lies in [low, high] (widened by the offset's own margin), under a prior of N(0,
    prior_sd). Flashes that began while the shutter was closed are many, each known to a frame period at a
    different phase, so together they narrow the drift where precise events are missing. None without events
    far enough, or with bounds that contradict each other."""
    far = np.abs(x) >= BOUNDED_DRIFT_MIN_S
    if not far.any():
        return None
    x, lo, hi = x[far], low[far] - offset - margin, high[far] - offset + margin
    d_lo = float(np.max(np.where(x > 0, lo, hi) / x))
    d_hi = float(np.min(np.where(x > 0, hi, lo) / x))
    if d_lo > d_hi:
        return None
    mean, var = truncnorm.stats(d_lo / prior_sd, d_hi / prior_sd, loc=0.0, scale=prior_sd, moments="mv")
    # bounds that barely agree leave a sliver: no narrower than the tightest bound shared among them
    floor = float(np.min((hi - lo) / np.abs(x))) / len(x)
    return float(mean), max(float(np.sqrt(var)), floor)


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
