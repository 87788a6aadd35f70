"""A console process for test_console_resume: records the visit's first take, starts the second and
says so on stdout (with the rig's process ids), then keeps recording until it is killed."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
sys.path.insert(0, str(Path(__file__).parent))

from console_kit import pump, wait_until  # noqa: E402
from PyQt6.QtWidgets import QApplication  # noqa: E402

from acquisition.console.window import ConsoleWindow  # noqa: E402


def main(sessions: str, subject: str) -> None:
    app = QApplication([])  # noqa: F841 - the window needs it alive
    window = ConsoleWindow(None, sessions, subject, None, "ana")
    window.show()
    wait_until(lambda: window.rig_ready and window.plan.state is not None, 90, "the rig")
    pump(5.0)
    for _ in range(2):
        window.record()
        wait_until(lambda: window.recording is not None, 30, "a take to start")
        if len(window.take_log) == 1:
            break
        pump(2.0)
        window.stop()
        wait_until(lambda: len(window.take_log) == 1 and not window.busy, 90, "the take to stop")
    pids = list(window.worker.ctl.supervisor.pids().values()) + [window.worker.ctl.recorder.pid]
    print("RECORDING", json.dumps({"take": window.recording["path"], "pids": pids}), flush=True)
    pump(3600)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
