"""Aligning the chest strap through the heart: its ECG's R peaks against the heart's electrical
artifact in trunk EMG channels, which the trigger pulses have already put on true time.

The artifact is small next to muscle activity, but the QRS complex is slow (most of its energy is
below 40 Hz) and sEMG is fast: low-passed, a trunk channel shows a spike at every beat. The channels
and the strap's latency are found together: the lag at which the low-passed signal is highest at the
strap's beats, in units of its own noise. The channels of the best EMG unit that show the artifact are
added up (weighted by how clearly each shows it), the artifact's own shape is averaged over the beats,
and each beat is placed by matching that shape (a matched filter: the least noisy timing of a known
waveform), then at the shape's peak, the same point an R peak marks in the strap's ECG.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import signal as sps

from acquisition.sync.events import Event, parabolic_peak
from acquisition.sync.fit import Match

LOWPASS_HZ = 40.0
LAG_RANGE_S = (-0.45, 0.1)  # true = base + lag: a BLE strap is 0-450 ms late
MIN_SCORE = 4.0  # median artifact height at the beats, in noise units, to call a channel an ECG pickup
SEARCH_S = 0.025  # each beat is looked for this far around where the lag puts it
HALF_TEMPLATE_S = 0.05


@dataclass
class ArtifactChannel:
    stream_id: str
    label: str
    times: np.ndarray  # true times of its samples (from its EMG stream's sync model)
    values: np.ndarray  # raw microvolts


@dataclass
class HeartMatch:
    channel: str  # "stream:label+label..."
    lag_s: float
    score: float
    matches: list[Match]
    beats: int


def lowpassed(ch: ArtifactChannel) -> np.ndarray:
    fs = 1.0 / float(np.median(np.diff(ch.times)))
    sos = sps.butter(4, min(LOWPASS_HZ, 0.45 * fs) / (fs / 2), output="sos")
    x = sps.sosfiltfilt(sos, ch.values - np.median(ch.values))
    return x / max(1.4826 * float(np.median(np.abs(x - np.median(x)))), 1e-9)


def _score(b: np.ndarray, ch: ArtifactChannel, x: np.ndarray, lags: np.ndarray) -> tuple[float, float, float]:
    """(best median height, its lag, its sign) of a channel's low-passed signal at the beats."""
    grid = b[None, :] + lags[:, None]
    inside = (grid >= ch.times[0]) & (grid <= ch.times[-1])
    best = (-np.inf, 0.0, 1.0)
    for sign in (1.0, -1.0):
        heights = np.where(inside, np.interp(grid, ch.times, sign * x), np.nan)
        if np.all(np.isnan(heights)):
            continue
        score = np.nanmedian(heights, axis=1)
        i = int(np.nanargmax(score))
        if score[i] > best[0]:
            best = (float(score[i]), float(lags[i]), sign)
    return best


def align_heart(beats: list[Event], channels: list[ArtifactChannel]) -> HeartMatch | None:
    """Match the strap's R peaks (base times) to the artifact in the trunk EMG."""
    if len(beats) < 3 or not channels:
        return None
    b = np.array([e.time for e in beats])
    lags = np.arange(LAG_RANGE_S[0], LAG_RANGE_S[1], 0.0005)
    scored = []
    for ch in channels:
        if len(ch.times) < 100:
            continue
        x = lowpassed(ch)
        score, lag, sign = _score(b, ch, x, lags)
        scored.append((score, lag, sign, ch, x))
    scored = [s for s in scored if s[0] >= MIN_SCORE]
    if not scored:
        return None
    best = max(scored, key=lambda s: s[0])
    _score0, lag, _sign, ch, _x = best
    # the best unit's channels that show the artifact, added up by how clearly they show it
    same = [s for s in scored if s[3].stream_id == ch.stream_id and abs(s[1] - lag) < 0.01]
    combined = sum(s[0] * s[2] * s[4] for s in same)
    combined = combined / max(1.4826 * float(np.median(np.abs(combined - np.median(combined)))), 1e-9)
    dt = float(np.median(np.diff(ch.times)))
    half = int(round(HALF_TEMPLATE_S / dt))
    search = int(round(SEARCH_S / dt))
    centres = [int(np.searchsorted(ch.times, t + lag)) for t in b]
    usable = [i for i, c in enumerate(centres) if c - half - search >= 0 and c + half + search < len(combined)]
    if len(usable) < 3:
        return None
    # the artifact's shape: the average over the beats where the strap's R peaks put them (not each beat's
    # own highest point: noise around an asymmetric QRS would bias that), then again with each beat where
    # the first shape matched it best
    shifts = {i: 0.0 for i in usable}
    for _ in range(2):
        template = np.mean([_segment(combined, centres[i] + shifts[i], half) for i in usable], axis=0)
        for i in usable:
            shifts[i] = _best_shift(combined, centres[i], template, half, search)
    peak = parabolic_peak(template, int(np.argmax(template))) - half  # its peak, in samples from its centre
    matches = []
    for i in usable:
        shift = _best_shift(combined, centres[i], template, half, search)
        if not np.isfinite(shift):
            continue
        t = float(np.interp(centres[i] + shift + peak, np.arange(len(ch.times)), ch.times))
        matches.append(Match(beats[i], t, (-1, i)))
    names = "+".join(s[3].label for s in same)
    return HeartMatch(f"{ch.stream_id}:{names}", lag, best[0], matches, len(beats))


def _segment(x: np.ndarray, centre: float, half: int) -> np.ndarray:
    """x around a (fractional) sample position, interpolated."""
    pos = centre + np.arange(-half, half + 1)
    return np.interp(pos, np.arange(len(x)), x)


def _best_shift(x: np.ndarray, centre: int, template: np.ndarray, half: int, search: int) -> float:
    """Where (samples from centre, within +-search) the template matches x best; NaN at the search's edge."""
    window = x[centre - half - search:centre + half + search + 1]
    corr = np.correlate(window, template, mode="valid")  # 2 * search + 1 shifts
    j = int(np.argmax(corr))
    if j in (0, len(corr) - 1) or corr[j] <= 0:
        return float("nan")
    return parabolic_peak(corr, j) - search
