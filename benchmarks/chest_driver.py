"""Chest-strap benchmark: driver CPU per second with HR + ECG 130 Hz + ACC 200 Hz, and the breathing
rate error (method x true rate x motion) against the simulated truth.

CPU: `flexcap driver chest --replay LOG` (the driver alone: parsing, time mapping, breathing, LSL)
on a log recorded from the simulated strap, and `flexcap driver chest --emulate` (the driver plus
the simulated strap in the same process).

    .venv/bin/python benchmarks/chest_driver.py [--seconds 30]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from _common import ROOT, cpu_seconds, emit

RATES = [6, 8, 10, 12, 15, 20, 25, 30, 35, 40]


def driver_cpu(args: list[str], seconds: float) -> float:
    proc = subprocess.Popen([sys.executable, "-m", "acquisition.cli", "driver", "chest", *args], cwd=ROOT,
                            stderr=subprocess.DEVNULL)
    try:
        time.sleep(4.0)  # connect and settle
        c0 = cpu_seconds(proc.pid)
        time.sleep(seconds)
        return (cpu_seconds(proc.pid) - c0) / seconds
    finally:
        proc.terminate()
        proc.wait(15)


def breathing_errors(seconds: float = 40.0) -> dict:
    from drivers.chest.breathing import BreathingEstimator
    from drivers.sim.h10 import H10Settings, SimBody
    from drivers.sim.lab import SimLabSettings

    out: dict = {}
    for lifting in (False, True):
        for rate in RATES:
            body = SimBody(H10Settings(lifting=lifting), SimLabSettings(breaths_per_min=rate), 100.0, seed=rate)
            t = 100.0 + np.arange(0, seconds, 1 / 200)
            est = BreathingEstimator()
            est.add_acc(t, body.acc(t))
            beats = body.sim.heart_beats(t[0] - 1.0, t[-1])
            est.add_rr(beats[1:], np.diff(beats) * 1000)
            fused, acc, rsa = est.estimate(t[-1])
            key = f"{'lifting' if lifting else 'rest'}@{rate}"
            out[key] = {m: {"error_bpm": round(float(e.rate_bpm - rate), 3) if np.isfinite(e.rate_bpm) else None,
                            "quality": round(e.quality, 3)} for m, e in (("acc", acc), ("rsa", rsa), ("fused", fused))}
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=30.0)
    args = ap.parse_args()
    log = Path(tempfile.mkdtemp()) / "strap.jsonl"
    record = subprocess.Popen([sys.executable, "-m", "acquisition.cli", "driver", "chest", "--emulate", "--log",
                               str(log), "--name", "record"], cwd=ROOT, stderr=subprocess.DEVNULL)
    time.sleep(args.seconds + 8)
    record.terminate()
    record.wait(15)
    replay_cpu = driver_cpu(["--replay", str(log), "--name", "bench_replay"], args.seconds)
    emulated_cpu = driver_cpu(["--emulate", "--name", "bench_emulated"], args.seconds)
    errors = breathing_errors()
    rows = [["breathing", *[str(r) for r in RATES]]]
    for motion in ("rest", "lifting"):
        for method in ("acc", "rsa", "fused"):
            cells = []
            for rate in RATES:
                e = errors[f"{motion}@{rate}"][method]
                cells.append("-" if e["error_bpm"] is None else f"{e['error_bpm']:+.2f}" + ("*" if e["quality"] < 0.3
                                                                                              else ""))
            rows.append([f"{motion} {method} error /min", *cells])
    rows.append(["driver CPU % (replay)", f"{replay_cpu * 100:.2f}", *[""] * (len(RATES) - 1)])
    rows.append(["driver+strap CPU % (emulated)", f"{emulated_cpu * 100:.2f}", *[""] * (len(RATES) - 1)])
    result = {"benchmark": "chest_driver", "seconds": args.seconds,
              "cpu_fraction_of_core": {"driver_replaying_a_log": round(replay_cpu, 4),
                                       "driver_with_emulated_strap": round(emulated_cpu, 4)},
              "streams": "HR + RR + ECG 130 Hz + ACC 200 Hz + breathing 1 Hz",
              "breathing_error": errors, "note": "* quality below 0.3: the estimate says it is unreliable"}
    emit("chest_driver", result, rows)


if __name__ == "__main__":
    main()
