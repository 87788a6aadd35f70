"""The calibration wizard (`flexcap calibrate wizard`): from "five cameras on tripods" to a verified
calibration, saved with the session."""
