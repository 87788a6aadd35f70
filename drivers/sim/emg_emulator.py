"""Emulated sEMG amplifiers on a pseudo-terminal, byte for byte: Shimmer3 ExG and OpenBCI Cyton
(with or without Daisy). They answer the protocol's commands as the device does, stream at the
configured rate on their own drifting crystal, from the simulated subject's muscles, and inject
faults on request (garbage bytes, dropped packets, a burst of corrupt packets, unplug and replug),
logging each fault so tests can check that exactly those packets were lost.
"""

from __future__ import annotations

import logging
import struct
import threading
from collections.abc import Callable
from typing import Literal

import numpy as np
import pylsl
from pydantic import BaseModel, ConfigDict, Field

from drivers.emg import cyton, shimmer
from drivers.emg.packets import pack_i24_be
from drivers.sim.emg_signal import EmgSignal
from drivers.sim.lab import DeviceTruth, SimClock, SimLabSettings
from drivers.sim.pty import PtyPort
from drivers.sim.triggerline import PulseLine

log = logging.getLogger(__name__)

Protocol = Literal["shimmer3-exg", "cyton", "cyton-daisy"]
TimeOf = Callable[[np.ndarray], np.ndarray]


class EmgFaults(BaseModel):
    """Faults to inject; times are seconds after the emulator starts streaming."""

    model_config = ConfigDict(extra="forbid")

    garbage_every_s: float | None = Field(None, gt=0, description="insert garbage bytes between packets")
    garbage_bytes: int = Field(17, ge=1)
    drop_every: int | None = Field(None, ge=2, description="drop every Nth packet")
    corrupt_at_s: float | None = Field(None, ge=0, description="corrupt a burst of packets at this time")
    corrupt_packets: int = Field(5, ge=1)
    disconnect_at_s: float | None = Field(None, ge=0, description="unplug at this time")
    reconnect_after_s: float = Field(1.0, ge=0)


class EmgEmulatorSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    burst_s: float = Field(0.016, gt=0, description="delivery period, like an FTDI latency timer")
    heart_artifact_uv: list[float] = Field(default_factory=list, description="per channel: the heart's QRS "
                                           "amplitude picked up by a trunk electrode (microvolts)")
    truth: DeviceTruth = DeviceTruth(latency_s=0.012, jitter_s=0.002, drift_ppm=20.0, clock_offset_s=12.5)
    faults: EmgFaults = EmgFaults()


class ShimmerModel:
    """The Shimmer3's side of the protocol: command parsing, registers, packet building."""

    ARGS = {0x01: 0, 0x03: 0, 0x05: 2, 0x07: 0, 0x08: 3, 0x20: 0, 0x2E: 0, 0x3F: 0, 0x72: 0, 0x63: 3}

    def __init__(self, rate: float) -> None:
        self.divider = shimmer.divider_for(rate)
        self.sensors = bytes([shimmer.SENSOR_EXG1_24 | shimmer.SENSOR_EXG2_24, 0, 0])
        self.registers = [shimmer.exg_registers(rate, 12), shimmer.exg_registers(rate, 12)]
        self.pending = b""
        self.streaming = False
        self.start_requested = False
        self.tick0 = 0

    @property
    def rate(self) -> float:
        return shimmer.TICK_RATE / self.divider

    def channel_ids(self) -> list[int]:
        ids = []
        if self.sensors[0] & shimmer.SENSOR_EXT_A0:
            ids.append(shimmer.CH_EXT_A0)
        if self.sensors[0] & shimmer.SENSOR_EXG1_24:
            ids += [0x1D, 0x1E, 0x1F]
        if self.sensors[0] & shimmer.SENSOR_EXG2_24:
            ids += [0x20, 0x21, 0x22]
        return ids

    def gains(self) -> list[int]:
        out: list[int] = []
        if self.sensors[0] & shimmer.SENSOR_EXG1_24:
            out += shimmer.gain_from_registers(self.registers[0])
        if self.sensors[0] & shimmer.SENSOR_EXG2_24:
            out += shimmer.gain_from_registers(self.registers[1])
        return out

    @property
    def n_channels(self) -> int:
        return len(self.gains())

    def on_bytes(self, data: bytes) -> bytes:
        self.pending += data
        out = b""
        while self.pending:
            op = self.pending[0]
            if op == shimmer.CMD_WRITE_EXG:
                if len(self.pending) < 4 or len(self.pending) < 4 + self.pending[3]:
                    break
                chip, start, n = self.pending[1], self.pending[2], self.pending[3]
                regs = bytearray(self.registers[chip & 1])
                regs[start : start + n] = self.pending[4 : 4 + n]
                self.registers[chip & 1] = bytes(regs[:10])
                self.pending = self.pending[4 + n :]
                out += bytes([shimmer.ACK])
                continue
            if op not in self.ARGS:
                self.pending = self.pending[1:]  # unknown opcode: ignored, no acknowledgement
                continue
            n = self.ARGS[op]
            if len(self.pending) < 1 + n:
                break
            args, self.pending = self.pending[1 : 1 + n], self.pending[1 + n :]
            out += self._command(op, args)
        return out

    def _command(self, op: int, args: bytes) -> bytes:
        ack = bytes([shimmer.ACK])
        if op == shimmer.CMD_INQUIRY:
            ids = self.channel_ids()
            body = struct.pack("<H", self.divider) + self.sensors + b"\x00" + bytes([len(ids), 1]) + bytes(ids)
            return ack + bytes([shimmer.RSP_INQUIRY]) + body
        if op == 0x03:
            return ack + bytes([0x04]) + struct.pack("<H", self.divider)
        if op == shimmer.CMD_SET_SAMPLING_RATE:
            self.divider = max(1, struct.unpack("<H", args)[0])
            return ack
        if op == shimmer.CMD_SET_SENSORS:
            self.sensors = bytes(args)
            return ack
        if op == shimmer.CMD_READ_EXG:
            chip, start, n = args
            return ack + bytes([shimmer.RSP_EXG, n]) + self.registers[chip & 1][start : start + n]
        if op == shimmer.CMD_FW_VERSION:
            return ack + bytes([shimmer.RSP_FW_VERSION]) + struct.pack("<HHBB", 3, 0, 16, 9)
        if op == shimmer.CMD_HW_VERSION:
            return ack + bytes([shimmer.RSP_HW_VERSION, 3])
        if op == 0x72:
            return ack + bytes([0x8A, 0x71, 0x01 if self.streaming else 0x00])
        if op == shimmer.CMD_START:
            self.start_requested = not self.streaming
            self.streaming = True
            return ack
        if op == shimmer.CMD_STOP:
            self.streaming = False
            return ack
        return b""

    def packets(self, k: np.ndarray, time_of: TimeOf, signal: EmgSignal) -> np.ndarray:
        """Data packets k; time_of(k) gives the true time of sample k."""
        t = time_of(k)
        ids = self.channel_ids()
        layout = shimmer.Layout.from_ids(ids)
        rows = np.zeros((len(k), layout.packet_length), dtype=np.uint8)
        ts = (self.tick0 + k * self.divider) % shimmer.TS_MODULO
        rows[:, 1], rows[:, 2], rows[:, 3] = ts & 0xFF, (ts >> 8) & 0xFF, ts >> 16
        offsets = layout.offsets()
        scales = [shimmer.microvolts_per_count(g) for g in self.gains()]
        uv = signal.microvolts(k, t)
        for j, cid in enumerate(layout.exg_ids()):
            counts = np.clip(np.round(uv[:, j] / scales[j]), -(1 << 23), (1 << 23) - 1)
            rows[:, offsets[cid] : offsets[cid] + 3] = pack_i24_be(counts[:, None])
        if shimmer.CH_EXT_A0 in offsets:
            level = np.round(signal.trigger_level(t, 1.0 / self.rate) * 3900).astype(np.int64)
            o = offsets[shimmer.CH_EXT_A0]
            rows[:, o], rows[:, o + 1] = level & 0xFF, level >> 8
        return rows

    def expected_microvolts(self, k: np.ndarray, t: np.ndarray, signal: EmgSignal) -> np.ndarray:
        """What a correct driver publishes for these samples (tests compare exactly)."""
        scales = np.array([shimmer.microvolts_per_count(g) for g in self.gains()])
        counts = np.clip(np.round(signal.microvolts(k, t) / scales), -(1 << 23), (1 << 23) - 1)
        return (counts * scales).astype(np.float32)


class CytonModel:
    """The Cyton's side: ASCII commands with '$$$'-terminated replies, 33-byte packets at 250 Hz."""

    def __init__(self, daisy: bool) -> None:
        self.daisy_attached = daisy
        self.use_daisy = daisy
        self.gains = [24] * 16
        self.board_mode = 0
        self.pending = b""
        self.streaming = False
        self.start_requested = False

    @property
    def rate(self) -> float:
        return cyton.RATE  # packets per second; a Daisy sample takes two

    @property
    def n_channels(self) -> int:
        return 16 if self.use_daisy else 8

    def on_bytes(self, data: bytes) -> bytes:
        self.pending += data
        out = b""
        while self.pending:
            c = chr(self.pending[0])
            need = {"x": 9, "/": 2, "~": 2, "`": 2, "z": 5}.get(c, 1)
            if len(self.pending) < need:
                break
            cmd, self.pending = self.pending[:need].decode("latin-1"), self.pending[need:]
            reply = self._command(cmd)
            if reply and not self.streaming:
                out += reply.encode() + b"$$$"
        return out

    def _command(self, cmd: str) -> str:
        if cmd == "b":
            self.start_requested = not self.streaming
            self.streaming = True
            return ""
        if cmd == "s":
            self.streaming = False
            return ""
        if cmd == "v":
            self.board_mode = 0
            self.use_daisy = self.daisy_attached
            daisy = "On Daisy ADS1299 Device ID: 0x3E\n" if self.daisy_attached else ""
            return ("OpenBCI V3 8-16 channel\nOn Board ADS1299 Device ID: 0x3E\n" + daisy
                    + "LIS3DH Device ID: 0x33\nFirmware: v3.1.2\n")
        if cmd == "V":
            return "v3.1.2"
        if cmd == "d":
            self.gains = [24] * 16
            return "updating channel settings to default"
        if cmd == "c":
            self.use_daisy = False
            return "daisy removed"
        if cmd == "C":
            self.use_daisy = self.daisy_attached
            return "16" if self.daisy_attached else "no daisy to attach!8"
        if cmd.startswith("/"):
            names = {"0": "default", "1": "debug", "2": "analog", "3": "digital", "4": "marker"}
            if cmd[1] in names:
                self.board_mode = int(cmd[1])
                return f"Success: {names[cmd[1]]}"
            return "Failure: invalid board mode"
        if cmd.startswith("x"):
            letters = "12345678" + cyton.DAISY_LETTERS
            ch = letters.find(cmd[1])
            if cmd[-1] != "X" or ch < 0 or not cmd[3].isdigit() or int(cmd[3]) > 6:
                return f"Failure: too few chars{cmd!r}"
            self.gains[ch] = {v: k for k, v in cyton.GAINS.items()}[int(cmd[3])]
            return f"Success: Channel set for {ch + 1}"
        if cmd.startswith("~"):
            return "Success: Sample rate is 250Hz" if cmd[1] in "6~" else "Failure: 250Hz is the dongle's limit"
        return ""

    def rows_of(self, k: np.ndarray) -> np.ndarray:
        """Daisy: packet k (from 1) carries half of sample row (k - 1) // 2."""
        return (k - 1) // 2 if self.use_daisy else k

    def packets(self, k: np.ndarray, time_of: TimeOf, signal: EmgSignal) -> np.ndarray:
        """Packets k; time_of(k) gives the true time of packet k (a Daisy row is timed by its odd packet)."""
        t = time_of(k)
        rows = np.zeros((len(k), cyton.PACKET), dtype=np.uint8)
        rows[:, 0] = cyton.HEADER
        rows[:, 1] = k % 256
        counts = self._counts(k, time_of, signal)
        if self.use_daisy:
            board = (k % 2) == 1
            data = np.where(board[:, None], counts[:, :8], counts[:, 8:])
        else:
            data = counts
        rows[:, 2:26] = pack_i24_be(data)
        if self.board_mode == 3:
            rows[:, 32] = cyton.FOOTER_DIGITAL
            rows[:, 26] = signal.trigger_state(t)  # D11
        else:
            rows[:, 32] = 0xC0
            fresh = (k % 10) == 0  # accelerometer at 25 Hz: zeros in the other packets
            rows[fresh, 30] = 0x20  # z = +1 g (8192 counts at 0.000125 g/count), i16 big-endian
        return rows

    def _counts(self, k: np.ndarray, time_of: TimeOf, signal: EmgSignal) -> np.ndarray:
        r = self.rows_of(k)
        t = time_of(2 * r + 1) if self.use_daisy else time_of(k)  # a Daisy row's time is its board packet's
        scales = np.array([cyton.microvolts_per_count(g) for g in self.gains[: self.n_channels]])
        return np.clip(np.round(signal.microvolts(r, t) / scales), -(1 << 23), (1 << 23) - 1).astype(np.int64)

    def expected_microvolts(self, r: np.ndarray, t: np.ndarray, signal: EmgSignal) -> np.ndarray:
        """What a correct driver publishes for sample rows r taken at times t."""
        scales = np.array([cyton.microvolts_per_count(g) for g in self.gains[: self.n_channels]])
        counts = np.clip(np.round(signal.microvolts(r, t) / scales), -(1 << 23), (1 << 23) - 1)
        return (counts * scales).astype(np.float32)


class EmgEmulator:
    """Runs one emulated amplifier on a pty until stopped."""

    def __init__(self, protocol: Protocol, rate: float | None = None, settings: EmgEmulatorSettings | None = None,
                 sim: SimLabSettings | None = None, seed: int = 1, link=None, line: PulseLine | None = None) -> None:
        self.protocol = protocol
        self.settings = settings or EmgEmulatorSettings()
        self.sim = sim or SimLabSettings()
        self.model: ShimmerModel | CytonModel
        if protocol == "shimmer3-exg":
            self.model = ShimmerModel(rate or 1024.0)
            self.model.tick0 = int(round(self.settings.truth.clock_offset_s * shimmer.TICK_RATE)) % shimmer.TS_MODULO
        else:
            self.model = CytonModel(daisy=protocol == "cyton-daisy")
        self.signal: EmgSignal | None = None
        self.line = line
        self.seed = seed
        self.rng = np.random.default_rng([self.sim.seed, seed, 11])
        self.port = PtyPort(link)
        self.clock: SimClock | None = None
        self.next_k = 0
        self.next_burst = 0.0
        self.send_at = 0.0
        self.fault_log: list[dict] = []
        self._reconnect_at: float | None = None
        self._disconnected = False
        self._corrupted = False
        self._next_garbage: float | None = None
        self.sent_packets = 0
        self.stop_event = threading.Event()

    @property
    def path(self) -> str:
        return self.port.path

    def open(self) -> str:
        return self.port.open()

    def run(self) -> None:
        """Serve commands and stream until stop_event is set."""
        try:
            while not self.stop_event.is_set():
                self.step()
        finally:
            self.port.close()
            self.port.remove_link()

    def step(self) -> None:
        now = pylsl.local_clock()
        if not self.port.is_open:
            if self._reconnect_at is not None and now >= self._reconnect_at:
                self.port.open()
                self._reconnect_at = None
                self.fault_log.append({"kind": "reconnect", "at": now})
            else:
                self.stop_event.wait(0.01)
            return
        wait = max(0.0, min(0.01, self.send_at - now)) if self.model.streaming else 0.01
        data = self.port.read(wait)
        if data:
            reply = self.model.on_bytes(data)
            if reply:
                self.port.write(reply)
            if self.model.start_requested:
                self.model.start_requested = False
                self._start_streaming()
        if self.model.streaming and pylsl.local_clock() >= self.send_at:
            self._burst()

    def _start_streaming(self) -> None:
        now = pylsl.local_clock()
        if self.signal is None or self.signal.n_channels != self.model.n_channels:
            self.signal = EmgSignal(self.model.n_channels, self.sim, self.seed, self.line,
                                    self.settings.heart_artifact_uv)
        if self.clock is None or isinstance(self.model, CytonModel):
            # the Shimmer's crystal keeps counting across restarts; the Cyton restarts its sample number
            self.clock = SimClock(self.settings.truth, self.model.rate, now)
            self.next_k = 1 if isinstance(self.model, CytonModel) and self.model.use_daisy else 0
            if self.settings.faults.garbage_every_s:
                self._next_garbage = now + self.settings.faults.garbage_every_s
        else:
            self.next_k = max(self.next_k, self.clock.count_arrived(now))
        self.next_burst = now + self.settings.burst_s
        self.send_at = self.next_burst
        self.fault_log.append({"kind": "start", "at": now, "first_packet": self.next_k})

    def _burst(self) -> None:
        """At each tick the link flushes what has arrived; the host sees it `jitter` later."""
        assert self.clock is not None and self.signal is not None
        end = self.clock.count_arrived(self.next_burst)
        jitter = self.settings.truth.jitter_s
        self.next_burst += self.settings.burst_s
        self.send_at = self.next_burst + (self.rng.exponential(jitter) if jitter else 0.0)
        if end <= self.next_k:
            return
        k = np.arange(self.next_k, end, dtype=np.int64)
        self.next_k = end
        rows = self.model.packets(k, self.clock.true_time, self.signal)
        self.port.write(self._apply_faults(k, self.clock.true_time(k), rows))
        self.sent_packets += len(k)

    def _apply_faults(self, k: np.ndarray, t: np.ndarray, rows: np.ndarray) -> bytes:
        f = self.settings.faults
        assert self.clock is not None
        since = t - self.clock.t0
        keep = np.ones(len(k), dtype=bool)
        if f.drop_every:
            dropped = (k + 1) % f.drop_every == 0
            keep &= ~dropped
            for kk in k[dropped]:
                self.fault_log.append({"kind": "drop", "packet": int(kk)})
        if f.corrupt_at_s is not None and not self._corrupted and since[-1] >= f.corrupt_at_s:
            first = int(np.argmax(since >= f.corrupt_at_s))
            bad = slice(first, min(len(k), first + f.corrupt_packets))
            rows = rows.copy()
            rows[bad] = 0xEE  # no header, no footer, no plausible counter: unreadable
            self._corrupted = True
            self.fault_log.append({"kind": "corrupt", "packets": [int(x) for x in k[bad][keep[bad]]]})
        out = rows[keep].tobytes()
        if self._next_garbage is not None and pylsl.local_clock() >= self._next_garbage:
            forbidden = {0x00, shimmer.ACK} if isinstance(self.model, ShimmerModel) else {cyton.HEADER}
            allowed = np.array([b for b in range(256) if b not in forbidden], dtype=np.uint8)
            junk = self.rng.choice(allowed, f.garbage_bytes).tobytes()
            out = junk + out
            self.fault_log.append({"kind": "garbage", "bytes": f.garbage_bytes, "before_packet": int(k[0])})
            self._next_garbage += f.garbage_every_s or 0.0
        if f.disconnect_at_s is not None and not self._disconnected and since[-1] >= f.disconnect_at_s:
            self.port.write(out)
            self.port.close()
            self._disconnected = True
            self.model.streaming = False
            self._reconnect_at = pylsl.local_clock() + f.reconnect_after_s
            self.fault_log.append({"kind": "disconnect", "after_packet": int(k[-1])})
            return b""
        return out

    def truth(self) -> dict:
        if self.clock is None:
            return {}
        extra: dict = {"protocol": self.protocol, "sent_packets": self.sent_packets,
                       "overflow_bytes": self.port.overflow_bytes}
        if isinstance(self.model, ShimmerModel):
            extra |= {"tick0": self.model.tick0, "divider": self.model.divider,
                      "sample_time": "t0 + k / true_rate, k = ((timestamp - tick0) mod 2^24) / divider"}
        else:
            extra |= {"sample_time": "t0 + k / true_rate for packet k (the Daisy row's time is its odd packet's)"}
        return self.clock.truth_record(**extra)
