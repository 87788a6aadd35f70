"""Coded pulse trains. Every train has its own pattern of widths and gaps (from its number), so an
event detected in any stream can be matched to the pulse that caused it, and its pulses fall at
different phases of every camera's frame clock (a flash in a closed-shutter interval is then one of
several, not the only one).

Widths and gaps are long enough for the slowest camera (30 fps, exposure up to a frame): every pulse
leaves at least one fully lit frame and every gap at least one dark frame, so the lit and unlit
levels are seen in every train.
"""

from __future__ import annotations

PULSES = 4
WIDTHS_US = (80_000, 120_000)  # bit i of the train number chooses pulse i's width
GAPS_US = (110_000, 150_000, 190_000)  # rotated by the train number; not multiples of a frame period


def train_durations(seq: int) -> list[int]:
    """On, off, on, ..., on durations (microseconds) of train `seq`."""
    widths = [WIDTHS_US[(seq >> i) & 1] for i in range(PULSES)]
    gaps = [GAPS_US[(seq + i) % len(GAPS_US)] for i in range(PULSES - 1)]
    out: list[int] = []
    for i, w in enumerate(widths):
        out.append(w)
        if i < len(gaps):
            out.append(gaps[i])
    return out


def train_length_s(seq: int) -> float:
    return sum(train_durations(seq)) / 1e6


def pulse_edges_us(durations_us: list[int]) -> list[tuple[int, int]]:
    """(rise, fall) of each pulse in microseconds from the train's first rise (on, off, on, ... durations)."""
    out, t = [], 0
    for i, d in enumerate(durations_us):
        if i % 2 == 0:
            out.append((t, t + int(d)))
        t += int(d)
    return out


def pulse_offsets_s(durations_us: list[int]) -> list[tuple[float, float]]:
    """(rise, fall) of each pulse in seconds from the train's first rise."""
    return [(r / 1e6, f / 1e6) for r, f in pulse_edges_us(durations_us)]
