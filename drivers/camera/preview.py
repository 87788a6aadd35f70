"""A camera's live preview for the console: small BGR images in a memory-mapped file, written at
10-15 fps by a thread of the camera driver, off the storage path (the storage path only hands over
a reference to the newest JPEG; decoding happens here, at reduced size, and only as often as shown).

The file holds a header and one image. The writer bumps a sequence number to odd before writing and
to even after (a seqlock): a reader copies the image and accepts it when the number was even and
unchanged, so it never shows a half-written image and never blocks the writer.
"""

from __future__ import annotations

import mmap
import os
import struct
import threading
import time
from pathlib import Path

import cv2
import numpy as np

MAGIC = b"FXPV"
HEADER = struct.Struct("<4sIQIIdq")  # magic, version, sequence, width, height, frame stamp, frame index
VERSION = 1


def reduced_decode_flag(jpeg_width: int, target_width: int) -> int:
    """The cheapest IMREAD_REDUCED_* decode that still yields at least target_width pixels."""
    for factor, flag in ((8, cv2.IMREAD_REDUCED_COLOR_8), (4, cv2.IMREAD_REDUCED_COLOR_4),
                         (2, cv2.IMREAD_REDUCED_COLOR_2)):
        if jpeg_width // factor >= target_width:
            return flag
    return cv2.IMREAD_COLOR


class PreviewWriter:
    """Owns the preview file of one camera; `offer()` is cheap and may be called for every frame."""

    def __init__(self, path: Path, frame_width: int, frame_height: int, width: int = 320, fps: float = 12.0) -> None:
        self.path = Path(path)
        self.width = min(width, frame_width)
        self.height = max(1, round(frame_height * self.width / frame_width))
        self.frame_width = frame_width
        self.interval = 1.0 / fps
        size = HEADER.size + self.width * self.height * 3
        # a new file, never the old one truncated: a reader still mapping the old one (the camera restarted)
        # must not see it zeroed (or shrink under it: SIGBUS); it notices the new inode and reopens
        self.path.unlink(missing_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            os.ftruncate(fd, size)
            self.mm = mmap.mmap(fd, size)
        finally:
            os.close(fd)
        self.seq = 0
        self._write_header(-1.0, -1)
        self._latest: tuple[bytes, float, int] | None = None
        self._wake = threading.Event()
        self._stop = threading.Event()
        self.shown = 0
        self._thread = threading.Thread(target=self._run, name="preview", daemon=True)
        self._thread.start()

    def offer(self, jpeg: bytes, stamp: float, index: int) -> None:
        self._latest = (jpeg, stamp, index)  # one reference swap: the storage path never waits here
        self._wake.set()

    def _run(self) -> None:
        flag = reduced_decode_flag(self.frame_width, self.width)
        due = time.monotonic()
        while not self._stop.is_set():
            self._wake.wait(0.5)
            self._wake.clear()
            latest, self._latest = self._latest, None
            if latest is None:
                continue
            due = max(due + self.interval, time.monotonic())  # a steady rate, decode time included
            jpeg, stamp, index = latest
            img = cv2.imdecode(np.frombuffer(jpeg, np.uint8), flag)
            if img is not None:
                if img.shape[1] != self.width or img.shape[0] != self.height:
                    img = cv2.resize(img, (self.width, self.height), interpolation=cv2.INTER_LINEAR)
                self._publish(img, stamp, index)
            self._stop.wait(max(0.0, due - time.monotonic()))

    def _publish(self, img: np.ndarray, stamp: float, index: int) -> None:
        self.seq += 1  # odd: writing
        struct.pack_into("<Q", self.mm, 8, self.seq)
        self.mm[HEADER.size:] = np.ascontiguousarray(img).tobytes()
        self.seq += 1
        self._write_header(stamp, index)
        self.shown += 1

    def _write_header(self, stamp: float, index: int) -> None:
        HEADER.pack_into(self.mm, 0, MAGIC, VERSION, self.seq, self.width, self.height, stamp, index)

    def close(self) -> None:
        self._stop.set()
        self._wake.set()
        self._thread.join(2)
        self.mm.close()
        try:
            self.path.unlink()
        except FileNotFoundError:
            pass


class PreviewReader:
    """The console's side: `read()` returns the newest preview image, or None when nothing new."""

    def __init__(self, path: Path) -> None:
        with open(path, "rb") as f:
            self.mm = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
        magic, version, _, self.width, self.height, _, _ = HEADER.unpack_from(self.mm, 0)
        if magic != MAGIC or version != VERSION:
            raise ValueError(f"{path}: not a flexcap preview file (magic {magic!r}, version {version})")
        self.last_seq = 0

    def read(self) -> tuple[np.ndarray, float, int] | None:
        """(BGR image, frame stamp, frame index) of the newest preview; None when nothing is new or
        the writer is mid-image (the next poll gets it)."""
        _, _, seq, w, h, stamp, index = HEADER.unpack_from(self.mm, 0)
        if seq % 2 or seq == self.last_seq or w * h == 0 or HEADER.size + w * h * 3 > len(self.mm):
            return None  # mid-write, nothing new, or a header not filled in yet
        img = np.frombuffer(self.mm, np.uint8, w * h * 3, HEADER.size).reshape(h, w, 3).copy()
        if HEADER.unpack_from(self.mm, 0)[2] != seq:
            return None
        self.last_seq = seq
        return img, stamp, index

    def close(self) -> None:
        self.mm.close()
