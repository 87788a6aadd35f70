"""Polar Measurement Data (PMD) service of the Polar H10 (PROTOCOLS.md 3.2-3.4; polar-ble-sdk).

Control point (FB005C81): write commands (with response), answers arrive as notifications
`F0 | opcode | type | status | more | parameters`. Data (FB005C82): frames
`type (u8) | timestamp (u64 LE ns, sensor clock, time of the LAST sample) | frame type (u8, bit 7 =
delta-compressed) | samples`. The sensor clock counts ns since 2000-01-01 and restarts at its default
(2019-01-01) whenever the H10 powers down.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

import numpy as np

from drivers.chest.hrs import PayloadError

PMD_SERVICE = "fb005c80-02e7-f387-1cad-8acd2d8df0c8"
PMD_CONTROL = "fb005c81-02e7-f387-1cad-8acd2d8df0c8"
PMD_DATA = "fb005c82-02e7-f387-1cad-8acd2d8df0c8"
MIN_MTU = 232  # a full 73-sample ECG frame needs it

ECG, PPG, ACC, PPI = 0, 1, 2, 3
TYPE_NAMES = {0: "ECG", 1: "PPG", 2: "ACC", 3: "PPI", 5: "GYRO", 6: "MAG", 7: "SKIN_TEMP", 9: "SDK_MODE"}
OP_GET_SETTINGS, OP_START, OP_STOP = 1, 2, 3
SETTING_SAMPLE_RATE, SETTING_RESOLUTION, SETTING_RANGE, SETTING_RANGE_MILLI, SETTING_CHANNELS = 0, 1, 2, 3, 4
SETTING_FACTOR = 5
SETTING_WIDTH = {0: 2, 1: 2, 2: 2, 3: 4, 4: 1, 5: 4, 6: 16}
STATUS = {0: "success", 1: "invalid op code", 2: "invalid measurement type", 3: "not supported",
          4: "invalid length", 5: "invalid parameter", 6: "already in state", 7: "invalid resolution",
          8: "invalid sample rate", 9: "invalid range", 10: "invalid MTU", 11: "invalid number of channels",
          12: "invalid state", 13: "device in charger", 14: "disk full"}

EPOCH_2000_UNIX_NS = 946_684_800_000_000_000
H10_DEFAULT_TIME_NS = 599_616_000_000_000_000  # 2019-01-01 in ns since 2000-01-01

# frame type -> (channels, bytes per value) for the uncompressed layouts
ECG_FRAMES = {0: (1, 3)}
ACC_FRAMES = {0: (3, 1), 1: (3, 2), 2: (3, 3)}


def start_command(meas_type: int, settings: dict[int, int]) -> bytes:
    out = bytes([OP_START, meas_type])
    for key, value in settings.items():
        out += bytes([key, 1]) + value.to_bytes(SETTING_WIDTH[key], "little")
    return out


def stop_command(meas_type: int) -> bytes:
    return bytes([OP_STOP, meas_type])


def settings_command(meas_type: int) -> bytes:
    return bytes([OP_GET_SETTINGS, meas_type])


ECG_START = start_command(ECG, {SETTING_SAMPLE_RATE: 130, SETTING_RESOLUTION: 14})


def acc_start(rate: int = 200, range_g: int = 8) -> bytes:
    return start_command(ACC, {SETTING_RANGE: range_g, SETTING_SAMPLE_RATE: rate, SETTING_RESOLUTION: 16})


@dataclass
class ControlResponse:
    op: int
    meas_type: int
    status: int
    more: bool
    params: bytes

    @property
    def ok(self) -> bool:
        return self.status == 0

    @property
    def status_text(self) -> str:
        return STATUS.get(self.status, f"unknown status {self.status}")


def parse_control(payload: bytes) -> ControlResponse | list[int]:
    """A control-point notification: a response, or (first byte 0x01) the list of measurement types the
    sensor stopped on its own."""
    if not payload:
        raise PayloadError("empty PMD control-point notification")
    if payload[0] == 0x01:
        return list(payload[1:])
    if payload[0] != 0xF0:
        raise PayloadError(f"PMD control-point notification starts with 0x{payload[0]:02X}, not 0xF0")
    if len(payload) < 4:
        raise PayloadError(f"PMD control-point response of {len(payload)} bytes (needs at least 4)")
    more = bool(payload[4]) if len(payload) > 4 else False
    return ControlResponse(payload[1], payload[2], payload[3], more, bytes(payload[5:]))


def parse_settings(params: bytes) -> dict[int, list[int]]:
    """Settings TLVs: type, count, count values of the type's width."""
    out: dict[int, list[int]] = {}
    pos = 0
    while pos < len(params):
        if pos + 2 > len(params):
            raise PayloadError(f"PMD settings cut after {pos} bytes")
        key, count = params[pos], params[pos + 1]
        width = SETTING_WIDTH.get(key)
        if width is None:
            raise PayloadError(f"PMD setting type {key} is unknown")
        end = pos + 2 + count * width
        if end > len(params):
            raise PayloadError(f"PMD setting {key} announces {count} values but the payload ends")
        out[key] = [int.from_bytes(params[pos + 2 + i * width : pos + 2 + (i + 1) * width], "little")
                    for i in range(count)]
        pos = end
    return out


def encode_settings(settings: dict[int, list[int]]) -> bytes:
    out = b""
    for key, values in settings.items():
        out += bytes([key, len(values)]) + b"".join(v.to_bytes(SETTING_WIDTH[key], "little") for v in values)
    return out


@dataclass
class PmdFrame:
    meas_type: int
    timestamp_ns: int
    frame_type: int
    compressed: bool
    samples: np.ndarray  # (n, channels) int64: ECG microvolts, ACC milli-g

    def __len__(self) -> int:
        return len(self.samples)


def _signed(raw: np.ndarray, bits: int) -> np.ndarray:
    raw = raw.astype(np.int64)
    return raw - ((raw >> (bits - 1)) & 1) * (1 << bits)


def _values_le(data: bytes, channels: int, width: int, what: str) -> np.ndarray:
    step = channels * width
    if len(data) % step:
        raise PayloadError(f"{what}: {len(data)} bytes of samples is not a whole number of {step}-byte samples")
    b = np.frombuffer(data, dtype=np.uint8).reshape(-1, channels, width).astype(np.int64)
    raw = np.zeros(b.shape[:2], dtype=np.int64)
    for i in range(width):
        raw |= b[..., i] << (8 * i)
    return _signed(raw, 8 * width)


def _delta_decompress(data: bytes, channels: int, width: int, what: str) -> np.ndarray:
    """Reference sample, then blocks of (delta bits, count, LSB-first packed deltas)."""
    ref_len = channels * width
    if len(data) < ref_len:
        raise PayloadError(f"{what}: compressed frame shorter than its reference sample")
    samples = [_values_le(data[:ref_len], channels, width, what)[0]]
    pos = ref_len
    while pos < len(data):
        if pos + 2 > len(data):
            raise PayloadError(f"{what}: compressed block header cut")
        bits, count = data[pos], data[pos + 1]
        pos += 2
        if bits == 0 or bits > 32:
            raise PayloadError(f"{what}: delta width of {bits} bits")
        nbytes = (bits * channels * count + 7) // 8
        if pos + nbytes > len(data):
            raise PayloadError(f"{what}: compressed block of {count} samples cut")
        packed = int.from_bytes(data[pos : pos + nbytes], "little")
        pos += nbytes
        for i in range(count):
            prev = samples[-1]
            deltas = []
            for c in range(channels):
                shift = (i * channels + c) * bits
                v = (packed >> shift) & ((1 << bits) - 1)
                deltas.append(v - (1 << bits) if v >> (bits - 1) else v)
            samples.append(prev + np.array(deltas, dtype=np.int64))
    return np.array(samples, dtype=np.int64)


def parse_frame(payload: bytes) -> PmdFrame:
    if len(payload) < 10:
        raise PayloadError(f"PMD data frame of {len(payload)} bytes (the header alone is 10)")
    meas_type = payload[0] & 0x3F
    timestamp = struct.unpack_from("<Q", payload, 1)[0]
    frame_type = payload[9] & 0x7F
    compressed = bool(payload[9] & 0x80)
    data = bytes(payload[10:])
    layouts = {ECG: ECG_FRAMES, ACC: ACC_FRAMES}.get(meas_type)
    name = TYPE_NAMES.get(meas_type, f"type {meas_type}")
    if layouts is None:
        raise PayloadError(f"PMD data frame of measurement type {meas_type} ({name}) is not decoded")
    if frame_type not in layouts:
        raise PayloadError(f"{name} frame type {frame_type} is not decoded")
    channels, width = layouts[frame_type]
    what = f"{name} frame type {frame_type}"
    decode = _delta_decompress if compressed else _values_le
    samples = decode(data, channels, width, what)
    if len(samples) == 0:
        raise PayloadError(f"{what} without samples")
    return PmdFrame(meas_type, timestamp, frame_type, compressed, samples)


def encode_frame(meas_type: int, timestamp_ns: int, frame_type: int, samples: np.ndarray) -> bytes:
    """An uncompressed frame (the emulator's side)."""
    layouts = ECG_FRAMES if meas_type == ECG else ACC_FRAMES
    channels, width = layouts[frame_type]
    v = np.asarray(samples, dtype=np.int64).reshape(-1, channels) & ((1 << (8 * width)) - 1)
    b = np.stack([(v >> (8 * i)) & 0xFF for i in range(width)], axis=-1).astype(np.uint8)
    return bytes([meas_type]) + struct.pack("<Q", timestamp_ns) + bytes([frame_type]) + b.tobytes()


@dataclass
class SampleClock:
    """Per-sample sensor times for one measurement stream (Polar SDK rule): the first frame spaces its
    samples at the nominal rate back from its timestamp; later frames spread their samples evenly
    between the previous frame's timestamp and their own. A timestamp that goes backwards means the
    sensor clock was reset (power-down): the stream starts over."""

    nominal_rate: float
    last_ns: int | None = None
    resets: int = 0
    notes: list[str] = field(default_factory=list)

    def times(self, frame: PmdFrame) -> np.ndarray:
        n = len(frame)
        t = frame.timestamp_ns
        if self.last_ns is not None and t <= self.last_ns:
            self.resets += 1
            self.notes.append(f"sensor clock went back by {(self.last_ns - t) / 1e9:.3f} s: clock reset")
            self.last_ns = None
        if self.last_ns is None or (t - self.last_ns) > 4 * n * 1e9 / self.nominal_rate:
            # first frame, or frames were lost in between: use the nominal spacing
            step = 1e9 / self.nominal_rate
            out = t - (n - 1 - np.arange(n)) * step
        else:
            step = (t - self.last_ns) / n
            out = self.last_ns + (np.arange(n) + 1) * step
        self.last_ns = t
        return np.round(out).astype(np.int64)
