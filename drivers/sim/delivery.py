"""Delivery of a simulated device's samples to the host: blocks on a fixed tick (like a USB or BLE
link), each arriving after the device's latency plus random jitter, stamped by the host through a
ClockFit on the device counter exactly as a real driver does."""

from __future__ import annotations

import threading

import numpy as np
import pylsl

from drivers.runtime.clockfit import ClockFit
from drivers.sim.lab import SimClock


class SimDelivery:
    def __init__(self, clock: SimClock, block_interval_s: float, rng: np.random.Generator) -> None:
        self.clock = clock
        self.block_interval_s = block_interval_s
        self.rng = rng
        self.next_k = 0
        self.next_tick = clock.t0 + block_interval_s
        self.fit = ClockFit(1.0 / clock.nominal_rate)

    def wait_block(self, stop: threading.Event | None = None) -> tuple[np.ndarray, float] | None:
        """Sleep until the next delivery; return (counters delivered, host arrival time) or None."""
        jitter = self.clock.truth.jitter_s
        target = self.next_tick + (self.rng.exponential(jitter) if jitter > 0 else 0.0)
        self.next_tick += self.block_interval_s
        delay = target - pylsl.local_clock()
        if delay > 0:
            if stop is not None:
                if stop.wait(delay):
                    return None
            else:
                threading.Event().wait(delay)
        return self.poll(target)

    def poll(self, delivered_at: float) -> tuple[np.ndarray, float] | None:
        """Without waiting: the samples that reached the host by `delivered_at`."""
        arrival = pylsl.local_clock()
        end = self.clock.count_arrived(delivered_at)
        if end <= self.next_k:
            return None
        counters = np.arange(self.next_k, end, dtype=np.int64)
        self.next_k = end
        self.fit.add(int(counters[-1]), arrival)
        return counters, arrival

    def stamps(self, counters: np.ndarray) -> np.ndarray:
        return self.fit.stamp(counters)
