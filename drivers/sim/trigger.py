"""Simulated trigger box: fires a pulse every pulse_period_s (the LED every camera sees and the TTL
line on the EMG trigger input) and logs each pulse on a Markers stream with the time it fired."""

from __future__ import annotations

import pylsl
from pydantic import BaseModel, ConfigDict

from drivers.runtime.driver import Driver, DriverContext
from drivers.runtime.streams import IRREGULAR_RATE, StreamSpec, channels
from drivers.sim.lab import SimLabSettings


class SimTriggerSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")


class SimTriggerDriver(Driver):
    kind = "sim-trigger"
    reports_truth = True
    Settings = SimTriggerSettings

    @classmethod
    def stream_specs(cls, ctx: DriverContext) -> list[StreamSpec]:
        return [ctx.spec("pulses", f"{ctx.device_id} pulses", "Markers", channels(["pulse"], "", "Marker"),
                         IRREGULAR_RATE, "string")]

    def __init__(self, ctx: DriverContext) -> None:
        super().__init__(ctx)
        self.sim: SimLabSettings = ctx.sim or SimLabSettings()
        self.next_pulse: int | None = None
        self.fired = 0

    def open(self) -> None:
        if self.next_pulse is None:
            self.next_pulse = self.sim.pulse_index(pylsl.local_clock()) + 1

    def read(self) -> None:
        assert self.next_pulse is not None
        onset = self.next_pulse * self.sim.pulse_period_s
        delay = onset - pylsl.local_clock()
        if delay > 0 and self.stop_event.wait(min(delay, 0.2)):
            return
        if pylsl.local_clock() < onset:
            return
        width_ms = round(self.sim.pulse_width_s * 1000)
        self.publish("pulses", [[f"pulse {self.next_pulse} width_ms={width_ms}"]], [onset])
        self.fired += 1
        self.next_pulse += 1

    def status_extra(self) -> dict:
        return {"pulses_fired": self.fired}

    def commands(self) -> dict:
        return {"truth": self.truth}

    def truth(self) -> dict:
        return {self.ctx.device_id: {
            "kind": self.kind, "streams": [f"{self.ctx.device_id}_pulses"],
            "pulse_period_s": self.sim.pulse_period_s, "pulse_width_s": self.sim.pulse_width_s,
            "pulse_time": "n * pulse_period_s for pulse n (true host LSL time)",
        }}
