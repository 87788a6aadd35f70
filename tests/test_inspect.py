"""`flexcap inspect`'s gap count: samples a device says are missing, not its clock fit's small steps."""

from __future__ import annotations

import json
from pathlib import Path

import h5py
import numpy as np

from acquisition.inspect import sample_gaps

RATE = 2048.0


def _stream(path: Path, counter: np.ndarray | None, stamps: np.ndarray) -> tuple[h5py.File, h5py.Group]:
    f = h5py.File(path, "w")
    g = f.create_group("s")
    labels = ["emg"] + (["counter"] if counter is not None else [])
    g.attrs["channel_labels"] = json.dumps(labels)
    data = np.zeros((len(stamps), len(labels)))
    if counter is not None:
        data[:, 1] = counter
    g["time_series"] = data
    g["time_stamps"] = stamps
    return f, g


def test_a_counted_stream_gaps_are_its_lost_samples_not_its_stamp_steps(tmp_path: Path) -> None:
    # Shimmer ticks (mod 2^24, 16 a sample): 3 samples lost after sample 999; the clock fit steps the stamps
    # by 0.4 ms at sample 300 (over 1.5 periods between two samples, but none missing)
    positions = np.concatenate([np.arange(1000), np.arange(1003, 2000)])
    ticks = np.mod(positions * 16 + (1 << 24) - 5000, 1 << 24)
    stamps = positions / RATE
    stamps[300:] += 0.0004
    f, g = _stream(tmp_path / "a.h5", ticks, stamps)
    with f:
        gaps, missing = sample_gaps(g, stamps, RATE)
    assert gaps == 1 and missing == 3 / RATE
    # without a counter, the stamps are all there is: the step counts as one gap, the lost samples as another
    f, g = _stream(tmp_path / "b.h5", None, stamps)
    with f:
        gaps, missing = sample_gaps(g, stamps, RATE)
    assert gaps == 2 and abs(missing - (3 / RATE + 0.0004)) < 1e-9
