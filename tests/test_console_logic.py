"""The console's rules without a window: device lights, banner alarms, pre-flight checks, the feed's
ring buffer and the plots' min/max reduction."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from acquisition.console.feed import Ring
from acquisition.console.health import AMBER, GREEN, GREY, RED, alarms, device_rows
from acquisition.console.plots import peak_reduce
from acquisition.console.preflight import check_clocks, check_devices, check_disk


def status(device: str, measured: float, nominal: float = 2048.0, connected: bool = True, **extra: object) -> dict:
    return {"device": device, "connected": connected, "rates": {device: {"measured": measured, "nominal": nominal}},
            "drops": 0, "last_error": None, **extra}


def test_device_lights() -> None:
    now = 100.0
    lost = status("d", 0.0, connected=False, last_error="port gone")
    statuses = {"a": (status("a", 2047.0), 99.5), "b": (status("b", 1500.0), 99.5),
                "c": (status("c", 2048.0), 95.0), "d": (lost, 99.9),
                "chest": (status("chest", 129.0, 130.0, battery=87), 99.0)}
    devices = [("a", "emg"), ("b", "emg"), ("c", "emg"), ("d", "emg"), ("e", "emg"), ("f", "emg"), ("chest", "chest")]
    rows = {r.device: r for r in device_rows(devices, statuses, now, stopped={"f"})}
    assert [rows[d].light for d in "abcdef"] == [GREEN, AMBER, RED, RED, AMBER, GREY]
    assert rows["a"].rate == "2047.0/2048" and rows["b"].state == "slow"
    assert rows["c"].error == "no status for 5 s (driver stopped?)"
    assert rows["d"].error == "port gone" and rows["e"].error == "no status yet"
    assert rows["chest"].battery == "87 %" and rows["chest"].light == GREEN


def test_alarms() -> None:
    rows = {r.device: r for r in device_rows([("cam1", "camera"), ("emg1", "emg")],
                                             {"cam1": (status("cam1", 60, 60) | {"drops": 7}, 9.9)}, 10.0)}
    found = alarms(list(rows.values()), {"cam1": 4}, {"cam1"}, free_bytes=int(50e9), rate_bytes_s=5e6,
                   low_disk_bytes=int(1e9), recording=True)
    assert [a.text for a in found] == ["cam1 dropped 3 frames in this take"]  # emg1 is starting: amber, no alarm
    assert alarms([], {}, set(), int(0.5e9), 0.0, int(1e9), False)[0].text == "disk nearly full: 0.5 GB free"
    assert alarms([], {}, set(), int(2e9), 5e6, int(1e9), True)[0].text == "disk full in 7 min at this rate"


def test_preflight_checks_say_what_to_do() -> None:
    checks = check_devices(["emg1", "emg2", "cam1"], {"emg1": (status("emg1", 2048), 10.0),
                                                      "emg2": (status("emg2", 1000), 10.0)}, 10.5)
    assert [c.ok for c in checks] == [True, False, False]
    assert checks[1].text.startswith("emg2: 1000 of 2048 Hz: check the USB or radio link")
    assert checks[2].text.startswith("cam1 has sent no status: is it switched on and plugged in?")
    rec = {"streams": {"emg1": {"offset_ms": 0.01, "rtt_ms": 0.2, "age_s": 1.0},
                       "cam1": {"offset_ms": -0.02, "rtt_ms": 25.0, "age_s": 1.0}}}
    (clocks,) = check_clocks(rec, ["emg1", "cam1", "chest_ecg"])
    assert not clocks.ok and clocks.text.startswith("cam1: round trip 25.0 ms; chest_ecg: not measured yet: check")
    (ok,) = check_clocks(rec, ["emg1"])
    assert ok.ok and ok.text == "1 streams measured, largest offset 0.010 ms"
    disk = check_disk(int(10e9), 5e6, 2000.0, 199, int(0.1e9), Path("/data"))
    assert not disk.ok  # 5 MB/s x 2000 s x 1.2 + 0.1 GB = 12.1 GB > 10 GB
    assert disk.text.startswith("199 takes left, 33 min at 5.0 MB/s: needs 12.1 GB, 10.0 GB free on /data: free")
    assert check_disk(int(13e9), 5e6, 2000.0, 199, int(0.1e9), Path("/data")).ok


def test_ring_keeps_the_newest_samples_in_order() -> None:
    ring = Ring(2, 5)
    for start in (0, 3, 6):
        k = np.arange(start, start + 3, dtype=float)
        ring.append(np.stack([k, -k], axis=1), k)
    stamps, values = ring.latest()
    assert stamps.tolist() == [4, 5, 6, 7, 8] and values[:, 1].tolist() == [-4, -5, -6, -7, -8]
    assert ring.latest(2)[0].tolist() == [7, 8]
    ring.append(np.zeros((7, 2)), np.arange(100, 107, dtype=float))  # more than the capacity at once
    assert ring.latest()[0].tolist() == [102, 103, 104, 105, 106]


def test_peak_reduce_keeps_every_spike() -> None:
    x = np.arange(10_000, dtype=float)
    y = np.zeros(10_000)
    y[5_001] = 9.0
    y[7_777] = -4.0
    xs, ys = peak_reduce(x, y, 100)
    assert len(xs) == len(ys) == 200 and ys.max() == 9.0 and ys.min() == -4.0
    assert xs[0] == 0 and xs[-1] == 9_900
