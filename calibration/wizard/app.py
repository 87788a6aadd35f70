"""`flexcap calibrate wizard`: the QApplication around the wizard window."""

from __future__ import annotations

import logging
import signal
import sys

from PyQt6.QtCore import QTimer
from PyQt6.QtWidgets import QApplication

from calibration.wizard.window import CalibrationWizard

log = logging.getLogger(__name__)


def run(rig: str | None, sessions: str | None, subject: str) -> int:
    app = QApplication.instance() or QApplication(sys.argv[:1])
    app.setApplicationName("flexcap calibration")
    window = CalibrationWizard(rig, sessions, subject)
    window.show()

    def unexpected(kind: type[BaseException], exc: BaseException, tb: object) -> None:
        # PyQt aborts the process on an exception left in a slot; that would leave the rig's children behind
        log.error("unexpected error in the calibration wizard", exc_info=(kind, exc, tb))
        window.message("Unexpected error (logged)", f"{kind.__name__}: {exc}")

    sys.excepthook = unexpected
    signal.signal(signal.SIGINT, lambda *_: window.close())
    tick = QTimer()  # lets Python run its signal handlers while Qt's loop waits
    tick.start(250)
    tick.timeout.connect(lambda: None)
    return app.exec()
