"""Sync events found in the recorded data: the trigger box's edges in an EMG unit's trigger channel,
the LED's onsets and offsets in a camera's frames, the heart's R peaks in the chest ECG and in trunk
EMG. Each event is a time on the stream's base clock (acquisition.sync.timebase) with its uncertainty.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

LOW, HIGH = 0.05, 0.95  # a fraction below LOW is dark/low, above HIGH is lit/high


@dataclass
class Event:
    time: float  # base time of the edge (best estimate)
    kind: str  # "rise", "fall" or "beat"
    sigma: float  # 1-sigma uncertainty of `time`
    lo: float  # the edge certainly lies in [lo, hi]
    hi: float
    precise: bool  # False: only bounded by [lo, hi] (a flash that began while the shutter was closed)
    where: int = -1  # the sample or frame row it was found at


def two_levels(values: np.ndarray) -> tuple[float, float, float] | None:
    """Low and high levels of a two-state signal and the noise around them (None: no second state)."""
    v = np.asarray(values, dtype=np.float64)
    v = v[np.isfinite(v)]
    if len(v) < 4:
        return None
    lo, hi = np.percentile(v, 2), np.percentile(v, 98)
    if hi - lo <= 0:
        return None
    mid = (lo + hi) / 2
    low, high = v[v < mid], v[v >= mid]
    if len(low) < 2 or len(high) < 2:
        return None
    l0, l1 = float(np.median(low)), float(np.median(high))
    span = l1 - l0
    # robust: the few values in between (a frame partly lit, a sample on an edge) are not noise
    noise = 1.4826 * float(np.median(np.abs(np.concatenate([low - l0, high - l1]))))
    if span <= 6 * noise:
        return None
    return l0, l1, noise / span


def trigger_edges(level: np.ndarray, base: np.ndarray, period: float, delay_s: float = 0.0) -> list[Event]:
    """Edges of the trigger input, placed between samples.

    An analogue trigger input that integrates over its sample interval (t - period, t] gives each edge's
    time exactly from the area of the transition: rise = t_b - period * sum(level over the transition up to
    the first full sample b). A digital input (0 or 1 only) can only say which interval: its middle.
    `delay_s` is the input's own delay (an amplifier's trigger filter), subtracted."""
    lv = two_levels(level)
    if lv is None:
        return []
    l0, l1, _noise = lv
    f = (np.asarray(level, dtype=np.float64) - l0) / (l1 - l0)
    digital = np.all(np.isin(np.round(f[np.isfinite(f)], 6), (0.0, 1.0)))
    state = f >= 0.5
    events: list[Event] = []
    for k in np.flatnonzero(state[1:] != state[:-1]) + 1:
        rising = bool(state[k])
        a = k - 1
        while a > 0 and (f[a] > LOW if rising else f[a] < HIGH):
            a -= 1
        b = k
        while b < len(f) - 1 and (f[b] < HIGH if rising else f[b] > LOW):
            b += 1
        ok_ends = (f[a] <= LOW and f[b] >= HIGH) if rising else (f[a] >= HIGH and f[b] <= LOW)
        if not ok_ends or np.any(np.abs(np.diff(base[a:b + 1]) - period) > 0.25 * period):
            continue  # the transition is cut by the take's edge or by lost samples
        part = np.clip(f[a:b + 1], 0.0, 1.0)
        area = np.sum(part if rising else 1.0 - part)
        t = base[b] - period * area - delay_s
        if digital:
            t += period / 2
            sigma = period / np.sqrt(12)
            lo, hi = base[b - 1] - delay_s, base[b] - delay_s
        else:
            sigma = period * 0.01
            lo, hi = t - 3 * sigma, t + 3 * sigma
        events.append(Event(float(t), "rise" if rising else "fall", float(sigma), float(lo), float(hi),
                            precise=not digital or period < 1e-3, where=int(k)))
    return events


def flash_edges(fraction: np.ndarray, starts: np.ndarray, index: np.ndarray, exposure_s: float,
                noise: float) -> list[Event]:
    """LED onsets and offsets from each frame's lit fraction of its exposure.

    Frame k is exposed over [s_k, s_k + E]. A flash that begins during it lights the fraction
    f = (s_k + E - onset) / E, so onset = s_k + E (1 - f); one that ends during it, offset = s_k + E f.
    A flash that began while the shutter was closed lights the next frame fully: then the onset is only
    known to lie between the two exposures. Frames on either side must be consecutive (no drop)."""
    f = np.asarray(fraction, dtype=np.float64)
    e = exposure_s
    sigma = e * max(noise, 0.003)
    events: list[Event] = []
    for k in range(1, len(f)):
        if index[k] - index[k - 1] != 1:
            continue
        prev, cur = f[k - 1], f[k]
        if prev < LOW <= cur:  # rise: frame k is the first lit one
            if cur < HIGH:
                t = starts[k] + e * (1 - cur)
                events.append(Event(float(t), "rise", sigma, t - 3 * sigma, t + 3 * sigma, True, k))
            else:
                lo = starts[k - 1] + e * (1 - max(prev, 0.0)) - LOW * e
                hi = starts[k] + e * (1 - min(cur, 1.0)) + LOW * e
                events.append(Event((lo + hi) / 2, "rise", (hi - lo) / np.sqrt(12), lo, hi, False, k))
        elif prev >= LOW > cur:  # fall: frame k - 1 is the last lit one
            if prev < HIGH:
                t = starts[k - 1] + e * prev
                events.append(Event(float(t), "fall", sigma, t - 3 * sigma, t + 3 * sigma, True, k - 1))
            else:
                lo = starts[k - 1] + e * min(prev, 1.0) - LOW * e
                hi = starts[k] + e * max(cur, 0.0) + LOW * e
                events.append(Event((lo + hi) / 2, "fall", (hi - lo) / np.sqrt(12), lo, hi, False, k - 1))
    return events


def peak_times(signal: np.ndarray, base: np.ndarray, min_gap_s: float = 0.3,
               threshold: float = 0.5, band_limited: bool = False) -> list[Event]:
    """R peaks: local maxima above `threshold` of the 99th percentile, at least min_gap_s apart, placed
    between samples by a parabola through the three samples around each, or (band_limited: a coarsely
    sampled ECG, where a parabola is biased by the QRS shape) at the maximum of the band-limited
    waveform the samples describe (Lanczos interpolation)."""
    x = np.asarray(signal, dtype=np.float64)
    if len(x) < 5:
        return []
    x = x - np.median(x)
    top = np.percentile(x, 99.5)
    if top <= 0:
        return []
    candidates = np.flatnonzero((x[1:-1] > threshold * top) & (x[1:-1] >= x[:-2]) & (x[1:-1] > x[2:])) + 1
    peaks: list[int] = []
    for k in candidates[np.argsort(-x[candidates])]:  # highest first; suppress lower ones nearby
        if all(abs(base[k] - base[p]) >= min_gap_s for p in peaks):
            peaks.append(int(k))
    events = []
    for k in sorted(peaks):
        inside = LANCZOS_A <= k < len(x) - LANCZOS_A
        delta = lanczos_peak(x, k) if band_limited and inside else parabolic_peak(x, k) - k
        step = (base[k + 1] - base[k - 1]) / 2
        t = base[k] + float(np.clip(delta, -0.5, 0.5)) * step
        events.append(Event(t, "beat", step * 0.05, t - step, t + step, True, k))
    return events


LANCZOS_A = 8


def lanczos_peak(x: np.ndarray, k: int) -> float:
    """Where (in samples from k, within +-1) the band-limited waveform through x peaks."""
    n = np.arange(k - LANCZOS_A, k + LANCZOS_A + 1)
    fine = np.linspace(-1.0, 1.0, 201)
    d = (k + fine)[:, None] - n[None, :]
    kernel = np.sinc(d) * np.sinc(d / LANCZOS_A)
    y = kernel @ x[n]
    i = parabolic_peak(y, int(np.argmax(y)))
    return float(np.interp(i, np.arange(len(fine)), fine))


def parabolic_peak(y: np.ndarray, k: int) -> float:
    """The maximum near sample k (a local maximum), placed between samples by a parabola through three."""
    if k <= 0 or k >= len(y) - 1:
        return float(k)
    y0, y1, y2 = y[k - 1], y[k], y[k + 1]
    denom = y0 - 2 * y1 + y2
    return float(k + (0.5 * (y0 - y2) / denom if denom < 0 else 0.0))
