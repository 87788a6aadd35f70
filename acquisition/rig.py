"""The one Python API that drives the rig: the CLI uses it now; the console and the remote-control
socket will use it too.

    with RigController(rig) as ctl:
        ctl.start()                          # driver processes + recorder process, streams connected
        result = ctl.record(TakeInfo(...), duration=10)
"""

from __future__ import annotations

import json
import logging
import shutil
import subprocess
import sys
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pylsl

from acquisition import __version__
from acquisition.config import Rig, TakeInfo
from acquisition.lslconfig import apply_lsl_settings
from acquisition.recorder import recorder_status_spec
from acquisition.session import Session, utc_now_iso
from acquisition.supervisor import Supervisor
from acquisition.takefile import TAKE_FILE, TRUTH_FILE
from calibration.result import CALIBRATION_FILE, calibration_in_force, copy_into_take
from drivers.registry import driver_class
from drivers.runtime.driver import status_spec
from drivers.runtime.process import ChildError, ChildProcess

log = logging.getLogger(__name__)


class RigControlError(RuntimeError):
    pass


@dataclass
class TakeResult:
    path: Path
    started_lsl: float
    stopped_lsl: float
    recorder: dict[str, Any]
    cameras: dict[str, Any]
    problems: list[str] = field(default_factory=list)
    sync: dict[str, Any] | None = None  # the sync controller's verdict (acquisition.sync), when it ran


@dataclass
class ActiveTake:
    take: TakeInfo
    session: Session
    path: Path
    started_lsl: float
    started_at: str
    problems: list[str] = field(default_factory=list)


def expected_streams(rig: Rig) -> list[dict[str, str]]:
    """{source_id, stream_id} of every stream the rig publishes: its devices' and the recorder's status."""
    out = []
    for dev in rig.enabled_devices():
        ctx = rig.context(dev.id)
        for spec in [*driver_class(dev.kind).stream_specs(ctx), status_spec(ctx)]:
            out.append({"source_id": spec.source_id, "stream_id": spec.stream_id})
    spec = recorder_status_spec(rig.name)  # the recorder records its own status: offsets, round trips
    out.append({"source_id": spec.source_id, "stream_id": spec.stream_id})
    return out


class RigController:
    def __init__(self, rig: Rig, sessions_dir: str | Path | None = None) -> None:
        self.rig = rig
        self.sessions_dir = Path(sessions_dir or rig.sessions_dir)
        apply_lsl_settings(rig.lsl)  # before any outlet or inlet, here and in every child
        self.supervisor = Supervisor(rig, on_event=self._on_event)
        self.recorder: ChildProcess | None = None
        self.active: ActiveTake | None = None
        self.stop_requested = threading.Event()
        self.stop_reason = ""
        self.recorder_stop_lsl: float | None = None

    # -- lifecycle ----------------------------------------------------------------------------------
    def __enter__(self) -> RigController:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def start(self, wait_s: float | None = None) -> list[str]:
        """Start every driver and the recorder; return the stream ids that did not appear in time."""
        self.supervisor.start()
        settings = json.dumps(self.rig.recorder.model_dump())
        self.recorder = ChildProcess("recorder", ["_recorder", "--settings", settings, "--rig-name", self.rig.name],
                                     on_event=self._on_event)
        self.recorder.request("connect", streams=expected_streams(self.rig))
        wait = self.rig.recorder.stream_wait_s if wait_s is None else wait_s
        return self.recorder.request("wait_connected", timeout=wait + 5, wait_s=wait)

    def close(self) -> None:
        if self.active is not None:
            try:
                self.stop_take()
            except Exception as exc:  # keep shutting down; the take keeps what was flushed
                log.error("stopping the take at shutdown failed: %s", exc)
        if self.recorder is not None:
            self.recorder.stop(timeout=10)
            self.recorder = None
        self.supervisor.stop()

    def _on_event(self, source: str, msg: dict[str, Any]) -> None:
        if msg.get("event") in ("take_stopping", "take_failed"):
            self.stop_reason = msg.get("reason") or msg.get("error") or msg["event"]
            self.recorder_stop_lsl = msg.get("stop_lsl")  # the recorder fixed the take's end itself
            log.error("%s: %s", source, self.stop_reason)
            self.stop_requested.set()

    # -- takes --------------------------------------------------------------------------------------
    def start_take(self, take: TakeInfo) -> ActiveTake:
        if self.recorder is None:
            raise RigControlError("the rig is not started")
        if self.active is not None:
            raise RigControlError(f"a take is already recording: {self.active.path}")
        session = Session(self.sessions_dir, take.subject, self.rig, take.operator)
        path = session.next_take_dir(take)
        cameras = self.supervisor.camera_ids()
        started_at = utc_now_iso()
        start_lsl = pylsl.local_clock()
        attrs = {"session": session.name, "take": path.name, "subject": take.subject, "action": take.action,
                 "repetition": take.repetition, "operator": take.operator, "started_at": started_at,
                 "flexcap_version": __version__, "rig": self.rig.snapshot()}
        self.stop_requested.clear()
        self.stop_reason = ""
        self.recorder_stop_lsl: float | None = None
        try:
            self.recorder.request("start", timeout=30, path=str(path / TAKE_FILE), attrs=attrs,
                                  cameras={c: f"{c}.h5" for c in cameras}, start_lsl=start_lsl)
        except ChildError as exc:
            try:
                path.rmdir()  # nothing was recorded: leave no empty take behind
            except OSError:
                log.warning("%s was not removed: it is not empty", path)
            raise RigControlError(f"the take did not start: {exc}") from exc
        self.active = ActiveTake(take, session, path, start_lsl, started_at)
        clip = f"{session.name}_{path.name}"  # the cameras' internal clips are named after the take
        replies = self.supervisor.request_each(
            {c: {"path": str(path / f"{c}.h5"), "start_lsl": start_lsl, "clip": clip} for c in cameras},
            "start_recording", 15)
        for cam, reply in replies.items():
            if isinstance(reply, Exception):
                self.active.problems.append(f"{cam} is not recording frames: {reply}")
            else:
                self.active.problems.extend(reply.get("problems", []))
        if self.rig.sync.start_train:
            self._fire("take_start")
        if self.rig.sync.every_s:
            self._trigger_request("periodic", every_s=self.rig.sync.every_s)
        for problem in self.active.problems:
            log.error("%s", problem)
        return self.active

    # -- the sync controller's pulses ------------------------------------------------------------------
    def _trigger_request(self, cmd: str, timeout: float = 5.0, **args: Any) -> Any:
        trigger = self.rig.trigger_id()
        if trigger is None or self.active is None:
            return None
        try:
            return self.supervisor.request(trigger, cmd, timeout, **args)
        except (ChildError, KeyError) as exc:
            self.active.problems.append(f"{trigger}: {cmd} failed: {exc}")
            log.error("%s: %s failed: %s", trigger, cmd, exc)
            return None

    def _fire(self, label: str) -> dict[str, Any] | None:
        """Fire a coded train; at the end of a take, wait until it is over and every device has seen it."""
        fired = self._trigger_request("fire", label=label)
        if fired is None or label != "take_end":
            return fired
        done = self._trigger_request("wait_train", timeout=fired["length_s"] + 5, train=fired["train"])
        if done is not None and not done["complete"]:
            self.active.problems.append(f"the end train was not completed: {done.get('refused')}")
        self.stop_requested.wait(self.rig.sync.settle_s)  # the slowest device's latency
        return fired

    def camera_problems(self) -> list[str]:
        """Cameras that cannot record right now (card full, control unreachable), asked before a take."""
        problems = []
        for cam, state in self.supervisor.request_each({c: {} for c in self.supervisor.running_cameras()},
                                                       "check", 10).items():
            if isinstance(state, Exception):
                problems.append(f"{cam}: no answer to the readiness check: {state}")
            elif not state.get("ready", True):
                problems.append(f"{cam}: cannot record: {state.get('problem')}")
        return problems

    def status(self) -> dict[str, Any]:
        assert self.recorder is not None
        return self.recorder.request("status")

    def mark(self, text: str, stamp: float | None = None) -> float:
        """An operator event in the recording take (/markers/events); returns its time stamp."""
        if self.recorder is None or self.active is None:
            raise RigControlError("no take is recording: a mark belongs to a take")
        try:
            return self.recorder.request("mark", text=text, stamp=stamp)["stamp"]
        except ChildError as exc:
            raise RigControlError(f"the mark was not stored: {exc}") from exc

    def stop_take(self) -> TakeResult:
        active = self.active
        if active is None or self.recorder is None:
            raise RigControlError("no take is recording")
        recorder = self.recorder
        if self.recorder_stop_lsl is None:  # the recorder still records: mark the end for the sync controller
            if self.rig.sync.every_s:
                self._trigger_request("periodic", every_s=None)
            if self.rig.sync.end_train:
                self._fire("take_end")
        cams = {c: {} for c in self.supervisor.running_cameras()}
        # the cameras' own recordings stop first, so their stop replies and timecodes are in the take
        for cam, reply in self.supervisor.request_each(cams, "stop_control", 10).items():
            if isinstance(reply, Exception):
                active.problems.append(f"{cam}: {reply}")
            else:
                active.problems.extend(reply.get("problems", []))
        # the frames end where the take ends: at the recorder's own stop time if it stopped itself
        stop_lsl = self.recorder_stop_lsl if self.recorder_stop_lsl is not None else pylsl.local_clock()
        with ThreadPoolExecutor(max_workers=1) as pool:  # the recorder drains while the cameras close
            rec_future = pool.submit(recorder.request, "stop", 60, stop_lsl=stop_lsl)
            cameras: dict[str, Any] = {}
            for cam, reply in self.supervisor.request_each({c: {"stop_lsl": stop_lsl} for c in cams},
                                                           "stop_recording", 15).items():
                if isinstance(reply, Exception):
                    active.problems.append(f"{cam}: {reply}")
                else:
                    cameras[cam] = reply
                    active.problems.extend(reply.get("problems", []))
            try:
                summary = rec_future.result()
            except ChildError as exc:
                active.problems.append(f"recorder: {exc}")
                summary = {}
        self.active = None
        stopped = summary.get("stopped_lsl", stop_lsl)
        for sid, info in summary.get("streams", {}).items():
            if not info["drained"]:
                active.problems.append(f"{sid}: no sample after the stop time arrived in time (device stalled?); "
                                       "its last moments may be missing")
        for cam, info in cameras.items():
            if not info.get("drained", True):
                active.problems.append(f"{cam}: no frame after the stop time arrived in time (camera stalled?)")
        if self.stop_reason:
            active.problems.append(self.stop_reason)
        self._write_truth(active.path)
        self._copy_calibration(active.path, active.problems)
        sync = self.align(active.path) if self.rig.sync.align_after_take else None
        if sync and sync.get("latency_ms"):
            try:  # the live latency of devices without a trigger input, until the next take
                recorder.request("set_latencies", take=active.path.name,
                                 latency_s={k: v / 1e3 for k, v in sync["latency_ms"].items()})
            except ChildError as exc:
                log.warning("the recorder did not take the measured latencies: %s", exc)
        active.session.record_take({
            "take": active.path.name, "action": active.take.action, "repetition": active.take.repetition,
            "started_at": active.started_at, "duration_s": round(stopped - active.started_lsl, 3),
            "status": "ok" if not active.problems else "problems", "problems": active.problems, "sync": sync,
        })
        return TakeResult(active.path, active.started_lsl, stopped, summary, cameras, active.problems, sync)

    @staticmethod
    def _copy_calibration(take_dir: Path, problems: list[str]) -> None:
        """The calibration in force goes into the take (/calibration), so a take carries it: the session's,
        or the newest accepted in the sessions folder, which then becomes the session's."""
        cal = calibration_in_force(take_dir.parent)
        if cal is None:
            return
        try:
            if cal.parent != take_dir.parent:
                shutil.copy2(cal, take_dir.parent / CALIBRATION_FILE)
                log.info("%s: the calibration in force is %s", take_dir.parent.name, cal)
            left_out = copy_into_take(cal, take_dir / TAKE_FILE) or []
        except (OSError, ValueError, KeyError) as exc:
            problems.append(f"the calibration ({cal}) was not copied into the take: {exc}")
            return
        problems.extend(f"calibration not copied for {what}" for what in left_out)

    @staticmethod
    def align(take_dir: Path, timeout_s: float = 600.0) -> dict[str, Any]:
        """Run the sync controller on a finished take: its verdict ({level, text}) and the latency it
        measured per aligned stream. It runs in a child process (`flexcap sync TAKE --json`): decoding
        frames and fitting must not hold this process's interpreter (the console's event loop), and a
        crash there must not take the controller with it. Never raises: a take that cannot be aligned
        keeps its LSL-corrected stamps and says why."""
        cmd = [sys.executable, "-m", "acquisition.cli", "sync", str(take_dir), "--json"]
        try:
            done = subprocess.run(cmd, capture_output=True, text=True, errors="replace", timeout=timeout_s)
        except subprocess.TimeoutExpired:
            return {"level": "red", "text": f"alignment did not finish within {timeout_s:g} s (run flexcap sync)"}
        except OSError as exc:  # could not start the child (no memory, no file handles)
            return {"level": "red", "text": f"alignment did not start: {exc} (run flexcap sync)"}
        if done.stderr.strip():
            log.warning("aligning %s: %s", take_dir, done.stderr.strip())
        try:
            report = json.loads(done.stdout)
            latency = {r["stream"]: r["latency_ms"] for r in report["streams"]
                       if r["kind"] in ("emg", "camera", "ecg") and r["latency_ms"] is not None}
            return {"level": report["verdict"], "text": report["text"], "latency_ms": latency}
        except (ValueError, KeyError, TypeError):  # the take is safe on disk; alignment can be run again
            last = (done.stderr.strip().splitlines() or [f"exit code {done.returncode}"])[-1]
            return {"level": "red", "text": f"alignment failed: {last} (run flexcap sync)"}

    def _write_truth(self, take_dir: Path) -> None:
        sources = self.supervisor.truth_sources()
        if not sources or self.rig.sim is None:
            return
        devices: dict[str, Any] = {}
        for child in sources:
            try:
                for device, facts in child.request("truth").items():  # a driver and its emulator may both know
                    devices.setdefault(device, {}).update(facts)
            except ChildError as exc:
                log.warning("no truth from %s: %s", child.name, exc)
        truth = {"generated_by": f"flexcap {__version__} simulated lab", "clock": "pylsl.local_clock() on this host",
                 "sim": self.rig.sim.model_dump(), "devices": devices}
        (take_dir / TRUTH_FILE).write_text(json.dumps(truth, indent=2))

    def record(self, take: TakeInfo, duration: float,
               progress: Callable[[float, dict[str, Any]], None] | None = None) -> TakeResult:
        """Record one take of `duration` seconds (stops early on Ctrl-C or when the recorder must)."""
        active = self.start_take(take)
        try:
            end = active.started_lsl + duration
            while not self.stop_requested.is_set():
                now = pylsl.local_clock()
                if now >= end:
                    break
                self.stop_requested.wait(min(1.0, end - now))
                if progress is not None:
                    progress(pylsl.local_clock() - active.started_lsl, self.status())
        except KeyboardInterrupt:
            active.problems.append("stopped early by the operator (Ctrl-C)")
        return self.stop_take()

