"""Simulated camera (cinema or phone): renders the virtual scene (the subject proxy following the lift,
the trigger box's LED, the frame counter as a barcode), JPEG-encodes each frame once, publishes the
frame-index stream and writes the take's frame file on request.

Frames may be rendered smaller than the nominal sensor size (render_width/render_height in the rig)
so five cameras fit on a 2-core machine; the frame file records the size actually stored.
"""

from __future__ import annotations

from typing import Literal

import cv2
import numpy as np
import pylsl
from pydantic import BaseModel, ConfigDict, Field

from drivers.camera.recording import TakeFrameRecorder
from drivers.runtime.driver import Driver, DriverContext
from drivers.runtime.streams import StreamSpec, channels
from drivers.sim.delivery import SimDelivery
from drivers.sim.emg_signal import device_seed
from drivers.sim.lab import DeviceTruth, SimClock, SimLabSettings

BARCODE_BITS = 24
SHUTTER_ANGLE = 180.0


class SimCameraSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    role: Literal["cinema", "phone"] = "cinema"
    fps: float = Field(60.0, gt=0, le=240)
    width: int = Field(1920, gt=0, description="nominal sensor width")
    height: int = Field(1080, gt=0)
    render_width: int = Field(1920, ge=96)
    render_height: int = Field(1080, ge=54)
    jpeg_quality: int = Field(90, ge=10, le=100)
    view: float = Field(0.0, ge=-1.0, le=1.0, description="horizontal placement of the subject in view")
    drop_probability: float = Field(0.0, ge=0.0, lt=1.0)
    truth: DeviceTruth = DeviceTruth(latency_s=0.06, jitter_s=0.003, drift_ppm=10.0)


def encode_barcode(image: np.ndarray, value: int) -> None:
    """Draw `value` as BARCODE_BITS black/white blocks along the bottom edge (MSB first)."""
    h, w = image.shape[:2]
    bh = max(8, h // 20)
    bw = w // BARCODE_BITS
    for bit in range(BARCODE_BITS):
        on = (value >> (BARCODE_BITS - 1 - bit)) & 1
        image[h - bh : h, bit * bw : (bit + 1) * bw] = 255 if on else 0


def decode_barcode(image: np.ndarray) -> int:
    """Read the frame counter back from a (decoded) frame."""
    gray = image if image.ndim == 2 else image.mean(axis=2)
    h, w = gray.shape[:2]
    bh = max(8, h // 20)
    bw = w // BARCODE_BITS
    value = 0
    for bit in range(BARCODE_BITS):
        block = gray[h - bh + 2 : h - 2, bit * bw + 2 : (bit + 1) * bw - 2]
        value = (value << 1) | int(block.mean() > 127)
    return value


class SimScene:
    def __init__(self, s: SimCameraSettings, sim: SimLabSettings) -> None:
        self.s = s
        self.sim = sim
        w, h = s.render_width, s.render_height
        ramp = np.linspace(60, 140, w, dtype=np.float32)[None, :] + np.linspace(0, 40, h, dtype=np.float32)[:, None]
        self.background = np.repeat(ramp[:, :, None], 3, axis=2).astype(np.uint8)
        self.exposure = SHUTTER_ANGLE / 360.0 / s.fps
        self.led = (slice(h // 20, h // 20 + h // 12), slice(w // 30, w // 30 + h // 12))

    def render(self, k: int, t: float) -> np.ndarray:
        s = self.s
        w, h = s.render_width, s.render_height
        img = self.background.copy()
        # subject proxy: a body and a bar whose height follows the lift
        cx = int(w * (0.5 + 0.25 * s.view))
        bar_y = int(h * (0.75 - 0.4 * float(self.sim.lift_position(t))))
        img[int(h * 0.3) : int(h * 0.85), cx - w // 30 : cx + w // 30] = (40, 70, 160)
        img[bar_y - h // 80 : bar_y + h // 80, cx - w // 8 : cx + w // 8] = (30, 30, 30)
        # the trigger LED: brightness is the lit fraction of this frame's exposure
        lit = self.sim.pulse_overlap(t, t + self.exposure) / self.exposure
        img[self.led] = (0, int(60 + 195 * lit), 0)
        encode_barcode(img, k)
        return img


class SimCameraDriver(Driver):
    kind = "sim-camera"
    Settings = SimCameraSettings
    writes_frames = True

    @classmethod
    def stream_specs(cls, ctx: DriverContext) -> list[StreamSpec]:
        s: SimCameraSettings = ctx.settings or SimCameraSettings()
        return [ctx.spec(ctx.device_id, ctx.device_id, "VideoFrameIndex",
                         channels(["frame_index"], "frames", "FrameIndex"), s.fps, "double64",
                         extra_desc={"encoding": {"codec": "jpeg", "width": str(s.render_width),
                                                  "height": str(s.render_height), "role": s.role}})]

    def __init__(self, ctx: DriverContext) -> None:
        super().__init__(ctx)
        s: SimCameraSettings = self.settings
        self.sim: SimLabSettings = ctx.sim or SimLabSettings()
        self.scene = SimScene(s, self.sim)
        self.delivery: SimDelivery | None = None
        self.recorder = TakeFrameRecorder({
            "camera_id": ctx.device_id, "role": s.role, "codec": "jpeg", "width": s.render_width,
            "height": s.render_height, "nominal_fps": s.fps,
            "source": f"sim://{ctx.device_id} (sensor {s.width}x{s.height})",
        }, preroll_frames=int(4 * s.fps))
        self.rng = np.random.default_rng([self.sim.seed, device_seed(ctx.device_id), 2])

    def open(self) -> None:
        if self.delivery is None:
            s: SimCameraSettings = self.settings
            clock = SimClock(s.truth, s.fps, pylsl.local_clock())
            self.delivery = SimDelivery(clock, 1.0 / s.fps, self.rng)

    def read(self) -> None:
        assert self.delivery is not None
        block = self.delivery.wait_block(self.stop_event)
        if block is None:
            return
        counters, _ = block
        stamps = self.delivery.stamps(counters)
        quality = [int(cv2.IMWRITE_JPEG_QUALITY), self.settings.jpeg_quality]
        kept, kept_stamps = [], []
        for k, stamp in zip(counters, stamps, strict=True):
            if self.settings.drop_probability and self.rng.random() < self.settings.drop_probability:
                self.drops += 1
                continue
            img = self.scene.render(int(k), float(self.delivery.clock.true_time(k)))
            ok, jpeg = cv2.imencode(".jpg", img, quality)
            if not ok:
                raise RuntimeError("JPEG encoding failed")
            self.recorder.offer(jpeg.tobytes(), float(stamp), int(k))
            kept.append(float(k))
            kept_stamps.append(float(stamp))
        if kept:
            self.publish(self.ctx.device_id, np.asarray(kept, dtype=np.float64)[:, None], kept_stamps)

    def commands(self) -> dict:
        return {"start_recording": self.recorder.start, "stop_recording": self.recorder.stop,
                "truth": self.truth}

    def shutdown(self) -> None:
        self.recorder.abort()

    def status_extra(self) -> dict:
        return {"recording": self.recorder.recording}

    def truth(self) -> dict:
        if self.delivery is None:
            return {}
        s: SimCameraSettings = self.settings
        return {self.ctx.device_id: self.delivery.clock.truth_record(
            kind=self.kind, streams=[self.ctx.device_id], role=s.role, exposure_s=self.scene.exposure,
            render_size=[s.render_width, s.render_height], sensor_size=[s.width, s.height])}
