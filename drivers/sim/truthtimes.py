"""The true time of every recorded sample of a simulated take, from its truth.json: what alignment
errors are measured against (tests and benchmarks/sync_accuracy.py)."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from drivers.camera.framestore import FrameFile
from drivers.sim.scene import BARCODE_BITS, decode_barcode

SHIMMER_TICKS = 1 << 24


def load_truth(take_dir: Path) -> dict[str, Any]:
    return json.loads((Path(take_dir) / "truth.json").read_text())


def emg_true_times(dev: dict[str, Any], raw_counter: np.ndarray, stamps: np.ndarray) -> np.ndarray:
    """Shimmer units: sample k of the emulator has tick tick0 + k * divider (mod 2^24) and true time
    t0 + k / true_rate; the recorded stamps say which wrap of the tick counter a sample is in."""
    ticks = np.asarray(raw_counter, dtype=np.int64)
    period_k = SHIMMER_TICKS // dev["divider"]
    k_mod = ((ticks - dev["tick0"]) % SHIMMER_TICKS) // dev["divider"]
    approx = (np.asarray(stamps) - dev["latency_s"] - dev["t0"]) * dev["true_rate"]
    k = k_mod + period_k * np.round((approx - k_mod) / period_k)
    return dev["t0"] + k / dev["true_rate"]


def frame_numbers(frame_file: Path) -> tuple[np.ndarray, np.ndarray]:
    """(stored index, the device's own frame number burnt into the frame) of every stored frame. Every
    frame is read: an index a driver reconstructed from arrival times (a phone sends no counter) can be off."""
    with FrameFile(frame_file) as ff:
        index = np.asarray(ff.frame_index, dtype=np.int64)
        jpegs = [ff.frame(i) for i in range(len(ff))]

    def number(jpeg: bytes) -> int:
        return decode_barcode(cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_GRAYSCALE))

    with ThreadPoolExecutor(max_workers=2) as pool:  # OpenCV decodes without the GIL
        numbers = np.array(list(pool.map(number, jpegs)), dtype=np.int64)
    wraps = np.concatenate(([0], np.cumsum(np.diff(numbers) < -(1 << (BARCODE_BITS - 1)))))
    return index, numbers + wraps * (1 << BARCODE_BITS)


def frame_true_times(dev: dict[str, Any], frame_file: Path, frame_index: np.ndarray) -> np.ndarray:
    """Frame k of a simulated camera is exposed from t0 + k / true_rate, k being the number burnt into it
    (rows of `frame_index` are matched to the frame file's by their index)."""
    index, numbers = frame_numbers(frame_file)
    rows = np.searchsorted(index, np.asarray(frame_index, dtype=np.int64))
    return dev["t0"] + numbers[np.clip(rows, 0, len(numbers) - 1)] / dev["true_rate"]


def ecg_true_times(dev: dict[str, Any], values: np.ndarray, stamps: np.ndarray, sim: Any) -> np.ndarray | None:
    """The strap's ECG carries no counter: sample j's place in its stream (k) is found by matching the
    recorded values with the simulated ECG around where the stamps say they are (values are exact)."""
    from drivers.sim.h10 import H10Settings, SimBody

    body = SimBody(H10Settings(), sim, 0.0, 0)
    values = np.asarray(values, dtype=np.float64)
    n = min(len(values), 400)
    for start in reversed(dev.get("ecg_starts", [])):
        rate, t0 = start["true_rate"], start["t0"]
        guess = int(round((stamps[0] - dev["latency_s"] - t0) * rate))
        for k0 in range(max(0, guess - 60), guess + 61):
            if np.array_equal(body.ecg(t0 + np.arange(k0, k0 + n) / rate), values[:n]):
                return t0 + (k0 + np.arange(len(values))) / rate
    return None
