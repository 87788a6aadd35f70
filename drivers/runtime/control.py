"""A line protocol between a supervising process and a child (driver or recorder) over its stdin/stdout.

Requests:  {"id": 7, "cmd": "start_recording", "args": {...}}
Replies:   {"id": 7, "ok": true, "result": ...}  or  {"id": 7, "ok": false, "error": "..."}
Events:    {"event": "stopped", ...}   (unsolicited, child to parent)

stdout belongs to this protocol; children log to stderr. End of file on stdin means the supervisor
is gone: the child then stops cleanly on its own.
"""

from __future__ import annotations

import json
import sys
import threading
import traceback
from collections.abc import Callable
from typing import Any, TextIO

Handler = Callable[..., Any]


class ControlServer:
    """Child side: reads requests from stdin on a thread and calls the named handler."""

    def __init__(self, handlers: dict[str, Handler], on_eof: Callable[[], None],
                 stdin: TextIO | None = None, stdout: TextIO | None = None) -> None:
        self.handlers = dict(handlers)
        self.on_eof = on_eof
        self._in = stdin or sys.stdin
        self._out = stdout or sys.stdout
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._serve, name="control", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def send(self, message: dict[str, Any]) -> None:
        line = json.dumps(message, default=_jsonable)
        with self._lock:
            try:
                self._out.write(line + "\n")
                self._out.flush()
            except (BrokenPipeError, ValueError, OSError):
                pass  # the supervisor is gone; on_eof will stop us

    def event(self, name: str, **fields: Any) -> None:
        self.send({"event": name, **fields})

    def _serve(self) -> None:
        for line in self._in:
            line = line.strip()
            if not line:
                continue
            try:
                req = json.loads(line)
                rid = req.get("id")
                cmd = req["cmd"]
            except (ValueError, KeyError, AttributeError) as exc:
                self.send({"id": None, "ok": False, "error": f"bad control line {line[:80]!r}: {exc}"})
                continue
            handler = self.handlers.get(cmd)
            if handler is None:
                self.send({"id": rid, "ok": False, "error": f"unknown command {cmd!r}; known: "
                           + ", ".join(sorted(self.handlers))})
                continue
            try:
                result = handler(**(req.get("args") or {}))
                self.send({"id": rid, "ok": True, "result": result})
            except Exception as exc:  # a failing command is reported, never kills the child
                traceback.print_exc(file=sys.stderr)
                self.send({"id": rid, "ok": False, "error": f"{type(exc).__name__}: {exc}"})
        self.on_eof()


def _jsonable(obj: Any) -> Any:
    try:
        import numpy as np

        if isinstance(obj, np.generic):
            return obj.item()
        if isinstance(obj, np.ndarray):
            return obj.tolist()
    except ImportError:  # pragma: no cover
        pass
    return str(obj)
