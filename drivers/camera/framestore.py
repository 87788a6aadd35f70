"""The per-camera frame file (DESIGN.md): encoded frames back to back, end offsets written after
their bytes, frame times and device frame counters. SWMR, flushed on a schedule."""

from __future__ import annotations

import logging
import os
import threading
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from drivers.runtime.h5append import (
    Appender,
    ByteRecords,
    FlushSchedule,
    create_appendable,
    open_swmr_writer,
    read_records,
    reopened_after_swmr,
    trim_after,
)

log = logging.getLogger(__name__)

FRAME_ATTRS = ("camera_id", "role", "codec", "width", "height", "nominal_fps", "source")


class FrameStore:
    """Writes one camera's frames for one take. The capture thread only queues frames; a writer thread
    writes them in blocks and flushes at least every `flush_s` (fsync every `fsync_s`), so a crash loses
    at most that much and a slow disk (an fsync can take long) never holds up capture."""

    def __init__(self, path: str | os.PathLike, attrs: dict[str, Any], flush_s: float = 0.5,
                 fsync_s: float = 5.0) -> None:
        missing = [k for k in FRAME_ATTRS if k not in attrs]
        if missing:
            raise ValueError(f"frame file attributes missing: {', '.join(missing)}")
        self.path = Path(path)
        self.f = open_swmr_writer(self.path)
        for key, value in attrs.items():
            self.f.attrs[key] = value
        # per-frame datasets get small chunks: each flush rewrites every partly filled chunk
        small = max(4096, int(8 * float(attrs["nominal_fps"]) * 4))
        self.frames = ByteRecords(create_appendable(self.f, "frame_bytes", np.uint8, chunk_bytes=1024 * 1024),
                                  create_appendable(self.f, "frame_ends", np.int64, chunk_bytes=small))
        self.stamps = Appender(create_appendable(self.f, "frame_time_stamps", np.float64, chunk_bytes=small))
        self.index = Appender(create_appendable(self.f, "frame_index", np.int64, chunk_bytes=small))
        self.f.swmr_mode = True
        self.schedule = FlushSchedule(flush_s, fsync_s)
        self._pending: list[tuple[bytes, float, int]] = []
        self._queue_lock = threading.Lock()
        self._io_lock = threading.Lock()  # one writer of the file at a time (writer thread, flush, close)
        self.count = 0
        self.dropped = 0
        self.error: str | None = None
        self.failed = False
        self.lost = 0  # frames not stored because of a write error
        self.closed = False
        self._closing = threading.Event()
        self._writer = threading.Thread(target=self._write_loop, name=f"frames {self.path.name}", daemon=True)
        self._writer.start()

    def append(self, frame: bytes, stamp: float, index: int) -> None:
        with self._queue_lock:
            self._pending.append((frame, stamp, index))
            self.count += 1

    def _write_loop(self) -> None:
        while not self._closing.wait(self.schedule.flush_s):
            self.flush()

    def flush(self, force_fsync: bool = False) -> None:
        """Write the queued frames. After a write error (a full or failing disk) nothing more is written:
        a block may be half written, and readers count only the frames all four datasets hold, so the
        file stays consistent up to the last whole block; the error names how many frames were lost."""
        with self._io_lock:
            with self._queue_lock:
                pending, self._pending = self._pending, []
            if self.failed:
                self.lost += len(pending)
                return
            try:
                if pending:
                    frames, stamps, indices = zip(*pending, strict=True)
                    self.frames.append(list(frames))
                    self.index.append(np.asarray(indices, dtype=np.int64))
                    self.stamps.append(np.asarray(stamps, dtype=np.float64))  # last: it makes a frame count
                self.schedule.run(self.f, force=force_fsync)
            except Exception as exc:
                self.failed = True
                self.lost += len(pending)
                self.error = (f"{self.path}: writing frames failed ({type(exc).__name__}: {exc}); "
                              "no frame after it is stored")
                log.error("%s", self.error)

    def close(self, stopped_lsl: float | None = None) -> dict[str, int]:
        """Write what is pending and close; then, in a normal (non-SWMR) open, drop frames stamped after
        `stopped_lsl` (written before the stop time was known) and add the end-of-take attributes."""
        if not self.closed:
            self._closing.set()
            self._writer.join()
            self.flush()  # the pending frames; reopened_after_swmr flushes and fsyncs the file
            with reopened_after_swmr(self.f, self.schedule) as f:
                if stopped_lsl is not None:
                    trim_after(f["frame_time_stamps"], stopped_lsl, rows=(f["frame_index"],),
                               records=(f["frame_bytes"], f["frame_ends"]))
                    f.attrs["stopped_lsl"] = stopped_lsl
                self.count = int(f["frame_index"].shape[0])
                self.dropped = count_dropped(f["frame_index"][()])
                f.attrs["dropped_frames"] = self.dropped
            self.closed = True
        return {"frames": self.count, "dropped": self.dropped}


def count_dropped(frame_index: np.ndarray) -> int:
    """Frames missing according to the device counter (jumps in frame_index)."""
    return int(np.sum(np.maximum(np.diff(frame_index) - 1, 0))) if len(frame_index) > 1 else 0


class FrameFile:
    """Reads a frame file (also while it is being written, with swmr=True)."""

    def __init__(self, path: str | os.PathLike, swmr: bool = False) -> None:
        self.f = h5py.File(path, "r", swmr=swmr)

    def __enter__(self) -> FrameFile:
        return self

    def __exit__(self, *exc: object) -> None:
        self.f.close()

    def __len__(self) -> int:
        # frame_ends is written after the bytes and before the stamps: count what all three hold
        return int(min(self.f["frame_ends"].shape[0], self.f["frame_time_stamps"].shape[0],
                       self.f["frame_index"].shape[0]))

    @property
    def attrs(self) -> h5py.AttributeManager:
        return self.f.attrs

    def frame(self, k: int) -> bytes:
        return read_records(self.f["frame_bytes"], self.f["frame_ends"], k, k + 1)[0]

    def frames(self, start: int = 0, stop: int | None = None) -> list[bytes]:
        return read_records(self.f["frame_bytes"], self.f["frame_ends"], start, len(self) if stop is None else stop)

    @property
    def time_stamps(self) -> np.ndarray:
        return self.f["frame_time_stamps"][: len(self)]

    @property
    def frame_index(self) -> np.ndarray:
        return self.f["frame_index"][: len(self)]

    def dropped(self) -> int:
        return count_dropped(self.frame_index)
