"""Where a camera's frames come from: a V4L2 device (capture card or UVC camera), an HTTP MJPEG
stream, an RTSP stream or a video file through OpenCV, or the simulated lab's capture cards.

A source hands out `Frame`s: JPEG bytes exactly as the device sent them when it sends JPEG
(`passthrough`), otherwise a decoded image the driver encodes once. Where the source knows the
frame's counter or capture time it says so; the driver's FrameClock does the rest.

Source strings (the rig's `source`, or `flexcap driver camera --source`):
  v4l2:0, /dev/video0      a V4L2 device by index or path (MJPEG requested, stored as sent)
  http://host:8080/video   an HTTP MJPEG stream (IP Webcam and most network cameras), stored as sent
  rtsp://..., file:x.mp4   decoded by OpenCV, encoded once as JPEG (a file plays at its frame rate)
  sim:cam1                 the simulated lab's capture card for camera view cam1
"""

from __future__ import annotations

import os
import re
import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np
import pylsl

from drivers.camera.mjpeg import MjpegReader, is_complete_jpeg
from drivers.runtime.driver import DeviceError

V4L2_MAX_BUFFERS = 10
# A stalled V4L2 device blocks each read for OpenCV's select() timeout, 10 s by default and not settable
# per capture (CAP_PROP_READ_TIMEOUT_MSEC is not supported there); OpenCV reads this once per process.
os.environ.setdefault("OPENCV_VIDEOIO_V4L_SELECT_TIMEOUT", "2")

VIDEO_EXTENSIONS = (".mp4", ".mov", ".avi", ".mkv", ".mjpeg", ".mjpg", ".m4v")


@dataclass
class Frame:
    data: bytes | np.ndarray  # JPEG bytes (passthrough sources) or a BGR image
    arrival: float  # pylsl.local_clock() when the frame reached this process
    counter: int | None = None  # the device's frame counter, when it has one
    device_time: float | None = None  # the device's capture time in seconds, when it gives one


@dataclass(frozen=True)
class CaptureRequest:
    """What the rig file asks of the device."""

    width: int
    height: int
    fps: float
    fourcc: str = "MJPG"


@dataclass
class DeliveredFormat:
    width: int
    height: int
    fps: float
    fourcc: str

    def mismatch(self, req: CaptureRequest) -> str | None:
        """A sentence naming what differs from the request, or None."""
        diffs = []
        if (self.width, self.height) != (req.width, req.height):
            diffs.append(f"size {self.width}x{self.height} (asked {req.width}x{req.height})")
        if self.fps and abs(self.fps - req.fps) > 0.01 * req.fps:
            diffs.append(f"rate {self.fps:g} fps (asked {req.fps:g})")
        if req.fourcc and self.fourcc and self.fourcc != req.fourcc:
            diffs.append(f"format {self.fourcc} (asked {req.fourcc})")
        return "the device delivers " + ", ".join(diffs) if diffs else None


class FrameSource(ABC):
    passthrough = False  # frames are JPEG bytes as the device sent them
    negotiates = False  # the device is asked for a pixel format (V4L2): a different one is a mismatch
    device_time_on_host_clock = False  # device_time is a capture time on local_clock (V4L2 timestamps)

    def __init__(self, spec: str) -> None:
        self.spec = spec
        self.corrupt = 0  # frames that arrived damaged (truncated JPEG) and were not stored

    @abstractmethod
    def open(self, req: CaptureRequest) -> DeliveredFormat:
        """Connect and negotiate; raise DeviceError naming the problem when the device is absent or busy."""

    @abstractmethod
    def read(self) -> Frame | None:
        """The next frame (None when a damaged frame was skipped). Raises DeviceError when it stalls or
        is lost."""

    def close(self) -> None:  # noqa: B027 - optional
        pass


def fourcc_text(code: float) -> str:
    value = int(code)
    text = "".join(chr((value >> (8 * i)) & 0xFF) for i in range(4))
    return text if text.isprintable() and text.strip() else ""


class OpenCvSource(FrameSource):
    """A V4L2 device, an RTSP stream or a video file through cv2.VideoCapture. `capture_factory`
    is cv2.VideoCapture itself, or the simulated lab's capture card with the same interface."""

    def __init__(self, spec: str, target: int | str, kind: str,
                 capture_factory: Callable[..., Any] | None = None, api: int = cv2.CAP_ANY) -> None:
        super().__init__(spec)
        self.target = target
        self.kind = kind  # "v4l2", "network", "file" or "sim"
        self.factory = capture_factory or cv2.VideoCapture
        self.api = api
        self.cap: Any = None
        self.fmt: DeliveredFormat | None = None
        self._pace_t0 = 0.0
        self._pace_k = 0
        self.device_time_on_host_clock = self.negotiates = kind in ("v4l2", "sim")

    def open(self, req: CaptureRequest) -> DeliveredFormat:
        if self.kind == "v4l2" and isinstance(self.target, str) and not os.path.exists(self.target):
            raise DeviceError(f"{self.spec}: no such device")
        if self.kind == "file" and not os.path.isfile(str(self.target)):
            raise DeviceError(f"{self.spec}: no such file")
        cap = self.factory(self.target, self.api)
        if not cap.isOpened():
            cap.release()
            why = "absent or busy (another program may hold it)" if self.kind in ("v4l2", "sim") else "cannot be opened"
            raise DeviceError(f"{self.spec}: {why}")
        if self.kind in ("v4l2", "sim"):
            # ask for MJPEG at the rig's size and rate, then keep the JPEG bytes undecoded
            if req.fourcc:
                cap.set(cv2.CAP_PROP_FOURCC, cv2.VideoWriter.fourcc(*req.fourcc))
            cap.set(cv2.CAP_PROP_FRAME_WIDTH, req.width)
            cap.set(cv2.CAP_PROP_FRAME_HEIGHT, req.height)
            cap.set(cv2.CAP_PROP_FPS, req.fps)
            # more kernel buffers: a moment's stall of this process (the GIL, a flush) must not lose frames;
            # OpenCV's default of 4 is 67 ms at 60 fps and its V4L2 backend accepts at most 10
            cap.set(cv2.CAP_PROP_BUFFERSIZE, V4L2_MAX_BUFFERS)
        fmt = DeliveredFormat(int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)), int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT)),
                              float(cap.get(cv2.CAP_PROP_FPS)), fourcc_text(cap.get(cv2.CAP_PROP_FOURCC)))
        self.passthrough = self.kind in ("v4l2", "sim") and fmt.fourcc == "MJPG"
        if self.passthrough:
            cap.set(cv2.CAP_PROP_CONVERT_RGB, 0)  # the V4L2 backend then hands out the buffer as sent
        self.cap = cap
        self.fmt = fmt
        self._pace_t0 = pylsl.local_clock()
        self._pace_k = 0
        return fmt

    def read(self) -> Frame | None:
        cap = self.cap
        if cap is None:
            raise DeviceError(f"{self.spec}: not open")
        if self.kind == "file":
            self._pace()
        ok, data = cap.read()
        arrival = pylsl.local_clock()
        if not ok or data is None:
            raise DeviceError(f"{self.spec}: " + ("end of file" if self.kind == "file" else
                                                  "no frame within the capture timeout (stalled or unplugged)"))
        msec = float(cap.get(cv2.CAP_PROP_POS_MSEC))
        device_time = msec / 1000.0 if msec > 0 else None
        counter = None
        if self.kind == "file":
            counter = int(cap.get(cv2.CAP_PROP_POS_FRAMES)) - 1
        if self.passthrough:
            jpeg = np.asarray(data, dtype=np.uint8).reshape(-1).tobytes()
            if not is_complete_jpeg(jpeg):
                self.corrupt += 1
                return None
            return Frame(jpeg, arrival, counter, device_time)
        return Frame(data, arrival, counter, device_time)

    def _pace(self) -> None:
        """A file plays at its frame rate, as a camera would deliver it."""
        fps = self.fmt.fps if self.fmt and self.fmt.fps > 0 else 30.0
        due = self._pace_t0 + self._pace_k / fps
        self._pace_k += 1
        delay = due - pylsl.local_clock()
        if delay > 0:
            time.sleep(delay)

    def close(self) -> None:
        if self.cap is not None:
            self.cap.release()
        self.cap = None


class MjpegHttpSource(FrameSource):
    """An HTTP MJPEG stream: every part's JPEG is kept byte for byte."""

    passthrough = True

    def __init__(self, spec: str, timeout_s: float = 2.0) -> None:
        super().__init__(spec)
        self.reader = MjpegReader(spec, timeout_s)
        self.fmt: DeliveredFormat | None = None
        self._first: Frame | None = None

    def open(self, req: CaptureRequest) -> DeliveredFormat:
        self.reader.open()
        # the stream has no format negotiation: the first frame's header tells its size (and the frame
        # is kept: it is the first one read)
        for _ in range(8):
            body, _, arrival = self.reader.read_part()
            if is_complete_jpeg(body):
                h, w = jpeg_size(body)
                self.fmt = DeliveredFormat(w, h, 0.0, "MJPG")
                self._first = Frame(body, arrival)
                return self.fmt
            self.corrupt += 1
        self.reader.close()
        raise DeviceError(f"{self.spec}: the stream's parts are not JPEG images")

    def read(self) -> Frame | None:
        if self._first is not None:
            frame, self._first = self._first, None
            return frame
        body, headers, arrival = self.reader.read_part()
        if not is_complete_jpeg(body):
            self.corrupt += 1
            return None
        return Frame(body, arrival)

    def close(self) -> None:
        self.reader.close()


def jpeg_size(jpeg: bytes) -> tuple[int, int]:
    """(height, width) from a JPEG's start-of-frame marker, without decoding it."""
    i = 2
    while i + 9 < len(jpeg):
        if jpeg[i] != 0xFF:
            i += 1
            continue
        marker = jpeg[i + 1]
        if marker in (0xC0, 0xC1, 0xC2, 0xC3):
            return int.from_bytes(jpeg[i + 5 : i + 7], "big"), int.from_bytes(jpeg[i + 7 : i + 9], "big")
        if marker == 0xD8 or 0xD0 <= marker <= 0xD7 or marker == 0x01 or marker == 0xFF:
            i += 2 if marker != 0xFF else 1
            continue
        i += 2 + int.from_bytes(jpeg[i + 2 : i + 4], "big")
    raise DeviceError("a JPEG frame without a start-of-frame marker")


def make_source(spec: str, timeout_s: float = 2.0,
                sim_factory: Callable[..., Any] | None = None) -> FrameSource:
    """The source a source string names (see the module doc). `sim_factory` builds the simulated
    capture card for `sim:` sources (the caller knows the simulated lab)."""
    spec = spec.strip()
    if not spec:
        raise ValueError("no camera source given (e.g. v4l2:0, /dev/video0, http://host:8080/video, file:clip.mp4)")
    if spec.startswith(("http://", "https://")):
        return MjpegHttpSource(spec, timeout_s)
    if spec.startswith(("rtsp://", "rtsps://")):
        return OpenCvSource(spec, spec, "network", api=cv2.CAP_FFMPEG)
    if spec.startswith("sim:"):
        if sim_factory is None:
            raise ValueError(f"{spec}: simulated capture cards exist only in the simulated lab")
        return OpenCvSource(spec, spec[4:], "sim", capture_factory=sim_factory)
    m = re.fullmatch(r"(?:v4l2:)?(\d+)", spec)
    if m:
        return OpenCvSource(spec, int(m.group(1)), "v4l2", api=cv2.CAP_V4L2)
    if spec.startswith("v4l2:") or spec.startswith("/dev/"):
        return OpenCvSource(spec, spec.removeprefix("v4l2:"), "v4l2", api=cv2.CAP_V4L2)
    path = spec.removeprefix("file:")
    if spec.startswith("file:") or path.lower().endswith(VIDEO_EXTENSIONS):
        return OpenCvSource(spec, path, "file")
    raise ValueError(f"camera source {spec!r} is not understood: use v4l2:N, /dev/videoN, http(s)://..., "
                     "rtsp://..., file:PATH or sim:VIEW")
