"""An emulated flexcap trigger box on a pseudo-terminal, byte for byte (drivers.trigger.protocol).

Its microsecond clock runs on its own crystal (offset and drift from the rig's truth) and wraps at
2^32 like micros(). A train is timed on that clock; the box writes the true (rise, fall) time of
every pulse to the trigger line (drivers.sim.triggerline) before the first rise, so the LED every
simulated camera renders and the EMG units' trigger inputs follow it, and it keeps a log of every
train for the take's truth.
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import Any

import pylsl
from pydantic import BaseModel, ConfigDict, Field

from drivers.sim.lab import DeviceTruth
from drivers.sim.pty import PtyPort
from drivers.sim.triggerline import append_pulses
from drivers.trigger import protocol as tp
from drivers.trigger.trains import pulse_edges_us

log = logging.getLogger(__name__)

FIRMWARE = "1.0.0-emulated"
LINE_MAX = 320  # the firmware's line buffer


class TriggerBoxSettings(BaseModel):
    """The emulated box (the rig's [devices.settings.emulator] of a trigger with connection = 'emulator')."""

    model_config = ConfigDict(extra="forbid")

    truth: DeviceTruth = DeviceTruth(clock_offset_s=1234.5678, drift_ppm=35.0)
    start_delay_s: float = Field(40e-6, ge=0, description="from the end of an F line to the first rise")
    reply_delay_s: float = Field(5e-6, ge=0, description="from a T line to the micros() read")


class TriggerBoxEmulator:
    def __init__(self, settings: TriggerBoxSettings | None = None, link: Path | None = None,
                 line_path: Path | None = None) -> None:
        self.s = settings or TriggerBoxSettings()
        self.port = PtyPort(link)
        self.line_path = line_path
        self.stop_event = threading.Event()
        self.booted = pylsl.local_clock()
        self.trains: list[dict[str, Any]] = []
        self._pending: list[tuple[float, bytes]] = []  # (true time due, reply line)
        self._busy_until = 0.0
        self._inbuf = b""
        if line_path is not None:
            line_path.unlink(missing_ok=True)  # a new box: no pulses yet

    # the box's clock ---------------------------------------------------------------------------------
    @property
    def _rate(self) -> float:
        return 1.0 + self.s.truth.drift_ppm * 1e-6

    def box_us(self, t: float) -> int:
        """The unwrapped micros() count at true time t."""
        return int((t - self.booted) * self._rate * 1e6 + self.s.truth.clock_offset_s * 1e6)

    def true_time(self, box_us: int) -> float:
        """When the unwrapped counter reaches box_us."""
        return self.booted + (box_us - self.s.truth.clock_offset_s * 1e6) / 1e6 / self._rate

    # ---------------------------------------------------------------------------------------------------
    def open(self) -> str:
        path = self.port.open()
        # the box says hello once at power-up, unasked (an Uno's reset when the port opens loses the host's I)
        self.port.write(f"I flexcap-trigger {tp.PROTOCOL_VERSION} {FIRMWARE}\n".encode())
        return path

    @property
    def path(self) -> str:
        return self.port.path

    def run(self) -> None:
        try:
            while not self.stop_event.is_set():
                now = pylsl.local_clock()
                wait = min([0.05, *(due - now for due, _ in self._pending)])
                data = self.port.read(max(0.0, wait))
                if data:
                    self._inbuf += data
                    while b"\n" in self._inbuf:
                        line, self._inbuf = self._inbuf.split(b"\n", 1)
                        self._command(line.strip(b"\r ").decode("ascii", "replace"))
                    if len(self._inbuf) > LINE_MAX:
                        self._inbuf = b""
                        self.port.write(b"! - line too long\n")
                now = pylsl.local_clock()
                due = [p for p in self._pending if p[0] <= now]
                if due:
                    self._pending = [p for p in self._pending if p[0] > now]
                    self.port.write(b"".join(line for _, line in sorted(due, key=lambda p: p[0])))
        finally:
            self.port.close()
            self.port.remove_link()

    def _command(self, line: str) -> None:
        parts = line.split()
        if not parts:
            return
        now = pylsl.local_clock()
        tag = parts[0]
        if tag == "I":
            self.port.write(f"I flexcap-trigger {tp.PROTOCOL_VERSION} {FIRMWARE}\n".encode())
        elif tag == "T":
            self.port.write(f"T {self.box_us(now + self.s.reply_delay_s) % tp.MICROS_WRAP}\n".encode())
        elif tag == "X":
            self._pending = [p for p in self._pending if not p[1].startswith((b"E", b"D"))]
            self._busy_until = 0.0
            self.port.write(f"X {self.box_us(now) % tp.MICROS_WRAP}\n".encode())
        elif tag == "F":
            self._fire(parts[1:], now)
        else:
            self.port.write(f"! - unknown command {tag[:10]!r}\n".encode())

    def _fire(self, args: list[str], now: float) -> None:
        try:
            seq = int(args[0])
            durations = [int(x) for x in args[1:]]
            if not 0 <= seq < (1 << 31):
                raise ValueError("seq out of range")
        except (ValueError, IndexError):
            self.port.write(b"! - bad F arguments\n")
            return
        try:
            tp.check_durations(durations)
        except ValueError as exc:
            self.port.write(f"! {seq} {exc}\n".encode())
            return
        if now < self._busy_until:
            self.port.write(f"! {seq} busy\n".encode())
            return
        u = self.box_us(now + self.s.start_delay_s)
        pulses_us = [(u + r, u + f) for r, f in pulse_edges_us(durations)]
        pulses = [(self.true_time(r), self.true_time(f)) for r, f in pulses_us]
        if self.line_path is not None:
            append_pulses(self.line_path, pulses)  # before the first rise: every device sees the whole train
        self._busy_until = pulses[-1][1] + 1e-4  # until D is sent
        self.port.write(f"A {seq} {len(pulses)}\n".encode())
        for i, ((r_us, f_us), (_, fall)) in enumerate(zip(pulses_us, pulses, strict=True)):
            self._pending.append((fall, f"E {seq} {i} {r_us % tp.MICROS_WRAP} {f_us % tp.MICROS_WRAP}\n".encode()))
        self._pending.append((pulses[-1][1] + 1e-4, f"D {seq}\n".encode()))
        self.trains.append({"seq": seq, "durations_us": durations, "pulses": [list(p) for p in pulses],
                            "pulses_box_us": [list(p) for p in pulses_us]})

    def truth(self) -> dict[str, Any]:
        return {"kind": "trigger-box", "booted": self.booted, "clock_offset_s": self.s.truth.clock_offset_s,
                "drift_ppm": self.s.truth.drift_ppm,
                "box_time": "micros = (t - booted) * (1 + drift_ppm 1e-6) * 1e6 + clock_offset_s * 1e6, mod 2^32",
                "trains": self.trains,
                "pulse_time": "trains[].pulses: true (rise, fall) host LSL times of each pulse"}
