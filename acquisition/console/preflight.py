"""The pre-flight check before a visit's first take: every device at its rate, a test sync pulse seen
by every camera and EMG unit, sane clock offsets, and disk for the rest of the plan. Each failure
says what to do.

The sync pulse check records a short take (action "preflight", kept in the session as the record of
the rig's state at the start of the visit): its start and end trains are aligned exactly as a real
take's, so "seen" means what it will mean for the data. The take's size per second is also the rig's
data rate for the disk check.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from acquisition.console.health import STALE_S, rate_problems
from acquisition.sync.report import REPORT_JSON

PREFLIGHT_ACTION = "preflight"
MAX_RTT_MS = 10.0       # a clock-offset probe slower than this is no longer a sane measurement
MAX_OFFSET_AGE_S = 30.0  # offsets are measured every few seconds
DISK_MARGIN = 1.2        # room for retakes and the pre-flight's own estimate


@dataclass
class Check:
    name: str
    ok: bool
    text: str   # what was found, and when not ok, what to do

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def check_devices(devices: list[str], statuses: dict[str, tuple[dict[str, Any], float]], now: float) -> list[Check]:
    out = []
    for device in devices:
        entry = statuses.get(device)
        if entry is None:
            out.append(Check(f"{device} present", False, f"{device} has sent no status: is it switched on and "
                             "plugged in? Restart it in the rig panel; the driver's last error is shown there"))
            continue
        status, at = entry
        if now - at > STALE_S or not status.get("connected"):
            why = status.get("last_error") or f"no status for {now - at:.0f} s"
            out.append(Check(f"{device} present", False, f"{device} is not connected ({why}): check its cable, "
                             "battery or radio, then Restart it in the rig panel"))
            continue
        slow = rate_problems(status)
        out.append(Check(f"{device} rate", not slow, "at its nominal rate" if not slow else
                         f"{'; '.join(slow)}: check the USB or radio link (move the receiver closer, another port), "
                         "then Restart it"))
    return out


def check_sync(take_dir: Path, emg_ids: list[str], camera_ids: list[str],
               verdict: dict[str, Any] | None) -> list[Check]:
    """Did every camera and EMG unit see the test trains? Read from the pre-flight take's alignment."""
    report_file = take_dir / REPORT_JSON
    if not report_file.is_file():
        why = verdict["text"] if verdict else "alignment did not run"
        return [Check("test sync pulse", False, f"no sync report for the test take ({why}): check the trigger box "
                      "(rig panel) and run the pre-flight again")]
    rows = {r["stream"]: r for r in json.loads(report_file.read_text())["streams"]}
    out = []
    for device in [*camera_ids, *emg_ids]:
        row = rows.get(device)
        camera = device in camera_ids
        if row is not None and row["matched"] > 0:
            out.append(Check(f"{device} saw the pulse", True, f"{row['matched']} sync events matched"))
            continue
        problem = (row or {}).get("problem") or "its stream was not in the test take"
        advice = ("make sure the LED is in its view and not covered, and the camera is in focus"
                  if camera else "check the trigger cable into its trigger input")
        out.append(Check(f"{device} saw the pulse", False, f"{device} did not see the test sync pulse ({problem}): "
                         f"{advice}"))
    return out


def check_clocks(recorder_status: dict[str, Any] | None, stream_ids: list[str]) -> list[Check]:
    if not recorder_status:
        return [Check("clock offsets", False, "the recorder has published no status: restart the console")]
    streams = recorder_status.get("streams", {})
    bad = []
    for sid in stream_ids:
        e = streams.get(sid, {})
        if "offset_ms" not in e:
            bad.append(f"{sid}: not measured yet")
        elif e.get("rtt_ms", 0) > MAX_RTT_MS:
            bad.append(f"{sid}: round trip {e['rtt_ms']:.1f} ms")
        elif e.get("age_s", 0) > MAX_OFFSET_AGE_S:
            bad.append(f"{sid}: last measured {e['age_s']:.0f} s ago")
    if bad:
        return [Check("clock offsets", False, "; ".join(bad[:4]) + (f" and {len(bad) - 4} more" if len(bad) > 4 else "")
                      + ": check the network link to the driver's host (a wired link, no Wi-Fi power saving), "
                      "then run the pre-flight again")]
    worst = max((abs(streams[s]["offset_ms"]) for s in stream_ids if s in streams), default=0.0)
    return [Check("clock offsets", True, f"{len(stream_ids)} streams measured, largest offset {worst:.3f} ms")]


def check_disk(free_bytes: int, rate_bytes_s: float, remaining_s: float, remaining_takes: int,
               reserve_bytes: int, where: Path) -> Check:
    need = rate_bytes_s * remaining_s * DISK_MARGIN + reserve_bytes
    text = (f"{remaining_takes} takes left, {remaining_s / 60:.0f} min at {rate_bytes_s / 1e6:.1f} MB/s: "
            f"needs {need / 1e9:.1f} GB, {free_bytes / 1e9:.1f} GB free on {where}")
    if free_bytes >= need:
        return Check("free disk", True, text)
    return Check("free disk", False, f"{text}: free space or point sessions_dir at a larger disk before the visit")
