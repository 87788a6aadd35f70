"""`flexcap calibrate wizard`: the QApplication around the wizard window."""

from __future__ import annotations

from acquisition.console.app import run_window
from calibration.wizard.window import CalibrationWizard


def run(rig: str | None, sessions: str | None, subject: str) -> int:
    def shown(window: CalibrationWizard, kind: type[BaseException], exc: BaseException) -> None:
        window.message("Unexpected error (logged)", f"{kind.__name__}: {exc}")

    return run_window("flexcap calibration", lambda: CalibrationWizard(rig, sessions, subject), shown)
