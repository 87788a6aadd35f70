"""take.h5, format version 1 (docs/take-format.md): the writer used by the recorder, and small readers.

Layout:
  attrs: format, format_version, session, take, subject, action, repetition, started_at, started_lsl,
         stopped_lsl (after the take), host, flexcap_version, rig (JSON)
  /streams/<stream_id>/ time_series (N, C) | string_bytes + string_ends (N, C), time_stamps (N,),
                        clock_offsets (M, 2); attrs name, type, source_id, hostname, nominal_srate,
                        channel_format, info_xml, channel_labels/units/types (JSON)
  /cameras/<camera_id>  external link to <camera_id>.h5
  /markers/events       flexcap's own events (take start/stop, notes): string_bytes + string_ends (N, 1)
                        and time_stamps (N,)
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
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
from drivers.runtime.streams import CHANNEL_FORMATS

FORMAT = "flexcap.take"
FORMAT_VERSION = 1
TAKE_FILE = "take.h5"
TRUTH_FILE = "truth.json"


MIN_CHUNK = 4096
MAX_CHUNK = 1 << 20
CHUNK_SECONDS = 4.0


def chunk_for(rate: float, row_bytes: int) -> int:
    """Chunks of about CHUNK_SECONDS of data: every flush rewrites each dataset's partly filled chunk,
    so a slow stream with big chunks would rewrite hundreds of KiB twice a second for nothing."""
    return int(min(MAX_CHUNK, max(MIN_CHUNK, rate * row_bytes * CHUNK_SECONDS)))


@dataclass
class StreamMeta:
    """What the take stores about a stream, from its LSL StreamInfo."""

    stream_id: str
    name: str
    type: str
    source_id: str
    hostname: str
    nominal_srate: float
    channel_format: str
    channel_count: int
    info_xml: str
    labels: list[str]
    units: list[str]
    types: list[str]


class StreamWriter:
    def __init__(self, group: h5py.Group, meta: StreamMeta, window_offset: float = 0.0) -> None:
        self.meta = meta
        for key, value in {
            "window_offset": float(window_offset),
            "name": meta.name, "type": meta.type, "source_id": meta.source_id, "hostname": meta.hostname,
            "nominal_srate": float(meta.nominal_srate), "channel_format": meta.channel_format,
            "channel_count": int(meta.channel_count), "info_xml": meta.info_xml,
            "channel_labels": json.dumps(meta.labels), "channel_units": json.dumps(meta.units),
            "channel_types": json.dumps(meta.types),
        }.items():
            group.attrs[key] = value
        c = meta.channel_count
        dtype = CHANNEL_FORMATS[meta.channel_format]
        rate = meta.nominal_srate if meta.nominal_srate > 0 else 1.0
        if dtype is None:
            self.strings: ByteRecords | None = ByteRecords(
                create_appendable(group, "string_bytes", np.uint8, chunk_bytes=MIN_CHUNK),
                create_appendable(group, "string_ends", np.int64, (c,), chunk_bytes=chunk_for(rate, 8 * c)))
            self.series: Appender | None = None
        else:
            self.strings = None
            row = np.dtype(dtype).itemsize * c
            self.series = Appender(create_appendable(group, "time_series", dtype, (c,),
                                                     chunk_bytes=chunk_for(rate, row)))
        self.stamps = Appender(create_appendable(group, "time_stamps", np.float64, chunk_bytes=chunk_for(rate, 8)))
        self.offsets = Appender(create_appendable(group, "clock_offsets", np.float64, (2,), chunk_bytes=MIN_CHUNK))

    @property
    def count(self) -> int:
        return self.stamps.n

    def append(self, samples: np.ndarray, stamps: np.ndarray) -> None:
        if self.strings is not None:
            self.strings.append([v if isinstance(v, bytes) else str(v).encode() for v in np.ravel(samples)])
        else:
            assert self.series is not None
            self.series.append(samples)
        self.stamps.append(stamps)  # after the values: a reader trusts rows that have a time stamp


class TakeWriter:
    """The single writer of take.h5 (SWMR). Create, append, close; end attributes after a reopen."""

    def __init__(self, path: str | os.PathLike, attrs: dict[str, Any], streams: list[StreamMeta],
                 cameras: dict[str, str], flush_s: float = 0.5, fsync_s: float = 5.0,
                 window_offsets: dict[str, float] | None = None) -> None:
        self.path = Path(path)
        self.f = open_swmr_writer(self.path)
        self.f.attrs["format"] = FORMAT
        self.f.attrs["format_version"] = FORMAT_VERSION
        for key, value in attrs.items():
            self.f.attrs[key] = json.dumps(value) if isinstance(value, dict | list) else value
        groups = self.f.create_group("streams")
        offsets = window_offsets or {}
        self.streams = {m.stream_id: StreamWriter(groups.create_group(m.stream_id), m, offsets.get(m.stream_id, 0.0))
                        for m in streams}
        cams = self.f.create_group("cameras")
        for camera_id, filename in cameras.items():
            cams[camera_id] = h5py.ExternalLink(filename, "/")
        events = self.f.create_group("markers").create_group("events")
        self.events = ByteRecords(create_appendable(events, "string_bytes", np.uint8, chunk_bytes=MIN_CHUNK),
                                  create_appendable(events, "string_ends", np.int64, (1,), chunk_bytes=MIN_CHUNK))
        self.event_stamps = Appender(create_appendable(events, "time_stamps", np.float64, chunk_bytes=MIN_CHUNK))
        self.f.create_group("sync")
        self.f.swmr_mode = True
        self.schedule = FlushSchedule(flush_s, fsync_s)
        self.closed = False

    def append(self, stream_id: str, samples: np.ndarray, stamps: np.ndarray) -> None:
        self.streams[stream_id].append(samples, stamps)

    def add_clock_offset(self, stream_id: str, collected_at: float, offset: float) -> None:
        self.streams[stream_id].offsets.append(np.array([[collected_at, offset]]))

    def add_event(self, stamp: float, text: str) -> None:
        self.events.append([text.encode()])
        self.event_stamps.append(np.array([stamp]))

    def maybe_flush(self) -> None:
        if self.schedule.due():
            self.schedule.run(self.f)

    def abandon(self) -> None:
        """Close without the end-of-take step (after a failure): the file keeps what was flushed."""
        try:
            self.f.close()
        except Exception:  # the HDF5 file may already be unusable; SWMR readers still get the flushed part
            pass
        self.closed = True

    def close(self, final_attrs: dict[str, Any], keep_until: dict[str, float] | None = None) -> dict[str, int]:
        """Flush, fsync and close; then, in a normal (non-SWMR) open, drop samples stamped after each
        stream's stop time (`keep_until`, on that stream's clock: they were written before the stop
        time was known), write each stream's sample_count and the end-of-take attributes.
        Returns the samples kept per stream."""
        counts = {}
        self.closed = True
        with reopened_after_swmr(self.f, self.schedule) as f:
            for sid, g in f["streams"].items():
                if keep_until is not None and sid in keep_until:
                    if "time_series" in g:
                        trim_after(g["time_stamps"], keep_until[sid], rows=(g["time_series"],))
                    else:
                        trim_after(g["time_stamps"], keep_until[sid], records=(g["string_bytes"], g["string_ends"]))
                counts[sid] = int(g["time_stamps"].shape[0])
                g.attrs["sample_count"] = counts[sid]
            for key, value in final_attrs.items():
                f.attrs[key] = json.dumps(value) if isinstance(value, dict | list) else value
        return counts


# -- reading ----------------------------------------------------------------------------------------

def attr_text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def stream_strings(group: h5py.Group) -> list[list[str]]:
    """The values of a string stream (or /markers/events) as rows of str."""
    ends = group["string_ends"]
    n, c = ends.shape
    n = min(n, group["time_stamps"].shape[0])
    flat = read_records(group["string_bytes"], ends, 0, n * c)
    return [[flat[i * c + j].decode("utf-8", "replace") for j in range(c)] for i in range(n)]


def find_take_file(path: str | os.PathLike) -> Path:
    """Accept a take folder or its take.h5."""
    p = Path(path)
    if p.is_dir():
        p = p / TAKE_FILE
    if not p.is_file():
        raise FileNotFoundError(f"{path}: no take file (expected a take folder or its {TAKE_FILE})")
    return p
