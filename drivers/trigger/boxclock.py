"""The trigger box's microsecond clock on the host's LSL clock, from T queries.

Each query gives a box reading taken somewhere between the host's send and receive times; the
midpoint is off by at most half the round trip, so only the quickest exchanges are used, and a line
through them (box time -> host time) follows the box crystal's drift.
"""

from __future__ import annotations

import collections

import numpy as np

KEEP = 240  # queries kept online (a minute at four a second)
QUERY_BYTES, REPLY_BYTES = 2, 13  # "T\n" and "T <10 digits>\n" (the longest reply)


def wire_times(baudrate: int, uart_bridge: bool) -> tuple[float, float]:
    """Transfer time of a clock query and its reply (10 bits a byte) through a USB-UART bridge; native-USB
    boards (and the emulator) move whole packets at once: zero."""
    if not uart_bridge:
        return 0.0, 0.0
    return QUERY_BYTES * 10 / baudrate, REPLY_BYTES * 10 / baudrate
BEST_FRACTION = 0.3  # the quickest 30 % of exchanges
MIN_SPAN_FOR_DRIFT_S = 5.0
MAX_DRIFT = 5000e-6  # a crystal is within 100 ppm of nominal, an Uno's ceramic resonator within 0.5 %


class BoxClock:
    def __init__(self, keep: int = KEEP) -> None:
        self._q: collections.deque[tuple[float, float, float]] = collections.deque(maxlen=keep)  # box s, mid, rtt
        self.offset = 0.0  # host = offset + slope * (box - ref)
        self.slope = 1.0
        self.ref = 0.0

    def add(self, box_us: int, sent: float, received: float, transfer_s: tuple[float, float] = (0.0, 0.0),
            refit: bool = True) -> None:
        """One query: sent and received on the host clock; transfer_s: how long the request and the reply
        take on the wire (a USB-UART bridge at 115200 baud: 0.17 and 1.1 ms), outside the box's reading."""
        sent, received = sent + transfer_s[0], received - transfer_s[1]
        self._q.append((box_us / 1e6, (sent + received) / 2.0, max(received - sent, 0.0)))
        if refit:
            self._fit()

    @classmethod
    def from_queries(cls, queries: np.ndarray, transfer_s: tuple[float, float] = (0.0, 0.0)) -> BoxClock:
        """One fit through many recorded queries (rows of box microseconds, sent, received)."""
        clock = cls(keep=max(1, len(queries)))
        for box, sent, received in np.asarray(queries, dtype=np.float64).reshape(-1, 3):
            clock.add(int(box), sent, received, transfer_s, refit=False)
        if len(clock._q):
            clock._fit()
        return clock

    @property
    def ready(self) -> bool:
        return len(self._q) > 0

    @property
    def best_rtt_s(self) -> float | None:
        return min(q[2] for q in self._q) if self._q else None

    @property
    def drift_ppm(self) -> float:
        return (self.slope - 1.0) * 1e6

    def _fit(self) -> None:
        q = np.array(self._q)
        keep = q[q[:, 2] <= np.quantile(q[:, 2], BEST_FRACTION)] if len(q) >= 4 else q[q[:, 2] == q[:, 2].min()]
        box, host = keep[:, 0], keep[:, 1]
        self.ref = float(box.mean())
        slope = 1.0
        if box.max() - box.min() >= MIN_SPAN_FOR_DRIFT_S and len(keep) >= 3:
            slope = float(np.polyfit(box - self.ref, host, 1)[0])
            slope = float(np.clip(slope, 1.0 - MAX_DRIFT, 1.0 + MAX_DRIFT))
        self.slope = slope
        self.offset = float(np.mean(host - slope * (box - self.ref)))

    def host_times(self, box_us: np.ndarray) -> np.ndarray:
        return self.offset + self.slope * (np.asarray(box_us, dtype=np.float64) / 1e6 - self.ref)

    def host_time(self, box_us: int) -> float:
        """Host LSL time of an (unwrapped) box reading."""
        if not self._q:
            raise ValueError("the box's clock has not been measured yet")
        return self.offset + self.slope * (box_us / 1e6 - self.ref)

    def uncertainty_s(self) -> float | None:
        rtt = self.best_rtt_s
        return None if rtt is None else rtt / 2.0
