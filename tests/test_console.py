"""The operator console, driven like an operator drives it: the real window (offscreen) on the
simulated lab running for real, one lab for this module. Screenshots of the main states are saved."""

from __future__ import annotations

import os
import re
import signal
from pathlib import Path

import h5py
import numpy as np
import pytest
from console_kit import close_dialogs, message_texts, pump, screenshot, wait_until
from PyQt6.QtCore import Qt
from PyQt6.QtTest import QTest
from PyQt6.QtWidgets import QApplication

from acquisition.config import load_rig
from acquisition.console.health import GREEN, RED
from acquisition.console.window import SHORTCUTS, ConsoleWindow
from acquisition.rig import expected_streams
from acquisition.takefile import stream_strings
from acquisition.validate import validate_take

pytestmark = pytest.mark.timeout(600)

SUBJECT = "S01"


@pytest.fixture(scope="module")
def console(qapp, tmp_path_factory: pytest.TempPathFactory):
    sessions = tmp_path_factory.mktemp("console_sessions")
    window = ConsoleWindow(None, str(sessions), SUBJECT, None, "ana")
    window.show()
    wait_until(lambda: window.rig_ready and window.plan.state is not None, 90, "the rig and the session")
    assert message_texts(window) == []  # every device appeared
    # as an operator does: the first take once the rig has settled and every device reports
    wait_until(lambda: all(r.light == GREEN for r in window.rig_panel.rows.values())
               and len(window.rig_panel.rows) == 11, 30, "every device green")
    pump(3.0)
    window.screens = tmp_path_factory.mktemp("screens")
    yield window
    close_dialogs(window)
    window.close()
    wait_until(lambda: window.closing, 60, "the console to close")


def record_take(window: ConsoleWindow, seconds: float, during=None) -> dict:  # noqa: ANN001
    n = len(window.take_log)
    QTest.mouseClick(window.record_button, Qt.MouseButton.LeftButton)
    wait_until(lambda: window.recording is not None, 30, "the take to start")
    pump(seconds)
    if during is not None:
        during()
    QTest.mouseClick(window.stop_button, Qt.MouseButton.LeftButton)
    wait_until(lambda: len(window.take_log) > n and not window.busy, 90, "the take to stop")
    return window.take_log[-1]


def events(take: Path) -> list[str]:
    with h5py.File(take / "take.h5", "r") as f:
        return [row[0] for row in stream_strings(f["markers/events"])]


def test_record_stop_gives_a_valid_take_with_every_stream(console: ConsoleWindow) -> None:
    def during() -> None:
        QTest.mouseClick(console.mark_button, Qt.MouseButton.LeftButton)
        pump(1.5)
        screenshot(console, "console-recording", console.screens)

    result = record_take(console, 3.0, during)
    take = Path(result["path"])
    assert take.name == "001_back_squat_1"
    assert take.parent.name.endswith(f"_{SUBJECT}")
    assert validate_take(take) == []
    with h5py.File(take / "take.h5", "r") as f:
        assert sorted(f["streams"]) == sorted(s["stream_id"] for s in expected_streams(load_rig()))
        assert sorted(f["cameras"]) == ["cam1", "cam2", "cam3", "cam4", "phone"]
        assert f["streams/emg1/time_stamps"].shape[0] > 2048 * 4
    assert events(take) == ["take_start", "repetition boundary", "take_stop"]
    # the take's one line: the sync verdict, the inspect summary, validity
    line = result["line"]
    assert re.match(r"001_back_squat_1: sync (GREEN|AMBER): ", line), line  # amber: a busy machine's chest strap
    assert ", 33 streams, " in line and ", 5 cameras, " in line and line.endswith("| valid")
    assert console.log_list.item(console.log_list.count() - 1).text() == line
    # the plan moved on: rep 1 is done under its take's name, rep 2 is next and selected
    state = console.plan.state
    assert state["steps"][0]["done"] and state["steps"][0]["takes"][0]["take"] == "001_back_squat_1"
    assert state["next"] == 1 and console.plan.steps.currentRow() == 1
    assert state["progress"] == [1, 200]
    screenshot(console, "console-after-take", console.screens)


def test_preview_tiles_and_live_signals_show_the_lab(console: ConsoleWindow) -> None:
    tiles = console.previews.tiles
    assert list(tiles) == ["cam1", "cam2", "cam3", "cam4", "phone"]
    wait_until(lambda: all(t.image is not None for t in tiles.values()), 10, "a preview in every tile")
    assert tiles["cam1"].image.width() == 320
    assert tiles["phone"].overlay.startswith("phone  ") and tiles["phone"].overlay.endswith(" drops")
    assert "fps" in tiles["cam2"].overlay and "- fps" not in tiles["cam2"].overlay
    QTest.mouseClick(tiles["cam3"], Qt.MouseButton.LeftButton)
    assert console.previews.enlarged == "cam3" and tiles["cam1"].isHidden() and not tiles["cam3"].isHidden()
    pump(0.5)
    screenshot(console, "console-enlarged-camera", console.screens)
    QTest.mouseClick(tiles["cam3"], Qt.MouseButton.LeftButton)
    assert console.previews.enlarged is None and not tiles["cam1"].isHidden()
    plots = console.plots
    assert [lane.label for lane in plots.lanes][:4] == ["vastus_lateralis_l", "vastus_lateralis_r",
                                                      "rectus_femoris_l", "rectus_femoris_r"]
    assert len(plots.lanes) == 16
    x, y = plots.lanes[0].curve.getData()
    assert len(x) > 100 and x.min() >= -5.5 and x.max() <= 0.5
    # the channel picker: switching a channel off removes its lane
    plots.set_channel(("emg2", 0), False)
    assert len(plots.lanes) == 15 and "biceps_femoris_l" not in [lane.label for lane in plots.lanes]
    plots.set_channel(("emg2", 0), True)
    assert len(plots.lanes) == 16
    ecg_x, _ = plots.ecg_curve.getData()
    assert ecg_x is not None and len(ecg_x) > 130


def test_shortcuts_do_what_the_help_says(console: ConsoleWindow) -> None:
    console.activateWindow()  # shortcuts act in the active window, as on a desk
    wait_until(lambda: QApplication.activeWindow() is console, 5, "the console to be the active window")
    keys = {k: method for k, _, method in SHORTCUTS}
    assert set(keys) == {"F1", "F5", "F6", "F7", "F8", "F9", "Ctrl+B", "Ctrl+P"}
    for key, _doc, _ in SHORTCUTS:  # the strip under the buttons names every key
        assert f"<b>{key}</b>" in console.keys.text()
    QTest.keyClick(console, Qt.Key.Key_F1)
    help_text = console.dialogs[-1].text()
    for key, doc, _ in SHORTCUTS:
        assert f"<b>{key}</b>" in help_text and doc in help_text
    console.dialogs[-1].close()

    QTest.keyClick(console, Qt.Key.Key_F5)  # record the selected (next) take: back_squat rep 2
    wait_until(lambda: console.recording is not None, 30, "F5 to start a take")
    assert console.recording["take"] == "002_back_squat_2"
    pump(1.0)
    QTest.keyClick(console, Qt.Key.Key_F7)
    pump(0.5)
    QTest.keyClick(console, Qt.Key.Key_F8)
    note = console.dialogs[-1]
    note.setTextValue("subject paused at the bottom")
    note.accept()
    pump(1.0)
    n = len(console.take_log)
    QTest.keyClick(console, Qt.Key.Key_F6)
    wait_until(lambda: len(console.take_log) > n and not console.busy, 90, "F6 to stop the take")
    take = Path(console.take_log[-1]["path"])
    assert events(take) == ["take_start", "repetition boundary", "note: subject paused at the bottom", "take_stop"]
    with h5py.File(take / "take.h5", "r") as f:
        stamps = f["markers/events/time_stamps"][()]
    assert np.all(np.diff(stamps) > 0)

    console.banner.add("test", "a test alarm")
    assert console.banner.isVisibleTo(console)
    QTest.keyClick(console, Qt.Key.Key_F9)
    assert not console.banner.isVisibleTo(console) and console.banner.messages == {}

    QTest.keyClick(console, Qt.Key.Key_B, Qt.KeyboardModifier.ControlModifier)  # the last take is bad
    bad = console.dialogs[-1]
    assert "002_back_squat_2" in bad.labelText()
    bad.setTextValue("bar slipped")
    bad.accept()
    wait_until(lambda: console.plan.state["steps"][1]["takes"][0]["bad"], 10, "the take to be marked bad")
    state = console.plan.state
    assert state["next"] == 1 and not state["steps"][1]["done"] and state["progress"] == [1, 200]
    assert console.plan.steps.item(1).text().startswith("▶ back_squat  rep 2   002_back_squat_2 (bad)")

    QTest.keyClick(console, Qt.Key.Key_P, Qt.KeyboardModifier.ControlModifier)  # the pre-flight check
    wait_until(lambda: getattr(console, "preflight_result", None) is not None, 120, "the pre-flight check")
    result = console.preflight_result
    names = [c["name"] for c in result["checks"]]
    for device in ("cam1", "cam2", "cam3", "cam4", "phone", "emg1", "emg2", "emg3", "emg4"):
        assert f"{device} saw the pulse" in names
    assert "clock offsets" in names and "free disk" in names
    assert [c for c in result["checks"] if not c["ok"]] == []
    assert result["take"] == "003_preflight_1"
    assert "Pre-flight: passed" in console.plan.preflight.text()
    # the redo: F5 records rep 2 again under a new number
    redo = record_take(console, 1.0)
    assert redo["take"] == "004_back_squat_2"
    assert console.plan.state["steps"][1]["done"] and console.plan.state["next"] == 2


def test_a_device_killed_mid_take_turns_red_while_the_others_record(console: ConsoleWindow) -> None:
    victim = console.worker.ctl.supervisor.children["emg2"]

    def during() -> None:
        os.kill(victim.pid, signal.SIGKILL)
        wait_until(lambda: console.rig_panel.rows["emg2"].light == RED, 15, "emg2's light to turn red")
        wait_until(lambda: console.banner.isVisibleTo(console), 5, "the red banner")
        assert "emg2 lost" in console.banner.label.text()
        assert console.rig_panel.rows["emg1"].light == GREEN
        pump(2.0)
        screenshot(console, "console-device-lost", console.screens)

    result = record_take(console, 2.0, during)
    take = Path(result["path"])
    with h5py.File(take / "take.h5", "r") as f:
        stop = f.attrs["stopped_lsl"]
        last = {sid: f[f"streams/{sid}/time_stamps"][-1] + f[f"streams/{sid}"].attrs.get("window_offset", 0.0)
                for sid in ("emg1", "emg2", "emg3", "chest_ecg")}
    assert stop - last["emg2"] > 4.0  # emg2 ended when it was killed
    for sid in ("emg1", "emg3", "chest_ecg"):  # the others recorded to the end
        assert stop - last[sid] < 1.0, sid
    assert any("emg2" in p for p in result["problems"])
    assert console.banner.isVisibleTo(console)  # until acknowledged
    QTest.mouseClick(console.banner.button, Qt.MouseButton.LeftButton)
    # the operator restarts it from the rig panel
    console.rig_panel.select("emg2")
    QTest.mouseClick(console.rig_panel.buttons["restart"], Qt.MouseButton.LeftButton)
    wait_until(lambda: console.rig_panel.rows["emg2"].light == GREEN, 40, "emg2 back to green")
    assert console.worker.ctl.supervisor.children["emg2"].pid != victim.pid


def test_bad_protocol_and_closing_while_recording(console: ConsoleWindow, tmp_path: Path) -> None:
    bad = tmp_path / "broken.toml"
    bad.write_text('name = "broken"\n[[actions]]\naction = "squat"\nrepetitions = 0\n')
    console.open_session("S02", {}, str(bad))
    wait_until(lambda: any("The session did not open" in t for t in message_texts(console)), 10, "the dialog")
    text = [t for t in message_texts(console) if "The session did not open" in t][-1]
    assert str(bad) in text and "actions[0].repetitions" in text
    assert console.plan.state["subject"] == SUBJECT  # the visit goes on
    close_dialogs(console)
    # closing while recording asks first; "No" keeps recording
    QTest.mouseClick(console.record_button, Qt.MouseButton.LeftButton)
    wait_until(lambda: console.recording is not None, 30, "the take to start")
    take = Path(console.recording["path"])
    console.close()
    question = console.dialogs[-1]
    assert question.windowTitle() == "A take is recording" and console.isVisible()
    QTest.mouseClick(question.button(question.StandardButton.No), Qt.MouseButton.LeftButton)
    pump(1.0)
    assert console.recording is not None and console.isVisible()
    # "Yes" stops the take, keeps it, then closes
    console.close()
    question = console.dialogs[-1]
    QTest.mouseClick(question.button(question.StandardButton.Yes), Qt.MouseButton.LeftButton)
    wait_until(lambda: console.closing, 120, "the console to stop the take and close")
    assert validate_take(take) == []
    assert events(take)[-1] == "take_stop"
    assert console.worker.ctl is None  # the rig was shut down
