"""Child processes that never outlive their supervisor.

Each child is started with PR_SET_PDEATHSIG (Linux: the kernel sends SIGTERM when the parent dies,
even by SIGKILL) and in its own session (a Ctrl-C in the terminal reaches only the supervisor, which
then stops the children in order). Children also stop when their stdin closes. Requests travel over
the control line protocol (drivers.runtime.control).
"""

from __future__ import annotations

import ctypes
import itertools
import json
import os
import queue
import signal
import subprocess
import sys
import threading
from collections.abc import Callable
from typing import Any

PR_SET_PDEATHSIG = 1


class ChildError(RuntimeError):
    """A child refused a command, did not answer in time, or is not running."""


PARENT_ENV = "FLEXCAP_PARENT_PID"


def die_with_parent() -> None:
    """Called first thing in a supervised child: ask the kernel for SIGTERM when the parent dies.

    Done in the child rather than in a preexec_fn (unsafe in a threaded parent). Note the kernel
    signals when the parent *thread* that spawned the child exits: spawn children from a thread that
    lives as long as they do (the main thread).
    """
    parent = os.environ.get(PARENT_ENV)
    if not parent:
        return
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    except OSError:  # not Linux: stdin EOF still stops the child
        pass
    if os.getppid() != int(parent):  # the parent died before prctl took effect
        os._exit(1)


class ChildProcess:
    """A flexcap subcommand run as a supervised child: `python -m acquisition.cli <args>`."""

    def __init__(self, name: str, args: list[str], env: dict[str, str] | None = None,
                 on_event: Callable[[str, dict[str, Any]], None] | None = None,
                 stderr: int | None = None) -> None:
        self.name = name
        self.args = args
        self.on_event = on_event
        self._ids = itertools.count(1)
        self._pending: dict[int, queue.Queue] = {}
        self._lock = threading.Lock()
        cmd = [sys.executable, "-m", "acquisition.cli", *args]
        self.proc = subprocess.Popen(
            cmd,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=stderr,
            env={**os.environ, **(env or {}), PARENT_ENV: str(os.getpid())},
            text=True,
            bufsize=1,
            start_new_session=True,
        )
        self._reader = threading.Thread(target=self._read, name=f"{name}-control", daemon=True)
        self._reader.start()

    @property
    def pid(self) -> int:
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc.poll() is None

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            try:
                msg = json.loads(line)
            except ValueError:
                sys.stderr.write(f"[{self.name}] {line}")
                continue
            if "event" in msg:
                if self.on_event is not None:
                    self.on_event(self.name, msg)
                continue
            with self._lock:
                waiter = self._pending.pop(msg.get("id"), None)
            if waiter is not None:
                waiter.put(msg)
        with self._lock:  # the child is gone: wake every waiter
            for waiter in self._pending.values():
                waiter.put({"ok": False, "error": f"{self.name} exited (code {self.proc.poll()})"})
            self._pending.clear()

    def request(self, cmd: str, timeout: float = 10.0, **args: Any) -> Any:
        if not self.alive():
            raise ChildError(f"{self.name} is not running (exit code {self.proc.returncode})")
        rid = next(self._ids)
        waiter: queue.Queue = queue.Queue(maxsize=1)
        with self._lock:
            self._pending[rid] = waiter
        try:
            assert self.proc.stdin is not None
            self.proc.stdin.write(json.dumps({"id": rid, "cmd": cmd, "args": args}) + "\n")
            self.proc.stdin.flush()
        except (BrokenPipeError, OSError) as exc:
            with self._lock:
                self._pending.pop(rid, None)
            raise ChildError(f"{self.name}: cannot send {cmd!r}: {exc}") from exc
        try:
            reply = waiter.get(timeout=timeout)
        except queue.Empty:
            with self._lock:
                self._pending.pop(rid, None)
            raise ChildError(f"{self.name} did not answer {cmd!r} within {timeout:g} s") from None
        if not reply.get("ok"):
            raise ChildError(f"{self.name}: {cmd} failed: {reply.get('error')}")
        return reply.get("result")

    def close_stdin(self) -> None:
        """Ask the child to stop: it stops cleanly when its stdin closes."""
        if self.proc.stdin is not None and not self.proc.stdin.closed:
            try:
                self.proc.stdin.close()
            except OSError:
                pass

    def stop(self, timeout: float = 5.0) -> int:
        """Close stdin (the child stops cleanly), then SIGTERM, then SIGKILL."""
        self.close_stdin()
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            pass
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait()
