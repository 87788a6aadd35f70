"""Per-take frame recording inside a camera driver: the supervisor asks for a take window
[start, stop] on the LSL clock; frames are kept in a short pre-roll so that frames captured just
before the request but stamped after `start` are not lost, and stop waits for the first frame past
`stop` so that no tail is dropped."""

from __future__ import annotations

import collections
import logging
import threading
from typing import Any

from drivers.camera.framestore import FrameStore

log = logging.getLogger(__name__)


class TakeFrameRecorder:
    def __init__(self, attrs: dict[str, Any], preroll_frames: int = 240) -> None:
        self.attrs = attrs
        self._preroll: collections.deque[tuple[bytes, float, int]] = collections.deque(maxlen=preroll_frames)
        self._lock = threading.Lock()
        self._store: FrameStore | None = None
        self._start = 0.0
        self._stop: float | None = None
        self._done = threading.Event()
        self._summary: dict[str, Any] = {}
        self._late_start: str | None = None

    @property
    def recording(self) -> bool:
        return self._store is not None

    def offer(self, frame: bytes, stamp: float, index: int) -> None:
        """Called by the capture loop for every frame, recording or not."""
        with self._lock:
            self._preroll.append((frame, stamp, index))
            store = self._store
            if store is None:
                return
            if self._stop is not None and stamp > self._stop:
                self._finish()
            elif stamp >= self._start:
                store.append(frame, stamp, index)

    def start(self, path: str, start_lsl: float) -> dict[str, Any]:
        with self._lock:
            if self._store is not None:
                raise RuntimeError(f"already recording to {self._store.path}")
            store = FrameStore(path, self.attrs)
            self._late_start = None
            if self._preroll and self._preroll[0][1] > start_lsl and len(self._preroll) == self._preroll.maxlen:
                self._late_start = (f"{path}: the take started {self._preroll[0][1] - start_lsl:.2f} s before the "
                                    "oldest frame kept for it: its first frames are missing")
            for frame, stamp, index in self._preroll:
                if stamp >= start_lsl:
                    store.append(frame, stamp, index)
            store.flush()
            self._store = store
            self._start = start_lsl
            self._stop = None
            self._done.clear()
            return {"path": path, "preroll_frames": store.count}

    def stop(self, stop_lsl: float, timeout: float = 3.0) -> dict[str, Any]:
        """Keep writing until a frame past stop_lsl arrives (or timeout), then close the file."""
        with self._lock:
            if self._store is None:
                raise RuntimeError("not recording")
            self._stop = stop_lsl
            if self._preroll and self._preroll[-1][1] > stop_lsl:  # the tail is already here
                self._finish()
        drained = self._done.wait(timeout)
        with self._lock:
            if self._store is not None:  # the camera stalled: close with what arrived
                self._finish()
            return {**self._summary, "drained": drained}

    def _finish(self) -> None:
        """Close the take's file. Never raises (it runs on the capture thread): a failure is reported."""
        store = self._store
        assert store is not None
        self._store = None
        problems = [store.error] if store.error else []
        try:
            summary = store.close(self._stop)
        except Exception as exc:
            problems.append(f"{store.path}: closing the frame file failed ({type(exc).__name__}: {exc}); "
                            "it holds the frames flushed before, without its end-of-take attributes")
            log.error("%s", problems[-1])
            summary = {"frames": store.count, "dropped": None}
        if store.lost:
            problems.append(f"{store.path}: {store.lost} frames were not stored")
        if self._late_start:
            problems.append(self._late_start)
        self._summary = {"path": str(store.path), **summary, "problems": problems}
        self._done.set()

    def abort(self) -> None:
        """Driver shutdown mid-take: close the file with everything written so far."""
        with self._lock:
            if self._store is not None:
                self._finish()
