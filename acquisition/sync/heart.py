"""Aligning the chest strap through the heart: its ECG's R peaks against the heart's electrical
artifact in a trunk EMG channel, which the trigger pulses have already put on true time.

The artifact is small next to muscle activity, but the QRS complex is slow (most of its energy is
below 40 Hz) and sEMG is fast: low-passed, the trunk channel shows a clear spike at every beat. The
channel and the strap's latency are found together: the channel and lag at which the low-passed
signal is highest at the strap's beats, in units of its own noise.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import signal as sps

from acquisition.sync.events import Event
from acquisition.sync.fit import Match

LOWPASS_HZ = 40.0
LAG_RANGE_S = (-0.45, 0.1)  # true = base + lag: a BLE strap is 0-450 ms late
MIN_SCORE = 4.0  # mean artifact height at the beats, in noise units, to call a channel an ECG pickup
SEARCH_S = 0.025


@dataclass
class ArtifactChannel:
    stream_id: str
    label: str
    times: np.ndarray  # true times of its samples (from its EMG stream's sync model)
    values: np.ndarray  # raw microvolts


@dataclass
class HeartMatch:
    channel: str  # "stream:label"
    lag_s: float
    score: float
    matches: list[Match]
    beats: int


def lowpassed(ch: ArtifactChannel) -> np.ndarray:
    fs = 1.0 / float(np.median(np.diff(ch.times)))
    sos = sps.butter(4, min(LOWPASS_HZ, 0.45 * fs) / (fs / 2), output="sos")
    x = sps.sosfiltfilt(sos, ch.values - np.median(ch.values))
    return x / max(1.4826 * float(np.median(np.abs(x - np.median(x)))), 1e-9)


def align_heart(beats: list[Event], channels: list[ArtifactChannel]) -> HeartMatch | None:
    """Match the strap's R peaks (base times) to the artifact in the best channel."""
    if len(beats) < 3 or not channels:
        return None
    b = np.array([e.time for e in beats])
    lags = np.arange(LAG_RANGE_S[0], LAG_RANGE_S[1], 0.0005)
    best: tuple[float, float, ArtifactChannel, np.ndarray] | None = None
    for ch in channels:
        if len(ch.times) < 100:
            continue
        x = lowpassed(ch)
        for sign in (1.0, -1.0):
            grid = b[None, :] + lags[:, None]
            inside = (grid >= ch.times[0]) & (grid <= ch.times[-1])
            heights = np.where(inside, np.interp(grid, ch.times, sign * x), np.nan)
            score = np.nanmedian(heights, axis=1)
            if np.all(np.isnan(score)):
                continue
            i = int(np.nanargmax(score))
            if best is None or score[i] > best[0]:
                best = (float(score[i]), float(lags[i]), ch, sign * x)
    if best is None or best[0] < MIN_SCORE:
        return None
    score, lag, ch, x = best
    matches = []
    for ev in beats:
        target = ev.time + lag
        i0, i1 = np.searchsorted(ch.times, [target - SEARCH_S, target + SEARCH_S])
        if i1 - i0 < 3 or i0 == 0 or i1 >= len(x):
            continue
        k = i0 + int(np.argmax(x[i0:i1]))
        if x[k] < 0.5 * score or k in (i0, i1 - 1):
            continue
        y0, y1, y2 = x[k - 1], x[k], x[k + 1]
        denom = y0 - 2 * y1 + y2
        delta = 0.5 * (y0 - y2) / denom if denom < 0 else 0.0
        t = float(np.interp(k + np.clip(delta, -0.5, 0.5), np.arange(len(ch.times)), ch.times))
        matches.append(Match(ev, t, (-1, len(matches))))
    return HeartMatch(f"{ch.stream_id}:{ch.label}", lag, score, matches, len(beats))
