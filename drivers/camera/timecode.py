"""SMPTE timecode as Blackmagic's Camera Control REST API gives it, and frame arithmetic on it.

The API sends a timecode as one integer: the low 31 bits are BCD digits HHMMSSFF (one decimal digit
per nibble) and bit 31 is the drop-frame flag. 2504458305 = 0x95470041 is drop-frame 15:47:00;41,
0x80000000 is drop-frame 00:00:00;00.

Frame-rate convention (every `fps` argument here): a number or a numeric string as cameras report
it ("59.94" in /system/format). Whole rates (24, 25, 30, 50, 60) are exact. 23.976, 29.97 and 59.94
stand for the NTSC rates 24000/1001, 30000/1001 and 60000/1001: frames are *labelled* at the nominal
rate (24, 30, 60 labels per second of timecode) but *run* at the true, slower rate. Drop-frame
timecode (only at 29.97 and 59.94) skips labels so that the timecode stays close to real time:
frame numbers 00 and 01 (at 59.94: 00-03) are skipped at the start of every minute except minutes
00, 10, 20, 30, 40 and 50.
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction

DROP_FRAME_BIT = 0x8000_0000
MAX_NOMINAL_FPS = 60  # the BCD frames field has two digits; the API's project rates stop at 60


def nominal_fps(fps: float | str) -> int:
    """Labels per second of timecode: 30 for 29.97, 60 for 59.94, 25 for 25."""
    rate = float(fps)
    nominal = round(rate)
    if not 1 <= nominal <= MAX_NOMINAL_FPS:
        raise ValueError(f"unsupported frame rate {fps!r}: expected 1..{MAX_NOMINAL_FPS} fps")
    if abs(rate - nominal) > 1e-6 and abs(rate - nominal * 1000 / 1001) > 0.01:
        raise ValueError(f"unsupported frame rate {fps!r}: neither a whole rate nor an NTSC x1000/1001 rate")
    return nominal


def true_fps(fps: float | str, drop_frame: bool = False) -> Fraction:
    """Frames per real second: nominal*1000/1001 for drop-frame and for 23.976/29.97/59.94, else nominal."""
    nominal = nominal_fps(fps)
    # drop-frame only exists on NTSC rates, so the flag alone implies the x1000/1001 clock
    ntsc = drop_frame or abs(float(fps) - nominal) > 1e-6
    return Fraction(nominal * 1000, 1001) if ntsc else Fraction(nominal)


def _drop_per_minute(fps: float | str) -> int:
    nominal = nominal_fps(fps)
    if nominal not in (30, 60):
        raise ValueError(f"drop-frame timecode exists only at 29.97 and 59.94 fps, not at {fps!r}")
    return nominal // 15  # 2 labels at 30, 4 at 60


def _field_problem(hours: int, minutes: int, seconds: int, frames: int) -> str | None:
    for name, value, limit in (("hours", hours, 24), ("minutes", minutes, 60), ("seconds", seconds, 60),
                               ("frames", frames, MAX_NOMINAL_FPS)):
        if not 0 <= value < limit:
            return f"{name} {value} out of range 0..{limit - 1}"
    return None


@dataclass(frozen=True)
class Timecode:
    hours: int
    minutes: int
    seconds: int
    frames: int
    drop_frame: bool = False

    def __post_init__(self) -> None:
        problem = _field_problem(self.hours, self.minutes, self.seconds, self.frames)
        if problem:
            raise ValueError(f"invalid timecode: {problem}")

    @classmethod
    def from_bcd(cls, value: int) -> Timecode:
        """Decode the REST API's integer (BCD HHMMSSFF in bits 0-30, drop-frame flag in bit 31)."""
        if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= 0xFFFF_FFFF:
            raise ValueError(f"timecode {value!r} is not a 32-bit unsigned integer")
        digits = []
        for position in range(8):  # most significant nibble first: H H M M S S F F
            nibble = (value >> (28 - 4 * position)) & 0xF
            if position == 0:
                nibble &= 0x7  # bit 31 is the drop-frame flag, not part of the hours' tens digit
            if nibble > 9:
                field = ("hours", "minutes", "seconds", "frames")[position // 2]
                digit = "tens" if position % 2 == 0 else "units"
                raise ValueError(f"timecode {value} (0x{value:08X}): {field} {digit} digit is 0x{nibble:X}, "
                                 f"not a BCD digit 0-9")
            digits.append(nibble)
        hours, minutes, seconds, frames = (digits[i] * 10 + digits[i + 1] for i in range(0, 8, 2))
        problem = _field_problem(hours, minutes, seconds, frames)
        if problem:
            raise ValueError(f"timecode {value} (0x{value:08X}): {problem}")
        return cls(hours, minutes, seconds, frames, bool(value & DROP_FRAME_BIT))

    def to_bcd(self) -> int:
        value = 0
        for field in (self.hours, self.minutes, self.seconds, self.frames):
            value = (value << 8) | ((field // 10) << 4) | (field % 10)
        return value | (DROP_FRAME_BIT if self.drop_frame else 0)

    def __str__(self) -> str:
        sep = ";" if self.drop_frame else ":"
        return f"{self.hours:02d}:{self.minutes:02d}:{self.seconds:02d}{sep}{self.frames:02d}"

    def frame_number(self, fps: float | str) -> int:
        """Frames since 00:00:00:00 (drop-frame labels skipped when this timecode is drop-frame)."""
        nominal = nominal_fps(fps)
        if self.frames >= nominal:
            raise ValueError(f"timecode {self}: frames {self.frames} impossible at {fps} fps")
        total_minutes = 60 * self.hours + self.minutes
        n = (total_minutes * 60 + self.seconds) * nominal + self.frames
        if not self.drop_frame:
            return n
        drop = _drop_per_minute(fps)
        if self.seconds == 0 and self.frames < drop and self.minutes % 10 != 0:
            raise ValueError(f"timecode {self} does not exist: drop-frame skips frames 00..{drop - 1:02d} "
                             f"at the start of minute {self.minutes}")
        return n - drop * (total_minutes - total_minutes // 10)

    @classmethod
    def from_frame_number(cls, n: int, fps: float | str, drop_frame: bool = False) -> Timecode:
        """Inverse of frame_number. `n` is taken modulo one day: timecode wraps at midnight."""
        nominal = nominal_fps(fps)
        if drop_frame:
            drop = _drop_per_minute(fps)
            per_minute = 60 * nominal - drop
            per_ten_minutes = 10 * 60 * nominal - 9 * drop
            n %= 144 * per_ten_minutes  # 144 ten-minute blocks per day
            tens, rest = divmod(n, per_ten_minutes)
            # the first minute of each block keeps all labels; each later minute skipped `drop` labels
            skipped = 9 * drop * tens + (drop * ((rest - drop) // per_minute) if rest >= drop else 0)
            n += skipped
        else:
            n %= 24 * 3600 * nominal
        frames = n % nominal
        total_seconds = n // nominal
        return cls(total_seconds // 3600, total_seconds // 60 % 60, total_seconds % 60, frames, drop_frame)

    def elapsed_seconds(self, fps: float | str) -> float:
        """Real seconds since 00:00:00:00: frame_number over the true frame rate (30000/1001 at 29.97).

        Named elapsed_seconds because `seconds` is the timecode's seconds field."""
        return float(self.frame_number(fps) / true_fps(fps, self.drop_frame))
