"""Map a device's sample counter onto the host's LSL clock with an online offset-and-drift fit.

Arrival times carry USB/OS jitter and bursty delivery; the device counter does not. Fitting
arrival time against the counter over a sliding window and stamping every sample from the fitted
line removes the jitter, follows the device crystal's drift, and turns a lost packet into a gap in
time (the counter jumps) instead of a shift of every later sample.

The slope is a least-squares fit pulled towards the nominal sample period (a crystal is within a
few hundred ppm of nominal: a short window must not produce a wild rate). The offset follows the
lower envelope of the arrivals, because a delivery delay is never negative: the earliest arrivals
are the ones closest to the device's own timing.
"""

from __future__ import annotations

import numpy as np

CRYSTAL_TOLERANCE = 200e-6  # prior spread of the true rate around nominal (relative)
MIN_JITTER_S = 1e-4


class ClockFit:
    """Online linear fit host_time = intercept + slope * counter over a sliding window.

    Feed it one (counter, arrival time) pair per delivered block: the counter of the block's last
    sample and the host time the block arrived.
    """

    def __init__(self, nominal_period: float, window_s: float = 30.0, capacity: int = 4096,
                 refit_every_s: float = 0.25) -> None:
        if nominal_period <= 0:
            raise ValueError(f"nominal_period must be > 0, got {nominal_period}")
        self.nominal_period = nominal_period
        self.window_s = window_s
        self._counters = np.zeros(capacity, dtype=np.float64)
        self._arrivals = np.zeros(capacity, dtype=np.float64)
        self._n = 0
        self._ref: int | None = None  # counters are stored relative to this for float precision
        self.slope = nominal_period
        self.intercept = 0.0
        self.resets = 0
        self._monotonic = MonotonicStamps()
        self.refit_every_s = refit_every_s
        self._refit_at = -np.inf  # device time (counter units * period) of the last refit

    @property
    def ready(self) -> bool:
        return self._ref is not None

    def reset(self) -> None:
        self._n = 0
        self._ref = None
        self._refit_at = -np.inf
        self.slope = self.nominal_period
        self._monotonic = MonotonicStamps()
        self.resets += 1

    def add(self, counter: int, arrival: float) -> None:
        if self._ref is None:
            self._ref = int(counter)
        rel = float(int(counter) - self._ref)
        if self._n and rel < self._counters[self._n - 1]:
            # The device counter went backwards: the device was reset. Start a new fit.
            self.reset()
            self._ref = int(counter)
            rel = 0.0
        if self._n == len(self._counters):
            self._drop_before(self._n // 2)
        self._counters[self._n] = rel
        self._arrivals[self._n] = arrival
        self._n += 1
        horizon = rel - self.window_s / self.nominal_period
        first = int(np.searchsorted(self._counters[: self._n], horizon))
        if first:
            self._drop_before(first)
        # refitting costs more than stamping: do it a few times a second once the line has settled
        device_time = rel * self.nominal_period
        if self._n <= 16 or device_time - self._refit_at >= self.refit_every_s:
            self._refit()
            self._refit_at = device_time

    def _drop_before(self, k: int) -> None:
        n = self._n - k
        self._counters[:n] = self._counters[k : self._n]
        self._arrivals[:n] = self._arrivals[k : self._n]
        self._n = n

    def _refit(self) -> None:
        c = self._counters[: self._n]
        a = self._arrivals[: self._n]
        if self._n < 3:
            self.slope = self.nominal_period
            self.intercept = float(np.min(a - c * self.slope))
            return
        slope = self._ridge_slope(c, a)
        # refit on the earliest quarter of arrivals (least delayed), then sit on their lower envelope
        r = a - slope * c
        low = r <= np.quantile(r, 0.25)
        if int(low.sum()) >= 3:
            slope = self._ridge_slope(c[low], a[low])
            c, a = c[low], a[low]
        self.slope = slope
        self.intercept = float(np.min(a - c * slope))

    def _ridge_slope(self, c: np.ndarray, a: np.ndarray) -> float:
        """Least squares slope pulled towards the nominal period by the crystal tolerance prior."""
        s0 = self.nominal_period
        dc = c - c.mean()
        da = a - a.mean()
        sxx = float(np.dot(dc, dc))
        sxy = float(np.dot(dc, da))
        ls = sxy / sxx if sxx > 0 else s0
        jitter = max(MIN_JITTER_S, float(np.std(da - ls * dc)))
        lam = (jitter / (CRYSTAL_TOLERANCE * s0)) ** 2  # residual variance / prior variance of the slope
        return (sxy + lam * s0) / (sxx + lam)

    def time_of(self, counters: np.ndarray | float) -> np.ndarray:
        """Host times of the given device counters (fractional counters allowed) under the current fit."""
        if self._ref is None:
            raise RuntimeError("ClockFit has no data yet")
        rel = np.asarray(counters, dtype=np.float64) - float(self._ref)
        return self.intercept + self.slope * rel

    def stamp(self, counters: np.ndarray) -> np.ndarray:
        """Time stamps for the next block of samples of the one stream this fit serves."""
        return self._monotonic.clamp(counters, self.time_of(counters), self.slope)

    @property
    def drift_ppm(self) -> float:
        """How much faster than nominal the device's clock runs, in parts per million."""
        return (self.nominal_period / self.slope - 1.0) * 1e6


class MonotonicStamps:
    """Keeps one stream's stamps rising: a refit may move the line, but a block must not start before
    half a sample period after the previous block's last stamp. With max_slew_s, a block also starts at
    most that much later than the previous block's line continued (a lost sample still shows: the
    counter says so): a refit's jump is spread over several blocks, as NTP slews a clock, instead of a
    step in the data (for streams whose blocks are long, like a chest strap's)."""

    def __init__(self, max_slew_s: float | None = None) -> None:
        self.max_slew_s = max_slew_s
        self.last_counter: float | None = None
        self.last_time = -np.inf
        self.clamped = 0
        self.slewed = 0

    def clamp(self, counters: np.ndarray, times: np.ndarray, slope: float) -> np.ndarray:
        if len(times) == 0:
            return times
        c = np.asarray(counters, dtype=np.float64)
        if self.last_counter is not None:
            floor = self.last_time + 0.5 * slope * max(c[0] - self.last_counter, 1.0)
            ceiling = self.last_time + slope * (c[0] - self.last_counter) + (self.max_slew_s or np.inf)
            if times[0] < floor:
                times = times + (floor - times[0])
                self.clamped += 1
            elif times[0] > ceiling:
                times = times - (times[0] - ceiling)
                self.slewed += 1
        self.last_counter = float(c[-1])
        self.last_time = float(times[-1])
        return times
