"""Shared fixtures. LSL stays on this machine (the project's lsl_api.cfg), Qt runs offscreen."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
os.environ["LSLAPICFG"] = str(ROOT / "lsl_api.cfg")
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")


def small_rig_data(devices: list[dict], **recorder: object) -> dict:
    """A rig dict with the simulated lab's [sim] table and the given devices."""
    return {
        "name": "testlab",
        "lsl": {"scope": "machine", "session_id": "flexcap-sim"},
        "recorder": {"min_free_disk_mb": 50, "reserve_disk_mb": 10, "irregular_drain_s": 1.2, **recorder},
        "sim": {"seed": 3, "pulse_period_s": 1.0, "pulse_width_s": 0.05, "lift_period_s": 2.0},
        "devices": devices,
    }


# a simulated cinema camera: capture card at OpenCV's interface, Blackmagic REST emulator on localhost
SMALL_CAMERA = {"fps": 30, "width": 320, "height": 180, "emulator": {"view": "cam1"}}
# a Shimmer3 ExG emulator on a pty at 512 Hz, read by the real serial driver
EMULATED_EMG = {"kind": "emg", "id": "emg", "connection": "emulator",
                "settings": {"protocol": "shimmer3-exg", "rate": 512}}


@pytest.fixture(scope="session")
def sim_take(tmp_path_factory: pytest.TempPathFactory):
    """One take of the full simulated lab (all eight devices), recorded once for the whole test run."""
    from acquisition.config import TakeInfo, load_rig
    from acquisition.rig import RigController

    rig = load_rig()
    sessions = tmp_path_factory.mktemp("sessions")
    with RigController(rig, sessions) as ctl:
        missing = ctl.start()
        assert missing == []
        # as an operator does: the take starts once the rig has settled (17 processes have just started on 2
        # cores; the device clock fits settle on arrivals that are late while they start)
        time.sleep(5.0)
        # 18 s, five trains (at the start, every 5 s, at the end): the strap is aligned through ~22 heartbeats.
        # In a FLEX repetition's 12 s its own 95 % error estimate ranged 1.05-1.86 ms over 26 takes (tolerance
        # 2 ms), in a 6 s take it went over: a test take must not depend on that luck.
        result = ctl.record(TakeInfo(subject="S01", action="squat", repetition=1), duration=18.0)
    return result


def wait_for_stream(prop: str, value: str, timeout: float = 20.0):
    """The first LSL stream whose `prop` equals `value` (a continuous resolver: one-shot resolves can
    miss a stream while many others answer)."""
    import time

    import pylsl

    resolver = pylsl.ContinuousResolver(prop, value)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = resolver.results()
        if found:
            return found[0]
        time.sleep(0.1)
    raise AssertionError(f"no LSL stream with {prop} = {value!r} within {timeout:g} s")
