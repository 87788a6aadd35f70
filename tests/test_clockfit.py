"""ClockFit: device counter -> host time. Jitter removed, drift followed, a lost packet is a gap."""

from __future__ import annotations

import numpy as np
import pytest

from drivers.runtime.clockfit import ClockFit


def simulate(rate=2000.0, drift_ppm=30.0, latency=0.012, jitter=0.003, block=32, seconds=40.0,
             lose_blocks=(), seed=1):
    """Blocks of `block` samples arrive with latency + exponential jitter; returns truth and stamps."""
    rng = np.random.default_rng(seed)
    true_rate = rate * (1 + drift_ppm * 1e-6)
    fit = ClockFit(1 / rate)
    truth, stamps, counters = [], [], []
    n_blocks = int(seconds * rate / block)
    for b in range(n_blocks):
        c = np.arange(b * block, (b + 1) * block)
        t_true = 100.0 + c / true_rate
        if b in lose_blocks:
            continue
        fit.add(int(c[-1]), t_true[-1] + latency + rng.exponential(jitter))
        stamps.append(fit.stamp(c))
        truth.append(t_true)
        counters.append(c)
    return np.concatenate(truth), np.concatenate(stamps), np.concatenate(counters), fit


def test_jitter_removed_after_convergence():
    truth, stamps, _, fit = simulate()
    err = stamps - (truth + 0.012)
    late = err[len(err) // 2 :]
    raw_jitter = 0.003
    assert np.sqrt(np.mean((late - late.mean()) ** 2)) < 1e-4  # 30x below the arrival jitter
    assert abs(late.mean()) < raw_jitter / 5  # the lower envelope lands near the true latency
    assert fit.drift_ppm == pytest.approx(30.0, abs=5.0)


def test_lost_blocks_leave_a_gap_not_a_shift():
    truth, stamps, counters, _ = simulate(lose_blocks=set(range(1000, 1010)))
    gap = np.flatnonzero(np.diff(counters) > 1)
    assert len(gap) == 1 and counters[gap[0] + 1] - counters[gap[0]] == 321
    dt = stamps[gap[0] + 1] - stamps[gap[0]]
    assert dt == pytest.approx(321 / 2000, abs=2e-4)
    err = stamps - truth
    assert abs(err[gap[0] + 1] - err[gap[0]]) < 2e-4  # no shift across the gap


def test_stamps_never_go_backwards():
    _, stamps, _, fit = simulate(jitter=0.02, seconds=20, block=8)
    assert np.all(np.diff(stamps) > 0)


def test_device_reset_starts_a_new_fit():
    fit = ClockFit(0.01)
    for k in range(100):
        fit.add(k, 5.0 + k * 0.01)
    fit.add(3, 20.0)  # counter went backwards: the device restarted
    assert fit.resets == 1
    assert fit.time_of(3) == pytest.approx(20.0)


def test_needs_data_and_a_positive_period():
    with pytest.raises(ValueError, match="nominal_period must be > 0"):
        ClockFit(0)
    with pytest.raises(RuntimeError, match="no data yet"):
        ClockFit(0.01).time_of(1)
