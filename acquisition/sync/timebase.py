"""A stream's "base" times: its recorded stamps made smooth and put on the recorder's clock.

Regular streams are cut into gap-free segments (a gap in the stamps beyond the device's sampling, a
counter that runs backwards, a clock that jumps) and one line of stamp against sample position (or
against the device's frame counter) is fitted per segment, so a dropped sample or frame is a gap,
never a shift of everything after it. The LSL clock offsets the recorder measured put the result on
the recorder host's clock. The sync model (acquisition.sync.fit) then maps base times to true times.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

COUNTED_JUMP_S = 0.02  # with a device counter, stamps that jump more than this (or 2 periods) off it: a reset


@dataclass
class Segment:
    start: int  # sample rows [start, stop)
    stop: int
    intercept: float  # stamp = intercept + slope * (x - x0)
    slope: float
    x0: float
    residual_rms_s: float


@dataclass
class TimeBase:
    base: np.ndarray  # (N,) base times, recorder clock
    segments: list[Segment]
    lsl_offset_s: float  # the mean LSL clock offset applied (for the report)
    regular: bool
    lsl_stamps: np.ndarray  # the recorded stamps with only the LSL clock offset: what an unaligned stream keeps


def lsl_offset_at(clock_offsets: np.ndarray, t: np.ndarray) -> np.ndarray:
    """The stream host's clock offset at its stamps t: a line through the measured offsets (as pyxdf fits
    them), a constant when there are few, zero when none were measured. The take stores when the recorder
    measured each offset on its own clock, so the line is evaluated at t moved onto that clock."""
    t = np.asarray(t, dtype=np.float64)
    co = np.asarray(clock_offsets, dtype=np.float64).reshape(-1, 2)
    co = co[np.isfinite(co).all(axis=1)]
    if len(co) == 0:
        return np.zeros_like(t)
    med = np.median(co[:, 1])
    if len(co) < 3 or np.ptp(co[:, 0]) < 1.0:
        return np.full_like(t, float(med))
    t = t + med
    keep = np.abs(co[:, 1] - med) <= max(5 * np.median(np.abs(co[:, 1] - med)), 1e-4)
    slope, intercept = np.polyfit(co[keep, 0] - co[0, 0], co[keep, 1], 1)
    return intercept + slope * (t - co[0, 0])


def split_segments(stamps: np.ndarray, x: np.ndarray, period: float, counted: bool) -> list[tuple[int, int]]:
    """Rows [start, stop) of gap-free runs. With a device counter (counted), a gap shows in the counter and
    the run breaks only where the counter resets or the stamps leave it (a new clock); with sample
    positions, a missing sample is a stamp gap of more than 1.5 periods, and stamps that run backwards
    break the run too. Smaller steps are the driver's clock fit settling: the line fit absorbs them."""
    n = len(stamps)
    if n == 0:
        return []
    dx = np.diff(x)
    dt = np.diff(stamps)
    if counted:
        tol = max(COUNTED_JUMP_S, 2 * period)
        breaks = (dx <= 0) | (np.abs(dt - dx * period) > tol + 1e-3 * np.abs(dx) * period)
    else:
        breaks = (dt > 1.5 * period) | (dt <= 0)
    cuts = np.flatnonzero(breaks) + 1
    bounds = [0, *cuts.tolist(), n]
    return [(a, b) for a, b in zip(bounds[:-1], bounds[1:], strict=True) if b > a]


def fit_line(x: np.ndarray, y: np.ndarray, period: float) -> tuple[float, float, float, float]:
    """Robust line y = a + b (x - x0): least squares, then again without points 5 MADs away."""
    x0 = float(x[0])
    xr = x - x0
    if len(x) == 1:
        return float(y[0]), period, x0, 0.0
    keep = np.ones(len(x), dtype=bool)
    a, b = float(y[0]), period
    for _ in range(3):
        b, a = np.polyfit(xr[keep], y[keep], 1)
        res = y - (a + b * xr)
        mad = np.median(np.abs(res[keep] - np.median(res[keep])))
        new = np.abs(res) <= max(5 * 1.4826 * mad, 1e-6)
        if new.sum() < 2 or np.array_equal(new, keep):
            break
        keep = new
    res = y - (a + b * xr)
    return float(a), float(b), x0, float(np.sqrt(np.mean(res[keep] ** 2)))


def make_timebase(stamps: np.ndarray, clock_offsets: np.ndarray, nominal_rate: float,
                  counter: np.ndarray | None = None) -> TimeBase:
    """Base times for one stream. `counter` (a frame index) replaces the sample position where the
    device numbers its samples itself."""
    stamps = np.asarray(stamps, dtype=np.float64)
    offset = lsl_offset_at(clock_offsets, stamps)
    mean_offset = float(np.mean(offset)) if len(offset) else 0.0
    if nominal_rate <= 0 or len(stamps) < 2:
        return TimeBase(stamps + offset, [], mean_offset, False, stamps + offset)
    period = 1.0 / nominal_rate
    x = np.arange(len(stamps), dtype=np.float64) if counter is None else np.asarray(counter, dtype=np.float64)
    base = np.empty_like(stamps)
    segments = []
    for a, b in split_segments(stamps, x, period, counted=counter is not None):
        icpt, slope, x0, rms = fit_line(x[a:b], stamps[a:b], period)
        base[a:b] = icpt + slope * (x[a:b] - x0)
        segments.append(Segment(a, b, icpt, slope, x0, rms))
    return TimeBase(base + offset, segments, mean_offset, True, stamps + offset)


def counter_positions(raw: np.ndarray) -> np.ndarray | None:
    """Sample positions from a device's wrapping counter channel (Shimmer ticks mod 2^24, Cyton sample
    numbers mod 256): the step between samples is the commonest difference, a lost packet a bigger one."""
    raw = np.asarray(raw, dtype=np.float64)
    if len(raw) < 2 or not np.all(np.isfinite(raw)):
        return None
    modulus = float(1 << 24) if raw.max() >= 256 else 256.0
    d = np.mod(np.diff(raw), modulus)
    positive = d[d > 0]
    if len(positive) == 0:
        return None
    step = float(np.median(positive))
    return np.concatenate([[0.0], np.cumsum(np.round(d / step))])
