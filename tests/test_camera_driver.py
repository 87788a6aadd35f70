"""The camera driver against real HTTP servers on localhost (the phone emulator, the Blackmagic REST
emulator) and the simulated capture card at OpenCV's capture interface: byte-identical MJPEG, exact
drop detection, stalls, bad streams, record control on the marker stream, and crash-safe frame files."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections import defaultdict
from pathlib import Path

import cv2
import numpy as np
import pylsl
import pytest

from drivers.camera.driver import CameraDriver, CameraSettings
from drivers.camera.framestore import FrameFile
from drivers.camera.mjpeg import is_complete_jpeg
from drivers.runtime.driver import DriverContext, run_driver
from drivers.sim.blackmagic import BlackmagicEmulator
from drivers.sim.camera import CameraEmulatorSettings, CaptureFaults
from drivers.sim.lab import DeviceTruth, SimLabSettings
from drivers.sim.phone import PhoneEmulator, PhoneFaults, PhoneSettings
from drivers.sim.scene import decode_barcode

ROOT = Path(__file__).resolve().parents[1]
SIM = SimLabSettings()
QUIET = DeviceTruth(latency_s=0.03, jitter_s=0.002, drift_ppm=20.0)


def phone(faults: PhoneFaults | None = None, **kw) -> PhoneEmulator:
    s = PhoneSettings(width=320, height=180, fps=30, truth=QUIET, faults=faults or PhoneFaults(), **kw)
    return PhoneEmulator(s, SIM, seed=4).start()


class Run:
    """A CameraDriver (real outlets) in a thread, keeping a copy of everything it publishes."""

    def __init__(self, device_id: str, connection: str = "", **settings) -> None:
        self.driver = CameraDriver(DriverContext(device_id, "camera", rig_name="camtest", connection=connection,
                                                 settings=CameraSettings(**settings), sim=SIM))
        self.out: dict[str, list] = defaultdict(list)
        publish = self.driver.publish

        def keep(key, samples, stamps):
            self.out[key] += [(s, t) for s, t in zip(samples, stamps, strict=True)]
            publish(key, samples, stamps)

        self.driver.publish = keep
        self.stop = threading.Event()
        self.thread = threading.Thread(target=run_driver, args=(self.driver, self.stop, 0.25), daemon=True)

    def __enter__(self) -> Run:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join(20)
        assert not self.thread.is_alive()

    def wait(self, seconds: float, until=None) -> None:  # noqa: ANN001
        end = time.monotonic() + seconds
        while time.monotonic() < end and not (until and until()):
            time.sleep(0.05)

    def statuses(self) -> list[dict]:
        return [json.loads(s[0]) for s, _ in self.out["status"]]

    def markers(self) -> list[dict]:
        return [json.loads(s[0]) for s, _ in self.out["control"]]


def phone_run(cam: PhoneEmulator, out_dir) -> Run:
    """The camera driver reading the emulated phone's MJPEG stream at 320x180, 30 fps, into out_dir."""
    return Run("phone", role="phone", fps=30, width=320, height=180, source=f"{cam.base_url}/video",
               out_dir=str(out_dir))


def test_mjpeg_stream_stored_byte_identical_with_drops_detected_exactly(tmp_path):
    cam = phone(PhoneFaults(drop_frames=[20, 21, 50, 51, 52, 53, 70]))
    try:
        first_k = cam.clock.count_arrived(pylsl.local_clock())
        with phone_run(cam, tmp_path) as run:
            run.wait(20, until=lambda: len(cam.sent) >= 100)
    finally:
        cam.stop()
    with FrameFile(tmp_path / "phone.h5") as ff:
        n = len(ff)
        assert n >= 90
        sent = np.array(cam.sent[:n])
        assert sent[0] >= first_k
        # every frame as the phone sent it, byte for byte, in order, none missing
        for i in range(n):
            assert ff.frame(i) == cam.frame(int(sent[i])), i
        np.testing.assert_array_equal(ff.frame_index, sent - sent[0])
        assert ff.attrs["dropped_frames"] == 7 == ff.dropped()
        assert (ff.attrs["width"], ff.attrs["height"], ff.attrs["role"]) == (320, 180, "phone")
        img = cv2.imdecode(np.frombuffer(ff.frame(n - 1), np.uint8), cv2.IMREAD_COLOR)
        assert decode_barcode(img) == sent[n - 1]  # the phone's own frame number, burnt in
        # stamps: dejittered, one period per index step, on the phone's true frame times plus its latency
        true = cam.clock.true_time(sent) + QUIET.latency_s
        err = ff.time_stamps - true
        assert np.std(err[30:]) < 1.5e-3
        assert abs(np.median(err[30:])) < 0.01
    # the frame-index stream carries the same indices and stamps
    idx = np.array([s[0] for s, _ in run.out["phone"]])
    np.testing.assert_array_equal(idx[:n], sent - sent[0])


def test_stream_cut_reconnects_and_the_take_shows_the_gap(tmp_path):
    cam = phone(PhoneFaults(cut_at_s=1.5))
    try:
        with phone_run(cam, tmp_path) as run:
            run.wait(20, until=lambda: cam.requests.count("/video") >= 2 and len(cam.sent) >= 90)
    finally:
        cam.stop()
    errors = [s["last_error"] for s in run.statuses() if s["last_error"]]
    assert errors and "stream" in errors[0] and cam.base_url in errors[0]
    with FrameFile(tmp_path / "phone.h5") as ff:
        index = ff.frame_index
        sent = np.array(cam.sent[: len(index)])
    jumps = np.nonzero(np.diff(index) > 1)[0]
    assert len(jumps) == 1  # the one gap: the reconnect
    j = int(jumps[0])
    # frames before and after the gap sit at their true frame numbers: the gap is a gap, not a shift
    np.testing.assert_array_equal(index, sent - sent[0])
    assert sent[j + 1] - sent[j] >= 8  # back-off 0.25 s and more


@pytest.mark.parametrize("serve, message", [("html", "answered text/html, not an MJPEG stream"),
                                            ("garbage", "not an MJPEG stream")])
def test_a_url_that_is_not_mjpeg_gets_a_clear_status(tmp_path, serve, message):
    cam = phone(PhoneFaults(serve=serve))
    try:
        with phone_run(cam, tmp_path) as run:
            run.wait(10, until=lambda: any(s["last_error"] for s in run.statuses()))
    finally:
        cam.stop()
    status = next(s for s in run.statuses() if s["last_error"])
    assert message in status["last_error"] and f"{cam.base_url}/video" in status["last_error"]
    assert not status["connected"]


def test_truncated_jpegs_are_not_stored_and_leave_a_gap(tmp_path):
    cam = phone(PhoneFaults(truncate_every=10))
    try:
        with phone_run(cam, tmp_path) as run:
            run.wait(20, until=lambda: len(cam.sent) >= 60)
    finally:
        cam.stop()
    with FrameFile(tmp_path / "phone.h5") as ff:
        assert all(is_complete_jpeg(f) for f in ff.frames())
        sent = np.array(cam.sent[: len(ff) + len(ff) // 9 + 2])
        whole = sent[(sent + 1) % 10 != 0][: len(ff)]
        np.testing.assert_array_equal(ff.frame_index, whole - whole[0])
    assert run.driver.source is None or run.driver.source.corrupt >= 4


def test_capture_card_passthrough_drops_and_truth(tmp_path):
    emulator = CameraEmulatorSettings(truth=DeviceTruth(latency_s=0.05, jitter_s=0.004, drift_ppm=30.0),
                                      faults=CaptureFaults(drop_probability=0.03, truncate_every=37))
    with Run("cam2", source="sim:cam2", fps=60, width=480, height=270, out_dir=str(tmp_path),
             emulator=emulator) as run:
        run.wait(20, until=lambda: run.driver.frames >= 240)
    card = run.driver.card
    with FrameFile(tmp_path / "cam2.h5") as ff:
        n = len(ff)
        frames = ff.frames()
        index = ff.frame_index
        stamps = ff.time_stamps
    counters = np.array([decode_barcode(cv2.imdecode(np.frombuffer(f, np.uint8), cv2.IMREAD_COLOR))
                         for f in frames])
    # the card's own frame numbers (burnt in) are the stored indices: lost and truncated frames are gaps
    np.testing.assert_array_equal(index, counters - counters[0])
    assert card.lost > 0
    assert int(np.sum(np.diff(index) - 1)) == counters[-1] - counters[0] + 1 - n > card.lost  # + truncated
    # V4L2-style capture timestamps are fitted, not arrivals: stamps within 1 ms of the truth
    true = card.clock.true_time(counters) + 0.05
    assert np.max(np.abs(stamps[60:] - true[60:])) < 1e-3
    assert run.statuses()[-1]["format"] == "480x270 MJPG 60 fps"


def test_capture_card_format_mismatch_is_reported(tmp_path):
    with Run("cam1", source="sim:cam1", fps=59, width=1000, height=500, out_dir=str(tmp_path)) as run:
        run.wait(10, until=lambda: run.driver.frames >= 10)
    status = run.statuses()[-1]
    assert status["format_problem"] == ("the device delivers size 960x540 (asked 1000x500), "
                                        "rate 60 fps (asked 59)")


def test_absent_v4l2_device_named_in_status(tmp_path):
    with Run("cam9", source="/dev/video97", out_dir=str(tmp_path)) as run:
        run.wait(5, until=lambda: any(s["last_error"] for s in run.statuses()))
    assert next(s for s in run.statuses() if s["last_error"])["last_error"] == "/dev/video97: no such device"


def test_blackmagic_record_control_on_the_marker_stream(tmp_path):
    bm = BlackmagicEmulator(fps=59.94, timecode_offset_s=3600.0)
    bm.start()
    try:
        with Run("cam3", source="sim:cam3", fps=60, width=320, height=180, control=bm.url) as run:
            run.wait(10, until=lambda: run.driver.frames >= 30 and run.driver.control_state.get("ready"))
            start = pylsl.local_clock()
            reply = run.driver.start_recording(str(tmp_path / "cam3.h5"), start, clip="2026-11-22_S01_001_squat_1")
            run.wait(1.0)
            stop = run.driver.stop_recording(pylsl.local_clock())
            run.wait(0.5)
    finally:
        bm.stop()
    assert reply["problems"] == [] and stop["problems"] == []
    puts = [(m, p, b) for m, p, b in bm.requests if m == "PUT"]
    assert puts == [("PUT", "/control/api/v1/transports/0/record",
                     {"recording": True, "clipName": "2026-11-22_S01_001_squat_1"}),
                    ("PUT", "/control/api/v1/transports/0/record", {"recording": False})]
    markers = [m for m in run.markers() if m["action"] in ("record_start", "record_stop")]
    assert [m["action"] for m in markers] == ["record_start", "record_stop"]
    assert ";" in markers[0]["timecode"]  # 59.94: drop-frame timecode
    assert all(m["request_lsl"] <= m["reply_lsl"] for m in markers)
    with FrameFile(tmp_path / "cam3.h5") as ff:
        assert 50 <= len(ff) <= 70


def test_a_full_card_is_named_before_the_take_and_the_frames_still_record(tmp_path):
    bm = BlackmagicEmulator(remaining_record_s=0)
    bm.start()
    try:
        with Run("cam4", source="sim:cam4", fps=60, width=320, height=180, control=bm.url) as run:
            run.wait(10, until=lambda: run.driver.control_state and run.driver.frames >= 10)
            before = run.driver.check_control()
            reply = run.driver.start_recording(str(tmp_path / "cam4.h5"), pylsl.local_clock(), clip="t1")
            run.wait(0.5)
            stop = run.driver.stop_recording(pylsl.local_clock())
    finally:
        bm.stop()
    assert before["ready"] is False and "card full" in before["problem"]
    assert len(reply["problems"]) == 1 and "cam4: the camera is not recording internally" in reply["problems"][0]
    assert stop["frames"] >= 20  # the capture path does not depend on the camera's own recording
    assert any(s["control"] and s["control"]["ready"] is False for s in run.statuses())


def standalone_phone_camera(cam: PhoneEmulator, camera_id: str, out: Path, frames: int) -> subprocess.Popen:
    """`flexcap driver camera` reading the phone emulator, once the phone has sent `frames` frames."""
    proc = subprocess.Popen([sys.executable, "-m", "acquisition.cli", "driver", "camera", "--source",
                             f"{cam.base_url}/video", "--id", camera_id, "--out", str(out), "--role", "phone",
                             "--fps", "30", "--width", "320", "--height", "180"],
                            cwd=ROOT, env={**os.environ, "PYTHONUNBUFFERED": "1"}, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and len(cam.sent) < frames:
        time.sleep(0.1)
    return proc


def test_standalone_camera_sigint_closes_the_file_cleanly(tmp_path):
    cam = phone()
    try:
        proc = standalone_phone_camera(cam, "phoneA", tmp_path, frames=60)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=30)
    finally:
        cam.stop()
    assert proc.returncode == 0, err
    with FrameFile(tmp_path / "phoneA.h5") as ff:  # a normal open: the file was closed cleanly
        assert len(ff) >= 50
        assert ff.attrs["camera_id"] == "phoneA"
        np.testing.assert_array_equal(ff.frame_index, np.array(cam.sent[: len(ff)]) - cam.sent[0])


def test_sigkilled_camera_writer_leaves_a_readable_file(tmp_path):
    cam = phone()
    try:
        proc = standalone_phone_camera(cam, "phoneB", tmp_path, frames=75)
        proc.kill()
        proc.communicate(timeout=10)
        sent = list(cam.sent)
    finally:
        cam.stop()
    with FrameFile(tmp_path / "phoneB.h5", swmr=True) as ff:  # as a crashed SWMR file opens
        n = len(ff)
        assert n >= len(sent) - 30  # at most the last flush (0.5 s) plus the frames in flight is lost
        assert all(is_complete_jpeg(f) for f in ff.frames())
        np.testing.assert_array_equal(ff.frame_index, np.array(sent[:n]) - sent[0])
        assert len(ff.time_stamps) == n


def test_preview_shows_the_newest_frame_small_and_off_the_storage_path(tmp_path):
    from drivers.camera.preview import PreviewReader

    with Run("cam1", source="sim:cam1", fps=60, width=960, height=540, out_dir=str(tmp_path),
             preview_width=240, preview_fps=12) as run:
        run.wait(10, until=lambda: run.driver.preview is not None and run.driver.preview.shown >= 12)
        reader = PreviewReader(run.driver.preview_path)
        got = None
        for _ in range(50):
            got = reader.read() or got
            if got is not None:
                break
            time.sleep(0.02)
        shown_before = run.driver.preview.shown
        run.wait(2.0)
        shown_in_2s = run.driver.preview.shown - shown_before
    assert got is not None
    img, stamp, index = got
    assert img.shape == (135, 240, 3) and (reader.width, reader.height) == (240, 135)
    assert 10 <= shown_in_2s <= 25  # about 12 fps (fewer when the machine is busy), never the camera's 60
    with FrameFile(tmp_path / "cam1.h5") as ff:
        # while every frame is stored (no gap in the card's frame numbers)
        assert len(ff) == run.driver.frames and ff.dropped() == 0 == run.driver.card.lost
        # the preview is a reduced decode of a stored frame: the same picture
        k = int(np.searchsorted(ff.frame_index, index))
        full = cv2.imdecode(np.frombuffer(ff.frame(k), np.uint8), cv2.IMREAD_COLOR)
        small = cv2.resize(full, (240, 135), interpolation=cv2.INTER_AREA)
        assert np.mean(np.abs(small.astype(int) - img.astype(int))) < 6
    assert not run.driver.preview_path.exists()  # removed when the driver stops


def test_video_file_source_is_encoded_once_with_its_frame_numbers(tmp_path):
    from drivers.sim.scene import Scene, encode_barcode, lab_cameras

    scene, cam = Scene(SIM), lab_cameras()["cam2"].scaled(320, 180)
    clip = tmp_path / "clip.avi"
    writer = cv2.VideoWriter(str(clip), cv2.VideoWriter.fourcc(*"MJPG"), 30.0, (320, 180))
    for k in range(45):
        img = scene.render(cam, k / 30, 1 / 60, 0)
        encode_barcode(img, 1000 + k)
        writer.write(img)
    writer.release()
    out = tmp_path / "out"
    with Run("filecam", source=f"file:{clip}", fps=30, width=320, height=180, out_dir=str(out),
             jpeg_quality=95) as run:
        run.wait(10, until=lambda: run.driver.frames >= 45)
    with FrameFile(out / "filecam.h5") as ff:
        numbers = [decode_barcode(cv2.imdecode(np.frombuffer(f, np.uint8), cv2.IMREAD_COLOR)) for f in ff.frames(0, 45)]
        assert numbers == list(range(1000, 1045))  # every frame of the file, in order
        np.testing.assert_array_equal(ff.frame_index[:45], np.arange(45))
        d = np.diff(ff.time_stamps[:45])
        assert abs(np.median(d) - 1 / 30) < 2e-3  # played at the file's rate
    status = run.statuses()[-1]
    assert status["format"].startswith("320x180") and status["format_problem"] is None


def test_capture_card_stall_is_named_and_leaves_a_gap(tmp_path):
    emulator = CameraEmulatorSettings(faults=CaptureFaults(stall_at_s=1.0, stall_for_s=30.0))
    with Run("cam4", source="sim:cam4", fps=60, width=320, height=180, out_dir=str(tmp_path),
             emulator=emulator) as run:
        run.wait(15, until=lambda: any(s["last_error"] for s in run.statuses()))
    status = next(s for s in run.statuses() if s["last_error"])
    assert status["last_error"] == "sim:cam4: no frame within the capture timeout (stalled or unplugged)"
    assert not status["connected"]
    with FrameFile(tmp_path / "cam4.h5") as ff:
        assert 50 <= len(ff) <= 62  # the frames of the first second, all kept
        np.testing.assert_array_equal(np.diff(ff.frame_index), 1)


@pytest.mark.parametrize("buffers, lost", [(4, 8), (10, 2)])
def test_capture_card_queues_buffers_like_v4l2(buffers, lost):
    from drivers.sim.capture import SimCaptureCard

    card = SimCaptureCard("cam1", CameraEmulatorSettings(truth=DeviceTruth(latency_s=0.01)), SIM, seed=1)
    card.set(cv2.CAP_PROP_FRAME_WIDTH, 320)
    card.set(cv2.CAP_PROP_CONVERT_RGB, 0)
    assert card.set(cv2.CAP_PROP_BUFFERSIZE, buffers) and card.get(cv2.CAP_PROP_BUFFERSIZE) == buffers
    ok, first = card.read()
    assert ok and first.shape[0] == 1 and is_complete_jpeg(first.tobytes())
    assert not card.set(cv2.CAP_PROP_BUFFERSIZE, 32)  # more than V4L2 in OpenCV allows: refused, unchanged
    time.sleep(12 / 60)  # the reader stalls for 12 frame periods
    counters = []
    for _ in range(14):
        ok, buf = card.read()
        counters.append(decode_barcode(cv2.imdecode(buf.reshape(-1), cv2.IMREAD_COLOR)))
    # as V4L2 does: the full buffers keep the old frames (the reader gets them, stale), new ones are dropped
    assert counters[:buffers] == list(range(1, buffers + 1))
    assert card.lost == counters[buffers] - buffers - 1 >= lost
    assert counters[buffers:] == list(range(counters[buffers], counters[buffers] + 14 - buffers))


def raw_mjpeg_server(header: bytes, body: bytes) -> tuple[str, threading.Thread]:
    """A server that answers one GET with exactly these bytes (framings real cameras use)."""
    import socket

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(1)

    def serve() -> None:
        conn, _ = sock.accept()
        conn.recv(4096)
        conn.sendall(header + body)
        conn.close()
        sock.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    return f"http://127.0.0.1:{sock.getsockname()[1]}/video", thread


def jpegs(n: int) -> list[bytes]:
    from drivers.sim.scene import Scene, lab_cameras

    scene, cam = Scene(SIM), lab_cameras()["phone"].scaled(160, 90)
    return [cv2.imencode(".jpg", scene.render(cam, k / 30, 1 / 60, k))[1].tobytes() for k in range(n)]


def chunked(data: bytes, size: int = 1000) -> bytes:
    pieces = [data[i : i + size] for i in range(0, len(data), size)]
    return b"".join(b"%x\r\n" % len(p) + p + b"\r\n" for p in pieces) + b"0\r\n\r\n"


@pytest.mark.parametrize("framing", ["chunked", "lf-no-length", "dashed-boundary", "no-dashes"])
def test_mjpeg_reader_handles_the_framings_servers_use(framing):
    from drivers.camera.mjpeg import MjpegReader

    frames = jpegs(4)
    if framing == "lf-no-length":
        parts = b"".join(b"--bnd\nContent-Type: image/jpeg\n\n" + f + b"\n" for f in frames)
        header = b"HTTP/1.0 200 OK\r\nContent-Type: multipart/x-mixed-replace; boundary=bnd\r\n\r\n"
    elif framing == "dashed-boundary":  # the parameter carries the dashes, so the lines have four
        parts = b"".join(b"----bnd\r\nContent-Type: image/jpeg\r\nContent-Length: %d\r\n\r\n" % len(f) + f + b"\r\n"
                         for f in frames)
        header = b"HTTP/1.0 200 OK\r\nContent-Type: multipart/x-mixed-replace;boundary=--bnd\r\n\r\n"
    elif framing == "no-dashes":  # servers that write the bare boundary
        parts = b"".join(b"bnd\r\nContent-Type: image/jpeg\r\n\r\n" + f + b"\r\n" for f in frames)
        header = b"HTTP/1.0 200 OK\r\nContent-Type: multipart/x-mixed-replace;boundary=\"bnd\"\r\n\r\n"
    else:
        parts = chunked(b"".join(b"--bnd\r\nContent-Type: image/jpeg\r\nContent-Length: %d\r\n\r\n" % len(f) + f
                                 + b"\r\n" for f in frames))
        header = (b"HTTP/1.1 200 OK\r\nContent-Type: multipart/x-mixed-replace;boundary=bnd\r\n"
                  b"Transfer-Encoding: chunked\r\n\r\n")
    url, thread = raw_mjpeg_server(header, parts + (b"--bnd--\r\n" if framing != "chunked" else b""))
    reader = MjpegReader(url)
    reader.open()
    got = [reader.read_part()[0] for _ in range(3)]
    reader.close()
    thread.join(5)
    assert got == frames[:3]  # byte for byte, whatever the framing


def test_a_start_that_times_out_is_still_stopped_at_the_end_of_the_take(tmp_path):
    bm = BlackmagicEmulator(reply_delay_s=2.5)  # later than the control's 2 s timeout: the camera did start
    bm.start()
    try:
        with Run("cam2", source="sim:cam2", fps=60, width=320, height=180, control=bm.url) as run:
            run.wait(10, until=lambda: run.driver.frames >= 10)
            reply = run.driver.start_recording(str(tmp_path / "cam2.h5"), pylsl.local_clock(), clip="t9")
            time.sleep(1.0)
            assert bm.recording  # it rolls, though the reply came too late
            stop = run.driver.stop_recording(pylsl.local_clock())
            time.sleep(3.0)  # the stop's reply is late too
    finally:
        recording_after = bm.recording
        bm.stop()
    assert len(reply["problems"]) == 1 and "timed out" in reply["problems"][0]
    assert ("PUT", "/control/api/v1/transports/0/record", {"recording": False}) in bm.requests
    assert not recording_after
    assert stop["frames"] > 0
