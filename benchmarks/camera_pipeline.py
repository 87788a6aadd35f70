"""Camera pipeline benchmark.

1. Frames per second per core of the driver's storage path (frame time, frame file, frame-index
   stream) for MJPEG pass-through (parts read from an HTTP MJPEG stream, stored as sent) and for
   sources that need encoding (JPEG quality 90), at 1920x1080 and 1280x720, through the camera
   driver's own take(). CPU is this process's (all threads, the frame writer included); the HTTP server
   feeding it is another process.
2. Five cameras recording together through the supervisor (4 cinema 1920x1080 at 60 fps through the
   simulated capture cards, the phone 1280x720 at 30 fps over HTTP MJPEG): dropped frames, CPU per
   camera driver, write MB/s, and frame-time error against the simulated truth after dejitter (stamps)
   and before (arrival times, from a camera run in this process). The simulated cards and phone serve
   a pool of pre-rendered frames: their JPEG encoders are not on this machine's CPU in a real lab.

    .venv/bin/python benchmarks/camera_pipeline.py [--seconds 60] [--only throughput|rig]
"""

from __future__ import annotations

import argparse
import multiprocessing
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

import numpy as np
from _common import cpu_seconds, emit

SIZES = {"1080p": (1920, 1080), "720p": (1280, 720)}


def scene_frames(width: int, height: int, n: int = 30) -> list[np.ndarray]:
    from drivers.sim.lab import SimLabSettings
    from drivers.sim.scene import Scene, lab_cameras, sensor_noise

    scene, cam = Scene(SimLabSettings()), lab_cameras()["cam1"].scaled(width, height)
    # sensor noise: flat synthetic regions compress far better than camera images (JPEG size drives the
    # pass-through cost); with it a 1080p q90 JPEG is about 0.3 MB, as cameras send
    return [np.clip(scene.render(cam, k / 60, 1 / 120, k) + sensor_noise((height, width, 3), k), 0, 255)
            .astype(np.uint8) for k in range(n)]


def storage_driver(out_dir: str, name: str, width: int, height: int):  # noqa: ANN201 - a CameraDriver
    """A camera driver with its outlets and a take file open, fed frame by frame through take(): the
    storage path of drivers/camera/driver.py, without a source (and without the preview)."""
    from drivers.camera.driver import CameraDriver, CameraSettings
    from drivers.runtime.driver import DriverContext

    driver = CameraDriver(DriverContext(name, "camera", rig_name="bench",
                                        settings=CameraSettings(width=width, height=height, fps=60, preview=False)))
    driver.make_outlets()
    driver.recorder.start(str(Path(out_dir) / f"{name}.h5"), 0.0)
    return driver


def finish(driver) -> dict:  # noqa: ANN001
    driver.close()  # stores the frames still waiting to be placed
    return driver.recorder.stop(float("inf"), timeout=0.1)


def serve_parts(jpegs: list[bytes], port: multiprocessing.Queue) -> None:
    """A child process: an MJPEG server that sends parts as fast as the reader takes them (its CPU is
    not the driver's)."""
    from drivers.camera.mjpeg import part_bytes

    parts = [part_bytes(j, "bench") for j in jpegs]

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

        def do_GET(self) -> None:  # noqa: N802
            self.send_response(200)
            self.send_header("Content-Type", "multipart/x-mixed-replace;boundary=bench")
            self.end_headers()
            try:
                k = 0
                while True:
                    self.wfile.write(parts[k % len(parts)])
                    k += 1
            except OSError:
                return

    server = HTTPServer(("127.0.0.1", 0), Handler)
    port.put(server.server_address[1])
    server.serve_forever()


def throughput(seconds: float) -> dict:
    """CPU is this process's own (all its threads: the frame writer, LSL), the server is another."""
    import cv2
    import pylsl

    from drivers.camera.mjpeg import MjpegReader
    from drivers.camera.sources import Frame

    out: dict = {}
    for name, (w, h) in SIZES.items():
        images = scene_frames(w, h)
        jpegs = [cv2.imencode(".jpg", im, [cv2.IMWRITE_JPEG_QUALITY, 90])[1].tobytes() for im in images]
        with tempfile.TemporaryDirectory() as tmp:
            # pass-through: parse the HTTP MJPEG stream, keep the bytes
            port: multiprocessing.Queue = multiprocessing.Queue()
            server = multiprocessing.Process(target=serve_parts, args=(jpegs, port), daemon=True)
            server.start()
            reader = MjpegReader(f"http://127.0.0.1:{port.get(timeout=10)}/video")
            reader.open()
            driver = storage_driver(tmp, f"pass{name}", w, h)
            n, c0, end = 0, time.process_time(), time.monotonic() + seconds
            while time.monotonic() < end:
                body, _, arrival = reader.read_part()
                driver.take(Frame(body, arrival, counter=n))
                n += 1
            summary = finish(driver)
            cpu = time.process_time() - c0
            reader.close()
            server.terminate()
            mb = sum(len(j) for j in jpegs) / len(jpegs) / 2**20
            out[f"passthrough_{name}"] = {"fps_per_core": round(n / cpu, 1), "frames": n,
                                          "stored": summary["frames"], "jpeg_mb": round(mb, 3)}
            # encode: a decoded source (RTSP, file, YUYV device) encoded once
            driver = storage_driver(tmp, f"enc{name}", w, h)
            n, c0, end = 0, time.process_time(), time.monotonic() + seconds
            while time.monotonic() < end:
                driver.take(Frame(images[n % len(images)], pylsl.local_clock(), counter=n))
                n += 1
            summary = finish(driver)
            cpu = time.process_time() - c0
            out[f"encode_{name}"] = {"fps_per_core": round(n / cpu, 1), "frames": n, "stored": summary["frames"]}
    return out


def arrival_jitter(seconds: float) -> dict:
    """One simulated cinema camera (1080p60 card) and the phone (720p30 over HTTP) in this process:
    arrival times and stamps against the truth."""
    from drivers.camera.driver import CameraDriver, CameraSettings
    from drivers.runtime.driver import DriverContext, run_driver
    from drivers.sim.camera import CameraEmulatorSettings
    from drivers.sim.lab import DeviceTruth, SimLabSettings
    from drivers.sim.phone import PhoneEmulator, PhoneSettings

    sim = SimLabSettings()
    phone_truth = DeviceTruth(latency_s=0.15, jitter_s=0.01, drift_ppm=50.0)
    phone = PhoneEmulator(PhoneSettings(width=1280, height=720, fps=30, frame_pool=30, truth=phone_truth), sim).start()
    setups = {
        "cam1 (card, 1080p60)": CameraSettings(source="sim:cam1", width=1920, height=1080, fps=60, preview=False,
                                               emulator=CameraEmulatorSettings(frame_pool=60)),
        "phone (HTTP MJPEG, 720p30)": CameraSettings(role="phone", source=f"{phone.base_url}/video", width=1280,
                                                     height=720, fps=30, preview=False),
    }
    out: dict = {}
    try:
        for name, settings in setups.items():
            driver = CameraDriver(DriverContext("bench", "camera", rig_name="bench", settings=settings, sim=sim))
            seen: list[tuple[float, int, float]] = []
            add = driver.clock.add

            def recording_add(arrival, counter=None, device_time=None, fit_time=None, payload=None, _add=add,
                              _seen=seen):  # noqa: ANN001
                placed = _add(arrival, counter, device_time, fit_time, payload)
                _seen.extend((ft.arrival, ft.index, ft.stamp) for ft, _ in placed)
                return placed

            driver.clock.add = recording_add
            stop = threading.Event()
            thread = threading.Thread(target=run_driver, args=(driver, stop), daemon=True)
            thread.start()
            time.sleep(seconds)
            stop.set()
            thread.join(20)
            arrival, index, stamp = (np.array(x) for x in zip(*seen, strict=True))
            if driver.card is not None:
                clock, latency = driver.card.clock, driver.card.s.truth.latency_s
                first = 0
            else:  # the phone's frame numbers continue from the phone's start: align on the first frame
                clock, latency = phone.clock, phone_truth.latency_s
                first = phone.sent[0]
            true = clock.true_time(index + first) + latency
            settled = slice(len(index) // 5, None)  # after the fit's first seconds
            a_err, s_err = arrival[settled] - true[settled], stamp[settled] - true[settled]
            out[name] = {"frames": int(len(index)), "dropped": int(np.sum(np.diff(index) - 1)),
                         "arrival_rms_ms": round(1000 * float(np.std(a_err)), 3),
                         "stamp_rms_ms": round(1000 * float(np.std(s_err)), 3),
                         "stamp_p99_ms": round(1000 * float(np.percentile(np.abs(s_err - np.median(s_err)), 99)), 3)}
    finally:
        phone.stop()
    return out


def five_cameras(seconds: float) -> dict:
    import json

    import h5py

    from acquisition.config import TakeInfo, parse_rig
    from acquisition.rig import RigController
    from drivers.camera.framestore import FrameFile

    cams = [{"kind": "camera", "id": f"cam{i}", "connection": "emulator",
             "settings": {"role": "cinema", "fps": 60, "width": 1920, "height": 1080, "preview": True,
                          "emulator": {"frame_pool": 60}}} for i in range(1, 5)]
    cams.append({"kind": "camera", "id": "phone", "connection": "emulator",
                 "settings": {"role": "phone", "fps": 30, "width": 1280, "height": 720,
                              "emulator": {"frame_pool": 30, "jpeg_quality": 85,
                                           "truth": {"latency_s": 0.15, "jitter_s": 0.01, "drift_ppm": 50.0}}}})
    rig = parse_rig({"name": "bench5", "lsl": {"scope": "machine", "session_id": "flexcap-bench"},
                     "recorder": {"min_free_disk_mb": 300, "reserve_disk_mb": 100},
                     "sim": {}, "devices": cams}, "camera benchmark rig")
    with tempfile.TemporaryDirectory() as tmp, RigController(rig, tmp) as ctl:
        missing = ctl.start()
        pids = {c: ctl.supervisor.children[c].pid for c in ctl.supervisor.camera_ids()}
        time.sleep(3.0)
        active = ctl.start_take(TakeInfo(subject="B01", action="bench", repetition=1))
        c0 = {c: cpu_seconds(p) for c, p in pids.items()}
        t0 = time.monotonic()
        time.sleep(seconds)
        cpu = {c: (cpu_seconds(p) - c0[c]) / (time.monotonic() - t0) for c, p in pids.items()}
        result = ctl.stop_take()
        truth = json.loads((active.path / "truth.json").read_text())["devices"]
        duration = result.stopped_lsl - result.started_lsl
        cams_out: dict = {}
        total_bytes = 0
        for cam in pids:
            with FrameFile(active.path / f"{cam}.h5") as ff:
                index, stamps = ff.frame_index, ff.time_stamps
                nbytes = int(ff.f["frame_ends"][-1]) if len(ff) else 0
            total_bytes += nbytes
            tr = truth[cam]
            fps = tr["nominal_rate"]
            true = tr["t0"] + index / tr["true_rate"] + tr["latency_s"]
            err = stamps - true
            err -= np.median(err)
            cams_out[cam] = {
                "frames": int(len(index)), "expected": round(duration * fps),
                "dropped": int(np.sum(np.diff(index) - 1)),
                "cpu_percent": round(100 * cpu[cam], 1), "mb_per_s": round(nbytes / 2**20 / duration, 2),
                "stamp_error_rms_ms": round(1000 * float(np.sqrt(np.mean(err**2))), 3),
                "stamp_error_p99_ms": round(1000 * float(np.percentile(np.abs(err), 99)), 3),
            }
        with h5py.File(active.path / "take.h5", "r") as f:
            take_mb = (active.path / "take.h5").stat().st_size / 2**20
            assert f.attrs["format"] == "flexcap.take"
    return {"duration_s": round(duration, 2), "missing_streams": missing, "problems": result.problems,
            "write_mb_per_s": round(total_bytes / 2**20 / duration + take_mb / duration, 2), "cameras": cams_out}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=60.0, help="five-camera recording length")
    ap.add_argument("--throughput-seconds", type=float, default=5.0)
    ap.add_argument("--only", choices=["throughput", "rig"])
    args = ap.parse_args()
    result: dict = {}
    table = [["measure", "value"]]
    if args.only in (None, "throughput"):
        result["throughput"] = throughput(args.throughput_seconds)
        for k, v in result["throughput"].items():
            table.append([f"{k} fps/core", f"{v['fps_per_core']:.0f}"])
    if args.only in (None, "rig"):
        result["arrival_vs_stamps"] = arrival_jitter(min(args.seconds, 30.0))
        for cam, v in result["arrival_vs_stamps"].items():
            table.append([f"{cam} jitter arrival / stamp rms ms",
                          f"{v['arrival_rms_ms']:.3f} / {v['stamp_rms_ms']:.3f}"])
        result["five_cameras"] = five_cameras(args.seconds)
        five = result["five_cameras"]
        for cam, v in five["cameras"].items():
            table.append([f"{cam} dropped / cpu % / MB/s / err rms ms",
                          f"{v['dropped']} / {v['cpu_percent']} / {v['mb_per_s']} / {v['stamp_error_rms_ms']}"])
        table.append(["write MB/s (all files)", f"{five['write_mb_per_s']}"])
    emit("camera_pipeline", result, table)


if __name__ == "__main__":
    main()
