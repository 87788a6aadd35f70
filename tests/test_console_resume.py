"""The visit plan survives the console process being killed mid-take: a new console on the same
session resumes where the visit stopped, and the killed take keeps what was recorded."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import h5py
import psutil
import pytest
from console_kit import close_dialogs, message_texts, pump, wait_until

from acquisition.console.window import ConsoleWindow
from acquisition.validate import validate_take

pytestmark = pytest.mark.timeout(600)
ROOT = Path(__file__).resolve().parents[1]


def test_plan_resumes_after_the_console_process_is_killed(qapp, tmp_path: Path) -> None:
    sessions = tmp_path / "sessions"
    child = subprocess.Popen([sys.executable, str(ROOT / "tests" / "console_child.py"), str(sessions), "S09"],
                             stdout=subprocess.PIPE, text=True, cwd=ROOT)
    try:
        line = child.stdout.readline()
        assert line.startswith("RECORDING "), f"the console child said {line!r} (exit {child.poll()})"
        said = json.loads(line.removeprefix("RECORDING "))
        time.sleep(2.0)
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait(10)
    deadline = time.monotonic() + 30  # the rig's processes die with the console (PR_SET_PDEATHSIG)
    while any(psutil.pid_exists(p) and psutil.Process(p).status() != psutil.STATUS_ZOMBIE for p in said["pids"]):
        assert time.monotonic() < deadline, "rig processes outlived the killed console"
        time.sleep(0.2)
    killed = Path(said["take"])
    assert killed.name == "002_back_squat_2"
    with h5py.File(killed / "take.h5", "r", swmr=True) as f:  # what was flushed before the kill is there
        assert f["streams/emg1/time_stamps"].shape[0] > 2048

    window = ConsoleWindow(None, str(sessions), "S09", None, "ana")
    window.show()
    try:
        wait_until(lambda: window.rig_ready and window.plan.state is not None, 90, "the rig and the session")
        state = window.plan.state
        assert state["progress"] == [1, 200]
        assert state["steps"][0]["takes"] == [{"take": "001_back_squat_1", "bad": False,
                                               "sync": state["steps"][0]["takes"][0]["sync"]}]
        assert state["next"] == 1 and state["steps"][1]["takes"] == []  # the killed take never finished
        pump(4.0)
        window.record()
        wait_until(lambda: window.recording is not None, 30, "the take to start")
        assert window.recording["take"] == "003_back_squat_2"  # numbered after the killed one, never over it
        pump(1.5)
        window.stop()
        wait_until(lambda: window.take_log and not window.busy, 90, "the take to stop")
        assert validate_take(Path(window.take_log[-1]["path"])) == []
        assert window.plan.state["progress"] == [2, 200] and window.plan.state["next"] == 2
        assert message_texts(window) == []
    finally:
        close_dialogs(window)
        window.close()
        wait_until(lambda: window.closing, 60, "the console to close")
    assert os.path.isdir(killed)
