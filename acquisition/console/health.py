"""The rig's health as the console shows it: one row per device (a light, rates, drops, latency,
battery, last error) and the alarms of the red banner. Plain functions of the status streams, so
the rules are tested without a window."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

STALE_S = 3.5         # a status stream says something every second: silence this long means lost
RATE_TOLERANCE = 0.1  # measured within 10 % of nominal is "at its rate"
GREEN, AMBER, RED, GREY = "green", "amber", "red", "grey"


@dataclass
class DeviceRow:
    device: str
    kind: str
    light: str
    state: str       # a word for the light: ok, slow, lost, starting, stopped
    rate: str
    drops: str
    latency: str
    battery: str
    error: str


def rate_problems(status: dict[str, Any]) -> list[str]:
    """'emg2: 1500 of 2048 Hz' for each stream off its nominal rate."""
    out = []
    for key, r in status.get("rates", {}).items():
        nominal, measured = r.get("nominal") or 0, r.get("measured") or 0
        if nominal > 0 and abs(measured - nominal) > RATE_TOLERANCE * nominal:
            out.append(f"{key}: {measured:g} of {nominal:g} Hz")
    return out


def _rate_text(status: dict[str, Any]) -> str:
    parts = []
    for key, r in status.get("rates", {}).items():
        if (r.get("nominal") or 0) > 0:
            device = status.get("device", "")
            name = "" if key == device else f"{key.removeprefix(device + '_')} "
            parts.append(f"{name}{r['measured']:.1f}/{r['nominal']:g}")
    return ", ".join(parts) or "-"


def _latency_text(device: str, recorder: dict[str, Any] | None) -> str:
    if not recorder:
        return "-"
    values = [e["latency"]["ms"] for sid, e in recorder.get("streams", {}).items()
              if (sid == device or sid.startswith(device + "_")) and e.get("latency")]
    return f"{max(values):.1f} ms" if values else "-"


def device_rows(devices: list[tuple[str, str]], statuses: dict[str, tuple[dict[str, Any], float]], now: float,
                stopped: set[str] = frozenset()) -> list[DeviceRow]:
    """`devices`: (id, kind) of the rig's devices; `statuses`: the newest status of each and when it
    arrived (on `now`'s clock); `stopped`: devices the operator disconnected."""
    recorder = statuses.get("recorder", ({}, 0.0))[0]
    rows = []
    for device, kind in devices:
        entry = statuses.get(device)
        if device in stopped:
            rows.append(DeviceRow(device, kind, GREY, "stopped", "-", "-", "-", "-", "disconnected by the operator"))
            continue
        if entry is None:
            rows.append(DeviceRow(device, kind, AMBER, "starting", "-", "-", "-", "-", "no status yet"))
            continue
        status, at = entry
        battery = status.get("battery")
        row = DeviceRow(device, kind, GREEN, "ok", _rate_text(status), str(status.get("drops", 0)),
                        _latency_text(device, recorder), "-" if battery is None else f"{battery} %",
                        status.get("last_error") or "")
        if now - at > STALE_S:
            row.light, row.state = RED, "lost"
            row.error = f"no status for {now - at:.0f} s (driver stopped?)" + (f"; {row.error}" if row.error else "")
        elif not status.get("connected"):
            row.light, row.state = RED, "lost"
        elif rate_problems(status):
            row.light, row.state = AMBER, "slow"
        rows.append(row)
    return rows


@dataclass(frozen=True)
class Alarm:
    key: str     # the condition; an acknowledged alarm comes back only when its key changes
    text: str


def alarms(rows: list[DeviceRow], drops_at_start: dict[str, int], camera_ids: set[str],
           free_bytes: int, rate_bytes_s: float, low_disk_bytes: int, recording: bool) -> list[Alarm]:
    """What the red banner says: lost devices, frames dropped during this take, a disk running low."""
    out = []
    for r in rows:
        if r.light == RED:
            out.append(Alarm(f"lost:{r.device}", f"{r.device} lost: {r.error or 'not connected'}"))
        if recording and r.device in camera_ids and r.drops.isdigit():
            dropped = int(r.drops) - drops_at_start.get(r.device, int(r.drops))
            if dropped > 0:
                out.append(Alarm(f"drops:{r.device}:{dropped}", f"{r.device} dropped {dropped} frames in this take"))
    if free_bytes and free_bytes < low_disk_bytes:
        out.append(Alarm("disk:low", f"disk nearly full: {free_bytes / 1e9:.1f} GB free"))
    elif recording and rate_bytes_s > 0 and free_bytes / rate_bytes_s < 600:
        out.append(Alarm("disk:minutes", f"disk full in {free_bytes / rate_bytes_s / 60:.0f} min at this rate"))
    return out
