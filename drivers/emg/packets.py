"""What every amplifier protocol's parser produces, and the byte decoding they share."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass
class Samples:
    """A block of decoded samples, in device order.

    counters: the device counter unwrapped to a monotonic int64 (Shimmer: 32768 Hz ticks; Cyton:
              packet number), the time base the driver's clock fit uses.
    raw_counter: the counter exactly as the device sent it (published so the sync step can re-fit).
    values: electrode channels in microvolts.
    trigger: the trigger input (0 or 1).
    packets: the packets the samples came from, byte for byte (n, packet_length) or, for protocols
             that combine packets into one sample (Cyton+Daisy), (n, 2 * packet_length).
    """

    counters: np.ndarray
    raw_counter: np.ndarray
    values: np.ndarray
    trigger: np.ndarray
    packets: np.ndarray

    def __len__(self) -> int:
        return len(self.counters)

    @staticmethod
    def empty(n_channels: int, packet_length: int) -> Samples:
        return Samples(np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros((0, n_channels), np.float32),
                       np.zeros(0, np.float32), np.zeros((0, packet_length), np.uint8))

    @staticmethod
    def concat(blocks: list[Samples]) -> Samples:
        return Samples(*(np.concatenate([getattr(b, f) for b in blocks]) for f in
                         ("counters", "raw_counter", "values", "trigger", "packets")))


@dataclass
class ParserStats:
    """What a parser saw besides good samples. `lost` counts packets missing according to the
    device counter; `garbage_bytes` bytes skipped while looking for the next packet."""

    packets: int = 0
    lost: int = 0
    garbage_bytes: int = 0
    resyncs: int = 0
    events: list[str] = field(default_factory=list)

    def note(self, text: str) -> None:
        self.events.append(text)
        del self.events[:-20]  # keep the last few for the status stream


def i24_be(rows: np.ndarray, offset: int) -> np.ndarray:
    """Signed 24-bit big-endian integers at column `offset` of every row."""
    b = rows[:, offset : offset + 3].astype(np.int32)
    v = (b[:, 0] << 16) | (b[:, 1] << 8) | b[:, 2]
    return v - ((v & 0x800000) << 1)


def i24_be_columns(rows: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """Signed 24-bit big-endian integers at several column offsets at once: (n, len(offsets))."""
    b = rows[:, offsets[:, None] + np.arange(3)].astype(np.int32)
    v = (b[..., 0] << 16) | (b[..., 1] << 8) | b[..., 2]
    return v - ((v & 0x800000) << 1)


def u24_le(rows: np.ndarray, offset: int) -> np.ndarray:
    b = rows[:, offset : offset + 3].astype(np.int64)
    return b[:, 0] | (b[:, 1] << 8) | (b[:, 2] << 16)


def u16_le(rows: np.ndarray, offset: int) -> np.ndarray:
    b = rows[:, offset : offset + 2].astype(np.int32)
    return b[:, 0] | (b[:, 1] << 8)


def i16_be(rows: np.ndarray, offset: int) -> np.ndarray:
    b = rows[:, offset : offset + 2].astype(np.int32)
    v = (b[:, 0] << 8) | b[:, 1]
    return v - ((v & 0x8000) << 1)


def pack_i24_be(values: np.ndarray) -> np.ndarray:
    """(n, c) ints -> (n, 3c) bytes, the inverse of i24_be (emulators use it)."""
    v = np.asarray(values, dtype=np.int64) & 0xFFFFFF
    out = np.empty((*v.shape, 3), dtype=np.uint8)
    out[..., 0] = v >> 16
    out[..., 1] = (v >> 8) & 0xFF
    out[..., 2] = v & 0xFF
    return out.reshape(v.shape[0], -1)


class PacketParser:
    """Incremental parser for fixed-length packets that carry a wrapping counter.

    Feed it any split of the byte stream and it returns the same samples. In sync, runs of packets
    are checked and decoded at once (numpy). A packet is accepted when its framing is valid and its
    counter follows the previous packet by one step; a larger step (lost packets) is accepted only
    when the next packet confirms it by following it by exactly one step. Out of sync (at the start,
    after garbage or a counter jump), a candidate needs two consecutive valid packets. Lost packets
    are counted from the counter. Never raises out of feed().

    Subclasses set `length`, `modulo` (counter wrap), `step` (counter units per packet) and implement
    `_frame_ok`, `_raw_counter` and `_decode`.
    """

    length: int
    modulo: int
    step: int = 1
    max_lost: int = 1 << 12

    def __init__(self) -> None:
        self.buf = bytearray()
        self.last_raw: int | None = None
        self.last_unwrapped = 0
        self.timeline_breaks = 0
        self.stats = ParserStats()

    # -- protocol hooks -----------------------------------------------------------------------------
    def _frame_ok(self, rows: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def _raw_counter(self, rows: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def _decode(self, rows: np.ndarray, counters: np.ndarray, raw: np.ndarray) -> Samples:
        raise NotImplementedError

    def _empty(self) -> Samples:
        raise NotImplementedError

    def _skip_ok(self, byte: int) -> bool:
        """Bytes that may stand between packets without being garbage (e.g. command ACKs)."""
        return False

    # -- engine -------------------------------------------------------------------------------------
    def feed(self, data: bytes) -> Samples:
        self.buf += data
        blocks = []
        try:
            while True:
                block = self._take_synced()
                if block is not None:
                    blocks.append(block)
                elif not self._resync():
                    break
        except Exception as exc:  # defensive: a parser bug must not stop the driver
            self.stats.note(f"parser error, buffer dropped: {type(exc).__name__}: {exc}")
            self.buf.clear()
            self.last_raw = None
        if not blocks:
            return self._empty()
        return Samples.concat(blocks) if len(blocks) > 1 else blocks[0]

    def _rows(self, start: int, n: int) -> np.ndarray:
        return np.frombuffer(bytes(self.buf[start : start + n * self.length]), dtype=np.uint8).reshape(n, self.length)

    def _take_synced(self) -> Samples | None:
        n = len(self.buf) // self.length
        if self.last_raw is None or n == 0:
            return None
        rows = self._rows(0, n)
        raw = self._raw_counter(rows).astype(np.int64)
        delta = (raw - np.concatenate([[self.last_raw], raw[:-1]])) % self.modulo
        framed = self._frame_ok(rows)
        strict = framed & (delta == self.step)
        gap = framed & (delta > 0) & (delta % self.step == 0) & (delta // self.step <= self.max_lost + 1)
        confirmed = np.zeros(n, dtype=bool)
        confirmed[:-1] = strict[1:]  # the next packet follows this one by exactly one step
        ok = strict | (gap & confirmed)
        good = n if ok.all() else int(np.argmin(ok))
        if good == 0:
            return None
        rows, raw, delta = rows[:good], raw[:good], delta[:good]
        del self.buf[: good * self.length]
        self.stats.packets += good
        self.stats.lost += int(np.sum(delta // self.step - 1))
        counters = self.last_unwrapped + np.cumsum(delta)
        self.last_unwrapped = int(counters[-1])
        self.last_raw = int(raw[-1])
        return self._decode(rows, counters, raw)

    def _resync(self) -> bool:
        """Find the next packet start (two consecutive valid packets); False when more bytes are needed."""
        buf = self.buf
        L = self.length
        i = 0
        while i + 2 * L <= len(buf):
            if i == 0 and self._skip_ok(buf[0]):
                del buf[0]
                return True
            pair = self._rows(i, 2)
            raw = self._raw_counter(pair)
            if self._frame_ok(pair).all() and (raw[1] - raw[0]) % self.modulo == self.step:
                first = int(raw[0])
                delta = None if self.last_raw is None else (first - self.last_raw) % self.modulo
                same = bool(delta) and delta % self.step == 0 and delta // self.step <= self.max_lost + 1
                if delta is not None and not same:
                    # a new timeline needs a third packet in step: two packets read across garbage can line up
                    # by chance (their "counters" are sample bytes) and would start a false one
                    if i + 3 * L > len(buf):
                        self._skip(i)
                        return False
                    triple = self._rows(i, 3)
                    third = self._raw_counter(triple)
                    if not (self._frame_ok(triple).all() and (third[2] - third[1]) % self.modulo == self.step):
                        i += 1
                        continue
                self._skip(i)
                if delta is not None:
                    if same:
                        return True  # the same timeline after some garbage: _take_synced counts the loss
                    self.stats.note(f"counter jumped by {delta}: new timeline")
                    self.timeline_breaks += 1
                self.last_raw = (first - self.step) % self.modulo
                self.last_unwrapped = -self.step
                return True
            i += 1
        if i:
            self._skip(i)
        return False

    def _skip(self, n: int) -> None:
        if n:
            self.stats.garbage_bytes += n
            self.stats.resyncs += 1
            del self.buf[:n]
