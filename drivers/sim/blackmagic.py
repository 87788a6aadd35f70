"""Emulator of a Blackmagic cinema camera's Camera Control REST API and its event WebSocket.

The simulated lab's cinema cameras and the tests drive it exactly like a real camera: HTTP/JSON under
/control/api/v1 and ws://host:port/control/api/v1/event/websocket (PROTOCOLS.md 5.1). JSON shapes
follow the documentation and a real camera's subscribe dump (pybmcc notes/asyncNotes.txt).

Ground truth: the camera's time-of-day timecode at LSL time t is (t + timecode_offset_s) seconds,
counted in frames at the true rate (60000/1001 at 59.94) and labelled drop-frame at 29.97 and 59.94.
Every REST request is logged in order, so tests can assert exactly what a client sent.

The WebSocket server side (RFC 6455) is written by hand on the http.server handler: the emulator stays
one stdlib server with no extra dependency, and a test can see every frame rule it relies on.
"""

from __future__ import annotations

import base64
import hashlib
import json
import math
import socket
import struct
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

import pylsl

from drivers.camera.timecode import Timecode, nominal_fps, true_fps

API = "/control/api/v1"
WS_PATH = API + "/event/websocket"
WS_GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"  # RFC 6455 section 1.3
TIMECODE_PUSH_PERIOD_S = 0.1  # the real camera fires /transports/0/timecode very often
WS_MAX_MESSAGE = 1 << 20
DEVICE_NAME = "usb4608"
VOLUME = "X9 Pro"
TOTAL_SPACE = 2_000_263_577_600
BYTES_PER_RECORD_S = 95_350_000  # BRAW Q3 2160p60, as the real dump's remainingSpace / remainingRecordTime
CODEC = {"codec": "BRaw:Q3", "container": "BRAW"}
PROPERTIES = ("/system", "/system/format", "/transports/0", "/transports/0/record", "/transports/0/timecode",
              "/transports/0/timecode/source", "/media/workingset", "/clips/list")
MODES = ("InputPreview", "InputRecord", "Output")
UNSPECIFIED_HOSTS = ("", "0.0.0.0", "::")

# WebSocket opcodes and close codes used here
OP_CONT, OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA
CLOSE_PROTOCOL_ERROR, CLOSE_UNSUPPORTED, CLOSE_BAD_DATA, CLOSE_TOO_BIG = 1002, 1003, 1007, 1009


class _WsClient:
    """One WebSocket connection: its subscriptions and a send lock (handler and ticker threads both send)."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.subscriptions: set[str] = set()
        self._send_lock = threading.Lock()
        self.open = True

    def send_frame(self, opcode: int, payload: bytes) -> None:
        n = len(payload)
        if n < 126:
            header = struct.pack("!BB", 0x80 | opcode, n)
        elif n < 1 << 16:
            header = struct.pack("!BBH", 0x80 | opcode, 126, n)
        else:
            header = struct.pack("!BBQ", 0x80 | opcode, 127, n)
        with self._send_lock:
            if not self.open:
                return
            try:
                self.sock.sendall(header + payload)  # server frames are never masked
            except OSError:
                self.open = False

    def send_json(self, message: dict[str, Any]) -> None:
        self.send_frame(OP_TEXT, json.dumps(message).encode())

    def close(self, code: int, reason: str = "") -> None:
        self.send_frame(OP_CLOSE, struct.pack("!H", code) + reason.encode()[:120])
        self.open = False


class _ProtocolError(Exception):
    def __init__(self, code: int, reason: str) -> None:
        super().__init__(reason)
        self.code = code


def _valid_ws_key(key: str) -> bool:
    try:
        return len(base64.b64decode(key, validate=True)) == 16
    except ValueError:  # binascii.Error
        return False


def _read_exact(rfile: Any, n: int) -> bytes:
    data = rfile.read(n)
    if len(data) < n:
        raise EOFError
    return data


def _read_frame(rfile: Any) -> tuple[bool, int, bytes]:
    """(fin, opcode, unmasked payload) of one client frame; EOFError when the peer is gone."""
    b0, b1 = _read_exact(rfile, 2)
    if b0 & 0x70:
        raise _ProtocolError(CLOSE_PROTOCOL_ERROR, "reserved bits set without an extension")
    if not b1 & 0x80:
        raise _ProtocolError(CLOSE_PROTOCOL_ERROR, "client frames must be masked")
    fin, opcode, n = bool(b0 & 0x80), b0 & 0x0F, b1 & 0x7F
    if n == 126:
        (n,) = struct.unpack("!H", _read_exact(rfile, 2))
    elif n == 127:
        (n,) = struct.unpack("!Q", _read_exact(rfile, 8))
    if opcode >= 0x8 and (n > 125 or not fin):
        raise _ProtocolError(CLOSE_PROTOCOL_ERROR, "control frames are short and unfragmented")
    if n > WS_MAX_MESSAGE:
        raise _ProtocolError(CLOSE_TOO_BIG, "message too big")
    mask = _read_exact(rfile, 4)
    masked = _read_exact(rfile, n)
    key = (mask * (n // 4 + 1))[:n]
    payload = (int.from_bytes(masked, "big") ^ int.from_bytes(key, "big")).to_bytes(n, "big")
    return fin, opcode, payload


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        # a client that vanished mid-reply (timeout, stop()) is normal here, not a traceback on stderr
        if isinstance(sys.exc_info()[1], OSError):
            return
        super().handle_error(request, client_address)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, like the camera: clients may hold one connection
    server_version = "BlackmagicEmulator/1.0"
    emulator: BlackmagicEmulator  # set on the per-emulator subclass

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - http.server's signature
        pass  # tests read emulator.requests instead

    def setup(self) -> None:
        super().setup()
        # http.server writes headers and body separately: without this, Nagle plus the client's delayed
        # ACK holds every JSON body back ~40 ms and skews the request/reply times tests measure
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.emulator._track(self.connection, add=True)

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            self.emulator._track(self.connection, add=False)

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_PUT(self) -> None:
        self._dispatch("PUT")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def do_DELETE(self) -> None:
        self._dispatch("DELETE")

    def _dispatch(self, method: str) -> None:
        path = urlsplit(self.path).path
        if method == "GET" and path == WS_PATH and self.headers.get("Upgrade", "").lower() == "websocket":
            self._websocket()
            return
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        body: Any = None
        bad_json = None
        if raw.strip():
            try:
                body = json.loads(raw)
            except ValueError as exc:
                bad_json = str(exc)
        emu = self.emulator
        emu._log_request(method, path, body)
        if emu.reply_delay_s > 0:
            time.sleep(emu.reply_delay_s)
        if bad_json is not None:
            status, payload = 400, {"error": f"invalid JSON body: {bad_json}"}
        else:
            status, payload = emu._route(method, path, body)
        try:
            self._reply(status, payload)
        except OSError:
            self.close_connection = True  # the client gave up (timeout) or stop() shut the socket

    def _reply(self, status: int, payload: Any) -> None:
        self.send_response(status)
        if status == 204:
            self.end_headers()
            return
        data = json.dumps(payload).encode()
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _websocket(self) -> None:
        key = self.headers.get("Sec-WebSocket-Key", "")
        if self.headers.get("Sec-WebSocket-Version") != "13" or not _valid_ws_key(key):
            self.send_response(426 if _valid_ws_key(key) else 400)
            self.send_header("Sec-WebSocket-Version", "13")
            self.send_header("Content-Length", "0")
            self.end_headers()
            self.close_connection = True
            return
        accept = base64.b64encode(hashlib.sha1((key + WS_GUID).encode()).digest()).decode()
        self.send_response(101, "Switching Protocols")
        self.send_header("Upgrade", "websocket")
        self.send_header("Connection", "Upgrade")
        self.send_header("Sec-WebSocket-Accept", accept)
        self.end_headers()
        self.wfile.flush()
        self.close_connection = True  # after the WebSocket ends, this connection is done
        client = _WsClient(self.connection)
        self.emulator._add_client(client)
        try:
            self._ws_loop(client)
        finally:
            self.emulator._remove_client(client)

    def _ws_loop(self, client: _WsClient) -> None:
        fragments: list[bytes] = []
        message_opcode = None
        try:
            while client.open:
                fin, opcode, payload = _read_frame(self.rfile)
                if opcode == OP_CLOSE:
                    code = payload[:2] if len(payload) >= 2 else b""
                    client.send_frame(OP_CLOSE, code)  # echo the code: close handshake done
                    return
                if opcode == OP_PING:
                    client.send_frame(OP_PONG, payload)
                    continue
                if opcode == OP_PONG:
                    continue
                if opcode in (OP_TEXT, OP_BINARY):
                    if message_opcode is not None:
                        raise _ProtocolError(CLOSE_PROTOCOL_ERROR, "new message inside a fragmented one")
                    message_opcode, fragments = opcode, []
                elif opcode != OP_CONT or message_opcode is None:
                    raise _ProtocolError(CLOSE_PROTOCOL_ERROR, f"unexpected opcode 0x{opcode:X}")
                fragments.append(payload)
                if sum(map(len, fragments)) > WS_MAX_MESSAGE:
                    raise _ProtocolError(CLOSE_TOO_BIG, "message too big")
                if not fin:
                    continue
                data, kind, message_opcode = b"".join(fragments), message_opcode, None
                if kind == OP_BINARY:
                    raise _ProtocolError(CLOSE_UNSUPPORTED, "the camera API speaks JSON text frames")
                try:
                    text = data.decode("utf-8")
                except UnicodeDecodeError:
                    raise _ProtocolError(CLOSE_BAD_DATA, "text frame is not UTF-8") from None
                self.emulator._ws_request(client, text)
        except _ProtocolError as exc:
            client.close(exc.code, str(exc))
        except (EOFError, OSError, ValueError):
            pass  # peer gone (or socket shut by stop())


class BlackmagicEmulator:
    """A Blackmagic camera's HTTP control API on localhost, with known timecode truth and faults.

    Faults: reply_delay_s delays every REST reply (client timeouts); remaining_record_s <= 0 (card full)
    or refuse_record make the camera stay in preview when asked to record.
    """

    def __init__(self, host: str = "127.0.0.1", port: int = 0, fps: float = 60.0, timecode_offset_s: float = 36000.0,
                 remaining_record_s: int = 20926, reply_delay_s: float = 0.0, refuse_record: bool = False) -> None:
        if host in UNSPECIFIED_HOSTS:
            raise ValueError(f"BlackmagicEmulator binds to one host, not {host!r} (every interface)")
        self.host = host
        self.port = port
        self.fps = float(fps)
        self.nominal_fps = nominal_fps(fps)
        # 29.97 and 59.94 cameras run drop-frame timecode; other fractional rates (23.976) do not
        self.drop_frame = abs(self.fps - self.nominal_fps) > 1e-6 and self.nominal_fps in (30, 60)
        self.true_fps = true_fps(fps, self.drop_frame)
        self.frame_rate_text = f"{self.fps:g}"  # as /system/format spells it: "59.94", "60", "25"
        self.timecode_offset_s = timecode_offset_s
        self.remaining_record_s = remaining_record_s
        self.reply_delay_s = reply_delay_s
        self.refuse_record = refuse_record
        self._lock = threading.RLock()
        self._requests: list[tuple[str, str, object]] = []
        self._ws_requests: list[dict[str, Any]] = []
        self._clips: list[dict[str, Any]] = []
        self._take: dict[str, Any] | None = None
        self._mode = "InputPreview"
        self._clients: list[_WsClient] = []
        self._connections: set[socket.socket] = set()
        self._stopping = threading.Event()
        self._server: ThreadingHTTPServer | None = None
        self._threads: list[threading.Thread] = []

    # ---- life cycle ----

    def start(self) -> BlackmagicEmulator:
        handler = type("BlackmagicHandler", (_Handler,), {"emulator": self})
        server_cls = type("BlackmagicServer6", (_Server,), {"address_family": socket.AF_INET6}) \
            if ":" in self.host else _Server
        self._server = server_cls((self.host, self.port), handler)
        self.port = self._server.server_address[1]
        self._stopping.clear()
        # a short poll interval only makes stop() quick; requests are served as they come either way
        self._threads = [threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05},
                                          name=f"bmd-emulator:{self.port}", daemon=True),
                         threading.Thread(target=self._tick_timecode, name=f"bmd-timecode:{self.port}", daemon=True)]
        for thread in self._threads:
            thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        with self._lock:
            connections = list(self._connections)
        for conn in connections:  # kept-alive and WebSocket connections would hold their threads
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        for thread in self._threads:
            thread.join(timeout=2.0)

    def __enter__(self) -> BlackmagicEmulator:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def netloc(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"

    @property
    def url(self) -> str:
        return f"blackmagic://{self.netloc}"

    @property
    def http_base(self) -> str:
        return f"http://{self.netloc}{API}"

    @property
    def ws_url(self) -> str:
        return f"ws://{self.netloc}{WS_PATH}"

    # ---- what tests read ----

    @property
    def requests(self) -> list[tuple[str, str, object]]:
        """Every REST request so far, in order: (method, path, parsed JSON body or None)."""
        with self._lock:
            return list(self._requests)

    @property
    def ws_requests(self) -> list[dict[str, Any]]:
        """Every JSON message clients sent on the WebSocket, in order."""
        with self._lock:
            return list(self._ws_requests)

    @property
    def clips(self) -> list[dict[str, Any]]:
        """Clips recorded: name, start/stop timecode (text and BCD), start/stop LSL time, frames."""
        with self._lock:
            return [dict(c) for c in self._clips]

    @property
    def recording(self) -> bool:
        with self._lock:
            return self._take is not None

    def truth(self) -> dict[str, Any]:
        return {"timecode_offset_s": self.timecode_offset_s, "fps": self.fps, "nominal_fps": self.nominal_fps,
                "true_fps": float(self.true_fps), "drop_frame": self.drop_frame, "clips": self.clips}

    def frame_at(self, lsl_time: float) -> int:
        """The camera's time-of-day frame count at an LSL time (before wrapping at midnight)."""
        return math.floor((lsl_time + self.timecode_offset_s) * self.true_fps)

    def timecode_at(self, lsl_time: float) -> Timecode:
        return Timecode.from_frame_number(self.frame_at(lsl_time), self.fps, self.drop_frame)

    # ---- state ----

    def _log_request(self, method: str, path: str, body: object) -> None:
        with self._lock:
            self._requests.append((method, path, body))

    def _remaining_s(self, now: float) -> int:
        with self._lock:
            rolling = now - self._take["start_lsl"] if self._take else 0.0
            return max(0, math.floor(self.remaining_record_s - rolling))

    def _property(self, name: str, now: float) -> Any:
        """Current value of a property path, shaped as GET answers it and as events carry it."""
        with self._lock:
            take = self._take
            if name == "/transports/0":
                return {"mode": self._mode}
            if name == "/transports/0/record":
                return {"recording": take is not None}
            if name == "/transports/0/timecode":
                elapsed = self.frame_at(now) - take["start_frame"] if take else 0
                clip = Timecode.from_frame_number(elapsed, self.fps, self.drop_frame)
                return {"timecode": self.timecode_at(now).to_bcd(), "clip": clip.to_bcd()}
            if name == "/transports/0/timecode/source":
                return {"source": "Timecode"}
            if name == "/system":
                return {"codecFormat": dict(CODEC),
                        "videoFormat": {"name": f"2160p{self.frame_rate_text}", "frameRate": self.frame_rate_text,
                                        "height": 2160, "width": 3840, "interlaced": False}}
            if name == "/system/format":
                return {"codec": CODEC["codec"], "frameRate": self.frame_rate_text, "maxOffSpeedFrameRate": 60,
                        "minOffSpeedFrameRate": 5, "offSpeedEnabled": False, "offSpeedFrameRate": self.nominal_fps,
                        "recordResolution": {"height": 2160, "width": 3840},
                        "sensorResolution": {"height": 2160, "width": 3840}}
            if name == "/media/workingset":
                remaining = self._remaining_s(now)
                return {"size": 1, "workingset": [{
                    "activeDisk": True, "clipCount": len(self._clips), "deviceName": DEVICE_NAME, "index": 0,
                    "remainingRecordTime": remaining, "remainingSpace": remaining * BYTES_PER_RECORD_S,
                    "totalSpace": TOTAL_SPACE, "volume": VOLUME}]}
            if name == "/clips/list":
                return {"clipList": [{
                    "clipUniqueId": i + 1, "codecFormat": dict(CODEC), "durationTimecode": c["duration_timecode"],
                    "filePath": f"/mnt/{DEVICE_NAME}/{VOLUME}/{c['name']}.braw", "startTimecode": c["start_timecode"],
                    "videoFormat": f"3840x2160p{self.frame_rate_text}"} for i, c in enumerate(self._clips)]}
        raise KeyError(name)

    def _set_recording(self, on: bool, clip_name: str | None, now: float) -> None:
        changed: list[str] = []
        with self._lock:
            if on and self._take is None:
                if self.refuse_record or self._remaining_s(now) <= 0:
                    # The REST API is a command interface: 204 means "accepted", and the documented API
                    # has no error body for a full card. A real camera then shows the warning on its own
                    # screen and stays in preview, so the emulator answers 204 and keeps recording false:
                    # a client must read the state back (the stricter case for clients).
                    return
                frame = self.frame_at(now)
                self._take = {"name": clip_name or f"A001_C{len(self._clips) + 1:03d}", "start_lsl": now,
                              "start_frame": frame, "start_timecode": str(self.timecode_at(now)),
                              "start_timecode_raw": self.timecode_at(now).to_bcd()}
                self._mode = "InputRecord"
                changed = ["/transports/0/record", "/transports/0"]
            elif not on and self._take is not None:
                take, self._take = self._take, None
                frames = self.frame_at(now) - take["start_frame"]
                stop_tc = self.timecode_at(now)
                take.update(stop_lsl=now, stop_timecode=str(stop_tc), stop_timecode_raw=stop_tc.to_bcd(),
                            frames=frames,
                            duration_timecode=str(Timecode.from_frame_number(frames, self.fps, self.drop_frame)))
                self.remaining_record_s = max(0, math.floor(self.remaining_record_s - (now - take["start_lsl"])))
                self._clips.append(take)
                self._mode = "InputPreview"
                changed = ["/transports/0/record", "/transports/0", "/media/workingset", "/clips/list"]
        self._push(changed, now)

    def _route(self, method: str, path: str, body: Any) -> tuple[int, Any]:
        now = pylsl.local_clock()
        prop = path[len(API):] if path.startswith(API + "/") else None
        if path == WS_PATH:
            return 400, {"error": f"{path} is a WebSocket: send an Upgrade request"}
        if prop not in PROPERTIES:
            return 404, {"error": f"no such resource: {path}"}
        if method == "GET":
            return 200, self._property(prop, now)
        if method != "PUT" or prop not in ("/transports/0", "/transports/0/record"):
            return 405, {"error": f"{method} not allowed on {path}"}
        if prop == "/transports/0/record":
            if not isinstance(body, dict) or not isinstance(body.get("recording"), bool):
                return 400, {"error": 'expected {"recording": true|false, "clipName": "..."}'}
            clip_name = body.get("clipName")
            if clip_name is not None and not isinstance(clip_name, str):
                return 400, {"error": "clipName must be a string"}
            self._set_recording(body["recording"], clip_name, now)
            return 204, None
        if not isinstance(body, dict) or body.get("mode") not in MODES:
            return 400, {"error": f"expected {{\"mode\": one of {list(MODES)}}}"}
        mode = body["mode"]
        if mode == "InputRecord":  # rolls without a clip name (and may be refused like a record PUT)
            self._set_recording(True, None, now)
            return 204, None
        self._set_recording(False, None, now)  # preview or playback ends a recording
        with self._lock:
            changed, self._mode = self._mode != mode, mode
        if changed:
            self._push(["/transports/0"], now)
        return 204, None

    # ---- WebSocket ----

    def _track(self, conn: socket.socket, add: bool) -> None:
        with self._lock:
            if add:
                self._connections.add(conn)
            else:
                self._connections.discard(conn)

    def _add_client(self, client: _WsClient) -> None:
        with self._lock:
            self._clients.append(client)

    def _remove_client(self, client: _WsClient) -> None:
        with self._lock:
            if client in self._clients:
                self._clients.remove(client)

    def _push(self, properties: list[str], now: float) -> None:
        """propertyValueChanged to every client subscribed to each property."""
        with self._lock:
            clients = [c for c in self._clients if c.subscriptions.intersection(properties)]
            if not clients:
                return
            values = {p: self._property(p, now) for p in properties}
        for client in clients:
            for prop in properties:
                if prop in client.subscriptions:
                    client.send_json({"type": "event", "data": {"action": "propertyValueChanged",
                                                                "property": prop, "value": values[prop]}})

    def _tick_timecode(self) -> None:
        while not self._stopping.wait(TIMECODE_PUSH_PERIOD_S):
            self._push(["/transports/0/timecode"], pylsl.local_clock())

    def _ws_request(self, client: _WsClient, text: str) -> None:
        try:
            message = json.loads(text)
        except ValueError:
            client.send_json({"type": "response", "data": {"success": False, "error": "invalid JSON"}})
            return
        with self._lock:
            self._ws_requests.append(message)
        data = message.get("data") if isinstance(message, dict) else None
        if not isinstance(message, dict) or message.get("type") != "request" or not isinstance(data, dict):
            client.send_json({"type": "response", "data": {"success": False,
                                                           "error": 'expected {"type": "request", "data": {...}}'}})
            return
        action = data.get("action")
        if action == "listProperties":
            client.send_json({"type": "response", "data": {"action": action, "properties": list(PROPERTIES)}})
            return
        props = data.get("properties")
        if action not in ("subscribe", "unsubscribe") or not isinstance(props, list):
            client.send_json({"type": "response", "data": {"action": action, "success": False,
                                                           "error": "unknown action or missing properties list"}})
            return
        # "*" means all; unknown paths are left out (the reply lists what was actually (un)subscribed)
        names = list(PROPERTIES) if "*" in props else [p for p in props if p in PROPERTIES]
        if action == "unsubscribe":
            client.subscriptions.difference_update(names)
            client.send_json({"type": "response", "data": {"action": action, "properties": names, "success": True}})
            return
        now = pylsl.local_clock()
        with self._lock:
            client.subscriptions.update(names)
            values = {p: self._property(p, now) for p in names}
        client.send_json({"type": "response", "data": {"action": action, "properties": names, "success": True,
                                                       "values": values}})
