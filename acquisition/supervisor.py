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
from typing import Any

from acquisition.config import Rig
from drivers.registry import driver_class
from drivers.runtime.process import ChildProcess

log = logging.getLogger(__name__)


def write_rig_snapshot(rig: Rig) -> str:
    """The rig as JSON in a private temp file, for children (works for rigs not read from a file)."""
    fd, path = tempfile.mkstemp(prefix=f"flexcap-rig-{rig.name}-", suffix=".json")
    with os.fdopen(fd, "w") as f:
        json.dump(rig.snapshot(), f)
    return path


class Supervisor:
    def __init__(self, rig: Rig, on_event: Callable[[str, dict[str, Any]], None] | None = None) -> None:
        self.rig = rig
        self.on_event = on_event
        self.children: dict[str, ChildProcess] = {}
        self._rig_file = write_rig_snapshot(rig)

    def start(self) -> None:
        for dev in self.rig.enabled_devices():
            self.start_device(dev.id)

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

    def camera_ids(self) -> list[str]:
        return [d.id for d in self.rig.enabled_devices() if driver_class(d.kind).writes_frames]

    def sim_ids(self) -> list[str]:
        return [d.id for d in self.rig.enabled_devices() if d.kind.startswith("sim-")]

    def pids(self) -> dict[str, int]:
        return {k: c.pid for k, c in self.children.items()}

    def alive(self) -> dict[str, bool]:
        return {k: c.alive() for k, c in self.children.items()}

    def stop(self) -> None:
        for child in self.children.values():  # all at once, then wait for each
            child.close_stdin()
        for device_id in list(self.children):
            self.stop_device(device_id)
        try:
            os.unlink(self._rig_file)
        except FileNotFoundError:
            pass
