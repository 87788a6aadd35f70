"""Export a take as XDF 1.0, laid out as LabRecorder writes it, so XDF tools (pyxdf, MATLAB's load_xdf,
MNE, SigViewer) open flexcap recordings directly.

File layout (PROTOCOLS.md 7.4, checked against pyxdf's reader):
  magic `XDF:`, FileHeader, one StreamHeader per stream (the stream's LSL info XML as the outlet declared it),
  then Samples and ClockOffset chunks of all streams merged in time order with a Boundary chunk every
  BOUNDARY_S seconds of data, and one StreamFooter per stream at the end.
Every chunk is `varlen(length) | tag u16 | [stream id u32] | content`, where length counts tag and content.

Time stamps are written raw, as the take stores them (not /sync): XDF readers apply the clock offsets
themselves.
"""

from __future__ import annotations

import heapq
import os
import struct
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, BinaryIO
from xml.sax.saxutils import escape

import h5py
import numpy as np

from acquisition.takefile import attr_text, find_take_file
from drivers.runtime.h5append import open_readable
from drivers.runtime.streams import CHANNEL_FORMATS

TAG_FILE_HEADER = 1
TAG_STREAM_HEADER = 2
TAG_SAMPLES = 3
TAG_CLOCK_OFFSET = 4
TAG_BOUNDARY = 5
TAG_STREAM_FOOTER = 6

# the 16 bytes LabRecorder writes in every Boundary chunk; readers scan for them to resync after corruption
BOUNDARY_UUID = bytes([0x43, 0xA5, 0x46, 0xDC, 0xCB, 0xF5, 0x41, 0x0F,
                       0xB3, 0x0E, 0xD5, 0x46, 0x73, 0x83, 0xCB, 0xE4])
BOUNDARY_S = 10.0  # LabRecorder writes a boundary about every 10 s

MAX_CHUNK_SAMPLES = 4096  # samples per Samples chunk (LabRecorder: what one pull returned, a few hundred ms)
MAX_CHUNK_BYTES = 1 << 20  # and at most about this much for very wide streams

XML_DECLARATION = '<?xml version="1.0"?>'


def varlen_int(n: int) -> bytes:
    """XDF's variable-length integer: a byte count (1, 4 or 8), then the value little-endian in that many bytes."""
    if n < 0:
        raise ValueError(f"negative length {n}")
    if n < 1 << 8:
        return b"\x01" + struct.pack("<B", n)
    if n < 1 << 32:
        return b"\x04" + struct.pack("<I", n)
    return b"\x08" + struct.pack("<Q", n)


def _chunk(tag: int, content: bytes, stream_id: int | None = None) -> bytes:
    head = struct.pack("<H", tag) + (b"" if stream_id is None else struct.pack("<I", stream_id))
    return varlen_int(len(head) + len(content)) + head + content


def _fmt_float(x: float) -> str:
    """Shortest text that reads back to the same double (the footer must not lose precision)."""
    return repr(float(x))


# -- stream headers ------------------------------------------------------------------------------------

def _header_xml(attrs: h5py.AttributeManager, channel_format: str, channel_count: int) -> bytes:
    """The stream's LSL info XML, verbatim when it describes the stored data; otherwise (a hand-made or
    damaged take) repaired so that readers decode the samples as they are stored, keeping `desc`."""
    declared = attr_text(attrs.get("info_xml", ""))
    needed = {
        "name": attr_text(attrs.get("name", "")),
        "type": attr_text(attrs.get("type", "")),
        "channel_count": str(channel_count),
        "channel_format": channel_format,
        "source_id": attr_text(attrs.get("source_id", "")),
        "nominal_srate": _fmt_float(float(attrs.get("nominal_srate", 0.0))),
    }
    try:
        root: ET.Element | None = ET.fromstring(declared)
    except ET.ParseError:
        root = None
    if root is not None and root.tag == "info" and _header_matches(root, needed):
        return declared.encode("utf-8")
    if root is None or root.tag != "info":
        root = ET.Element("info")
    for position, (key, value) in enumerate(needed.items()):
        el = root.find(key)
        if el is None:
            el = ET.Element(key)
            root.insert(position, el)
            el.text = value
        elif key in ("channel_count", "channel_format", "nominal_srate") or not (el.text or "").strip():
            el.text = value
    return (XML_DECLARATION + ET.tostring(root, encoding="unicode")).encode("utf-8")


def _header_matches(root: ET.Element, needed: dict[str, str]) -> bool:
    if root.find("name") is None:
        return False
    try:
        return (int(root.findtext("channel_count", "")) == int(needed["channel_count"])
                and (root.findtext("channel_format") or "").strip() == needed["channel_format"]
                and float(root.findtext("nominal_srate", "")) == float(needed["nominal_srate"]))
    except ValueError:
        return False


# -- one stream ---------------------------------------------------------------------------------------

class _Stream:
    """What the export needs of one /streams/<id> group: sizes, formats, and block readers."""

    def __init__(self, stream_id: str, xdf_id: int, group: h5py.Group) -> None:
        self.stream_id = stream_id
        self.xdf_id = xdf_id
        self.group = group
        self.channel_format = attr_text(group.attrs.get("channel_format", ""))
        if self.channel_format not in CHANNEL_FORMATS:
            raise ValueError(f"stream {stream_id!r}: unknown channel format {self.channel_format!r}")
        self.is_string = CHANNEL_FORMATS[self.channel_format] is None
        self.stamps = group["time_stamps"]
        values = group["string_ends"] if self.is_string else group["time_series"]
        self.channel_count = int(values.shape[1])
        # values are written before their stamps: a crashed writer may leave rows without one
        self.n = int(min(self.stamps.shape[0], values.shape[0]))
        offsets = group["clock_offsets"][()] if "clock_offsets" in group else np.zeros((0, 2))
        offsets = np.asarray(offsets, dtype=np.float64).reshape(-1, 2)
        # the take stores when the recorder measured each offset (its clock); XDF, as LabRecorder writes it,
        # wants that moment on the stream's clock (time - offset): readers fit offsets against stream stamps
        self.offsets = np.stack([offsets[:, 0] - offsets[:, 1], offsets[:, 1]], axis=1)
        # sample times are on the source's clock; this puts them near the recorder's for interleaving
        self.window_offset = float(group.attrs.get("window_offset", 0.0))
        self.first = float(self.stamps[0]) if self.n else 0.0
        self.last = float(self.stamps[self.n - 1]) if self.n else 0.0

    def header(self) -> bytes:
        xml = _header_xml(self.group.attrs, self.channel_format, self.channel_count)
        return _chunk(TAG_STREAM_HEADER, xml, self.xdf_id)

    def footer(self) -> bytes:
        offsets = "".join(f"<offset><time>{_fmt_float(t)}</time><value>{_fmt_float(v)}</value></offset>"
                          for t, v in self.offsets)
        xml = (f"{XML_DECLARATION}<info><first_timestamp>{_fmt_float(self.first)}</first_timestamp>"
               f"<last_timestamp>{_fmt_float(self.last)}</last_timestamp>"
               f"<sample_count>{self.n}</sample_count>"
               f"<clock_offsets>{offsets}</clock_offsets></info>")
        return _chunk(TAG_STREAM_FOOTER, xml.encode("utf-8"), self.xdf_id)

    def block_size(self) -> int:
        if self.is_string:
            return MAX_CHUNK_SAMPLES
        row = 9 + self.channel_count * np.dtype(CHANNEL_FORMATS[self.channel_format]).itemsize
        return max(1, min(MAX_CHUNK_SAMPLES, MAX_CHUNK_BYTES // row))

    def sample_chunks(self) -> Iterator[tuple[float, bytes]]:
        """(time on the recorder's clock, Samples chunk), in the stored order."""
        step = self.block_size()
        for start in range(0, self.n, step):
            stop = min(self.n, start + step)
            stamps = np.asarray(self.stamps[start:stop], dtype="<f8")
            block = self._string_block if self.is_string else self._numeric_block
            body = block(start, stop, stamps)
            content = struct.pack("<I", self.xdf_id) + varlen_int(stop - start) + body
            yield float(stamps[0]) + self.window_offset, _chunk(TAG_SAMPLES, content)

    def _numeric_block(self, start: int, stop: int, stamps: np.ndarray) -> bytes:
        value_type = np.dtype(CHANNEL_FORMATS[self.channel_format]).newbyteorder("<")
        rows = np.dtype([("tsbytes", "u1"), ("ts", "<f8"), ("values", value_type, (self.channel_count,))])
        block = np.empty(stop - start, dtype=rows)  # packed: 1 + 8 + C * itemsize bytes per sample
        block["tsbytes"] = 8
        block["ts"] = stamps
        block["values"] = np.asarray(self.group["time_series"][start:stop]).astype(value_type, copy=False)
        return block.tobytes()

    def _string_block(self, start: int, stop: int, stamps: np.ndarray) -> bytes:
        c = self.channel_count
        ends = np.asarray(self.group["string_ends"][start:stop], dtype=np.int64).reshape(-1)
        first = int(np.asarray(self.group["string_ends"][start - 1]).reshape(-1)[-1]) if start else 0
        blob = self.group["string_bytes"][first:int(ends[-1])].tobytes() if len(ends) else b""
        bounds = (np.concatenate(([first], ends)) - first).tolist()
        parts = []
        for i in range(stop - start):
            parts.append(b"\x08" + struct.pack("<d", stamps[i]))
            for j in range(i * c, (i + 1) * c):
                value = blob[bounds[j]:bounds[j + 1]]  # stored as UTF-8 already: written byte for byte
                parts.append(varlen_int(len(value)))
                parts.append(value)
        return b"".join(parts)

    def offset_chunks(self) -> Iterator[tuple[float, bytes]]:
        """(collection time, ClockOffset chunk) per stored measurement: (time, offset) as two f64."""
        for t, v in self.offsets:  # ordered by the recorder's clock, like the samples
            yield float(t + v), _chunk(TAG_CLOCK_OFFSET, struct.pack("<dd", t, v), self.xdf_id)


# -- the file -----------------------------------------------------------------------------------------

def _file_header(started_at: str) -> bytes:
    xml = f"{XML_DECLARATION}<info><version>1.0</version><datetime>{escape(started_at)}</datetime></info>"
    return _chunk(TAG_FILE_HEADER, xml.encode("utf-8"))


def _select(group: h5py.Group | None, streams: list[str] | None) -> list[str]:
    available = list(group.keys()) if group is not None else []
    if streams is None:
        return available
    unknown = [s for s in streams if s not in available]
    if unknown:
        raise ValueError(f"unknown stream id(s) {', '.join(map(repr, unknown))}; "
                         f"the take has: {', '.join(available) or 'no streams'}")
    return list(dict.fromkeys(streams))


def _write_body(f: h5py.File, streams: list[str] | None, out: BinaryIO) -> dict[str, dict[str, int]]:
    group = f.get("streams")
    parts = [_Stream(sid, k, group[sid]) for k, sid in enumerate(_select(group, streams), start=1)]
    started_at = attr_text(f.attrs.get("started_at", datetime.now(UTC).isoformat()))
    out.write(b"XDF:")
    out.write(_file_header(started_at))
    for s in parts:
        out.write(s.header())
    sources = [s.offset_chunks() for s in parts] + [s.sample_chunks() for s in parts]
    next_boundary: float | None = None
    for t, chunk in heapq.merge(*sources, key=lambda item: item[0]):
        if next_boundary is None:
            next_boundary = t + BOUNDARY_S
        elif t >= next_boundary:
            out.write(_chunk(TAG_BOUNDARY, BOUNDARY_UUID))
            next_boundary = t + BOUNDARY_S
        out.write(chunk)
    out.write(_chunk(TAG_BOUNDARY, BOUNDARY_UUID))
    for s in parts:
        out.write(s.footer())
    return {s.stream_id: {"samples": s.n, "stream_id": s.xdf_id} for s in parts}


def write_xdf(take: str | os.PathLike, out: str | os.PathLike, streams: list[str] | None = None) -> dict[str, Any]:
    """Write the take's streams to a new XDF file `out`: all of /streams (numbered 1..n in HDF5's order,
    which is by stream id) or the listed stream ids (numbered in the order given). The file appears only
    when complete (written under a temporary name, then linked in place); an existing file is never replaced.

    Returns {"path": str, "streams": {stream_id: {"samples": n, "stream_id": xdf stream id}}}.
    """
    take_file = find_take_file(take)
    out = Path(out)
    if out.exists():
        raise FileExistsError(f"{out}: already exists; not overwriting it")
    tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")
    f, _ = open_readable(take_file)
    created = False
    with f:
        try:
            with open(tmp, "xb") as dst:
                created = True
                summary = _write_body(f, streams, dst)
                dst.flush()
                os.fsync(dst.fileno())
            _publish(tmp, out)
        except BaseException:
            if created:
                tmp.unlink(missing_ok=True)  # a failure leaves no half file
            raise
    return {"path": str(out), "streams": summary}


def _publish(tmp: Path, out: Path) -> None:
    """Move the finished file into place without ever replacing a file that appeared meanwhile."""
    try:
        os.link(tmp, out)  # fails if `out` exists, unlike rename
    except FileExistsError:
        raise FileExistsError(f"{out}: already exists; not overwriting it") from None
    except OSError:  # a file system without hard links (FAT, some network shares)
        if out.exists():
            raise FileExistsError(f"{out}: already exists; not overwriting it") from None
        os.replace(tmp, out)
        return
    tmp.unlink()
