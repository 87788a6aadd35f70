"""Frame times: every frame's index (the device's frame counter, or one reconstructed from its
timestamps or arrival times), the frames dropped before it, and a dejittered host time.

Arrival times of frames carry USB, network and scheduler jitter. The frame index does not, so the
stamps come from a ClockFit of arrival time against the index: jitter disappears, drift is followed,
and a dropped frame is a jump of the index (a gap in time), never a shift of the frames after it.

A source without a counter or timestamps (a phone's MJPEG stream) gives only arrival times. A frame
that arrives more than 1.5 frame periods after the previous one may be late rather than following a
drop: over a network one late frame is followed by the next one at once. So such frames wait for a
few successors before they are placed: frames were dropped only when this frame and all the frames
after it arrive late against the fitted line (the lower envelope of arrivals), not when one is late.
A gap whose size is only estimated this way ends the run when it is long (a reconnect): the fit
starts over.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass
from typing import Any

import numpy as np

from drivers.runtime.clockfit import ClockFit

GAP_PERIODS = 1.5  # an arrival gap longer than this many frame periods means frames were dropped
NEW_RUN_AFTER_S = 1.0  # an estimated gap longer than this starts a new fit (a stall or a reconnect)
LINE_MARGIN = 0.15  # periods: how far the fitted line may sit above the true lower envelope


@dataclass(frozen=True)
class FrameTime:
    index: int  # frame index written to the frame file and the frame-index stream
    stamp: float  # dejittered host LSL time of the frame
    arrival: float  # when the frame reached this process (or the kernel, for V4L2 timestamps)
    dropped_before: int  # frames missing between the previous frame and this one


class FrameClock:
    """One camera's frame timeline across reconnects (the index never goes backwards).

    `add()` returns the frames that are placed now, each with the payload it was given: at once
    for frames with a counter or timestamp, `lookahead` frames later for frames with arrival times
    only. `flush()` places the frames still waiting (at the end of a recording)."""

    def __init__(self, fps: float, lookahead: int = 8) -> None:
        if fps <= 0:
            raise ValueError(f"frame rate must be > 0, got {fps}")
        self.period = 1.0 / fps
        self.lookahead = lookahead
        self.fit = ClockFit(self.period, window_s=20.0)
        self.index = -1
        self.dropped = 0
        self.runs = 0
        self._last_arrival: float | None = None
        self._last_counter: int | None = None
        self._last_device_time: float | None = None
        self._waiting: deque[tuple[float, Any]] = deque()  # arrival-only frames not placed yet

    def set_rate(self, fps: float) -> None:
        """The rate the device actually delivers (it may differ from the one asked for): a new fit."""
        if fps > 0 and abs(1.0 / fps - self.period) > 1e-3 * self.period:
            self.period = 1.0 / fps
            self.fit = ClockFit(self.period, window_s=20.0)
            if self.index >= 0:
                self.runs += 1

    def reconnected(self) -> None:
        """A new connection: the device's counter or clock may start over; arrival times still count."""
        self._last_counter = None
        self._last_device_time = None

    def add(self, arrival: float, counter: int | None = None, device_time: float | None = None,
            fit_time: float | None = None, payload: Any = None) -> list[tuple[FrameTime, Any]]:
        """Place one frame. `counter` is the device's frame counter, `device_time` its timestamp in
        seconds (either may be None); `fit_time` replaces the arrival in the fit when the source gives
        a capture time on the host clock (V4L2 buffer timestamps are CLOCK_MONOTONIC, as local_clock)."""
        steps = self._device_steps(counter, device_time)
        if steps is None:
            self._waiting.append((arrival, payload))
            placed = []
            while len(self._waiting) > self.lookahead:
                placed.append(self._place_waiting())
            return placed
        placed = self.flush()  # frames before this one (a source that gained a counter) come first
        placed.append((self._place(steps, arrival, fit_time), payload))
        return placed

    def flush(self) -> list[tuple[FrameTime, Any]]:
        placed = []
        while self._waiting:
            placed.append(self._place_waiting())
        return placed

    def _device_steps(self, counter: int | None, device_time: float | None) -> int | None:
        """Frames from the previous frame to this one by the device's own evidence, or None."""
        last_counter, last_time = self._last_counter, self._last_device_time
        self._last_counter, self._last_device_time = counter, device_time
        if self.index < 0 and (counter is not None or device_time is not None):
            return 1
        if counter is not None and last_counter is not None and counter > last_counter:
            return counter - last_counter
        if device_time is not None and last_time is not None and device_time > last_time:
            return max(1, round((device_time - last_time) / self.period))
        return None  # no counter, a counter that restarted, the first frame after a reconnect

    def _place_waiting(self) -> tuple[FrameTime, Any]:
        arrival, payload = self._waiting[0]
        steps = 1
        if self.index >= 0 and self._last_arrival is not None:
            gap = arrival - self._last_arrival
            if gap > GAP_PERIODS * self.period:
                steps = self._steps_from_arrivals(gap)
                if steps > 1 and gap > NEW_RUN_AFTER_S:
                    self.fit.reset()
                    self.runs += 1
        self._waiting.popleft()
        return self._place(steps, arrival, None), payload

    def _steps_from_arrivals(self, gap: float) -> int:
        """How many frame periods lie between the last placed frame and the oldest waiting one."""
        if not self.fit.ready or gap > NEW_RUN_AFTER_S:
            return max(1, round(gap / self.period))
        # delays against the fitted line if no frame was dropped; the least delayed of the waiting
        # frames shows the drops (a late frame alone is jitter, every later frame late is a gap)
        arrivals = np.array([a for a, _ in self._waiting])
        line = self.fit.time_of(self.index + 1 + np.arange(len(arrivals)))
        least = float(np.min(arrivals - line))
        # a frame after m drops arrives at least m periods late: floor, not round (a frame late by more
        # than half a period is common over a network); the margin covers the line's own error
        return 1 + max(0, math.floor((least + LINE_MARGIN * self.period) / self.period))

    def _place(self, steps: int, arrival: float, fit_time: float | None) -> FrameTime:
        if self.index < 0:
            self.runs += 1
        self.index += steps
        self.dropped += steps - 1
        self._last_arrival = arrival
        self.fit.add(self.index, arrival if fit_time is None else fit_time)
        stamp = float(self.fit.stamp([self.index])[0])
        return FrameTime(self.index, stamp, arrival, steps - 1)
