"""A serial device's end of a pseudo-terminal. The emulator owns the master side; the driver opens
the slave through a stable symlink with pyserial, exactly as it opens /dev/ttyUSB0."""

from __future__ import annotations

import errno
import os
import select
import tty
from pathlib import Path


class PtyPort:
    def __init__(self, link: Path | None = None) -> None:
        self.link = link
        self.master: int | None = None
        self.slave: int | None = None
        self.path = ""
        self.overflow_bytes = 0  # bytes a real device would have lost: nobody was reading

    def open(self) -> str:
        self.master, self.slave = os.openpty()
        tty.setraw(self.slave)  # no echo, no line discipline: bytes pass unchanged
        os.set_blocking(self.master, False)
        self.path = os.ttyname(self.slave)
        if self.link is not None:
            tmp = self.link.with_name(self.link.name + f".{os.getpid()}.tmp")
            if tmp.exists() or tmp.is_symlink():
                tmp.unlink()
            tmp.symlink_to(self.path)
            tmp.replace(self.link)
        return self.path

    @property
    def is_open(self) -> bool:
        return self.master is not None

    def close(self) -> None:
        """Unplug: both ends go away; a driver reading the slave gets an error."""
        for fd in (self.master, self.slave):
            if fd is not None:
                try:
                    os.close(fd)
                except OSError:
                    pass
        self.master = self.slave = None

    def remove_link(self) -> None:
        if self.link is not None and self.link.is_symlink() and os.readlink(self.link) == self.path:
            self.link.unlink()

    def read(self, timeout: float) -> bytes:
        """Bytes the host wrote, waiting up to timeout."""
        if self.master is None:
            return b""
        ready, _, _ = select.select([self.master], [], [], max(0.0, timeout))
        if not ready:
            return b""
        try:
            return os.read(self.master, 4096)
        except OSError as exc:
            if exc.errno in (errno.EAGAIN, errno.EIO):
                return b""
            raise

    def write(self, data: bytes) -> None:
        """Write what the pty takes; a full buffer (no reader) loses the rest, as a device's UART would."""
        if self.master is None:
            return
        view = memoryview(data)
        while view:
            try:
                n = os.write(self.master, view)
            except BlockingIOError:
                self.overflow_bytes += len(view)
                return
            except OSError as exc:
                if exc.errno == errno.EIO:
                    self.overflow_bytes += len(view)
                    return
                raise
            view = view[n:]
