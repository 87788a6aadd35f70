"""Starts and stops the rig's driver processes (one per device) and relays commands to them.

Children die with the supervisor (drivers.runtime.process): no driver survives its parent, even one
killed with SIGKILL.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from acquisition.config import Rig
from drivers.registry import driver_class
from drivers.runtime.driver import EMULATED
from drivers.runtime.process import ChildError, ChildProcess

log = logging.getLogger(__name__)


def write_rig_snapshot(rig: Rig) -> str:
    """The rig as JSON in a private temp file, for children (works for rigs not read from a file)."""
    fd, path = tempfile.mkstemp(prefix=f"flexcap-rig-{rig.name}-", suffix=".json")
    with os.fdopen(fd, "w") as f:
        json.dump(rig.snapshot(), f)
    return path


# kinds whose emulator is a process of its own (serial devices on a pty, a camera's HTTP side); BLE
# straps are emulated inside their driver, at the radio library's interface, and so are the capture
# cards of simulated cinema cameras (at OpenCV's capture interface)
EMULATOR_COMMANDS = {"emg": ["emulate", "emg"], "camera": ["emulate", "camera"], "trigger": ["emulate", "trigger"]}


def camera_ids(rig: Rig) -> list[str]:
    """The rig's enabled devices that write frame files, in the rig file's order."""
    return [d.id for d in rig.enabled_devices() if driver_class(d.kind).writes_frames]


class Supervisor:
    def __init__(self, rig: Rig, on_event: Callable[[str, dict[str, Any]], None] | None = None) -> None:
        self.rig = rig
        self.on_event = on_event
        self.children: dict[str, ChildProcess] = {}
        self.emulators: dict[str, ChildProcess] = {}
        self._rig_file = write_rig_snapshot(rig)

    def start(self) -> None:
        emulated = [d.id for d in self.rig.enabled_devices()
                    if d.connection == EMULATED and d.kind in EMULATOR_COMMANDS]
        for device_id in emulated:
            self.start_emulator(device_id)
        for device_id in emulated:  # wait until each pty or server exists: drivers connect at their first try
            self.emulators[device_id].request("path", timeout=20)
        for dev in self.rig.enabled_devices():
            self.start_device(dev.id)

    def start_emulator(self, device_id: str) -> ChildProcess:
        dev = self.rig.device(device_id)
        child = ChildProcess(f"emulator {device_id}",
                             [*EMULATOR_COMMANDS[dev.kind], "--rig", self._rig_file, "--id", device_id,
                              "--control", "stdio"], on_event=self.on_event)
        self.emulators[device_id] = child
        log.info("started the emulator of %s, pid %d", device_id, child.pid)
        return child

    def start_device(self, device_id: str) -> ChildProcess:
        dev = self.rig.device(device_id)
        old = self.children.get(device_id)
        if old is not None and old.alive():
            return old
        child = ChildProcess(f"driver {device_id}",
                             ["driver", dev.kind, "--rig", self._rig_file, "--id", device_id, "--control", "stdio"],
                             on_event=self.on_event)
        self.children[device_id] = child
        log.info("started %s (%s), pid %d", device_id, dev.kind, child.pid)
        return child

    def stop_device(self, device_id: str) -> None:
        child = self.children.pop(device_id, None)
        if child is not None:
            child.stop()

    def restart_device(self, device_id: str) -> ChildProcess:
        self.stop_device(device_id)
        return self.start_device(device_id)

    def request(self, device_id: str, cmd: str, timeout: float = 10.0, **args: Any) -> Any:
        return self.children[device_id].request(cmd, timeout=timeout, **args)

    def request_each(self, args_by_device: dict[str, dict[str, Any]], cmd: str,
                     timeout: float = 10.0) -> dict[str, Any]:
        """One command to several devices at once, each with its own arguments (a camera's answer may wait
        on its own HTTP round trip). A device's failure (ChildError, or KeyError when it is not running) is
        its value in the result, never raised."""
        if not args_by_device:
            return {}
        with ThreadPoolExecutor(max_workers=len(args_by_device)) as pool:
            futures = {d: pool.submit(self.request, d, cmd, timeout, **a) for d, a in args_by_device.items()}
        replies: dict[str, Any] = {}
        for device_id, fut in futures.items():
            try:
                replies[device_id] = fut.result()
            except (ChildError, KeyError) as exc:
                replies[device_id] = exc
        return replies

    def running_cameras(self) -> list[str]:
        return [c for c in self.camera_ids() if c in self.children]

    def camera_ids(self) -> list[str]:
        return camera_ids(self.rig)

    def truth_sources(self) -> list[ChildProcess]:
        """Processes that know a simulated device's true timing: sim drivers, drivers that emulate (part
        of) their device in-process (a BLE strap, a capture card), and emulator processes."""
        sims = [self.children[d.id] for d in self.rig.enabled_devices() if d.id in self.children
                and driver_class(d.kind).reports_truth and (d.kind.startswith("sim-") or d.connection == EMULATED)]
        return sims + list(self.emulators.values())

    def pids(self) -> dict[str, int]:
        return {**{k: c.pid for k, c in self.children.items()},
                **{f"{k} emulator": c.pid for k, c in self.emulators.items()}}

    def stop(self) -> None:
        for child in [*self.children.values(), *self.emulators.values()]:  # all at once, then wait for each
            child.close_stdin()
        for device_id in list(self.children):
            self.stop_device(device_id)
        for child in self.emulators.values():
            child.stop()
        self.emulators.clear()
        try:
            os.unlink(self._rig_file)
        except FileNotFoundError:
            pass
