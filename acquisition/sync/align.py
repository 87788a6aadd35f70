"""The sync controller's offline half: align every stream of a take to the trigger box's pulses.

For each stream: base times (acquisition.sync.timebase), events (acquisition.sync.events and .led),
matched to the fired pulses, a model per gap-free segment (acquisition.sync.fit). EMG units and
cameras see the pulses directly; the chest strap is aligned through the heart artifact in trunk EMG
(acquisition.sync.heart); the other streams of an aligned device inherit its model; the rest keep
their LSL-corrected stamps, and the report says why. Raw stamps are never changed: the corrected
times go to /sync/<stream_id>/time_stamps.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from acquisition.config import RigError, SyncSettings, parse_rig
from acquisition.sync import led as ledmod
from acquisition.sync.events import Event, flash_edges, peak_times, trigger_edges, two_levels
from acquisition.sync.fit import DEVICE_CLOCK, ClockPrior, Match, SegmentModel, fit_segment, match_events
from acquisition.sync.heart import ArtifactChannel, align_heart
from acquisition.sync.timebase import TimeBase, counter_positions, make_timebase
from acquisition.takefile import attr_text, find_take_file, stream_strings
from drivers.camera.framestore import FrameFile
from drivers.runtime.streams import stream_id_for
from drivers.trigger.boxclock import MIN_SPAN_FOR_DRIFT_S, BoxClock, wire_times
from drivers.trigger.protocol import MicrosUnwrapper

log = logging.getLogger(__name__)

OFFSET_RANGE = (-0.6, 0.05)  # true = base + offset: a device is up to 600 ms late, never much early
WINDOW_AFTER_S = 0.7  # frames this long after a train (its latency) are searched for its flashes
WINDOW_BEFORE_S = 0.1
MIN_INHERIT_RATE = 10.0  # Hz: streams sampled on the device's clock (not events or once-a-second estimates)
CLOCK_JUMP_S = 0.01  # the box's clock against the host's moving this much between two queries: it restarted
INCONSISTENT_S = 1e-3  # an event the model misses by more than this contradicts it
MAX_INCONSISTENT = 0.2  # more than this fraction of contradicting events: the alignment is not trusted
# a strap's ECG clock is fitted by its driver against a nominal rate it may miss by 0.4 % (the H10's): the
# beats may correct a larger drift than a device counter's
ECG_CLOCK = ClockPrior(drift=2000e-6, unfitted=DEVICE_CLOCK.unfitted)
# a phone's frame times are its driver's fit of Wi-Fi arrival times (20 ms of jitter): over a take that fit
# still moves, by 20-360 ppm in 12 s (measured against the simulation's truth in 26 takes), so the flashes
# must be free to take that out, and where they cannot the estimate must say what it can leave
PHONE_CLOCK = ClockPrior(drift=2000e-6, unfitted=400e-6)
# the strap's lead and a trunk electrode see the same QRS with different shapes (and muscle noise bends the
# artifact's peak): an error the beats' scatter does not show, taken as 0.5 ms (1 sigma)
HEART_SHAPE_S = 0.5e-3
MIN_MATCHES = 3  # fewer matched edges than this (or than this fraction of those fired) is not an alignment
MIN_MATCHED_FRACTION = 0.5
WHERE_TO_LOOK = {"camera": ": was the LED in view? (or name it: [sync.cameras.<id>] led_region)",
                 "emg": ": is the trigger box wired to its trigger input?"}


@dataclass
class Pulse:
    train: int
    pulse: int
    label: str
    rise: float  # recorder clock
    fall: float
    box_rise_us: int | None = None  # the box's own reading (flexcap boxes)
    box_fall_us: int | None = None


@dataclass
class StreamSync:
    stream_id: str
    kind: str  # reference, emg, camera, ecg, inherited, lsl
    method: str
    corrected: np.ndarray
    timebase: TimeBase
    models: list[SegmentModel] = field(default_factory=list)
    events: int = 0
    matched: int = 0
    unmatched: int = 0
    pulses_seen: list[tuple[int, int]] = field(default_factory=list)
    problem: str = ""  # why it could not be aligned (empty: aligned)
    kind_tried: str = ""  # what it would have been aligned as (emg, camera, ecg), when it could not be
    inconsistent: tuple[int, int] = (0, 0)  # matched events the model contradicts, of all matched
    note: str = ""
    detail: dict[str, Any] = field(default_factory=dict)

    @property
    def aligned(self) -> bool:
        return bool(self.models)

    @property
    def latency_s(self) -> float | None:
        return -float(np.mean([m.offset for m in self.models])) if self.models else None

    @property
    def drift_ppm(self) -> float:
        return float(np.mean([m.drift for m in self.models])) * 1e6 if self.models else 0.0

    @property
    def error_s(self) -> float | None:
        return max(m.error_s for m in self.models) if self.models else None

    @property
    def residual_s(self) -> float | None:
        return max(m.residual_rms_s for m in self.models) if self.models else None

    def residuals(self) -> tuple[np.ndarray, np.ndarray]:
        if not self.models:
            return np.zeros(0), np.zeros(0)
        return (np.concatenate([m.residual_times for m in self.models]),
                np.concatenate([m.residuals for m in self.models]))


@dataclass
class TakeSync:
    take: Path
    streams: dict[str, StreamSync]
    pulses: list[Pulse]
    trigger_stream: str | None
    problems: list[str] = field(default_factory=list)
    has_trigger: bool = True  # the rig has a trigger box (no box at all is a choice, not a failure)
    # the box's clock on the recorder's: an error common to every aligned stream (their errors are relative
    # to the box, which is what lines streams up with each other); None when it could not be estimated
    reference_sigma_s: float | None = None


def sync_config(f: h5py.File) -> tuple[SyncSettings, str | None, tuple[float, float]]:
    """From the take's rig snapshot: the sync settings, the trigger box's device id and its clock queries'
    wire times. A snapshot today's flexcap cannot load whole (a take from an older version) still gives
    what alignment needs."""
    data = json.loads(f.attrs["rig"])
    source = data.pop("source", "take")
    try:
        rig = parse_rig(data, f"rig of {source}")
    except RigError as exc:
        log.warning("the take's rig is not loadable (%s); aligning with its [sync] table and trigger device", exc)
        sync = SyncSettings.model_validate(data.get("sync", {}))
        boxes = [d for d in data.get("devices", []) if d.get("kind") in ("trigger", "sim-trigger")]
        trigger = sync.trigger or (boxes[0]["id"] if len(boxes) == 1 else None)
        box = next((d for d in boxes if d["id"] == trigger), {})
        settings = box.get("settings", {})
        return sync, trigger, wire_times(int(settings.get("baudrate", 115200)), bool(settings.get("uart_bridge", True)))
    trigger = rig.trigger_id()
    wire = (0.0, 0.0)
    if trigger is not None:
        box = rig.context(trigger).settings
        wire = wire_times(box.baudrate, box.uart_bridge)
    return rig.sync, trigger, wire


def read_pulses(g: h5py.Group, offset: float) -> list[Pulse]:
    pulses = []
    for row in stream_strings(g):
        try:
            p = json.loads(row[0])
            pulses.append(Pulse(int(p["train"]), int(p["pulse"]), str(p.get("label", "")),
                                float(p["rise_lsl"]) + offset, float(p["fall_lsl"]) + offset,
                                p.get("box_rise_us"), p.get("box_fall_us")))
        except (ValueError, KeyError, TypeError):
            log.warning("not a pulse marker: %r", row[0][:80])
    return sorted(pulses, key=lambda p: p.rise)


def remap_pulses(pulses: list[Pulse], queries: np.ndarray, offset: float, wire: tuple[float, float]) -> float | None:
    """Map the box's echoed edges onto the recorder clock again with every clock query of the take (the
    driver could only use those before each pulse), per run of the box's clock (a box that restarts its
    clock, replugged, starts a new run). Returns the reference's own uncertainty (1 sigma: half the
    quickest round trip, spread evenly), or None when the queries are too few or too short."""
    q = np.asarray(queries, dtype=np.float64).reshape(-1, 3)
    if len(q) < 8 or any(p.box_rise_us is None for p in pulses):
        return None
    q = q[np.argsort(q[:, 2])]
    q[:, 1:] += offset
    lag = q[:, 0] / 1e6 - (q[:, 1] + q[:, 2]) / 2  # box minus host: steady unless the box's clock restarted
    cuts = np.flatnonzero(np.abs(np.diff(lag)) > CLOCK_JUMP_S) + 1
    runs = [r for r in np.split(q, cuts) if len(r) >= 8 and np.ptp(r[:, 0]) / 1e6 >= MIN_SPAN_FOR_DRIFT_S]
    if not runs:
        return None
    clocks = [(r[0, 2], r[-1, 2], r, BoxClock.from_queries(r, wire)) for r in runs]
    rtts = []
    for p in pulses:
        first, last, r, clock = min(clocks, key=lambda c: max(c[0] - p.rise, p.rise - c[1], 0.0))
        near = float(r[np.argmin(np.abs(r[:, 2] - p.rise)), 0])
        unwrap = MicrosUnwrapper()
        p.rise = float(clock.host_times(unwrap.near(int(p.box_rise_us), int(near))))
        p.fall = float(clock.host_times(unwrap.near(int(p.box_fall_us), int(near))))
        rtts.append(clock.best_rtt_s or 0.0)
    return float(max(rtts)) / 2 / np.sqrt(3)


def align_take(take: str | Path) -> TakeSync:
    """Align every stream of a take (reads only; see write_sync)."""
    path = find_take_file(take)
    with h5py.File(path, "r") as f:
        settings, trigger, wire = sync_config(f)
        trigger_sid = stream_id_for(trigger, "pulses") if trigger else None
        streams: dict[str, StreamSync] = {}
        pulses: list[Pulse] = []
        ref_sigma: float | None = None
        problems: list[str] = []
        groups = f["streams"]
        if trigger_sid and trigger_sid in groups:
            g = groups[trigger_sid]
            tb = make_timebase(g["time_stamps"][()], g["clock_offsets"][()], 0.0)
            pulses = read_pulses(g, tb.lsl_offset_s)
            note = f"{len(pulses)} pulses fired"
            clock_sid = stream_id_for(trigger, "clock")
            if pulses and clock_sid in groups:
                ref_sigma = remap_pulses(pulses, groups[clock_sid]["time_series"][()], tb.lsl_offset_s, wire)
                note += "; edges mapped with the take's clock queries" if ref_sigma is not None else \
                    "; edges as the driver mapped them (too few clock queries in the take)"
            streams[trigger_sid] = StreamSync(trigger_sid, "reference", "reference", tb.base, tb, note=note)
            if ref_sigma is not None:
                streams[trigger_sid].detail = {"reference_sigma_s": ref_sigma}
        if trigger is None:
            problems.append("the rig has no trigger box: every stream keeps its LSL-corrected stamps")
        elif not pulses:
            problems.append(f"no sync pulse was recorded ({trigger_sid} is empty or missing): every stream keeps "
                            "its LSL-corrected stamps")
        refs, ref_ids = _reference_edges(pulses)
        cameras = set(f["cameras"]) if "cameras" in f else set()
        take_dir = path.parent
        for sid in groups:
            if sid in streams:
                continue
            g = groups[sid]
            labels = json.loads(g.attrs.get("channel_labels", "[]"))
            stype = str(g.attrs.get("type", ""))
            if stype == "EMG" and "trigger" in labels:
                streams[sid] = _align_emg(sid, g, labels, refs, ref_ids)
            elif sid in cameras:
                streams[sid] = _align_camera(sid, g, take_dir / f"{sid}.h5", settings, refs, ref_ids, pulses)
            else:
                streams[sid] = _lsl_only(sid, g)
        _align_ecg(groups, streams, settings)
        _inherit(groups, streams)
    for s in streams.values():
        if s.problem and not s.aligned:  # nothing is discarded: the stream keeps its LSL-corrected stamps
            s.corrected = s.timebase.lsl_stamps
            s.note = f"tried: {s.method}"
            s.kind_tried, s.method = s.kind, "lsl"
    return TakeSync(path.parent, streams, pulses, trigger_sid, problems, has_trigger=trigger is not None,
                    reference_sigma_s=ref_sigma)


def _reference_edges(pulses: list[Pulse]) -> tuple[dict[str, np.ndarray], dict[str, list[tuple[int, int]]]]:
    refs, ids = {}, {}
    for kind in ("rise", "fall"):
        order = sorted(pulses, key=lambda p: getattr(p, kind))
        refs[kind] = np.array([getattr(p, kind) for p in order])
        ids[kind] = [(p.train, p.pulse) for p in order]
    return refs, ids


def _lsl_only(sid: str, g: h5py.Group) -> StreamSync:
    stamps = g["time_stamps"][()]
    tb = make_timebase(stamps, g["clock_offsets"][()], 0.0)  # no dejitter: the stream keeps its own stamps
    return StreamSync(sid, "lsl", "lsl", tb.base, tb)


def _models_by_segment(sid: str, tb: TimeBase, matches: list[Match], rows: list[int],
                       clock: ClockPrior = DEVICE_CLOCK) -> list[SegmentModel]:
    """One model per gap-free segment with events; segments without events borrow the nearest model."""
    models: list[SegmentModel | None] = []
    segs = tb.segments or []
    if not segs:
        return [m for m in [fit_segment(matches, float(tb.base.min()), float(tb.base.max()), 0.0, clock)] if m]
    for seg in segs:
        mine = [m for m, r in zip(matches, rows, strict=True) if seg.start <= r < seg.stop]
        models.append(fit_segment(mine, float(tb.base[seg.start]), float(tb.base[seg.stop - 1]), 0.0, clock))
    have = [i for i, m in enumerate(models) if m is not None]
    if not have:
        return []
    out = []
    for i, m in enumerate(models):
        if m is None:
            j = min(have, key=lambda h: abs(h - i))
            src = models[j]
            assert src is not None
            seg = segs[i]
            m = SegmentModel(float(tb.base[seg.start]), float(tb.base[seg.stop - 1]), src.offset, src.drift,
                             src.ref, 0, 0, src.residual_rms_s, src.error_s, "borrowed")
        out.append(m)
    return out


def _apply(tb: TimeBase, models: list[SegmentModel]) -> np.ndarray:
    out = tb.base.copy()
    if tb.segments and len(models) == len(tb.segments):
        for seg, m in zip(tb.segments, models, strict=True):
            out[seg.start:seg.stop] = m.apply(tb.base[seg.start:seg.stop])
    elif models:
        out = models[0].apply(tb.base)
    return out


def _finish(s: StreamSync, events: list[Event], refs: dict, ref_ids: dict, tolerance: float,
            what: str, clock: ClockPrior = DEVICE_CLOCK) -> StreamSync:
    s.events = len(events)
    if not events:
        s.problem = f"{s.stream_id} saw no {what}"
        return s
    if not len(refs.get("rise", ())):
        s.problem = "no sync pulses in this take"
        return s
    matches, unmatched, center = match_events(events, refs, ref_ids, OFFSET_RANGE, tolerance)
    s.matched, s.unmatched = len(matches), len(unmatched)
    if not matches or center is None:
        s.problem = f"none of the {len(events)} {what}s of {s.stream_id} could be matched to a fired pulse"
        return s
    # the edges this stream should have seen: fired while it recorded, at the offset the matches agree on
    base = s.timebase.base
    expected = sum(int(np.sum((r - center >= base[0]) & (r - center <= base[-1]))) for r in refs.values())
    if len(matches) < max(MIN_MATCHES, MIN_MATCHED_FRACTION * expected):
        s.problem = (f"{s.stream_id} matched only {len(matches)} of the {expected} pulse edges fired while it "
                     f"recorded ({len(events)} {what}s found){WHERE_TO_LOOK.get(s.kind, '')}")
        s.matched = 0
        return s
    s.pulses_seen = sorted({m.pulse for m in matches})
    s.models = _models_by_segment(s.stream_id, s.timebase, matches, [m.event.where for m in matches], clock)
    s.corrected = _apply(s.timebase, s.models)
    if unmatched:
        s.note = f"{len(unmatched)} of {len(events)} events matched no pulse"
    s.inconsistent = _inconsistent(s.models, matches)
    return s


def _inconsistent(models: list[SegmentModel], matches: list[Match]) -> tuple[int, int]:
    """(events the final model contradicts, events): a precise one off by more than INCONSISTENT_S (and its
    own 5 sigma), a bounded one whose pulse falls outside its interval by more than that. Many of them mean
    the stream's own timeline is broken somewhere (a phone's frames numbered from Wi-Fi arrivals)."""
    bad = 0
    for m in matches:
        ev = m.event
        lo, mid, hi = apply_by_time(models, np.array([ev.lo, ev.time, ev.hi]))
        if ev.precise:
            bad += abs(m.ref_time - mid) > max(INCONSISTENT_S, 5 * ev.sigma)
        else:
            bad += not (lo - INCONSISTENT_S <= m.ref_time <= hi + INCONSISTENT_S)
    return bad, len(matches)


def _align_emg(sid: str, g: h5py.Group, labels: list[str], refs: dict, ref_ids: dict) -> StreamSync:
    data = g["time_series"]
    rate = float(g.attrs.get("nominal_srate", 0.0))
    counter = counter_positions(data[:, labels.index("counter")]) if "counter" in labels else None
    tb = make_timebase(g["time_stamps"][()], g["clock_offsets"][()], rate, counter)
    s = StreamSync(sid, "emg", "trigger edges", tb.base.copy(), tb)
    if rate <= 0 or len(tb.base) < 10:
        s.problem = f"{sid} has too few samples"
        return s
    events = trigger_edges(data[:, labels.index("trigger")], tb.base, 1.0 / rate)
    return _finish(s, events, refs, ref_ids, tolerance=0.004, what="trigger edge")


def _align_camera(sid: str, g: h5py.Group, frame_path: Path, settings: SyncSettings, refs: dict, ref_ids: dict,
                  pulses: list[Pulse]) -> StreamSync:
    stamps = g["time_stamps"][()]
    index = g["time_series"][:, 0].astype(np.int64)
    rate = float(g.attrs.get("nominal_srate", 0.0))
    tb = make_timebase(stamps, g["clock_offsets"][()], rate, index)
    s = StreamSync(sid, "camera", "led flashes", tb.base.copy(), tb)
    cam = settings.camera(sid)
    if rate <= 0 or len(stamps) < 3:
        s.problem = f"{sid} has too few frames"
        return s
    if not frame_path.exists():
        s.problem = f"{sid}: its frame file {frame_path.name} is missing"
        return s
    exposure = cam.exposure_s or cam.shutter_angle_deg / 360.0 / rate
    if not pulses:
        s.problem = "no sync pulses in this take"
        return s
    trains: dict[int, list[Pulse]] = {}
    for p in pulses:
        trains.setdefault(p.train, []).append(p)
    near = np.zeros(len(tb.base), dtype=bool)
    for ps in trains.values():
        near |= (tb.base >= ps[0].rise - WINDOW_BEFORE_S) & (tb.base <= ps[-1].fall + WINDOW_AFTER_S)
    rows = np.flatnonzero(near)
    if len(rows) < 3:
        s.problem = f"{sid} recorded no frames while the pulses were fired"
        return s
    with FrameFile(frame_path) as ff:
        clock = PHONE_CLOCK if attr_text(ff.attrs.get("role", "")) == "phone" else DEVICE_CLOCK
        order = {int(k): i for i, k in enumerate(ff.frame_index)}
        frame_rows = [order.get(int(index[r])) for r in rows]
        width = int(ff.attrs.get("width", 0))
        reduce = ledmod.reduction_for(width)

        def frames(decoded: list[int] | None = None):
            """The frames that decode (a damaged one is left out, and `decoded` says which rows remain)."""
            for r, fr in zip(rows, frame_rows, strict=True):
                img = ledmod.decode(ff.frame(fr), reduce) if fr is not None else None
                if img is not None:
                    if decoded is not None:
                        decoded.append(int(r))
                    yield img

        spots = [ledmod.spot_from_box(cam.led_region, reduce)] if cam.led_region else ledmod.find_spots(frames())
        if not spots:
            s.problem = f"{sid} saw no flash (the LED did not change in its view: dark, covered or out of view?)"
            return s
        decoded: list[int] = []
        light = ledmod.light_levels(frames(decoded), spots, cam.gamma)
        rows = np.array(decoded, dtype=np.int64)
    best: tuple[int, StreamSync] | None = None
    flashed = False
    for i, spot in enumerate(spots):
        trial = StreamSync(sid, "camera", "led flashes", tb.base.copy(), tb)
        levels = two_levels(light[:, i])
        if levels is None:
            continue
        flashed = True
        l0, l1, noise = levels
        fraction = (light[:, i] - l0) / (l1 - l0)
        events = flash_edges(fraction, tb.base[rows], index[rows], exposure, noise)
        for ev in events:
            ev.where = int(rows[ev.where])
        trial = _finish(trial, events, refs, ref_ids, tolerance=max(1.0 / rate, 0.005), what="flash",
                        clock=clock)
        trial.detail = {"led_box": list(ledmod.scale_box(spot, reduce)), "exposure_s": exposure,
                        "gamma": cam.gamma, "levels": [l0, l1], "noise": noise}
        if trial.matched and (best is None or trial.matched > best[0]):
            best = (trial.matched, trial)
    if best is None:
        where = f"in its led_region {cam.led_region}" if cam.led_region else "in its view"
        s.problem = (f"{sid} saw no flash that matches the fired pulses" if flashed else
                     f"{sid} saw no flash (the LED did not change {where}: dark, covered or out of view?)")
        return s
    return best[1]


def _align_ecg(groups: h5py.Group, streams: dict[str, StreamSync], settings: SyncSettings) -> None:
    ecg_ids = [sid for sid in groups if str(groups[sid].attrs.get("type", "")) == "ECG"]
    channels = []
    wanted = set(settings.heart_channels)
    for sid, s in streams.items():
        if s.kind != "emg" or not s.aligned:
            continue
        g = groups[sid]
        labels = json.loads(g.attrs["channel_labels"])
        for i, label in enumerate(labels):
            if label in ("trigger", "counter") or (wanted and f"{sid}:{label}" not in wanted):
                continue
            channels.append(ArtifactChannel(sid, label, s.corrected, g["time_series"][:, i].astype(np.float64)))
    for sid in ecg_ids:
        g = groups[sid]
        rate = float(g.attrs.get("nominal_srate", 0.0))
        tb = make_timebase(g["time_stamps"][()], g["clock_offsets"][()], rate)
        s = StreamSync(sid, "ecg", "heart artifact", tb.base.copy(), tb)
        streams[sid] = s
        beats = peak_times(g["time_series"][:, 0], tb.base, band_limited=True)
        s.events = len(beats)
        if not channels:
            s.problem = f"{sid}: no aligned EMG channel to find the heart artifact in"
            continue
        hm = align_heart(beats, channels)
        if hm is None:
            s.problem = (f"{sid}: no EMG channel shows the heart artifact at its {len(beats)} beats "
                         "(place an electrode on the trunk, or list one in [sync] heart_channels)")
            continue
        if len(hm.matches) < MIN_MATCHES:
            s.problem = (f"{sid}: only {len(hm.matches)} of its {len(beats)} beats were found in the heart artifact "
                         f"of {hm.channel}")
            continue
        emg_error = max((streams[hm.channel.split(":")[0]].error_s or 0.0), 0.0)
        s.matched, s.unmatched = len(hm.matches), len(beats) - len(hm.matches)
        s.models = _models_by_segment(sid, tb, hm.matches, [m.event.where for m in hm.matches], ECG_CLOCK)
        for m in s.models:
            m.error_s = float(np.sqrt(m.error_s ** 2 + emg_error ** 2 + HEART_SHAPE_S ** 2))
        s.corrected = _apply(tb, s.models)
        s.note = f"R peaks against {hm.channel} (artifact {hm.score:.0f}x its noise)"
        s.detail = {"channel": hm.channel, "score": hm.score}


def _inherit(groups: h5py.Group, streams: dict[str, StreamSync]) -> None:
    """The other data streams of an aligned device take its model (same device, same latency path);
    status and control streams are stamped by the host and keep their own stamps."""
    by_device: dict[str, StreamSync] = {}
    for s in streams.values():
        if s.aligned and s.kind in ("emg", "camera", "ecg"):
            by_device.setdefault(_device_of(groups[s.stream_id]), s)
    for sid, s in streams.items():
        if s.kind != "lsl":
            continue
        g = groups[sid]
        if sid.endswith(("_status", "_control")) or str(g.attrs.get("type", "")) == "FlexcapStatus":
            s.note = "stamped by its host: LSL clock offset only"
            continue
        src = by_device.get(_device_of(g))
        if src is None:
            s.note = "no sync events for this device: LSL clock offset only"
            continue
        if float(g.attrs.get("nominal_srate", 0.0)) < MIN_INHERIT_RATE:
            # beat-by-beat values, rates and estimates are stamped when a notification arrived or an estimate
            # was made, not on the device's sample clock: the sampled streams' model does not describe them
            s.note = f"not sampled on {src.stream_id}'s clock: LSL clock offset only"
            continue
        s.kind, s.method = "inherited", f"inherited from {src.stream_id}"
        rate = float(g.attrs.get("nominal_srate", 0.0))
        if rate > 0:  # a regular stream of the same device: dejittered like its source
            s.timebase = make_timebase(g["time_stamps"][()], g["clock_offsets"][()], rate)
        s.models = [SegmentModel(m.start, m.stop, m.offset, m.drift, m.ref, 0, 0, m.residual_rms_s, m.error_s,
                                 "inherited") for m in src.models]
        s.corrected = apply_by_time(s.models, s.timebase.base)


def apply_by_time(models: list[SegmentModel], base: np.ndarray) -> np.ndarray:
    """Each time through the model of the segment it falls in (the nearest one outside them all)."""
    if not models or len(base) == 0:
        return base.copy()
    starts = np.array([m.start for m in models])
    stops = np.array([m.stop for m in models])
    gap = np.maximum(starts[None, :] - base[:, None], 0) + np.maximum(base[:, None] - stops[None, :], 0)
    which = np.argmin(gap, axis=1)
    out = np.empty_like(base)
    for i, m in enumerate(models):
        sel = which == i
        out[sel] = m.apply(base[sel])
    return out


def _device_of(g: h5py.Group) -> str:
    parts = str(g.attrs.get("source_id", "")).split(":")
    return parts[2] if len(parts) >= 4 and parts[0] == "flexcap" else str(g.attrs.get("source_id", ""))
