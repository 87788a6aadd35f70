"""What the sync controller tells people: /sync in take.h5, a table and a residual plot next to the
take, and a one-line verdict for the console (green, amber or red, with the reason)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from acquisition.sync.align import INCONSISTENT_S, MAX_INCONSISTENT, StreamSync, TakeSync

REPORT_TXT = "sync_report.txt"
REPORT_PNG = "sync_report.png"
REPORT_JSON = "sync.json"

# error estimates (95 %) within these are green; up to AMBER_FACTOR times, amber; beyond, red
TOLERANCE_S = {"emg": 1e-4, "camera": 5e-4, "phone": 2e-3, "ecg": 2e-3}
AMBER_FACTOR = 4.0


@dataclass
class Verdict:
    level: str  # green, amber, red
    text: str

    def line(self) -> str:
        return f"{self.level.upper()}: {self.text}"


def tolerance_for(s: StreamSync, roles: dict[str, str]) -> float:
    if s.kind == "camera" and roles.get(s.stream_id) == "phone":
        return TOLERANCE_S["phone"]
    return TOLERANCE_S.get(s.kind, 2e-3)


def error95(s: StreamSync) -> float | None:
    return None if s.error_s is None else 1.96 * s.error_s


def verdict(ts: TakeSync, roles: dict[str, str]) -> Verdict:
    if not ts.has_trigger:
        return Verdict("amber", ts.problems[0])
    if not ts.pulses:
        return Verdict("red", ts.problems[0] if ts.problems else "no sync pulse was recorded")
    reds: list[str] = []
    ambers = list(ts.problems)
    for s in ts.streams.values():
        if s.kind_tried in ("emg", "camera") and s.problem:
            reds.append(s.problem)
        elif s.kind_tried == "ecg" and s.problem:
            ambers.append(s.problem)
        elif s.aligned:
            e, tol = error95(s), tolerance_for(s, roles)
            bad, n = s.inconsistent
            if n and bad > MAX_INCONSISTENT * n:
                reds.append(f"{s.stream_id}: {bad} of its {n} sync events disagree with its model by over "
                            f"{_ms(INCONSISTENT_S)} (its own timeline breaks somewhere: frames numbered from "
                            "arrival times?)")
                continue
            if any(m.method == "borrowed" for m in s.models):
                ambers.append(f"{s.stream_id}: a segment after a gap has no pulses (its model is borrowed)")
            if e is not None and e > AMBER_FACTOR * tol:
                reds.append(f"{s.stream_id} aligned only to {_ms(e)} (tolerance {_ms(tol)})")
            elif e is not None and e > tol:
                ambers.append(f"{s.stream_id} aligned to {_ms(e)} (tolerance {_ms(tol)})")
    if reds:
        more = f" (and {len(reds) - 1} more)" if len(reds) > 1 else ""
        return Verdict("red", reds[0] + more)
    aligned = [s for s in ts.streams.values() if s.kind in ("emg", "camera", "ecg") and s.aligned]
    if ambers:
        more = f" (and {len(ambers) - 1} more)" if len(ambers) > 1 else ""
        return Verdict("amber", ambers[0] + more)
    worst = max(aligned, key=lambda s: (error95(s) or 0) / tolerance_for(s, roles), default=None)
    tail = f"; worst {worst.stream_id} {_ms(error95(worst) or 0)}" if worst else ""
    return Verdict("green", f"{len(aligned)} streams aligned to the trigger box within tolerance{tail}")


def _ms(seconds: float) -> str:
    return f"{seconds * 1e3:.3f} ms" if seconds < 0.01 else f"{seconds * 1e3:.1f} ms"


def rows(ts: TakeSync) -> list[dict[str, Any]]:
    out = []
    for sid in sorted(ts.streams):
        s = ts.streams[sid]
        out.append({"stream": sid, "kind": s.kind, "method": s.method, "events": s.events, "matched": s.matched,
                    "latency_ms": None if s.latency_s is None else round(s.latency_s * 1e3, 4),
                    "drift_ppm": round(s.drift_ppm, 3) if s.aligned else None,
                    "lsl_offset_ms": round(s.timebase.lsl_offset_s * 1e3, 4),
                    "residual_ms": None if s.residual_s is None else round(s.residual_s * 1e3, 4),
                    "error95_ms": None if error95(s) is None else round(error95(s) * 1e3, 4),
                    "segments": len(s.models), "contradicting_events": s.inconsistent[0],
                    "problem": s.problem, "note": s.note, **s.detail})
    return out


def format_table(ts: TakeSync, v: Verdict, table: list[dict[str, Any]]) -> str:
    """The report a person reads; `table` is rows(ts)."""
    lines = [f"sync report: {ts.take}", f"verdict: {v.line()}", ""]
    if ts.pulses:
        trains = sorted({(p.train, p.label) for p in ts.pulses})
        lines.append(f"pulses: {len(ts.pulses)} in {len(trains)} trains ("
                     + ", ".join(label for _, label in trains) + f") on {ts.trigger_stream}")
        if ts.reference_sigma_s is not None:
            lines.append(f"the box's clock on this host's: within {_ms(1.96 * ts.reference_sigma_s)} (95 %), common to "
                         "every stream; the errors below are relative to the box")
    for p in ts.problems:
        lines.append(f"problem: {p}")
    lines.append("")
    head = f"{'stream':<18}{'method':<22}{'events':>7}{'matched':>8}{'latency ms':>12}{'drift ppm':>10}" \
           f"{'resid ms':>10}{'err95 ms':>10}  notes"
    lines += [head, "-" * len(head)]
    for r in table:
        if r["kind"] == "lsl" and not r["problem"]:
            continue
        def num(x: float | None, fmt: str) -> str:
            return "-" if x is None else format(x, fmt)
        note = r["problem"] or r["note"]
        lines.append(f"{r['stream']:<18}{r['method'][:21]:<22}{r['events']:>7}{r['matched']:>8}"
                     f"{num(r['latency_ms'], '.3f'):>12}{num(r['drift_ppm'], '.2f'):>10}"
                     f"{num(r['residual_ms'], '.4f'):>10}{num(r['error95_ms'], '.4f'):>10}  {note}")
    plain = [r["stream"] for r in table if r["kind"] == "lsl" and not r["problem"]]
    if plain:
        lines += ["", f"LSL clock offsets only (stamped by their host or no sync events): {', '.join(plain)}"]
    return "\n".join(lines) + "\n"


def plot(ts: TakeSync, out: Path) -> None:
    """Event residuals (fired minus corrected detection) per aligned stream, each row on its own scale."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    aligned = sorted((s for s in ts.streams.values() if s.aligned and s.kind in ("emg", "camera", "ecg")),
                     key=lambda s: s.stream_id, reverse=True)
    height = 0.9 + 0.42 * max(1, len(aligned))
    fig, ax = plt.subplots(figsize=(10, height), dpi=100)
    t0 = min((p.rise for p in ts.pulses), default=0.0)
    for i, s in enumerate(aligned):
        times, res = s.residuals()
        scale = max(float(np.max(np.abs(res))) if len(res) else 0.0, 1e-5)
        ax.axhline(i, color="0.85", lw=0.8, zorder=0)
        ax.scatter(times - t0, i + 0.4 * res / scale, s=12, zorder=2)
        ax.text(1.01, i, f"row +-{_ms(scale)}   err95 {_ms(error95(s) or 0)}", transform=ax.get_yaxis_transform(),
                va="center", fontsize=8)
    ax.set_yticks(range(len(aligned)), [s.stream_id for s in aligned])
    ax.set_ylim(-0.6, len(aligned) - 0.4)
    ax.set_xlabel("seconds from the first pulse")
    ax.set_title(f"{ts.take.name}: residual of every matched sync event, per stream", fontsize=10)
    fig.tight_layout(rect=(0, 0, 0.8, 1))
    fig.savefig(out)
    plt.close(fig)


def write_sync(ts: TakeSync, plot_png: bool = True) -> Verdict:
    """Write /sync into take.h5 (replacing an earlier alignment; raw stamps untouched), the report and the
    verdict. Returns the verdict."""
    path = ts.take / "take.h5"
    with h5py.File(path, "r+") as f:
        roles = {cam: str(f["cameras"][cam].attrs.get("role", "")) for cam in f.get("cameras", {})
                 if cam in f["cameras"]}
        v = verdict(ts, roles)
        if "sync" in f:
            del f["sync"]
        root = f.create_group("sync")
        root.attrs["verdict"] = v.level
        root.attrs["verdict_text"] = v.text
        root.attrs["pulses"] = len(ts.pulses)
        root.attrs["reference_error95_s"] = np.nan if ts.reference_sigma_s is None else 1.96 * ts.reference_sigma_s
        for sid, s in ts.streams.items():
            g = root.create_group(sid)
            g.create_dataset("time_stamps", data=s.corrected.astype(np.float64))
            m = s.models
            g.attrs["method"] = s.method
            g.attrs["clock_offset"] = s.timebase.lsl_offset_s
            g.attrs["drift_ppm"] = s.drift_ppm
            g.attrs["latency_s"] = np.nan if s.latency_s is None else s.latency_s
            g.attrs["residual_error_s"] = np.nan if s.residual_s is None else s.residual_s
            g.attrs["error95_s"] = np.nan if error95(s) is None else error95(s)
            g.attrs["n_events"] = s.matched
            g.attrs["segments"] = json.dumps([{"start": x.start, "stop": x.stop, "offset": x.offset,
                                               "drift": x.drift, "ref": x.ref, "method": x.method,
                                               "n_events": x.n_events, "rejected": x.n_rejected} for x in m])
            g.attrs["problem"] = s.problem
            g.attrs["pulses_seen"] = json.dumps([list(p) for p in s.pulses_seen])
    table = rows(ts)
    (ts.take / REPORT_TXT).write_text(format_table(ts, v, table))
    (ts.take / REPORT_JSON).write_text(json.dumps({"verdict": v.level, "text": v.text, "streams": table},
                                                  indent=1, default=_jsonable))
    if plot_png:
        plot(ts, ts.take / REPORT_PNG)
    return v


def _jsonable(x: Any) -> Any:
    if isinstance(x, np.generic):
        return x.item()
    if isinstance(x, np.ndarray):
        return x.tolist()
    raise TypeError(type(x).__name__)
