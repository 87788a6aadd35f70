"""The simulated lab's capture card: one cinema camera's view of the virtual scene, behind the same
interface the real card is read through (cv2.VideoCapture on the V4L2 backend). This is the seam
for V4L2 hardware, which cannot exist here.

Honest to the V4L2 backend where the driver relies on it:
- format negotiation snaps a request to the nearest mode the card offers; get() reports the result;
- with MJPG and CAP_PROP_CONVERT_RGB = 0, read() returns the JPEG buffer as a 1 x N uint8 array
  (the card's hardware encoder made it), otherwise a decoded BGR image;
- CAP_PROP_POS_MSEC is the buffer's capture timestamp on CLOCK_MONOTONIC (the clock of
  pylsl.local_clock), taken when the card finished receiving the frame;
- the kernel queues a few buffers (CAP_PROP_BUFFERSIZE, 4 by default): when a slow reader leaves
  them all full, newly captured frames are dropped and the reader gets the stale ones first;
- read() blocks until the next frame and fails after the capture timeout when the card stalls.
"""

from __future__ import annotations

import collections
import threading
from typing import Any

import cv2
import numpy as np
import pylsl

from drivers.sim.camera import CameraEmulatorSettings
from drivers.sim.lab import SimClock, SimLabSettings
from drivers.sim.scene import Scene, lab_cameras, sensor_noise
from drivers.sim.triggerline import PulseLine

CARD_MODES = ((1920, 1080), (1280, 720), (960, 540), (640, 360), (480, 270), (320, 180))
CARD_RATES = (24.0, 25.0, 30.0, 50.0, 60.0)
DEFAULT_BUFFERS = 4  # OpenCV's V4L2 backend queues 4 buffers unless CAP_PROP_BUFFERSIZE asks otherwise
MAX_BUFFERS = 10  # OpenCV's V4L2 backend refuses more ("Bad buffer size") and keeps what it had
CAPTURE_TIMEOUT_S = 2.0  # the V4L2 backend gives up a read after a timeout (10 s by default; shorter here)
SHUTTER_ANGLE = 180.0
TIMESTAMP_JITTER_S = 30e-6


def nearest(value: float, options: tuple) -> Any:
    return min(options, key=lambda o: abs(o - value))


class SimCaptureCard:
    """cv2.VideoCapture's interface over the simulated scene (constructed as factory(target, api))."""

    def __init__(self, view: str, settings: CameraEmulatorSettings, sim: SimLabSettings, seed: int,
                 stop: threading.Event | None = None, line: PulseLine | None = None) -> None:
        cams = lab_cameras()
        if view not in cams:
            raise ValueError(f"sim:{view}: the simulated lab has no camera {view!r} (it has {', '.join(cams)})")
        self.view = view
        self.s = settings
        self.sim = sim
        self.camera = cams[view]
        self.scene = Scene(sim, settings.scene, line)
        self.rng = np.random.default_rng(seed)
        self.stop = stop or threading.Event()
        self.size = CARD_MODES[0]
        self.fps = 60.0
        self.fourcc = "MJPG"
        self.convert_rgb = True
        self.buffers = DEFAULT_BUFFERS
        self.opened = True
        self.clock: SimClock | None = None  # starts with the first read (the signal locks)
        self.capture_k = 0  # the next frame the card will capture
        self.queue: collections.deque[int] = collections.deque()  # frames in filled buffers, oldest first
        self.lost = 0
        self.delivered = 0
        self.last_timestamp_ms = 0.0
        self._pool: list[bytes] = []
        self._view_model = None

    # -- cv2.VideoCapture interface ------------------------------------------------------------------
    def isOpened(self) -> bool:  # noqa: N802 - OpenCV's name
        return self.opened

    def release(self) -> None:
        self.opened = False

    def set(self, prop: int, value: float) -> bool:
        if self.clock is not None:
            return False  # V4L2 refuses a format change while streaming
        if prop == cv2.CAP_PROP_FRAME_WIDTH:
            self.size = min(CARD_MODES, key=lambda m: (abs(m[0] - value), abs(m[1] - self.size[1])))
        elif prop == cv2.CAP_PROP_FRAME_HEIGHT:
            same_width = [m for m in CARD_MODES if m[0] == self.size[0]] or list(CARD_MODES)
            self.size = min(same_width, key=lambda m: abs(m[1] - value))
        elif prop == cv2.CAP_PROP_FPS:
            self.fps = nearest(value, CARD_RATES)
        elif prop == cv2.CAP_PROP_FOURCC:
            code = int(value)
            text = "".join(chr((code >> (8 * i)) & 0xFF) for i in range(4))
            self.fourcc = text if text in ("MJPG", "YUYV") else self.fourcc
        elif prop == cv2.CAP_PROP_CONVERT_RGB:
            self.convert_rgb = bool(value)
        elif prop == cv2.CAP_PROP_BUFFERSIZE:
            if not 1 <= int(value) <= MAX_BUFFERS:
                return False
            self.buffers = int(value)
        else:
            return False
        return True

    def get(self, prop: int) -> float:
        if prop == cv2.CAP_PROP_FRAME_WIDTH:
            return float(self.size[0])
        if prop == cv2.CAP_PROP_FRAME_HEIGHT:
            return float(self.size[1])
        if prop == cv2.CAP_PROP_FPS:
            return float(self.fps)
        if prop == cv2.CAP_PROP_FOURCC:
            return float(cv2.VideoWriter.fourcc(*self.fourcc))
        if prop == cv2.CAP_PROP_POS_MSEC:
            return self.last_timestamp_ms
        if prop == cv2.CAP_PROP_CONVERT_RGB:
            return float(self.convert_rgb)
        if prop == cv2.CAP_PROP_BUFFERSIZE:
            return float(self.buffers)
        return 0.0

    def read(self) -> tuple[bool, np.ndarray | None]:
        if not self.opened:
            return False, None
        if self.clock is None:  # the signal locks: the card starts capturing
            self._view_model = self.camera.scaled(*self.size)
            if self.s.frame_pool:
                self._pool = [self._render(i, i / self.fps, noise=True) for i in range(self.s.frame_pool)]
            else:
                self._render(0, 0.0)  # the scene's one-time set-up for this view: the card's, not the stream's
            self.opened_at = pylsl.local_clock()
            self.clock = SimClock(self.s.truth, self.fps, self.opened_at)
        clock = self.clock
        while True:
            now = pylsl.local_clock()
            self._capture_until(now)
            if self.queue:
                break
            ready = float(clock.true_time(self.capture_k)) + self.s.truth.latency_s
            stall = self._stalled(ready)
            if stall is not None:  # no signal: the read fails after the capture timeout
                wait = min(CAPTURE_TIMEOUT_S, stall - now)
                if self.stop.wait(max(0.0, wait)) or wait >= CAPTURE_TIMEOUT_S:
                    return False, None
                self.capture_k = clock.count_arrived(stall)  # the signal is back: frames resume from now
                continue
            # the process wakes a little after the buffer is done (scheduling)
            jitter = self.rng.exponential(self.s.truth.jitter_s) if self.s.truth.jitter_s > 0 else 0.0
            if self.stop.wait(max(0.0, ready + jitter - now)):
                return False, None
        k = self.queue.popleft()
        captured = float(clock.true_time(k)) + self.s.truth.latency_s  # the card's buffer timestamp
        # the driver stamps the buffer in its interrupt handler: tens of microseconds of jitter
        self.last_timestamp_ms = (captured + float(self.rng.normal(0.0, TIMESTAMP_JITTER_S))) * 1000.0
        jpeg = self._jpeg(k, float(clock.true_time(k)))
        self.delivered += 1
        if self.fourcc == "MJPG" and not self.convert_rgb:
            n = self.s.faults.truncate_every
            if n and self.delivered % n == 0:
                jpeg = jpeg[: len(jpeg) // 2]
            return True, np.frombuffer(jpeg, np.uint8).reshape(1, -1)
        return True, cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)

    # -- the card ------------------------------------------------------------------------------------
    def _capture_until(self, now: float) -> None:
        """Frames the card finished by `now` go into free buffers, oldest first. Buffers are freed only
        by reads: when all are full, the frames that arrive are dropped (V4L2 keeps the old ones, so a
        reader that fell behind gets stale frames, then a gap)."""
        done = self.clock.count_arrived(now)
        while self.capture_k < done:
            k = self.capture_k
            self.capture_k += 1
            captured = float(self.clock.true_time(k)) + self.s.truth.latency_s
            if self._stalled(captured) is not None:
                continue
            if self.s.faults.drop_probability and self.rng.random() < self.s.faults.drop_probability:
                self.lost += 1  # the card never delivers it
            elif len(self.queue) < self.buffers:
                self.queue.append(k)
            else:
                self.lost += 1
    def _stalled(self, captured: float) -> float | None:
        """When a stall covers this frame's capture time: the time the signal comes back."""
        f = self.s.faults
        if f.stall_at_s is None:
            return None
        begin = self.opened_at + f.stall_at_s
        end = begin + f.stall_for_s
        return end if begin <= captured < end else None

    def _jpeg(self, k: int, t: float) -> bytes:
        if self._pool:
            return self._pool[k % len(self._pool)]
        return self._render(k, t)

    def _render(self, k: int, t: float, noise: bool = False) -> bytes:
        exposure = SHUTTER_ANGLE / 360.0 / self.fps
        img = self.scene.render(self._view_model, t, exposure, k)
        if noise:  # pooled load-test frames: sensor noise gives them a camera's JPEG size (flat renders are tiny)
            img = np.clip(img + sensor_noise(img.shape, k), 0, 255).astype(np.uint8)
        ok, buf = cv2.imencode(".jpg", img, [int(cv2.IMWRITE_JPEG_QUALITY), self.s.jpeg_quality])
        if not ok:
            raise RuntimeError("JPEG encoding failed")
        return buf.tobytes()

    def truth(self) -> dict[str, Any]:
        if self.clock is None:
            return {}
        scene = self.scene.export_truth({self.view: self._view_model})
        return self.clock.truth_record(
            kind="capture-card", view=self.view, camera=scene.pop("cameras")[self.view], scene=scene,
            exposure_s=SHUTTER_ANGLE / 360.0 / self.fps,
            frame_size=list(self.size), sensor_size=list(self.camera.image_size), frames_lost_by_card=self.lost,
            frame_time="buffer timestamp = t0 + k / true_rate + latency_s; counter k as stored in frame_index "
                       "only when no frame before it was lost")
