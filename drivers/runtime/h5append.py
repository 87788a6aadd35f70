"""Appending to chunked, resizable HDF5 datasets cheaply, and flushing them on a schedule.

Shared by the take writer (acquisition) and the camera frame store: both are SWMR writers that add
blocks of rows. The low-level calls (set_extent + hyperslab write) cost about half of
`ds.resize(); ds[a:b] = x` per append (MEASUREMENTS.md).
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
from collections.abc import Iterator

import h5py
import numpy as np

log = logging.getLogger(__name__)

CHUNK_BYTES = 512 * 1024


def create_appendable(group: h5py.Group, name: str, dtype: np.dtype | type, row_shape: tuple[int, ...] = (),
                      chunk_bytes: int = CHUNK_BYTES) -> h5py.Dataset:
    """An empty dataset of shape (0, *row_shape) that grows along its first axis."""
    dtype = np.dtype(dtype)
    row_bytes = max(1, dtype.itemsize * int(np.prod(row_shape, dtype=np.int64)))
    chunk_rows = max(1, chunk_bytes // row_bytes)
    return group.create_dataset(
        name,
        shape=(0, *row_shape),
        maxshape=(None, *row_shape),
        dtype=dtype,
        chunks=(chunk_rows, *row_shape),
    )


class Appender:
    """Appends blocks of rows to one dataset; keeps the row count so no metadata read is needed."""

    def __init__(self, ds: h5py.Dataset) -> None:
        self.ds = ds
        self.dtype = ds.dtype
        self.row_shape = tuple(ds.shape[1:])
        self.n = int(ds.shape[0])

    def append(self, rows: np.ndarray) -> None:
        rows = np.ascontiguousarray(rows, dtype=self.dtype)
        k = int(rows.shape[0])
        if k == 0:
            return
        if tuple(rows.shape[1:]) != self.row_shape:
            raise ValueError(f"{self.ds.name}: rows of shape {rows.shape[1:]}, expected {self.row_shape}")
        new_n = self.n + k
        dsid = self.ds.id
        dsid.set_extent((new_n, *self.row_shape))
        fspace = dsid.get_space()
        fspace.select_hyperslab((self.n,) + (0,) * len(self.row_shape), (k, *self.row_shape))
        mspace = h5py.h5s.create_simple(rows.shape)
        try:
            dsid.write(mspace, fspace, rows)
        except Exception:
            with contextlib.suppress(Exception):  # a failed write must not leave rows of fill values
                dsid.set_extent((self.n, *self.row_shape))
            raise
        self.n = new_n


def fsync_file(f: h5py.File) -> None:
    """flush() hands data to the OS; this also forces it to the disk (a power cut then loses little)."""
    f.flush()
    handle = f.id.get_vfd_handle()
    os.fsync(handle if isinstance(handle, int) else int(handle))


class FlushSchedule:
    """Flush at least every `flush_s` and fsync every `fsync_s` (monotonic clock, not data time)."""

    def __init__(self, flush_s: float = 0.5, fsync_s: float = 5.0) -> None:
        self.flush_s = flush_s
        self.fsync_s = fsync_s
        now = time.monotonic()
        self._last_flush = now
        self._last_fsync = now
        self.flushes = 0
        self.fsyncs = 0

    def due(self) -> bool:
        return time.monotonic() - self._last_flush >= self.flush_s

    def run(self, f: h5py.File, force: bool = False) -> None:
        now = time.monotonic()
        if force or now - self._last_fsync >= self.fsync_s:
            fsync_file(f)
            self._last_fsync = now
            self.fsyncs += 1
        else:
            f.flush()
        self._last_flush = now
        self.flushes += 1


def open_readable(path: str | os.PathLike) -> tuple[h5py.File, bool]:
    """Open a file for reading; one whose SWMR writer died only opens with swmr=True.
    Returns (file, whether it needed swmr=True)."""
    try:
        return h5py.File(path, "r"), False
    except OSError:
        return h5py.File(path, "r", swmr=True), True


def open_swmr_writer(path: str | os.PathLike) -> h5py.File:
    """Create a new file for SWMR writing; refuses to overwrite an existing one."""
    return h5py.File(path, "x", libver="latest")


class ByteRecords:
    """Variable-length records without HDF5 vlen types (SWMR forbids them): one uint8 dataset holding
    all records back to back plus an int64 dataset of end offsets, written after the bytes so a
    reader never sees an end whose bytes are missing. Camera frames and string samples both use it.

    `ends` may have extra row dimensions (a string stream with C channels has ends of shape (N, C));
    records fill the ends row by row.
    """

    def __init__(self, data: h5py.Dataset, ends: h5py.Dataset) -> None:
        self.data = Appender(data)
        self.ends = Appender(ends)
        self.total = self.data.n

    def append(self, records: list[bytes]) -> None:
        if not records:
            return
        lengths = np.fromiter((len(r) for r in records), dtype=np.int64, count=len(records))
        ends = self.total + np.cumsum(lengths)
        self.data.append(np.frombuffer(b"".join(records), dtype=np.uint8))
        self.ends.append(ends.reshape((-1, *self.ends.row_shape)))
        self.total = int(ends[-1])


@contextlib.contextmanager
def reopened_after_swmr(f: h5py.File, schedule: FlushSchedule) -> Iterator[h5py.File]:
    """Flush and fsync a SWMR writer, close it, and reopen the file normally: SWMR forbids the
    end-of-recording edits (attributes, shrinking datasets)."""
    path = f.filename
    schedule.run(f, force=True)
    f.close()
    with _open_for_edit(path) as reopened:
        yield reopened


def _open_for_edit(path: str, wait_s: float = 2.0) -> h5py.File:
    """Open a closed recording for its end-of-recording edits. A viewer that has it open (read-only,
    SWMR) holds a file lock: wait a moment for it, then edit without the lock, because a finished
    recording must not stay unfinished for a viewer (we are the only writer)."""
    deadline = time.monotonic() + wait_s
    while True:
        try:
            return h5py.File(path, "r+")
        except OSError as exc:
            if "lock" not in str(exc).lower():
                raise
            if time.monotonic() >= deadline:
                log.warning("%s is open in another program: finishing it without the HDF5 file lock", path)
                return h5py.File(path, "r+", locking=False)
            time.sleep(0.1)


def trim_after(stamps: h5py.Dataset, stop: float, rows: tuple[h5py.Dataset, ...] = (),
               records: tuple[h5py.Dataset, h5py.Dataset] | None = None) -> int:
    """Drop the rows stamped after `stop` (written before the stop time was known) from the stamps and
    the datasets that go with them, row for row; return the rows kept."""
    n = rows_until(stamps, stop)
    for ds in rows:
        truncate_rows(ds, n)
    if records is not None:
        truncate_records(*records, n)
    truncate_rows(stamps, n)
    return n


def truncate_rows(ds: h5py.Dataset, n: int) -> None:
    """Shrink a dataset to its first n rows (in a file opened normally, not in SWMR mode)."""
    if ds.shape[0] > n:
        ds.resize(n, axis=0)


def truncate_records(data: h5py.Dataset, ends: h5py.Dataset, n_rows: int) -> None:
    """Keep the first n_rows rows of a ByteRecords pair, and exactly their bytes."""
    truncate_rows(ends, n_rows)
    last = int(np.asarray(ends[n_rows - 1]).reshape(-1)[-1]) if n_rows else 0
    truncate_rows(data, last)


def rows_until(stamps: h5py.Dataset, stop: float) -> int:
    """How many leading rows have a time stamp <= stop (stamps are non-decreasing)."""
    return int(np.searchsorted(stamps[()], stop, side="right"))


def read_records(data: h5py.Dataset, ends: h5py.Dataset, start: int = 0, stop: int | None = None) -> list[bytes]:
    """Records start..stop (flat order) of a ByteRecords pair."""
    flat_ends = np.asarray(ends[()]).reshape(-1)
    stop = len(flat_ends) if stop is None else stop
    if stop <= start:
        return []
    first = 0 if start == 0 else int(flat_ends[start - 1])
    blob = data[first : int(flat_ends[stop - 1])].tobytes()
    out = []
    prev = first
    for end in flat_ends[start:stop]:
        out.append(blob[prev - first : int(end) - first])
        prev = int(end)
    return out
