"""The trigger box driver against its emulator on a real pseudo-terminal, through pyserial, out to a real
LSL inlet: the protocol byte for byte, coded trains timed on the box's own drifting clock and mapped onto
the host's, refusals with reasons, and a "byte" box whose lines follow the last byte written."""

from __future__ import annotations

import json
import os
import threading
import time

import numpy as np
import pylsl
import pytest

from drivers.runtime.driver import DeviceError, DriverContext, run_driver
from drivers.sim.lab import DeviceTruth
from drivers.sim.pty import PtyPort
from drivers.sim.trigger_box import TriggerBoxEmulator, TriggerBoxSettings
from drivers.sim.triggerline import TriggerLineFile
from drivers.trigger import protocol as tp
from drivers.trigger.driver import TriggerDriver, TriggerSettings
from drivers.trigger.trains import train_durations, train_length_s
from tests.conftest import wait_for_stream


def test_protocol_lines_parse_exactly():
    assert tp.parse_reply(b"I flexcap-trigger 1 1.0.0\n") == tp.Hello("1.0.0", 1)
    assert tp.parse_reply("T 4294967295") == tp.ClockReply(4294967295)
    assert tp.parse_reply("E 12 3 100 80100\r\n") == tp.Edge(12, 3, 100, 80100)
    assert tp.parse_reply("! 7 busy") == tp.Refused(7, "busy")
    assert tp.parse_reply("! - unknown command 'Z'") == tp.Refused(None, "unknown command 'Z'")
    with pytest.raises(tp.ProtocolError, match=r"not a trigger-box reply: 'T 4294967296'"):
        tp.parse_reply("T 4294967296")  # micros() is 32-bit
    assert tp.fire_command(5, [80000, 110000, 120000]) == b"F 5 80000 110000 120000\n"
    with pytest.raises(ValueError, match="a train is on, off, on, ..., on"):
        tp.fire_command(5, [80000, 110000])
    with pytest.raises(ValueError, match=r"durations must be 100\.\.10000000 us \(got 50\)"):
        tp.fire_command(5, [50])


def test_micros_unwrap_across_the_71_minute_wrap():
    u = tp.MicrosUnwrapper()
    assert [u(x) for x in (4294967000, 4294967295, 10, 500)] == [4294967000, 4294967295, 4294967306, 4294967796]
    assert u.near(4294967200, 4294967306) == 4294967200  # an edge echoed just before the wrap
    assert u.near(20, 4294967000) == 4294967316


def test_trains_are_coded_by_their_number():
    # widths from the number's bits (5 = 0101: 120, 80, 120, 80 ms), gaps rotated by the number mod 3
    assert train_durations(5) == [120000, 190000, 80000, 110000, 120000, 150000, 80000]
    assert train_durations(6) == [80000, 110000, 120000, 150000, 120000, 190000, 80000]
    assert len({tuple(train_durations(s)) for s in range(48)}) == 48  # 16 width codes x 3 gap orders
    assert train_length_s(5) == pytest.approx(0.85)


class Box:
    """The emulated box on a pty (its line file in tmp) and the real driver reading it."""

    def __init__(self, tmp_path, name: str, settings: TriggerBoxSettings | None = None) -> None:
        self.line = tmp_path / "line"
        self.emulator = TriggerBoxEmulator(settings or TriggerBoxSettings(), line_path=self.line)
        path = self.emulator.open()
        threading.Thread(target=self.emulator.run, daemon=True).start()
        ctx = DriverContext(name, "trigger", rig_name="trigtest",
                            settings=TriggerSettings(port=path, uart_bridge=False, clock_query_s=0.05))
        self.driver = TriggerDriver(ctx)
        self.driver.make_outlets()
        self.inlet = pylsl.StreamInlet(wait_for_stream("source_id", f"flexcap:trigtest:{name}:pulses"))
        self.inlet.open_stream(5.0)
        self.stop = threading.Event()
        threading.Thread(target=run_driver, args=(self.driver, self.stop, 0.5), daemon=True).start()
        deadline = time.monotonic() + 10
        while self.driver.clock.best_rtt_s is None or len(self.driver.clock._q) < 20:
            assert time.monotonic() < deadline, "the driver never measured the box's clock"
            time.sleep(0.05)

    def close(self) -> None:
        self.stop.set()
        self.emulator.stop_event.set()


def test_a_train_is_fired_echoed_and_mapped_onto_the_host_clock(tmp_path):
    box = Box(tmp_path, "box1", TriggerBoxSettings(truth=DeviceTruth(clock_offset_s=4294.9, drift_ppm=80.0)))
    try:
        fired = box.driver.fire("test")
        assert fired["durations_us"] == train_durations(fired["train"]) and fired["label"] == "test"
        done = box.driver.wait_train(fired["train"], timeout=5)
        assert done["complete"] and len(done["pulses"]) == 4
        markers = []
        deadline = time.monotonic() + 5
        while len(markers) < 4 and time.monotonic() < deadline:
            samples, stamps = box.inlet.pull_chunk(timeout=0.5)
            markers += [(json.loads(s[0]), t) for s, t in zip(samples, stamps, strict=True)]
    finally:
        box.close()
    log = box.emulator.trains[-1]
    assert log["seq"] == fired["train"] and log["durations_us"] == fired["durations_us"]
    # the box's echoed readings are exactly what its clock said at each edge
    assert [(m["box_rise_us"], m["box_fall_us"]) for m, _ in markers] == \
        [(r % tp.MICROS_WRAP, f % tp.MICROS_WRAP) for r, f in log["pulses_box_us"]]
    # its edges follow the coded durations on its own clock, to the microsecond
    edges = np.ravel(log["pulses_box_us"])
    np.testing.assert_array_equal(np.diff(edges), fired["durations_us"])
    # mapped onto the host clock within a fraction of a millisecond of when they truly happened
    rises = np.array([m["rise_lsl"] for m, _ in markers])
    true_rises = np.array([p[0] for p in log["pulses"]])
    assert np.max(np.abs(rises - true_rises)) < 2e-4
    np.testing.assert_array_equal([t for _, t in markers], rises)  # each marker stamped with its rise
    # the emulated box's clock runs 80 ppm fast: a 120 ms pulse lasts 120 ms of box time, 119.99 ms of ours
    widths = np.array([m["fall_lsl"] - m["rise_lsl"] for m, _ in markers])
    np.testing.assert_allclose(widths, np.array(fired["durations_us"][::2]) / 1e6 / (1 + 80e-6), atol=2e-5)
    # the wire to the simulated devices carries the same pulses, written before the first rise
    line = TriggerLineFile(box.line)
    line.refresh()
    np.testing.assert_array_equal(line.pulses, np.array(log["pulses"]))


def test_the_box_refuses_what_it_cannot_do(tmp_path):
    box = Box(tmp_path, "box2")
    try:
        first = box.driver.fire("take_start")
        second = box.driver.fire("test")  # fired while the first runs: it waits for the first to end
        assert box.driver.wait_train(first["train"], timeout=5)["complete"]
        assert box.driver.wait_train(second["train"], timeout=5)["complete"]
        one, two = box.emulator.trains[-2:]
        assert (one["seq"], two["seq"]) == (first["train"], second["train"])
        assert two["pulses"][0][0] > one["pulses"][-1][1]
        with pytest.raises(ValueError, match="unknown train label 'later'; use one of take_start, take_end"):
            box.driver.fire("later")
        with pytest.raises(ValueError, match=r"trains every 1 s would overlap; at least 1\.9 s apart"):
            box.driver.periodic(1.0)
    finally:
        box.close()
    port = PtyPort()
    emulator = TriggerBoxEmulator()
    emulator.port = port
    path = emulator.open()
    threading.Thread(target=emulator.run, daemon=True).start()
    fd = os.open(path, os.O_RDWR | os.O_NOCTTY)
    try:
        os.write(fd, b"F 3 50 100 50\nZ\nI\nF 4 100000\nF 5 100000\n")
        time.sleep(0.4)
        replies = os.read(fd, 4096).decode()
    finally:
        os.close(fd)
        emulator.stop_event.set()
    lines = replies.splitlines()
    assert lines.pop(0) == "I flexcap-trigger 1 1.0.0-emulated"  # said once at power-up, unasked
    assert lines[:5] == ["! 3 durations must be 100..10000000 us (got 50)", "! - unknown command 'Z'",
                         "I flexcap-trigger 1 1.0.0-emulated", "A 4 1", "! 5 busy"]
    rise, fall = (int(x) for x in lines[5].split()[3:])
    assert lines[5].startswith("E 4 0 ") and fall - rise == 100000 and lines[6:] == ["D 4"]


def test_a_port_that_is_not_a_flexcap_box_is_named(tmp_path):
    silent = PtyPort()
    path = silent.open()
    ctx = DriverContext("box3", "trigger", settings=TriggerSettings(port=path))
    driver = TriggerDriver(ctx)
    with pytest.raises(DeviceError, match=r"no answer to I within 2 s \(is it a flexcap trigger box\? for a box "
                                          r"whose lines follow the last byte written, set protocol = 'byte'\)"):
        driver.open()
    silent.close()
    missing = DriverContext("box4", "trigger", settings=TriggerSettings(port=str(tmp_path / "ttyACM9")))
    with pytest.raises(DeviceError, match=r"ttyACM9 does not exist"):
        TriggerDriver(missing).open()


def test_a_byte_box_gets_its_bytes_at_the_train_times():
    box_side = PtyPort()
    path = box_side.open()
    ctx = DriverContext("bytebox", "trigger", rig_name="trigtest",
                        settings=TriggerSettings(protocol="byte", port=path, byte_on=0x81, byte_off=0x00))
    driver = TriggerDriver(ctx)
    driver.make_outlets()
    stop = threading.Event()
    threading.Thread(target=run_driver, args=(driver, stop, 0.5), daemon=True).start()
    try:
        deadline = time.monotonic() + 5
        while driver.transport is None:
            assert time.monotonic() < deadline
            time.sleep(0.02)
        arrivals = []
        got = box_side.read(1.0)  # the driver lowers the lines when it opens the port
        assert got == b"\x00"
        fired = driver.fire("test")
        while len(arrivals) < 8 and time.monotonic() < deadline + 5:
            data = box_side.read(0.5)
            arrivals += [(b, pylsl.local_clock()) for b in data]
        done = driver.wait_train(fired["train"], timeout=3)
    finally:
        stop.set()
        box_side.close()
    assert bytes(b for b, _ in arrivals) == b"\x81\x00" * 4
    assert [p["timing"] for p in done["pulses"]] == ["host write"] * 4
    widths = [p["fall_lsl"] - p["rise_lsl"] for p in done["pulses"]]
    np.testing.assert_allclose(widths, np.array(fired["durations_us"][::2]) / 1e6, atol=3e-3)
    # the pulse times are when the bytes left, a little before they arrived at the box; the driver stamps a
    # write when write() returns, and on a busy 2-core machine its thread can be descheduled for a fraction
    # of a millisecond before that (seen: 0.11 ms), so the reader may stamp the arrival slightly earlier
    rises = np.array([p["rise_lsl"] for p in done["pulses"]])
    arrived = np.array([t for b, t in arrivals if b == 0x81])
    assert np.all((arrived - rises > -1e-3) & (arrived - rises < 0.05)), arrived - rises
