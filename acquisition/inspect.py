"""`flexcap inspect`: what a take holds, per stream and per camera."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from acquisition.sync.timebase import counter_positions
from acquisition.takefile import attr_text, find_take_file
from drivers.camera.framestore import FrameFile
from drivers.runtime.h5append import open_readable


def open_take(path: Path) -> tuple[h5py.File, bool]:
    """Open a take for reading; a file whose writer died needs swmr=True. Returns (file, closed_cleanly)."""
    f, _ = open_readable(path)
    return f, "stopped_lsl" in f.attrs


def time_gaps(stamps: np.ndarray, nominal_srate: float) -> tuple[int, float]:
    """Gaps longer than 1.5 sample periods: (count, seconds missing)."""
    if nominal_srate <= 0 or len(stamps) < 2:
        return 0, 0.0
    period = 1.0 / nominal_srate
    dt = np.diff(stamps)
    big = dt > 1.5 * period
    return int(big.sum()), float(np.sum(dt[big] - period))


def sample_gaps(g: h5py.Group, stamps: np.ndarray, nominal_srate: float) -> tuple[int, float]:
    """Gaps in a stream: (count, seconds missing). A device that numbers its samples says itself where
    samples are missing (its driver's clock fit may step its stamps by a fraction of a sample as it
    settles, which is not a gap); other streams' gaps are in their stamps."""
    labels = json.loads(attr_text(g.attrs.get("channel_labels", "[]")) or "[]")
    if nominal_srate > 0 and "counter" in labels and len(stamps) > 1:
        positions = counter_positions(g["time_series"][:, labels.index("counter")])
        if positions is not None:
            steps = np.diff(positions)
            lost = steps > 1
            return int(lost.sum()), float(np.sum(steps[lost] - 1) / nominal_srate)
    return time_gaps(stamps, nominal_srate)


def inspect_take(path: str | Path) -> dict[str, Any]:
    take_file = find_take_file(path)
    f, closed = open_take(take_file)
    with f:
        attrs = {k: attr_text(v) if isinstance(v, bytes | str) else v for k, v in f.attrs.items() if k != "rig"}
        start = float(f.attrs.get("started_lsl", np.nan))
        stop = float(f.attrs.get("stopped_lsl", np.nan))
        streams = {}
        for sid, g in f["streams"].items():
            ts = g["time_stamps"][()] + float(g.attrs.get("window_offset", 0.0))  # on the recorder's clock
            n = len(ts)
            srate = float(g.attrs["nominal_srate"])
            duration = float(ts[-1] - ts[0]) if n > 1 else 0.0
            gaps, missing_s = sample_gaps(g, ts, srate)
            streams[sid] = {
                "type": attr_text(g.attrs["type"]), "samples": n, "channels": int(g.attrs["channel_count"]),
                "nominal_srate": srate, "measured_srate": (n - 1) / duration if duration > 0 else 0.0,
                "duration_s": duration, "gaps": gaps, "gap_s": missing_s,
                "first_s": float(ts[0] - start) if n else None, "last_s": float(ts[-1] - start) if n else None,
                "clock_offsets": int(g["clock_offsets"].shape[0]),
            }
        cameras = {}
        for cam in f.get("cameras", {}):
            link = f["cameras"].get(cam, getlink=True)
            frame_path = take_file.parent / link.filename
            if not frame_path.is_file():
                cameras[cam] = {"error": f"frame file {link.filename} missing"}
                continue
            with FrameFile(frame_path, swmr=True) as ff:
                n = len(ff)
                ts = ff.time_stamps
                dur = float(ts[-1] - ts[0]) if n > 1 else 0.0
                cameras[cam] = {
                    "role": attr_text(ff.attrs["role"]), "frames": n, "dropped": ff.dropped(),
                    "size_mb": frame_path.stat().st_size / 1e6, "nominal_fps": float(ff.attrs["nominal_fps"]),
                    "measured_fps": (n - 1) / dur if dur > 0 else 0.0,
                    "width": int(ff.attrs["width"]), "height": int(ff.attrs["height"]),
                }
    return {"path": str(take_file), "closed_cleanly": closed, "attrs": attrs,
            "duration_s": stop - start, "size_mb": sum(p.stat().st_size for p in take_file.parent.glob("*.h5")) / 1e6,
            "streams": streams, "cameras": cameras}


def format_inspection(info: dict[str, Any]) -> str:
    a = info["attrs"]
    unclean = "" if info["closed_cleanly"] else "  NOT CLOSED CLEANLY (data up to the recorder's last flush)"
    lines = [
        f"take {a.get('take', '?')}  session {a.get('session', '?')}  subject {a.get('subject', '?')}  "
        f"action {a.get('action', '?')}  rep {a.get('repetition', '?')}",
        f"  {info['path']}  {info['duration_s']:.2f} s  {info['size_mb']:.1f} MB{unclean}",
        "",
        f"  {'stream':<16}{'type':<17}{'ch':>3}{'samples':>9}{'nominal':>9}{'measured':>10}{'gaps':>6}"
        f"{'first s':>9}{'last s':>9}",
    ]
    for sid, s in info["streams"].items():
        first = f"{s['first_s']:.3f}" if s["first_s"] is not None else "-"
        last = f"{s['last_s']:.3f}" if s["last_s"] is not None else "-"
        nominal = f"{s['nominal_srate']:g}" if s["nominal_srate"] > 0 else "irreg"
        lines.append(f"  {sid:<16}{s['type'][:16]:<17}{s['channels']:>3}{s['samples']:>9}{nominal:>9}"
                     f"{s['measured_srate']:>10.2f}{s['gaps']:>6}{first:>9}{last:>9}")
    if info["cameras"]:
        lines += ["", f"  {'camera':<10}{'role':<8}{'frames':>7}{'dropped':>8}{'fps':>7}{'measured':>10}"
                      f"{'size':>12}{'MB':>8}"]
        for cam, c in info["cameras"].items():
            if "error" in c:
                lines.append(f"  {cam:<10}{c['error']}")
                continue
            lines.append(f"  {cam:<10}{c['role']:<8}{c['frames']:>7}{c['dropped']:>8}{c['nominal_fps']:>7g}"
                         f"{c['measured_fps']:>10.2f}{c['width']:>7}x{c['height']:<4}{c['size_mb']:>8.1f}")
    return "\n".join(lines)


def summary_line(info: dict[str, Any]) -> str:
    """The inspection in one line, for the console's take log: length, streams, gaps, cameras, drops, size."""
    streams = info["streams"]
    empty = [sid for sid, s in streams.items() if s["samples"] == 0]
    gaps = sum(s["gaps"] for s in streams.values())
    cams = info["cameras"]
    dropped = sum(c.get("dropped", 0) for c in cams.values())
    broken = [cam for cam, c in cams.items() if "error" in c]
    parts = [f"{info['duration_s']:.1f} s", f"{len(streams)} streams" + (f" ({len(empty)} empty: {', '.join(empty)})"
                                                                       if empty else ""),
             f"{gaps} gaps", f"{len(cams)} cameras, {dropped} frames dropped"
             + (f", no frame file: {', '.join(broken)}" if broken else ""), f"{info['size_mb']:.0f} MB"]
    if not info["closed_cleanly"]:
        parts.append("NOT CLOSED CLEANLY")
    return ", ".join(parts)


def inspection_json(info: dict[str, Any]) -> str:
    return json.dumps(info, indent=2, default=float)
