"""The virtual lab shared by every simulated device: the subject (lift cycle, heart, breathing), the
trigger box's output as the devices see it, and each device's true clock.

All simulated devices run on this host, so they share pylsl.local_clock() as the true time base.
Everything about the subject is a function of that time alone, so every device (in its own process)
sees the same heart beat and the same lift without talking to the others. The trigger output comes
from the emulated trigger box when the rig has one ([sim] trigger, drivers.sim.triggerline), else it
runs free: a pulse every pulse_period_s.
"""

from __future__ import annotations

import math

import numpy as np
from pydantic import BaseModel, ConfigDict, Field


class SimLabSettings(BaseModel):
    """The rig file's [sim] table."""

    model_config = ConfigDict(extra="forbid")

    seed: int = 7
    trigger: str = Field("", description="the rig's emulated trigger box (device id) whose output lights the LED "
                                         "and drives the EMG trigger inputs; empty: free-running pulses")
    pulse_period_s: float = Field(2.0, gt=0, description="free-running: one trigger pulse every this many seconds")
    pulse_width_s: float = Field(0.05, gt=0)
    lift_period_s: float = Field(4.0, gt=0, description="one repetition of the lift")
    heart_bpm: float = Field(72.0, gt=20, lt=240, description="the subject's mean heart rate")
    breaths_per_min: float = Field(14.0, ge=4, le=60)
    rsa: float = Field(0.05, ge=0, lt=0.5, description="relative RR modulation by breathing")

    def breathing(self, t: np.ndarray) -> np.ndarray:
        """-1..1: the subject's breathing cycle at true time t."""
        return np.sin(2 * np.pi * np.asarray(t, dtype=np.float64) * self.breaths_per_min / 60.0)

    def heart_beats(self, a: float, b: float) -> np.ndarray:
        """True times of the heart beats (R peaks) in [a, b]. The beat phase is a closed-form function of
        absolute time, phase(t) = (t + c cos(w t)) / rr with c = rsa / w: the RR interval grows and shrinks
        with breathing (respiratory sinus arrhythmia) and every process finds the same beats."""
        rr = 60.0 / self.heart_bpm
        w = 2 * np.pi * self.breaths_per_min / 60.0
        c = self.rsa / w

        def phase(t: np.ndarray) -> np.ndarray:
            return (t + c * np.cos(w * t)) / rr

        first = math.ceil(float(phase(np.array(a))))
        last = math.floor(float(phase(np.array(b))))
        if last < first:
            return np.zeros(0)
        n = np.arange(first, last + 1, dtype=np.float64)
        t = n * rr
        for _ in range(6):  # Newton: phase is monotonic (rsa < 1), a few steps reach float precision
            t = t - (phase(t) - n) * rr / (1.0 - self.rsa * np.sin(w * t))
        return t[(t >= a) & (t <= b)]

    def lift_position(self, t: np.ndarray) -> np.ndarray:
        """Bar height, 0 (floor) to 1 (lockout), of the simulated lift at true time t."""
        return 0.5 - 0.5 * np.cos(2 * np.pi * np.asarray(t, dtype=np.float64) / self.lift_period_s)

    def muscle_activation(self, t: np.ndarray) -> np.ndarray:
        """0..1 activation: high while the bar moves up (concentric phase)."""
        phase = np.mod(np.asarray(t, dtype=np.float64) / self.lift_period_s, 1.0)
        return np.clip(np.sin(2 * np.pi * phase), 0.0, 1.0) ** 2


def qrs_waveform(d: np.ndarray) -> np.ndarray:
    """The heart's QRS complex, peak 1 at the R peak (d = seconds from the beat): an R wave and the S
    wave after it. The chest strap's ECG and the heart artifact in trunk EMG both carry it."""
    d = np.asarray(d, dtype=np.float64)
    return np.exp(-0.5 * (d / 0.012) ** 2) - 0.125 * np.exp(-0.5 * ((d - 0.03) / 0.015) ** 2)


def heart_artifact(sim: SimLabSettings, t: np.ndarray) -> np.ndarray:
    """Sum of QRS complexes (peak 1) at true times t."""
    t = np.asarray(t, dtype=np.float64)
    out = np.zeros(len(t))
    if len(t) == 0:
        return out
    for beat in sim.heart_beats(float(t.min()) - 0.2, float(t.max()) + 0.2):
        near = np.abs(t - beat) < 0.15
        out[near] += qrs_waveform(t[near] - beat)
    return out


class DeviceTruth(BaseModel):
    """What only the simulation knows about a device's timing. Part of every sim device's settings."""

    model_config = ConfigDict(extra="forbid")

    clock_offset_s: float = 0.0
    drift_ppm: float = 0.0
    latency_s: float = Field(0.0, ge=0)
    jitter_s: float = Field(0.0, ge=0, description="mean extra delivery delay (exponential)")


class SimClock:
    """A device's sample clock: sample k happens at true time t0 + k / true_rate and reaches the host
    latency_s later plus jitter."""

    def __init__(self, truth: DeviceTruth, nominal_rate: float, t0: float) -> None:
        self.truth = truth
        self.nominal_rate = nominal_rate
        self.true_rate = nominal_rate * (1.0 + truth.drift_ppm * 1e-6)
        self.t0 = t0

    def true_time(self, k: np.ndarray | int | float) -> np.ndarray:
        return self.t0 + np.asarray(k, dtype=np.float64) / self.true_rate

    def count_arrived(self, now: float) -> int:
        """How many samples (0..k-1) have reached the host by host time `now` (before jitter)."""
        return max(0, int(math.floor((now - self.truth.latency_s - self.t0) * self.true_rate)) + 1)

    def device_time(self, t: np.ndarray | float) -> np.ndarray:
        """The device's own clock reading at true time t (offset and drift)."""
        t = np.asarray(t, dtype=np.float64)
        return self.t0 + self.truth.clock_offset_s + (t - self.t0) * (1.0 + self.truth.drift_ppm * 1e-6)

    def truth_record(self, **extra: object) -> dict:
        """The entry this device contributes to a take's truth.json."""
        return {
            "t0": self.t0,
            "nominal_rate": self.nominal_rate,
            "true_rate": self.true_rate,
            "clock_offset_s": self.truth.clock_offset_s,
            "drift_ppm": self.truth.drift_ppm,
            "latency_s": self.truth.latency_s,
            "jitter_s": self.truth.jitter_s,
            "sample_time": "t0 + k / true_rate (k = device counter, true host LSL time)",
            **extra,
        }
