"""Breathing rate from a chest strap, fused from two estimates over a sliding window (PROTOCOLS.md 4.1):

- chest motion: the accelerometer, with the gravity axis projected out (a lift moves the trunk up
  and down; breathing moves the chest wall forwards and back), band-passed to 0.08-0.8 Hz (5-48
  breaths/min), its main direction (PCA), and the peak of its spectrum;
- respiratory sinus arrhythmia: the heart rate from RR intervals, resampled at 4 Hz, band-passed,
  and the peak of its spectrum (only up to half the heart rate: beats sample the breathing).

Each estimate has a quality (the share of the band's power in its peak); the fusion averages them
when they agree and otherwise keeps the better one. scipy.signal does the filtering; NeuroKit2 was
evaluated and not used (see the closing note of the chest-strap work).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

import numpy as np
from scipy import signal

BAND_HZ = (0.08, 0.8)
ACC_RATE = 10.0  # Hz after decimation
RR_RATE = 4.0
MIN_SPAN_S = 20.0
AGREE_BPM = 2.0
ACC_TRUSTED = 0.5


@dataclass
class Estimate:
    rate_bpm: float
    quality: float  # 0..1

    @staticmethod
    def none() -> Estimate:
        return Estimate(float("nan"), 0.0)


def spectral_peak(x: np.ndarray, fs: float, lo: float, hi: float) -> Estimate:
    """Dominant frequency in [lo, hi] Hz (zero-padded, Hann-windowed, parabolic interpolation)."""
    if len(x) < 8 or hi <= lo:
        return Estimate.none()
    n_fft = max(8192, 1 << int(np.ceil(np.log2(len(x)))))
    spec = np.abs(np.fft.rfft(x * np.hanning(len(x)), n_fft)) ** 2
    freqs = np.fft.rfftfreq(n_fft, 1.0 / fs)
    band = (freqs >= lo) & (freqs <= hi)
    if not band.any() or spec[band].sum() <= 0:
        return Estimate.none()
    idx = np.flatnonzero(band)
    k = idx[np.argmax(spec[idx])]
    f = freqs[k]
    if 0 < k < len(spec) - 1:
        a, b, c = np.log(spec[k - 1 : k + 2] + 1e-30)
        denom = a - 2 * b + c
        if denom < 0:
            f += 0.5 * (a - c) / denom * (freqs[1] - freqs[0])
    width = max(1, int(round(0.05 / (freqs[1] - freqs[0]))))  # +-0.05 Hz counts as the peak
    near = band & (np.abs(np.arange(len(freqs)) - k) <= width)
    quality = float(spec[near].sum() / spec[band].sum())
    if f > hi - 0.03 or f < lo + 0.01:
        quality *= 0.1  # a peak at the band's edge is leakage or an alias, not a breathing rate
    return Estimate(float(f * 60.0), quality)


def _bandpass(x: np.ndarray, fs: float, hi: float) -> np.ndarray:
    sos = signal.butter(2, [BAND_HZ[0], min(hi, 0.45 * fs)], btype="bandpass", fs=fs, output="sos")
    return signal.sosfiltfilt(sos, x, axis=0)


def from_acceleration(t: np.ndarray, xyz: np.ndarray) -> Estimate:
    if len(t) < 2 or t[-1] - t[0] < MIN_SPAN_S:
        return Estimate.none()
    grid = np.arange(t[0], t[-1], 1.0 / ACC_RATE)
    a = np.stack([np.interp(grid, t, xyz[:, i]) for i in range(3)], axis=1)
    g = a.mean(axis=0)
    norm = np.linalg.norm(g)
    if norm > 0:
        g = g / norm
        a = a - np.outer(a @ g, g)  # keep the plane across gravity: the chest wall's motion
    a = _bandpass(a - a.mean(axis=0), ACC_RATE, BAND_HZ[1])
    _, _, vt = np.linalg.svd(a - a.mean(axis=0), full_matrices=False)
    return spectral_peak(a @ vt[0], ACC_RATE, *BAND_HZ)


def from_rr(beats: np.ndarray, rr_ms: np.ndarray) -> Estimate:
    if len(beats) < 15 or beats[-1] - beats[0] < MIN_SPAN_S:
        return Estimate.none()
    hr = 60000.0 / rr_ms
    grid = np.arange(beats[0], beats[-1], 1.0 / RR_RATE)
    series = np.interp(grid, beats, hr)
    nyquist_of_beats = 0.5 * float(np.mean(hr)) / 60.0
    hi = min(BAND_HZ[1], 0.9 * nyquist_of_beats)
    series = _bandpass(series - series.mean(), RR_RATE, hi)
    return spectral_peak(series, RR_RATE, BAND_HZ[0], hi)


def fuse(acc: Estimate, rsa: Estimate) -> Estimate:
    """Average when the two agree; otherwise trust the chest motion while it is clean (RSA cannot see
    breathing faster than half the heart rate and fades with effort), then whichever is better."""
    valid = [e for e in (acc, rsa) if e.quality > 0 and np.isfinite(e.rate_bpm)]
    if not valid:
        return Estimate.none()
    if len(valid) == 1:
        return valid[0]
    if abs(acc.rate_bpm - rsa.rate_bpm) <= AGREE_BPM:
        w = acc.quality + rsa.quality
        return Estimate((acc.rate_bpm * acc.quality + rsa.rate_bpm * rsa.quality) / w, max(acc.quality, rsa.quality))
    best = acc if acc.quality >= ACC_TRUSTED else max(valid, key=lambda e: e.quality)
    return Estimate(best.rate_bpm, best.quality * 0.5)  # the two disagree: lower confidence


class BreathingEstimator:
    """Keeps the last `window_s` of chest acceleration and RR intervals (host times)."""

    def __init__(self, window_s: float = 32.0) -> None:
        self.window_s = window_s
        self.acc: deque[tuple[np.ndarray, np.ndarray]] = deque()
        self.beats: deque[tuple[float, float]] = deque()

    def add_acc(self, t: np.ndarray, xyz: np.ndarray) -> None:
        self.acc.append((np.asarray(t, dtype=np.float64), np.asarray(xyz, dtype=np.float64)))

    def add_rr(self, beat_times: np.ndarray, rr_ms: np.ndarray) -> None:
        self.beats.extend(zip(np.asarray(beat_times, float), np.asarray(rr_ms, float), strict=True))

    def _trim(self, now: float) -> None:
        horizon = now - self.window_s
        while self.acc and self.acc[0][0][-1] < horizon:
            self.acc.popleft()
        while self.beats and self.beats[0][0] < horizon:
            self.beats.popleft()

    def estimate(self, now: float) -> tuple[Estimate, Estimate, Estimate]:
        """(fused, from acceleration, from RR) over the window ending at `now`."""
        self._trim(now)
        if self.acc:
            t = np.concatenate([b[0] for b in self.acc])
            xyz = np.concatenate([b[1] for b in self.acc])
            keep = t >= now - self.window_s
            acc = from_acceleration(t[keep], xyz[keep])
        else:
            acc = Estimate.none()
        if self.beats:
            beats = np.array(self.beats)
            rsa = from_rr(beats[:, 0], beats[:, 1])
        else:
            rsa = Estimate.none()
        return fuse(acc, rsa), acc, rsa
