"""The sync controller's online half, inside the recorder: each stream's clock offset and round trip
(liblsl's NTP-style probe), and each device's latency while it records: live from the trigger edges an
EMG unit reports against the pulses the box fired, otherwise the latency the last take's alignment
measured. Published once a second on the recorder's status stream."""

from __future__ import annotations

import collections
import ctypes
import json
from dataclasses import dataclass

import numpy as np
import pylsl
from pylsl.lib import lib
from pylsl.util import handle_error

MAX_LATENCY_S = 0.6
KEEP = 40  # recent edges per stream

lib.lsl_time_correction_ex.restype = ctypes.c_double
lib.lsl_time_correction_ex.argtypes = [ctypes.c_void_p, ctypes.POINTER(ctypes.c_double),
                                       ctypes.POINTER(ctypes.c_double), ctypes.c_double,
                                       ctypes.POINTER(ctypes.c_int32)]


def time_correction_ex(inlet: pylsl.StreamInlet, timeout: float) -> tuple[float, float]:
    """(offset, round trip) of liblsl's current clock estimate for a stream (pylsl's time_correction
    returns only the offset). liblsl's "uncertainty" is the round trip of the probe it kept."""
    remote, uncertainty = ctypes.c_double(), ctypes.c_double()
    err = ctypes.c_int32()
    offset = lib.lsl_time_correction_ex(inlet.obj, ctypes.byref(remote), ctypes.byref(uncertainty),
                                        ctypes.c_double(timeout), ctypes.byref(err))
    handle_error(err)  # pylsl's own: timeout, lost stream
    return float(offset), float(uncertainty.value)


@dataclass
class Clock:
    offset_s: float
    rtt_s: float
    at: float


class LiveSync:
    def __init__(self) -> None:
        self.clocks: dict[str, Clock] = {}
        self.pulses: collections.deque[float] = collections.deque(maxlen=KEEP)  # rises, recorder clock
        self.edges: dict[str, collections.deque[float]] = {}
        self._last_level: dict[str, tuple[float, float]] = {}
        self.measured: dict[str, dict] = {}  # stream id -> {"latency_s", "take"} from the last alignment

    def clock(self, stream_id: str, offset: float, rtt: float) -> None:
        self.clocks[stream_id] = Clock(offset, rtt, pylsl.local_clock())

    def pulse_markers(self, samples: list, offset: float) -> None:
        for row in samples:
            try:
                self.pulses.append(float(json.loads(row[0])["rise_lsl"]) + offset)
            except (ValueError, KeyError, TypeError, IndexError):
                continue

    def trigger_level(self, stream_id: str, level: np.ndarray, stamps: np.ndarray, offset: float) -> None:
        """Rising crossings of half scale, between samples (good to a sample: this is a live estimate)."""
        if len(level) == 0:
            return
        prev = self._last_level.get(stream_id)
        lv = np.asarray(level, dtype=np.float64)
        ts = np.asarray(stamps, dtype=np.float64) + offset
        if prev is not None:
            lv = np.concatenate([[prev[1]], lv])
            ts = np.concatenate([[prev[0]], ts])
        self._last_level[stream_id] = (float(ts[-1]), float(lv[-1]))
        up = np.flatnonzero((lv[:-1] < 0.5) & (lv[1:] >= 0.5))
        if len(up) == 0:
            return
        frac = (0.5 - lv[up]) / (lv[up + 1] - lv[up])
        edges = self.edges.setdefault(stream_id, collections.deque(maxlen=KEEP))
        edges.extend((ts[up] + frac * (ts[up + 1] - ts[up])).tolist())

    def latency(self, stream_id: str) -> dict | None:
        edges = self.edges.get(stream_id)
        if edges and self.pulses:
            p = np.array(self.pulses)
            lags = [e - p[p <= e].max() for e in edges if np.any(p <= e)]
            lags = [x for x in lags if 0 <= x <= MAX_LATENCY_S]
            if lags:
                return {"ms": round(float(np.median(lags)) * 1e3, 3), "source": "live trigger edges", "n": len(lags)}
        known = self.measured.get(stream_id)
        if known is not None:
            return {"ms": round(known["latency_s"] * 1e3, 3), "source": f"take {known['take']}"}
        return None

    def report(self, stream_ids: list[str]) -> dict:
        now = pylsl.local_clock()
        out = {}
        for sid in stream_ids:
            c = self.clocks.get(sid)
            entry: dict = {}
            if c is not None:
                entry |= {"offset_ms": round(c.offset_s * 1e3, 4), "rtt_ms": round(c.rtt_s * 1e3, 4),
                          "age_s": round(now - c.at, 1)}
            lat = self.latency(sid)
            if lat is not None:
                entry["latency"] = lat
            out[sid] = entry
        return out
