"""XDF export: a take written with the real TakeWriter, exported, and read back with pyxdf (the reference
reader) must give back exactly what was recorded: values bit for bit, raw time stamps, clock offsets,
string markers, footers and the stream descriptions."""

from __future__ import annotations

import struct
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pylsl
import pytest
import pyxdf
from pyxdf.pyxdf import parse_xdf

from acquisition.takefile import StreamMeta, TakeWriter
from acquisition.xdf import BOUNDARY_UUID, varlen_int, write_xdf

T0 = 1234.5  # LSL clock of the take start
OFFSETS = {"emg": 0.0021, "imu": -0.0133, "raw": 0.0004, "marks": 0.0}
MARKERS = [["take_start", "a"], ["héllo wörld ✓ 日本", ""], ["", "x" * 300], ["end", "ß"]]


def make_meta(stream_id: str, name: str, kind: str, count: int, rate: float, fmt: str,
              labels: list[str], unit: str) -> StreamMeta:
    """A StreamMeta as the recorder makes it, from a real LSL StreamInfo with channel descriptions."""
    info = pylsl.StreamInfo(name, kind, count, rate, fmt, f"src-{stream_id}")
    channels = info.desc().append_child("channels")
    for label in labels:
        ch = channels.append_child("channel")
        ch.append_child_value("label", label)
        ch.append_child_value("unit", unit)
        ch.append_child_value("type", kind)
    info.desc().append_child("acquisition").append_child_value("manufacturer", "flexcap tests")
    return StreamMeta(stream_id, name, kind, f"src-{stream_id}", "testhost", rate, fmt, count, info.as_xml(),
                      labels, [unit] * count, [kind] * count)


def regular_stamps(rng: np.random.Generator, n: int, rate: float, start: float) -> np.ndarray:
    return start + np.arange(n) / rate + rng.normal(0, 2e-5, n)


def special_floats(rng: np.random.Generator, n: int, c: int) -> np.ndarray:
    """float32 values with the awkward ones (NaN, infinities, -0.0, subnormals) that must survive bit for bit."""
    v = rng.normal(0, 100, (n, c)).astype(np.float32)
    v[0] = [np.nan, np.inf, -np.inf]
    v[1] = [-0.0, np.float32(1e-45), np.finfo(np.float32).max]
    return v


@pytest.fixture
def take(tmp_path: Path) -> dict:
    """A closed take with float32 (3 ch), double64 (more samples than one chunk holds), int16 and string
    streams, each with clock offsets. Returns what went in."""
    rng = np.random.default_rng(7)
    metas = [
        make_meta("emg", "EMG ünïcode", "EMG", 3, 500.0, "float32", ["ch1", "ch2", "trig"], "microvolts"),
        make_meta("imu", "IMU", "Accelerometer", 2, 1000.0, "double64", ["x", "y"], "mG"),
        make_meta("raw", "Counter", "Raw", 1, 250.0, "int16", ["counter"], "counts"),
        make_meta("marks", "Markers", "Markers", 2, 0.0, "string", ["event", "detail"], ""),
    ]
    data = {
        "emg": (special_floats(rng, 500, 3), regular_stamps(rng, 500, 500.0, T0)),
        "imu": (rng.normal(0, 1, (10000, 2)), regular_stamps(rng, 10000, 1000.0, T0 + 0.0003)),
        "raw": (np.arange(-300, 300, dtype=np.int16)[:, None] * 100, regular_stamps(rng, 600, 250.0, T0)),
        "marks": (np.array([[s.encode() for s in row] for row in MARKERS], dtype=object),
                  np.array([T0 + 0.1, T0 + 1.0, T0 + 1.0, T0 + 2.5])),
    }
    path = tmp_path / "001_squat_1"
    path.mkdir()
    w = TakeWriter(path / "take.h5", {"started_at": "2024-05-06T07:08:09.123456+00:00", "started_lsl": T0},
                   metas, {})
    clock = {}
    for sid, (values, stamps) in data.items():
        for k in range(0, len(stamps), 128):  # in blocks, as the recorder appends
            w.append(sid, values[k:k + 128], stamps[k:k + 128])
        rows = [(T0 - 0.5 + 5.0 * i, OFFSETS[sid] + 1e-6 * i) for i in range(4)]
        for t, off in rows:
            w.add_clock_offset(sid, t, off)
        clock[sid] = rows
    w.close({"stopped_lsl": T0 + 20.0})
    return {"path": path, "metas": {m.stream_id: m for m in metas}, "data": data, "clock": clock}


def by_name(streams: list[dict]) -> dict[str, dict]:
    return {s["info"]["name"][0]: s for s in streams}


def labels_of(stream: dict) -> list[str]:
    return [ch["label"][0] for ch in stream["info"]["desc"][0]["channels"][0]["channel"]]


def assert_values_exact(stream: dict, meta: StreamMeta, values: np.ndarray) -> None:
    if meta.channel_format == "string":
        assert stream["time_series"] == [[v.decode() for v in row] for row in values]
        return
    got = stream["time_series"]
    assert got.dtype == values.dtype and got.shape == values.shape
    assert got.tobytes() == np.ascontiguousarray(values).tobytes()  # bit for bit, NaN and -0.0 included


def test_export_reads_back_exactly_with_pyxdf(take, tmp_path):
    out = tmp_path / "export" / "take.xdf"
    out.parent.mkdir()
    summary = write_xdf(take["path"], out)
    assert summary == {"path": str(out), "streams": {
        "emg": {"samples": 500, "stream_id": 1}, "imu": {"samples": 10000, "stream_id": 2},
        "marks": {"samples": 4, "stream_id": 3}, "raw": {"samples": 600, "stream_id": 4}}}  # /streams order: by name
    assert sorted(p.name for p in out.parent.iterdir()) == ["take.xdf"]  # no temporary file left

    streams, header = pyxdf.load_xdf(out, synchronize_clocks=False, dejitter_timestamps=False)
    assert header["info"]["version"] == ["1.0"]
    assert header["info"]["datetime"] == ["2024-05-06T07:08:09.123456+00:00"]
    got = by_name(streams)
    assert set(got) == {m.name for m in take["metas"].values()}
    for sid, meta in take["metas"].items():
        values, stamps = take["data"][sid]
        s = got[meta.name]
        assert s["info"]["stream_id"] == summary["streams"][sid]["stream_id"]
        assert s["info"]["type"] == [meta.type] and s["info"]["source_id"] == [meta.source_id]
        assert s["info"]["channel_format"] == [meta.channel_format]
        assert s["info"]["channel_count"] == [str(meta.channel_count)]
        assert labels_of(s) == meta.labels
        assert s["info"]["desc"][0]["acquisition"][0]["manufacturer"] == ["flexcap tests"]
        assert_values_exact(s, meta, values)
        np.testing.assert_array_equal(s["time_stamps"], stamps)  # raw, exactly as stored
        # the take stores the recorder's time of each measurement; XDF the stream's (time - offset)
        assert s["clock_times"] == [t - v for t, v in take["clock"][sid]]
        assert s["clock_values"] == [v for _, v in take["clock"][sid]]
        footer = s["footer"]["info"]
        assert footer["sample_count"] == [str(len(stamps))]
        assert float(footer["first_timestamp"][0]) == stamps[0]
        assert float(footer["last_timestamp"][0]) == stamps[-1]
        offsets = footer["clock_offsets"][0]["offset"]
        assert [(float(o["time"][0]), float(o["value"][0])) for o in offsets] == \
            [(t - v, v) for t, v in take["clock"][sid]]


def test_export_with_pyxdf_defaults_applies_clock_offsets(take, tmp_path):
    out = tmp_path / "take.xdf"
    write_xdf(take["path"] / "take.h5", out)
    got = by_name(pyxdf.load_xdf(out)[0])  # clock sync and dejittering on
    for sid, meta in take["metas"].items():
        values, stamps = take["data"][sid]
        s = got[meta.name]
        assert_values_exact(s, meta, values)
        # pyxdf fits offset(t) through the ClockOffset chunks and adds it; regular streams are also dejittered
        times, offs = zip(*[(t - v, v) for t, v in take["clock"][sid]], strict=True)
        expected = stamps + np.interp(stamps, times, offs)
        tolerance = 1e-7 if meta.nominal_srate == 0 else 2e-4
        np.testing.assert_allclose(s["time_stamps"], expected, rtol=0, atol=tolerance)
        if meta.nominal_srate:
            assert s["info"]["effective_srate"] == pytest.approx(meta.nominal_srate, rel=1e-3)


def test_chunk_layout_is_labrecorders(take, tmp_path):
    out = tmp_path / "take.xdf"
    write_xdf(take["path"], out)
    raw = out.read_bytes()
    assert raw[:4] == b"XDF:"
    chunks = parse_xdf(out)  # pyxdf's own chunk walker: every length must land on the next chunk
    tags = [c["tag"] for c in chunks]
    assert tags[0] == 1 and tags[1:5] == [2, 2, 2, 2] and tags[-4:] == [6, 6, 6, 6]
    assert set(tags[5:-4]) == {3, 4, 5}
    assert tags.count(4) == 16 and tags[-5] == 5
    assert sum(c["nbytes"] + len(varlen_int(c["nbytes"])) for c in chunks) == len(raw) - 4
    assert raw.count(BOUNDARY_UUID) == tags.count(5) >= 2  # one every 10 s of data, and one before the footers
    # the 10000-sample stream (imu, XDF id 2) is cut into chunks of at most 4096 samples
    assert [c["stream_id"] for c in chunks if c["tag"] == 3].count(2) == 3
    # chunks are interleaved in time order: the first samples of every stream come before the end of the others
    first_samples = [i for i, c in enumerate(chunks) if c["tag"] == 3]
    assert {chunks[i]["stream_id"] for i in first_samples[:4]} == {1, 2, 3, 4}


def test_subset_holds_exactly_the_listed_streams(take, tmp_path):
    out = tmp_path / "subset.xdf"
    summary = write_xdf(take["path"], out, streams=["marks", "emg"])
    assert summary["streams"] == {"marks": {"samples": 4, "stream_id": 1}, "emg": {"samples": 500, "stream_id": 2}}
    streams, _ = pyxdf.load_xdf(out, synchronize_clocks=False, dejitter_timestamps=False)
    assert [(s["info"]["stream_id"], s["info"]["name"][0]) for s in streams] == [(1, "Markers"), (2, "EMG ünïcode")]
    assert_values_exact(streams[1], take["metas"]["emg"], take["data"]["emg"][0])
    assert streams[0]["time_series"] == MARKERS


def test_unknown_stream_id_is_refused_and_leaves_no_file(take, tmp_path):
    out = tmp_path / "bad.xdf"
    with pytest.raises(ValueError, match="'nope'") as err:
        write_xdf(take["path"], out, streams=["emg", "nope"])
    assert "emg, imu, marks, raw" in str(err.value) and "'emg'" not in str(err.value)
    assert list(tmp_path.iterdir()) == [take["path"]]  # neither the output nor a temporary file


def test_existing_output_is_not_overwritten(take, tmp_path):
    out = tmp_path / "take.xdf"
    out.write_bytes(b"keep me")
    with pytest.raises(FileExistsError, match=str(out)):
        write_xdf(take["path"], out)
    assert out.read_bytes() == b"keep me"


def test_stream_without_samples_and_hand_made_header(tmp_path):
    """A stream that recorded nothing still gets a header and footer; a take whose info_xml does not
    describe the stream (hand-made, as in older tests) gets a header repaired from the attributes."""
    empty = make_meta("quiet", "Quiet", "EMG", 2, 100.0, "int32", ["a", "b"], "uV")
    bare = StreamMeta("bare", "Bare", "Misc", "src", "host", 10.0, "int64", 1, "<info/>", ["v"], [""], [""])
    w = TakeWriter(tmp_path / "take.h5", {"started_at": "2024-01-01T00:00:00+00:00"}, [empty, bare], {})
    w.append("bare", np.array([[2**62], [-(2**62)]], dtype=np.int64), np.array([5.0, 5.1]))
    w.close({})
    out = tmp_path / "t.xdf"
    assert write_xdf(tmp_path, out)["streams"] == {"bare": {"samples": 2, "stream_id": 1},
                                                     "quiet": {"samples": 0, "stream_id": 2}}
    for kwargs in ({}, {"synchronize_clocks": False, "dejitter_timestamps": False}):
        got = by_name(pyxdf.load_xdf(out, **kwargs)[0])
        assert got["Quiet"]["time_series"].shape == (0, 2) and got["Quiet"]["footer"]["info"]["sample_count"] == ["0"]
        assert labels_of(got["Quiet"]) == ["a", "b"]
        assert got["Bare"]["time_series"].tolist() == [[2**62], [-(2**62)]]
        assert got["Bare"]["info"]["channel_format"] == ["int64"]


def test_varlen_int_sizes():
    assert varlen_int(0) == b"\x01\x00" and varlen_int(255) == b"\x01\xff"
    assert varlen_int(256) == b"\x04" + struct.pack("<I", 256)
    assert varlen_int(2**32 - 1) == b"\x04\xff\xff\xff\xff"
    assert varlen_int(2**32) == b"\x08" + struct.pack("<Q", 2**32)


def test_raw_time_stamps_not_sync(take, tmp_path):
    """/sync holds corrected times; the export keeps the raw stamps (readers apply the offsets)."""
    with h5py.File(take["path"] / "take.h5", "r+") as f:
        f.create_dataset("sync/emg/time_stamps", data=take["data"]["emg"][1] + 1.0)
    out = tmp_path / "take.xdf"
    write_xdf(take["path"], out, streams=["emg"])
    (s,), _ = pyxdf.load_xdf(out, synchronize_clocks=False, dejitter_timestamps=False)
    np.testing.assert_array_equal(s["time_stamps"], take["data"]["emg"][1])


def test_failure_while_writing_leaves_no_file(take, tmp_path, monkeypatch):
    def broken_footer(self):
        raise OSError("disk went away")

    monkeypatch.setattr("acquisition.xdf._Stream.footer", broken_footer)
    with pytest.raises(OSError, match="disk went away"):
        write_xdf(take["path"], tmp_path / "take.xdf")
    assert list(tmp_path.iterdir()) == [take["path"]]


CRASHING_WRITER = """
import os, sys
import numpy as np
from acquisition.takefile import StreamMeta, TakeWriter
meta = StreamMeta("emg", "EMG", "EMG", "s", "h", 100.0, "float32", 2, sys.argv[2], ["a", "b"], ["", ""], ["", ""])
w = TakeWriter(sys.argv[1], {"started_at": "2024-01-01T00:00:00+00:00"}, [meta], {})
w.append("emg", np.arange(20, dtype=np.float32).reshape(10, 2), np.arange(10) / 100.0)
w.f.flush()
os._exit(0)  # dies like a killed recorder: no close, the file stays marked as open by a SWMR writer
"""


def test_take_of_a_crashed_recorder_exports_what_was_flushed(tmp_path):
    meta = make_meta("emg", "EMG", "EMG", 2, 100.0, "float32", ["a", "b"], "uV")
    subprocess.run([sys.executable, "-c", CRASHING_WRITER, str(tmp_path / "take.h5"), meta.info_xml],
                   check=True, cwd=Path(__file__).resolve().parents[1])
    with pytest.raises(OSError):
        h5py.File(tmp_path / "take.h5", "r").close()  # only a SWMR reader opens it
    out = tmp_path / "crashed.xdf"
    assert write_xdf(tmp_path, out)["streams"] == {"emg": {"samples": 10, "stream_id": 1}}
    (s,), _ = pyxdf.load_xdf(out, synchronize_clocks=False, dejitter_timestamps=False)
    assert s["time_series"].tobytes() == np.arange(20, dtype=np.float32).reshape(10, 2).tobytes()
    np.testing.assert_array_equal(s["time_stamps"], np.arange(10) / 100.0)
    assert labels_of(s) == ["a", "b"]
