"""The serial EMG driver against protocol emulators on real pseudo-terminals, through real pyserial,
out to a real LSL inlet: exact values for each protocol, exact losses under injected faults,
reconnection after an unplug, and clear errors for bad ports and wrong devices."""

from __future__ import annotations

import json
import threading
import time

import numpy as np
import pylsl
import pytest
import serial

from drivers.emg.driver import EmgDriver, EmgSettings
from drivers.runtime.driver import DeviceError, DriverContext, run_driver
from drivers.sim.emg_emulator import EmgEmulator, EmgEmulatorSettings, EmgFaults
from drivers.sim.lab import DeviceTruth, SimLabSettings
from drivers.sim.pty import PtyPort

SIM = SimLabSettings(pulse_period_s=0.5, pulse_width_s=0.05)
TRUTH = DeviceTruth(latency_s=0.01, jitter_s=0.001, drift_ppm=25.0, clock_offset_s=3.0)


class Bench:
    """An emulator thread and a driver thread joined by a pty, and inlets on the driver's streams."""

    def __init__(self, protocol: str, rate: float | None = None, faults: EmgFaults | None = None,
                 name: str = "bench") -> None:
        self.emulator = EmgEmulator(protocol, rate, EmgEmulatorSettings(truth=TRUTH, faults=faults or EmgFaults()),
                                    SIM, seed=9)
        path = self.emulator.open()
        self.emu_thread = threading.Thread(target=self.emulator.run, daemon=True)
        self.emu_thread.start()
        ctx = DriverContext(name, "emg", rig_name="emgtest",
                            settings=EmgSettings(protocol=protocol, port=path, rate=rate))
        self.driver = EmgDriver(ctx)
        self.driver.make_outlets()
        self.data = self._inlet(f"flexcap:emgtest:{name}:{name}")
        self.status = self._inlet(f"flexcap:emgtest:{name}:status")
        self.stop = threading.Event()
        self.thread = threading.Thread(target=run_driver, args=(self.driver, self.stop, 0.2), daemon=True)
        self.samples: list = []
        self.stamps: list = []
        self.statuses: list[dict] = []

    @staticmethod
    def _inlet(source_id: str) -> pylsl.StreamInlet:
        found = pylsl.resolve_byprop("source_id", source_id, 1, 10.0)
        assert found
        inlet = pylsl.StreamInlet(found[0], max_buflen=60)
        inlet.open_stream(5.0)
        return inlet

    def run(self, seconds: float) -> None:
        self.thread.start()
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            self.pull()
            time.sleep(0.1)

    def pull(self) -> None:
        s, t = self.data.pull_chunk(timeout=0.0, max_samples=100000)
        self.samples += s
        self.stamps += t
        st, _ = self.status.pull_chunk(timeout=0.0)
        self.statuses += [json.loads(x[0]) for x in st]

    def finish(self) -> np.ndarray:
        self.emulator.model.streaming = False  # the device stops sending; the driver reads what is left
        time.sleep(0.3)
        self.stop.set()
        self.thread.join(10)
        self.pull()
        self.emulator.stop_event.set()
        self.emu_thread.join(5)
        return np.asarray(self.samples, dtype=np.float32)


def unwrap(raw: np.ndarray, modulo: int, step: int) -> np.ndarray:
    """Device sample indices from a wrapping counter (the first sample is index raw[0] // step)."""
    d = np.diff(raw.astype(np.int64)) % modulo
    return np.concatenate([[0], np.cumsum(d)]) // step + int(raw[0]) // step


@pytest.mark.parametrize("protocol,rate", [("shimmer3-exg", 1024.0), ("shimmer3-exg", 2048.0), ("cyton", None),
                                           ("cyton-daisy", None)])
def test_bit_exact_through_pty_serial_and_lsl(protocol, rate):
    bench = Bench(protocol, rate, name=f"exact_{protocol.replace('-', '_')}_{int(rate or 0)}")
    bench.run(2.5)
    data = bench.finish()
    emu = bench.emulator
    truth = emu.truth()
    n_ch = {"shimmer3-exg": 4, "cyton": 8, "cyton-daisy": 16}[protocol]
    assert data.shape[1] == n_ch + 2
    raw = data[:, -1].astype(np.int64)
    if protocol == "shimmer3-exg":
        k = ((raw - truth["tick0"]) % (1 << 24)) // truth["divider"]
        rows = k
    else:
        k = unwrap(raw, 256, 1)
        rows = (k - 1) // 2 if protocol == "cyton-daisy" else k
    assert k[0] == (1 if protocol == "cyton-daisy" else 0)  # nothing lost at the start either
    np.testing.assert_array_equal(np.diff(k), 2 if protocol == "cyton-daisy" else 1)
    t = truth["t0"] + k / truth["true_rate"]
    np.testing.assert_array_equal(data[:, :n_ch], emu.model.expected_microvolts(rows, t, emu.signal))
    if protocol == "shimmer3-exg":
        level = np.round(emu.signal.trigger_level(t, 1 / emu.model.rate) * 3900) / 4095
        np.testing.assert_array_equal(data[:, n_ch], level.astype(np.float32))
    elif protocol == "cyton":
        np.testing.assert_array_equal(data[:, n_ch], emu.signal.trigger_state(t).astype(np.float32))
    else:  # both halves of a Daisy row read D11; the row's trigger is high if either saw the pulse
        t_daisy = truth["t0"] + (k + 1) / truth["true_rate"]
        both = np.maximum(emu.signal.trigger_state(t), emu.signal.trigger_state(t_daisy))
        np.testing.assert_array_equal(data[:, n_ch], both.astype(np.float32))
    assert data[:, n_ch].max() > 0.9  # the trigger box's pulses are there
    stamps = np.asarray(bench.stamps)
    assert np.all(np.diff(stamps) > 0)
    nominal = {"shimmer3-exg": rate, "cyton": 250.0, "cyton-daisy": 125.0}[protocol]
    assert (len(stamps) - 1) / (stamps[-1] - stamps[0]) == pytest.approx(nominal, rel=5e-3)
    assert bench.driver.drops == 0


def test_faults_lose_exactly_the_damaged_packets():
    faults = EmgFaults(drop_every=37, corrupt_at_s=1.0, corrupt_packets=5, garbage_every_s=0.4, garbage_bytes=17)
    bench = Bench("shimmer3-exg", 1024.0, faults, name="faults")
    bench.run(2.5)
    data = bench.finish()
    truth = bench.emulator.truth()
    log = bench.emulator.fault_log
    dropped = {e["packet"] for e in log if e["kind"] == "drop"}
    corrupt = {p for e in log if e["kind"] == "corrupt" for p in e["packets"]}
    garbage = [e for e in log if e["kind"] == "garbage"]
    assert len(corrupt) == 5 and len(dropped) >= 50 and len(garbage) >= 4
    k = ((data[:, -1].astype(np.int64) - truth["tick0"]) % (1 << 24)) // truth["divider"]
    expected = [i for i in range(int(k[-1]) + 1) if i not in dropped and i not in corrupt]
    assert k.tolist() == expected  # everything else arrived, in order, exactly once
    stats = bench.driver.parser.stats
    lost_before_last = len([i for i in dropped | corrupt if i < k[-1]])
    assert stats.lost == lost_before_last
    length = 20  # 0x00 + ts + A0 + 2 x (status + 2 x i24)
    garbage_sent = sum(e["bytes"] for e in garbage if e["before_packet"] <= k[-1])
    assert stats.garbage_bytes == garbage_sent + 5 * length
    statuses = [s for s in bench.statuses if s["connected"]]
    assert statuses[-1]["lost_packets"] > 0 and statuses[-1]["garbage_bytes"] > 0  # the status stream reports them
    emu = bench.emulator
    np.testing.assert_array_equal(data[:, :4], emu.model.expected_microvolts(k, truth["t0"] + k / truth["true_rate"],
                                                                             emu.signal))


def test_unplug_and_replug_reconnects_and_resumes():
    faults = EmgFaults(disconnect_at_s=1.0, reconnect_after_s=0.6)
    bench = Bench("shimmer3-exg", 1024.0, faults, name="unplug")
    bench.run(4.5)
    data = bench.finish()
    truth = bench.emulator.truth()
    log = bench.emulator.fault_log
    cut = next(e["after_packet"] for e in log if e["kind"] == "disconnect")
    assert any(e["kind"] == "reconnect" for e in log)
    k = ((data[:, -1].astype(np.int64) - truth["tick0"]) % (1 << 24)) // truth["divider"]
    before, after = k[k <= cut], k[k > cut]
    np.testing.assert_array_equal(before, np.arange(len(before)))  # everything up to the unplug is kept
    assert len(after) > 1024  # well over a second of data after the replug
    stamps = np.asarray(bench.stamps)
    gap = stamps[len(before)] - stamps[len(before) - 1]
    assert gap > 0.5  # the outage is a gap in time
    errors = [s["last_error"] for s in bench.statuses if not s["connected"] and s["last_error"]]
    assert any("stopped answering (unplugged?)" in e for e in errors), errors
    assert bench.statuses[-1]["reconnects"] >= 1


def make_driver(protocol: str, port: str) -> EmgDriver:
    return EmgDriver(DriverContext("bad", "emg", settings=EmgSettings(protocol=protocol, port=port)))


def test_port_that_does_not_exist():
    with pytest.raises(DeviceError, match=r"^/dev/ttyNOPE9 does not exist \(is the device plugged in"):
        make_driver("cyton", "/dev/ttyNOPE9").open()


def test_busy_port():
    port = PtyPort()
    path = port.open()
    holder = serial.Serial(path, exclusive=True)
    try:
        with pytest.raises(DeviceError, match=rf"^{path} is busy: another program has it open$"):
            make_driver("shimmer3-exg", path).open()
    finally:
        holder.close()
        port.close()


def test_device_that_does_not_answer():
    port = PtyPort()
    path = port.open()
    try:
        with pytest.raises(DeviceError, match=r"no acknowledgement \(0xFF\) of the inquiry command \(0x01\) within "
                                              r"1 s \(got nothing\)"):
            make_driver("shimmer3-exg", path).open()
    finally:
        port.close()


@pytest.mark.parametrize("driver_protocol,device", [("cyton", "shimmer3-exg"), ("shimmer3-exg", "cyton"),
                                                    ("cyton-daisy", "cyton")])
def test_wrong_protocol_is_named(driver_protocol, device):
    emulator = EmgEmulator(device, None, EmgEmulatorSettings(), SIM)
    path = emulator.open()
    thread = threading.Thread(target=emulator.run, daemon=True)
    thread.start()
    expected = {
        "cyton": r"no answer to the soft reset \('v'\) ending in '\$\$\$' within 3 s",
        "shimmer3-exg": r"no acknowledgement \(0xFF\) of the inquiry command \(0x01\) within 1 s",
        "cyton-daisy": r"no Daisy board found \(protocol cyton-daisy\)",
    }[driver_protocol]
    try:
        with pytest.raises(DeviceError, match=expected):
            make_driver(driver_protocol, path).open()
    finally:
        emulator.stop_event.set()
        thread.join(5)
