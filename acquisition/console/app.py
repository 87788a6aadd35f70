"""`flexcap console`: the QApplication around the console window."""

from __future__ import annotations

import logging
import signal
import sys

from PyQt6.QtCore import QTimer
from PyQt6.QtWidgets import QApplication

from acquisition.console.window import ConsoleWindow

log = logging.getLogger(__name__)


def run(rig: str | None, sessions: str | None, subject: str | None, protocol: str | None, operator: str) -> int:
    app = QApplication.instance() or QApplication(sys.argv[:1])
    app.setApplicationName("flexcap console")
    window = ConsoleWindow(rig, sessions, subject, protocol, operator)
    window.show()

    def unexpected(kind: type[BaseException], exc: BaseException, tb: object) -> None:
        # PyQt aborts the process on an exception left in a slot; that would kill the rig mid-take
        log.error("unexpected error in the console", exc_info=(kind, exc, tb))
        window.banner.add(f"error:{kind.__name__}:{exc}", f"Console error (logged; recording goes on): "
                                                          f"{kind.__name__}: {exc}")

    sys.excepthook = unexpected
    # Ctrl-C in the terminal closes the window the normal way (a recording take is stopped and kept)
    signal.signal(signal.SIGINT, lambda *_: window.close())
    tick = QTimer()  # lets Python run its signal handlers while Qt's loop waits
    tick.start(250)
    tick.timeout.connect(lambda: None)
    return app.exec()
