"""The camera driver: frames in from a capture source, each with a dejittered time from its frame
index, stored per take in the camera's own frame file (JPEG as the device sent it where it sends
JPEG), a frame-index LSL stream, a low-resolution preview for the console, and remote record
control of the camera's own full-quality recording (Blackmagic REST, IP Webcam) with its replies and
timecodes on a marker stream.

Standalone (`flexcap driver camera --source SRC --id ID --out DIR`) the driver records from start
to stop into DIR/ID.h5; under the supervisor it records the take windows it is asked for.
"""

from __future__ import annotations

import json
import logging
import re
import threading
import time
from pathlib import Path
from typing import Any, Literal

import cv2
import numpy as np
import pylsl
from pydantic import BaseModel, ConfigDict, Field

from drivers.camera.control import ControlError, ControlEvent, RecordControl, control_from_url
from drivers.camera.frameclock import FrameClock
from drivers.camera.ipwebcam import IpWebcamControl  # noqa: F401 - registers ipwebcam:// with control_from_url
from drivers.camera.preview import PreviewWriter
from drivers.camera.recording import TakeFrameRecorder
from drivers.camera.sources import CaptureRequest, DeliveredFormat, Frame, FrameSource, make_source
from drivers.runtime.driver import EMULATED, DeviceError, Driver, DriverContext
from drivers.runtime.paths import device_runtime_path, emulator_address_file
from drivers.runtime.streams import IRREGULAR_RATE, StreamSpec, channels
from drivers.sim.camera import CameraEmulatorSettings

log = logging.getLogger(__name__)

CONTROL_KEY = "control"
CONTROL_CHECK_S = 5.0
HOST_CLOCK_TOLERANCE_S = 1.0  # a V4L2 capture timestamp this far from its arrival is on another clock


class CameraSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    role: Literal["cinema", "phone"] = "cinema"
    source: str = Field("", description="v4l2:N, /dev/videoN, http(s)://.../video, rtsp://..., file:PATH; "
                                        "with connection = 'emulator' the simulated lab's camera")
    fps: float = Field(60.0, gt=0, le=240)
    width: int = Field(1920, gt=0)
    height: int = Field(1080, gt=0)
    fourcc: str = Field("MJPG", pattern=r"^[A-Z0-9 ]{4}$|^$")
    jpeg_quality: int = Field(90, ge=10, le=100, description="for sources that do not send JPEG")
    control: str = Field("", description="record control: blackmagic://HOST:PORT or ipwebcam://HOST:PORT")
    stall_timeout_s: float = Field(2.0, gt=0, description="no frame for this long: the camera is lost")
    preview: bool = True
    preview_fps: float = Field(12.0, gt=0, le=30)
    preview_width: int = Field(320, ge=32)
    out_dir: str | None = Field(None, description="standalone: record everything into OUT_DIR/<id>.h5")
    emulator: CameraEmulatorSettings = CameraEmulatorSettings()


def clip_name(text: str) -> str:
    """A clip name cameras accept: letters, digits, '-' and '_' only."""
    return re.sub(r"[^A-Za-z0-9_-]+", "_", text).strip("_")[:64] or "clip"


class CameraDriver(Driver):
    kind = "camera"
    reports_truth = True
    Settings = CameraSettings
    writes_frames = True

    @classmethod
    def stream_specs(cls, ctx: DriverContext) -> list[StreamSpec]:
        s: CameraSettings = ctx.settings or CameraSettings()
        specs = [ctx.spec(ctx.device_id, ctx.device_id, "VideoFrameIndex",
                          channels(["frame_index"], "frames", "FrameIndex"), s.fps, "double64",
                          extra_desc={"encoding": {"codec": "jpeg", "width": str(s.width), "height": str(s.height),
                                                   "role": s.role}})]
        if s.control or ctx.connection == EMULATED:
            specs.append(ctx.spec(CONTROL_KEY, f"{ctx.device_id} control", "Markers",
                                  channels(["event"], "json", "Marker"), IRREGULAR_RATE, "string"))
        return specs

    def __init__(self, ctx: DriverContext) -> None:
        super().__init__(ctx)
        cv2.setNumThreads(1)  # one process per camera on a small machine: OpenCV's own threads only compete
        s: CameraSettings = self.settings
        self.request = CaptureRequest(s.width, s.height, s.fps, s.fourcc)
        self.clock = FrameClock(s.fps)
        self.source: FrameSource | None = None
        self.format: DeliveredFormat | None = None
        self.format_problem: str | None = None
        self.card = None  # the simulated capture card (sim sources): it knows the true frame times
        self.recorder = TakeFrameRecorder(self._frame_attrs(s.width, s.height, s.source or ctx.connection),
                                          preroll_frames=int(4 * s.fps))
        self.preview: PreviewWriter | None = None
        self.preview_path = device_runtime_path(ctx.rig_name, ctx.device_id, ".preview")
        self.last_frame_at = 0.0
        self.frames = 0
        self.corrupt_before = 0  # damaged frames of earlier connections
        self.foreign_timestamps = False
        self.control: RecordControl | None = None
        self.control_state: dict[str, Any] = {}
        self._control_lock = threading.Lock()
        self._marker_lock = threading.Lock()
        self._control_thread: threading.Thread | None = None
        self._standalone_started = False
        self.rolling_clip: str | None = None  # the clip the camera was asked to record, until asked to stop

    # -- where frames and control come from ----------------------------------------------------------
    def _emulator_address(self) -> dict[str, str]:
        path = emulator_address_file(self.ctx.rig_name, self.ctx.device_id)
        try:
            return json.loads(path.read_text())
        except (OSError, ValueError) as exc:
            raise DeviceError(f"{self.ctx.device_id}: the emulator's address is not in {path} yet ({exc})") from exc

    def _source_spec(self) -> str:
        s: CameraSettings = self.settings
        if s.source:
            return s.source
        if self.ctx.connection == EMULATED:
            if s.role == "phone":
                return self._emulator_address()["video"]
            return f"sim:{s.emulator.view or self.ctx.device_id}"
        if self.ctx.connection:
            return self.ctx.connection
        raise DeviceError(f"{self.ctx.device_id}: no camera source (settings.source or the device's connection)")

    def _control_url(self) -> str:
        s: CameraSettings = self.settings
        if s.control:
            return s.control
        if self.ctx.connection == EMULATED:
            return self._emulator_address().get("control", "")
        return ""

    def _sim_card(self, target: str, api: int):  # noqa: ANN202 - cv2.VideoCapture's interface
        from drivers.sim.capture import SimCaptureCard
        from drivers.sim.emg_signal import device_seed
        from drivers.sim.lab import SimLabSettings
        from drivers.sim.triggerline import pulse_line

        sim = self.ctx.sim or SimLabSettings()
        self.card = SimCaptureCard(target, self.settings.emulator, sim, device_seed(self.ctx.device_id),
                                   self.stop_event, pulse_line(sim, self.ctx.rig_name))
        return self.card

    def _frame_attrs(self, width: int, height: int, source: str) -> dict[str, Any]:
        s: CameraSettings = self.settings
        return {"camera_id": self.ctx.device_id, "role": s.role, "codec": "jpeg", "width": width, "height": height,
                "nominal_fps": s.fps, "source": source}

    # -- Driver --------------------------------------------------------------------------------------
    def open(self) -> None:
        s: CameraSettings = self.settings
        spec = self._source_spec()
        try:
            source = make_source(spec, s.stall_timeout_s, sim_factory=self._sim_card)
        except ValueError as exc:
            raise DeviceError(str(exc)) from exc
        self.source = source
        fmt = source.open(self.request)
        self.format = fmt
        # a stream or file has no format negotiation: its codec is what it is (size and rate still count)
        asked = self.request if source.negotiates else CaptureRequest(s.width, s.height, s.fps, "")
        self.format_problem = fmt.mismatch(asked)
        if self.format_problem:
            log.warning("%s: %s", self.ctx.device_id, self.format_problem)
        self.recorder.attrs.update(self._frame_attrs(fmt.width, fmt.height, spec))
        if fmt.fps > 0:
            self.clock.set_rate(fmt.fps)  # the device's rate, not the one asked for
        self.clock.reconnected()
        self.last_frame_at = pylsl.local_clock()
        if s.preview and self.preview is None:
            self.preview = PreviewWriter(self.preview_path, fmt.width, fmt.height, s.preview_width, s.preview_fps)
        self._start_control()
        if s.out_dir and not self._standalone_started:
            Path(s.out_dir).mkdir(parents=True, exist_ok=True)
            self.start_recording(str(Path(s.out_dir) / f"{self.ctx.device_id}.h5"), 0.0,  # every frame
                                 clip=f"{self.ctx.device_id}_{time.strftime('%Y%m%d_%H%M%S')}")
            self._standalone_started = True

    def read(self) -> None:
        assert self.source is not None
        try:
            frame = self.source.read()
        except DeviceError:
            if self.stop_event.is_set():  # shutting down: the rig's emulators stop at the same time
                return
            raise
        now = pylsl.local_clock()
        if frame is None:  # a damaged frame was skipped; the next good one shows the gap
            if now - self.last_frame_at > self.settings.stall_timeout_s:
                raise DeviceError(f"{self.source.spec}: only damaged frames for "
                                  f"{now - self.last_frame_at:.1f} s")
            return
        self.last_frame_at = now
        self.take(frame, self.source.device_time_on_host_clock)

    def take(self, frame: Frame, device_time_on_host_clock: bool = False) -> None:
        """One frame from the source: JPEG-encode it if it is not, place it in time, store and publish
        what is placed, and hand it to the preview."""
        if isinstance(frame.data, bytes):
            jpeg = frame.data
        else:
            ok, buf = cv2.imencode(".jpg", frame.data, [int(cv2.IMWRITE_JPEG_QUALITY), self.settings.jpeg_quality])
            if not ok:
                raise DeviceError(f"{self.ctx.device_id}: JPEG encoding failed for a {frame.data.shape} frame")
            jpeg = buf.tobytes()
        on_host = device_time_on_host_clock and frame.device_time is not None
        if on_host and abs(frame.device_time - frame.arrival) > HOST_CLOCK_TOLERANCE_S:
            # a driver set to stamp buffers on another clock (uvcvideo's clock=realtime): use arrivals
            if not self.foreign_timestamps:
                log.warning("%s: capture timestamps are %.1f s from arrival: not on the host clock; using arrival "
                            "times", self.ctx.device_id, frame.device_time - frame.arrival)
            self.foreign_timestamps = True
        if self.foreign_timestamps:
            on_host = False
        placed = self.clock.add(frame.arrival, frame.counter, frame.device_time,
                                fit_time=frame.device_time if on_host else None, payload=jpeg)
        self._store(placed)
        if self.preview is not None:
            self.preview.offer(jpeg, frame.arrival, self.clock.index)

    def _store(self, placed: list) -> None:
        """Frames whose index and time are known: to the take's frame file and the frame-index stream."""
        if not placed:
            return
        for ft, jpeg in placed:
            self.recorder.offer(jpeg, ft.stamp, ft.index)
        self.frames += len(placed)
        self.drops = self.clock.dropped
        self.publish(self.ctx.device_id, np.array([[float(ft.index)] for ft, _ in placed]),
                     [ft.stamp for ft, _ in placed])

    def close(self) -> None:
        self._store(self.clock.flush())  # frames waiting for successors: the stream may not come back
        if self.source is not None:
            self.corrupt_before += self.source.corrupt
            self.source.close()
        self.source = None

    @property
    def corrupt(self) -> int:
        source = self.source  # a reconnect may close it meanwhile
        return self.corrupt_before + (source.corrupt if source is not None else 0)

    def shutdown(self) -> None:
        try:
            self._store(self.clock.flush())  # frames still waiting for their successors
            self._control_stop()
        finally:
            self.recorder.abort()  # the frame file is finished whatever the camera's API did
            with self._control_lock:
                if self.control is not None:
                    self.control.close()
                    self.control = None
            if self.preview is not None:
                self.preview.close()
                self.preview = None

    # -- record control ------------------------------------------------------------------------------
    def _start_control(self) -> None:
        if self._control_thread is not None:
            return
        url = self._control_url()
        if not url:
            return
        try:
            self.control = control_from_url(url)
            self.control.subscribe_events()
        except ValueError as exc:
            self.control_state = {"url": url, "ready": False, "problem": str(exc)}
            return
        self._control_thread = threading.Thread(target=self._watch_control, name="control-check", daemon=True)
        self._control_thread.start()

    def _watch_control(self) -> None:
        """Check readiness every few seconds (a camera that cannot record is named before the take)
        and put the camera's property events on the marker stream."""
        next_check = 0.0
        while not self.stop_event.is_set():
            with self._control_lock:
                control = self.control
                if control is None:
                    return
                try:
                    if time.monotonic() >= next_check and not self.recorder.recording:
                        self.check_control(control)
                        next_check = time.monotonic() + CONTROL_CHECK_S
                    events = control.poll_events()
                except Exception as exc:  # an unexpected reply must not end the checks
                    self.control_state = {**self.control_state, "ready": False,
                                          "problem": f"{type(exc).__name__}: {exc}"}
                    events = []
                    next_check = time.monotonic() + CONTROL_CHECK_S
            self._publish_events(events)
            self.stop_event.wait(0.2)

    def check_control(self, control: RecordControl | None = None) -> dict[str, Any]:
        control = control or self.control
        if control is None:
            return {"ready": True, "problem": None}
        try:
            state = control.check()
        except ControlError as exc:
            state = {"ready": False, "problem": str(exc)}
        self.control_state = {"url": control.url, **state}
        return self.control_state

    def _publish_events(self, events: list[ControlEvent]) -> None:
        """Markers are stamped when published (two threads publish: stamps must not go back); each one
        carries its own request and reply times."""
        if events:
            with self._marker_lock:
                now = pylsl.local_clock()
                self.publish(CONTROL_KEY, [[e.to_marker()] for e in events], [now] * len(events))

    def _control_start(self, clip: str) -> list[str]:
        name = clip_name(clip)
        with self._control_lock:
            if self.control is None:
                return []
            # set before asking: a start that times out may still have started the camera, and the stop at
            # the end of the take must then still be sent (stopping is harmless when it is not rolling)
            self.rolling_clip = name
            try:
                events = self.control.start(name)
            except Exception as exc:
                self.control_state = {**self.control_state, "ready": False, "problem": str(exc)}
                self._record_error(name, exc)
                return [f"{self.ctx.device_id}: the camera is not recording internally: {exc}"]
        self._publish_events(events)
        return []

    def _control_stop(self) -> list[str]:
        with self._control_lock:
            if self.control is None or self.rolling_clip is None:
                return []
            clip, self.rolling_clip = self.rolling_clip, None
            try:
                events = self.control.stop()
            except Exception as exc:
                self._record_error(clip, exc)
                return [f"{self.ctx.device_id}: stopping the camera's internal recording failed: {exc}"]
        self._publish_events(events)
        return []

    def _record_error(self, clip: str, exc: Exception) -> None:
        now = pylsl.local_clock()
        self._publish_events([ControlEvent("record_error", now, now, None, None, clip,
                                           {"error": f"{type(exc).__name__}: {exc}"})])

    # -- commands ------------------------------------------------------------------------------------
    def start_recording(self, path: str, start_lsl: float, clip: str | None = None) -> dict[str, Any]:
        result = self.recorder.start(path, start_lsl)
        problems = self._control_start(clip or Path(path).parent.name or self.ctx.device_id)
        return {**result, "problems": problems}

    def stop_recording(self, stop_lsl: float) -> dict[str, Any]:
        problems = self._control_stop()
        result = self.recorder.stop(stop_lsl, timeout=max(3.0, self.settings.stall_timeout_s + 1.0))
        return {**result, "problems": problems + result.get("problems", []), "corrupt_frames": self.corrupt}

    def commands(self) -> dict[str, Any]:
        return {"start_recording": self.start_recording, "stop_recording": self.stop_recording,
                "stop_control": lambda: {"problems": self._control_stop()},
                "check": self.check_control, "truth": self.truth}

    def status_extra(self) -> dict[str, Any]:
        fmt = self.format
        return {"recording": self.recorder.recording, "frames": self.frames, "runs": self.clock.runs,
                "format": None if fmt is None else f"{fmt.width}x{fmt.height} {fmt.fourcc} {fmt.fps:g} fps",
                "format_problem": self.format_problem,
                "corrupt_frames": self.corrupt,
                "preview": str(self.preview_path) if self.preview else None,
                "control": self.control_state or None}

    def truth(self) -> dict[str, Any]:
        card = self.card
        return {self.ctx.device_id: card.truth()} if card is not None and card.truth() else {}
