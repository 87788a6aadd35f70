"""The simulated lab's smartphone: an IP-Webcam-style HTTP server on localhost serving the phone's
view of the virtual scene (PROTOCOLS.md 6.1): `/video` (MJPEG, multipart/x-mixed-replace),
`/shot.jpg`, `/status.json`, `/startvideo?force=1&tag=NAME` and `/stopvideo?force=1` (recording on
the phone itself). Like the app, the stream carries no frame counter or timestamp.

Faults for tests: frames the phone drops, a stall (the connection stays open, nothing arrives), a
network drop (the connection is cut), an HTML page or garbage instead of the stream, truncated JPEGs.
"""

from __future__ import annotations

import json
import threading
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Literal

import cv2
import numpy as np
import pylsl
from pydantic import BaseModel, ConfigDict, Field

from drivers.camera.mjpeg import part_bytes
from drivers.sim.lab import DeviceTruth, SimClock, SimLabSettings
from drivers.sim.scene import Scene, SceneSettings, lab_cameras, sensor_noise
from drivers.sim.triggerline import PulseLine

BOUNDARY = "Ba4oTvQMY8ew04N8dcnM"  # the app uses a fixed random-looking token
SHUTTER_S = 1 / 120


class PhoneFaults(BaseModel):
    model_config = ConfigDict(extra="forbid")

    drop_frames: list[int] = Field(default_factory=list, description="frame numbers the phone never sends")
    drop_probability: float = Field(0.0, ge=0.0, lt=1.0)
    stall_at_s: float | None = Field(None, description="seconds after the stream starts: nothing is sent ...")
    stall_for_s: float = Field(3.0, gt=0, description="... for this long, the connection staying open")
    cut_at_s: float | None = Field(None, description="seconds after the stream starts: the connection is cut")
    serve: Literal["mjpeg", "html", "garbage"] = "mjpeg"
    truncate_every: int = Field(0, ge=0)


class PhoneSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    view: str = "phone"
    fps: float = Field(30.0, gt=0, le=120)
    width: int = Field(1280, gt=0)
    height: int = Field(720, gt=0)
    jpeg_quality: int = Field(85, ge=10, le=100)
    frame_pool: int = Field(0, ge=0, description="serve n pre-rendered frames in turn (load tests)")
    scene: SceneSettings = SceneSettings()
    truth: DeviceTruth = DeviceTruth(latency_s=0.15, jitter_s=0.02, drift_ppm=50.0)
    faults: PhoneFaults = PhoneFaults()


class PhoneEmulator:
    def __init__(self, settings: PhoneSettings, sim: SimLabSettings, seed: int = 0, host: str = "127.0.0.1",
                 port: int = 0, line: PulseLine | None = None) -> None:
        self.s = settings
        self.sim = sim
        cams = lab_cameras()
        if settings.view not in cams:
            raise ValueError(f"the simulated lab has no camera {settings.view!r}")
        self.camera = cams[settings.view].scaled(settings.width, settings.height)
        self.scene = Scene(sim, settings.scene, line)
        self.clock = SimClock(settings.truth, settings.fps, pylsl.local_clock())
        self.rng = np.random.default_rng(seed)
        self.recording: dict[str, Any] | None = None
        self.recordings: list[dict[str, Any]] = []
        self.requests: list[str] = []
        self.sent: list[int] = []  # frame numbers sent on /video, in order (all connections)
        self.stop_event = threading.Event()
        self._pool: list[bytes] = []
        self._lock = threading.Lock()
        self.server = ThreadingHTTPServer((host, port), self._handler())
        self.server.daemon_threads = True
        self._thread = threading.Thread(target=self.server.serve_forever, name="phone-http", daemon=True)

    @property
    def base_url(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> PhoneEmulator:
        if self.s.frame_pool:
            self._pool = [self._render(i, noise=True) for i in range(self.s.frame_pool)]
        self._thread.start()
        return self

    def stop(self) -> None:
        self.stop_event.set()
        self.server.shutdown()
        self.server.server_close()

    def frame(self, k: int) -> bytes:
        if self._pool:
            return self._pool[k % len(self._pool)]
        return self._render(k)

    def _render(self, k: int, noise: bool = False) -> bytes:
        img = self.scene.render(self.camera, float(self.clock.true_time(k)), SHUTTER_S, k)
        if noise:  # pooled load-test frames: sensor noise gives them a camera's JPEG size
            img = np.clip(img + sensor_noise(img.shape, k), 0, 255).astype(np.uint8)
        ok, buf = cv2.imencode(".jpg", img, [int(cv2.IMWRITE_JPEG_QUALITY), self.s.jpeg_quality])
        assert ok
        return buf.tobytes()

    def truth(self) -> dict[str, Any]:
        scene = self.scene.export_truth({self.s.view: self.camera})
        return self.clock.truth_record(kind="phone", view=self.s.view, camera=scene.pop("cameras")[self.s.view],
                                       scene=scene, frame_size=[self.s.width, self.s.height],
                                       exposure_s=SHUTTER_S, recordings=self.recordings,
                                       frame_time="frame k (the barcode) is captured at t0 + k / true_rate")

    # -- HTTP ----------------------------------------------------------------------------------------
    def _handler(self) -> type[BaseHTTPRequestHandler]:
        phone = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def do_GET(self) -> None:  # noqa: N802 - http.server's name
                url = urllib.parse.urlsplit(self.path)
                query = dict(urllib.parse.parse_qsl(url.query))
                with phone._lock:
                    phone.requests.append(self.path)
                if url.path == "/video":
                    phone._serve_video(self)
                elif url.path == "/shot.jpg":
                    k = phone.clock.count_arrived(pylsl.local_clock()) - 1
                    self._reply(200, "image/jpeg", phone.frame(max(k, 0)))
                elif url.path == "/status.json":
                    self._json(phone._status(show_avail=query.get("show_avail") == "1"))
                elif url.path == "/startvideo":
                    phone._start_video(query.get("tag", ""))
                    self._reply(200, "text/plain", b"Ok")
                elif url.path == "/stopvideo":
                    phone._stop_video()
                    self._reply(200, "text/plain", b"Ok")
                else:
                    self._reply(404, "text/plain", b"Not found")

            def _json(self, obj: Any) -> None:
                self._reply(200, "application/json", json.dumps(obj).encode())

            def _reply(self, code: int, ctype: str, body: bytes) -> None:
                self.send_response(code)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        return Handler

    def _status(self, show_avail: bool) -> dict[str, Any]:
        status: dict[str, Any] = {
            "curvals": {"video_size": f"{self.s.width}x{self.s.height}", "quality": str(self.s.jpeg_quality),
                        "fps_limit": f"{self.s.fps:g}", "orientation": "landscape", "ffc": "off"},
            "video_status": {"mode": "recording" if self.recording else "none"},
        }
        if show_avail:
            status["avail"] = {"video_size": [f"{self.s.width}x{self.s.height}", "640x480"],
                               "quality": [str(q) for q in range(10, 101, 10)]}
        return status

    def _start_video(self, tag: str) -> None:
        with self._lock:
            if self.recording is None:  # force=1: a second start while recording is not an error
                self.recording = {"tag": tag, "start_lsl": pylsl.local_clock()}

    def _stop_video(self) -> None:
        with self._lock:
            if self.recording is not None:
                self.recording["stop_lsl"] = pylsl.local_clock()
                self.recordings.append(self.recording)
                self.recording = None

    def _serve_video(self, h: BaseHTTPRequestHandler) -> None:
        f = self.s.faults
        if f.serve == "html":
            body = b"<html><body><h1>IP Webcam</h1><p>Open /video for the stream</p></body></html>"
            h.send_response(200)
            h.send_header("Content-Type", "text/html")
            h.send_header("Content-Length", str(len(body)))
            h.end_headers()
            h.wfile.write(body)
            return
        h.send_response(200)
        h.send_header("Content-Type", f"multipart/x-mixed-replace;boundary={BOUNDARY}")
        h.send_header("Cache-Control", "no-cache")
        h.send_header("Connection", "close")
        h.end_headers()
        started = pylsl.local_clock()
        k = self.clock.count_arrived(started)  # the first frame completed after the request
        try:
            while not self.stop_event.is_set():
                ready = float(self.clock.true_time(k)) + self.s.truth.latency_s
                if self.s.truth.jitter_s > 0:
                    ready += float(self.rng.exponential(self.s.truth.jitter_s))
                if f.stall_at_s is not None and 0 <= ready - started - f.stall_at_s < f.stall_for_s:
                    stall_end = started + f.stall_at_s + f.stall_for_s
                    k = self.clock.count_arrived(stall_end)  # nothing is sent meanwhile; those frames are lost
                    continue
                if f.cut_at_s is not None and ready >= started + f.cut_at_s:
                    h.connection.shutdown(2)  # the network drops: the socket dies mid-stream
                    return
                delay = ready - pylsl.local_clock()
                if delay > 0 and self.stop_event.wait(delay):
                    return
                if k in f.drop_frames or (f.drop_probability and self.rng.random() < f.drop_probability):
                    k += 1
                    continue
                if f.serve == "garbage":
                    h.wfile.write(bytes(self.rng.integers(0, 256, 4096, dtype=np.uint8)))
                    k += 1
                    continue
                jpeg = self.frame(k)
                if f.truncate_every and (k + 1) % f.truncate_every == 0:
                    jpeg = jpeg[: len(jpeg) // 2]
                h.wfile.write(part_bytes(jpeg, BOUNDARY))
                h.wfile.flush()
                with self._lock:
                    self.sent.append(k)
                k += 1
        except (BrokenPipeError, ConnectionResetError, OSError):
            return  # the client went away
