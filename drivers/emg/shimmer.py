"""Shimmer3 ExG over its Bluetooth serial port (LogAndStream / BtStream firmware).

Facts (PROTOCOLS.md 2.1; pyshimmer, Shimmer's own drivers): every command is an opcode plus fixed
arguments and is acknowledged with 0xFF; the inquiry (0x01) answers 0x02 + u16 LE sampling-rate
divider + u32 config + u8 channel count + u8 buffer size + the channel ids in packet order. Data
packets are 0x00 + u24 LE timestamp (32768 Hz crystal, wraps every 512 s) + the channels. ExG
channels are ADS1292R values, i24 (or i16) big-endian; mV = raw * (2420 / gain) / (2^23 - 1).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

import numpy as np

from drivers.emg.packets import PacketParser, Samples, i16_be, i24_be, i24_be_columns, u16_le, u24_le
from drivers.emg.transport import ByteReader, Transport
from drivers.runtime.driver import DeviceError

TICK_RATE = 32768.0
TS_MODULO = 1 << 24
ACK = 0xFF

CMD_INQUIRY = 0x01
RSP_INQUIRY = 0x02
CMD_SET_SAMPLING_RATE = 0x05
CMD_START = 0x07
CMD_SET_SENSORS = 0x08
CMD_STOP = 0x20
CMD_WRITE_EXG = 0x61
CMD_READ_EXG = 0x63
RSP_EXG = 0x62
CMD_FW_VERSION = 0x2E
RSP_FW_VERSION = 0x2F
CMD_HW_VERSION = 0x3F
RSP_HW_VERSION = 0x25

# sensor-enable bitfield (3 bytes, little-endian order of bytes)
SENSOR_EXG1_24 = 0x10  # byte 0
SENSOR_EXG2_24 = 0x08  # byte 0
SENSOR_EXT_A0 = 0x02  # byte 0: external ADC A0, where the trigger box's TTL line is wired

# channel ids -> (width in bytes, kind)
CH_EXT_A0 = 0x0D
CHANNELS: dict[int, tuple[int, str]] = {
    0x0D: (2, "adc"), 0x0E: (2, "adc"), 0x0F: (2, "adc"),
    0x1D: (1, "status"), 0x1E: (3, "exg24"), 0x1F: (3, "exg24"),
    0x20: (1, "status"), 0x21: (3, "exg24"), 0x22: (3, "exg24"),
    0x23: (2, "exg16"), 0x24: (2, "exg16"), 0x25: (2, "exg16"), 0x26: (2, "exg16"),
}
EXG_NAMES = {0x1E: "exg1_ch1", 0x1F: "exg1_ch2", 0x21: "exg2_ch1", 0x22: "exg2_ch2",
             0x23: "exg1_ch1", 0x24: "exg1_ch2", 0x25: "exg2_ch1", 0x26: "exg2_ch2"}

GAIN_CODES = {6: 0, 1: 1, 2: 2, 3: 3, 4: 4, 8: 5, 12: 6}  # ADS1292R CHnSET bits 6:4
DATA_RATES = [125, 250, 500, 1000, 2000, 4000, 8000]  # ADS1292R CONFIG1 low bits
ADC_FULL_SCALE = 4095.0


def divider_for(rate: float) -> int:
    divider = round(TICK_RATE / rate)
    if not 1 <= divider <= 0xFFFF:
        raise ValueError(f"rate {rate} Hz is outside what a Shimmer can sample (0.5 Hz to 32768 Hz)")
    return divider


def exg_registers(rate: float, gain: int) -> bytes:
    """The 10 ADS1292R registers of one chip for EMG: both channels on at `gain`, a chip data rate at
    or above the sampling rate (Shimmer's EMG preset otherwise)."""
    if gain not in GAIN_CODES:
        raise ValueError(f"gain {gain} is not an ADS1292R gain; use one of {sorted(GAIN_CODES)}")
    code = next((i for i, r in enumerate(DATA_RATES) if r >= rate), len(DATA_RATES) - 1)
    chset = GAIN_CODES[gain] << 4  # powered on, normal electrode input
    return bytes([code, 0xA0, 0x10, chset, chset, 0x00, 0x00, 0x00, 0x02, 0x03])


def gain_from_registers(regs: bytes) -> tuple[int, int]:
    by_code = {v: k for k, v in GAIN_CODES.items()}
    return by_code[(regs[3] >> 4) & 7], by_code[(regs[4] >> 4) & 7]


def microvolts_per_count(gain: int, bits: int = 24) -> float:
    return 2420.0 / gain / ((1 << (bits - 1)) - 1) * 1000.0


@dataclass(frozen=True)
class Layout:
    """Where each channel sits in a data packet, from the inquiry's channel list."""

    channel_ids: tuple[int, ...]

    @property
    def packet_length(self) -> int:
        return 4 + sum(CHANNELS[c][0] for c in self.channel_ids)

    def offsets(self) -> dict[int, int]:
        out, pos = {}, 4
        for cid in self.channel_ids:
            out[cid] = pos
            pos += CHANNELS[cid][0]
        return out

    def exg_ids(self) -> list[int]:
        return [c for c in self.channel_ids if CHANNELS[c][1] in ("exg24", "exg16")]

    @staticmethod
    def from_ids(ids: bytes | list[int]) -> Layout:
        unknown = [c for c in ids if c not in CHANNELS]
        if unknown:
            raise DeviceError("the Shimmer reports channels flexcap does not decode: "
                              + ", ".join(f"0x{c:02X}" for c in unknown) + " (enable only ExG and external ADC A0)")
        return Layout(tuple(ids))


def parse_inquiry(payload: bytes) -> tuple[int, Layout]:
    """payload starts after the 0x02 response code: divider, config, n, buffer size, ids."""
    if len(payload) < 8:
        raise DeviceError(f"inquiry response too short: {payload.hex(' ')}")
    divider = struct.unpack_from("<H", payload, 0)[0]
    n = payload[6]
    ids = payload[8 : 8 + n]
    if len(ids) != n:
        raise DeviceError(f"inquiry response lists {n} channels but carries {len(ids)}")
    return divider, Layout.from_ids(ids)


class ShimmerParser(PacketParser):
    """Shimmer data packets: 0x00, u24 LE timestamp advancing by the divider, channels."""

    modulo = TS_MODULO
    max_lost = 1 << 16

    def __init__(self, layout: Layout, divider: int, gains: list[int]) -> None:
        super().__init__()
        self.layout = layout
        self.step = divider
        self.length = layout.packet_length
        offsets = layout.offsets()
        self.exg = [(offsets[c], CHANNELS[c][1]) for c in layout.exg_ids()]
        if len(gains) != len(self.exg):
            raise ValueError(f"{len(gains)} gains for {len(self.exg)} ExG channels")
        self.scale = np.array([microvolts_per_count(g, 24 if kind == "exg24" else 16)
                               for g, (_, kind) in zip(gains, self.exg, strict=True)], dtype=np.float64)
        self.trigger_at = offsets.get(CH_EXT_A0)
        kinds = {kind for _, kind in self.exg}
        # the usual case, all channels 24-bit: decode them in one gather
        self.exg24_offsets = np.array([off for off, _ in self.exg]) if kinds == {"exg24"} else None

    @property
    def n_channels(self) -> int:
        return len(self.exg)

    def _frame_ok(self, rows: np.ndarray) -> np.ndarray:
        return rows[:, 0] == 0

    def _raw_counter(self, rows: np.ndarray) -> np.ndarray:
        return u24_le(rows, 1)

    def _skip_ok(self, byte: int) -> bool:
        return byte == ACK and self.last_raw is not None  # a command acknowledgement inside the stream

    def _empty(self) -> Samples:
        return Samples.empty(self.n_channels, self.length)

    def _decode(self, rows: np.ndarray, counters: np.ndarray, raw: np.ndarray) -> Samples:
        if self.exg24_offsets is not None:
            values = (i24_be_columns(rows, self.exg24_offsets) * self.scale).astype(np.float32)
        else:
            values = np.empty((len(rows), len(self.exg)), dtype=np.float32)
            for j, (off, kind) in enumerate(self.exg):
                counts = i24_be(rows, off) if kind == "exg24" else i16_be(rows, off)
                values[:, j] = counts * self.scale[j]
        if self.trigger_at is not None:
            trigger = (u16_le(rows, self.trigger_at) / ADC_FULL_SCALE).astype(np.float32)
        else:
            trigger = np.zeros(len(rows), np.float32)
        return Samples(counters.astype(np.int64), raw.astype(np.int64), values, trigger, rows.copy())


class ShimmerProtocol:
    """Reset, configure and start a Shimmer3 ExG unit; gives the parser for its packets."""

    name = "shimmer3-exg"
    baudrate = 115200

    def __init__(self, rate: float = 1024.0, gain: int = 12, trigger: bool = True) -> None:
        self.rate = rate
        self.divider = divider_for(rate)
        self.gain = gain
        self.trigger = trigger
        self.layout: Layout | None = None
        self.info: dict[str, object] = {}

    @property
    def nominal_rate(self) -> float:
        return TICK_RATE / self.divider

    @property
    def counter_period(self) -> float:
        """Seconds per unit of the unwrapped counter (one crystal tick)."""
        return 1.0 / TICK_RATE

    completion_offset = 0  # a sample is complete with its own packet

    def channel_names(self) -> list[str]:
        assert self.layout is not None
        return [EXG_NAMES[c] for c in self.layout.exg_ids()]

    def _command(self, t: Transport, reader: ByteReader, payload: bytes, what: str) -> None:
        t.write(payload)
        ack = reader.exact(1, 1.0, f"acknowledgement (0xFF) of {what}")
        if ack[0] != ACK:
            raise DeviceError(f"{t.description}: {what} answered 0x{ack[0]:02X} instead of 0xFF: "
                              "is this a Shimmer3 (protocol shimmer3-exg)?")

    def _inquiry(self, t: Transport, reader: ByteReader) -> tuple[int, Layout]:
        self._command(t, reader, bytes([CMD_INQUIRY]), "the inquiry command (0x01)")
        code = reader.exact(1, 1.0, "inquiry response")[0]
        if code != RSP_INQUIRY:
            raise DeviceError(f"{t.description}: the inquiry answered 0x{code:02X}, expected 0x02")
        head = reader.exact(8, 1.0, "inquiry response")
        ids = reader.exact(head[6], 1.0, "inquiry channel list")
        return parse_inquiry(head + ids)

    def start(self, t: Transport) -> bytes:
        """Full start sequence; returns bytes that arrived after the start command (data)."""
        reader = ByteReader(t)
        t.write(bytes([CMD_STOP]))  # it may still be streaming from an earlier session
        reader.drain(0.15)
        self._inquiry(t, reader)  # proves a Shimmer answers before anything is changed
        self._command(t, reader, bytes([CMD_SET_SAMPLING_RATE]) + struct.pack("<H", self.divider),
                      "set sampling rate (0x05)")
        sensors = SENSOR_EXG1_24 | SENSOR_EXG2_24 | (SENSOR_EXT_A0 if self.trigger else 0)
        self._command(t, reader, bytes([CMD_SET_SENSORS, sensors, 0, 0]), "set sensors (0x08)")
        regs = exg_registers(self.rate, self.gain)
        for chip in (0, 1):
            self._command(t, reader, bytes([CMD_WRITE_EXG, chip, 0, 10]) + regs, f"write ExG chip {chip} (0x61)")
        divider, layout = self._inquiry(t, reader)
        if divider != self.divider:
            raise DeviceError(f"{t.description}: asked for divider {self.divider}, the unit reports {divider}")
        self.layout = layout
        self._command(t, reader, bytes([CMD_HW_VERSION]), "hardware version (0x3F)")
        rsp = reader.exact(2, 1.0, "hardware version")
        self.info = {"hardware_version": rsp[1], "divider": divider, "rate": self.nominal_rate,
                     "channels": [f"0x{c:02X}" for c in layout.channel_ids]}
        self._command(t, reader, bytes([CMD_START]), "start streaming (0x07)")
        return reader.buffer

    def stop(self, t: Transport) -> None:
        t.write(bytes([CMD_STOP]))

    def parser(self) -> ShimmerParser:
        assert self.layout is not None
        return ShimmerParser(self.layout, self.divider, [self.gain] * len(self.layout.exg_ids()))
