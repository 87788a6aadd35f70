"""The simulated lab's cameras, each behind the boundary its real counterpart is read through:

- a cinema camera feeds a capture card (drivers.sim.capture, at cv2.VideoCapture's interface, in the
  camera driver's process as the card is in the kernel) and offers the Blackmagic REST API for
  record control (drivers.sim.blackmagic, an HTTP server in this emulator process);
- the phone is an IP-Webcam-style HTTP server (drivers.sim.phone) in this emulator process.

The emulator binds free loopback ports and writes the URLs it serves to the device's address file,
where the camera driver finds them.
"""

from __future__ import annotations

import json
import threading
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from drivers.sim.lab import DeviceTruth, SimLabSettings
from drivers.sim.phone import PhoneFaults
from drivers.sim.scene import SceneSettings
from drivers.sim.triggerline import PulseLine


class CaptureFaults(BaseModel):
    model_config = ConfigDict(extra="forbid")

    drop_probability: float = Field(0.0, ge=0.0, lt=1.0, description="frames the card loses (never delivered)")
    stall_at_s: float | None = Field(None, description="the signal disappears this long after the first frame")
    stall_for_s: float = Field(3.0, gt=0)
    truncate_every: int = Field(0, ge=0, description="every n-th JPEG arrives cut short")


class BlackmagicSettings(BaseModel):
    """The simulated cinema camera's REST API (PROTOCOLS.md 5.1)."""

    model_config = ConfigDict(extra="forbid")

    timecode_fps: float = Field(60.0, description="59.94 or 29.97 give drop-frame timecode")
    timecode_offset_s: float = Field(36000.0, description="time-of-day timecode = local_clock() + this")
    remaining_record_s: int = Field(20926, description="0: the card is full")
    refuse_record: bool = False
    reply_delay_s: float = Field(0.0, ge=0, description="every reply this late (timeouts)")


class CameraEmulatorSettings(BaseModel):
    """A simulated camera (the rig's [devices.settings.emulator] of a camera with connection = 'emulator')."""

    model_config = ConfigDict(extra="forbid")

    view: str | None = Field(None, description="the lab camera whose view this is (default: the device id)")
    jpeg_quality: int = Field(90, ge=10, le=100, description="the capture card's (or phone's) JPEG encoder")
    frame_pool: int = Field(0, ge=0, description="serve n pre-rendered frames in turn (load tests: the card's "
                                                 "encoder must not use the CPU the drivers are measured on)")
    scene: SceneSettings = SceneSettings()
    truth: DeviceTruth = DeviceTruth(latency_s=0.05, jitter_s=0.002, drift_ppm=10.0)
    faults: CaptureFaults = CaptureFaults()
    phone_faults: PhoneFaults = PhoneFaults()
    control: BlackmagicSettings | None = Field(BlackmagicSettings(), description="cinema: the REST API; "
                                                                                 "none: no remote control")


class CameraEmulator:
    """The HTTP side of one simulated camera: the phone's server, or a cinema camera's REST API."""

    def __init__(self, device_id: str, camera_settings: Any, sim: SimLabSettings, seed: int,
                 line: PulseLine | None = None) -> None:
        import cv2

        from drivers.sim.blackmagic import BlackmagicEmulator
        from drivers.sim.phone import PhoneEmulator, PhoneSettings

        cv2.setNumThreads(1)  # the phone renders and encodes on one core, as the drivers do

        self.device_id = device_id
        em: CameraEmulatorSettings = camera_settings.emulator
        self.phone = None
        self.blackmagic = None
        self.address: dict[str, str] = {}
        self.stop_event = threading.Event()
        if camera_settings.role == "phone":
            self.phone = PhoneEmulator(PhoneSettings(
                view=em.view or device_id, fps=camera_settings.fps, width=camera_settings.width,
                height=camera_settings.height, jpeg_quality=em.jpeg_quality, frame_pool=em.frame_pool,
                scene=em.scene, truth=em.truth,
                faults=em.phone_faults), sim, seed, line=line).start()
            base = self.phone.base_url
            self.address = {"video": f"{base}/video", "control": base.replace("http://", "ipwebcam://")}
        elif em.control is not None:
            c = em.control
            self.blackmagic = BlackmagicEmulator(fps=c.timecode_fps, timecode_offset_s=c.timecode_offset_s,
                                                 remaining_record_s=c.remaining_record_s,
                                                 reply_delay_s=c.reply_delay_s, refuse_record=c.refuse_record)
            self.blackmagic.start()
            self.address = {"control": self.blackmagic.url}

    def address_json(self) -> str:
        return json.dumps(self.address)

    def truth(self) -> dict[str, Any]:
        if self.phone is not None:
            return {self.device_id: self.phone.truth()}
        if self.blackmagic is not None:
            return {self.device_id: {"record_control": self.blackmagic.truth()}}
        return {}

    def stop(self) -> None:
        self.stop_event.set()
        if self.phone is not None:
            self.phone.stop()
        if self.blackmagic is not None:
            self.blackmagic.stop()
