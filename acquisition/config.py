"""Rig and take models (pydantic), read from TOML. A bad rig file gets an error naming the file, the
key and what was expected."""

from __future__ import annotations

import json
import re
import tomllib
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from calibration.board import BoardSpec
from drivers.registry import UnknownDriverKind, driver_class
from drivers.runtime.driver import DriverContext
from drivers.sim.lab import SimLabSettings

ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_-]*$"
SIM_RIG = Path(__file__).with_name("rigs") / "simlab.toml"


class RigError(ValueError):
    """A rig file that cannot be used; the message names the file, the key and what was expected."""


class LslSettings(BaseModel):
    """How far LSL discovery reaches. The default keeps every packet on this machine; a real rig on a
    LAN sets a wider scope and its own session id so it never sees another lab's streams."""

    model_config = ConfigDict(extra="forbid")

    scope: Literal["machine", "link", "site", "organization", "global"] = "machine"
    session_id: str = Field("flexcap", pattern=ID_PATTERN)
    ipv6: bool = False
    known_peers: list[str] = Field(default_factory=list)
    # Each outlet takes one port from [16572, 16572 + port_range); streams of this machine are found by
    # probing that range, so an outlet beyond it is invisible (liblsl's default, 32, is less than the
    # simulated lab alone publishes).
    port_range: int = Field(128, ge=32, le=1024)


class RecorderSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    poll_interval_s: float = Field(0.5, gt=0, le=0.5, description="pull every stream this often")
    flush_interval_s: float = Field(0.5, gt=0, le=0.5)
    fsync_interval_s: float = Field(5.0, gt=0, le=30)
    clock_offset_interval_s: float = Field(5.0, gt=0)
    min_free_disk_mb: float = Field(1000.0, ge=0, description="refuse to start a take below this")
    reserve_disk_mb: float = Field(200.0, ge=0, description="stop the take cleanly below this")
    stop_drain_timeout_s: float = Field(2.0, gt=0)
    irregular_drain_s: float = Field(1.2, ge=0, description="wait for late irregular samples at stop")
    stream_wait_s: float = Field(15.0, gt=0, description="how long to wait for the rig's streams")


class CameraSync(BaseModel):
    """What the sync controller must know about a camera to place a flash inside a frame."""

    model_config = ConfigDict(extra="forbid")

    shutter_angle_deg: float = Field(180.0, gt=0, le=360, description="exposure = angle / 360 / fps")
    exposure_s: float | None = Field(None, gt=0, description="a fixed exposure (phones); overrides the angle")
    gamma: float = Field(2.2, gt=0, description="the camera's transfer curve: level = light ** (1 / gamma)")
    led_region: list[int] | None = Field(None, min_length=4, max_length=4,
                                         description="x, y, width, height of the LED in stored frames; "
                                                     "default: found automatically")


class SyncSettings(BaseModel):
    """The sync controller: pulse trains during every take, and alignment of every stream after it."""

    model_config = ConfigDict(extra="forbid")

    trigger: str = Field("", description="the trigger box's device id (default: the rig's only trigger device)")
    start_train: bool = True
    end_train: bool = True
    every_s: float | None = Field(None, gt=0, description="also a train every this many seconds during a take")
    settle_s: float = Field(0.4, ge=0, le=5, description="after the end train, wait this long before the take "
                                                         "stops: every device's latency must fit in it")
    align_after_take: bool = Field(True, description="align every take when it ends (else: flexcap sync TAKE)")
    heart_channels: list[str] = Field(default_factory=list, description="EMG channels that carry the heart "
                                      "artifact, as 'stream:label' (default: searched among all EMG channels)")
    cameras: dict[str, CameraSync] = Field(default_factory=dict)

    def camera(self, camera_id: str) -> CameraSync:
        return self.cameras.get(camera_id, CameraSync())


class DeviceConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    kind: str
    id: str = Field(pattern=ID_PATTERN)
    connection: str = ""
    enabled: bool = True
    settings: dict[str, Any] = Field(default_factory=dict)


class RigCalibration(BaseModel):
    """The rig file's [calibration] table: the board the lab prints and calibrates with."""

    model_config = ConfigDict(extra="forbid")

    board: BoardSpec | None = Field(None, description="None: flexcap's default board (7x5 squares of 100 mm), "
                                    "with a warning: a board of another size would scale every millimetre")


class Rig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=ID_PATTERN)
    description: str = ""
    sessions_dir: str = "sessions"
    lsl: LslSettings = LslSettings()
    recorder: RecorderSettings = RecorderSettings()
    sim: SimLabSettings | None = None
    sync: SyncSettings = SyncSettings()
    calibration: RigCalibration = RigCalibration()
    devices: list[DeviceConfig]

    @field_validator("devices")
    @classmethod
    def _unique_ids(cls, devices: list[DeviceConfig]) -> list[DeviceConfig]:
        seen: set[str] = set()
        for dev in devices:
            if dev.id in seen:
                raise ValueError(f"device id {dev.id!r} is used twice; ids must be unique")
            seen.add(dev.id)
        return devices

    _source: str = "<rig>"
    _parsed: dict[str, BaseModel] = {}

    @property
    def source(self) -> str:
        return self._source

    def enabled_devices(self) -> list[DeviceConfig]:
        return [d for d in self.devices if d.enabled]

    def trigger_id(self) -> str | None:
        """The trigger box the sync controller fires (None: the rig has none)."""
        if self.sync.trigger:
            return self.sync.trigger
        boxes = [d.id for d in self.enabled_devices() if d.kind == "trigger"]
        return boxes[0] if len(boxes) == 1 else None

    def context(self, device_id: str) -> DriverContext:
        dev = self.device(device_id)
        return DriverContext(device_id=dev.id, kind=dev.kind, rig_name=self.name, connection=dev.connection,
                             settings=self._parsed[dev.id], sim=self.sim)

    def device(self, device_id: str) -> DeviceConfig:
        for dev in self.devices:
            if dev.id == device_id:
                return dev
        raise RigError(f"{self._source}: no device with id {device_id!r}; devices: "
                       + ", ".join(d.id for d in self.devices))

    def snapshot(self) -> dict[str, Any]:
        """The rig as stored with every take (JSON-able)."""
        return {"source": self._source, **self.model_dump(mode="json")}


class TakeInfo(BaseModel):
    """What names a take: who, what, which repetition."""

    model_config = ConfigDict(extra="forbid")

    subject: str = Field(pattern=ID_PATTERN, description="pseudonymous subject id")
    action: str = Field(pattern=ID_PATTERN)
    repetition: int = Field(ge=1)
    operator: str = ""


def _loc(loc: tuple[Any, ...]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "(top level)"


def describe_validation_error(source: str, err: ValidationError, prefix: str = "") -> str:
    lines = []
    for e in err.errors():
        key = _loc(tuple(e["loc"]))
        if prefix:
            key = prefix + ("" if key == "(top level)" else "." + key)
        got = e.get("input")
        got_text = "" if e["type"] == "missing" or isinstance(got, dict) else f" (got {got!r})"
        lines.append(f"{source}: {key}: {e['msg']}{got_text}")
    return "\n".join(lines)


def parse_rig(data: dict[str, Any], source: str = "<rig>") -> Rig:
    try:
        rig = Rig.model_validate(data)
    except ValidationError as err:
        raise RigError(describe_validation_error(source, err)) from None
    parsed: dict[str, BaseModel] = {}
    for i, dev in enumerate(rig.devices):
        where = f"devices[{i}] (id {dev.id!r})"
        try:
            cls = driver_class(dev.kind)
        except UnknownDriverKind as exc:
            raise RigError(f"{source}: {where}.kind: {exc.args[0]}") from None
        try:
            parsed[dev.id] = cls.Settings.model_validate(dev.settings)
            cls.stream_specs(DriverContext(dev.id, dev.kind, rig.name, dev.connection, parsed[dev.id], rig.sim))
        except ValidationError as err:
            raise RigError(describe_validation_error(source, err, f"{where}.settings")) from None
        except ValueError as exc:
            raise RigError(f"{source}: {where}.settings: {exc}") from None
    kinds = {d.id: d for d in rig.devices}
    for key, dev_id, why in (("sync.trigger", rig.sync.trigger, "the trigger box the sync controller fires"),
                             ("sim.trigger", rig.sim.trigger if rig.sim else "", "the emulated box that drives the "
                              "simulated LED and trigger inputs")):
        if dev_id and (dev_id not in kinds or kinds[dev_id].kind != "trigger"):
            raise RigError(f"{source}: {key}: {dev_id!r} is not a device of kind 'trigger' ({why})")
    if rig.sim is not None and rig.sim.trigger and kinds[rig.sim.trigger].connection != "emulator":
        raise RigError(f"{source}: sim.trigger: {rig.sim.trigger!r} must have connection = 'emulator'")
    unknown = sorted(set(rig.sync.cameras) - set(kinds))
    if unknown:
        raise RigError(f"{source}: sync.cameras: no device {unknown[0]!r} in the rig")
    rig._source = source
    rig._parsed = parsed
    return rig


def load_rig(path: str | Path | None = None) -> Rig:
    """Read a rig file (TOML, or the JSON snapshot a supervisor hands its children); None means the
    simulated lab shipped with flexcap. A bare name is one of the rigs shipped with flexcap."""
    path = Path(path) if path is not None else SIM_RIG
    bundled = SIM_RIG.with_name(f"{path.name}.toml")
    if not path.is_file() and not path.suffix and path.parent == Path(".") and bundled.is_file():
        path = bundled
    if not path.is_file():
        names = ", ".join(sorted(p.stem for p in SIM_RIG.parent.glob("*.toml")))
        raise RigError(f"{path}: rig file not found (the rigs shipped with flexcap: {names})")
    try:
        text = path.read_text(encoding="utf-8")
        if path.suffix == ".json":
            data = json.loads(text)
            source = data.pop("source", str(path))
            return parse_rig(data, source)
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise RigError(f"{path}: not valid TOML: {exc}") from None
    except json.JSONDecodeError as exc:
        raise RigError(f"{path}: not valid JSON: {exc}") from None
    except UnicodeDecodeError as exc:
        raise RigError(f"{path}: not a text file: {exc}") from None
    return parse_rig(data, str(path))


def take_dir_name(number: int, action: str, repetition: int) -> str:
    return f"{number:03d}_{action}_{repetition}"


TAKE_DIR_RE = re.compile(r"^(\d{3,})_(.+)_(\d+)$")
