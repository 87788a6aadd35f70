"""The wizard's hands: the console's rig worker (on its own thread, owning the RigController) plus the
calibration take and the calibration itself, so that neither ever runs on the GUI thread."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from acquisition.config import TakeInfo
from acquisition.console.worker import RigWorker, WorkerError
from calibration.board import BoardSpec
from calibration.commands import accept
from calibration.result import Calibration
from calibration.take import calibrate_take

ACTION = "calibration"


class CalibrationWorker(RigWorker):
    def do_start_capture(self, subject: str) -> dict[str, Any]:
        """A calibration take: the cameras record while the operator shows the board; the wizard's
        captures are marks in it, and the calibration reads its frames."""
        active = self._controller().start_take(TakeInfo(subject=subject, action=ACTION, repetition=1))
        return {"path": str(active.path), "started_lsl": active.started_lsl, "problems": list(active.problems)}

    def do_calibrate(self, take: str, cameras: list[str], board: str) -> Calibration:
        spec = BoardSpec.model_validate_json(board)

        return calibrate_take(Path(take), spec, cameras, lambda f, t: self.notice.emit("progress", (f, t)))

    def do_accept(self, calibration: Calibration, session_dir: str) -> str:
        try:
            return accept(calibration, Path(session_dir))
        except ValueError as exc:
            raise WorkerError(str(exc)) from exc
