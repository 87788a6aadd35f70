"""What the console shows, gathered off the GUI thread: every device's status stream, the live signals
(EMG, ECG, heart rate, breathing rate, the trigger box's pulses) in ring buffers, and the take folder's
size and the free disk. One thread pulls everything without blocking; the GUI copies snapshots.
"""

from __future__ import annotations

import json
import logging
import shutil
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pylsl

from acquisition.recorder import stream_meta
from drivers.runtime.driver import STATUS_TYPE

log = logging.getLogger(__name__)

PULL_INTERVAL_S = 0.04  # 25 Hz: the plots redraw at 15 Hz
DISK_INTERVAL_S = 1.0
# what the console draws, by LSL stream type: (ring length in seconds, channel types kept)
SIGNAL_TYPES = {"EMG": (6.0, ("EMG",)), "ECG": (12.0, ("ECG",)), "HeartRate": (600.0, ("HR",)),
                "Respiration": (600.0, ("Respiration",))}
PULSE_LABEL = "pulse"
RATE_WINDOW = 10  # statuses (seconds) averaged for the measured rate


class Ring:
    """The newest `capacity` samples of a stream (time stamps on this host's clock and values)."""

    def __init__(self, channels: int, capacity: int) -> None:
        self.stamps = np.zeros(capacity)
        self.values = np.zeros((capacity, channels), np.float32)
        self.capacity = capacity
        self.n = 0  # samples ever written

    def append(self, values: np.ndarray, stamps: np.ndarray) -> None:
        k = len(stamps)
        if k >= self.capacity:
            values, stamps, k = values[-self.capacity:], stamps[-self.capacity:], self.capacity
        at = self.n % self.capacity
        first = min(k, self.capacity - at)
        self.stamps[at:at + first] = stamps[:first]
        self.values[at:at + first] = values[:first]
        if first < k:
            self.stamps[:k - first] = stamps[first:]
            self.values[:k - first] = values[first:]
        self.n += k

    def latest(self, count: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """The newest samples in time order (copies)."""
        have = min(self.n, self.capacity)
        count = have if count is None else min(count, have)
        end = self.n % self.capacity
        idx = (np.arange(end - count, end)) % self.capacity
        return self.stamps[idx], self.values[idx]


@dataclass
class Signal:
    stream_id: str
    type: str
    labels: list[str]      # of the kept channels
    units: list[str]
    srate: float
    ring: Ring
    columns: list[int]     # kept channels' positions in the stream's samples


@dataclass
class _Inlet:
    stream_id: str
    inlet: pylsl.StreamInlet
    kind: str              # "status", "signal", "pulses"
    signal: Signal | None = None
    buf: np.ndarray | None = None


@dataclass
class DiskState:
    free_bytes: int = 0
    take_bytes: int = 0
    take_dir: Path | None = None
    rate_bytes_s: float = 0.0  # how fast the take folder grows
    history: deque = field(default_factory=lambda: deque(maxlen=8))


class LiveFeed:
    """Pulls the rig's streams for display. `wanted` maps LSL source_id to stream_id (the rig's
    expected streams); only status streams, displayed signals and the trigger pulses are opened."""

    def __init__(self, wanted: dict[str, str], sessions_dir: Path) -> None:
        self.wanted = wanted
        self.sessions_dir = Path(sessions_dir)
        self._lock = threading.Lock()
        self._inlets: dict[str, _Inlet] = {}
        self._ignored: set[str] = set()
        self.offsets: dict[str, float] = {}  # stream id -> its LSL clock offset (s), from the recorder's status
        self.slowest_round_s = 0.0           # diagnostics: the longest pass over all inlets
        self._rates: dict[str, deque] = {}  # device -> its last statuses' rates, for a steadier average
        self.statuses: dict[str, tuple[dict[str, Any], float]] = {}  # device -> (status, received on local_clock)
        self.signals: dict[str, Signal] = {}
        self.pulses: deque[float] = deque(maxlen=200)  # rise times of the trigger box's pulses
        self.disk = DiskState()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="console-feed", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        """Stop pulling and close every inlet (before the rig stops: no reconnect attempts to log)."""
        self._stop.set()
        self._thread.join(3)
        for s in self._inlets.values():
            s.inlet.close_stream()
        self._inlets.clear()

    # -- what the GUI reads -------------------------------------------------------------------------
    def status_snapshot(self) -> dict[str, tuple[dict[str, Any], float]]:
        with self._lock:
            return dict(self.statuses)

    def signal_list(self) -> list[tuple[str, str, list[str]]]:
        """(stream id, type, channel labels) of every displayed signal, by stream id."""
        with self._lock:
            return sorted((sid, sig.type, list(sig.labels)) for sid, sig in self.signals.items())

    def signal_snapshot(self, stream_id: str, seconds: float) -> tuple[np.ndarray, np.ndarray] | None:
        with self._lock:
            sig = self.signals.get(stream_id)
            if sig is None:
                return None
            count = int(seconds * sig.srate) if sig.srate > 0 else None
            return sig.ring.latest(count)

    def pulse_snapshot(self) -> list[float]:
        with self._lock:
            return list(self.pulses)

    def watch_take(self, take_dir: Path | None) -> None:
        """Measure this take folder's size (None: no take recording)."""
        with self._lock:
            self.disk.take_dir = take_dir
            self.disk.take_bytes = 0
            self.disk.rate_bytes_s = 0.0
            self.disk.history.clear()

    def disk_snapshot(self) -> DiskState:
        with self._lock:
            d = self.disk
            return DiskState(d.free_bytes, d.take_bytes, d.take_dir, d.rate_bytes_s)

    # -- the thread ---------------------------------------------------------------------------------
    def _run(self) -> None:
        resolver = pylsl.ContinuousResolver(forget_after=5.0)
        next_resolve = next_disk = 0.0
        while not self._stop.is_set():
            now = time.monotonic()
            if now >= next_resolve:
                next_resolve = now + 1.0
                self._open_new(resolver)
            if now >= next_disk:
                next_disk = now + DISK_INTERVAL_S
                self._measure_disk()
            for s in list(self._inlets.values()):
                try:
                    self._pull(s)
                except Exception as exc:  # a vanished outlet: keep the others going
                    log.debug("%s: pull failed: %s", s.stream_id, exc)
            self.slowest_round_s = max(self.slowest_round_s, time.monotonic() - now)
            self._stop.wait(PULL_INTERVAL_S)

    def _open_new(self, resolver: pylsl.ContinuousResolver) -> None:
        for info in resolver.results():
            sid = self.wanted.get(info.source_id())
            if sid is None or sid in self._inlets or sid in self._ignored:
                continue
            if info.type() not in (STATUS_TYPE, "Markers", *SIGNAL_TYPES):
                self._ignored.add(sid)  # not shown (frame indices, clock queries, accelerations)
                continue
            try:
                entry = self._entry(sid, info)
            except Exception as exc:  # the outlet went away meanwhile: try again next round
                log.info("%s: not opened yet: %s", sid, exc)
                continue
            if entry is None:
                self._ignored.add(sid)
            else:
                self._inlets[sid] = entry

    def _entry(self, sid: str, info: pylsl.StreamInfo) -> _Inlet | None:
        # No proc_clocksync: its first pull waits for a clock measurement, and the recorder measures
        # every stream's offset anyway (recorder_status); the feed adds those.
        if info.type() == STATUS_TYPE:
            return _Inlet(sid, pylsl.StreamInlet(info, max_buflen=5), "status")
        full = pylsl.StreamInlet(info, max_buflen=5)
        meta = stream_meta(sid, full.info(timeout=5.0))  # the full description: channel labels
        labels, units, types = meta.labels, meta.units, meta.types
        if info.type() == "Markers" and labels == [PULSE_LABEL]:
            return _Inlet(sid, full, "pulses")
        if info.type() not in SIGNAL_TYPES:
            return None
        seconds, keep = SIGNAL_TYPES[info.type()]
        cols = [i for i, t in enumerate(types) if t in keep]
        srate = info.nominal_srate()
        capacity = int(seconds * srate) if srate > 0 else int(seconds)  # irregular: about one value a second
        sig = Signal(sid, info.type(), [labels[i] for i in cols], [units[i] for i in cols], srate,
                     Ring(len(cols), max(capacity, 16)), cols)
        with self._lock:
            self.signals[sid] = sig
        buf = np.zeros((max(64, int(srate)), info.channel_count()), np.float32) if srate > 0 else None
        return _Inlet(sid, full, "signal", sig, buf)

    def _pull(self, s: _Inlet) -> None:
        if s.kind == "signal":
            assert s.signal is not None
            while True:
                if s.buf is not None:
                    values, stamps = s.inlet.pull_chunk(0.0, len(s.buf), dest_obj=s.buf, as_numpy=True)
                else:
                    values, stamps = s.inlet.pull_chunk(0.0, 256, as_numpy=True)
                n = len(stamps)
                if n == 0:
                    return
                kept = np.asarray(values)[:n, s.signal.columns]
                with self._lock:
                    s.signal.ring.append(kept, np.asarray(stamps) + self.offsets.get(s.stream_id, 0.0))
                if s.buf is None or n < len(s.buf):
                    return
        values, stamps = s.inlet.pull_chunk(0.0, 64)
        if not stamps:
            return
        received = pylsl.local_clock()
        with self._lock:
            for (text,), stamp in zip(values, stamps, strict=True):
                if s.kind == "pulses":
                    self.pulses.append(stamp + self.offsets.get(s.stream_id, 0.0))
                    continue
                try:
                    status = json.loads(text)
                except ValueError:
                    continue
                device = status.get("device", s.stream_id)
                if device == "recorder":
                    self.offsets.update({sid: e["offset_ms"] / 1e3 for sid, e in status.get("streams", {}).items()
                                         if "offset_ms" in e})
                status["rates"] = self._average_rates(device, status.get("rates", {}))
                self.statuses[device] = (status, received)

    def _average_rates(self, device: str, rates: dict[str, dict[str, float]]) -> dict[str, dict[str, float]]:
        """Each stream's measured rate over the last RATE_WINDOW statuses: a device that delivers in
        batches (a chest strap's ECG frames) alternates between about half and one and a half of its
        rate from one second to the next."""
        history = self._rates.setdefault(device, deque(maxlen=RATE_WINDOW))
        history.append(rates)
        out = {}
        for key, r in rates.items():
            seen = [h[key]["measured"] for h in history if key in h and h[key].get("measured") is not None]
            out[key] = {**r, "measured": round(sum(seen) / len(seen), 3) if seen else r.get("measured")}
        return out

    def _measure_disk(self) -> None:
        try:
            free = shutil.disk_usage(self.sessions_dir if self.sessions_dir.exists() else Path.cwd()).free
        except OSError:
            free = 0
        with self._lock:
            take_dir = self.disk.take_dir
        size = 0
        if take_dir is not None:
            try:
                size = sum(p.stat().st_size for p in take_dir.iterdir() if p.is_file())
            except OSError:  # a file appearing or vanishing meanwhile: the next round counts it
                size = self.disk.take_bytes
        with self._lock:
            d = self.disk
            d.free_bytes = free
            if d.take_dir is take_dir and take_dir is not None:
                d.take_bytes = size
                d.history.append((time.monotonic(), size))
                if len(d.history) >= 2:
                    (t0, b0), (t1, b1) = d.history[0], d.history[-1]
                    d.rate_bytes_s = max(0.0, (b1 - b0) / max(t1 - t0, 1e-3))
