"""Record control of a phone running an IP-Webcam-style app (PROTOCOLS.md 6.1): `/startvideo` and
`/stopvideo` record full quality on the phone itself, `/status.json` answers when it is reachable.
Phones give no timecode; the request and reply times are what the marker stream gets."""

from __future__ import annotations

import http.client
import json
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

import pylsl

from drivers.camera.control import CONTROL_SCHEMES, ControlError, ControlEvent, RecordControl


class IpWebcamControl(RecordControl):
    def __init__(self, url: str, timeout_s: float = 2.0) -> None:
        u = urllib.parse.urlsplit(url)
        if u.scheme != "ipwebcam" or not u.hostname:
            raise ValueError(f"not an IP Webcam URL: {url!r} (expected ipwebcam://host:port)")
        self.url = url
        self.base = f"http://{u.hostname}:{u.port or 8080}"
        self.timeout_s = timeout_s
        self.clip: str | None = None

    def _get(self, path: str) -> tuple[bytes, float, float]:
        sent = pylsl.local_clock()
        try:
            with urllib.request.urlopen(self.base + path, timeout=self.timeout_s) as resp:
                body = resp.read()
        except urllib.error.HTTPError as exc:
            raise ControlError(f"ipwebcam {self.base}: GET {path} answered {exc.code} {exc.reason}") from exc
        except (urllib.error.URLError, OSError, http.client.HTTPException) as exc:
            reason = getattr(exc, "reason", exc)
            raise ControlError(f"ipwebcam {self.base}: GET {path} failed: {reason}") from exc
        return body, sent, pylsl.local_clock()

    def check(self) -> dict[str, Any]:
        body, _, _ = self._get("/status.json?show_avail=1")
        try:
            status = json.loads(body)
        except ValueError as exc:
            raise ControlError(f"ipwebcam {self.base}: /status.json is not JSON") from exc
        mode = (status.get("video_status") or {}).get("mode")
        return {"ready": True, "problem": None, "recording": mode == "recording",
                "video_size": (status.get("curvals") or {}).get("video_size")}

    def start(self, clip_name: str) -> list[ControlEvent]:
        query = urllib.parse.urlencode({"force": 1, "tag": clip_name})
        _, sent, replied = self._get(f"/startvideo?{query}")
        self.clip = clip_name
        return [ControlEvent("record_start", sent, replied, None, None, clip_name, {})]

    def stop(self) -> list[ControlEvent]:
        _, sent, replied = self._get("/stopvideo?force=1")
        return [ControlEvent("record_stop", sent, replied, None, None, self.clip, {})]


CONTROL_SCHEMES["ipwebcam"] = IpWebcamControl
