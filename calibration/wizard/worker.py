"""The wizard's hands: the console's rig worker (on its own thread, owning the RigController) plus the
calibration take and the calibration itself, so that neither ever runs on the GUI thread."""

from __future__ import annotations

import logging
import threading
import traceback
from pathlib import Path
from typing import Any

from PyQt6.QtCore import QObject, pyqtSignal, pyqtSlot

from acquisition.config import TakeInfo
from acquisition.console.worker import RigWorker, WorkerError
from calibration.board import BoardSpec
from calibration.commands import accept
from calibration.result import Calibration
from calibration.take import calibrate_take

ACTION = "calibration"
log = logging.getLogger(__name__)


class CalibrationWorker(RigWorker):
    def do_start_capture(self, subject: str) -> dict[str, Any]:
        """A calibration take: the cameras record while the operator shows the board; the wizard's
        captures are marks in it, and the calibration reads its frames."""
        active = self._controller().start_take(TakeInfo(subject=subject, action=ACTION, repetition=1))
        return {"path": str(active.path), "started_lsl": active.started_lsl, "problems": list(active.problems)}

    def do_accept(self, calibration: Calibration, session_dir: str) -> str:
        try:
            return accept(calibration, Path(session_dir))
        except ValueError as exc:
            raise WorkerError(str(exc)) from exc


class Cancelled(Exception):
    pass


class CalibrateJob(QObject):
    """The calibration itself, on a thread of its own: the rig's thread stays free (closing the wizard
    never waits for a calibration to finish)."""

    progress = pyqtSignal(float, str)
    done = pyqtSignal(object)  # Calibration
    failed = pyqtSignal(str)

    def __init__(self) -> None:
        super().__init__()
        self.cancelled = threading.Event()

    def cancel(self) -> None:
        """Stop at the next step (the wizard is closing); called from any thread."""
        self.cancelled.set()

    def _step(self, fraction: float, text: str) -> None:
        if self.cancelled.is_set():
            raise Cancelled
        self.progress.emit(fraction, text)

    @pyqtSlot(str, object, str)
    def run(self, take: str, cameras: list[str], board: str) -> None:
        try:
            cal = calibrate_take(Path(take), BoardSpec.model_validate_json(board), cameras, self._step)
        except Cancelled:
            return
        except Exception as exc:  # a take that cannot be read: say so, the wizard goes on
            log.error("calibration of %s failed:\n%s", take, traceback.format_exc())
            self.failed.emit(str(exc) if isinstance(exc, ValueError) else f"{type(exc).__name__}: {exc}")
            return
        self.done.emit(cal)
