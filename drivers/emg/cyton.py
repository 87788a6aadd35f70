"""OpenBCI Cyton and Cyton+Daisy over the USB radio dongle (PROTOCOLS.md section 1).

33-byte packets: 0xA0, u8 sample number, 8 channels i24 big-endian, 6 aux bytes, footer 0xC0..0xC6.
250 Hz. With a Daisy the board sends its channels 1-8 on odd sample numbers and the Daisy's 9-16 on
even ones: one 16-channel sample per pair, 125 Hz. uV = counts * 4.5 V / gain / (2^23 - 1).

Trigger input: board mode 3 (digital, `/3`) sends footer 0xC1 with the digital pins in the aux bytes;
flexcap reads the trigger box's TTL line on D11, which firmware 3 puts in the first aux byte.
[verify on the real board: print `V` and check the aux layout of your firmware]
"""

from __future__ import annotations

import numpy as np

from drivers.emg.packets import PacketParser, Samples, i24_be_columns
from drivers.emg.transport import ByteReader, Transport
from drivers.runtime.driver import DeviceError

HEADER = 0xA0
FOOTERS = range(0xC0, 0xC7)
FOOTER_DIGITAL = 0xC1
PACKET = 33
RATE = 250.0
GAINS = {1: 0, 2: 1, 4: 2, 6: 3, 8: 4, 12: 5, 24: 6}
DAISY_LETTERS = "QWERTYUI"
CHANNEL_OFFSETS = np.arange(8) * 3 + 2


def microvolts_per_count(gain: int) -> float:
    return 4.5 / gain / ((1 << 23) - 1) * 1e6


class CytonParser(PacketParser):
    length = PACKET
    modulo = 256
    max_lost = 100  # the u8 counter cannot tell longer gaps apart

    def __init__(self, gain: int = 24) -> None:
        super().__init__()
        self.scale = microvolts_per_count(gain)

    @property
    def n_channels(self) -> int:
        return 8

    def _frame_ok(self, rows: np.ndarray) -> np.ndarray:
        return (rows[:, 0] == HEADER) & (rows[:, 32] >= 0xC0) & (rows[:, 32] <= 0xC6)

    def _raw_counter(self, rows: np.ndarray) -> np.ndarray:
        return rows[:, 1].astype(np.int64)

    def _empty(self) -> Samples:
        return Samples.empty(8, PACKET)

    def _decode(self, rows: np.ndarray, counters: np.ndarray, raw: np.ndarray) -> Samples:
        values = (i24_be_columns(rows, CHANNEL_OFFSETS) * self.scale).astype(np.float32)
        trigger = np.where(rows[:, 32] == FOOTER_DIGITAL, rows[:, 26] & 1, 0).astype(np.float32)
        return Samples(counters.astype(np.int64), raw, values, trigger, rows.copy())


class DaisyParser:
    """Pairs Cyton packets into 16-channel samples: an odd sample number (board, channels 1-8)
    followed by the next even one (Daisy, channels 9-16). A half whose partner was lost is dropped
    and counted."""

    def __init__(self, gain: int = 24) -> None:
        self.packets = CytonParser(gain)
        self.pending: Samples | None = None  # an odd packet waiting for its Daisy half

    @property
    def stats(self):  # noqa: ANN201 - the packet parser's stats, with unpaired halves counted as lost
        return self.packets.stats

    @property
    def timeline_breaks(self) -> int:
        return self.packets.timeline_breaks

    @property
    def n_channels(self) -> int:
        return 16

    def feed(self, data: bytes) -> Samples:
        s = self.packets.feed(data)
        if self.pending is not None:
            s = Samples.concat([self.pending, s])
            self.pending = None
        if len(s) == 0:
            return Samples.empty(16, 2 * PACKET)
        odd = (s.raw_counter % 2) == 1
        pair = odd[:-1] & ~odd[1:] & (np.diff(s.counters) == 1)
        first = np.flatnonzero(pair)
        used = np.zeros(len(s), dtype=bool)
        used[first] = used[first + 1] = True
        if odd[-1]:  # may still be completed by the next feed
            used[-1] = True
            self.pending = Samples(s.counters[-1:], s.raw_counter[-1:], s.values[-1:], s.trigger[-1:],
                                   s.packets[-1:])
        dropped = int((~used).sum())
        if dropped:
            self.packets.stats.lost += dropped
            self.packets.stats.note(f"{dropped} Cyton/Daisy halves without their partner dropped")
        b = first + 1
        return Samples(
            counters=s.counters[first],
            raw_counter=s.raw_counter[first],
            values=np.concatenate([s.values[first], s.values[b]], axis=1),
            trigger=np.maximum(s.trigger[first], s.trigger[b]),
            packets=np.concatenate([s.packets[first], s.packets[b]], axis=1),
        )


class CytonProtocol:
    """Soft-reset, configure and start a Cyton (optionally with its Daisy) through the dongle."""

    baudrate = 115200

    def __init__(self, daisy: bool = False, rate: float | None = None, gain: int = 24, trigger: bool = True) -> None:
        self.daisy = daisy
        self.name = "cyton-daisy" if daisy else "cyton"
        expected = RATE / 2 if daisy else RATE
        if rate is not None and abs(rate - expected) > 1e-9:
            raise ValueError(f"the {self.name} sends {expected:g} Hz over the USB dongle; got rate {rate:g}")
        if gain not in GAINS:
            raise ValueError(f"gain {gain} is not an ADS1299 gain; use one of {sorted(GAINS)}")
        self.gain = gain
        self.trigger = trigger
        self.info: dict[str, object] = {}

    @property
    def nominal_rate(self) -> float:
        return RATE / 2 if self.daisy else RATE

    @property
    def counter_period(self) -> float:
        return 1.0 / RATE  # one packet

    @property
    def completion_offset(self) -> int:
        """A Daisy sample is numbered by its first packet but only complete with its second."""
        return 1 if self.daisy else 0

    def channel_names(self) -> list[str]:
        return [f"ch{i + 1}" for i in range(16 if self.daisy else 8)]

    def start(self, t: Transport) -> bytes:
        reader = ByteReader(t)
        t.write(b"s")
        reader.drain(0.2)
        t.write(b"v")
        banner = reader.until(b"$$$", 3.0, "answer to the soft reset ('v') ending in '$$$'").decode("ascii", "replace")
        if "OpenBCI" not in banner:
            raise DeviceError(f"{t.description}: the soft reset answered without the OpenBCI banner "
                              f"({banner.strip()[:80]!r}): is this a Cyton (protocol {self.name})?")
        if "Failure" in banner:
            raise DeviceError(f"{t.description}: the dongle answers but the board does not: {banner.strip()[:120]}")
        has_daisy = "Daisy" in banner
        if self.daisy and not has_daisy:
            raise DeviceError(f"{t.description}: no Daisy board found (protocol cyton-daisy); the banner was "
                              f"{banner.strip()[:120]!r}")
        if not self.daisy and has_daisy:
            t.write(b"c")  # use the 8 board channels only
            reader.until(b"$$$", 1.0, "answer to 'c' (8 channels)")
        t.write(b"d")
        reader.until(b"$$$", 1.0, "answer to 'd' (default channel settings)")
        if self.gain != 24:
            code = GAINS[self.gain]
            letters = "12345678" + (DAISY_LETTERS if self.daisy else "")
            for ch in letters:
                t.write(f"x{ch}0{code}0110X".encode())
                reply = reader.until(b"$$$", 1.0, f"answer to setting channel {ch}")
                if b"Success" not in reply:
                    raise DeviceError(f"{t.description}: channel {ch} setting refused: {reply!r}")
        if self.trigger:
            t.write(b"/3")
            reply = reader.until(b"$$$", 1.0, "answer to '/3' (digital board mode for the trigger input)")
            if b"Success" not in reply:
                raise DeviceError(f"{t.description}: digital board mode refused: {reply!r}")
        self.info = {"banner": banner.strip().splitlines()[:4], "daisy": has_daisy, "rate": self.nominal_rate}
        t.write(b"b")
        return reader.buffer

    def stop(self, t: Transport) -> None:
        t.write(b"s")

    def parser(self) -> CytonParser | DaisyParser:
        return DaisyParser(self.gain) if self.daisy else CytonParser(self.gain)
