"""Driver kinds known to flexcap. Modules load on first use (a camera driver pulls in OpenCV)."""

from __future__ import annotations

import importlib

from drivers.runtime.driver import Driver

DRIVER_KINDS: dict[str, str] = {
    "emg": "drivers.emg.driver:EmgDriver",
    "chest": "drivers.chest.driver:ChestDriver",
    "camera": "drivers.camera.driver:CameraDriver",
    "trigger": "drivers.trigger.driver:TriggerDriver",
}


class UnknownDriverKind(KeyError):
    pass


def driver_class(kind: str) -> type[Driver]:
    try:
        target = DRIVER_KINDS[kind]
    except KeyError:
        raise UnknownDriverKind(f"unknown device kind {kind!r}; known kinds: {', '.join(sorted(DRIVER_KINDS))}") \
            from None
    module, name = target.split(":")
    return getattr(importlib.import_module(module), name)
