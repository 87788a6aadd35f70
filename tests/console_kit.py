"""Driving the real console window in tests: wait on its state while Qt's event loop runs, and save
screenshots of it (to $FLEXCAP_SCREENSHOTS when set, for the README; else next to the test's files)."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path

from PyQt6.QtCore import QEventLoop
from PyQt6.QtWidgets import QApplication, QMessageBox


def wait_until(cond: Callable[[], object], timeout: float, what: str = "") -> None:
    app = QApplication.instance()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        app.processEvents(QEventLoop.ProcessEventsFlag.AllEvents, 20)
        if cond():
            return
        time.sleep(0.01)
    raise AssertionError(f"timed out after {timeout:g} s waiting for {what or cond}")


def pump(seconds: float) -> None:
    """Let the window live for a while (the event loop keeps running)."""
    end = time.monotonic() + seconds
    app = QApplication.instance()
    while time.monotonic() < end:
        app.processEvents(QEventLoop.ProcessEventsFlag.AllEvents, 20)
        time.sleep(0.01)


def screenshot(widget, name: str, fallback_dir: Path) -> Path:  # noqa: ANN001 - any QWidget
    out = Path(os.environ.get("FLEXCAP_SCREENSHOTS") or fallback_dir)
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"{name}.png"
    assert widget.grab().save(str(path)), f"the screenshot {path} was not written"
    return path


def message_texts(window) -> list[str]:  # noqa: ANN001 - a ConsoleWindow
    return [f"{d.windowTitle()}: {d.text()}" for d in window.dialogs if isinstance(d, QMessageBox)]


def close_dialogs(window) -> None:  # noqa: ANN001
    for d in window.dialogs:
        d.close()
