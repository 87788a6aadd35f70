"""What the sync controller does with what it cannot align: a camera whose LED region shows no flash, an
EMG unit whose trigger input is not read, a rig without a trigger box. The report names the stream and
the reason, the verdict is red (or amber), and every stream keeps its samples and LSL-corrected stamps."""

from __future__ import annotations

import json

import h5py
import numpy as np

from acquisition.config import TakeInfo, parse_rig
from acquisition.rig import RigController
from acquisition.sync.report import REPORT_JSON, REPORT_TXT
from acquisition.validate import validate_take
from tests.conftest import EMULATED_EMG, SMALL_CAMERA, small_rig_data


def test_a_dark_led_region_and_an_unwired_trigger_input_are_named(tmp_path):
    data = small_rig_data([
        {"kind": "trigger", "id": "trig", "connection": "emulator", "settings": {"uart_bridge": False}},
        EMULATED_EMG,
        {"kind": "emg", "id": "emg_dry", "connection": "emulator",
         "settings": {"protocol": "shimmer3-exg", "rate": 512, "trigger": False}},
        {"kind": "camera", "id": "cam", "connection": "emulator", "settings": SMALL_CAMERA},
        {"kind": "camera", "id": "cam_ok", "connection": "emulator",
         "settings": {**SMALL_CAMERA, "emulator": {"view": "cam3"}}},
    ])
    data["sim"]["trigger"] = "trig"  # the emulated box drives the simulated LED and trigger inputs
    data["sync"] = {"settle_s": 0.2, "cameras": {"cam": {"led_region": [0, 0, 6, 6]}}}  # a corner: no LED
    rig = parse_rig(data, "sync problems")
    with RigController(rig, tmp_path) as ctl:
        assert ctl.start() == []
        result = ctl.record(TakeInfo(subject="S09", action="squat", repetition=1), duration=2.5)
    assert result.sync["level"] == "red"
    assert result.sync["text"].startswith("cam saw no flash") or result.sync["text"].startswith("emg_dry saw no")
    report = (result.path / REPORT_TXT).read_text()
    assert "cam saw no flash (the LED did not change in its led_region [0, 0, 6, 6]: dark, covered or out of " \
           "view?)" in report
    assert "emg_dry saw no trigger edge" in report
    rows = {r["stream"]: r for r in json.loads((result.path / REPORT_JSON).read_text())["streams"]}
    assert rows["emg"]["matched"] == 16 and rows["cam_ok"]["matched"] >= 12 and rows["cam"]["matched"] == 0
    assert validate_take(result.path) == []
    with h5py.File(result.path / "take.h5", "r") as f:
        for sid in ("cam", "emg_dry"):
            g = f["sync"][sid]
            assert g.attrs["method"] == "lsl" and g.attrs["problem"] and np.isnan(g.attrs["latency_s"])
            raw = f["streams"][sid]["time_stamps"][()]
            offset = np.median(f["streams"][sid]["clock_offsets"][:, 1])
            np.testing.assert_allclose(g["time_stamps"][()], raw + offset, rtol=0, atol=2e-5)  # nothing lost
        for sid in ("emg", "cam_ok"):
            assert f["sync"][sid].attrs["problem"] == "" and f["sync"][sid].attrs["latency_s"] > 0.005


def test_a_rig_without_a_trigger_box_is_amber(tmp_path):
    rig = parse_rig(small_rig_data([EMULATED_EMG]), "no trigger")
    with RigController(rig, tmp_path) as ctl:
        assert ctl.start() == []
        result = ctl.record(TakeInfo(subject="S10", action="squat", repetition=1), duration=1.0)
    assert result.sync == {"level": "amber", "text": "the rig has no trigger box: every stream keeps its "
                                                     "LSL-corrected stamps", "latency_ms": {}}
    with h5py.File(result.path / "take.h5", "r") as f:
        assert f["sync"].attrs["verdict"] == "amber"
        assert f["sync/emg"].attrs["method"] == "lsl"
        assert f["sync/emg"].attrs["problem"] == "no sync pulses in this take"
