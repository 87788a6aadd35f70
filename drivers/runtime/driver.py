"""The driver runtime: a driver declares its streams, the runtime owns the outlets, the reconnect loop
with back-off, and the status stream (connected, measured rate, drops, last error)."""

from __future__ import annotations

import json
import logging
import socket
import threading
import time
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np
import pylsl
from pydantic import BaseModel

from drivers.runtime.streams import (
    IRREGULAR_RATE,
    ChannelSpec,
    StreamSpec,
    channels,
    make_stream_info,
    source_id_for,
    stream_id_for,
)

log = logging.getLogger(__name__)

STATUS_KEY = "status"
EMULATED = "emulator"  # a device's connection when its emulator stands in for it
STATUS_TYPE = "FlexcapStatus"


class DeviceError(RuntimeError):
    """The device could not be opened or was lost; the runtime reconnects with back-off."""


@dataclass
class DriverContext:
    """Everything a driver instance needs to know about its device."""

    device_id: str
    kind: str
    rig_name: str = "standalone"
    connection: str = ""
    settings: BaseModel | None = None
    sim: Any = None  # the rig's simulated-lab settings (drivers.sim.lab.SimLabSettings) for sim devices
    labels: dict[str, str] = field(default_factory=dict)

    def spec(self, key: str, name: str, type_: str, chans: tuple[ChannelSpec, ...], nominal_srate: float,
             channel_format: str = "float32",
             extra_desc: dict[str, dict[str, str]] | None = None) -> StreamSpec:
        """Declare one stream of this device, with a stable source_id."""
        return StreamSpec(
            key=key,
            name=name,
            type=type_,
            channels=chans,
            nominal_srate=nominal_srate,
            channel_format=channel_format,
            source_id=source_id_for(self.rig_name, self.device_id, key),
            stream_id=stream_id_for(self.device_id, key),
            extra_desc=extra_desc or {},
        )


def status_spec(ctx: DriverContext) -> StreamSpec:
    return ctx.spec(STATUS_KEY, f"{ctx.device_id} status", STATUS_TYPE, channels(["status"], "json", "Status"),
                    IRREGULAR_RATE, "string")


class Driver(ABC):
    """One device. Subclasses implement open/read/close; read() publishes through self.publish()."""

    kind: ClassVar[str]
    Settings: ClassVar[type[BaseModel]]
    writes_frames: ClassVar[bool] = False  # camera drivers: answer start_recording / stop_recording
    reports_truth: ClassVar[bool] = False  # answers "truth" when its device is simulated in-process

    def __init__(self, ctx: DriverContext) -> None:
        self.ctx = ctx
        self.settings = ctx.settings if ctx.settings is not None else self.Settings()
        self._outlets: dict[str, pylsl.StreamOutlet] = {}
        self._specs: dict[str, StreamSpec] = {}
        self.pushed: dict[str, int] = {}
        self.drops = 0
        self.stop_event = threading.Event()  # set by the runtime; read() may wait on it instead of sleeping

    @classmethod
    @abstractmethod
    def stream_specs(cls, ctx: DriverContext) -> list[StreamSpec]:
        """The data streams this device publishes (the runtime adds the status stream)."""

    @abstractmethod
    def open(self) -> None:
        """Connect to the device. Raise DeviceError with a clear reason when it cannot."""

    @abstractmethod
    def read(self) -> None:
        """Wait briefly for data and publish it. Raise DeviceError when the device is lost."""

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release the device (called before a reconnect and at shutdown)."""

    def shutdown(self) -> None:  # noqa: B027 - optional hook
        """Called once when the driver process stops: finish files, stop device-side recording."""

    def commands(self) -> dict[str, Any]:
        """Extra control commands (name -> handler) the supervisor may send."""
        return {}

    def status_extra(self) -> dict[str, Any]:
        return {}

    # -- used by subclasses -------------------------------------------------------------------------
    def publish(self, key: str, samples: np.ndarray | list, stamps: np.ndarray | list[float]) -> None:
        """Push samples with explicit per-sample host (pylsl.local_clock) time stamps."""
        n = len(stamps)
        if n == 0:
            return
        outlet = self._outlets[key]
        if self._specs[key].channel_format == "string":
            outlet.push_chunk([list(s) for s in samples], [float(t) for t in stamps])
        else:
            outlet.push_chunk(samples, np.asarray(stamps, dtype=np.float64).tolist())
        self.pushed[key] = self.pushed.get(key, 0) + n

    def make_outlets(self) -> None:
        """Create the outlets once; they live across device reconnects so consumers never lose them."""
        if self._outlets:
            return
        specs = [*self.stream_specs(self.ctx), status_spec(self.ctx)]
        for spec in specs:
            self._specs[spec.key] = spec
            self._outlets[spec.key] = pylsl.StreamOutlet(make_stream_info(spec), chunk_size=0, max_buffered=360)
            self.pushed.setdefault(spec.key, 0)


class StatusReporter:
    """Measures each stream's rate over the last report interval and publishes a JSON status line."""

    def __init__(self, driver: Driver, interval_s: float = 1.0) -> None:
        self.driver = driver
        self.interval_s = interval_s
        self.connected = False
        self.last_error: str | None = None
        self.reconnects = 0
        self._last_t = pylsl.local_clock()
        self._last_counts = dict(driver.pushed)

    def due(self) -> bool:
        return pylsl.local_clock() - self._last_t >= self.interval_s

    def report(self) -> dict[str, Any]:
        now = pylsl.local_clock()
        dt = max(now - self._last_t, 1e-6)
        rates = {}
        for key, spec in self.driver._specs.items():
            if key == STATUS_KEY:
                continue
            count = self.driver.pushed.get(key, 0) - self._last_counts.get(key, 0)
            rates[key] = {"measured": round(count / dt, 3), "nominal": spec.nominal_srate}
        status = {
            "device": self.driver.ctx.device_id,
            "kind": self.driver.ctx.kind,
            "connected": self.connected,
            "rates": rates,
            "drops": self.driver.drops,
            "reconnects": self.reconnects,
            "last_error": self.last_error,
            "host": socket.gethostname(),
            **self.driver.status_extra(),
        }
        self._last_t = now
        self._last_counts = dict(self.driver.pushed)
        self.driver.publish(STATUS_KEY, [[json.dumps(status)]], [now])
        return status


def backoff_delays(first: float = 0.25, factor: float = 2.0, cap: float = 5.0):
    """0.25, 0.5, 1, 2, 4, 5, 5, ... seconds."""
    delay = first
    while True:
        yield delay
        delay = min(cap, delay * factor)


def run_driver(driver: Driver, stop: threading.Event, status_interval_s: float = 1.0) -> None:
    """Run a driver until `stop` is set: reconnect with back-off, report status, never raise."""
    driver.stop_event = stop
    driver.make_outlets()
    status = StatusReporter(driver, status_interval_s)
    delays = backoff_delays()
    next_attempt = 0.0
    while not stop.is_set():
        if not status.connected:
            now = time.monotonic()
            if now < next_attempt:
                stop.wait(min(0.1, next_attempt - now))
            else:
                try:
                    driver.open()
                    status.connected = True
                    status.last_error = None
                    delays = backoff_delays()
                    log.info("%s: connected", driver.ctx.device_id)
                except Exception as exc:
                    status.last_error = _describe(exc)
                    _safe_close(driver)  # release whatever the failed attempt opened (a port, a BLE link)
                    delay = next(delays)
                    next_attempt = time.monotonic() + delay
                    log.warning("%s: cannot open: %s (retry in %.2g s)", driver.ctx.device_id,
                                status.last_error, delay)
        else:
            try:
                driver.read()
            except Exception as exc:
                status.last_error = _describe(exc)
                status.connected = False
                status.reconnects += 1
                log.warning("%s: lost: %s", driver.ctx.device_id, status.last_error)
                _safe_close(driver)
                next_attempt = time.monotonic() + next(delays)
        if status.due():
            _safe_report(status)
    _safe_close(driver)
    try:
        driver.shutdown()
    finally:
        status.connected = False
        _safe_report(status)


def _safe_report(status: StatusReporter) -> None:
    try:
        status.report()
    except Exception as exc:  # a broken status field must not stop the data
        log.warning("%s: status report failed: %s", status.driver.ctx.device_id, _describe(exc))


def _safe_close(driver: Driver) -> None:
    try:
        driver.close()
    except Exception as exc:  # closing a broken device must not stop the loop
        log.warning("%s: close failed: %s", driver.ctx.device_id, _describe(exc))


def _describe(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return text if isinstance(exc, DeviceError) else f"{type(exc).__name__}: {text}"

