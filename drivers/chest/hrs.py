"""The Bluetooth SIG Heart Rate Service's measurement characteristic (0x2A37), PROTOCOLS.md 3.1.

flags (u8) | heart rate (u8, or u16 LE if flags bit 0) | energy expended (u16 LE kJ, if bit 3) |
RR intervals (u16 LE, 1/1024 s, if bit 4, as many as fill the payload, oldest first).
Contact: bit 2 says the strap supports contact detection, bit 1 that the skin is touched.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

HR_MEASUREMENT = "00002a37-0000-1000-8000-00805f9b34fb"
BODY_SENSOR_LOCATION = "00002a38-0000-1000-8000-00805f9b34fb"
BATTERY_LEVEL = "00002a19-0000-1000-8000-00805f9b34fb"
HR_SERVICE = "0000180d-0000-1000-8000-00805f9b34fb"
BATTERY_SERVICE = "0000180f-0000-1000-8000-00805f9b34fb"
LOCATIONS = {0: "other", 1: "chest", 2: "wrist", 3: "finger", 4: "hand", 5: "ear lobe", 6: "foot"}

FLAG_U16 = 0x01
FLAG_CONTACT = 0x02
FLAG_CONTACT_SUPPORTED = 0x04
FLAG_ENERGY = 0x08
FLAG_RR = 0x10


class PayloadError(ValueError):
    """A notification that cannot be decoded; the message says what is wrong with it."""


@dataclass
class HeartRate:
    bpm: int
    contact: bool | None  # None: the strap does not report contact
    energy_kj: int | None
    rr_1024: list[int] = field(default_factory=list)  # RR intervals in 1/1024 s, oldest first

    @property
    def rr_ms(self) -> list[float]:
        return [r * 1000.0 / 1024.0 for r in self.rr_1024]


def parse_heart_rate(payload: bytes) -> HeartRate:
    if len(payload) < 2:
        raise PayloadError(f"heart rate measurement of {len(payload)} bytes: needs flags and a heart rate")
    flags = payload[0]
    pos = 1
    if flags & FLAG_U16:
        if len(payload) < 3:
            raise PayloadError("heart rate measurement says u16 heart rate but has 2 bytes")
        bpm = struct.unpack_from("<H", payload, 1)[0]
        pos = 3
    else:
        bpm = payload[1]
        pos = 2
    contact = bool(flags & FLAG_CONTACT) if flags & FLAG_CONTACT_SUPPORTED else None
    energy = None
    if flags & FLAG_ENERGY:
        if len(payload) < pos + 2:
            raise PayloadError("heart rate measurement announces energy expended but ends before it")
        energy = struct.unpack_from("<H", payload, pos)[0]
        pos += 2
    rr: list[int] = []
    if flags & FLAG_RR:
        rest = payload[pos:]
        if len(rest) % 2:
            raise PayloadError(f"heart rate measurement: RR field of {len(rest)} bytes is not whole u16 values")
        rr = list(struct.unpack(f"<{len(rest) // 2}H", rest))
    elif len(payload) > pos:
        raise PayloadError(f"heart rate measurement has {len(payload) - pos} bytes after its last field")
    return HeartRate(bpm, contact, energy, rr)


def encode_heart_rate(bpm: int, rr_1024: list[int] | None = None, contact: bool | None = None,
                      energy_kj: int | None = None, u16: bool = False) -> bytes:
    """The inverse of parse_heart_rate (emulators and tests)."""
    flags = (FLAG_U16 if u16 else 0) | (FLAG_ENERGY if energy_kj is not None else 0) | (FLAG_RR if rr_1024 else 0)
    if contact is not None:
        flags |= FLAG_CONTACT_SUPPORTED | (FLAG_CONTACT if contact else 0)
    out = bytes([flags]) + (struct.pack("<H", bpm) if u16 else bytes([bpm]))
    if energy_kj is not None:
        out += struct.pack("<H", energy_kj)
    if rr_1024:
        out += struct.pack(f"<{len(rr_1024)}H", *rr_1024)
    return out
