"""Remote record control for cameras that record internally (cinema cameras with their own media).

flexcap does not receive these cameras' pixels; it tells each camera to roll and stop and logs *when*
it did so on the LSL clock, together with the camera's own timecode, so the clips on the card can be
placed on the take's time line afterwards. `RecordControl` is the one interface; each camera family is a
subclass registered by URL scheme in CONTROL_SCHEMES (Blackmagic now; Z CAM HTTP, Canon CCAPI or a
phone app can register theirs the same way).

Blackmagic: the Camera Control REST API (HTTP/JSON under /control/api/v1) plus its WebSocket of
property events (PROTOCOLS.md 5.1).
"""

from __future__ import annotations

import http.client
import json
import logging
import socket
import threading
import time
from abc import ABC, abstractmethod
from collections import deque
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any
from urllib.parse import urlsplit

import pylsl
from websockets.exceptions import WebSocketException
from websockets.sync.client import ClientConnection, connect

from drivers.camera.timecode import Timecode

log = logging.getLogger(__name__)


class ControlError(RuntimeError):
    """A camera did not do what it was asked; the message names the camera and the problem."""


@dataclass
class ControlEvent:
    """One control action as logged on the marker stream.

    request_lsl/reply_lsl bracket the command (for pushed events both are the arrival time): the camera
    acted somewhere in between, so their difference is the uncertainty of the logged time.
    """

    action: str  # "record_start", "record_stop", "check" or "property"
    request_lsl: float
    reply_lsl: float
    timecode: str | None = None
    timecode_raw: int | None = None
    clip: str | None = None
    detail: dict[str, Any] = field(default_factory=dict)

    def to_marker(self) -> str:
        """One JSON line for an LSL string marker; sorted keys so identical events give identical text."""
        return json.dumps(asdict(self), sort_keys=True, default=str)


class RecordControl(ABC):
    """Start/stop recording on a camera that records to its own media."""

    url: str

    @abstractmethod
    def check(self) -> dict[str, Any]:
        """Readiness before a take: {"ready": bool, "problem": str | None, ...camera facts}.

        Raises ControlError when the camera cannot be reached (that is not a 'not ready' answer)."""

    @abstractmethod
    def start(self, clip_name: str) -> list[ControlEvent]:
        """Roll; returns the events to log. Raises ControlError if the camera is not recording after."""

    @abstractmethod
    def stop(self) -> list[ControlEvent]:
        """Stop rolling; returns the events to log."""

    def subscribe_events(self) -> None:  # noqa: B027 - optional hook: cameras without a push channel
        """Start receiving the camera's pushed property events (for poll_events)."""

    def poll_events(self) -> list[ControlEvent]:
        """Events the camera pushed since the last call (cameras without a push channel have none)."""
        return []

    def close(self) -> None:  # noqa: B027 - optional hook: controls without connections need nothing
        """Release connections and threads."""

    def __enter__(self) -> RecordControl:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def control_from_url(url: str, timeout_s: float = 2.0) -> RecordControl:
    """The RecordControl for `url`, chosen by its scheme (blackmagic://host:port, ...)."""
    scheme = urlsplit(url).scheme.lower()
    factory = CONTROL_SCHEMES.get(scheme)
    if factory is None:
        known = ", ".join(f"{name}://" for name in sorted(CONTROL_SCHEMES))
        raise ValueError(f"camera control URL {url!r}: unknown scheme {scheme!r} (known: {known})")
    return factory(url, timeout_s)


API_PATH = "/control/api/v1"
RECORD = "/transports/0/record"
TIMECODE = "/transports/0/timecode"
WORKINGSET = "/media/workingset"
EVENT_PROPERTIES = (RECORD, WORKINGSET)
EVENT_QUEUE_MAX = 10_000  # nobody polling must not grow memory without bound
WS_RECV_POLL_S = 0.2  # how often the event thread looks at the close flag


@dataclass
class _Reply:
    status: int
    body: Any
    request_lsl: float
    reply_lsl: float


class BlackmagicControl(RecordControl):
    """Blackmagic Camera Control REST API over one persistent HTTP connection, plus its event WebSocket.

    events=True subscribes to property events at once; otherwise the first poll_events() does.
    start_settle_s bounds how long start() re-reads the record state before calling the start failed.
    """

    def __init__(self, url: str, timeout_s: float = 2.0, *, events: bool = False,
                 start_settle_s: float = 0.5) -> None:
        parts = urlsplit(url)
        if parts.scheme.lower() != "blackmagic" or not parts.hostname:
            raise ValueError(f"not a Blackmagic camera URL: {url!r} (expected blackmagic://host[:port])")
        self.url = url
        self.host = parts.hostname
        self.port = parts.port or 80
        netloc = f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"
        self.http_base = f"http://{netloc}{API_PATH}"
        self.ws_url = f"ws://{netloc}{API_PATH}/event/websocket"
        self.timeout_s = float(timeout_s)
        self.start_settle_s = start_settle_s
        self._name = f"blackmagic http://{netloc}"
        self._conn: http.client.HTTPConnection | None = None
        self._http_lock = threading.Lock()
        self._clip: str | None = None
        # None until the event thread knows; False: the camera has no usable WebSocket (not an error)
        self.events_available: bool | None = None
        self.events_problem: str | None = None
        self.property_values: dict[str, Any] = {}
        self._events: deque[ControlEvent] = deque(maxlen=EVENT_QUEUE_MAX)
        self._events_known = threading.Event()
        self._closing = threading.Event()
        self._ws_thread: threading.Thread | None = None
        self._ws_lock = threading.Lock()
        if events:
            self.subscribe_events()

    # ---- REST ----

    def _request(self, method: str, path: str, body: dict[str, Any] | None = None, expect: int = 200) -> _Reply:
        what = f"{method} {path}"
        data = None if body is None else json.dumps(body).encode()
        headers = {"Accept": "application/json"}
        if data is not None:
            headers["Content-Type"] = "application/json"
        with self._http_lock:
            for attempt in range(2):
                fresh = self._conn is None
                if self._conn is None:
                    self._conn = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout_s)
                try:
                    request_lsl = pylsl.local_clock()
                    self._conn.request(method, API_PATH + path, body=data, headers=headers)
                    response = self._conn.getresponse()
                    reply_lsl = pylsl.local_clock()  # status line and headers are in: the camera has answered
                    raw = response.read()
                    break
                except TimeoutError:
                    # the late reply would otherwise be read as the answer to the next request
                    self._drop_connection()
                    raise ControlError(f"{self._name}: {what} timed out after {self.timeout_s} s") from None
                except (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError) as exc:
                    # a kept-alive connection the camera closed while idle: the request never got in,
                    # so one retry on a new connection cannot act twice
                    self._drop_connection()
                    if fresh or attempt:
                        raise ControlError(f"{self._name}: {what} failed: connection lost ({exc})") from exc
                except ConnectionRefusedError as exc:
                    self._drop_connection()
                    raise ControlError(f"{self._name}: {what} failed: cannot connect ({exc})") from exc
                except (OSError, http.client.HTTPException) as exc:
                    self._drop_connection()
                    raise ControlError(f"{self._name}: {what} failed: {exc!r}") from exc
        text = raw.decode("utf-8", "replace")
        if response.status != expect:
            snippet = f": {text[:200]}" if text else ""
            raise ControlError(f"{self._name}: {what} answered {response.status} {response.reason}{snippet}")
        try:
            parsed = json.loads(text) if text.strip() else None
        except ValueError:
            raise ControlError(f"{self._name}: {what} answered invalid JSON: {text[:200]!r}") from None
        return _Reply(response.status, parsed, request_lsl, reply_lsl)

    def _get(self, path: str) -> _Reply:
        return self._request("GET", path)

    def _drop_connection(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    @staticmethod
    def _media_problem(workingset: Any) -> tuple[str | None, dict[str, Any] | None]:
        """(problem or None, the active medium) from a /media/workingset body."""
        entries = workingset.get("workingset") if isinstance(workingset, dict) else None
        if not isinstance(entries, list):
            return f"unexpected {WORKINGSET} reply {json.dumps(workingset)[:120]}", None
        active = next((e for e in entries if isinstance(e, dict) and e.get("activeDisk")), None)
        if active is None:
            return "no active media (no card or disk selected for recording)", None
        remaining = active.get("remainingRecordTime")
        name = active.get("deviceName", f"#{active.get('index', '?')}")
        if not isinstance(remaining, int | float):
            return f"media {name} reports no remainingRecordTime", active
        if remaining <= 0:
            return f"media {name} remainingRecordTime is {remaining:g} s (card full?)", active
        return None, active

    def check(self) -> dict[str, Any]:
        problem, media = self._media_problem(self._get(WORKINGSET).body)
        record = self._get(RECORD).body
        recording = bool(record.get("recording")) if isinstance(record, dict) else False
        if problem is None and recording:
            # rolling already: start() would not begin a new clip, the take would share one with the last
            problem = "camera is already recording"
        media = media or {}
        return {"ready": problem is None, "problem": problem, "recording": recording,
                "media": media.get("deviceName"), "remaining_record_s": media.get("remainingRecordTime"),
                "clip_count": media.get("clipCount")}

    def _is_recording(self) -> bool:
        body = self._get(RECORD).body
        return bool(body.get("recording")) if isinstance(body, dict) else False

    def start(self, clip_name: str) -> list[ControlEvent]:
        put = self._request("PUT", RECORD, {"recording": True, "clipName": clip_name}, expect=204)
        # 204 only means the command was accepted: the camera may still refuse to roll (card full)
        deadline = time.monotonic() + self.start_settle_s
        while not self._is_recording():
            if time.monotonic() >= deadline:
                problem, _ = self._media_problem(self._get(WORKINGSET).body)
                if problem:
                    raise ControlError(f"{self._name}: refused to record: {problem}")
                raise ControlError(f"{self._name}: did not start recording (PUT {RECORD} answered 204, "
                                   f"GET {RECORD} still says recording false)")
            time.sleep(0.05)
        self._clip = clip_name
        return [self._timecode_event("record_start", put, clip_name)]

    def stop(self) -> list[ControlEvent]:
        put = self._request("PUT", RECORD, {"recording": False}, expect=204)
        clip, self._clip = self._clip, None
        return [self._timecode_event("record_stop", put, clip)]

    def _timecode_event(self, action: str, put: _Reply, clip: str | None) -> ControlEvent:
        """The event for a record PUT, with the camera's timecode read right after it.

        The record state has already changed, so a failed timecode read is logged, not raised:
        raising would tell the caller the start failed while the camera is rolling."""
        event = ControlEvent(action, put.request_lsl, put.reply_lsl, clip=clip)
        try:
            reply = self._get(TIMECODE)
            event.detail["timecode_request_lsl"] = reply.request_lsl
            event.detail["timecode_reply_lsl"] = reply.reply_lsl
            raw = reply.body["timecode"]
            event.timecode = str(Timecode.from_bcd(raw))
            event.timecode_raw = raw
            clip_raw = reply.body.get("clip")
            if isinstance(clip_raw, int):
                event.detail["clip_timecode_raw"] = clip_raw
                event.detail["clip_timecode"] = str(Timecode.from_bcd(clip_raw))
        except (ControlError, KeyError, TypeError, AttributeError, ValueError) as exc:
            event.detail["timecode_error"] = str(exc)
        return event

    # ---- WebSocket property events ----

    def subscribe_events(self) -> None:
        """Start the event thread (once). It never raises: a camera without the WebSocket has no events."""
        with self._ws_lock:
            if self._ws_thread is not None or self._closing.is_set():
                return
            self._ws_thread = threading.Thread(target=self._event_thread, name=f"events {self._name}", daemon=True)
            self._ws_thread.start()

    def wait_events_ready(self, timeout_s: float | None = None) -> bool | None:
        """Wait until the event thread knows whether the camera pushes events; returns events_available."""
        self.subscribe_events()
        self._events_known.wait(timeout_s)
        return self.events_available

    def poll_events(self) -> list[ControlEvent]:
        self.subscribe_events()
        out: list[ControlEvent] = []
        while self._events:
            out.append(self._events.popleft())
        return out

    def _connect_ws(self) -> ClientConnection:
        # our own socket: websockets would otherwise route a LAN camera through an HTTP proxy from the environment
        sock = socket.create_connection((self.host, self.port), timeout=self.timeout_s)
        try:
            return connect(self.ws_url, sock=sock, open_timeout=self.timeout_s, close_timeout=self.timeout_s,
                           compression=None)
        except BaseException:
            sock.close()
            raise

    def _event_thread(self) -> None:
        try:
            self._event_loop()
        except Exception as exc:  # the thread must never die loudly; events just stop
            log.exception("%s: event thread failed", self._name)
            self.events_problem = f"event thread failed: {exc!r}"
            if self.events_available is None:
                self.events_available = False
        finally:
            self._events_known.set()

    def _event_loop(self) -> None:
        backoff_s = 0.5
        while not self._closing.is_set():
            try:
                ws = self._connect_ws()
            except (OSError, WebSocketException) as exc:
                if self.events_available is None:
                    # refused, 404 on upgrade, timeout: this camera (or firmware) has no event channel
                    self.events_available = False
                    self.events_problem = f"no event WebSocket at {self.ws_url}: {exc}"
                    log.info("%s: %s", self._name, self.events_problem)
                    return
                # it worked before: a dropped network, keep trying like every driver does
                self._closing.wait(backoff_s)
                backoff_s = min(backoff_s * 2, 5.0)
                continue
            backoff_s = 0.5
            with ws:
                try:
                    ws.send(json.dumps({"type": "request",
                                        "data": {"action": "subscribe", "properties": list(EVENT_PROPERTIES)}}))
                    while not self._closing.is_set():
                        try:
                            message = ws.recv(timeout=WS_RECV_POLL_S)
                        except TimeoutError:
                            continue
                        self._on_ws_message(message, pylsl.local_clock())
                except WebSocketException as exc:  # closed by the camera: reconnect
                    log.info("%s: event WebSocket closed (%s), reconnecting", self._name, exc)

    def _on_ws_message(self, message: str | bytes, arrival_lsl: float) -> None:
        try:
            msg = json.loads(message)
        except ValueError:
            log.warning("%s: event WebSocket sent non-JSON %r", self._name, message[:120])
            return
        data = msg.get("data") if isinstance(msg, dict) else None
        if not isinstance(data, dict):
            return
        if msg.get("type") == "response" and data.get("action") == "subscribe":
            values = data.get("values")
            if isinstance(values, dict):
                self.property_values.update(values)
            self.events_available = data.get("success") is not False
            if not self.events_available:
                self.events_problem = f"subscribe refused: {json.dumps(data)[:200]}"
            self._events_known.set()
        elif msg.get("type") == "event" and data.get("action") == "propertyValueChanged":
            prop, value = data.get("property"), data.get("value")
            if isinstance(prop, str):
                self.property_values[prop] = value
            self._events.append(ControlEvent("property", arrival_lsl, arrival_lsl,
                                             detail={"property": prop, "value": value}))

    def close(self) -> None:
        self._closing.set()
        thread = self._ws_thread
        if thread is not None:
            thread.join(timeout=2 * self.timeout_s + 1.0)
        with self._http_lock:
            self._drop_connection()


# scheme -> factory(url, timeout_s); other modules add theirs (e.g. CONTROL_SCHEMES["ipwebcam"] = ...)
CONTROL_SCHEMES: dict[str, Callable[[str, float], RecordControl]] = {
    "blackmagic": BlackmagicControl,
}
