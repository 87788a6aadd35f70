"""Cinema-camera record control: SMPTE timecode arithmetic, the Blackmagic REST client against the
emulator (exact requests, timecode truth, faults) and the event WebSocket. Localhost only."""

from __future__ import annotations

import http.client
import json
import socket
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from websockets.sync.client import connect

from drivers.camera.control import (
    CONTROL_SCHEMES,
    BlackmagicControl,
    ControlError,
    ControlEvent,
    RecordControl,
    control_from_url,
)
from drivers.camera.timecode import Timecode, true_fps
from drivers.sim.blackmagic import BlackmagicEmulator

API = "/control/api/v1"
WAIT_S = 10.0  # generous bound for things that arrive asynchronously; never a speed assertion


# ---- timecode ----

def test_bcd_examples_from_the_api() -> None:
    tc = Timecode.from_bcd(2504458305)  # PROTOCOLS 5.1: 0x95470041
    assert tc == Timecode(15, 47, 0, 41, drop_frame=True)
    assert str(tc) == "15:47:00;41"
    assert tc.to_bcd() == 2504458305
    zero = Timecode.from_bcd(0x8000_0000)
    assert zero == Timecode(0, 0, 0, 0, True) and str(zero) == "00:00:00;00"
    ndf = Timecode.from_bcd(0x0912_5310)
    assert str(ndf) == "09:12:53:10" and not ndf.drop_frame and ndf.to_bcd() == 0x0912_5310


@pytest.mark.parametrize(("value", "words"), [
    (0x0000_A000, ["40960", "0x0000A000", "seconds tens digit is 0xA"]),
    (0x0000_000F, ["0x0000000F", "frames units digit is 0xF"]),
    (0x0060_0000, ["0x00600000", "minutes 60 out of range"]),
    (0x2500_0000, ["0x25000000", "hours 25 out of range"]),
    (0x8000_0060, ["0x80000060", "frames 60 out of range"]),
    (-1, ["-1", "not a 32-bit"]),
])
def test_bad_bcd_raises_naming_value_and_field(value: int, words: list[str]) -> None:
    with pytest.raises(ValueError) as info:
        Timecode.from_bcd(value)
    for word in words:
        assert word in str(info.value)


@pytest.mark.parametrize(("fps", "before", "after"), [
    (29.97, Timecode(0, 0, 59, 29, True), Timecode(0, 1, 0, 2, True)),
    (29.97, Timecode(0, 9, 59, 29, True), Timecode(0, 10, 0, 0, True)),
    (29.97, Timecode(0, 10, 59, 29, True), Timecode(0, 11, 0, 2, True)),
    (59.94, Timecode(0, 0, 59, 59, True), Timecode(0, 1, 0, 4, True)),
    (59.94, Timecode(0, 9, 59, 59, True), Timecode(0, 10, 0, 0, True)),
    (30, Timecode(0, 0, 59, 29), Timecode(0, 1, 0, 0)),
    (25, Timecode(0, 9, 59, 24), Timecode(0, 10, 0, 0)),
])
def test_next_frame_across_minute_boundaries(fps: float, before: Timecode, after: Timecode) -> None:
    n = before.frame_number(fps)
    assert Timecode.from_frame_number(n + 1, fps, before.drop_frame) == after
    assert after.frame_number(fps) == n + 1


def test_drop_frame_known_frame_numbers() -> None:
    assert Timecode(0, 1, 0, 2, True).frame_number(29.97) == 1800
    assert Timecode(0, 10, 0, 0, True).frame_number(29.97) == 17982
    assert Timecode(1, 0, 0, 0, True).frame_number(29.97) == 107892
    assert Timecode(1, 0, 0, 0, True).frame_number(59.94) == 215784
    # the API example at 59.94: 947 minutes, 853 of them drop 4 labels
    tc = Timecode.from_bcd(2504458305)
    assert tc.frame_number(59.94) == 947 * 3600 + 41 - 4 * 853 == 3405829
    assert tc.elapsed_seconds(59.94) == pytest.approx(3405829 * 1001 / 60000, abs=1e-9)
    # drop-frame keeps the label within a few frames of real time (here 15:47:00 + 41/60 s)
    assert abs(tc.elapsed_seconds(59.94) - (15 * 3600 + 47 * 60 + 41 / 60)) < 0.15


def test_elapsed_seconds_uses_the_true_rate() -> None:
    assert Timecode(0, 0, 1, 0).elapsed_seconds(30) == 1.0
    assert Timecode(0, 0, 1, 0).elapsed_seconds(29.97) == pytest.approx(1.001, abs=1e-12)  # non-drop 29.97
    assert Timecode(0, 0, 1, 0).elapsed_seconds("59.94") == pytest.approx(1.001, abs=1e-12)
    assert Timecode(0, 0, 2, 12).elapsed_seconds(25) == 2.48
    # one hour of drop-frame labels is 3600 real seconds to within 3.6 ms
    assert abs(Timecode(1, 0, 0, 0, True).elapsed_seconds(29.97) - 3600) < 0.004
    assert float(true_fps(29.97)) == 30000 / 1001 and true_fps(30, drop_frame=True) == true_fps(29.97)


@pytest.mark.parametrize("fps", [29.97, 59.94])
def test_drop_frame_round_trip_every_frame_for_twenty_minutes(fps: float) -> None:
    previous = None
    drop = 2 if fps < 30 else 4
    for n in range(int(20 * 60 * fps) + 10):
        tc = Timecode.from_frame_number(n, fps, True)
        assert tc.frame_number(fps) == n
        # skipped labels never appear; every other label does, in order
        assert not (tc.seconds == 0 and tc.frames < drop and tc.minutes % 10 != 0)
        if previous is not None:
            assert (tc.hours, tc.minutes, tc.seconds, tc.frames) > previous
        previous = (tc.hours, tc.minutes, tc.seconds, tc.frames)


def test_frame_rules_raise() -> None:
    with pytest.raises(ValueError, match="does not exist"):
        Timecode(0, 1, 0, 1, True).frame_number(29.97)  # a dropped label
    with pytest.raises(ValueError, match="impossible at 25"):
        Timecode(0, 0, 0, 41).frame_number(25)
    with pytest.raises(ValueError, match="only at 29.97 and 59.94"):
        Timecode(0, 0, 0, 0, True).frame_number(25)
    with pytest.raises(ValueError, match="unsupported frame rate"):
        Timecode(0, 0, 0, 0).frame_number(27.5)


def test_from_frame_number_wraps_at_midnight() -> None:
    day = Timecode(23, 59, 59, 29, True).frame_number(29.97) + 1
    assert Timecode.from_frame_number(day, 29.97, True) == Timecode(0, 0, 0, 0, True)
    assert Timecode.from_frame_number(24 * 3600 * 25 + 3, 25) == Timecode(0, 0, 0, 3)


# ---- REST client against the emulator ----

@pytest.fixture
def emulator(request: pytest.FixtureRequest) -> Iterator[BlackmagicEmulator]:
    kwargs = getattr(request, "param", {})
    with BlackmagicEmulator(**kwargs) as emu:
        yield emu


def test_check_start_stop_send_exactly_the_documented_requests(emulator: BlackmagicEmulator) -> None:
    with control_from_url(emulator.url) as ctl:
        assert isinstance(ctl, BlackmagicControl)
        state = ctl.check()
        started = ctl.start("S01_T03")
        stopped = ctl.stop()
    assert emulator.requests == [
        ("GET", f"{API}/media/workingset", None),
        ("GET", f"{API}/transports/0/record", None),
        ("PUT", f"{API}/transports/0/record", {"recording": True, "clipName": "S01_T03"}),
        ("GET", f"{API}/transports/0/record", None),
        ("GET", f"{API}/transports/0/timecode", None),
        ("PUT", f"{API}/transports/0/record", {"recording": False}),
        ("GET", f"{API}/transports/0/timecode", None),
    ]
    assert state == {"ready": True, "problem": None, "recording": False, "media": "usb4608",
                     "remaining_record_s": 20926, "clip_count": 0}
    assert [e.action for e in started + stopped] == ["record_start", "record_stop"]
    assert started[0].clip == stopped[0].clip == "S01_T03"
    assert [c["name"] for c in emulator.clips] == ["S01_T03"]
    # the camera changed state while the PUT was in flight
    clip = emulator.clips[0]
    assert started[0].request_lsl <= clip["start_lsl"] <= started[0].reply_lsl
    assert stopped[0].request_lsl <= clip["stop_lsl"] <= stopped[0].reply_lsl
    marker = json.loads(started[0].to_marker())
    assert list(marker) == sorted(marker)
    assert marker["action"] == "record_start" and marker["timecode"] == started[0].timecode
    assert "\n" not in started[0].to_marker()


@pytest.mark.parametrize("emulator", [{"fps": 60.0}, {"fps": 59.94}, {"fps": 29.97}, {"fps": 25.0},
                                      {"fps": 59.94, "timecode_offset_s": 86390.0}], indirect=True)
def test_logged_timecodes_match_the_camera_truth(emulator: BlackmagicEmulator) -> None:
    truth = emulator.truth()
    fps, drop = truth["fps"], truth["drop_frame"]
    rate = true_fps(fps, drop)
    day = Timecode(23, 59, 59, round(fps) - 1, drop).frame_number(fps) + 1
    with BlackmagicControl(emulator.url) as ctl:
        events = ctl.start("take") + ctl.stop()
    for event in events:
        tc = Timecode.from_bcd(event.timecode_raw)
        assert str(tc) == event.timecode
        assert tc.drop_frame == drop and (";" in event.timecode) == drop
        t0, t1 = event.detail["timecode_request_lsl"], event.detail["timecode_reply_lsl"]
        # the camera read its clock between our request and its reply: its frame count lies between
        lo = int((t0 + truth["timecode_offset_s"]) * rate)
        hi = int((t1 + truth["timecode_offset_s"]) * rate)
        got = tc.frame_number(fps)
        assert (got - lo) % day <= (hi - lo) % day, (event.timecode, lo % day, hi % day)
        # and in seconds: within one frame plus the round trip of the reply time (mod one day of frames)
        expected = (t1 + truth["timecode_offset_s"]) % float(day / rate)
        delta = abs(tc.elapsed_seconds(fps) - expected)
        delta = min(delta, float(day / rate) - delta)
        assert delta <= float(1 / rate) + (t1 - t0) + 1e-6


def test_full_card_is_not_ready_and_start_names_the_card() -> None:
    with BlackmagicEmulator(remaining_record_s=0) as emu, BlackmagicControl(emu.url, start_settle_s=0.2) as ctl:
        state = ctl.check()
        assert state["ready"] is False
        assert state["problem"] == "media usb4608 remainingRecordTime is 0 s (card full?)"
        assert state["remaining_record_s"] == 0
        with pytest.raises(ControlError) as info:
            ctl.start("S01_T04")
        assert str(info.value) == (f"blackmagic http://127.0.0.1:{emu.port}: refused to record: "
                                   "media usb4608 remainingRecordTime is 0 s (card full?)")
        assert emu.clips == [] and not emu.recording
        # the PUT went out and was answered 204: the refusal is only visible by reading the state back
        assert emu.requests[2] == ("PUT", f"{API}/transports/0/record", {"recording": True, "clipName": "S01_T04"})
        assert emu.requests[-1] == ("GET", f"{API}/media/workingset", None)


def test_refusal_without_a_known_reason_says_it_did_not_start() -> None:
    with BlackmagicEmulator(refuse_record=True) as emu, BlackmagicControl(emu.url, start_settle_s=0.2) as ctl:
        with pytest.raises(ControlError, match="did not start recording"):
            ctl.start("x")
        assert not emu.recording


def test_reply_delay_beyond_the_timeout_names_the_timeout_then_reconnects() -> None:
    with BlackmagicEmulator(reply_delay_s=1.5) as emu, BlackmagicControl(emu.url, timeout_s=0.3) as ctl:
        with pytest.raises(ControlError) as info:
            ctl.check()
        assert str(info.value) == (f"blackmagic http://127.0.0.1:{emu.port}: GET /media/workingset "
                                   "timed out after 0.3 s")
        emu.reply_delay_s = 0.0
        assert ctl.check()["ready"] is True  # a fresh connection, not the stale late reply
        assert [r[1] for r in emu.requests] == [f"{API}/media/workingset", f"{API}/media/workingset",
                                               f"{API}/transports/0/record"]


def test_unreachable_camera_raises_naming_it() -> None:
    port = _free_port()
    expected = rf"^blackmagic http://127.0.0.1:{port}: GET /media/workingset failed: cannot connect"
    with BlackmagicControl(f"blackmagic://127.0.0.1:{port}", timeout_s=1.0) as ctl, \
            pytest.raises(ControlError, match=expected):
        ctl.check()


def test_scheme_registry() -> None:
    with pytest.raises(ValueError) as info:
        control_from_url("zcam://10.98.32.1")
    assert "zcam://10.98.32.1" in str(info.value) and "blackmagic://" in str(info.value)

    class Fake(RecordControl):
        def __init__(self, url: str, timeout_s: float) -> None:
            self.url, self.timeout_s = url, timeout_s

        def check(self) -> dict:
            return {"ready": True, "problem": None}

        def start(self, clip_name: str) -> list[ControlEvent]:
            return []

        def stop(self) -> list[ControlEvent]:
            return []

    original = dict(CONTROL_SCHEMES)
    try:
        CONTROL_SCHEMES["ipwebcam"] = Fake
        ctl = control_from_url("ipwebcam://127.0.0.1:8080", 1.5)
        assert isinstance(ctl, Fake) and ctl.timeout_s == 1.5 and ctl.poll_events() == []
    finally:
        CONTROL_SCHEMES.clear()
        CONTROL_SCHEMES.update(original)


def test_emulator_answers_errors_as_json(emulator: BlackmagicEmulator) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", emulator.port, timeout=5)
    try:
        conn.request("GET", f"{API}/no/such/thing")
        reply = conn.getresponse()
        assert reply.status == 404 and "no/such/thing" in json.loads(reply.read())["error"]
        conn.request("PUT", f"{API}/transports/0/record", body=b'{"recording": tru',
                     headers={"Content-Type": "application/json"})
        reply = conn.getresponse()
        assert reply.status == 400 and "invalid JSON" in json.loads(reply.read())["error"]
        conn.request("PUT", f"{API}/transports/0/record", body=b'{"recording": "yes"}')
        reply = conn.getresponse()
        assert reply.status == 400 and reply.read()
        conn.request("GET", f"{API}/clips/list")
        assert json.loads(conn.getresponse().read()) == {"clipList": []}
        conn.request("GET", f"{API}/system/format")
        assert json.loads(conn.getresponse().read())["frameRate"] == "60"
    finally:
        conn.close()
    assert emulator.requests[1] == ("PUT", f"{API}/transports/0/record", None)
    assert emulator.requests[2] == ("PUT", f"{API}/transports/0/record", {"recording": "yes"})
    assert not emulator.recording


# ---- WebSocket events ----

def _wait_for(predicate, what: str) -> None:
    deadline = time.monotonic() + WAIT_S
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"no {what} within {WAIT_S:g} s")
        time.sleep(0.02)


def test_record_start_and_stop_arrive_as_property_events(emulator: BlackmagicEmulator) -> None:
    with BlackmagicControl(emulator.url, events=True) as ctl:
        assert ctl.wait_events_ready(WAIT_S) is True
        assert ctl.property_values["/transports/0/record"] == {"recording": False}
        start = ctl.start("S02_T01")[0]
        received: list[ControlEvent] = []

        def record_values() -> list[object]:
            received.extend(ctl.poll_events())
            return [e.detail["value"] for e in received if e.detail["property"] == "/transports/0/record"]

        _wait_for(lambda: record_values() == [{"recording": True}], "recording true event")
        stop = ctl.stop()[0]
        _wait_for(lambda: record_values() == [{"recording": True}, {"recording": False}], "recording false event")
        _wait_for(lambda: any(e.detail["property"] == "/media/workingset" for e in received + ctl.poll_events()),
                  "workingset event")
    record = [e for e in received if e.detail["property"] == "/transports/0/record"]
    assert all(e.action == "property" and e.request_lsl == e.reply_lsl for e in record)
    assert record[0].reply_lsl >= start.request_lsl and record[1].reply_lsl >= stop.request_lsl
    # not subscribed to the timecode: the camera's 10 Hz timecode events never reach this client
    assert all(e.detail["property"] != "/transports/0/timecode" for e in received)
    assert emulator.ws_requests == [{"type": "request", "data": {
        "action": "subscribe", "properties": ["/transports/0/record", "/media/workingset"]}}]


def test_emulator_websocket_protocol(emulator: BlackmagicEmulator) -> None:
    with connect(emulator.ws_url, open_timeout=5, compression=None) as ws:
        ws.send(json.dumps({"type": "request", "data": {"action": "listProperties"}}))
        listed = json.loads(ws.recv(timeout=5))
        assert listed["type"] == "response" and "/transports/0/timecode" in listed["data"]["properties"]
        assert ws.ping().wait(5)  # answered with a pong
        ws.send(json.dumps({"type": "request", "data": {"action": "subscribe",
                                                        "properties": ["/transports/0/timecode"]}}))
        reply = json.loads(ws.recv(timeout=5))
        assert reply["data"]["success"] is True and set(reply["data"]["values"]) == {"/transports/0/timecode"}
        frames = []
        while len(frames) < 3:
            event = json.loads(ws.recv(timeout=5))
            assert event["type"] == "event" and event["data"]["action"] == "propertyValueChanged"
            assert event["data"]["property"] == "/transports/0/timecode"
            frames.append(Timecode.from_bcd(event["data"]["value"]["timecode"]).frame_number(60))
        # 10 Hz at 60 fps: each event a few frames after the last (modulo midnight)
        assert all(0 < (b - a) % (86400 * 60) < 60 for a, b in zip(frames, frames[1:], strict=False))
        ws.send(json.dumps({"type": "request", "data": {"action": "unsubscribe",
                                                        "properties": ["/transports/0/timecode"]}}))
        # drain events already in flight, then the unsubscribe reply; after it no timecode comes
        while json.loads(ws.recv(timeout=5))["type"] != "response":
            pass
        with pytest.raises(TimeoutError):
            ws.recv(timeout=0.5)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class _NotFound(BaseHTTPRequestHandler):
    """An HTTP/1.1 server that knows nothing: 404 for everything, the WebSocket upgrade included."""

    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        self.send_error(404)

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002
        pass


@pytest.fixture
def thread_errors() -> Iterator[list[threading.ExceptHookArgs]]:
    errors: list[threading.ExceptHookArgs] = []
    previous = threading.excepthook
    threading.excepthook = errors.append
    try:
        yield errors
    finally:
        threading.excepthook = previous


def test_camera_without_websocket_has_no_events_and_no_exception(
        thread_errors: list[threading.ExceptHookArgs]) -> None:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _NotFound)
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    try:
        with BlackmagicControl(f"blackmagic://127.0.0.1:{server.server_address[1]}", events=True) as ctl:
            assert ctl.wait_events_ready(WAIT_S) is False
            assert ctl.events_available is False and "404" in (ctl.events_problem or "")
            assert ctl.poll_events() == []
            with pytest.raises(ControlError, match="answered 404"):
                ctl.check()
    finally:
        server.shutdown()
        server.server_close()
    assert thread_errors == []


def test_refused_websocket_has_no_events(thread_errors: list[threading.ExceptHookArgs]) -> None:
    with BlackmagicControl(f"blackmagic://127.0.0.1:{_free_port()}", timeout_s=1.0) as ctl:
        assert ctl.poll_events() == []  # first use starts the event thread
        assert ctl.wait_events_ready(WAIT_S) is False
    assert thread_errors == []


def test_reconnects_after_the_camera_dropped_the_kept_alive_connection() -> None:
    first = BlackmagicEmulator().start()
    port = first.port
    with BlackmagicControl(first.url) as ctl:
        assert ctl.check()["ready"] is True
        first.stop()  # closes the connection the client keeps alive, like a camera rebooting
        with BlackmagicEmulator(port=port) as second:
            assert ctl.check()["ready"] is True
            # the stale connection was retried once on a new one: the camera saw each request once
            assert second.requests == [("GET", f"{API}/media/workingset", None),
                                       ("GET", f"{API}/transports/0/record", None)]
