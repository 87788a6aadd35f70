"""The chest-strap driver against the simulated H10 behind bleak's client interface: exact ECG,
unbatched stamps, the H10's quirks, disconnects, clock resets, bad frames, and replay == live."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import threading
import time
from collections import defaultdict
from pathlib import Path

import numpy as np
import pytest
from bleak import BleakClient

from drivers.chest import hrs, pmd
from drivers.chest.driver import ChestDriver, ChestSettings
from drivers.runtime.driver import DeviceError, DriverContext, run_driver
from drivers.sim.h10 import ADDRESS, EmulatedH10Backend, H10Faults, H10Settings, SimulatedH10
from drivers.sim.lab import DeviceTruth, SimLabSettings

ROOT = Path(__file__).resolve().parents[1]
TRUTH = DeviceTruth(latency_s=0.02, jitter_s=0.002, drift_ppm=-30.0)


class Capture:
    """Runs a ChestDriver (real outlets) in a thread and keeps a copy of everything it publishes."""

    def __init__(self, name: str, emulator: H10Settings | None = None, **settings) -> None:
        s = ChestSettings(emulator=emulator or H10Settings(truth=TRUTH), **settings)
        connection = "" if settings.get("replay") else "emulator"
        self.driver = ChestDriver(DriverContext(name, "chest", rig_name="chesttest", connection=connection,
                                                settings=s, sim=SimLabSettings()))
        self.out: dict[str, list[tuple[np.ndarray, np.ndarray]]] = defaultdict(list)
        publish = self.driver.publish

        def recording_publish(key, samples, stamps):
            self.out[key].append((np.array(samples, dtype=object if key == "status" else np.float64),
                                  np.asarray(stamps, dtype=np.float64)))
            publish(key, samples, stamps)

        self.driver.publish = recording_publish
        self.stop = threading.Event()

    def run(self, seconds: float | None = None, until=None) -> Capture:  # noqa: ANN001
        thread = threading.Thread(target=run_driver, args=(self.driver, self.stop, 0.25), daemon=True)
        thread.start()
        end = time.monotonic() + (seconds if seconds is not None else 60)
        while time.monotonic() < end and not (until and until()):
            time.sleep(0.05)
        self.stop.set()
        thread.join(15)
        assert not thread.is_alive()
        return self

    def values(self, key: str) -> np.ndarray:
        return np.concatenate([v for v, _ in self.out[key]]).astype(np.float64)

    def stamps(self, key: str) -> np.ndarray:
        return np.concatenate([t for _, t in self.out[key]])

    def statuses(self) -> list[dict]:
        return [json.loads(v[0][0]) for v, _ in self.out["status"]]


def test_emulated_strap_exact_ecg_and_unbatched_stamps():
    # a 7.5 ms connection interval (the shortest BLE allows): the fit finds the earliest arrivals quickly
    cap = Capture("strap1", H10Settings(truth=TRUTH, connection_interval_s=0.0075)).run(8.0)
    strap = cap.driver.strap
    ecg = cap.values("ecg")[:, 0]
    stamps = cap.stamps("ecg")
    n = len(ecg)
    assert n >= 73 * 8
    # the samples are the simulated heart's, in order, none missing
    assert strap.streaming == {}  # the driver stopped the streams before it disconnected
    k = np.arange(n)
    t0, rate = strap.stream_t0[pmd.ECG], strap.rate_of(pmd.ECG)
    np.testing.assert_array_equal(ecg, strap.body.ecg(t0 + k / rate))
    # stamps come from the sensor clock: one sample period apart, no notification bursts (after the
    # fit's first seconds, while it finds the earliest arrivals)
    frame_of = k // 73
    d = np.diff(stamps)
    within = (frame_of[1:] == frame_of[:-1]) & (frame_of[1:] > 0)  # the first frame is spaced at nominal 130 Hz
    np.testing.assert_allclose(d[within], d[within].mean(), rtol=1e-3)  # evenly spaced inside each frame
    assert d[within].mean() == pytest.approx(1 / rate, rel=2e-3)
    assert np.all(d < 1.5 / rate)  # no notification arrives as a burst after a pause
    settled = k >= 73 * 7
    err = (stamps - (t0 + k / rate + TRUTH.latency_s))[settled]
    assert np.percentile(np.abs(err - np.median(err)), 95) < 2e-3  # arrival stamps would spread ~30 ms
    assert abs(np.median(err)) < 0.01
    # RR: one sample per beat, exact 1/1024 s values, stamped near the beat
    rr = cap.values("rr")[:, 0]
    beats = strap.sim.heart_beats(strap.connected_at - 3.0, strap.connected_at + 60.0)  # the lab's heart
    j0 = int(np.searchsorted(beats, strap.connected_at, side="right"))  # the first beat after connecting
    expected = [round((beats[i] - beats[i - 1]) * 1024) * 1000 / 1024 for i in range(j0, j0 + len(rr))]
    np.testing.assert_allclose(rr, expected, rtol=0, atol=1e-4)
    # the strap reports beats once a second, so a beat's only absolute time is the earliest report after it:
    # once the fit has seen every report, each beat is stamped late by the smallest report lag, no more
    beat_times = np.array(beats[j0 : j0 + len(rr)])
    first_tick = strap.connected_at + 1.0
    report_of_beat = first_tick + np.ceil(beat_times - first_tick)
    min_lag = min(r - beat_times[report_of_beat == r].max() for r in np.unique(report_of_beat))
    beat_err = cap.stamps("rr") - (beat_times + TRUTH.latency_s)
    np.testing.assert_allclose(beat_err[-3:], min_lag, atol=0.015)
    hr = cap.values("hr")[:, 0]
    assert np.all((hr > 60) & (hr < 85))
    status = cap.statuses()[-2]
    assert status["connected"] and status["battery"] == 87 and status["location"] == "chest" and status["mtu"] == 232


def test_control_point_is_silent_until_both_subscriptions():
    async def scenario() -> tuple[list[bytes], list[bytes]]:
        strap = SimulatedH10(H10Settings(truth=TRUTH))
        client = BleakClient(ADDRESS, backend=EmulatedH10Backend, device=strap)
        await client.connect()
        answers: list[bytes] = []
        await client.start_notify(pmd.PMD_CONTROL, lambda _c, d: answers.append(bytes(d)))
        await client.write_gatt_char(pmd.PMD_CONTROL, pmd.ECG_START, response=True)
        await asyncio.sleep(0.3)
        before = list(answers)
        await client.start_notify(pmd.PMD_DATA, lambda _c, d: None)
        await client.write_gatt_char(pmd.PMD_CONTROL, pmd.ECG_START, response=True)
        await asyncio.sleep(0.3)
        features = await client.read_gatt_char(pmd.PMD_CONTROL)
        await client.disconnect()
        assert strap.streaming == {}  # the link is gone: the H10 stopped measuring
        return before, answers + [bytes(features)]

    before, after = asyncio.run(scenario())
    assert before == []
    assert after[0] == bytes.fromhex("F0 02 00 00 00")
    assert after[1][:2] == bytes.fromhex("0F 05")  # ECG + ACC features


def test_low_mtu_is_refused_with_advice():
    cap = Capture("strap_mtu", H10Settings(mtu=23, truth=TRUTH))
    with pytest.raises(DeviceError, match=r"the strap refused 'start ECG': invalid MTU \(status 10\) \(reconnect"):
        cap.driver.open()
    cap.driver.close()
    cap.driver.shutdown()


def test_disconnect_then_reconnect_leaves_a_gap():
    cap = Capture("strap_drop", H10Settings(truth=TRUTH, faults=H10Faults(disconnect_at_s=2.0))).run(6.5)
    stamps = cap.stamps("ecg")
    gaps = np.diff(stamps)
    assert gaps.max() > 0.3  # the outage is a gap in time
    assert stamps[-1] - stamps[np.argmax(gaps) + 1] > 1.0  # and data resumed after it
    errors = [s["last_error"] for s in cap.statuses() if not s["connected"] and s["last_error"]]
    assert "the strap disconnected" in errors
    assert cap.statuses()[-1]["reconnects"] >= 1


def test_sensor_clock_reset_keeps_time_going():
    cap = Capture("strap_reset", H10Settings(truth=TRUTH, faults=H10Faults(power_cycle_at_s=2.5))).run(6.0)
    stamps = cap.stamps("ecg")
    assert np.all(np.diff(stamps) > 0)
    assert np.max(np.diff(stamps)) < 0.1  # no jump: the new clock is mapped from the arrivals again
    assert any(s["clock_resets"] >= 1 for s in cap.statuses())
    assert any("clock reset" in n for s in cap.statuses() for n in s["notes"])


def test_truncated_frames_are_reported_and_skipped():
    cap = Capture("strap_cut", H10Settings(truth=TRUTH, faults=H10Faults(truncated_every=3))).run(6.0)
    strap = cap.driver.strap
    cut = [e for e in strap.log if e["kind"] == "truncated"]
    assert len(cut) >= 2 and cap.driver.payload_errors == len(cut)
    assert any("not a whole number of 3-byte samples" in n for s in cap.statuses() for n in s["notes"])
    assert len(cap.values("ecg")) == 73 * (strap.frames_sent - len(cut))


def test_replay_of_a_log_gives_the_live_output(tmp_path):
    log = tmp_path / "strap.jsonl"
    live = Capture("strap_live", log=str(log)).run(5.0)
    lines = [json.loads(x) for x in log.read_text().splitlines()]
    assert {x["char"] for x in lines} == {hrs.HR_MEASUREMENT, pmd.PMD_CONTROL, pmd.PMD_DATA}
    replay = Capture("strap_replay", replay=str(log), replay_speed=0)
    replay.run(until=lambda: replay.driver.replay_done)
    for key in ("ecg", "acc", "hr", "rr", "breathing"):
        np.testing.assert_array_equal(replay.values(key), live.values(key), err_msg=key)
        np.testing.assert_array_equal(replay.stamps(key), live.stamps(key), err_msg=key)


def test_replay_through_the_command_line(tmp_path):
    """`flexcap driver chest --replay LOG --name PREFIX` sends every logged notification, in order and
    with its logged time, through the driver's processing path (which logs what it processes)."""
    log = tmp_path / "strap.jsonl"
    Capture("strap_cli", log=str(log)).run(3.0)
    relogged = tmp_path / "relogged.jsonl"
    err = tmp_path / "stderr.txt"
    proc = subprocess.Popen([sys.executable, "-m", "acquisition.cli", "driver", "chest", "--replay", str(log),
                             "--name", "replayed", "--log", str(relogged)], cwd=ROOT, stderr=err.open("w"))
    lines = log.read_text().splitlines()
    span = json.loads(lines[-1])["t"] - json.loads(lines[0])["t"]
    time.sleep(span + 4.0)  # replayed in real time
    proc.terminate()
    assert proc.wait(15) == 0
    assert relogged.read_text().splitlines() == lines
    assert "flexcap driver chest 'replayed': publishing replayed_hr, replayed_rr, replayed_ecg" in err.read_text()
    ctx = DriverContext("replayed", "chest", settings=ChestSettings(stream_prefix="replayed"))
    assert [s.name for s in ChestDriver.stream_specs(ctx)] == ["replayed HR", "replayed RR", "replayed ECG",
                                                                "replayed ACC", "replayed breathing"]


def test_a_missing_log_is_named(tmp_path):
    cap = Capture("strap_nolog", replay=str(tmp_path / "nope.jsonl"))
    with pytest.raises(DeviceError, match="nope.jsonl: notification log not found"):
        cap.driver.open()
