"""The trigger box driver (pyserial): fires coded pulse trains and publishes every pulse, with its
time on the host's LSL clock, on a Markers stream (`<id>_pulses`).

Two kinds of box:
- "flexcap": the box of drivers.trigger.protocol times each train on its own microsecond clock and
  echoes every edge; the driver maps those readings onto the host clock (drivers.trigger.boxclock), so
  a pulse's time does not depend on USB latency or host scheduling.
- "byte": a USB-serial TTL box whose output lines follow the last byte written. It has no clock: the
  driver times the train itself and a pulse's time is when its byte left (about a millisecond of USB
  uncertainty).

Each marker is JSON: {"train", "label", "pulse", "of", "rise_lsl", "fall_lsl", "timing", ...}, stamped
with the rise. A flexcap box's clock queries go on `<id>_clock` (box micros unwrapped, host send and
receive times), so the sync controller can map the echoed edges again afterwards with the queries
from both sides of every pulse, not only those before it. The sync controller asks for trains through
the commands `fire`, `wait_train` and `periodic` (the rig: at take start and end, and every N seconds
if configured).
"""

from __future__ import annotations

import json
import logging
import threading
import time
from typing import Any, Literal

import pylsl
from pydantic import BaseModel, ConfigDict, Field

from drivers.emg.transport import SerialTransport, Transport, serial_port_of
from drivers.runtime.driver import DeviceError, Driver, DriverContext
from drivers.runtime.streams import IRREGULAR_RATE, ChannelSpec, StreamSpec, channels
from drivers.sim.trigger_box import TriggerBoxSettings
from drivers.trigger import protocol as tp
from drivers.trigger.boxclock import BoxClock, wire_times
from drivers.trigger.trains import train_durations, train_length_s

log = logging.getLogger(__name__)

LABELS = ("take_start", "take_end", "periodic", "test")
TRAIN_GRACE_S = 2.0  # a train whose end the box has not reported this long after it should have ended is over


class TriggerSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    protocol: Literal["flexcap", "byte"] = "flexcap"
    port: str | None = Field(None, description="serial port; not needed with connection = 'emulator'")
    baudrate: int = Field(tp.BAUDRATE, gt=0)
    byte_on: int = Field(1, ge=0, le=255, description="byte boxes: the byte that raises the lines")
    byte_off: int = Field(0, ge=0, le=255, description="byte boxes: the byte that lowers them")
    clock_query_s: float = Field(0.25, gt=0, le=5, description="flexcap boxes: how often the box clock is read")
    uart_bridge: bool = Field(True, description="flexcap boxes: the board talks through a USB-UART bridge (Uno, "
                              "Nano): byte transfer times are taken out of clock queries; false for native USB")
    emulator: TriggerBoxSettings = TriggerBoxSettings()


class Train:
    def __init__(self, seq: int, label: str, durations: list[int]) -> None:
        self.seq = seq
        self.label = label
        self.durations = durations
        self.accepted: int | None = None  # the box's pulse count
        self.refused: str | None = None
        self.pulses: list[dict[str, Any]] = []
        self.done = threading.Event()
        self.deadline = pylsl.local_clock() + sum(durations) / 1e6 + TRAIN_GRACE_S

    def summary(self) -> dict[str, Any]:
        return {"train": self.seq, "label": self.label, "durations_us": self.durations, "pulses": self.pulses,
                "complete": self.done.is_set() and self.refused is None, "refused": self.refused}


class TriggerDriver(Driver):
    kind = "trigger"
    Settings = TriggerSettings

    @classmethod
    def stream_specs(cls, ctx: DriverContext) -> list[StreamSpec]:
        s: TriggerSettings = ctx.settings  # type: ignore[assignment]
        specs = [ctx.spec("pulses", f"{ctx.device_id} pulses", "Markers", channels(["pulse"], "json", "Marker"),
                          IRREGULAR_RATE, "string", extra_desc={"acquisition": {"protocol": s.protocol}})]
        if s.protocol == "flexcap":
            specs.append(ctx.spec("clock", f"{ctx.device_id} clock", "ClockQueries",
                                  (ChannelSpec("box_us", "microseconds", "BoxClock"),
                                   ChannelSpec("host_sent", "seconds", "HostClock"),
                                   ChannelSpec("host_received", "seconds", "HostClock")),
                                  IRREGULAR_RATE, "double64"))
        return specs

    def __init__(self, ctx: DriverContext) -> None:
        super().__init__(ctx)
        self.transport: Transport | None = None
        self.clock = BoxClock()
        self.unwrap = tp.MicrosUnwrapper()
        self.firmware = ""
        self._lock = threading.RLock()  # transport writes and train bookkeeping (commands run on another thread)
        self._buf = b""
        self._ping_sent: float | None = None
        self._next_ping = 0.0
        self._next_seq = int(time.time()) % 100_000 * 100  # distinct across restarts within a session
        self.trains: dict[int, Train] = {}
        self.fired = 0
        self._periodic_s: float | None = None
        self._next_periodic = 0.0
        self._ignore_clock_until = 0.0

    # -- device -------------------------------------------------------------------------------------
    def open(self) -> None:
        transport = SerialTransport(serial_port_of(self.ctx, self.settings.port), self.settings.baudrate)
        transport.open()
        if self.settings.protocol == "flexcap":
            try:
                self._hello(transport)
            except Exception:
                transport.close()
                raise
        else:
            transport.write(bytes([self.settings.byte_off]))
        with self._lock:
            self.transport = transport
            # a box that was unplugged (or reset when its port opened) starts its clock again
            self.clock = BoxClock()
            self.unwrap = tp.MicrosUnwrapper()
            self._ping_sent = None

    def _hello(self, transport: Transport) -> None:
        transport.write(b"\n")  # end whatever half line a previous session left in the box
        deadline = time.monotonic() + 2.0
        transport.write(b"I\n")
        buf = b""
        while time.monotonic() < deadline:
            buf += transport.read(0.05)
            while b"\n" in buf:
                line, buf = buf.split(b"\n", 1)
                try:
                    reply = tp.parse_reply(line)
                except tp.ProtocolError:
                    continue
                if isinstance(reply, tp.Hello):
                    if reply.version != tp.PROTOCOL_VERSION:
                        raise DeviceError(f"the trigger box speaks protocol {reply.version}; flexcap speaks "
                                          f"{tp.PROTOCOL_VERSION} (update its firmware)")
                    self.firmware = reply.firmware
                    self._buf = buf
                    return
        raise DeviceError(f"{transport.description}: no answer to I within 2 s (is it a flexcap trigger box? "
                          "for a box whose lines follow the last byte written, set protocol = 'byte')")

    def read(self) -> None:
        transport = self.transport
        assert transport is not None
        now = pylsl.local_clock()
        if self.settings.protocol == "flexcap":
            if self._ping_sent is None and now >= self._next_ping:
                with self._lock:
                    self._ping_sent = pylsl.local_clock()
                    transport.write(b"T\n")
                    self._next_ping = self._ping_sent + self.settings.clock_query_s
            elif self._ping_sent is not None and now - self._ping_sent > 1.0:
                # a lost reply: ask again, but not before a late one would have come (it must not be taken
                # for the answer to the next query)
                self._ping_sent = None
                self._next_ping = now + 1.0
                self._ignore_clock_until = now + 1.0
        if self._periodic_s is not None and now >= self._next_periodic:
            self._next_periodic = now + self._periodic_s
            try:
                self._fire("periodic", wait=False)  # this thread reads the box: it must never wait here
            except DeviceError as exc:
                log.warning("periodic train not fired: %s", exc)
        data = transport.read(0.02)
        received = pylsl.local_clock()
        if not data:
            return
        self._buf += data
        while b"\n" in self._buf:
            line, self._buf = self._buf.split(b"\n", 1)
            self._reply(line, received)

    def _reply(self, line: bytes, received: float) -> None:
        try:
            reply = tp.parse_reply(line)
        except tp.ProtocolError as exc:
            log.warning("%s: %s", self.ctx.device_id, exc)
            return
        if isinstance(reply, tp.ClockReply):
            if self._ping_sent is not None and received >= self._ignore_clock_until:
                box = self.unwrap(reply.micros)
                self.clock.add(box, self._ping_sent, received,
                               wire_times(self.settings.baudrate, self.settings.uart_bridge))
                self.publish("clock", [[float(box), self._ping_sent, received]], [received])
                self._ping_sent = None
            return
        with self._lock:
            if isinstance(reply, tp.Accepted):
                train = self.trains.get(reply.seq)
                if train is not None:
                    train.accepted = reply.pulses
            elif isinstance(reply, tp.Edge):
                self._edge(reply)
            elif isinstance(reply, tp.Done):
                train = self.trains.get(reply.seq)
                if train is not None:
                    train.done.set()
            elif isinstance(reply, tp.Refused):
                train = self.trains.get(reply.seq) if reply.seq is not None else None
                log.warning("%s: the box refused: %s", self.ctx.device_id, reply.reason)
                if train is not None:
                    train.refused = reply.reason
                    train.done.set()

    def _edge(self, e: tp.Edge) -> None:
        train = self.trains.get(e.seq)
        if train is None or not self.clock.ready:
            return
        ref = self.unwrap.last if self.unwrap.last is not None else e.rise_us
        ref_unwrapped = self.unwrap.wraps * tp.MICROS_WRAP + ref
        rise = self.unwrap.near(e.rise_us, ref_unwrapped)
        fall = self.unwrap.near(e.fall_us, ref_unwrapped)
        pulse = {"train": e.seq, "label": train.label, "pulse": e.index, "of": train.accepted,
                 "rise_lsl": self.clock.host_time(rise), "fall_lsl": self.clock.host_time(fall),
                 "box_rise_us": e.rise_us, "box_fall_us": e.fall_us, "timing": "box clock",
                 "clock_uncertainty_s": self.clock.uncertainty_s(), "clock_drift_ppm": round(self.clock.drift_ppm, 3)}
        self._publish_pulse(train, pulse)

    def _publish_pulse(self, train: Train, pulse: dict[str, Any]) -> None:
        train.pulses.append(pulse)
        self.fired += 1
        self.publish("pulses", [[json.dumps(pulse)]], [pulse["rise_lsl"]])

    def close(self) -> None:
        with self._lock:
            if self.transport is not None:
                self.transport.close()
                self.transport = None
            for train in self.trains.values():
                if not train.done.is_set():
                    train.refused = "the box was disconnected during the train"
                    train.done.set()

    # -- commands -----------------------------------------------------------------------------------
    def commands(self) -> dict[str, Any]:
        return {"fire": self.fire, "wait_train": self.wait_train, "periodic": self.periodic}

    def fire(self, label: str = "test") -> dict[str, Any]:
        """Start a coded train now (after the one running, if any); returns once it is sent (the pulses
        arrive on the stream as they happen)."""
        return self._fire(label, wait=True)

    def _fire(self, label: str, wait: bool) -> dict[str, Any]:
        if label not in LABELS:
            raise ValueError(f"unknown train label {label!r}; use one of {', '.join(LABELS)}")
        while True:
            with self._lock:
                running = self._running()
                if running is None:
                    return self._send_train(label)
            if not wait:
                raise DeviceError(f"train {running.seq} is still running")
            # one train at a time: the end train waits for a periodic one to finish (or for its deadline)
            running.done.wait(max(0.05, running.deadline - pylsl.local_clock()))

    def _send_train(self, label: str) -> dict[str, Any]:
        with self._lock:
            transport = self.transport
            if transport is None:
                raise DeviceError(f"{self.ctx.device_id}: the trigger box is not connected")
            if self.settings.protocol == "flexcap" and not self.clock.ready:
                raise DeviceError(f"{self.ctx.device_id}: the box's clock has not been measured yet")
            seq = self._next_seq
            self._next_seq += 1
            train = Train(seq, label, train_durations(seq))
            self.trains[seq] = train
            fired_at = pylsl.local_clock()
            if self.settings.protocol == "flexcap":
                transport.write(tp.fire_command(seq, train.durations))
            else:
                threading.Thread(target=self._byte_train, args=(transport, train), name="byte-train",
                                 daemon=True).start()
        return {"train": seq, "label": label, "durations_us": train.durations, "fired_lsl": fired_at,
                "length_s": train_length_s(seq)}

    def _running(self) -> Train | None:
        """The train still running, if any; one whose end the box never reported is given up at its deadline."""
        with self._lock:
            now = pylsl.local_clock()
            for t in self.trains.values():
                if not t.done.is_set() and now > t.deadline:
                    t.refused = f"the box did not report the end of train {t.seq} in time"
                    t.done.set()
            return next((t for t in reversed(self.trains.values()) if not t.done.is_set()), None)

    def wait_train(self, train: int, timeout: float = 5.0) -> dict[str, Any]:
        """Block until train `train` is over; its pulses, as published."""
        t = self.trains.get(train)
        if t is None:
            raise ValueError(f"no train {train} was fired by this driver")
        if not t.done.wait(timeout):
            raise DeviceError(f"train {train} did not finish within {timeout:g} s "
                              f"({len(t.pulses)} of {len(t.durations) // 2 + 1} pulses echoed)")
        return t.summary()

    def periodic(self, every_s: float | None = None) -> dict[str, Any]:
        """Fire a train every `every_s` seconds from now on (None: stop)."""
        if every_s is not None and every_s < 2 * max(train_length_s(s) for s in range(16)):
            raise ValueError(f"trains every {every_s:g} s would overlap; at least "
                             f"{2 * max(train_length_s(s) for s in range(16)):.1f} s apart")
        self._periodic_s = every_s
        self._next_periodic = pylsl.local_clock() + (every_s or 0.0)
        return {"every_s": every_s}

    def _byte_train(self, transport: Transport, train: Train) -> None:
        """Byte boxes: the host times the edges (a busy wait for the last 2 ms of each)."""
        on, off = bytes([self.settings.byte_on]), bytes([self.settings.byte_off])
        due = pylsl.local_clock()
        try:
            for i, d in enumerate(train.durations):
                _sleep_until(due)
                transport.write(on if i % 2 == 0 else off)
                edge = pylsl.local_clock()
                if i % 2 == 0:
                    rise = edge
                else:
                    self._publish_byte_pulse(train, i // 2, rise, edge)
                due += d / 1e6
            _sleep_until(due)
            transport.write(off)
            self._publish_byte_pulse(train, len(train.durations) // 2, rise, pylsl.local_clock())
        except DeviceError as exc:
            train.refused = str(exc)
        finally:
            train.done.set()

    def _publish_byte_pulse(self, train: Train, index: int, rise: float, fall: float) -> None:
        with self._lock:
            self._publish_pulse(train, {"train": train.seq, "label": train.label, "pulse": index,
                                        "of": len(train.durations) // 2 + 1, "rise_lsl": rise, "fall_lsl": fall,
                                        "timing": "host write"})

    def status_extra(self) -> dict[str, Any]:
        rtt = self.clock.best_rtt_s
        return {"protocol": self.settings.protocol, "firmware": self.firmware, "pulses_fired": self.fired,
                "trains": len(self.trains),
                "clock_rtt_ms": None if rtt is None else round(rtt * 1e3, 3),
                "clock_drift_ppm": round(self.clock.drift_ppm, 2) if self.clock.ready else None,
                "periodic_s": self._periodic_s}


def _sleep_until(t: float) -> None:
    while True:
        left = t - pylsl.local_clock()
        if left <= 0:
            return
        if left > 0.003:
            time.sleep(left - 0.002)
