"""Byte transports for amplifiers. The protocol code only sees `Transport`; the serial port is one
implementation (a TCP socket transport for Delsys Trigno-style servers would be another: open a
connection, read and write bytes, same errors)."""

from __future__ import annotations

import errno
import logging
import os
import select
import time
from typing import Protocol

import serial

from drivers.runtime.driver import EMULATED, DeviceError, DriverContext
from drivers.runtime.paths import emulator_link

log = logging.getLogger(__name__)


class Transport(Protocol):
    description: str

    def open(self) -> None: ...

    def read(self, timeout: float) -> bytes:
        """Whatever bytes arrive within `timeout` (b"" if none). Raises DeviceError when the link is gone."""
        ...

    def write(self, data: bytes) -> None: ...

    def close(self) -> None: ...


def serial_port_of(ctx: DriverContext, configured: str | None) -> str:
    """The serial port of a device: its emulator's pty link, the port its settings name, or its connection."""
    if ctx.connection == EMULATED:
        return str(emulator_link(ctx.rig_name, ctx.device_id))
    port = configured or (ctx.connection if ctx.connection and "://" not in ctx.connection else None)
    if not port:
        raise DeviceError(f"{ctx.device_id}: no serial port given (settings.port or connection)")
    return port


class SerialTransport:
    """A serial port through pyserial: exclusive open, low-latency mode where the port supports it
    (FTDI: the 16 ms latency timer otherwise delivers data in bursts), clear errors."""

    def __init__(self, port: str, baudrate: int = 115200) -> None:
        self.port = port
        self.baudrate = baudrate
        self.description = f"serial port {port}"
        self.ser: serial.Serial | None = None
        self.low_latency = False

    def open(self) -> None:
        try:
            ser = serial.Serial(self.port, self.baudrate, timeout=0, write_timeout=1.0, exclusive=True)
        except serial.SerialException as exc:
            raise DeviceError(self._explain(exc)) from None
        try:
            ser.set_low_latency_mode(True)
            self.low_latency = True
        except (AttributeError, OSError, ValueError) as exc:  # a pty or a non-FTDI port: fine
            log.debug("%s: no low-latency mode: %s", self.port, exc)
        self.ser = ser

    def _explain(self, exc: serial.SerialException) -> str:
        text = str(exc)
        code = getattr(exc, "errno", None)
        if code == errno.ENOENT or "No such file" in text:
            return f"{self.port} does not exist (is the device plugged in and the path right?)"
        if code in (errno.EBUSY, errno.EAGAIN) or "exclusively lock" in text or "busy" in text.lower():
            return f"{self.port} is busy: another program has it open"
        if code == errno.EACCES or "Permission denied" in text:
            return f"{self.port}: permission denied (add the user to the dialout group)"
        return f"{self.port}: cannot open: {text}"

    def read(self, timeout: float) -> bytes:
        ser = self._require()
        fd = getattr(ser, "fd", None)
        try:
            if fd is None:  # not a POSIX port: pyserial's own read
                if ser.timeout != timeout:
                    ser.timeout = timeout
                first = ser.read(1)
                return first + ser.read(ser.in_waiting) if first else b""
            # one select and one read per wake-up: pyserial's read loop costs more than the parsing
            ready, _, _ = select.select([fd], [], [], timeout)
            if not ready:
                return b""
            data = os.read(fd, 1 << 16)
        except (serial.SerialException, OSError, TypeError) as exc:
            if isinstance(exc, BlockingIOError):
                return b""
            raise DeviceError(f"{self.port} stopped answering (unplugged?): {exc}") from None
        if not data:  # ready but empty: the device is gone (Linux reports a hang-up this way)
            raise DeviceError(f"{self.port} stopped answering (unplugged?): no data after a ready signal")
        return data

    def write(self, data: bytes) -> None:
        ser = self._require()
        try:
            ser.write(data)
            ser.flush()
        except (serial.SerialException, OSError) as exc:
            raise DeviceError(f"{self.port}: write failed (unplugged?): {exc}") from None

    def close(self) -> None:
        if self.ser is not None:
            try:
                self.ser.close()
            except (serial.SerialException, OSError):
                pass
            self.ser = None

    def _require(self) -> serial.Serial:
        if self.ser is None:
            raise DeviceError(f"{self.port} is not open")
        return self.ser


class ByteReader:
    """Reads replies during a handshake: exactly n bytes, or up to a terminator, with a deadline and an
    error that says what was awaited. Bytes read past the reply stay for the next call (or the parser)."""

    def __init__(self, transport: Transport) -> None:
        self.transport = transport
        self.buffer = b""

    def _fill(self, deadline: float, what: str, timeout: float) -> None:
        left = deadline - time.monotonic()
        if left <= 0:
            tail = self.buffer[-60:]
            got = f"got {tail.hex(' ')}" if tail else "got nothing"
            raise DeviceError(f"{self.transport.description}: no {what} within {timeout:g} s ({got})")
        self.buffer += self.transport.read(min(left, 0.05))

    def exact(self, n: int, timeout: float, what: str) -> bytes:
        deadline = time.monotonic() + timeout
        while len(self.buffer) < n:
            self._fill(deadline, what, timeout)
        out, self.buffer = self.buffer[:n], self.buffer[n:]
        return out

    def until(self, terminator: bytes, timeout: float, what: str) -> bytes:
        deadline = time.monotonic() + timeout
        while terminator not in self.buffer:
            self._fill(deadline, what, timeout)
        end = self.buffer.index(terminator) + len(terminator)
        out, self.buffer = self.buffer[:end], self.buffer[end:]
        return out

    def drain(self, quiet_s: float) -> bytes:
        """Read until the line has been quiet for quiet_s; return (and forget) everything read."""
        out = self.buffer
        self.buffer = b""
        while True:
            chunk = self.transport.read(quiet_s)
            if not chunk:
                return out
            out += chunk
