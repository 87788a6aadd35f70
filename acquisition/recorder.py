"""The recorder: the single writer of take.h5, in its own process.

It keeps an inlet open on every stream of the rig between takes (a new LSL inlet only receives
samples pushed after it connects, so opening inlets at start would lose the take's first moments),
pulls every stream in blocks into preallocated numpy buffers a few times a second, keeps a short
pre-roll, and while a take runs appends the samples inside the take window [started_lsl,
stopped_lsl] to take.h5. At stop it drains every stream up to the stop time before closing.
"""

from __future__ import annotations

import collections
import json
import logging
import queue
import shutil
import socket
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pylsl

from acquisition.config import RecorderSettings
from acquisition.sync.live import LiveSync, time_correction_ex
from acquisition.takefile import StreamMeta, TakeWriter
from drivers.runtime.driver import DriverContext, status_spec
from drivers.runtime.streams import CHANNEL_FORMATS, FORMAT_NAMES, make_stream_info

log = logging.getLogger(__name__)

PREROLL_S = 3.0
MB = 1024 * 1024
RECORDER_ID = "recorder"
STATUS_INTERVAL_S = 1.0


def recorder_status_spec(rig_name: str):  # noqa: ANN201 - a StreamSpec
    """The recorder's own status stream: clock offsets, round trips and device latencies, once a second."""
    return status_spec(DriverContext(RECORDER_ID, "recorder", rig_name=rig_name))


class RecorderError(RuntimeError):
    pass


def stream_meta(stream_id: str, info: pylsl.StreamInfo) -> StreamMeta:
    labels, units, types = [], [], []
    ch = info.desc().child("channels").child("channel")
    while not ch.empty():
        labels.append(ch.child_value("label"))
        units.append(ch.child_value("unit"))
        types.append(ch.child_value("type"))
        ch = ch.next_sibling("channel")
    n = info.channel_count()
    pad = max(0, n - len(labels))
    return StreamMeta(
        stream_id=stream_id, name=info.name(), type=info.type(), source_id=info.source_id(),
        hostname=info.hostname(), nominal_srate=info.nominal_srate(),
        channel_format=FORMAT_NAMES[info.channel_format()], channel_count=n, info_xml=info.as_xml(),
        labels=labels[:n] + [""] * pad, units=units[:n] + [""] * pad, types=types[:n] + [""] * pad,
    )


@dataclass
class InletState:
    stream_id: str
    source_id: str
    inlet: pylsl.StreamInlet
    meta: StreamMeta
    buf: np.ndarray | None
    offset: float = 0.0
    offset_measured_at: float | None = None
    last_stamp: float = -np.inf
    received: int = 0
    preroll: collections.deque = field(default_factory=collections.deque)

    @property
    def regular(self) -> bool:
        return self.meta.nominal_srate > 0


@dataclass
class TakeState:
    writer: TakeWriter
    start: float
    stop: float | None = None
    stop_requested_at: float = 0.0
    reason: str = "operator"
    missing: list[str] = field(default_factory=list)
    drained: dict[str, bool] = field(default_factory=dict)
    # each stream's clock offset frozen at the start: the take window [start, stop] on the recorder's
    # clock is [start - offset, stop - offset] on the stream's, for the whole take
    window_offset: dict[str, float] = field(default_factory=dict)
    done: threading.Event = field(default_factory=threading.Event)
    summary: dict[str, Any] = field(default_factory=dict)
    error: str | None = None


class Recorder:
    def __init__(self, settings: RecorderSettings | None = None,
                 emit: Callable[..., None] | None = None, rig_name: str | None = None) -> None:
        self.settings = settings or RecorderSettings()
        self.emit = emit or (lambda name, **kw: None)
        self.live = LiveSync()
        self._status_outlet = None if rig_name is None else \
            pylsl.StreamOutlet(make_stream_info(recorder_status_spec(rig_name)), chunk_size=0, max_buffered=60)
        self._next_status = 0.0
        self._wanted: dict[str, str] = {}  # source_id -> stream_id
        self._inlets: dict[str, InletState] = {}  # by stream_id
        self._lock = threading.RLock()
        self._take: TakeState | None = None
        self._offsets: queue.Queue[tuple[str, float, float]] = queue.Queue()
        self._stop = threading.Event()
        self._offsets_now = threading.Event()
        self._threads = [threading.Thread(target=self._pull_loop, name="pull", daemon=True),
                         threading.Thread(target=self._resolve_loop, name="resolve", daemon=True),
                         threading.Thread(target=self._offset_loop, name="offsets", daemon=True)]
        for t in self._threads:
            t.start()
        self.polls = 0  # diagnostics: pull rounds so far

    # -- control ----------------------------------------------------------------------------------
    def connect(self, streams: list[dict[str, str]]) -> dict[str, Any]:
        """Declare the rig's streams ({source_id, stream_id}); they are resolved in the background."""
        with self._lock:
            for s in streams:
                self._wanted[s["source_id"]] = s["stream_id"]
        return self.status()

    def wait_connected(self, timeout: float) -> list[str]:
        """Block until every declared stream has an inlet; return the stream ids still missing."""
        deadline = time.monotonic() + timeout
        while True:
            missing = self._missing()
            if not missing or time.monotonic() >= deadline:
                return missing
            time.sleep(0.05)

    def _missing(self) -> list[str]:
        with self._lock:
            return sorted(sid for src, sid in self._wanted.items() if sid not in self._inlets)

    def start(self, path: str, attrs: dict[str, Any], cameras: dict[str, str], start_lsl: float) -> dict:
        path_ = Path(path)
        free_mb = shutil.disk_usage(path_.parent).free / MB
        if free_mb < self.settings.min_free_disk_mb:
            raise RecorderError(f"only {free_mb:.0f} MB free on {path_.parent}; a take needs at least "
                                f"{self.settings.min_free_disk_mb:.0f} MB (recorder.min_free_disk_mb)")
        with self._lock:
            if self._take is not None:
                raise RecorderError(f"already recording {self._take.writer.path}")
            states = sorted(self._inlets.values(), key=lambda s: s.stream_id)
            attrs = {**attrs, "started_lsl": start_lsl, "host": socket.gethostname()}
            window_offset = {s.stream_id: s.offset for s in states}
            writer = TakeWriter(path_, attrs, [s.meta for s in states], cameras,
                                self.settings.flush_interval_s, self.settings.fsync_interval_s, window_offset)
            take = TakeState(writer=writer, start=start_lsl, missing=self._missing(), window_offset=window_offset)
            try:
                writer.add_event(start_lsl, "take_start")
                for s in states:
                    if s.offset_measured_at is not None:  # the measurement the window uses
                        writer.add_clock_offset(s.stream_id, s.offset_measured_at, s.offset)
                for s in states:
                    for samples, stamps in s.preroll:
                        self._write(take, s, samples, stamps)
                    s.preroll.clear()
                writer.maybe_flush()
            except Exception as exc:
                writer.abandon()
                raise RecorderError(f"starting {path_} failed: {type(exc).__name__}: {exc}") from exc
            self._take = take
        self._offsets_now.set()
        return {"path": str(path_), "streams": [s.stream_id for s in states], "missing": take.missing}

    def stop(self, stop_lsl: float | None = None, reason: str = "operator", timeout: float = 30.0) -> dict:
        with self._lock:
            take = self._take
            if take is None:
                raise RecorderError("not recording")
            if take.stop is None:
                take.stop = pylsl.local_clock() if stop_lsl is None else stop_lsl
                take.stop_requested_at = time.monotonic()
                take.reason = reason
        self._offsets_now.set()
        if not take.done.wait(timeout):
            with self._lock:
                if self._take is take:
                    self._take = None  # free the recorder for the next take; this file keeps what was flushed
            raise RecorderError(f"the take did not close within {timeout:g} s")
        with self._lock:
            if self._take is take:
                self._take = None
        if take.error:
            raise RecorderError(take.error)
        return take.summary

    def mark(self, text: str, stamp: float | None = None) -> dict:
        """An operator event (a repetition boundary, a note) into the take's /markers/events."""
        if not text.strip():
            raise RecorderError("an empty mark: give its text")
        at = pylsl.local_clock() if stamp is None else stamp
        with self._lock:
            take = self._take
            if take is None or take.stop is not None:
                raise RecorderError("not recording: a mark belongs to a take")
            if at < take.start:
                raise RecorderError(f"the mark's time {at:.3f} is before the take's start {take.start:.3f}")
            take.writer.add_event(at, text)
        return {"stamp": at}

    def status(self) -> dict[str, Any]:
        with self._lock:
            take = self._take
            return {
                "recording": take is not None and take.stop is None,
                "path": str(take.writer.path) if take else None,
                "missing": self._missing(),
                "streams": {s.stream_id: {"received": s.received,
                                          "recorded": take.writer.streams[s.stream_id].count
                                          if take and s.stream_id in take.writer.streams else 0,
                                          "offset": s.offset}
                            for s in self._inlets.values()},
            }

    def shutdown(self) -> None:
        with self._lock:
            take = self._take
        if take is not None and take.stop is None:
            try:
                self.stop(reason="recorder shut down")
            except RecorderError as exc:
                log.error("%s", exc)
        self._stop.set()
        for t in self._threads:
            t.join(timeout=3)

    # -- threads ----------------------------------------------------------------------------------
    def _resolve_loop(self) -> None:
        # A ContinuousResolver keeps listening; one-shot resolves miss streams when many answer at once.
        resolver: pylsl.ContinuousResolver | None = None
        while not self._stop.is_set():
            with self._lock:
                wanted = {src: sid for src, sid in self._wanted.items() if sid not in self._inlets}
            if not wanted:
                self._stop.wait(1.0)
                continue
            if resolver is None:
                resolver = pylsl.ContinuousResolver(forget_after=5.0)
            for info in resolver.results():
                sid = wanted.get(info.source_id())
                if sid is None:
                    continue
                try:
                    state = self._open_inlet(sid, info)
                except Exception as exc:  # a stream that vanished between resolve and open: retry later
                    log.warning("cannot open %s: %s", sid, exc)
                    continue
                with self._lock:
                    self._inlets[sid] = state
                wanted.pop(info.source_id())
                self._offsets_now.set()
                log.info("connected %s (%s)", sid, info.source_id())
            self._stop.wait(0.2)

    def _open_inlet(self, stream_id: str, info: pylsl.StreamInfo) -> InletState:
        inlet = pylsl.StreamInlet(info, max_buflen=360, max_chunklen=0, recover=True)
        full = inlet.info(timeout=5.0)
        inlet.open_stream(timeout=5.0)
        meta = stream_meta(stream_id, full)
        dtype = CHANNEL_FORMATS[meta.channel_format]
        buf = None
        if dtype is not None:
            rows = max(1024, int(meta.nominal_srate * self.settings.poll_interval_s * 8))
            buf = np.empty((rows, meta.channel_count), dtype=dtype)
        return InletState(stream_id, info.source_id(), inlet, meta, buf)

    def _offset_loop(self) -> None:
        # time_correction() probes for ~0.5 s per stream when its estimate is stale: ask in parallel
        with ThreadPoolExecutor(max_workers=8, thread_name_prefix="offset") as pool:
            while not self._stop.is_set():
                self._offsets_now.wait(self.settings.clock_offset_interval_s)
                self._offsets_now.clear()
                with self._lock:
                    states = list(self._inlets.values())
                list(pool.map(self._measure_offset, states))

    def _measure_offset(self, s: InletState) -> None:
        try:
            offset, rtt = time_correction_ex(s.inlet, timeout=2.0)
        except Exception as exc:  # a stream that is gone has no offset this round
            log.debug("no clock offset for %s: %s", s.stream_id, exc)
            return
        self._offsets.put((s.stream_id, pylsl.local_clock(), offset, rtt))

    def _pull_loop(self) -> None:
        last_disk_check = 0.0
        while not self._stop.is_set():
            with self._lock:
                take = self._take
                stopping = take is not None and take.stop is not None and not take.done.is_set()
            self._stop.wait(0.02 if stopping else self.settings.poll_interval_s)
            self.polls += 1
            try:
                self.publish_status()
            except Exception as exc:  # a status line must never stop the recording
                log.warning("recorder status failed: %s", exc)
            with self._lock:
                take = self._take if self._take is not None and not self._take.done.is_set() else None
                try:
                    self._drain_offsets(take)
                    for s in list(self._inlets.values()):
                        self._pull(take, s)
                    if take is None:
                        continue
                    now = time.monotonic()
                    if now - last_disk_check >= 1.0:
                        last_disk_check = now
                        self._check_disk(take)
                    if take.stop is not None and self._drained(take):
                        self._close(take)
                    else:
                        take.writer.maybe_flush()
                except Exception as exc:  # a failed write ends this take cleanly; the thread lives on
                    if take is None:
                        log.exception("pulling failed")
                    else:
                        self._fail(take, f"writing {take.writer.path} failed: {type(exc).__name__}: {exc}")

    def _drain_offsets(self, take: TakeState | None) -> None:
        while True:
            try:
                sid, t, off, rtt = self._offsets.get_nowait()
            except queue.Empty:
                return
            self.live.clock(sid, off, rtt)
            state = self._inlets.get(sid)
            if state is not None:
                state.offset = off
                state.offset_measured_at = t
            if take is not None and sid in take.writer.streams:
                take.writer.add_clock_offset(sid, t, off)

    def _pull(self, take: TakeState | None, s: InletState) -> None:
        while True:
            try:
                if s.buf is not None:
                    samples, stamps = s.inlet.pull_chunk(0.0, len(s.buf), dest_obj=s.buf, as_numpy=True)
                else:
                    samples, stamps = s.inlet.pull_chunk(0.0, 1024, as_numpy=True)
            except Exception as exc:
                log.warning("%s: pull failed: %s", s.stream_id, exc)
                return
            n = len(stamps)
            if n == 0:
                return
            s.received += n
            s.last_stamp = float(stamps[-1])
            self._watch_sync(s, samples, stamps)
            if take is None:
                self._keep_preroll(s, samples, stamps)
            else:
                self._write(take, s, samples, stamps)
            if s.buf is None or n < len(s.buf):
                return

    def _watch_sync(self, s: InletState, samples: Any, stamps: np.ndarray) -> None:
        """Feed the live latency estimate: the box's pulses, and the trigger inputs that see them."""
        if s.meta.type == "Markers" and s.meta.labels == ["pulse"] and s.meta.units == ["json"]:
            self.live.pulse_markers(samples, s.offset)
        elif "trigger" in s.meta.labels and s.buf is not None:
            self.live.trigger_level(s.stream_id, samples[:, s.meta.labels.index("trigger")], stamps, s.offset)

    def publish_status(self) -> None:
        now = pylsl.local_clock()
        if self._status_outlet is None or now < self._next_status:
            return
        self._next_status = now + STATUS_INTERVAL_S
        with self._lock:
            take = self._take
            ids = sorted(self._inlets)
        status = {"device": RECORDER_ID, "kind": "recorder", "connected": True,
                  "recording": take is not None and take.stop is None, "missing": self._missing(),
                  "streams": self.live.report(ids)}
        self._status_outlet.push_sample([json.dumps(status)], now)

    def set_latencies(self, take: str, latency_s: dict[str, float]) -> dict:
        """What the last take's alignment measured: the live latency of devices without a trigger input."""
        for sid, value in latency_s.items():
            self.live.measured[sid] = {"latency_s": value, "take": take}
        return {"known": sorted(self.live.measured)}

    @staticmethod
    def _keep_preroll(s: InletState, samples: np.ndarray, stamps: np.ndarray) -> None:
        s.preroll.append((samples.copy(), stamps.copy()))
        horizon = stamps[-1] - PREROLL_S
        while s.preroll and s.preroll[0][1][-1] < horizon:
            s.preroll.popleft()

    @staticmethod
    def _write(take: TakeState, s: InletState, samples: np.ndarray, stamps: np.ndarray) -> None:
        if s.stream_id not in take.writer.streams:
            return  # connected after the take started: not part of this take
        offset = take.window_offset[s.stream_id]
        first, last = stamps[0] + offset, stamps[-1] + offset
        if first >= take.start and (take.stop is None or last <= take.stop):
            take.writer.append(s.stream_id, samples, stamps)  # the common case: the whole block
            return
        local = stamps + offset
        keep = local >= take.start
        if take.stop is not None:
            keep &= local <= take.stop
        if keep.any():
            take.writer.append(s.stream_id, samples[keep], stamps[keep])

    def _drained(self, take: TakeState) -> bool:
        assert take.stop is not None
        waited = time.monotonic() - take.stop_requested_at
        for s in self._inlets.values():
            if s.stream_id not in take.writer.streams or take.drained.get(s.stream_id):
                continue
            if s.regular:
                if s.last_stamp + take.window_offset[s.stream_id] > take.stop:
                    take.drained[s.stream_id] = True
                elif waited < self.settings.stop_drain_timeout_s:
                    return False
            elif waited < self.settings.irregular_drain_s:
                return False
            else:
                take.drained[s.stream_id] = True
        return True

    def _check_disk(self, take: TakeState) -> None:
        free_mb = shutil.disk_usage(take.writer.path.parent).free / MB
        if take.stop is None and free_mb < self.settings.reserve_disk_mb:
            take.stop = pylsl.local_clock()
            take.stop_requested_at = time.monotonic()
            take.reason = (f"disk nearly full: {free_mb:.0f} MB free on {take.writer.path.parent} "
                           f"(reserve {self.settings.reserve_disk_mb:.0f} MB)")
            log.error("stopping the take: %s", take.reason)
            self.emit("take_stopping", reason=take.reason, stop_lsl=take.stop)

    def _close(self, take: TakeState) -> None:
        assert take.stop is not None
        take.writer.add_event(take.stop, "take_stop")
        final = {"stopped_lsl": take.stop, "stop_reason": take.reason, "missing_streams": take.missing}
        keep_until = {sid: take.stop - take.window_offset[sid] for sid in take.writer.streams}
        counts = take.writer.close(final, keep_until)
        streams = {sid: {"samples": n, "drained": bool(take.drained.get(sid))} for sid, n in counts.items()}
        take.summary = {"path": str(take.writer.path), "stopped_lsl": take.stop, "reason": take.reason,
                        "streams": streams, "missing": take.missing}
        take.done.set()
        self.emit("take_closed", **take.summary)

    def _fail(self, take: TakeState, message: str) -> None:
        log.error("%s", message)
        take.error = message
        try:
            take.writer.close({"stopped_lsl": pylsl.local_clock(), "stop_reason": message})
        except Exception as exc:  # the file keeps everything flushed before the failure
            log.error("closing after the failure also failed: %s", exc)
            take.writer.abandon()
        take.done.set()
        self.emit("take_failed", error=message)

