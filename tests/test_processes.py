"""Driver processes never outlive their supervisor; the CLI's commands work from a shell."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import h5py
import numpy as np
import psutil
import pylsl

from acquisition.config import TakeInfo, parse_rig
from acquisition.rig import RigController
from tests.conftest import EMULATED_EMG, SMALL_CAMERA, small_rig_data, wait_for_stream

ROOT = Path(__file__).resolve().parents[1]
FLEXCAP = [sys.executable, "-m", "acquisition.cli"]

PARENT = textwrap.dedent("""
    import json, sys, time
    sys.path.insert(0, {root!r})
    from acquisition.config import parse_rig
    from acquisition.rig import RigController
    from tests.conftest import EMULATED_EMG, SMALL_CAMERA, small_rig_data, wait_for_stream
    rig = parse_rig(small_rig_data([
        EMULATED_EMG,
        {{"kind": "camera", "id": "cam", "connection": "emulator", "settings": SMALL_CAMERA}},
        {{"kind": "trigger", "id": "trig", "connection": "emulator"}},
    ]), "orphan test")
    ctl = RigController(rig)
    ctl.start()
    print(json.dumps([*ctl.supervisor.pids().values(), ctl.recorder.pid]), flush=True)
    time.sleep(600)
""")


def gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def test_killing_the_supervisor_leaves_no_orphans():
    parent = subprocess.Popen([sys.executable, "-c", PARENT.format(root=str(ROOT))], stdout=subprocess.PIPE,
                              text=True)
    pids = json.loads(parent.stdout.readline())
    # 3 drivers, the EMG, camera and trigger-box emulators, the recorder
    assert len(pids) == 7 and all(psutil.pid_exists(p) for p in pids)
    parent.send_signal(signal.SIGKILL)
    parent.wait()
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline and not all(gone(p) for p in pids):
        time.sleep(0.1)
    assert [p for p in pids if not gone(p)] == []


def test_restart_one_device_keeps_the_others(tmp_path):
    rig = parse_rig(small_rig_data([EMULATED_EMG, {"kind": "trigger", "id": "trig", "connection": "emulator"}]),
                    "test rig")
    with RigController(rig, tmp_path) as ctl:
        assert ctl.start() == []
        before = ctl.supervisor.pids()
        ctl.supervisor.restart_device("emg")
        after = ctl.supervisor.pids()
        assert after["trig"] == before["trig"] and after["emg"] != before["emg"]
        # the recorder's inlet recovers the restarted stream (same source_id) by itself
        received = ctl.status()["streams"]["emg"]["received"]
        deadline = time.monotonic() + 20
        while ctl.status()["streams"]["emg"]["received"] < received + 500 and time.monotonic() < deadline:
            time.sleep(0.2)
        result = ctl.record(TakeInfo(subject="S06", action="squat", repetition=2), 1.5)
    with h5py.File(result.path / "take.h5", "r") as f:
        assert f["streams/emg"].attrs["sample_count"] >= 700  # the restarted driver is recorded (512 Hz)


def run_cli(*args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run([*FLEXCAP, *args], capture_output=True, text=True, timeout=timeout, cwd=ROOT)


def test_cli_record_inspect_validate(tmp_path):
    rig = tmp_path / "rig.toml"
    rig.write_text(textwrap.dedent(f"""
        name = "clilab"
        [lsl]
        session_id = "flexcap-sim"
        [recorder]
        min_free_disk_mb = 50
        [sim]
        pulse_period_s = 1.0
        [[devices]]
        kind = "emg"
        id = "emg"
        connection = "emulator"
        [devices.settings]
        protocol = "cyton"
        [[devices]]
        kind = "camera"
        id = "cam"
        connection = "emulator"
        [devices.settings]
        fps = {SMALL_CAMERA['fps']}
        width = {SMALL_CAMERA['width']}
        height = {SMALL_CAMERA['height']}
        emulator = {{ view = "cam1" }}
    """))
    out = run_cli("record", "--rig", str(rig), "--duration", "2", "--subject", "S07", "--action", "plank",
                  "--rep", "1", "--sessions", str(tmp_path / "s"), timeout=120)
    assert out.returncode == 0, out.stderr
    assert "validate: OK" in out.stdout
    take = next((tmp_path / "s").glob("*_S07/001_plank_1"))
    assert "emg             EMG               10" in out.stdout  # 8 channels, trigger, counter
    info = json.loads(run_cli("inspect", str(take), "--json").stdout)
    assert info["cameras"]["cam"]["dropped"] == 0
    assert abs(info["cameras"]["cam"]["frames"] - 60) <= 2
    ok = run_cli("validate", str(take))
    assert ok.returncode == 0 and "valid flexcap take (format version 1)" in ok.stdout
    # damage the file: a time stamp going backwards and a missing attribute
    with h5py.File(take / "take.h5", "r+") as f:
        ts = f["streams/emg/time_stamps"]
        ts[5] = ts[3]
        del f.attrs["subject"]
    bad = run_cli("validate", str(take))
    assert bad.returncode == 1
    assert "/: attribute 'subject' missing" in bad.stdout
    assert "/streams/emg/time_stamps: decreases 1 times" in bad.stdout
    missing = run_cli("validate", str(tmp_path / "nowhere"))
    assert missing.returncode == 1 and "no take file" in missing.stdout


def test_cli_bad_rig_file_is_named(tmp_path):
    rig = tmp_path / "bad.toml"
    rig.write_text('name = "x"\n[[devices]]\nkind = "emg"\nid = "emg"\n[devices.settings]\nprotocol = "cyton"\n'
                   'rate = -1\n')
    out = run_cli("record", "--rig", str(rig), "--duration", "1", "--subject", "S", "--action", "a", "--rep", "1")
    assert out.returncode == 2
    assert f"flexcap: {rig}: devices[0] (id 'emg').settings.rate: Input should be greater than 0" in out.stderr


def test_standalone_emulator_and_driver(tmp_path):
    link = tmp_path / "cyton.tty"
    emulator = subprocess.Popen([*FLEXCAP, "emulate", "emg", "--protocol", "cyton", "--link", str(link)], cwd=ROOT,
                                stdout=subprocess.PIPE, text=True)
    pty_path = emulator.stdout.readline().split()[0]
    assert pty_path.startswith("/dev/pts/") and os.path.realpath(link) == pty_path
    proc = subprocess.Popen([*FLEXCAP, "driver", "emg", "--protocol", "cyton", "--port", str(link), "--name", "solo"],
                            cwd=ROOT, stderr=subprocess.PIPE, text=True)
    try:
        found = pylsl.resolve_byprop("source_id", "flexcap:standalone:solo:solo", 1, 20.0)
        assert found, "the standalone driver's stream did not appear"
        inlet = pylsl.StreamInlet(found[0])
        samples, stamps = [], []
        deadline = time.monotonic() + 10
        while len(stamps) < 500 and time.monotonic() < deadline:
            s, t = inlet.pull_chunk(timeout=0.5)
            samples += s
            stamps += t
        data = np.asarray(samples)
        assert data.shape[1] == 10
        assert np.all(np.diff(data[:, -1]) % 256 == 1)  # contiguous sample numbers
        streams = run_cli("streams", "--wait", "2")
        assert "flexcap:standalone:solo:solo" in streams.stdout
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=15)
        emulator.send_signal(signal.SIGINT)
        emulator.wait(timeout=15)
    assert proc.returncode == 0 and emulator.returncode == 0
    assert "flexcap driver emg 'solo': publishing solo (Ctrl-C stops)" in proc.stderr.read()
    assert not link.exists()  # the emulator removes its link when it stops


def test_standalone_chest_driver_starts():
    proc = subprocess.Popen([*FLEXCAP, "driver", "chest", "--emulate"], cwd=ROOT, stderr=subprocess.PIPE, text=True)
    try:
        found = pylsl.resolve_byprop("source_id", "flexcap:standalone:chest:status", 1, 20.0)
        assert found
    finally:
        os.kill(proc.pid, signal.SIGTERM)
        proc.wait(timeout=15)
    assert proc.returncode == 0


def test_repeated_sigterm_still_stops_the_driver():
    """A dying supervisor's children get SIGTERM from the kernel and again from the supervisor: a
    handler re-entered while it holds the stop event's lock used to deadlock."""
    proc = subprocess.Popen([*FLEXCAP, "driver", "chest", "--emulate", "--id", "sigterm"], cwd=ROOT,
                            stderr=subprocess.DEVNULL)
    wait_for_stream("source_id", "flexcap:standalone:sigterm:status")
    for _ in range(50):
        try:
            proc.send_signal(signal.SIGTERM)
        except ProcessLookupError:
            break
    assert proc.wait(timeout=10) == 0
