"""The end-to-end data path: the simulated lab recorded into a take, checked sample by sample."""

from __future__ import annotations

import json

import cv2
import h5py
import numpy as np

from acquisition.config import load_rig
from acquisition.inspect import format_inspection, inspect_take
from acquisition.takefile import TRUTH_FILE, stream_strings
from acquisition.validate import validate_take
from drivers.camera.framestore import FrameFile
from drivers.sim.emg_emulator import ShimmerModel
from drivers.sim.emg_signal import EmgSignal, device_seed
from drivers.sim.scene import decode_barcode
from drivers.sim.triggerline import PulseEdges

EMG_UNITS = ("emg1", "emg2", "emg3", "emg4")
DEVICES = ("trigger", *EMG_UNITS, "chest", "cam1", "cam2", "cam3", "cam4", "phone")
EXPECTED_STREAMS = {
    *EMG_UNITS, "chest_hr", "chest_rr", "chest_ecg", "chest_acc", "chest_breathing", "trigger_pulses", "trigger_clock",
    "cam1", "cam2", "cam3", "cam4", "phone", *(f"{d}_status" for d in DEVICES),
    *(f"{c}_control" for c in ("cam1", "cam2", "cam3", "cam4", "phone")), "recorder_status",
}


def _open(result):
    return h5py.File(result.path / "take.h5", "r")


def test_take_validates_and_has_every_stream(sim_take):
    assert validate_take(sim_take.path) == []
    assert sim_take.problems == []
    with _open(sim_take) as f:
        assert set(f["streams"]) == EXPECTED_STREAMS
        assert f.attrs["format"] == "flexcap.take" and f.attrs["format_version"] == 1
        assert f.attrs["subject"] == "S01" and f.attrs["action"] == "squat" and f.attrs["repetition"] == 1
        assert f.attrs["take"] == "001_squat_1"
        # 18 s, then the end train (under a second) and the settling time for the slowest device
        assert 18.9 <= f.attrs["stopped_lsl"] - f.attrs["started_lsl"] < 20.0
        assert json.loads(f.attrs["rig"])["name"] == "simlab"
        assert set(f["cameras"]) == {"cam1", "cam2", "cam3", "cam4", "phone"}


def test_emg_values_are_exactly_what_the_devices_sent(sim_take):
    """Four Shimmer emulators -> pty -> pyserial driver -> LSL -> recorder: every value bit-exact."""
    rig = load_rig()
    truths = json.loads((sim_take.path / TRUTH_FILE).read_text())["devices"]
    # the trigger inputs saw the pulses the box fired (its log), trunk electrodes the heart
    line = PulseEdges([p for t in truths["trigger"]["trains"] for p in t["pulses"]])
    with _open(sim_take) as f:
        start, stop = f.attrs["started_lsl"], f.attrs["stopped_lsl"]
        for unit in EMG_UNITS:
            g = f[f"streams/{unit}"]
            data, stamps = g["time_series"][()], g["time_stamps"][()]
            offset = g.attrs["window_offset"]  # the take window applies on the recorder's clock
            assert json.loads(g.attrs["channel_labels"]) == [*rig.context(unit).settings.labels, "trigger", "counter"]
            assert json.loads(g.attrs["channel_units"])[:4] == ["microvolts"] * 4
            truth = truths[unit]
            ticks = data[:, -1].astype(np.int64)
            k = ((ticks - truth["tick0"]) % (1 << 24)) // truth["divider"]
            # every sample between start and stop: consecutive device samples, nothing lost at either end
            np.testing.assert_array_equal(np.diff(k), 1)
            period = 1 / 2048
            assert 0 <= stamps[0] + offset - start < period, unit
            assert 0 <= stop - (stamps[-1] + offset) < period, unit
            t_true = truth["t0"] + k / truth["true_rate"]
            heart = rig.context(unit).settings.emulator.heart_artifact_uv
            signal = EmgSignal(4, rig.sim, device_seed(unit), line, heart)
            np.testing.assert_array_equal(data[:, :4], ShimmerModel(2048).expected_microvolts(k, t_true, signal))
            level = np.round(signal.trigger_level(t_true, 1 / 2048) * 3900) / 4095
            np.testing.assert_array_equal(data[:, 4], level.astype(np.float32))
            # stamps follow the device clock: within a millisecond of true time + latency
            err = stamps + offset - (t_true + truth["latency_s"])
            assert np.percentile(np.abs(err), 95) < 2e-3, unit


def test_trigger_pulses_are_recorded_once_each(sim_take):
    """The start and end trains the box fired (its emulator's log) are on the pulses stream once each, at
    their true times, and every EMG unit's trigger input saw each of them."""
    box = json.loads((sim_take.path / TRUTH_FILE).read_text())["devices"]["trigger"]
    fired = [(t["seq"], i, rise, fall) for t in box["trains"] for i, (rise, fall) in enumerate(t["pulses"])]
    with _open(sim_take) as f:
        markers = [json.loads(row[0]) for row in stream_strings(f["streams/trigger_pulses"])]
        stamps = f["streams/trigger_pulses/time_stamps"][()]
        trigger = f["streams/emg1/time_series"][:, -2]
    assert len(fired) == 20  # a train of 4 pulses at the start, one 5, 10 and 15 s later, one at the end
    assert [(m["train"], m["pulse"]) for m in markers] == [(seq, i) for seq, i, _, _ in fired]
    assert [m["label"] for m in markers] == ["take_start"] * 4 + ["periodic"] * 12 + ["take_end"] * 4
    assert [m["train"] for m in markers[:1]] == [box["trains"][0]["seq"]]
    rises = np.array([r for _, _, r, _ in fired])
    falls = np.array([fa for _, _, _, fa in fired])
    # the driver maps the box's microsecond clock onto the host's: within a fraction of a millisecond
    np.testing.assert_allclose([m["rise_lsl"] for m in markers], rises, rtol=0, atol=3e-4)
    np.testing.assert_allclose([m["fall_lsl"] for m in markers], falls, rtol=0, atol=3e-4)
    np.testing.assert_array_equal(stamps, [m["rise_lsl"] for m in markers])
    # the coded widths: 80 or 120 ms by the train number's bits
    for t in box["trains"]:
        widths = [round((fa - r) * 1000) for r, fa in t["pulses"]]
        assert widths == [(120 if (t["seq"] >> i) & 1 else 80) for i in range(4)]
    # the EMG trigger channel rises once per pulse
    assert int(np.sum((trigger[1:] > 0.5) & (trigger[:-1] <= 0.5))) == 20


def test_chest_streams_are_complete(sim_take):
    with _open(sim_take) as f:
        start, stop = f.attrs["started_lsl"], f.attrs["stopped_lsl"]
        for sid, rate in (("chest_ecg", 130.0), ("chest_acc", 200.0)):
            ts = f[f"streams/{sid}/time_stamps"][()] + f[f"streams/{sid}"].attrs["window_offset"]
            assert np.all(np.diff(ts) > 0), sid
            assert np.max(np.diff(ts)) < 1.5 / rate, f"{sid}: a gap in the stamps"
            assert 0 <= ts[0] - start < 1.5 / rate and 0 <= stop - ts[-1] < 1.5 / rate, sid
        rr = f["streams/chest_rr/time_series"][:, 0]
        hr = f["streams/chest_hr/time_series"][:, 0]
        ecg = f["streams/chest_ecg/time_series"][:, 0]
    assert np.all((rr > 700) & (rr < 980))  # 72 bpm with 5 % breathing modulation, in 1/1024 s steps
    np.testing.assert_array_equal(np.round(rr * 1024 / 1000), rr * 1024 / 1000)
    assert np.all((hr >= 60) & (hr <= 90)) and len(hr) >= 5
    assert ecg.max() > 900 and ecg.min() < -100  # R peaks and S waves are there


def test_camera_frames_match_their_index_streams(sim_take):
    truths = json.loads((sim_take.path / TRUTH_FILE).read_text())["devices"]
    with _open(sim_take) as f:
        for cam, fps in (("cam1", 60), ("cam2", 60), ("cam3", 60), ("cam4", 60), ("phone", 30)):
            index_stream = f[f"streams/{cam}/time_series"][:, 0].astype(np.int64)
            index_stamps = f[f"streams/{cam}/time_stamps"][()]
            with FrameFile(sim_take.path / f"{cam}.h5") as ff:
                assert len(ff) == len(index_stream), cam
                np.testing.assert_array_equal(ff.frame_index, index_stream)
                np.testing.assert_array_equal(ff.time_stamps, index_stamps)
                np.testing.assert_array_equal(np.diff(ff.frame_index), 1)  # no frame dropped
                assert abs(len(ff) - (f.attrs["stopped_lsl"] - f.attrs["started_lsl"]) * fps) <= 2, cam
                assert ff.attrs["role"] == ("phone" if cam == "phone" else "cinema")
                # the device's own frame number is burnt into each frame: it moves with the stored index
                numbers = []
                for k in (0, len(ff) // 2, len(ff) - 1):
                    img = cv2.imdecode(np.frombuffer(ff.frame(k), np.uint8), cv2.IMREAD_COLOR)
                    assert img.shape == (270, 480, 3)
                    numbers.append(decode_barcode(img) - ff.frame_index[k])
                assert numbers[0] == numbers[1] == numbers[2], cam
                # frame times against the simulated truth: frame k was captured at t0 + k / true_rate
                tr = truths[cam]
                k = ff.frame_index + numbers[0]
                err = ff.time_stamps - (tr["t0"] + k / tr["true_rate"] + tr["latency_s"])
                # (the phone's frames are stamped from Wi-Fi arrivals, 20 ms of jitter: the jitter is gone, but
                # its driver's online clock fit wanders by a few ms over a take, in steps when a less delayed
                # frame arrives; no frame is misnumbered (a 33 ms step). The sync controller's time base is one
                # line through the frame numbers, which takes that out)
                if cam == "phone":
                    assert np.max(np.abs(err - np.median(err))) < 0.005, cam
                    assert np.max(np.abs(np.diff(err))) < 0.005, cam
                else:
                    assert np.std(err) < 1e-4, cam
                assert abs(np.median(err)) < (0.01 if cam == "phone" else 3e-4), cam  # the fit sits on the earliest
                # the true camera model at the stored frame size, for the calibration benchmark
                assert tr["camera"]["image_size"] == [480, 270] and len(tr["camera"]["dist"]) == 5
            # the external link reaches the frame file
            assert f[f"cameras/{cam}/frame_index"].shape[0] == len(index_stream)


def test_camera_record_control_markers_and_timecodes(sim_take):
    truth = json.loads((sim_take.path / TRUTH_FILE).read_text())["devices"]
    with _open(sim_take) as f:
        start, stop = f.attrs["started_lsl"], f.attrs["stopped_lsl"]
        for cam in ("cam1", "cam2", "cam3", "cam4"):
            markers = [json.loads(r[0]) for r in stream_strings(f[f"streams/{cam}_control"])]
            rolls = [m for m in markers if m["action"] in ("record_start", "record_stop")]
            assert [m["action"] for m in rolls] == ["record_start", "record_stop"], cam
            assert rolls[0]["clip"] == rolls[1]["clip"] == f"{sim_take.path.parent.name}_001_squat_1"
            assert start < rolls[0]["request_lsl"] < rolls[0]["reply_lsl"] < rolls[1]["reply_lsl"] < stop
            # the camera's time-of-day timecode, read right after each record request, as its emulator kept it
            # (60 fps, no drop-frame): within the timecode request's own round trip, on a clock that wraps at
            # midnight (local_clock() + offset passes a day once the machine has been up 14 h)
            offset = truth[cam]["record_control"]["timecode_offset_s"]
            for m in rolls:
                h, mi, sec, fr = (int(x) for x in m["timecode"].split(":"))
                tc_s = h * 3600 + mi * 60 + sec + fr / 60
                asked, answered = m["detail"]["timecode_request_lsl"], m["detail"]["timecode_reply_lsl"]
                assert m["reply_lsl"] <= asked < answered, (cam, m)
                after_asking = (tc_s - (asked + offset) + 1 / 60) % 86400.0  # asked + offset - 1/60 <= tc_s
                assert after_asking <= answered - asked + 2 / 60, (cam, m)  # tc_s <= answered + offset + 1/60
        phone = [json.loads(r[0])["action"] for r in stream_strings(f["streams/phone_control"])]
        assert phone == ["record_start", "record_stop"]
    assert [c["tag"] for c in truth["phone"]["recordings"]] == [f"{sim_take.path.parent.name}_001_squat_1"]


def test_clock_offsets_events_truth_and_session(sim_take):
    with _open(sim_take) as f:
        for sid in EXPECTED_STREAMS:
            offsets = f[f"streams/{sid}/clock_offsets"][()]
            assert offsets.shape[0] >= 1 and offsets.shape[1] == 2, sid
            assert np.all(np.abs(offsets[:, 1]) < 0.01), sid  # one host: offsets of microseconds
        events = f["markers/events"]
        assert [r[0] for r in stream_strings(events)] == ["take_start", "take_stop"]
        np.testing.assert_array_equal(events["time_stamps"][()], [f.attrs["started_lsl"], f.attrs["stopped_lsl"]])
    truth = json.loads((sim_take.path / TRUTH_FILE).read_text())
    assert set(truth["devices"]) == set(DEVICES)
    assert truth["devices"]["cam4"]["latency_s"] == 0.09 and truth["devices"]["emg2"]["drift_ppm"] == -15.0
    assert truth["devices"]["emg1"]["protocol"] == "shimmer3-exg"
    session = json.loads((sim_take.path.parent / "session.json").read_text())
    assert session["subject"] == "S01"
    assert [t["take"] for t in session["takes"]] == ["001_squat_1"]


def test_inspect_reports_counts(sim_take):
    info = inspect_take(sim_take.path)
    with _open(sim_take) as f:
        n_emg = f["streams/emg3/time_stamps"].shape[0]
    assert info["streams"]["emg3"]["samples"] == n_emg
    assert info["streams"]["emg3"]["gaps"] == 0
    assert abs(info["streams"]["emg3"]["measured_srate"] - 2048) < 2
    assert info["cameras"]["cam1"]["dropped"] == 0
    text = format_inspection(info)
    assert f"emg3            EMG                6{n_emg:>9}" in text
