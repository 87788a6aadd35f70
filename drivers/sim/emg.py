"""Simulated sEMG amplifier: 16 channels at 2000 Hz, bursts that follow the lift, the trigger box's
pulse on a trigger channel and the device's sample counter (mod 2^24, exact in float32)."""

from __future__ import annotations

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from drivers.runtime.driver import Driver, DriverContext
from drivers.runtime.streams import ChannelSpec, StreamSpec, channels
from drivers.sim.delivery import SimDelivery
from drivers.sim.lab import DeviceTruth, SimClock, SimLabSettings

COUNTER_MODULO = 1 << 24  # float32 holds every integer below 2^24 exactly
NOISE_TABLE = 1 << 16

DEFAULT_MUSCLES = [
    "vastus_lateralis_l", "vastus_lateralis_r", "rectus_femoris_l", "rectus_femoris_r",
    "biceps_femoris_l", "biceps_femoris_r", "gluteus_maximus_l", "gluteus_maximus_r",
    "erector_spinae_l", "erector_spinae_r", "rectus_abdominis_l", "rectus_abdominis_r",
    "biceps_brachii_l", "biceps_brachii_r", "deltoid_anterior_l", "deltoid_anterior_r",
]


class SimEmgSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    channels: int = Field(16, ge=1, le=64)
    rate: float = Field(2000.0, gt=0)
    block_interval_s: float = Field(0.016, gt=0, description="delivery tick (FTDI latency timer)")
    labels: list[str] | None = None
    truth: DeviceTruth = DeviceTruth(latency_s=0.012, jitter_s=0.002, drift_ppm=20.0)

    def channel_labels(self) -> list[str]:
        if self.labels is not None:
            if len(self.labels) != self.channels:
                raise ValueError(f"labels has {len(self.labels)} names for {self.channels} channels")
            return list(self.labels)
        if self.channels <= len(DEFAULT_MUSCLES):
            return DEFAULT_MUSCLES[: self.channels]
        return [f"emg{i + 1}" for i in range(self.channels)]


class SimEmgSignal:
    """The deterministic signal: value(k) depends only on the counter k and the device's true clock,
    so a test can recompute every recorded value exactly."""

    def __init__(self, settings: SimEmgSettings, sim: SimLabSettings, device_seed: int) -> None:
        self.settings = settings
        self.sim = sim
        rng = np.random.default_rng([sim.seed, device_seed])
        self.noise = rng.standard_normal((NOISE_TABLE, settings.channels)).astype(np.float32)
        self.gain = rng.uniform(0.5, 1.5, settings.channels).astype(np.float32)

    def samples(self, counters: np.ndarray, clock: SimClock) -> np.ndarray:
        t = clock.true_time(counters)
        activation = self.sim.muscle_activation(t).astype(np.float32)
        amplitude = 5.0 + 150.0 * activation[:, None] * self.gain[None, :]  # microvolts
        out = np.empty((len(counters), self.settings.channels + 2), dtype=np.float32)
        out[:, : self.settings.channels] = self.noise[counters % NOISE_TABLE] * amplitude
        out[:, -2] = self.sim.pulse_active(t)
        out[:, -1] = counters % COUNTER_MODULO
        return out


def device_seed(device_id: str) -> int:
    return sum(device_id.encode()) * 7919


class SimEmgDriver(Driver):
    kind = "sim-emg"
    Settings = SimEmgSettings

    @classmethod
    def stream_specs(cls, ctx: DriverContext) -> list[StreamSpec]:
        s: SimEmgSettings = ctx.settings or SimEmgSettings()
        chans = (*channels(s.channel_labels(), "microvolts", "EMG"),
                 ChannelSpec("trigger", "boolean", "Trigger"),
                 ChannelSpec("counter", "samples mod 2^24", "Counter"))
        return [ctx.spec(ctx.device_id, ctx.device_id, "EMG", chans, s.rate)]

    def __init__(self, ctx: DriverContext) -> None:
        super().__init__(ctx)
        self.sim: SimLabSettings = ctx.sim or SimLabSettings()
        self.signal = SimEmgSignal(self.settings, self.sim, device_seed(ctx.device_id))
        self.clock: SimClock | None = None
        self.delivery: SimDelivery | None = None

    def open(self) -> None:
        import pylsl

        if self.clock is None:  # the simulated amplifier powers up once; reconnects resume its counter
            self.clock = SimClock(self.settings.truth, self.settings.rate, pylsl.local_clock())
            rng = np.random.default_rng([self.sim.seed, device_seed(self.ctx.device_id), 1])
            self.delivery = SimDelivery(self.clock, self.settings.block_interval_s, rng)

    def read(self) -> None:
        assert self.delivery is not None and self.clock is not None
        block = self.delivery.wait_block(self.stop_event)
        if block is None:
            return
        counters, _arrival = block
        self.publish(self.ctx.device_id, self.signal.samples(counters, self.clock),
                     self.delivery.stamps(counters))

    def commands(self) -> dict:
        return {"truth": self.truth}

    def truth(self) -> dict:
        if self.clock is None:
            return {}
        return {self.ctx.device_id: self.clock.truth_record(kind=self.kind, streams=[self.ctx.device_id])}
