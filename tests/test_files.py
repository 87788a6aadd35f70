"""HDF5 building blocks: appends, byte records, frame files, and what survives a SIGKILL."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time

import h5py
import numpy as np
import pytest

from acquisition.takefile import StreamMeta, TakeWriter, stream_strings
from drivers.camera.framestore import FrameFile, FrameStore
from drivers.runtime.h5append import Appender, ByteRecords, create_appendable, read_records, truncate_records

ATTRS = {"camera_id": "camX", "role": "cinema", "codec": "jpeg", "width": 4, "height": 2, "nominal_fps": 60.0,
         "source": "test"}


def fake_jpeg(k: int) -> bytes:
    return b"\xff\xd8" + k.to_bytes(4, "little") * (1 + k % 7) + b"\xff\xd9"


def test_byte_records_round_trip_and_truncate(tmp_path):
    with h5py.File(tmp_path / "r.h5", "w", libver="latest") as f:
        rec = ByteRecords(create_appendable(f, "b", np.uint8), create_appendable(f, "e", np.int64, (2,)))
        values = [b"a", b"", b"hello", "é".encode(), b"x" * 1000, b"z"]
        rec.append(values[:2])
        rec.append(values[2:])
        assert read_records(f["b"], f["e"]) == values
        assert f["e"].shape == (3, 2)
        assert read_records(f["b"], f["e"], 2, 4) == values[2:4]
        truncate_records(f["b"], f["e"], 2)
        assert read_records(f["b"], f["e"]) == values[:4] and f["b"].shape == (5 + len("é".encode()) + 1,)


def test_appender_checks_row_shape(tmp_path):
    with h5py.File(tmp_path / "a.h5", "w") as f:
        app = Appender(create_appendable(f, "x", np.float32, (3,)))
        app.append(np.ones((4, 3)))
        with pytest.raises(ValueError, match=r"/x: rows of shape \(2,\), expected \(3,\)"):
            app.append(np.ones((1, 2)))
        assert f["x"].shape == (4, 3)


def test_frame_store_round_trip_and_stop_truncation(tmp_path):
    path = tmp_path / "camX.h5"
    store = FrameStore(path, ATTRS)
    for k in range(10):
        store.append(fake_jpeg(k), 100.0 + k / 60, k if k < 5 else k + 2)  # two frames dropped after 4
    summary = store.close(stopped_lsl=100.0 + 8.5 / 60)
    assert summary == {"frames": 9, "dropped": 2}
    with FrameFile(path) as ff:
        assert len(ff) == 9
        assert ff.frames() == [fake_jpeg(k) for k in range(9)]
        np.testing.assert_array_equal(ff.frame_index, [0, 1, 2, 3, 4, 7, 8, 9, 10])
        assert ff.attrs["dropped_frames"] == 2 and ff.dropped() == 2
    with pytest.raises(FileExistsError):
        FrameStore(path, ATTRS)  # never overwrite
    with pytest.raises(ValueError, match="frame file attributes missing: codec"):
        FrameStore(tmp_path / "other.h5", {k: v for k, v in ATTRS.items() if k != "codec"})


WRITER = textwrap.dedent("""
    import sys, time
    sys.path.insert(0, {root!r})
    from tests.test_files import ATTRS, fake_jpeg
    from drivers.camera.framestore import FrameStore
    store = FrameStore(sys.argv[1], ATTRS, flush_s=10)
    k = 0
    while True:
        for _ in range(7):
            store.append(fake_jpeg(k), float(k), k)
            k += 1
        store.flush()
        print(k, flush=True)
        time.sleep(0.01)
""")


def test_sigkilled_frame_writer_leaves_a_readable_file(tmp_path):
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    path = tmp_path / "killed.h5"
    proc = subprocess.Popen([sys.executable, "-c", WRITER.format(root=root), str(path)], stdout=subprocess.PIPE,
                            text=True)
    flushed = 0
    for line in proc.stdout:
        flushed = int(line)
        if flushed >= 140:
            break
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    with FrameFile(path, swmr=True) as ff:
        n = len(ff)
        assert n >= flushed
        assert ff.frames() == [fake_jpeg(k) for k in range(n)]
        np.testing.assert_array_equal(ff.frame_index, np.arange(n))


STALLED_WRITER = textwrap.dedent("""
    import sys, time
    sys.path.insert(0, {root!r})
    from tests.test_files import ATTRS, fake_jpeg
    from drivers.camera.framestore import FrameStore
    store = FrameStore(sys.argv[1], ATTRS, flush_s=0.5)
    for k in range(5):
        store.append(fake_jpeg(k), float(k), k)
    print("queued", flush=True)
    time.sleep(600)  # the camera stalls: no more frames, no more appends
""")


def test_frames_reach_the_disk_while_the_camera_stalls(tmp_path):
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    path = tmp_path / "stalled.h5"
    proc = subprocess.Popen([sys.executable, "-c", STALLED_WRITER.format(root=root), str(path)],
                            stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "queued"
    time.sleep(1.5)  # the writer thread flushes every 0.5 s without being asked
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    with FrameFile(path, swmr=True) as ff:
        assert ff.frames() == [fake_jpeg(k) for k in range(5)]


def test_take_writer_strings_and_window_truncation(tmp_path):
    meta = StreamMeta("m", "markers", "Markers", "src", "host", 0.0, "string", 2, "<info/>", ["a", "b"],
                      ["", ""], ["Marker", "Marker"])
    num = StreamMeta("x", "x", "EMG", "src2", "host", 100.0, "int16", 1, "<info/>", ["x"], ["uV"], ["EMG"])
    w = TakeWriter(tmp_path / "take.h5", {"session": "s"}, [meta, num], {})
    w.append("m", np.array([[b"one", b"1"], [b"two", b"2"], [b"three", b"3"]], dtype=object),
             np.array([1.0, 2.0, 3.0]))
    w.append("x", np.arange(10, dtype=np.int16)[:, None], np.arange(10) / 100)
    counts = w.close({"stopped_lsl": 2.5}, keep_until={"m": 2.5, "x": 0.045})
    assert counts == {"m": 2, "x": 5}
    with h5py.File(tmp_path / "take.h5", "r") as f:
        assert stream_strings(f["streams/m"]) == [["one", "1"], ["two", "2"]]
        np.testing.assert_array_equal(f["streams/x/time_series"][:, 0], np.arange(5))
        assert f["streams/x"].attrs["sample_count"] == 5 and f.attrs["stopped_lsl"] == 2.5
    with pytest.raises(FileExistsError):
        TakeWriter(tmp_path / "take.h5", {}, [], {})
