"""`flexcap validate`: check a take against format version 1 and say exactly what is wrong."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import h5py
import numpy as np

from acquisition.inspect import open_take
from acquisition.takefile import FORMAT, FORMAT_VERSION, attr_text, find_take_file
from calibration.result import CAMERA_DATASETS
from drivers.camera.framestore import FRAME_ATTRS
from drivers.runtime.h5append import open_readable
from drivers.runtime.streams import CHANNEL_FORMATS

ROOT_ATTRS = ("format", "format_version", "session", "take", "subject", "action", "repetition", "started_at",
              "started_lsl", "stopped_lsl", "host", "flexcap_version", "rig")
STREAM_ATTRS = ("name", "type", "source_id", "hostname", "nominal_srate", "channel_format", "channel_count",
                "info_xml", "channel_labels", "channel_units", "channel_types")
JPEG_SOI = (0xFF, 0xD8)
JPEG_EOI = (0xFF, 0xD9)
TIME_TOLERANCE = 1e-6


def validate_take(path: str | Path) -> list[str]:
    """Every problem found, as 'where: what' lines; an empty list means the take is valid."""
    try:
        take_file = find_take_file(path)
    except FileNotFoundError as exc:
        return [str(exc)]
    try:
        f, closed = open_take(take_file)
    except OSError as exc:
        return [f"{take_file}: cannot be opened as HDF5: {exc}"]
    problems: list[str] = []
    with f:
        if not closed:
            problems.append(f"{take_file}: not closed cleanly (no stopped_lsl): the recorder stopped before the "
                            "end of the take; data up to its last flush is readable")
        _check_root(f, problems)
        start = float(f.attrs.get("started_lsl", np.nan))
        stop = float(f.attrs.get("stopped_lsl", np.inf))
        if "streams" not in f:
            problems.append("/streams: missing")
        else:
            for sid, g in f["streams"].items():
                _check_stream(f"/streams/{sid}", g, start, stop, problems)
        for name in ("markers/events",):
            if name not in f:
                problems.append(f"/{name}: missing")
            else:
                _check_strings(f"/{name}", f[name], 1, problems)
        if "sync" not in f:
            problems.append("/sync: missing")
        else:
            _check_sync(f, problems)
        if "calibration" in f:
            _check_calibration(f["calibration"], take_file.parent, problems)
        if "cameras" in f:
            for cam in f["cameras"]:
                _check_camera(take_file.parent, cam, f["cameras"].get(cam, getlink=True), start, stop, problems)
    return problems


def _check_calibration(g: h5py.Group, folder: Path, problems: list[str]) -> None:
    """The calibration in force when the take was recorded: per camera K, dist, R, t and image_size, which
    is the size the camera's frames have in this take."""
    for cam, c in g.items():
        where = f"/calibration/{cam}"
        frames = folder / f"{cam}.h5"
        if "image_size" in c and c["image_size"].shape == (2,) and frames.exists():
            with h5py.File(frames, "r") as cf:
                size = [int(cf.attrs.get("width", 0)), int(cf.attrs.get("height", 0))]
            if list(c["image_size"][()]) != size:
                problems.append(f"{where}/image_size: {list(c['image_size'][()])}, but {cam}'s frames are "
                                f"{size[0]}x{size[1]}")
        for name, shape in CAMERA_DATASETS.items():
            if name not in c:
                problems.append(f"{where}/{name}: missing")
            elif c[name].shape != shape:
                problems.append(f"{where}/{name}: shape {c[name].shape}, expected {shape}")
            elif not np.all(np.isfinite(c[name][()])):
                problems.append(f"{where}/{name}: not all finite")
        if "R" in c and c["R"].shape == (3, 3):
            R = c["R"][()]
            if not np.allclose(R @ R.T, np.eye(3), atol=1e-6) or np.linalg.det(R) < 0:
                problems.append(f"{where}/R: not a rotation")
        if "reprojection_rms" not in c.attrs:
            problems.append(f"{where}: no reprojection_rms attribute")


def _check_sync(f: h5py.File, problems: list[str]) -> None:
    """Corrected times, when the sync controller has run: one per recorded sample, all finite."""
    for sid, g in f["sync"].items():
        where = f"/sync/{sid}"
        if "streams" not in f or sid not in f["streams"]:
            problems.append(f"{where}: no stream {sid!r} in /streams")
            continue
        if "time_stamps" not in g:
            problems.append(f"{where}/time_stamps: missing")
            continue
        n, m = g["time_stamps"].shape[0], f["streams"][sid]["time_stamps"].shape[0]
        if n != m:
            problems.append(f"{where}/time_stamps: {n} rows, the stream has {m}")
        elif n and not np.all(np.isfinite(g["time_stamps"][()])):
            problems.append(f"{where}/time_stamps: not all finite")


def _check_root(f: h5py.File, problems: list[str]) -> None:
    for key in ROOT_ATTRS:
        if key not in f.attrs:
            problems.append(f"/: attribute {key!r} missing")
    if "format" in f.attrs and attr_text(f.attrs["format"]) != FORMAT:
        problems.append(f"/: format is {attr_text(f.attrs['format'])!r}, expected {FORMAT!r}")
    if "format_version" in f.attrs and int(f.attrs["format_version"]) != FORMAT_VERSION:
        problems.append(f"/: format_version is {f.attrs['format_version']}, this validator reads {FORMAT_VERSION}")
    if "started_at" in f.attrs:
        try:
            dt.datetime.fromisoformat(attr_text(f.attrs["started_at"]).replace("Z", "+00:00"))
        except ValueError:
            problems.append(f"/: started_at {attr_text(f.attrs['started_at'])!r} is not ISO 8601")
    if "rig" in f.attrs:
        try:
            json.loads(attr_text(f.attrs["rig"]))
        except ValueError:
            problems.append("/: rig is not valid JSON")
    if "started_lsl" in f.attrs and "stopped_lsl" in f.attrs and f.attrs["stopped_lsl"] < f.attrs["started_lsl"]:
        problems.append("/: stopped_lsl is before started_lsl")


def _check_stream(where: str, g: h5py.Group, start: float, stop: float, problems: list[str]) -> None:
    missing = [k for k in STREAM_ATTRS if k not in g.attrs]
    if missing:
        problems.append(f"{where}: attributes missing: {', '.join(missing)}")
        return
    fmt = attr_text(g.attrs["channel_format"])
    if fmt not in CHANNEL_FORMATS:
        problems.append(f"{where}: unknown channel_format {fmt!r}")
        return
    c = int(g.attrs["channel_count"])
    for key in ("channel_labels", "channel_units", "channel_types"):
        try:
            values = json.loads(attr_text(g.attrs[key]))
            if not isinstance(values, list) or len(values) != c:
                problems.append(f"{where}: {key} should list {c} entries")
        except ValueError:
            problems.append(f"{where}: {key} is not valid JSON")
    for name in ("time_stamps", "clock_offsets"):
        if name not in g:
            problems.append(f"{where}/{name}: missing")
            return
    ts = g["time_stamps"]
    if ts.dtype != np.float64 or ts.ndim != 1:
        problems.append(f"{where}/time_stamps: expected float64 (N,), found {ts.dtype} {ts.shape}")
        return
    n = ts.shape[0]
    if CHANNEL_FORMATS[fmt] is None:
        n_values = _check_strings(where, g, c, problems)
        if n_values is not None and n_values < n:
            problems.append(f"{where}: {n} time stamps but only {n_values} string samples")
    else:
        if "time_series" not in g:
            problems.append(f"{where}/time_series: missing")
            return
        series = g["time_series"]
        if series.ndim != 2 or series.shape[1] != c:
            problems.append(f"{where}/time_series: shape {series.shape}, expected (N, {c})")
        if series.dtype != np.dtype(CHANNEL_FORMATS[fmt]):
            problems.append(f"{where}/time_series: dtype {series.dtype}, channel_format says {fmt}")
        if series.shape[0] < n:
            problems.append(f"{where}: {n} time stamps but only {series.shape[0]} samples")
    if "sample_count" in g.attrs and int(g.attrs["sample_count"]) != n:
        problems.append(f"{where}: sample_count says {int(g.attrs['sample_count'])}, the file holds {n}")
    stamps = ts[()]
    if n:
        if not np.all(np.isfinite(stamps)):
            problems.append(f"{where}/time_stamps: non-finite values")
        back = int(np.sum(np.diff(stamps) < 0))
        if back:
            problems.append(f"{where}/time_stamps: decreases {back} times")
    offsets = g["clock_offsets"]
    if offsets.ndim != 2 or offsets.shape[1] != 2 or offsets.dtype != np.float64:
        problems.append(f"{where}/clock_offsets: expected float64 (M, 2), found {offsets.dtype} {offsets.shape}")
    elif n:
        offset = float(g.attrs.get("window_offset", offsets[-1, 1] if offsets.shape[0] else 0.0))
        first, last = stamps[0] + offset, stamps[-1] + offset
        if first < start - TIME_TOLERANCE or last > stop + TIME_TOLERANCE:
            problems.append(f"{where}/time_stamps: samples from {first - start:+.4f} s to {last - start:+.4f} s "
                            f"lie outside the take window [0, {stop - start:.4f}] s")


def _check_strings(where: str, g: h5py.Group, c: int, problems: list[str]) -> int | None:
    if "string_bytes" not in g or "string_ends" not in g:
        problems.append(f"{where}: string_bytes/string_ends missing")
        return None
    data, ends = g["string_bytes"], g["string_ends"]
    if data.dtype != np.uint8 or data.ndim != 1:
        problems.append(f"{where}/string_bytes: expected uint8 (B,), found {data.dtype} {data.shape}")
    if ends.dtype != np.int64 or ends.ndim != 2 or ends.shape[1] != c:
        problems.append(f"{where}/string_ends: expected int64 (N, {c}), found {ends.dtype} {ends.shape}")
        return None
    flat = ends[()].reshape(-1)
    if len(flat) and (np.any(np.diff(flat) < 0) or flat[0] < 0 or flat[-1] > data.shape[0]):
        problems.append(f"{where}/string_ends: offsets must rise and stay within string_bytes ({data.shape[0]} bytes)")
    return ends.shape[0]


def _check_camera(take_dir: Path, cam: str, link: object, start: float, stop: float, problems: list[str]) -> None:
    where = f"/cameras/{cam}"
    if not isinstance(link, h5py.ExternalLink):
        problems.append(f"{where}: expected an external link to {cam}.h5")
        return
    path = take_dir / link.filename
    if not path.is_file():
        problems.append(f"{where}: frame file {link.filename} is missing")
        return
    try:
        ff, crashed = open_readable(path)
    except OSError as exc:
        problems.append(f"{link.filename}: cannot be opened: {exc}")
        return
    if crashed:
        problems.append(f"{link.filename}: not closed cleanly (camera writer stopped early)")
    with ff:
        missing = [k for k in FRAME_ATTRS if k not in ff.attrs]
        if missing:
            problems.append(f"{link.filename}: attributes missing: {', '.join(missing)}")
        names = {"frame_bytes": np.uint8, "frame_ends": np.int64, "frame_time_stamps": np.float64,
                 "frame_index": np.int64}
        for name, dtype in names.items():
            if name not in ff:
                problems.append(f"{link.filename}/{name}: missing")
                return
            if ff[name].dtype != dtype or ff[name].ndim != 1:
                problems.append(f"{link.filename}/{name}: expected {np.dtype(dtype)} (n,), found "
                                f"{ff[name].dtype} {ff[name].shape}")
                return
        ends = ff["frame_ends"][()]
        ts = ff["frame_time_stamps"][()]
        idx = ff["frame_index"][()]
        nbytes = ff["frame_bytes"].shape[0]
        if not (len(ends) == len(ts) == len(idx)):
            problems.append(f"{link.filename}: {len(ends)} frame ends, {len(ts)} time stamps, {len(idx)} indices")
        n = min(len(ends), len(ts), len(idx))
        if n == 0:
            return
        if np.any(np.diff(ends) <= 0) or ends[0] <= 0 or ends[-1] > nbytes:
            problems.append(f"{link.filename}/frame_ends: must rise strictly and stay within frame_bytes")
            return
        if np.any(np.diff(idx[:n]) <= 0):
            problems.append(f"{link.filename}/frame_index: must rise strictly")
        if np.any(np.diff(ts[:n]) < 0):
            problems.append(f"{link.filename}/frame_time_stamps: decrease")
        if ts[0] < start - TIME_TOLERANCE or ts[n - 1] > stop + TIME_TOLERANCE:
            problems.append(f"{link.filename}/frame_time_stamps: frames outside the take window")
        if attr_text(ff.attrs.get("codec", "")) == "jpeg":
            data = ff["frame_bytes"][: int(ends[n - 1])]
            starts = np.concatenate([[0], ends[: n - 1]])
            bad_start = np.flatnonzero((data[starts] != JPEG_SOI[0]) | (data[starts + 1] != JPEG_SOI[1]))
            bad_end = np.flatnonzero((data[ends[:n] - 2] != JPEG_EOI[0]) | (data[ends[:n] - 1] != JPEG_EOI[1]))
            if len(bad_start) or len(bad_end):
                first = int(np.concatenate([bad_start, bad_end]).min())
                problems.append(f"{link.filename}: {len(set(bad_start) | set(bad_end))} frames are not whole JPEGs "
                                f"(first: frame {first})")
