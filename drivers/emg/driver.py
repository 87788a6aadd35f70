"""The sEMG driver: a transport, a protocol, a parser and a clock fit, publishing one EMG stream.

Channels: the electrode channels in device order in microvolts (labels from the rig file, e.g.
muscle names), then `trigger` (the trigger input, 0..1) and `counter` (the device's raw counter:
Shimmer 32768 Hz ticks mod 2^24, Cyton sample number mod 256) so the sync step can re-fit offline.
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
import pylsl
from pydantic import BaseModel, ConfigDict, Field, model_validator

from drivers.emg.cyton import CytonProtocol
from drivers.emg.packets import Samples
from drivers.emg.shimmer import ShimmerProtocol
from drivers.emg.transport import SerialTransport, Transport, serial_port_of
from drivers.runtime.clockfit import ClockFit
from drivers.runtime.driver import DeviceError, Driver, DriverContext
from drivers.runtime.streams import ChannelSpec, StreamSpec, channels
from drivers.sim.emg_emulator import EmgEmulatorSettings

PROTOCOL_CHANNELS = {"shimmer3-exg": 4, "cyton": 8, "cyton-daisy": 16}


class EmgSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    protocol: Literal["shimmer3-exg", "cyton", "cyton-daisy"]
    port: str | None = Field(None, description="serial port; not needed with connection = 'emulator'")
    rate: float | None = Field(None, gt=0, description="Hz; Shimmer default 1024, Cyton 250, Cyton+Daisy 125")
    gain: int | None = Field(None, description="amplifier gain; Shimmer default 12, Cyton default 24")
    trigger: bool = Field(True, description="read the trigger box's pulse on the trigger input")
    labels: list[str] | None = Field(None, description="electrode names (e.g. muscles) in device order")
    name: str | None = Field(None, description="LSL stream name (default: the device id)")
    emulator: EmgEmulatorSettings = EmgEmulatorSettings()

    @model_validator(mode="after")
    def _check(self) -> EmgSettings:
        self.make_protocol()  # rate and gain checks
        n = PROTOCOL_CHANNELS[self.protocol]
        if self.labels is not None and len(self.labels) != n:
            raise ValueError(f"labels has {len(self.labels)} names; {self.protocol} has {n} channels")
        return self

    def make_protocol(self) -> ShimmerProtocol | CytonProtocol:
        if self.protocol == "shimmer3-exg":
            return ShimmerProtocol(self.rate or 1024.0, self.gain or 12, self.trigger)
        return CytonProtocol(self.protocol == "cyton-daisy", self.rate, self.gain or 24, self.trigger)

    def channel_labels(self) -> list[str]:
        if self.labels is not None:
            return list(self.labels)
        names = {"shimmer3-exg": ["exg1_ch1", "exg1_ch2", "exg2_ch1", "exg2_ch2"]}
        return names.get(self.protocol, [f"ch{i + 1}" for i in range(PROTOCOL_CHANNELS[self.protocol])])


class EmgDriver(Driver):
    kind = "emg"
    Settings = EmgSettings

    @classmethod
    def stream_specs(cls, ctx: DriverContext) -> list[StreamSpec]:
        s: EmgSettings = ctx.settings  # type: ignore[assignment]
        proto = s.make_protocol()
        chans = (*channels(s.channel_labels(), "microvolts", "EMG"),
                 ChannelSpec("trigger", "normalized", "Trigger"),
                 ChannelSpec("counter", "device counter", "Counter"))
        return [ctx.spec(ctx.device_id, s.name or ctx.device_id, "EMG", chans, proto.nominal_rate,
                         extra_desc={"acquisition": {"protocol": s.protocol}})]

    def __init__(self, ctx: DriverContext) -> None:
        super().__init__(ctx)
        self.protocol = self.settings.make_protocol()
        self.transport: Transport | None = None
        self.parser: Any = None
        self.fit = ClockFit(self.protocol.counter_period)
        self.lost_before = 0  # packets lost in earlier connections
        self.jitter_log: list[tuple[int, float]] | None = None  # (counter, arrival), for benchmarks

    def open(self) -> None:
        transport = SerialTransport(serial_port_of(self.ctx, self.settings.port), self.protocol.baudrate)
        transport.open()
        try:
            leftover = self.protocol.start(transport)
        except Exception:
            transport.close()
            raise
        n = len(self.protocol.channel_names())
        if n != len(self.settings.channel_labels()):
            transport.close()
            raise DeviceError(f"the device reports {n} channels; the rig expects {len(self.settings.channel_labels())}")
        self.transport = transport
        if self.parser is not None:
            self.lost_before += self.parser.stats.lost
        self.parser = self.protocol.parser()
        self.fit.reset()  # a new connection is a new timeline for the counter
        self._handle(self.parser.feed(leftover), pylsl.local_clock())

    def read(self) -> None:
        assert self.transport is not None
        data = self.transport.read(0.05)
        if data:
            self._handle(self.parser.feed(data), pylsl.local_clock())

    def _handle(self, s: Samples, arrival: float) -> None:
        self.drops = self.lost_before + self.parser.stats.lost
        if len(s) == 0:
            return
        # the arrival belongs to the packet that completed the last sample
        last = int(s.counters[-1]) + self.protocol.completion_offset
        self.fit.add(last, arrival)
        if self.jitter_log is not None:
            self.jitter_log.append((last, arrival))
        out = np.empty((len(s), s.values.shape[1] + 2), dtype=np.float32)
        out[:, :-2] = s.values
        out[:, -2] = s.trigger
        out[:, -1] = s.raw_counter
        self.publish(self.ctx.device_id, out, self.fit.stamp(s.counters))

    def close(self) -> None:
        if self.transport is not None:
            try:
                self.protocol.stop(self.transport)
            except DeviceError:
                pass
            self.transport.close()
            self.transport = None

    def status_extra(self) -> dict[str, Any]:
        stats = self.parser.stats if self.parser is not None else None
        try:
            port = serial_port_of(self.ctx, self.settings.port)
        except DeviceError as exc:
            port = str(exc)
        return {
            "protocol": self.settings.protocol,
            "port": port,
            "device_info": self.protocol.info,
            "lost_packets": self.drops,
            "garbage_bytes": stats.garbage_bytes if stats else 0,
            "resyncs": stats.resyncs if stats else 0,
            "timeline_breaks": self.parser.timeline_breaks if self.parser is not None else 0,
            "parser_events": list(stats.events[-3:]) if stats else [],
            "low_latency": bool(self.transport and getattr(self.transport, "low_latency", False)),
            "clock_drift_ppm": round(self.fit.drift_ppm, 2) if self.fit.ready else None,
        }
