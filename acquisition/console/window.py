"""The operator console's main window. It only shows and asks: the rig, the session and the plan live
in the RigWorker on its own thread, the live data comes from the LiveFeed's thread, and every dialog
is non-blocking (`open()`), so the event loop never waits on a device, a file or the network."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pylsl
from PyQt6.QtCore import Qt, QThread, QTimer, pyqtSignal
from PyQt6.QtGui import QAction, QCloseEvent, QKeySequence, QShortcut
from PyQt6.QtWidgets import (
    QFileDialog,
    QHBoxLayout,
    QInputDialog,
    QLabel,
    QListWidget,
    QMainWindow,
    QMessageBox,
    QPushButton,
    QSplitter,
    QVBoxLayout,
    QWidget,
)

from acquisition.config import Rig, RigError, load_rig
from acquisition.console.feed import LiveFeed
from acquisition.console.health import alarms, device_rows
from acquisition.console.planpanel import PlanPanel, SessionDialog
from acquisition.console.plots import LivePlots
from acquisition.console.widgets import Banner, PreviewGrid, RigPanel
from acquisition.console.worker import RigWorker, device_kinds, on_own_thread
from acquisition.lslconfig import apply_lsl_settings
from acquisition.rig import expected_streams
from acquisition.supervisor import camera_ids

log = logging.getLogger(__name__)

# One list: the keys, what the window's help says they do, and the method they call.
SHORTCUTS = [
    ("F5", "Record the selected take (the plan's next one unless you pick another)", "record"),
    ("F6", "Stop the take", "stop"),
    ("F7", "Mark a repetition boundary in the take", "mark_repetition"),
    ("F8", "Add a note to the take (stamped when the key is pressed)", "note"),
    ("F9", "Acknowledge the red banner", "acknowledge"),
    ("Ctrl+B", "Mark the last take bad: it stays on disk and its repetition is due again", "mark_last_bad"),
    ("Ctrl+P", "Run the pre-flight check", "preflight"),
    ("F1", "Show these keyboard shortcuts", "show_help"),
]
PLOT_INTERVAL_MS = 66      # live signals at 15 Hz: smooth enough to watch, a quarter less drawing than 20 Hz
PREVIEW_INTERVAL_MS = 80   # previews at 12.5 Hz, the cameras' preview rate
STATUS_INTERVAL_MS = 500   # rig panel, alarms, record bar
NEVER_CONNECTED_S = 5.0   # after the rig is up: a device still not connected is reported
LOW_DISK_FACTOR = 3        # warn below three times the recorder's minimum free space


def human_bytes(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if abs(n) < 1000 or unit == "TB":
            return f"{n:.0f} {unit}" if unit in ("B", "KB") else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} TB"


def clock_text(seconds: float) -> str:
    m, s = divmod(int(seconds), 60)
    h, m = divmod(m, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m:02d}:{s:02d}"


class ConsoleWindow(QMainWindow):
    ask = pyqtSignal(str, object)  # to the worker: (request, arguments)

    def __init__(self, rig_path: str | None = None, sessions_dir: str | None = None, subject: str | None = None,
                 protocol: str | None = None, operator: str = "") -> None:
        super().__init__()
        self.setWindowTitle("flexcap console")
        self.sessions_override = sessions_dir
        self.rig: Rig | None = None
        self.worker: RigWorker | None = None
        self.thread_: QThread | None = None
        self.feed: LiveFeed | None = None
        self.rig_ready = False
        self.recording: dict[str, Any] | None = None   # the take being recorded
        self.busy = ""                                  # a request in flight that locks Record/Stop
        self.drops_at_start: dict[str, int] = {}
        self.stopped_devices: set[str] = set()
        self.seen_connected: set[str] = set()
        self.never_reported: set[str] = set()
        self.rig_ready_at: float | None = None
        self.take_log: list[dict[str, Any]] = []
        self.dialogs: list[QWidget] = []                # every dialog opened, newest last (tests read them)
        self.close_when_idle = False
        self.closing = False
        self.plots: LivePlots | None = None
        self.previews: PreviewGrid | None = None
        self._build()
        self._startup = {"subject": subject, "protocol": protocol, "operator": operator}
        self.auto_stop_s: float | None = None
        QTimer.singleShot(0, lambda: self.open_rig(rig_path))

    # -- building the window ------------------------------------------------------------------------
    def _build(self) -> None:
        self.record_button = QPushButton("● Record  (F5)")
        self.stop_button = QPushButton("■ Stop  (F6)")
        self.mark_button = QPushButton("Mark repetition  (F7)")
        self.note_button = QPushButton("Note  (F8)")
        self.record_button.clicked.connect(self.record)
        self.stop_button.clicked.connect(self.stop)
        self.mark_button.clicked.connect(self.mark_repetition)
        self.note_button.clicked.connect(self.note)
        self.record_button.setStyleSheet("QPushButton { font-weight: bold; color: #c62828; padding: 6px 14px; }")
        self.stop_button.setStyleSheet("QPushButton { font-weight: bold; padding: 6px 14px; }")
        self.take_label = QLabel("")
        self.elapsed = QLabel("--:--")
        self.elapsed.setStyleSheet("font-size: 22pt; font-weight: bold; font-family: monospace;")
        self.numbers = QLabel("")
        self.numbers.setStyleSheet("font-family: monospace;")
        bar = QHBoxLayout()
        for w in (self.record_button, self.stop_button, self.mark_button, self.note_button):
            bar.addWidget(w)
        bar.addSpacing(12)
        bar.addWidget(self.elapsed)
        info = QVBoxLayout()
        info.addWidget(self.take_label)
        info.addWidget(self.numbers)
        bar.addLayout(info, 1)
        self.keys = QLabel("  ·  ".join(f"<b>{k}</b> {d.split(' (')[0].split(':')[0]}" for k, d, _ in SHORTCUTS))
        self.keys.setStyleSheet("color: #555;")
        self.keys.setWordWrap(True)
        self.banner = Banner()
        self.banner.acknowledged.connect(self._banner_acknowledged)

        self.rig_panel = RigPanel()
        self.rig_panel.action.connect(self.device_action)
        self.plan = PlanPanel()
        self.plan.session_requested.connect(self.edit_session)
        self.log_list = QListWidget()
        self.log_list.setWordWrap(True)
        left = QSplitter(Qt.Orientation.Vertical)
        left.addWidget(self.rig_panel)
        left.addWidget(self.plan)
        left.setSizes([330, 500])
        self.middle = QSplitter(Qt.Orientation.Vertical)
        self.middle_placeholder = QLabel("starting the rig...")
        self.middle_placeholder.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.middle.addWidget(self.middle_placeholder)
        main = QSplitter(Qt.Orientation.Horizontal)
        main.addWidget(left)
        main.addWidget(self.middle)
        main.setSizes([560, 1040])
        self.main_split = main

        central = QWidget()
        layout = QVBoxLayout(central)
        layout.addLayout(bar)
        layout.addWidget(self.keys)
        layout.addWidget(self.banner)
        layout.addWidget(main, 1)
        layout.addWidget(QLabel("Takes"))
        layout.addWidget(self.log_list)
        self.log_list.setMaximumHeight(70)
        self.setCentralWidget(central)

        menu = self.menuBar()
        file_menu = menu.addMenu("&File")
        self.open_rig_action = QAction("Open rig...", self)
        self.open_rig_action.triggered.connect(self.choose_rig)
        file_menu.addAction(self.open_rig_action)
        self.retry_rig_action = QAction("Start the rig again", self)
        self.retry_rig_action.setEnabled(False)
        self.retry_rig_action.triggered.connect(self.retry_rig)
        file_menu.addAction(self.retry_rig_action)
        session_action = QAction("Session...", self)
        session_action.triggered.connect(self.edit_session)
        file_menu.addAction(session_action)
        file_menu.addSeparator()
        quit_action = QAction("Quit", self)
        quit_action.triggered.connect(self.close)
        file_menu.addAction(quit_action)
        help_menu = menu.addMenu("&Help")
        keys_action = QAction("Keyboard shortcuts", self)
        keys_action.triggered.connect(self.show_help)
        help_menu.addAction(keys_action)

        self.shortcuts = {}
        for key, _doc, method in SHORTCUTS:
            sc = QShortcut(QKeySequence(key), self)
            sc.setContext(Qt.ShortcutContext.ApplicationShortcut)
            sc.activated.connect(getattr(self, method))
            self.shortcuts[key] = sc

        self.status_timer = QTimer(self)
        self.status_timer.timeout.connect(self.refresh_status)
        self.status_timer.start(STATUS_INTERVAL_MS)
        self.plot_timer = QTimer(self)
        self.preview_timer = QTimer(self)
        self.statusBar().showMessage("Starting...")
        self._update_buttons()
        self.resize(1600, 1000)

    # -- the rig --------------------------------------------------------------------------------------
    def choose_rig(self) -> None:
        if self.rig is not None:
            self.message("A rig is already running", "Quit the console to open another rig file.")
            return
        path, _ = QFileDialog.getOpenFileName(self, "Rig file", "", "Rig (*.toml)")
        if path:
            self.open_rig(path)

    def open_rig(self, path: str | None) -> None:
        try:
            rig = load_rig(path)
        except RigError as exc:
            self.middle_placeholder.setText("No rig: File > Open rig...")
            self.statusBar().showMessage("No rig loaded")
            self.message("The rig file does not load", str(exc))
            return
        self.rig = rig
        self.setWindowTitle(f"flexcap console: {rig.name}")
        apply_lsl_settings(rig.lsl)  # before the feed's first inlet and the rig's first outlet
        sessions = Path(self.sessions_override or rig.sessions_dir)
        wanted = {s["source_id"]: s["stream_id"] for s in expected_streams(rig)}
        self.feed = LiveFeed(wanted, sessions)
        self.feed.start()
        self.previews = PreviewGrid(camera_ids(rig))
        self.plots = LivePlots(self.feed)
        self.middle_placeholder.setParent(None)
        self.middle.addWidget(self.previews)
        self.middle.addWidget(self.plots)
        self.middle.setSizes([200, 780])
        self.previews.enlarged_changed.connect(
            lambda big: self.middle.setSizes([460, 520] if big else [200, 780]))
        self.plot_timer.timeout.connect(self.plots.refresh)
        self.plot_timer.start(PLOT_INTERVAL_MS)
        self.preview_timer.timeout.connect(lambda: self.previews.refresh(self.feed.status_snapshot()))
        self.preview_timer.start(PREVIEW_INTERVAL_MS)

        self.worker = RigWorker(rig, sessions)
        self.thread_ = on_own_thread(self.worker, "rig")
        self.ask.connect(self.worker.call)
        self.worker.done.connect(self._done)
        self.worker.failed.connect(self._failed)
        self.worker.notice.connect(self._worker_event)
        self.open_rig_action.setEnabled(False)
        if self._startup["subject"]:
            self.open_session(self._startup["subject"], {"operator": self._startup["operator"]},
                              self._startup["protocol"])
        self.statusBar().showMessage(f"Starting {len(rig.enabled_devices())} devices and the recorder...")
        self._request("start_rig")

    def retry_rig(self) -> None:
        self.retry_rig_action.setEnabled(False)
        self.statusBar().showMessage("Starting the rig again...")
        self._request("start_rig")

    def _request(self, name: str, **args: Any) -> None:
        if self.worker is None:
            self.message("No rig", "Open a rig file first (File > Open rig...).")
            return
        if name in ("start_take", "stop_take", "preflight", "shutdown"):
            self.busy = name
        self.ask.emit(name, args)
        self._update_buttons()

    def device_action(self, action: str, device: str) -> None:
        self.statusBar().showMessage(f"{action} {device}...")
        self._request("device", action=action, device=device)

    # -- session and plan ---------------------------------------------------------------------------
    def edit_session(self) -> None:
        state = self.plan.state
        dialog = SessionDialog(state["info"] if state else {"operator": self._startup["operator"]},
                               state["subject"] if state else (self._startup["subject"] or ""),
                               self._startup["protocol"], self)
        dialog.accepted.connect(lambda: self.open_session(**dialog.values()))
        self._open_dialog(dialog)

    def open_session(self, subject: str, info: dict[str, str], protocol: str | None) -> None:
        self._request("open_session", subject=subject, info=info, protocol=protocol)

    def mark_last_bad(self) -> None:
        state = self.plan.state
        if self.recording or self.busy or not state or not state.get("last_take"):
            self.statusBar().showMessage("No finished take to mark bad")
            return
        take = state["last_take"]
        dialog = QInputDialog(self)
        dialog.setWindowTitle("Mark take bad")
        dialog.setLabelText(f"Why is {take} bad? (it stays on disk; its repetition is due again)")
        dialog.textValueSelected.connect(lambda reason: self._request("mark_bad", take=take, reason=reason))
        self._open_dialog(dialog)

    # -- recording ------------------------------------------------------------------------------------
    def record(self) -> None:
        if self.recording or self.busy or not self.rig_ready:
            self.statusBar().showMessage("Not ready to record: " + ("a take is recording" if self.recording else
                                                                    self.busy or "the rig is starting"))
            return
        step = self.plan.selected_step()
        if step is None:
            if self.plan.state is None:
                self.edit_session()
            else:
                self.message("The plan is done", "Every take of the protocol is recorded. Pick a take in the list "
                             "to record it again.")
            return
        if step["done"]:
            good = [t["take"] for t in step["takes"] if not t["bad"]]
            box = QMessageBox(QMessageBox.Icon.Question, "Record again?",
                              f"{step['action']} rep {step['repetition']} is already recorded as {', '.join(good)}. "
                              "Record another take of it? (nothing is overwritten: the new take gets a new number)",
                              QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.No, self)
            box.buttonClicked.connect(lambda b: box.standardButton(b) == QMessageBox.StandardButton.Yes
                                      and self._start(step))
            self._open_dialog(box)
            return
        self._start(step)

    def _start(self, step: dict[str, Any]) -> None:
        if self.recording or self.busy:
            return
        self.take_label.setText(f"starting {step['action']} rep {step['repetition']}...")
        self.pending_step = step
        self._request("start_take", action=step["action"], repetition=step["repetition"])

    def stop(self) -> None:
        if not self.recording or self.busy:
            return
        self.take_label.setText(f"stopping {self.recording['take']}: end train, drain, alignment...")
        self._mark_take_edge("stop")
        self._request("stop_take")

    def mark_repetition(self) -> None:
        if self.recording and not self.busy:
            self._mark("repetition boundary", pylsl.local_clock(), "mark")

    def note(self) -> None:
        if not self.recording or self.busy:
            return
        stamp = pylsl.local_clock()  # when the key was pressed, not when the text is typed
        dialog = QInputDialog(self)
        dialog.setWindowTitle("Note")
        dialog.setLabelText("Note for this take (stamped when you pressed the key):")
        dialog.textValueSelected.connect(
            lambda text: text.strip() and self._mark(f"note: {text.strip()}", stamp, "mark"))
        self._open_dialog(dialog)

    def _mark(self, text: str, stamp: float, kind: str) -> None:
        self._request("mark", text=text, stamp=stamp)
        if self.plots is not None:
            self.plots.add_mark(stamp, kind, text.removeprefix("note: ")[:24] if kind == "mark" else text)

    def _mark_take_edge(self, which: str) -> None:
        if self.plots is not None:
            self.plots.add_mark(pylsl.local_clock(), "take", which)

    def preflight(self) -> None:
        if self.recording or self.busy or not self.rig_ready or self.feed is None:
            self.statusBar().showMessage("The pre-flight check runs between takes, once the rig is up")
            return
        self.plan.preflight.setText("Pre-flight: running (a short test take with sync pulses)...")
        self._request("preflight", statuses=self.feed.status_snapshot(), now=pylsl.local_clock())

    def acknowledge(self) -> None:
        self.banner.acknowledge()

    def _banner_acknowledged(self) -> None:
        self.statusBar().showMessage("Alarms acknowledged", 3000)

    # -- answers from the worker ------------------------------------------------------------------------
    def _done(self, name: str, result: Any) -> None:
        if name == self.busy:
            self.busy = ""
        handler = getattr(self, f"_on_{name}", None)
        if handler is not None:
            handler(result)
        self._update_buttons()

    def _failed(self, name: str, message: str) -> None:
        if name == self.busy:
            self.busy = ""
        titles = {"start_rig": "The rig did not start", "open_session": "The session did not open",
                  "start_take": "The take did not start", "stop_take": "Stopping the take failed",
                  "mark": "The mark was not stored", "device": "The device command failed",
                  "preflight": "The pre-flight check did not run", "mark_bad": "The take was not marked bad"}
        if name == "start_take":
            self.take_label.setText("")
        if name == "start_rig":
            self.retry_rig_action.setEnabled(True)
            self.statusBar().showMessage("The rig did not start: File > Start the rig again")
        if name == "preflight":
            self.plan.preflight.setText("Pre-flight: did not run")
        if name == "stop_take":
            self.recording = None
            self.feed.watch_take(None)
        self.message(titles.get(name, f"{name} failed"), message)
        self._update_buttons()
        if name == "shutdown":
            self._finish_close()
        elif name in ("start_take", "stop_take") and self.close_when_idle:
            self._shutdown()  # the operator asked to close: whatever was recorded is on disk

    def _worker_event(self, name: str, payload: Any) -> None:
        if name == "take_stopping":
            self.banner.add("take_stopping", f"The recorder stopped the take: {payload}")
            self.busy = "stop_take"
            self._update_buttons()

    def _on_start_rig(self, result: dict[str, Any]) -> None:
        self.rig_ready = True
        self.retry_rig_action.setEnabled(False)
        self.rig_ready_at = pylsl.local_clock()
        missing = result["missing"]
        self.statusBar().showMessage("Rig running" + (f"; missing: {', '.join(missing)}" if missing else ""))
        if missing:
            self.message("Some devices never appeared",
                         f"No data from {', '.join(missing)} after "
                         f"{self.rig.recorder.stream_wait_s:g} s. Check that they are switched on, charged and "
                         "connected, then Restart them in the rig panel. Takes record the devices that are there.")
        if result["camera_problems"]:
            self.message("Cameras not ready", "\n".join(result["camera_problems"]))

    def _on_open_session(self, state: dict[str, Any]) -> None:
        self.plan.show_state(state)
        done, total = state["progress"]
        resumed = f", resuming: {done} of {total} done" if done else ""
        self.statusBar().showMessage(f"Session {state['session']}{resumed}")

    def _on_plan_state(self, state: dict[str, Any]) -> None:
        self.plan.show_state(state)

    def _on_mark_bad(self, state: dict[str, Any]) -> None:
        self.plan.show_state(state)
        self.statusBar().showMessage("Take marked bad: its repetition is due again", 5000)

    def _on_start_take(self, result: dict[str, Any]) -> None:
        self.recording = result
        self.feed.watch_take(Path(result["path"]))
        self.drops_at_start = {}
        self.take_label.setText(f"<b>recording {result['take']}</b>")
        if self.plots is not None:
            self.plots.add_mark(result["started_lsl"], "take", "start")
        step = next((s for s in (self.plan.state or {}).get("steps", [])
                     if s["action"] == result["action"] and s["repetition"] == result["repetition"]), None)
        self.auto_stop_s = step["duration_s"] if step else None
        if self.auto_stop_s:  # the protocol's take length, counted from the take's start on the LSL clock
            take = result["take"]
            left = result["started_lsl"] + self.auto_stop_s - pylsl.local_clock()
            QTimer.singleShot(max(0, int(left * 1000)),
                              lambda: self.recording and self.recording["take"] == take and self.stop())
        for p in result["problems"]:
            self.banner.add(f"start:{p}", p)
        if self.close_when_idle:
            self.stop()

    def _on_stop_take(self, result: dict[str, Any]) -> None:
        self.recording = None
        self.feed.watch_take(None)
        sync = result.get("sync") or {}
        level = (sync.get("level") or "none").upper()
        valid = "valid" if not result["invalid"] else f"INVALID ({'; '.join(result['invalid'][:2])})"
        line = f"{result['take']}: sync {level}: {sync.get('text', 'not aligned')} | {result['summary']} | {valid}"
        self.take_log.append({**result, "line": line})
        self.log_list.addItem(line)
        item = self.log_list.item(self.log_list.count() - 1)
        item.setForeground({"GREEN": Qt.GlobalColor.darkGreen, "AMBER": Qt.GlobalColor.darkYellow}
                           .get(level, Qt.GlobalColor.red))
        self.log_list.scrollToBottom()
        self.take_label.setText(line.split(" | ")[0])
        self.elapsed.setText(clock_text(result["duration_s"]))
        self.refresh_status()
        for p in result["problems"]:
            self.banner.add(f"take:{result['take']}:{p}", f"{result['take']}: {p}")
        if "plan" in result:
            self.plan.show_state(result["plan"])
        if self.close_when_idle:
            self._request("shutdown")

    def _on_mark(self, result: dict[str, Any]) -> None:
        self.statusBar().showMessage(f"marked: {result['text']}", 3000)

    def _on_device(self, result: dict[str, Any]) -> None:
        if result["action"] == "disconnect":  # grey, and no alarm, only once it is really stopped
            self.stopped_devices.add(result["device"])
        else:
            self.stopped_devices.discard(result["device"])
        self.statusBar().showMessage(f"{result['device']}: {result['action']} done", 5000)

    def _on_preflight(self, result: dict[str, Any]) -> None:
        failed = [c["text"] for c in result["checks"] if not c["ok"]]
        self.plan.show_state(result["plan"])
        self.plan.show_preflight(result["ok"], failed)
        self.preflight_result = result
        if not result["ok"]:
            self.message("Pre-flight check failed", "\n\n".join(failed))

    def _on_shutdown(self, _result: Any) -> None:
        self._finish_close()

    # -- the clock of the window ----------------------------------------------------------------------
    def refresh_status(self) -> None:
        if self.feed is None or self.rig is None:
            return
        statuses = self.feed.status_snapshot()
        now = pylsl.local_clock()
        if self.recording:  # each camera's drop count at the take's start: its first status wholly inside the take
            for device, (status, at) in statuses.items():
                if device not in self.drops_at_start and at > self.recording["started_lsl"] + 1.0:
                    self.drops_at_start[device] = int(status.get("drops", 0))
        rows = device_rows(device_kinds(self.rig), statuses, now, self.stopped_devices)
        self.rig_panel.show_rows(rows)
        self._report_never_connected(statuses, rows, now)
        disk = self.feed.disk_snapshot()
        low = int(self.rig.recorder.min_free_disk_mb * 1e6 * LOW_DISK_FACTOR)
        in_take = self.recording is not None and self.busy != "stop_take"  # drops while stopping are not the take's
        self.banner.raise_alarms(alarms(rows, self.drops_at_start, camera_ids(self.rig), disk.free_bytes,
                                        disk.rate_bytes_s, low, in_take))
        free = human_bytes(disk.free_bytes)
        if self.recording and self.busy != "stop_take":
            elapsed = now - self.recording["started_lsl"]
            self.elapsed.setText(clock_text(elapsed))
            left = f"{clock_text(disk.free_bytes / disk.rate_bytes_s)} left" if disk.rate_bytes_s > 0 else "measuring"
            target = f" of {self.auto_stop_s:g} s" if self.auto_stop_s else ""
            self.numbers.setText(f"{elapsed:5.1f} s{target}   file {human_bytes(disk.take_bytes)}   "
                                 f"disk {free} free, {left}")
        elif not self.recording:
            self.numbers.setText(f"disk {free} free")

    def _report_never_connected(self, statuses: dict[str, tuple[dict, float]], rows: list, now: float) -> None:
        """A device whose driver runs but which has not connected since the rig started: say so once."""
        self.seen_connected |= {d for d, (s, _) in statuses.items() if s.get("connected")}
        if self.rig_ready_at is None or now - self.rig_ready_at < NEVER_CONNECTED_S:
            return
        for row in rows:
            if row.device in self.seen_connected or row.device in self.never_reported or row.state == "stopped":
                continue
            self.never_reported.add(row.device)
            self.message(f"{row.device} never appeared",
                         f"{row.device} has not connected since the rig started: {row.error or 'no status'}. "
                         "Check that it is switched on, charged and plugged in (the port or address in the rig "
                         "file), then Restart it in the rig panel. Takes record the devices that are there.")

    def _update_buttons(self) -> None:
        idle = self.rig_ready and not self.recording and not self.busy
        self.record_button.setEnabled(idle)
        self.stop_button.setEnabled(bool(self.recording) and not self.busy)
        self.mark_button.setEnabled(bool(self.recording) and not self.busy)
        self.note_button.setEnabled(bool(self.recording) and not self.busy)
        self.elapsed.setStyleSheet("font-size: 22pt; font-weight: bold; font-family: monospace; color: %s;"
                                   % ("#c62828" if self.recording else "#444"))

    # -- dialogs ---------------------------------------------------------------------------------------
    def _open_dialog(self, dialog: QWidget) -> None:
        self.dialogs.append(dialog)
        dialog.open()

    def message(self, title: str, text: str) -> None:
        """A non-blocking dialog that names the problem; the console stays usable behind it."""
        log.warning("%s: %s", title, text)
        box = QMessageBox(QMessageBox.Icon.Warning, title, text, QMessageBox.StandardButton.Ok, self)
        box.setWindowModality(Qt.WindowModality.NonModal)  # Stop and the keys keep working behind it
        self.dialogs.append(box)
        box.show()

    def show_help(self) -> None:
        rows = "".join(f"<tr><td><b>{k}</b>&nbsp;&nbsp;</td><td>{d}</td></tr>" for k, d, _ in SHORTCUTS)
        box = QMessageBox(QMessageBox.Icon.Information, "Keyboard shortcuts", f"<table>{rows}</table>",
                          QMessageBox.StandardButton.Ok, self)
        self._open_dialog(box)

    # -- closing ---------------------------------------------------------------------------------------
    def closeEvent(self, event: QCloseEvent) -> None:  # noqa: N802 - Qt's name
        if self.closing:
            event.accept()
            return
        event.ignore()
        if self.recording or self.busy in ("start_take", "stop_take"):
            box = QMessageBox(QMessageBox.Icon.Question, "A take is recording",
                              "Stop the take, keep it, and close the console?",
                              QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.No, self)
            box.buttonClicked.connect(lambda b: box.standardButton(b) == QMessageBox.StandardButton.Yes
                                      and self._close_after_take())
            self._open_dialog(box)
            return
        self._shutdown()

    def _close_after_take(self) -> None:
        self.close_when_idle = True
        if self.recording and not self.busy:
            self.stop()  # the take is kept; shutdown follows when it is stopped

    def _shutdown(self) -> None:
        if self.worker is None:
            self._finish_close()
            return
        if self.feed is not None:
            self.feed.stop()  # first: its inlets would otherwise chase the vanishing outlets
        self.statusBar().showMessage("Stopping the rig...")
        self.setEnabled(False)
        self._request("shutdown")

    def _finish_close(self) -> None:
        for t in (self.plot_timer, self.preview_timer, self.status_timer):
            t.stop()
        if self.feed is not None:
            self.feed.stop()
        if self.thread_ is not None:
            self.thread_.quit()
            self.thread_.wait(10000)
        for d in self.dialogs:  # an open message is a window of its own: it would keep the application alive
            d.close()
        self.closing = True
        # not close() here: called from closeEvent (no rig to stop), a nested close is ignored and the window
        # stayed open (Ctrl-C did nothing)
        QTimer.singleShot(0, self.close)
