"""`flexcap console`: the QApplication around the console window."""

from __future__ import annotations

import logging
import signal
import sys
from collections.abc import Callable
from typing import TypeVar

from PyQt6.QtCore import QTimer
from PyQt6.QtWidgets import QApplication, QWidget

from acquisition.console.window import ConsoleWindow

log = logging.getLogger(__name__)
W = TypeVar("W", bound=QWidget)


def run(rig: str | None, sessions: str | None, subject: str | None, protocol: str | None, operator: str) -> int:
    def shown(window: ConsoleWindow, kind: type[BaseException], exc: BaseException) -> None:
        window.banner.add(f"error:{kind.__name__}:{exc}", f"Console error (logged; recording goes on): "
                                                          f"{kind.__name__}: {exc}")

    # Ctrl-C in the terminal closes the window the normal way (a recording take is stopped and kept)
    return run_window("flexcap console", lambda: ConsoleWindow(rig, sessions, subject, protocol, operator), shown)


def run_window(name: str, make: Callable[[], W], shown: Callable[[W, type[BaseException], BaseException], None]) -> int:
    """A flexcap window's application: Ctrl-C closes the window (its own close asks and cleans up), and an
    exception left in a slot is logged and shown by `shown` instead of aborting the process (PyQt aborts
    on it; that would kill the rig mid-take or leave its children behind)."""
    app = QApplication.instance() or QApplication(sys.argv[:1])
    app.setApplicationName(name)
    window = make()
    window.show()

    def unexpected(kind: type[BaseException], exc: BaseException, tb: object) -> None:
        log.error("unexpected error in the %s", name, exc_info=(kind, exc, tb))
        shown(window, kind, exc)

    sys.excepthook = unexpected
    signal.signal(signal.SIGINT, lambda *_: window.close())
    tick = QTimer()  # lets Python run its signal handlers while Qt's loop waits
    tick.start(250)
    tick.timeout.connect(lambda: None)
    return app.exec()
