"""Recorder load benchmark: the reference load recorded by flexcap's recorder process.

Load (as measured for LabRecorder's command-line recorder in MEASUREMENTS.md): 64-ch float32 at 2 kHz,
5 frame-index streams at 60 Hz and a marker stream (1/s), each carrying a running counter in channel 0,
for 30 s. Reports recorder CPU seconds per recorded second (steady, during the take), peak RSS,
samples expected vs recorded per stream and the tail lost at stop. Target: 0 lost, 0 tail lost,
CPU <= 0.0104 s/s (LabRecorder on this kind of machine).

    .venv/bin/python benchmarks/recorder_load.py [--seconds 30]
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import tempfile
import time
from pathlib import Path

from _common import cpu_seconds, emit, peak_rss_mb

LABRECORDER_CPU_PER_S = 0.0104
EMG_CHUNK = 20  # the 2 kHz stream is pushed in 10 ms chunks; frame indices per frame; markers once a second
STREAMS = [("emg64", "EMG", 64, 2000.0, "float32")] + [
    (f"cam{i}", "VideoFrameIndex", 1, 60.0, "double64") for i in range(1, 6)
] + [("markers", "Markers", 1, 0.0, "string")]


def publish(t0_queue: mp.Queue, stop: mp.Event) -> None:
    """Push every stream with exact stamps t0 + k / rate (markers: one per second)."""
    import numpy as np
    import pylsl

    outlets = {}
    for name, type_, ch, rate, fmt in STREAMS:
        info = pylsl.StreamInfo(name, type_, ch, rate, fmt, f"bench:{name}")
        outlets[name] = pylsl.StreamOutlet(info)
    time.sleep(1.0)
    t0 = pylsl.local_clock()
    t0_queue.put(t0)
    sent = {name: 0 for name, *_ in STREAMS}
    emg_row = np.zeros((1, 64), dtype=np.float32)
    while not stop.is_set():
        now = pylsl.local_clock()
        for name, _, ch, rate, _ in STREAMS:
            due = int((now - t0) * (rate if rate > 0 else 1.0)) + 1
            k0, n = sent[name], due - sent[name]
            if n <= 0 or (ch == 64 and n < EMG_CHUNK):
                continue
            k = np.arange(k0, k0 + n)
            stamps = t0 + k / (rate if rate > 0 else 1.0)
            if name == "markers":
                outlets[name].push_chunk([[str(int(v))] for v in k], stamps.tolist())
            elif ch == 64:
                block = np.repeat(emg_row, n, axis=0)
                block[:, 0] = k
                outlets[name].push_chunk(block, stamps.tolist())
            else:
                outlets[name].push_chunk(k.astype(np.float64)[:, None], stamps.tolist())
            sent[name] = due
        time.sleep(0.002)


def bare_inlets(seconds: float, result: mp.Queue) -> None:
    """The floor: liblsl's own receive threads for this load, pulled every 0.5 s and discarded."""
    import pylsl

    inlets = []
    for name, *_ in STREAMS:
        info = pylsl.resolve_byprop("source_id", f"bench:{name}", 1, 20.0)[0]
        inlet = pylsl.StreamInlet(info, max_buflen=360, max_chunklen=0, recover=True)
        inlet.open_stream(5.0)
        inlets.append(inlet)
    time.sleep(1.0)
    t0 = time.process_time()
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        for inlet in inlets:
            inlet.pull_chunk(0.0, 100000, as_numpy=True)
        time.sleep(0.5)
    result.put((time.process_time() - t0) / seconds)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=30.0)
    args = ap.parse_args()

    import h5py
    import numpy as np
    import pylsl

    from acquisition.config import RecorderSettings
    from acquisition.takefile import stream_strings
    from drivers.runtime.process import ChildProcess

    ctx = mp.get_context("spawn")
    t0q, stop = ctx.Queue(), ctx.Event()
    pub = ctx.Process(target=publish, args=(t0q, stop), daemon=True)
    pub.start()
    t0 = t0q.get(timeout=30)
    floor_q = ctx.Queue()
    floor = ctx.Process(target=bare_inlets, args=(min(10.0, args.seconds), floor_q))
    floor.start()
    liblsl_floor = floor_q.get(timeout=120)
    floor.join(10)
    settings = RecorderSettings(min_free_disk_mb=100)
    rec = ChildProcess("recorder", ["_recorder", "--settings", settings.model_dump_json()])
    try:
        rec.request("connect", streams=[{"source_id": f"bench:{n}", "stream_id": n} for n, *_ in STREAMS])
        missing = rec.request("wait_connected", timeout=40, wait_s=30)
        assert not missing, f"streams not found: {missing}"
        time.sleep(1.0)
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "take.h5"
            cpu0 = cpu_seconds(rec.pid)
            start = pylsl.local_clock()
            rec.request("start", path=str(path), attrs={"session": "bench", "take": "load"}, cameras={},
                        start_lsl=start)
            time.sleep(args.seconds)
            stop_lsl = pylsl.local_clock()
            cpu1 = cpu_seconds(rec.pid)
            summary = rec.request("stop", timeout=60, stop_lsl=stop_lsl)
            rss = peak_rss_mb(rec.pid)
            rows = [["stream", "rate", "expected", "recorded", "lost", "tail lost ms"]]
            per_stream = {}
            with h5py.File(path, "r") as f:
                for name, _, _, rate, _ in STREAMS:
                    g = f[f"streams/{name}"]
                    period = 1.0 / rate if rate > 0 else 1.0
                    # the take window applies on the recorder's clock: stamp + measured clock offset
                    offset = float(g.attrs["window_offset"])
                    first = int(np.ceil((start - offset - t0) / period))
                    last = int(np.floor((stop_lsl - offset - t0) / period))
                    expected = np.arange(first, last + 1)
                    if name == "markers":
                        got = np.array([int(r[0]) for r in stream_strings(g)])
                    else:
                        got = g["time_series"][:, 0].astype(np.int64)
                    lost = len(np.setdiff1d(expected, got))
                    tail = max(0, int(expected[-1]) - int(got[-1]) if len(got) else len(expected)) * period * 1e3
                    per_stream[name] = {"expected": int(len(expected)), "recorded": int(len(got)), "lost": lost,
                                        "tail_lost_ms": tail}
                    rows.append([name, f"{rate:g}", str(len(expected)), str(len(got)), str(lost), f"{tail:.1f}"])
        duration = stop_lsl - start
        cpu_per_s = (cpu1 - cpu0) / duration
        result = {
            "benchmark": "recorder_load", "seconds": round(duration, 3),
            "recorder_cpu_s_per_recorded_s": round(cpu_per_s, 5),
            "labrecorder_cpu_s_per_recorded_s": LABRECORDER_CPU_PER_S,
            "meets_target": bool(cpu_per_s <= LABRECORDER_CPU_PER_S),
            "liblsl_receive_floor_cpu_s_per_s": round(liblsl_floor, 5),
            "recorder_above_floor_cpu_s_per_s": round(cpu_per_s - liblsl_floor, 5),
            "publisher": "emg64 in 10 ms chunks (20 samples), frame indices one per frame, markers 1/s",
            "peak_rss_mb": round(rss, 1), "streams": per_stream,
            "samples_lost": sum(s["lost"] for s in per_stream.values()),
            "tail_lost_ms_max": max(s["tail_lost_ms"] for s in per_stream.values()),
            "stop_summary_streams": summary["streams"],
        }
        rows.append(["recorder CPU s/s", f"{cpu_per_s:.5f}", f"target {LABRECORDER_CPU_PER_S}", "", "", ""])
        rows.append(["bare liblsl inlets s/s", f"{liblsl_floor:.5f}", "(same load, no recorder)", "", "", ""])
        rows.append(["peak RSS MB", f"{rss:.1f}", "", "", "", ""])
        emit("recorder_load", result, rows)
    finally:
        rec.stop()
        stop.set()
        pub.join(5)


if __name__ == "__main__":
    main()
