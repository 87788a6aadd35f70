"""The wire from the trigger box's output to the devices that see it: the LED in every camera's view
and the trigger input of every EMG unit.

The emulated box (drivers.sim.trigger_box) appends each pulse's true (rise, fall) times to a small
file as soon as it schedules a train, before the first edge; each simulated device, in its own
process, reads that file to know when the line was high. Without a box in the rig the line runs free:
a pulse every pulse_period_s.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Protocol

import numpy as np

from drivers.runtime.paths import device_runtime_path
from drivers.sim.lab import SimLabSettings

EDGE_DTYPE = np.dtype("<f8")


class PulseLine(Protocol):
    def active(self, t: np.ndarray) -> np.ndarray:
        """True where the output is high at true time t."""
        ...

    def overlap_many(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        """Seconds of each interval [a, b] during which the output is high."""
        ...

    def overlap(self, a: float, b: float) -> float: ...


class FreeRunningPulses:
    """A pulse of pulse_width_s every pulse_period_s (rigs without a trigger box, standalone emulators)."""

    def __init__(self, sim: SimLabSettings) -> None:
        self.period = sim.pulse_period_s
        self.width = sim.pulse_width_s

    def active(self, t: np.ndarray) -> np.ndarray:
        return np.mod(np.asarray(t, dtype=np.float64), self.period) < self.width

    def overlap_many(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        """For intervals shorter than one pulse period."""
        a = np.asarray(a, dtype=np.float64)
        b = np.asarray(b, dtype=np.float64)
        total = np.zeros(np.broadcast(a, b).shape)
        n = np.floor(a / self.period)
        for m in (n, n + 1):
            on = m * self.period
            total += np.maximum(0.0, np.minimum(b, on + self.width) - np.maximum(a, on))
        return total

    def overlap(self, a: float, b: float) -> float:
        total = 0.0
        n = math.floor(a / self.period)
        while n * self.period < b:
            on = n * self.period
            total += max(0.0, min(b, on + self.width) - max(a, on))
            n += 1
        return total


class PulseEdges:
    """The line as a list of (rise, fall) pulses in true time (what a box fired, or its log)."""

    def __init__(self, pulses: np.ndarray | list | None = None) -> None:
        self._set(np.asarray(pulses if pulses is not None else np.zeros((0, 2)), dtype=np.float64).reshape(-1, 2))

    def _set(self, pulses: np.ndarray) -> None:
        order = np.argsort(pulses[:, 0], kind="stable")
        self.pulses = pulses[order]
        self._cum = np.concatenate([[0.0], np.cumsum(self.pulses[:, 1] - self.pulses[:, 0])])

    def refresh(self) -> None:  # noqa: B027 - a fixed list has nothing to reload
        pass

    def high_before(self, t: np.ndarray) -> np.ndarray:
        """Seconds the line was high before true time t."""
        self.refresh()
        t = np.asarray(t, dtype=np.float64)
        i = np.searchsorted(self.pulses[:, 0], t, side="right")  # pulses that rose by t
        total = self._cum[i]
        last = np.clip(i - 1, 0, max(0, len(self.pulses) - 1))
        if len(self.pulses):
            still_high = np.maximum(0.0, self.pulses[last, 1] - t)
            total = total - np.where(i > 0, still_high, 0.0)
        return total

    def active(self, t: np.ndarray) -> np.ndarray:
        self.refresh()
        t = np.asarray(t, dtype=np.float64)
        i = np.searchsorted(self.pulses[:, 0], t, side="right") - 1
        if not len(self.pulses):
            return np.zeros(t.shape, dtype=bool)
        return (i >= 0) & (t < self.pulses[np.clip(i, 0, None), 1])

    def overlap_many(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        return self.high_before(b) - self.high_before(a)

    def overlap(self, a: float, b: float) -> float:
        return float(self.overlap_many(np.array([a]), np.array([b]))[0])


class TriggerLineFile(PulseEdges):
    """The emulated box's line, re-read whenever the box has appended pulses."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._size = -1
        super().__init__()

    def refresh(self) -> None:
        try:
            size = os.stat(self.path).st_size
        except FileNotFoundError:
            size = 0
        if size == self._size:
            return
        data = self.path.read_bytes() if size else b""
        usable = len(data) - len(data) % (2 * EDGE_DTYPE.itemsize)
        self._size = usable if usable == len(data) else -1  # a half-written pulse: read again next time
        self._set(np.frombuffer(data[:usable], dtype=EDGE_DTYPE).reshape(-1, 2).copy())


def line_file(rig_name: str, trigger_id: str) -> Path:
    return device_runtime_path(rig_name, trigger_id, ".line")


def append_pulses(path: Path, pulses: list[tuple[float, float]]) -> None:
    """The box's side: one write per train, so readers see whole pulses."""
    data = np.asarray(pulses, dtype=EDGE_DTYPE).tobytes()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    try:
        os.write(fd, data)
    finally:
        os.close(fd)


def pulse_line(sim: SimLabSettings | None, rig_name: str) -> PulseLine:
    """What a simulated device in rig `rig_name` sees of the trigger output."""
    sim = sim or SimLabSettings()
    if sim.trigger:
        return TriggerLineFile(line_file(rig_name, sim.trigger))
    return FreeRunningPulses(sim)
