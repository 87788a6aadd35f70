"""sEMG driver benchmark: CPU per second of signal for each protocol at its highest rate (and four
Shimmer units at 1024 Hz together), and time-stamp error before and after the clock fit against the
emulator's truth.

CPU: each driver runs as its own process (`flexcap driver emg`) against an emulator process on a pty;
the driver's CPU time over the run divided by the run's length. Target: < 2 % of one core per unit.
Stamps: the same driver code in this process (its (counter, arrival) log), read through a pty from an
emulator process. "before" stamps each sample from its block's arrival (sample i of n at
arrival - (n-1-i)/rate, the usual practice); "after" is the published, fitted stamp. Errors are
against the true sample time plus the emulator's configured latency; "jitter" is the error minus its
median (a constant latency is the sync controller's job). Target: fitted within 0.1 ms RMS.

    .venv/bin/python benchmarks/emg_driver.py [--seconds 30]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
from _common import cpu_seconds, emit

CONFIGS = [("shimmer3-exg", 2048.0), ("shimmer3-exg", 1024.0), ("cyton", None), ("cyton-daisy", None)]


def start_emulator(protocol: str, rate: float | None, link: Path):  # noqa: ANN201
    from drivers.runtime.process import ChildProcess

    args = ["emulate", "emg", "--protocol", protocol, "--link", str(link), "--control", "stdio"]
    if rate:
        args += ["--rate", str(rate)]
    child = ChildProcess(f"emulator {protocol}", args)
    child.request("path", timeout=20)
    return child


def driver_cpu(configs: list[tuple[str, float | None]], seconds: float) -> list[float]:
    """CPU seconds per second of each driver process, all running at once."""
    import subprocess
    import sys

    tmp = Path(tempfile.mkdtemp())
    emulators, drivers = [], []
    try:
        for i, (protocol, rate) in enumerate(configs):
            link = tmp / f"unit{i}.tty"
            emulators.append(start_emulator(protocol, rate, link))
            cmd = [sys.executable, "-m", "acquisition.cli", "driver", "emg", "--protocol", protocol, "--port",
                   str(link), "--name", f"bench{i}"] + (["--rate", str(rate)] if rate else [])
            drivers.append(subprocess.Popen(cmd, stderr=subprocess.DEVNULL))
        time.sleep(3.0)  # connect, handshake, settle
        cpu0 = [cpu_seconds(d.pid) for d in drivers]
        time.sleep(seconds)
        return [(cpu_seconds(d.pid) - c0) / seconds for d, c0 in zip(drivers, cpu0, strict=True)]
    finally:
        for d in drivers:
            d.terminate()
            d.wait(10)
        for e in emulators:
            e.stop()


def stamp_errors(protocol: str, rate: float | None, seconds: float) -> dict:
    """Run the driver in this process against an emulator process; compare stamps with the truth."""
    from drivers.emg.driver import EmgDriver, EmgSettings
    from drivers.runtime.driver import DriverContext

    tmp = Path(tempfile.mkdtemp())
    link = tmp / "unit.tty"
    emulator = start_emulator(protocol, rate, link)
    try:
        driver = EmgDriver(DriverContext("bench", "emg", settings=EmgSettings(protocol=protocol, port=str(link),
                                                                              rate=rate)))
        published: list[tuple[np.ndarray, np.ndarray]] = []
        driver.publish = lambda key, samples, stamps: published.append((samples[:, -1].copy(), np.asarray(stamps)))
        driver.jitter_log = []
        driver.open()
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            driver.read()
        truth = emulator.request("truth")[protocol]
        driver.close()
    finally:
        emulator.stop()
    raw = np.concatenate([p[0] for p in published]).astype(np.int64)
    fitted = np.concatenate([p[1] for p in published])
    nominal = driver.protocol.nominal_rate
    # device sample index of every published sample, and its true time
    if protocol == "shimmer3-exg":
        k = ((raw - truth["tick0"]) % (1 << 24)) // truth["divider"]
    else:  # Cyton packet number (a Daisy row carries its odd packet's number)
        k = np.concatenate([[0], np.cumsum(np.diff(raw) % 256)]) + raw[0]
    true_time = truth["t0"] + k / truth["true_rate"] + truth["latency_s"]
    # naive stamps: each block's arrival for its last sample, earlier samples at the nominal period
    naive = np.concatenate([arrival - (len(block) - 1 - np.arange(len(block))) / nominal
                            for (block, _), (_, arrival) in zip(published, driver.jitter_log, strict=True)])
    steady = true_time >= true_time[0] + min(30.0, seconds / 2)  # after the fit's 30 s window has filled
    out = {"samples": int(len(k)), "lost": int(driver.drops)}
    for name, stamps in (("before", naive), ("after", fitted)):
        for part, mask in (("all", np.ones(len(k), bool)), ("steady", steady)):
            err = (stamps - true_time)[mask]
            jitter = err - np.median(err)
            out[f"{name}_{part}"] = {"median_ms": round(float(np.median(err)) * 1e3, 4),
                                     "jitter_rms_ms": round(float(np.sqrt(np.mean(jitter**2))) * 1e3, 4),
                                     "jitter_max_ms": round(float(np.max(np.abs(jitter))) * 1e3, 4)}
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=30.0)
    args = ap.parse_args()
    rows = [["configuration", "CPU % of a core", "before: jitter RMS ms", "max ms", "after: jitter RMS ms", "max ms",
             "after (steady) RMS ms", "max ms"]]
    result: dict = {"benchmark": "emg_driver", "seconds": args.seconds, "configs": {}}
    for protocol, rate in CONFIGS:
        name = f"{protocol}@{rate or {'cyton': 250, 'cyton-daisy': 125}[protocol]:g}Hz"
        cpu = driver_cpu([(protocol, rate)], args.seconds)[0]
        stamps = stamp_errors(protocol, rate, max(args.seconds * 2, 20.0))
        result["configs"][name] = {"cpu_fraction_of_core": round(cpu, 4), "stamps": stamps}
        b, a, s = stamps["before_all"], stamps["after_all"], stamps["after_steady"]
        rows.append([name, f"{cpu * 100:.2f}", f"{b['jitter_rms_ms']:.4f}", f"{b['jitter_max_ms']:.3f}",
                     f"{a['jitter_rms_ms']:.4f}", f"{a['jitter_max_ms']:.3f}", f"{s['jitter_rms_ms']:.4f}",
                     f"{s['jitter_max_ms']:.3f}"])
    four = driver_cpu([("shimmer3-exg", 1024.0)] * 4, args.seconds)
    result["four_shimmer_units_1024hz"] = {"cpu_fraction_of_core_each": [round(c, 4) for c in four],
                                           "cpu_fraction_of_core_total": round(sum(four), 4)}
    rows.append(["4 x shimmer3-exg@1024Hz", f"{100 * max(four):.2f} max / {100 * sum(four):.2f} total", "", "", "",
                 "", "", ""])
    result["targets"] = {"cpu_fraction_of_core_per_unit": 0.02, "fitted_jitter_rms_ms": 0.1}
    emit("emg_driver", result, rows)


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    threading.current_thread().name = "bench"
    main()
