"""Console load benchmark: the operator console's own process while the simulated lab records, with
five camera previews and 16 EMG traces on screen (plus ECG, heart rate and breathing).

Measures, over a recording window of --seconds:
- the console process's CPU (its own threads: GUI, live feed, rig worker; not the rig's child
  processes), as a fraction of one core, and the GUI thread's share of it;
- event-loop lag: a 20 ms timer's lateness, p50 / p99 / max;
- what was on screen: preview images shown per second per camera, EMG lanes drawn.
Targets (issue 7): CPU under 40 % of one core, p99 lag under 50 ms.

    QT_QPA_PLATFORM=offscreen .venv/bin/python benchmarks/console_load.py [--seconds 30]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import threading
import time
from pathlib import Path

from _common import emit

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import numpy as np  # noqa: E402
import psutil  # noqa: E402
from PyQt6.QtCore import QElapsedTimer, QEventLoop, QTimer  # noqa: E402
from PyQt6.QtWidgets import QApplication  # noqa: E402

PROBE_MS = 20
CPU_TARGET = 0.40
LAG_P99_TARGET_MS = 50.0
PROTOCOL = """name = "bench"
[defaults]
repetitions = 1
duration_s = 600
[[actions]]
action = "load"
"""


class LagProbe:
    """A repeating timer that records how late each tick fires: the event loop's responsiveness."""

    def __init__(self) -> None:
        self.clock = QElapsedTimer()
        self.lags_ms: list[float] = []
        self.on = False
        self.timer = QTimer()
        self.timer.setTimerType(self.timer.timerType().PreciseTimer)
        self.timer.timeout.connect(self._tick)
        self.last = 0

    def start(self) -> None:
        self.clock.start()
        self.last = 0
        self.timer.start(PROBE_MS)

    def _tick(self) -> None:
        now = self.clock.elapsed()
        if self.on:
            self.lags_ms.append(max(0.0, now - self.last - PROBE_MS))
        self.last = now


def run_loop(seconds: float) -> None:
    """Run Qt's own event loop for a while, as the console's app.exec() does."""
    loop = QEventLoop()
    QTimer.singleShot(int(seconds * 1000), loop.quit)
    loop.exec()


def run_events(app: QApplication, seconds: float, until=None) -> bool:  # noqa: ANN001
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        app.processEvents(QEventLoop.ProcessEventsFlag.AllEvents, 50)
        if until is not None and until():
            return True
        time.sleep(0.002)
    return until is None


def gui_thread_cpu() -> float:
    ident = threading.main_thread().native_id
    t = next(t for t in psutil.Process().threads() if t.id == ident)
    return t.user_time + t.system_time


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=30.0)
    ap.add_argument("--profile", action="store_true", help="print where the GUI thread's time goes (cProfile)")
    args = ap.parse_args()

    from acquisition.console.health import GREEN
    from acquisition.console.window import ConsoleWindow

    app = QApplication([])
    tmp = Path(tempfile.mkdtemp(prefix="flexcap-console-bench-"))
    (tmp / "bench.toml").write_text(PROTOCOL)
    window = ConsoleWindow(None, str(tmp / "sessions"), "bench", str(tmp / "bench.toml"), "bench")
    window.show()
    assert run_events(app, 120, lambda: window.rig_ready and window.plan.state is not None), "the rig did not start"
    assert run_events(app, 60, lambda: len(window.rig_panel.rows) == 11 and
                      all(r.light == GREEN for r in window.rig_panel.rows.values())), "devices not all green"
    run_events(app, 5.0)
    window.record()
    assert run_events(app, 30, lambda: window.recording is not None), "the take did not start"
    run_events(app, 3.0)

    probe = LagProbe()
    probe.start()
    run_events(app, 0.5)
    me = psutil.Process()
    shown0 = {c: t.frames_shown for c, t in window.previews.tiles.items()}
    cpu0, gui0, t0 = sum(me.cpu_times()[:2]), gui_thread_cpu(), time.monotonic()
    profile = None
    if args.profile:
        import cProfile

        profile = cProfile.Profile()
        profile.enable()
    probe.on = True
    run_loop(args.seconds)
    probe.on = False
    if profile is not None:
        import pstats

        profile.disable()
        pstats.Stats(profile).sort_stats("tottime").print_stats(25)
    cpu1, gui1, t1 = sum(me.cpu_times()[:2]), gui_thread_cpu(), time.monotonic()
    shown = {c: (t.frames_shown - shown0[c]) / (t1 - t0) for c, t in window.previews.tiles.items()}
    lanes = len(window.plots.lanes)
    window.stop()
    run_events(app, 120, lambda: window.recording is None and not window.busy)
    take_line = window.take_log[-1]["line"] if window.take_log else "no take"
    window.close()
    run_events(app, 60, lambda: window.closing)

    lags = np.array(probe.lags_ms)
    wall = t1 - t0
    result = {
        "seconds": round(wall, 2), "probe_ms": PROBE_MS, "ticks": len(lags),
        "cpu_fraction_of_core": round((cpu1 - cpu0) / wall, 4),
        "gui_thread_fraction_of_core": round((gui1 - gui0) / wall, 4),
        "lag_ms": {"p50": round(float(np.percentile(lags, 50)), 2), "p99": round(float(np.percentile(lags, 99)), 2),
                   "max": round(float(lags.max()), 2)},
        "previews_fps": {c: round(v, 2) for c, v in shown.items()}, "emg_lanes": lanes,
        "targets": {"cpu_fraction_of_core": CPU_TARGET, "lag_p99_ms": LAG_P99_TARGET_MS},
        "take": take_line,
    }
    result["pass"] = result["cpu_fraction_of_core"] < CPU_TARGET and result["lag_ms"]["p99"] < LAG_P99_TARGET_MS
    table = [["measure", "value", "target"],
             ["console CPU (fraction of a core)", f"{result['cpu_fraction_of_core']:.3f}", f"< {CPU_TARGET}"],
             ["  of which the GUI thread", f"{result['gui_thread_fraction_of_core']:.3f}", ""],
             ["event-loop lag p50 (ms)", f"{result['lag_ms']['p50']:.2f}", ""],
             ["event-loop lag p99 (ms)", f"{result['lag_ms']['p99']:.2f}", f"< {LAG_P99_TARGET_MS:g}"],
             ["event-loop lag max (ms)", f"{result['lag_ms']['max']:.2f}", ""],
             ["EMG lanes drawn", str(lanes), "16"],
             *[[f"preview {c} (images/s shown)", f"{v:.1f}", "10-15"] for c, v in shown.items()]]
    emit("console_load", result, table)


if __name__ == "__main__":
    main()
