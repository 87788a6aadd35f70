"""MJPEG over HTTP (multipart/x-mixed-replace), both ends: the reader the camera driver uses to keep
each JPEG byte-identical to what the device sent (OpenCV would decode it), and the part framing the
phone emulator serves.
"""

from __future__ import annotations

import http.client
import time
import urllib.parse

import pylsl

from drivers.runtime.driver import DeviceError

MAX_HEADER_LINES = 32
MAX_PART_BYTES = 16 * 1024 * 1024  # a 4K JPEG at top quality is a few MB
SCAN_LIMIT = 4 * 1024 * 1024  # bytes searched for a boundary before the stream is called garbage


def is_complete_jpeg(data: bytes | memoryview) -> bool:
    """Starts with SOI and ends with EOI: a truncated JPEG fails this. Zero padding after EOI (UVC
    cameras send whole buffers) is allowed; the bytes are still stored as sent."""
    if len(data) < 4 or data[:2] != b"\xff\xd8":
        return False
    return bytes(data[-256:]).rstrip(b"\x00\r\n").endswith(b"\xff\xd9")


def part_bytes(jpeg: bytes, boundary: str, extra_headers: dict[str, str] | None = None) -> bytes:
    """One multipart part as MJPEG servers send it (Content-Length lets a reader skip scanning)."""
    head = [f"--{boundary}", "Content-Type: image/jpeg", f"Content-Length: {len(jpeg)}"]
    head += [f"{k}: {v}" for k, v in (extra_headers or {}).items()]
    return ("\r\n".join(head) + "\r\n\r\n").encode("ascii") + jpeg + b"\r\n"


class MjpegReader:
    """Reads the parts of one MJPEG HTTP stream. Errors are DeviceErrors that name the URL and what
    it sent, so the runtime reconnects with back-off and the status says why."""

    def __init__(self, url: str, timeout_s: float = 2.0) -> None:
        self.url = url
        self.timeout_s = timeout_s
        self._conn: http.client.HTTPConnection | None = None
        self._resp: http.client.HTTPResponse | None = None
        self._fp = None
        self.boundary = b""
        self.parts = 0
        self._boundary_read = False  # a part without Content-Length ends by reading the next boundary

    def open(self) -> None:
        u = urllib.parse.urlsplit(self.url)
        if u.scheme not in ("http", "https"):
            raise DeviceError(f"{self.url}: not an http(s) URL")
        cls = http.client.HTTPSConnection if u.scheme == "https" else http.client.HTTPConnection
        conn = cls(u.hostname or "localhost", u.port, timeout=self.timeout_s)
        path = u.path or "/"
        if u.query:
            path += "?" + u.query
        try:
            conn.request("GET", path, headers={"Accept": "multipart/x-mixed-replace, image/jpeg"})
            resp = conn.getresponse()
        except (OSError, http.client.HTTPException) as exc:
            conn.close()
            raise DeviceError(f"{self.url}: cannot connect: {exc}") from exc
        ctype = resp.getheader("Content-Type", "")
        if resp.status != 200:
            conn.close()
            raise DeviceError(f"{self.url}: answered {resp.status} {resp.reason}")
        mime, _, params = ctype.partition(";")
        if mime.strip().lower() != "multipart/x-mixed-replace":
            conn.close()
            raise DeviceError(f"{self.url}: answered {mime.strip() or 'no content type'}, "
                              "not an MJPEG stream (multipart/x-mixed-replace)")
        boundary = ""
        for param in params.split(";"):
            key, _, value = param.strip().partition("=")
            if key.lower() == "boundary":
                boundary = value.strip().strip('"')
        if not boundary:
            conn.close()
            raise DeviceError(f"{self.url}: MJPEG stream without a boundary in its content type ({ctype!r})")
        # the delimiter line is "--" + boundary; servers differ on whether the parameter already has the
        # dashes, so lines are compared without their leading dashes
        self.boundary = boundary.lstrip("-").encode("latin-1")
        self._conn = conn
        self._boundary_read = False
        self._resp = resp  # kept alive: collecting it would close its file
        self._fp = resp  # reads through http.client: chunked transfer encoding is undone there

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
        self._conn = None
        self._resp = None
        self._fp = None

    def read_part(self) -> tuple[bytes, dict[str, str], float]:
        """The next part's body, its headers (lower-case keys) and its arrival time on local_clock.
        Raises DeviceError when the stream stalls, ends or is not MJPEG."""
        fp = self._fp
        if fp is None:
            raise DeviceError(f"{self.url}: not connected")
        try:
            if not self._boundary_read:
                self._skip_to_boundary(fp)
            self._boundary_read = False
            headers = self._read_headers(fp)
            length = headers.get("content-length")
            if length is not None:
                n = int(length)
                if not 0 < n <= MAX_PART_BYTES:
                    raise DeviceError(f"{self.url}: part announces {n} bytes")
                body = fp.read(n)
                if len(body) < n:
                    raise DeviceError(f"{self.url}: stream ended inside a frame ({len(body)} of {n} bytes)")
            else:
                body = self._read_until_boundary(fp)
        except TimeoutError as exc:
            raise DeviceError(f"{self.url}: stalled, no data for {self.timeout_s:g} s") from exc
        except (OSError, http.client.HTTPException, ValueError) as exc:
            raise DeviceError(f"{self.url}: stream broken: {type(exc).__name__}: {exc}") from exc
        self.parts += 1
        return body, headers, pylsl.local_clock()

    def _skip_to_boundary(self, fp) -> None:  # noqa: ANN001 - a buffered socket file
        scanned = 0
        give_up = time.monotonic() + self.timeout_s  # bytes keep coming, but no frames: as bad as a stall
        while True:
            line = fp.readline(65536)
            if not line:
                raise DeviceError(f"{self.url}: the stream ended")
            if self._is_boundary(line):
                return
            scanned += len(line)
            if scanned > SCAN_LIMIT or time.monotonic() > give_up:
                raise DeviceError(f"{self.url}: no MJPEG boundary in {scanned} bytes: not an MJPEG stream")

    def _read_headers(self, fp) -> dict[str, str]:  # noqa: ANN001
        headers: dict[str, str] = {}
        for _ in range(MAX_HEADER_LINES):
            line = fp.readline(65536)
            if not line:
                raise DeviceError(f"{self.url}: the stream ended in a part header")
            text = line.decode("latin-1").strip()
            if not text:
                return headers
            key, sep, value = text.partition(":")
            if not sep:
                raise DeviceError(f"{self.url}: garbage where a part header belongs: {text[:60]!r}")
            headers[key.strip().lower()] = value.strip()
        raise DeviceError(f"{self.url}: part header longer than {MAX_HEADER_LINES} lines")

    def _read_until_boundary(self, fp) -> bytes:  # noqa: ANN001
        """A part without Content-Length: its body ends at CRLF before the next boundary (whose line
        is read here, so the next part starts at its headers)."""
        body = bytearray()
        while True:
            line = fp.readline(65536)
            if not line:
                raise DeviceError(f"{self.url}: the stream ended inside a frame")
            if self._is_boundary(line):
                self._boundary_read = True
                break
            body += line
            if len(body) > MAX_PART_BYTES:
                raise DeviceError(f"{self.url}: a part longer than {MAX_PART_BYTES} bytes: not an MJPEG stream")
        if body.endswith(b"\n"):  # the line end before the delimiter belongs to it (CRLF or a bare LF)
            del body[-(2 if body.endswith(b"\r\n") else 1):]
        return bytes(body)

    def _is_boundary(self, line: bytes) -> bool:
        return line.lstrip(b"-").rstrip(b"\r\n").rstrip(b"-") == self.boundary
