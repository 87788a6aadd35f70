"""The console's hands: a QObject on its own thread that owns the RigController, the session and the
visit plan. The window asks by name (`call(name, args)`) and hears back through `done` or `failed`;
nothing here ever runs on the GUI thread.

The thread lives as long as the console: the rig's child processes die with the thread that spawned
them (PR_SET_PDEATHSIG), so every start and restart happens here.
"""

from __future__ import annotations

import logging
import shutil
import time
import traceback
from pathlib import Path
from typing import Any

from PyQt6.QtCore import QObject, QThread, QTimer, pyqtSignal, pyqtSlot

from acquisition.config import Rig, TakeInfo
from acquisition.console import preflight
from acquisition.inspect import inspect_take, summary_line
from acquisition.plan import FLEX_PROTOCOL, ProtocolError, VisitPlan, load_protocol
from acquisition.rig import RigController, expected_streams
from acquisition.session import Session, SessionInfo
from acquisition.validate import validate_take

log = logging.getLogger(__name__)

PREFLIGHT_TAKE_S = 1.5      # between the start and the end train of the test take
DEFAULT_TAKE_S = 10.0       # a step without a duration, for the disk estimate


def on_own_thread(obj: QObject, name: str) -> QThread:
    """Move a QObject to a new thread of its own, named for diagnostics, and start it: its slots run there
    when signals from the GUI thread reach them."""
    thread = QThread()
    thread.setObjectName(name)
    obj.moveToThread(thread)
    thread.start()
    return thread


class WorkerError(RuntimeError):
    """A request the worker refuses; the message is for the operator."""


class RigWorker(QObject):
    done = pyqtSignal(str, object)     # (request, result)
    failed = pyqtSignal(str, str)      # (request, what went wrong, for a dialog)
    notice = pyqtSignal(str, object)   # unasked: ("take_stopping", reason)

    def __init__(self, rig: Rig, sessions_dir: Path) -> None:
        super().__init__()
        self.rig = rig
        self.sessions_dir = Path(sessions_dir)
        self.ctl: RigController | None = None
        self.session: Session | None = None
        self.plan: VisitPlan | None = None
        self._watch: QTimer | None = None

    @pyqtSlot(str, object)
    def call(self, name: str, args: object) -> None:
        try:
            result = getattr(self, f"do_{name}")(**(args or {}))
        except Exception as exc:
            if not isinstance(exc, WorkerError | ProtocolError | ValueError):
                log.error("%s failed:\n%s", name, traceback.format_exc())
            self.failed.emit(name, str(exc) or type(exc).__name__)
            return
        self.done.emit(name, result)

    # -- the rig ------------------------------------------------------------------------------------
    def do_start_rig(self) -> dict[str, Any]:
        if self.ctl is not None:  # a retry after a failed start: stop what the first attempt started
            self.ctl.close()
        self.ctl = RigController(self.rig, self.sessions_dir)
        missing = self.ctl.start()
        self._watch = QTimer(self)  # the recorder may stop a take itself (disk full): finish it here
        self._watch.timeout.connect(self._check_stop_requested)
        self._watch.start(200)
        return {"missing": missing, "camera_problems": self.ctl.camera_problems()}

    def _controller(self) -> RigController:
        if self.ctl is None or self.ctl.recorder is None:
            raise WorkerError("the rig is not running yet")
        return self.ctl

    def do_device(self, action: str, device: str) -> dict[str, Any]:
        sup = self._controller().supervisor
        if action == "connect":
            sup.start_device(device)
        elif action == "disconnect":
            sup.stop_device(device)
        elif action == "restart":
            sup.restart_device(device)
        else:
            raise WorkerError(f"unknown device action {action!r}")
        return {"action": action, "device": device}

    def do_shutdown(self) -> dict[str, Any]:
        result = None
        if self.ctl is not None:
            if self.ctl.active is not None:
                result = self.do_stop_take()
            self.ctl.close()
            self.ctl = None
        if self._watch is not None:
            self._watch.stop()
        return {"take": result}

    # -- the session and its plan ------------------------------------------------------------------
    def do_open_session(self, subject: str, info: dict[str, str], protocol: str | None) -> dict[str, Any]:
        if self.ctl is not None and self.ctl.active is not None:
            raise WorkerError("a take is recording: stop it before opening another session")
        TakeInfo(subject=subject, action="x", repetition=1)  # the subject id's rules, with their message
        proto = load_protocol(protocol) if protocol else None
        session = Session(self.sessions_dir, subject, self.rig, info.get("operator", ""))
        if proto is None and "plan" not in session.data:
            proto = load_protocol(FLEX_PROTOCOL)
        plan = VisitPlan(session, proto)
        stored = session.info().model_dump()
        session.update_info(SessionInfo.model_validate({k: info.get(k) or v for k, v in stored.items()}))
        self.session, self.plan = session, plan
        return self.plan_state()

    def _plan(self) -> VisitPlan:
        if self.plan is None or self.session is None:
            raise WorkerError("no session is open: enter the subject first (Session...)")
        self.session.reload()  # the rig's own Session object records each take
        return self.plan

    def plan_state(self) -> dict[str, Any]:
        plan = self._plan()
        session = plan.session
        steps = []
        for step in plan.steps:
            takes = [{"take": t["take"], "bad": bool(t.get("bad")), "sync": (t.get("sync") or {}).get("level")}
                     for t in plan.takes_of(step)]
            steps.append({"action": step.action, "repetition": step.repetition, "duration_s": step.duration_s,
                          "description": step.description, "done": plan.done(step), "takes": takes})
        nxt = plan.next_step()
        done, total = plan.progress()
        return {"session": session.name, "path": str(session.path), "subject": session.data["subject"],
                "protocol": plan.protocol.name, "info": session.info().model_dump(), "steps": steps,
                "next": None if nxt is None else plan.steps.index(nxt), "progress": [done, total],
                "last_take": next((t["take"] for t in reversed(session.data["takes"])
                                   if t.get("action") != preflight.PREFLIGHT_ACTION), None),
                "preflight": session.data.get("preflight")}

    def do_plan_state(self) -> dict[str, Any]:
        return self.plan_state()

    def do_mark_bad(self, take: str, reason: str) -> dict[str, Any]:
        if self.ctl is not None and self.ctl.active is not None:
            raise WorkerError(f"a take is recording: mark {take} bad once it has stopped")
        self._plan().mark_bad(take, reason)
        return self.plan_state()

    # -- takes --------------------------------------------------------------------------------------
    def do_start_take(self, action: str, repetition: int) -> dict[str, Any]:
        ctl = self._controller()
        plan = self._plan()
        info = plan.session.info()
        active = ctl.start_take(TakeInfo(subject=plan.session.data["subject"], action=action,
                                         repetition=repetition, operator=info.operator))
        return {"take": active.path.name, "path": str(active.path), "started_lsl": active.started_lsl,
                "problems": list(active.problems), "action": action, "repetition": repetition}

    def do_stop_take(self) -> dict[str, Any]:
        result = self._controller().stop_take()
        try:
            line = summary_line(inspect_take(result.path))
        except Exception as exc:  # the take is on disk; say why it cannot be summarised
            line = f"cannot inspect: {exc}"
        problems = validate_take(result.path)
        out = {"take": result.path.name, "path": str(result.path), "sync": result.sync,
               "duration_s": result.stopped_lsl - result.started_lsl,
               "problems": result.problems, "summary": line, "invalid": problems}
        if self.plan is not None:
            out["plan"] = self.plan_state()
        return out

    def do_mark(self, text: str, stamp: float) -> dict[str, Any]:
        try:
            return {"text": text, "stamp": self._controller().mark(text, stamp)}
        except Exception as exc:  # say what was not stored, so the operator can note it elsewhere
            raise WorkerError(f"{exc}. The mark was: {text!r}") from exc

    def _check_stop_requested(self) -> None:
        ctl = self.ctl
        if ctl is not None and ctl.active is not None and ctl.stop_requested.is_set():
            self.notice.emit("take_stopping", ctl.stop_reason)
            self.call("stop_take", {})

    # -- pre-flight -----------------------------------------------------------------------------------
    def do_preflight(self, statuses: dict[str, tuple[dict[str, Any], float]], now: float) -> dict[str, Any]:
        ctl = self._controller()
        plan = self._plan()
        if ctl.active is not None:
            raise WorkerError("a take is recording: run the pre-flight check between takes")
        devices = [d.id for d in self.rig.enabled_devices()]
        checks = preflight.check_devices(devices, statuses, now)
        data_streams = [s["stream_id"] for s in expected_streams(self.rig) if not s["stream_id"].endswith("_status")]
        checks += preflight.check_clocks(statuses.get("recorder", ({}, 0))[0], data_streams)
        cameras = ctl.supervisor.camera_ids()
        emg = [d.id for d in self.rig.enabled_devices() if d.kind == "emg"]
        take_dir, rate = None, 0.0
        if self.rig.trigger_id() is None:
            checks.append(preflight.Check("test sync pulse", False, "the rig has no trigger box: add one to the "
                                          "rig file ([[devices]] kind = \"trigger\") to line the streams up"))
        else:
            n = sum(t.get("action") == preflight.PREFLIGHT_ACTION for t in plan.session.data["takes"])
            ctl.start_take(TakeInfo(subject=plan.session.data["subject"], action=preflight.PREFLIGHT_ACTION,
                                    repetition=n + 1, operator=plan.session.info().operator))
            time.sleep(PREFLIGHT_TAKE_S)
            result = ctl.stop_take()
            take_dir = result.path
            checks += preflight.check_sync(take_dir, emg, cameras, result.sync)
            size = sum(p.stat().st_size for p in take_dir.glob("*.h5"))
            rate = size / max(result.stopped_lsl - result.started_lsl, 1e-3)
        remaining = [s for s in plan.steps if not plan.done(s)]
        seconds = sum(s.duration_s or DEFAULT_TAKE_S for s in remaining)
        if rate > 0:
            free = shutil.disk_usage(self.sessions_dir).free
            checks.append(preflight.check_disk(free, rate, seconds, len(remaining),
                                               int(self.rig.recorder.reserve_disk_mb * 1e6), self.sessions_dir))
        ok = all(c.ok for c in checks)
        plan.session.reload()
        plan.session.data["preflight"] = {"ok": ok, "take": take_dir.name if take_dir else None,
                                          "failed": [c.text for c in checks if not c.ok]}
        plan.session.save()
        return {"ok": ok, "checks": [c.as_dict() for c in checks], "take": take_dir.name if take_dir else None,
                "plan": self.plan_state()}


def device_kinds(rig: Rig) -> list[tuple[str, str]]:
    return [(d.id, d.kind) for d in rig.enabled_devices()]
