"""Simulated chest strap (Polar H10-like): heart rate and RR intervals from a heart with respiratory
sinus arrhythmia, ECG at 130 Hz in 73-sample frames, chest accelerometer at 200 Hz showing breathing
and the lift."""

from __future__ import annotations

import numpy as np
import pylsl
from pydantic import BaseModel, ConfigDict, Field

from drivers.runtime.driver import Driver, DriverContext
from drivers.runtime.streams import IRREGULAR_RATE, StreamSpec, channels
from drivers.sim.delivery import SimDelivery
from drivers.sim.emg_signal import device_seed
from drivers.sim.lab import DeviceTruth, SimClock, SimLabSettings

ECG_FRAME = 73  # samples per H10 ECG notification
ACC_FRAME = 36  # samples per ACC notification at 200 Hz (10 + 36 * 6 bytes fits the 232-byte MTU)


class SimChestSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    hr_bpm: float = Field(72.0, gt=20, lt=240)
    breaths_per_min: float = Field(14.0, gt=2, lt=60)
    rsa: float = Field(0.05, ge=0, lt=0.5, description="relative RR modulation by breathing")
    ecg_rate: float = Field(130.0, gt=0)
    acc_rate: float = Field(200.0, gt=0)
    notify_interval_s: float = Field(1.0, gt=0, description="heart rate notification period")
    truth: DeviceTruth = DeviceTruth(latency_s=0.04, jitter_s=0.01, drift_ppm=-30.0, clock_offset_s=-3.5)


class SimHeart:
    """Beat times on the true clock: RR intervals modulated by breathing (RSA)."""

    def __init__(self, s: SimChestSettings, t_start: float) -> None:
        self.s = s
        self.breath_period = 60.0 / s.breaths_per_min
        self.base_rr = 60.0 / s.hr_bpm
        self.beats = [t_start + 0.3]

    def rr_after(self, b: float) -> float:
        return self.base_rr * (1.0 + self.s.rsa * np.sin(2 * np.pi * b / self.breath_period))

    def extend_to(self, t: float) -> np.ndarray:
        while self.beats[-1] <= t + 1.0:
            self.beats.append(self.beats[-1] + self.rr_after(self.beats[-1]))
        return np.asarray(self.beats)

    def ecg(self, t: np.ndarray) -> np.ndarray:
        """ECG in microvolts at true times t (QRS, T wave, breathing baseline)."""
        beats = self.extend_to(float(t[-1]))
        idx = np.searchsorted(beats, t)
        out = 80.0 * np.sin(2 * np.pi * t / self.breath_period)
        for shift in (-2, -1, 0):
            b = beats[np.clip(idx + shift, 0, len(beats) - 1)]
            d = t - b
            out = out + 1200.0 * np.exp(-0.5 * (d / 0.012) ** 2) - 150.0 * np.exp(-0.5 * ((d - 0.03) / 0.015) ** 2)
            out = out + 250.0 * np.exp(-0.5 * ((d - 0.25) / 0.04) ** 2)
        return np.round(out)

    def acc(self, t: np.ndarray, sim: SimLabSettings) -> np.ndarray:
        """Chest acceleration in mG: gravity, breathing excursion, the lift's vertical acceleration."""
        breathing = np.sin(2 * np.pi * t / self.breath_period)
        lift_acc = np.cos(2 * np.pi * t / sim.lift_period_s)
        return np.round(np.stack([25.0 * breathing, -1000.0 + 120.0 * lift_acc, 40.0 * breathing], axis=1))


class SimChestDriver(Driver):
    kind = "sim-chest"
    Settings = SimChestSettings

    @classmethod
    def stream_specs(cls, ctx: DriverContext) -> list[StreamSpec]:
        s: SimChestSettings = ctx.settings or SimChestSettings()
        d = ctx.device_id
        return [
            ctx.spec("hr", f"{d} HR", "HeartRate", channels(["hr"], "bpm", "HR"), IRREGULAR_RATE),
            ctx.spec("rr", f"{d} RR", "RR", channels(["rr"], "ms", "RR"), IRREGULAR_RATE),
            ctx.spec("ecg", f"{d} ECG", "ECG", channels(["ecg"], "microvolts", "ECG"), s.ecg_rate),
            ctx.spec("acc", f"{d} ACC", "Accelerometer", channels(["x", "y", "z"], "mG", "ACC"), s.acc_rate),
        ]

    def __init__(self, ctx: DriverContext) -> None:
        super().__init__(ctx)
        self.sim: SimLabSettings = ctx.sim or SimLabSettings()
        self.ecg: SimDelivery | None = None
        self.acc: SimDelivery | None = None
        self.heart: SimHeart | None = None
        self.next_notify = 0.0
        self.last_notified_beat = 0
        self.tick = 0.05

    def open(self) -> None:
        if self.ecg is not None:
            return
        t0 = pylsl.local_clock()
        s: SimChestSettings = self.settings
        rng = np.random.default_rng([self.sim.seed, device_seed(self.ctx.device_id)])
        self.rng = rng
        self.ecg = SimDelivery(SimClock(s.truth, s.ecg_rate, t0), self.tick, rng, ECG_FRAME)
        self.acc = SimDelivery(SimClock(s.truth, s.acc_rate, t0), self.tick, rng, ACC_FRAME)
        self.heart = SimHeart(s, t0)
        self.next_notify = t0 + s.notify_interval_s
        self.next_tick = t0 + self.tick

    def _beat_stamps(self, beats: np.ndarray) -> np.ndarray:
        """Beat times mapped through the ECG clock fit, like every other sample of this strap."""
        assert self.ecg is not None
        clock = self.ecg.clock
        return self.ecg.fit.time_of((beats - clock.t0) * clock.true_rate)

    def read(self) -> None:
        assert self.ecg is not None and self.acc is not None and self.heart is not None
        s: SimChestSettings = self.settings
        jitter = s.truth.jitter_s
        target = self.next_tick + (self.rng.exponential(jitter) if jitter else 0.0)
        self.next_tick += self.tick
        delay = target - pylsl.local_clock()
        if delay > 0 and self.stop_event.wait(delay):
            return
        for key, delivery in (("ecg", self.ecg), ("acc", self.acc)):
            block = delivery.poll(target)
            if block is None:
                continue
            counters, _ = block
            t = delivery.clock.true_time(counters)
            values = self.heart.ecg(t)[:, None] if key == "ecg" else self.heart.acc(t, self.sim)
            self.publish(key, values.astype(np.float32), delivery.stamps(counters))
        # heart-rate notifications: every notify_interval_s, once the ECG clock fit exists
        latency = s.truth.latency_s
        while self.ecg.fit.ready and self.next_notify + latency <= target:
            beats = self.heart.extend_to(self.next_notify)
            done = int(np.searchsorted(beats, self.next_notify, side="right"))
            new = np.arange(max(self.last_notified_beat, 1), done)
            if len(new):
                rr_ms = np.round((beats[new] - beats[new - 1]) * 1024.0) * 1000.0 / 1024.0
                self.publish("rr", rr_ms.astype(np.float32)[:, None], self._beat_stamps(beats[new]))
                hr = np.float32(round(60000.0 / rr_ms[-1]))
                self.publish("hr", np.array([[hr]], dtype=np.float32),
                             self._beat_stamps(np.array([self.next_notify])))
            self.last_notified_beat = done
            self.next_notify += s.notify_interval_s

    def commands(self) -> dict:
        return {"truth": self.truth}

    def truth(self) -> dict:
        if self.ecg is None or self.heart is None or self.acc is None:
            return {}
        d = self.ctx.device_id
        return {
            d: self.ecg.clock.truth_record(
                kind=self.kind, streams=[f"{d}_ecg", f"{d}_acc", f"{d}_hr", f"{d}_rr"],
                acc_true_rate=self.acc.clock.true_rate,
                hr_bpm=self.settings.hr_bpm, breaths_per_min=self.settings.breaths_per_min,
            )
        }
