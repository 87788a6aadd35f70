"""The chest-strap driver: bleak to the strap (or its emulator, or a recorded notification log),
the HRS and PMD parsers, sensor times mapped onto the host clock, breathing rate, LSL streams.

Streams: hr (bpm, irregular), rr (ms, one sample per beat, stamped at the beat), ecg (microvolts,
130 Hz), acc (milli-g x/y/z), breathing (breaths/min and quality 0..1, 1 Hz).
"""

from __future__ import annotations

import asyncio
import json
import logging
import queue
import threading
import time
from pathlib import Path
from typing import Any, TextIO

import numpy as np
import pylsl
from pydantic import BaseModel, ConfigDict, Field

from drivers.chest import hrs, pmd
from drivers.chest.breathing import BreathingEstimator
from drivers.runtime.clockfit import ClockFit, MonotonicStamps
from drivers.runtime.driver import EMULATED, DeviceError, Driver, DriverContext
from drivers.runtime.streams import IRREGULAR_RATE, StreamSpec, channels
from drivers.sim.h10 import ADDRESS, EmulatedH10Backend, H10Settings, SimulatedH10
from drivers.sim.lab import SimLabSettings

log = logging.getLogger(__name__)

SLEW_S = 5e-4  # a refit of the sensor clock moves ECG and ACC stamps by at most this per frame (no steps)

RR_BREAK_S = 1.5  # notifications further apart than their RR intervals explain: some were lost
COMMAND_TIMEOUT_S = 5.0


class ChestSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    address: str | None = Field(None, description="the strap's Bluetooth address")
    name: str | None = Field(None, description="or the start of its advertised name, e.g. 'Polar H10'")
    ecg: bool = True
    acc_rate: int = Field(200, description="Hz: 25, 50, 100 or 200; 0 turns the accelerometer off")
    acc_range_g: int = Field(8, description="2, 4 or 8")
    breathing: bool = True
    log: str | None = Field(None, description="save every notification to this JSON-lines file")
    replay: str | None = Field(None, description="replay a notification log instead of a strap")
    replay_speed: float = Field(1.0, ge=0, description="1 = real time, 0 = as fast as possible")
    stream_prefix: str | None = Field(None, description="stream names start with this (default: the device id)")
    emulator: H10Settings = H10Settings()


class ChestDriver(Driver):
    kind = "chest"
    reports_truth = True
    Settings = ChestSettings

    @classmethod
    def stream_specs(cls, ctx: DriverContext) -> list[StreamSpec]:
        s: ChestSettings = ctx.settings or ChestSettings()
        p = s.stream_prefix or ctx.device_id
        return [
            ctx.spec("hr", f"{p} HR", "HeartRate", channels(["hr"], "bpm", "HR"), IRREGULAR_RATE),
            ctx.spec("rr", f"{p} RR", "RR", channels(["rr"], "ms", "RR"), IRREGULAR_RATE),
            ctx.spec("ecg", f"{p} ECG", "ECG", channels(["ecg"], "microvolts", "ECG"), 130.0),
            ctx.spec("acc", f"{p} ACC", "Accelerometer", channels(["x", "y", "z"], "mG", "ACC"),
                     float(s.acc_rate)),
            ctx.spec("breathing", f"{p} breathing", "Respiration",
                     (*channels(["breathing_rate"], "breaths/min", "Respiration"),
                      *channels(["quality"], "0..1", "Quality")), 1.0),
        ]

    def __init__(self, ctx: DriverContext) -> None:
        super().__init__(ctx)
        s: ChestSettings = self.settings
        self.emulated = ctx.connection == EMULATED
        self.strap: SimulatedH10 | None = None
        if self.emulated:
            self.strap = SimulatedH10(s.emulator, ctx.sim or SimLabSettings(), seed=sum(ctx.device_id.encode()))
        self.queue: queue.Queue[tuple[str, bytes, float]] = queue.Queue()
        self.loop: asyncio.AbstractEventLoop | None = None
        self.loop_thread: threading.Thread | None = None
        self.client: Any = None
        self.disconnected = threading.Event()
        self.responses: dict[tuple[int, int], asyncio.Future] = {}
        self.log_file: TextIO | None = open(s.log, "a") if s.log else None  # noqa: SIM115 - lives with the driver
        self._reset_timing()
        self.breathing = BreathingEstimator()
        self.next_breath = 0.0
        self.payload_errors = 0
        self.notes: list[str] = []
        self.battery: int | None = None
        self.location: str | None = None
        self.mtu: int | None = None
        self.replay_entries: list[dict[str, Any]] = []
        self.replay_pos = 0
        self.replay_loaded = False
        self.replay_started = 0.0

    def _reset_timing(self) -> None:
        self.sensor_fit = ClockFit(1e-9)  # sensor ns -> host seconds, shared by ECG and ACC
        self.monotonic = {pmd.ECG: MonotonicStamps(SLEW_S), pmd.ACC: MonotonicStamps(SLEW_S)}
        self.clocks = {pmd.ECG: pmd.SampleClock(130.0), pmd.ACC: pmd.SampleClock(float(self.settings.acc_rate or 1))}
        self.rr_fit = ClockFit(1 / 1024.0)  # cumulative RR (the strap's beat timer) -> host seconds
        self.rr_total = 0
        self.last_hr_arrival: float | None = None
        self.last_hr_stamp = -np.inf
        self.rr_monotonic = MonotonicStamps()

    # -- connection -----------------------------------------------------------------------------------
    def open(self) -> None:
        if self.settings.replay:
            self._open_replay()
            return
        self.disconnected.clear()
        if self.loop is None:
            self.loop = asyncio.new_event_loop()
            self.loop_thread = threading.Thread(target=self.loop.run_forever, name="ble", daemon=True)
            self.loop_thread.start()
        future = asyncio.run_coroutine_threadsafe(self._connect(), self.loop)
        try:
            future.result(timeout=40)
        except DeviceError:
            raise
        except Exception as exc:
            future.cancel()  # a timed-out attempt must not connect behind the next one
            raise DeviceError(f"cannot connect to the strap: {type(exc).__name__}: {exc}") from None

    async def _connect(self) -> None:
        from bleak import BleakClient, BleakScanner

        s: ChestSettings = self.settings
        if self.emulated:
            client = BleakClient(ADDRESS, disconnected_callback=self._on_disconnect, backend=EmulatedH10Backend,
                                 device=self.strap)
        else:
            if s.address:
                device = await BleakScanner.find_device_by_address(s.address, timeout=10.0)
            elif s.name:
                device = await BleakScanner.find_device_by_filter(
                    lambda d, adv: bool(d.name) and d.name.startswith(s.name), timeout=10.0)
            else:
                raise DeviceError("give the strap's address or name (settings.address or settings.name)")
            if device is None:
                raise DeviceError(f"no strap {'at ' + s.address if s.address else 'named ' + repr(s.name)} found "
                                  "within 10 s (is it worn, charged, and not connected to another app?)")
            client = BleakClient(device, disconnected_callback=self._on_disconnect)
        await client.connect()
        self.client = client
        self.mtu = client.mtu_size
        try:
            self.battery = (await client.read_gatt_char(hrs.BATTERY_LEVEL))[0]
            self.location = hrs.LOCATIONS.get((await client.read_gatt_char(hrs.BODY_SENSOR_LOCATION))[0], "unknown")
        except Exception as exc:  # optional characteristics
            self.notes.append(f"battery/location not readable: {exc}")
        await client.start_notify(hrs.HR_MEASUREMENT, self._notifier(hrs.HR_MEASUREMENT))
        if s.ecg or s.acc_rate:
            # the H10's order: both subscriptions first, then commands (it ignores commands otherwise)
            await client.start_notify(pmd.PMD_CONTROL, self._notifier(pmd.PMD_CONTROL))
            await client.start_notify(pmd.PMD_DATA, self._notifier(pmd.PMD_DATA))
            if s.ecg:
                await self._command(pmd.ECG_START, "start ECG")
            if s.acc_rate:
                await self._command(pmd.acc_start(s.acc_rate, s.acc_range_g), "start ACC")

    async def _command(self, data: bytes, what: str) -> pmd.ControlResponse:
        key = (data[0], data[1])
        future = asyncio.get_running_loop().create_future()
        self.responses[key] = future
        await self.client.write_gatt_char(pmd.PMD_CONTROL, data, response=True)
        try:
            response = await asyncio.wait_for(future, COMMAND_TIMEOUT_S)
        except TimeoutError:
            raise DeviceError(f"the strap did not answer '{what}' within {COMMAND_TIMEOUT_S:g} s") from None
        finally:
            self.responses.pop(key, None)
        if not response.ok and response.status != 6:  # 6: already in that state
            hint = " (reconnect so the OS negotiates a larger MTU)" if response.status == 10 else ""
            raise DeviceError(f"the strap refused '{what}': {response.status_text} (status {response.status}){hint}")
        return response

    def _notifier(self, uuid: str):  # noqa: ANN202 - bleak callback
        def callback(_char: Any, data: bytearray) -> None:
            arrival = pylsl.local_clock()
            payload = bytes(data)
            if uuid == pmd.PMD_CONTROL:
                self._control_response(payload)
            self.queue.put((uuid, payload, arrival))

        return callback

    def _control_response(self, payload: bytes) -> None:
        try:
            parsed = pmd.parse_control(payload)
        except hrs.PayloadError as exc:
            self.notes.append(str(exc))
            return
        if isinstance(parsed, list):
            self.notes.append("the strap stopped measurements on its own: "
                              + ", ".join(pmd.TYPE_NAMES.get(t, str(t)) for t in parsed))
            return
        future = self.responses.get((parsed.op, parsed.meas_type))
        if future is not None and not future.done():
            future.set_result(parsed)

    def _on_disconnect(self, _client: Any) -> None:
        self.disconnected.set()

    def close(self) -> None:
        if self.settings.replay or self.loop is None or self.client is None:
            return
        future = asyncio.run_coroutine_threadsafe(self._disconnect(), self.loop)
        try:
            future.result(timeout=10)
        except Exception as exc:  # the link may already be gone
            log.info("%s: disconnect: %s", self.ctx.device_id, exc)
        self.client = None

    async def _disconnect(self) -> None:
        client = self.client
        if client.is_connected:
            for mtype in ((pmd.ECG,) if self.settings.ecg else ()) + ((pmd.ACC,) if self.settings.acc_rate else ()):
                try:  # stop the streams first, or the H10 keeps measuring (and misbehaves on reconnect)
                    await client.write_gatt_char(pmd.PMD_CONTROL, pmd.stop_command(mtype), response=True)
                except Exception as exc:
                    self.notes.append(f"stopping measurement {mtype}: {exc}")
            await client.disconnect()

    def shutdown(self) -> None:
        if self.loop is not None:
            self.loop.call_soon_threadsafe(self.loop.stop)
        if self.log_file is not None:
            self.log_file.close()

    # -- data -----------------------------------------------------------------------------------------
    def read(self) -> None:
        if self.settings.replay:
            self._read_replay()
            return
        if self.disconnected.is_set():
            self.disconnected.clear()
            self._reset_timing()
            raise DeviceError("the strap disconnected")
        try:
            uuid, payload, arrival = self.queue.get(timeout=0.05)
        except queue.Empty:
            return
        self.process(uuid, payload, arrival)

    def process(self, uuid: str, payload: bytes, arrival: float) -> None:
        """One notification, live or replayed: parse, stamp, publish. Never raises."""
        if self.log_file is not None:
            self.log_file.write(json.dumps({"t": arrival, "char": uuid, "hex": payload.hex()}) + "\n")
        try:
            if uuid == hrs.HR_MEASUREMENT:
                self._heart_rate(hrs.parse_heart_rate(payload), arrival)
            elif uuid == pmd.PMD_DATA:
                self._frame(pmd.parse_frame(payload), arrival)
        except hrs.PayloadError as exc:
            self.payload_errors += 1
            self.notes.append(str(exc))
            del self.notes[:-10]
        if self.settings.breathing and arrival >= self.next_breath:
            self._breathing(arrival)

    def _heart_rate(self, m: hrs.HeartRate, arrival: float) -> None:
        rr = [r for r in m.rr_1024 if r > 0]
        if rr:
            if self.last_hr_arrival is not None and arrival - self.last_hr_arrival > sum(rr) / 1024.0 + RR_BREAK_S:
                self.rr_fit.reset()  # notifications were lost: the beat chain breaks here
                self.rr_total = 0
            ends = self.rr_total + np.cumsum(rr)
            self.rr_total = int(ends[-1])
            self.rr_fit.add(self.rr_total, arrival)
            beat_times = self.rr_monotonic.clamp(ends, self.rr_fit.time_of(ends), self.rr_fit.slope)
            rr_ms = np.array(rr, dtype=np.float64) * 1000.0 / 1024.0
            self.publish("rr", rr_ms.astype(np.float32)[:, None], beat_times)
            self.breathing.add_rr(beat_times, rr_ms)
            stamp = float(beat_times[-1])
        else:
            stamp = arrival
        stamp = max(stamp, self.last_hr_stamp + 1e-6)  # beat-stamped and arrival-stamped values interleave
        self.last_hr_stamp = stamp
        self.last_hr_arrival = arrival
        self.publish("hr", np.array([[m.bpm]], dtype=np.float32), [stamp])

    def _frame(self, frame: pmd.PmdFrame, arrival: float) -> None:
        clock = self.clocks.get(frame.meas_type)
        if clock is None:
            return
        resets = clock.resets
        sensor_ns = clock.times(frame)
        if clock.resets != resets:
            self.notes.append(clock.notes[-1])
            self.sensor_fit.reset()
            self.monotonic = {pmd.ECG: MonotonicStamps(SLEW_S), pmd.ACC: MonotonicStamps(SLEW_S)}
            for other in self.clocks.values():
                other.last_ns = None
        self.sensor_fit.add(int(sensor_ns[-1]), arrival)
        stamps = self.monotonic[frame.meas_type].clamp(sensor_ns, self.sensor_fit.time_of(sensor_ns),
                                                       self.sensor_fit.slope)
        if frame.meas_type == pmd.ECG:
            self.publish("ecg", frame.samples.astype(np.float32), stamps)
        else:
            self.publish("acc", frame.samples.astype(np.float32), stamps)
            self.breathing.add_acc(stamps, frame.samples)

    def _breathing(self, now: float) -> None:
        """Once a second: the fused estimate, or NaN with quality 0 while the window is too short."""
        self.next_breath = max(self.next_breath + 1.0, now)
        fused, _acc, _rsa = self.breathing.estimate(now)
        self.publish("breathing", np.array([[fused.rate_bpm, fused.quality]], dtype=np.float32), [now])

    # -- replay ---------------------------------------------------------------------------------------
    def _open_replay(self) -> None:
        path = Path(self.settings.replay or "")
        if not path.is_file():
            raise DeviceError(f"{path}: notification log not found")
        entries = []
        for n, line in enumerate(path.read_text().splitlines(), 1):
            if not line.strip():
                continue
            try:
                e = json.loads(line)
                entries.append({"t": float(e["t"]), "char": str(e["char"]).lower(), "data": bytes.fromhex(e["hex"])})
            except (ValueError, KeyError, TypeError) as exc:
                raise DeviceError(f"{path}:{n}: not a notification log line ({exc})") from None
        self.replay_entries = entries
        self.replay_loaded = True
        self.replay_pos = 0
        self.replay_started = time.monotonic()

    def _read_replay(self) -> None:
        if self.replay_pos >= len(self.replay_entries):
            self.stop_event.wait(0.1)
            return
        entry = self.replay_entries[self.replay_pos]
        speed = self.settings.replay_speed
        if speed > 0:
            due = (entry["t"] - self.replay_entries[0]["t"]) / speed - (time.monotonic() - self.replay_started)
            if due > 0 and self.stop_event.wait(min(due, 0.05)):
                return
            if due > 0.05:
                return
        self.replay_pos += 1
        self.process(entry["char"], entry["data"], entry["t"])

    @property
    def replay_done(self) -> bool:
        return self.replay_loaded and self.replay_pos >= len(self.replay_entries)

    # -- status ---------------------------------------------------------------------------------------
    def status_extra(self) -> dict[str, Any]:
        return {"battery": self.battery, "location": self.location, "mtu": self.mtu,
                "payload_errors": self.payload_errors, "notes": self.notes[-3:],
                "clock_resets": sum(c.resets for c in self.clocks.values()),
                "emulated": self.emulated, "replay": self.settings.replay}

    def commands(self) -> dict[str, Any]:
        return {"truth": self.truth} if self.strap is not None else {}

    def truth(self) -> dict[str, Any]:
        assert self.strap is not None
        return {self.ctx.device_id: self.strap.truth()}
