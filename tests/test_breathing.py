"""Breathing rate from the simulated chest (accelerometer and RR intervals) at 6-40 breaths/min, at
rest and while lifting."""

from __future__ import annotations

import numpy as np
import pytest

from drivers.chest.breathing import BreathingEstimator, Estimate, fuse
from drivers.sim.h10 import H10Settings, SimBody
from drivers.sim.lab import SimLabSettings


def estimate(rate: float, lifting: bool, seconds: float = 40.0, acc: bool = True, rr: bool = True):
    body = SimBody(H10Settings(lifting=lifting), SimLabSettings(breaths_per_min=rate), 100.0, seed=int(rate))
    t = 100.0 + np.arange(0, seconds, 1 / 200)
    est = BreathingEstimator()
    if acc:
        est.add_acc(t, body.acc(t))
    if rr:
        beats = body.sim.heart_beats(t[0] - 1.0, t[-1])
        est.add_rr(beats[1:], np.diff(beats) * 1000)
    return est.estimate(t[-1])


@pytest.mark.parametrize("lifting", [False, True], ids=["rest", "lifting"])
@pytest.mark.parametrize("rate", [6, 8, 10, 12, 15, 20, 25, 30, 35, 40])
def test_fused_rate_within_one_breath_per_minute(rate, lifting):
    fused, from_acc, _ = estimate(rate, lifting)
    assert abs(fused.rate_bpm - rate) <= 1.0
    assert abs(from_acc.rate_bpm - rate) <= 1.0 and from_acc.quality > 0.9


@pytest.mark.parametrize("rate", [6, 12, 20, 30])
def test_rsa_alone_works_below_half_the_heart_rate(rate):
    fused, from_acc, from_rr = estimate(rate, lifting=True, acc=False)
    assert np.isnan(from_acc.rate_bpm) and abs(from_rr.rate_bpm - rate) <= 1.0
    assert fused.rate_bpm == from_rr.rate_bpm


def test_rsa_cannot_see_breathing_faster_than_half_the_heart_rate():
    _, _, from_rr = estimate(40, lifting=False, acc=False)
    assert from_rr.quality < 0.2  # at 72 bpm, 40 breaths/min aliases: the estimate says it is unreliable


def test_too_short_a_window_gives_no_estimate():
    fused, from_acc, from_rr = estimate(15, lifting=False, seconds=10)
    assert np.isnan(fused.rate_bpm) and fused.quality == 0 and from_acc.quality == 0 and from_rr.quality == 0


def test_fusion_rules():
    assert fuse(Estimate(14, 0.8), Estimate(15, 0.8)).rate_bpm == pytest.approx(14.5)
    disagree = fuse(Estimate(40, 0.9), Estimate(32, 0.95))
    assert disagree.rate_bpm == 40 and disagree.quality == pytest.approx(0.45)  # clean chest motion wins
    assert fuse(Estimate(25, 0.2), Estimate(12, 0.9)).rate_bpm == 12  # noisy motion: RSA wins
    assert np.isnan(fuse(Estimate.none(), Estimate.none()).rate_bpm)
