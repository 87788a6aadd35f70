"""Where flexcap keeps per-user runtime files (LSL configuration, emulator port links)."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path


def runtime_dir() -> Path:
    path = Path(tempfile.gettempdir()) / f"flexcap-{os.getuid()}"
    path.mkdir(parents=True, exist_ok=True)
    return path


def write_atomically(path: Path, text: str) -> None:
    """Replace a file's content in one step: a reader (or a crash) never sees half of it."""
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text)
    tmp.replace(path)


def device_runtime_path(rig_name: str, device_id: str, suffix: str) -> Path:
    """A per-device runtime file (an emulator's port link or address, a camera's preview). The
    supervisor's pid (which its driver and emulator children share) keeps two rigs apart."""
    supervisor = os.environ.get("FLEXCAP_PARENT_PID")
    tag = f"-{supervisor}" if supervisor else ""
    return runtime_dir() / f"{rig_name}-{device_id}{tag}{suffix}"


def emulator_link(rig_name: str, device_id: str) -> Path:
    """The stable path of an emulated serial device (a symlink to its current pseudo-terminal), like
    a udev /dev/serial/by-id link: it survives the emulator's simulated unplug and replug."""
    return device_runtime_path(rig_name, device_id, ".tty")


def emulator_address_file(rig_name: str, device_id: str) -> Path:
    """Where a network device's emulator writes the URL it serves (it binds a free loopback port)."""
    return device_runtime_path(rig_name, device_id, ".url")
