"""Bad input to the console: a rig file that does not load, a device that never appears. Each gets a
dialog that names the problem, and the console stays usable."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import EMULATED_EMG, small_rig_data
from console_kit import close_dialogs, message_texts, wait_until
from PyQt6.QtCore import Qt
from PyQt6.QtTest import QTest

from acquisition.console.health import AMBER, RED
from acquisition.console.window import ConsoleWindow

pytestmark = pytest.mark.timeout(180)


def closed(window: ConsoleWindow) -> None:
    close_dialogs(window)
    window.close()
    wait_until(lambda: window.closing, 60, "the console to close")


@pytest.mark.parametrize("content, problem", [
    (None, "rig file not found"),
    ("name = 'x'\n[[devices]\n", "not valid TOML"),
    ("name = 'lab'\n[[devices]]\nkind = 'emg'\nid = 'emg'\nsettings = {protocol = 'nope'}\n", "settings.protocol"),
])
def test_a_rig_file_that_does_not_load_gets_a_dialog(qapp, tmp_path: Path, content: str | None, problem: str) -> None:
    path = tmp_path / "rig.toml"
    if content is not None:
        path.write_text(content)
    window = ConsoleWindow(str(path), str(tmp_path))
    window.show()
    wait_until(lambda: message_texts(window), 5, "the dialog")
    (text,) = message_texts(window)
    assert text.startswith(f"The rig file does not load: {path}") and problem in text
    # still usable: another rig can be opened, nothing records, and it closes at once
    assert window.open_rig_action.isEnabled() and not window.record_button.isEnabled()
    QTest.mouseClick(window.record_button, Qt.MouseButton.LeftButton)
    assert window.recording is None
    # closing the console (Ctrl-C in its terminal does this) closes its open message too: nothing keeps the
    # application alive
    assert window.dialogs[-1].isVisible()
    window.close()
    wait_until(lambda: window.closing, 60, "the console to close")
    assert not [w for w in qapp.topLevelWidgets() if w.isVisible()]


def test_a_device_that_never_appears_is_named_and_the_others_run(qapp, tmp_path: Path) -> None:
    data = small_rig_data([
        {**EMULATED_EMG, "id": "emg_ok"},
        {"kind": "emg", "id": "emg_gone", "settings": {"protocol": "shimmer3-exg", "rate": 512,
                                                       "port": str(tmp_path / "ttyUSB-unplugged")}},
    ], stream_wait_s=3.0)
    data.pop("sim")
    rig = tmp_path / "rig.json"
    rig.write_text(json.dumps(data))
    window = ConsoleWindow(str(rig), str(tmp_path / "sessions"), "S03")
    window.show()
    try:
        wait_until(lambda: window.rig_ready, 60, "the rig")
        wait_until(lambda: message_texts(window), 15, "the dialog")
        (text,) = message_texts(window)
        assert text.startswith("emg_gone never appeared: emg_gone has not connected since the rig started: ")
        assert "ttyUSB-unplugged" in text
        wait_until(lambda: window.rig_panel.rows.get("emg_gone") and window.rig_panel.rows["emg_gone"].light in
                   (RED, AMBER) and "ttyUSB-unplugged" in window.rig_panel.rows["emg_gone"].error, 15,
                   "emg_gone's error in the rig panel")
        assert window.record_button.isEnabled()  # the others can record
    finally:
        closed(window)
