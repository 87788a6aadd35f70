"""Takes on a small simulated rig: numbering, refusing to start, a SIGKILLed recorder, a full disk."""

from __future__ import annotations

import json
import shutil
import time

import h5py
import numpy as np
import pylsl
import pytest

from acquisition.config import TakeInfo, parse_rig
from acquisition.rig import RigControlError, RigController
from acquisition.validate import validate_take
from tests.conftest import EMULATED_EMG, small_rig_data

EMG = EMULATED_EMG


def controller(tmp_path, devices, **recorder) -> RigController:
    rig = parse_rig(small_rig_data(devices, **recorder), "test rig")
    ctl = RigController(rig, tmp_path / "sessions")
    assert ctl.start() == []
    return ctl


def test_takes_are_numbered_and_never_overwritten(tmp_path):
    with controller(tmp_path, [EMG]) as ctl:
        first = ctl.record(TakeInfo(subject="S02", action="lunge", repetition=1), 0.5)
        second = ctl.record(TakeInfo(subject="S02", action="lunge", repetition=1), 0.5)
    assert first.path.name == "001_lunge_1" and second.path.name == "002_lunge_1"
    assert validate_take(first.path) == [] and validate_take(second.path) == []
    session = json.loads((first.path.parent / "session.json").read_text())
    assert [t["take"] for t in session["takes"]] == ["001_lunge_1", "002_lunge_1"]


def test_take_refused_without_enough_disk(tmp_path):
    free_mb = shutil.disk_usage(tmp_path).free / 2**20
    with controller(tmp_path, [EMG], min_free_disk_mb=free_mb + 10**6) as ctl:
        with pytest.raises(RigControlError, match=r"only \d+ MB free on .*; a take needs at least \d+ MB"):
            ctl.start_take(TakeInfo(subject="S03", action="row", repetition=1))
        assert ctl.active is None
    session_dir = tmp_path / "sessions" / next(p.name for p in (tmp_path / "sessions").iterdir())
    assert sorted(p.name for p in session_dir.iterdir()) == ["session.json"]  # no empty take left behind


def test_sigkilled_recorder_leaves_everything_up_to_the_last_flush(tmp_path):
    with controller(tmp_path, [EMG]) as ctl:
        active = ctl.start_take(TakeInfo(subject="S04", action="press", repetition=1))
        time.sleep(3.0)
        killed_at = pylsl.local_clock()
        ctl.recorder.proc.kill()
        ctl.recorder.proc.wait()
        result = ctl.stop_take()
    assert any("recorder" in p for p in result.problems)
    with h5py.File(active.path / "take.h5", "r", swmr=True) as f:
        assert "stopped_lsl" not in f.attrs
        data = f["streams/emg/time_series"][: f["streams/emg/time_stamps"].shape[0]]
    ticks = data[:, -1]
    np.testing.assert_array_equal(np.diff(ticks), 64)  # 32768 Hz ticks / 512 Hz: no sample missing
    # polls and flushes every 0.5 s: all but the last second (plus the device's latency) is on disk
    assert len(ticks) >= (killed_at - active.started_lsl - 1.1) * 512
    problems = validate_take(active.path)
    assert any("not closed cleanly" in p for p in problems)


def test_take_stops_cleanly_before_the_disk_is_full(tmp_path):
    cam = {"kind": "camera", "id": "camA", "connection": "emulator",
           "settings": {"fps": 60, "width": 640, "height": 360, "emulator": {"view": "cam2", "jpeg_quality": 95}}}
    # the reserve sits 4 MB below the free space now: the camera's frames use it up within seconds
    free_mb = shutil.disk_usage(tmp_path).free / 2**20
    with controller(tmp_path, [EMG, cam], reserve_disk_mb=free_mb - 4, min_free_disk_mb=0) as ctl:
        result = ctl.record(TakeInfo(subject="S05", action="curl", repetition=1), duration=60)
    assert any("disk nearly full" in p for p in result.problems)
    assert result.stopped_lsl - result.started_lsl < 50
    assert validate_take(result.path) == []
    with h5py.File(result.path / "take.h5", "r") as f:
        assert "disk nearly full" in f.attrs["stop_reason"]
        assert f["streams/emg"].attrs["sample_count"] > 0


def test_device_lost_mid_take_keeps_the_rest(tmp_path):
    trigger = {"kind": "trigger", "id": "trig", "connection": "emulator"}
    with controller(tmp_path, [EMG, trigger]) as ctl:
        active = ctl.start_take(TakeInfo(subject="S08", action="squat", repetition=3))
        time.sleep(1.5)
        ctl.supervisor.children["emg"].proc.kill()  # the amplifier's driver process dies mid-take
        lost_at = pylsl.local_clock()
        time.sleep(2.0)
        result = ctl.stop_take()
    assert "emg: no sample after the stop time arrived in time (device stalled?); its last moments may be missing" \
        in result.problems
    assert validate_take(active.path) == []
    with h5py.File(active.path / "take.h5", "r") as f:
        emg_t = f["streams/emg/time_stamps"][()]
        pulses = f["streams/trig_pulses/time_stamps"][()]
        start, stop = f.attrs["started_lsl"], f.attrs["stopped_lsl"]
    assert lost_at - 0.2 < emg_t[-1] < lost_at  # everything up to the loss is kept
    # the other device recorded the whole take: the start train's 4 pulses and the end train's 4
    assert len(pulses) == 8 and start < pulses[0] < lost_at < pulses[4] < stop
