"""A simulated Polar H10 on a simulated subject, reached through bleak's own client interface.

`SimulatedH10` is the strap: a heart with respiratory sinus arrhythmia, a chest that tilts with each
breath and moves with the lift, a sensor clock (ns since 2000-01-01, starting from the H10's default
2019-01-01 and restarting there on power-down) that drifts, and the GATT behaviour the driver must
cope with: no control-point answer until both the control point and the data characteristic are
subscribed, streams that stop when the link drops. `EmulatedH10Backend` is a bleak backend
(`BleakClient(address, backend=EmulatedH10Backend, device=strap)`): the driver talks to it through
the real BleakClient, byte for byte as to a strap. This is the only seam: the machine has no radio.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Callable
from typing import Any

import numpy as np
import pylsl
from bleak.backends.characteristic import BleakGATTCharacteristic
from bleak.backends.client import BaseBleakClient
from bleak.backends.service import BleakGATTService, BleakGATTServiceCollection
from bleak.exc import BleakError
from pydantic import BaseModel, ConfigDict, Field

from drivers.chest import hrs, pmd
from drivers.sim.lab import DeviceTruth, SimLabSettings, heart_artifact

ECG_FRAME = 73
ACC_FRAME = 36
ADDRESS = "E0:4F:43:10:00:01"
NAME = "Polar H10 5A3C0F10"


class H10Faults(BaseModel):
    model_config = ConfigDict(extra="forbid")

    disconnect_at_s: float | None = Field(None, ge=0, description="the link drops this long after connecting")
    power_cycle_at_s: float | None = Field(None, ge=0, description="the sensor clock restarts at its default")
    truncated_every: int | None = Field(None, ge=2, description="send every Nth ECG frame cut short")


class H10Settings(BaseModel):
    """The simulated strap and subject (rig: [devices.settings.emulator])."""

    model_config = ConfigDict(extra="forbid")

    breath_tilt_deg: float = Field(2.0, ge=0, description="chest-wall tilt per breath")
    lifting: bool = True
    acc_noise_mg: float = Field(3.0, ge=0)
    ecg_rate_error: float = Field(0.004, description="the H10's ECG runs near, not at, 130 Hz")
    connection_interval_s: float = Field(0.030, gt=0, description="BLE notifications wait for a connection event")
    mtu: int = Field(232, ge=23)
    battery: int = Field(87, ge=0, le=100)
    truth: DeviceTruth = DeviceTruth(latency_s=0.02, jitter_s=0.005, drift_ppm=-30.0)
    faults: H10Faults = H10Faults()


class SimBody:
    """The subject as a chest strap sees it: the lab's heart and breathing (drivers.sim.lab), ECG,
    chest tilt and motion, on the true clock."""

    def __init__(self, s: H10Settings, sim: SimLabSettings, t_start: float, seed: int) -> None:
        self.s = s
        self.sim = sim
        self.rng = np.random.default_rng(seed)

    def breathing(self, t: np.ndarray) -> np.ndarray:
        return self.sim.breathing(t)

    def ecg(self, t: np.ndarray) -> np.ndarray:
        """Microvolts: QRS, T wave and a breathing baseline."""
        t = np.asarray(t, dtype=np.float64)
        out = 80.0 * self.breathing(t) + 1200.0 * heart_artifact(self.sim, t)
        for beat in self.sim.heart_beats(float(t[0]) - 0.6, float(t[-1])):
            out = out + 250.0 * np.exp(-0.5 * ((t - beat - 0.25) / 0.04) ** 2)
        return np.round(out)

    def acc(self, t: np.ndarray) -> np.ndarray:
        """Milli-g in the strap's axes (y up along the body, z out of the chest): gravity tilted by each
        breath, plus the lift's vertical acceleration and a little sway."""
        tilt = np.deg2rad(self.s.breath_tilt_deg) * self.breathing(t) + np.deg2rad(5.0)
        lift = np.zeros_like(t)
        sway = np.zeros_like(t)
        if self.s.lifting:
            w = 2 * np.pi / self.sim.lift_period_s
            lift = 60.0 * np.cos(w * t)
            sway = 3.0 * np.sin(w * t + 0.7)
        noise = self.rng.normal(0.0, self.s.acc_noise_mg, (len(t), 3))
        x = sway + noise[:, 0]
        y = -1000.0 * np.cos(tilt) + lift + noise[:, 1]
        z = 1000.0 * np.sin(tilt) + noise[:, 2]
        return np.round(np.stack([x, y, z], axis=1))


class SimulatedH10:
    """The strap's state machine and its sensor clock. One per strap; it outlives connections."""

    def __init__(self, settings: H10Settings | None = None, sim: SimLabSettings | None = None, seed: int = 5) -> None:
        self.s = settings or H10Settings()
        self.sim = sim or SimLabSettings()
        self.seed = seed
        self.powered_at = pylsl.local_clock()
        self.clock_base_ns = pmd.H10_DEFAULT_TIME_NS
        self.body = SimBody(self.s, self.sim, self.powered_at, seed)
        self.rng = np.random.default_rng([seed, 1])
        self.connected = False
        self.connected_at = 0.0
        self.subscribed: dict[str, Callable[[bytearray], None]] = {}
        self.streaming: dict[int, dict[int, int]] = {}
        self.next_sample: dict[int, int] = {}
        self.stream_t0: dict[int, float] = {}
        self.ecg_starts: list[dict[str, float]] = []  # ECG sample k of a start is taken at t0 + k / true_rate
        self.hr_next = 0.0
        self.last_beat: float | None = None  # the last beat an HR notification reported
        self.frames_sent = 0
        self.power_cycles = 0
        self.log: list[dict[str, Any]] = []

    # -- clocks -------------------------------------------------------------------------------------
    @property
    def drift(self) -> float:
        return self.s.truth.drift_ppm * 1e-6

    def sensor_ns(self, t: np.ndarray | float) -> np.ndarray:
        elapsed = np.asarray(t) - self.powered_at
        return self.clock_base_ns + np.round(elapsed * (1 + self.drift) * 1e9).astype(np.int64)

    def rate_of(self, meas_type: int) -> float:
        nominal = 130.0 * (1 + self.s.ecg_rate_error) if meas_type == pmd.ECG else float(
            self.streaming[meas_type][pmd.SETTING_SAMPLE_RATE])
        return nominal * (1 + self.drift)  # samples per true second

    def power_cycle(self, now: float) -> None:
        """Off and on again: the sensor clock restarts from the H10's default time."""
        self.powered_at = now
        self.clock_base_ns = pmd.H10_DEFAULT_TIME_NS
        self.power_cycles += 1
        self.log.append({"kind": "power_cycle", "at": now})

    # -- GATT ---------------------------------------------------------------------------------------
    def read(self, uuid: str) -> bytes:
        if uuid == pmd.PMD_CONTROL:
            return bytes([0x0F, 0x05, 0x00, 0x00, 0x00, 0x00, 0x00])  # features: ECG + ACC
        if uuid == hrs.BATTERY_LEVEL:
            return bytes([self.s.battery])
        if uuid == hrs.BODY_SENSOR_LOCATION:
            return bytes([1])
        raise BleakError(f"characteristic {uuid} cannot be read")

    def control(self, data: bytes) -> bytes | None:
        """A control-point write; the response notification, or None when the H10 stays silent."""
        if not (pmd.PMD_CONTROL in self.subscribed and pmd.PMD_DATA in self.subscribed):
            self.log.append({"kind": "ignored_command", "hex": data.hex()})
            return None  # the real quirk: no answer until both characteristics notify
        if len(data) < 2:
            return bytes([0xF0, data[0] if data else 0, 0, 4, 0])
        op, mtype = data[0], data[1]
        if mtype not in (pmd.ECG, pmd.ACC):
            return bytes([0xF0, op, mtype, 2, 0])
        if op == pmd.OP_GET_SETTINGS:
            if mtype == pmd.ECG:
                params = pmd.encode_settings({0: [130], 1: [14]})
            else:
                params = pmd.encode_settings({0: [25, 50, 100, 200], 1: [16], 2: [2, 4, 8]})
            return bytes([0xF0, op, mtype, 0, 0]) + params
        if op == pmd.OP_START:
            if self.s.mtu < pmd.MIN_MTU:
                return bytes([0xF0, op, mtype, 10, 0])
            if mtype in self.streaming:
                return bytes([0xF0, op, mtype, 6, 0])
            try:
                settings = {k: v[0] for k, v in pmd.parse_settings(data[2:]).items()}
            except hrs.PayloadError:
                return bytes([0xF0, op, mtype, 5, 0])
            allowed = {pmd.ECG: {0: [130], 1: [14]}, pmd.ACC: {0: [25, 50, 100, 200], 1: [16], 2: [2, 4, 8]}}[mtype]
            for key, value in settings.items():
                if key in allowed and value not in allowed[key]:
                    return bytes([0xF0, op, mtype, {0: 8, 1: 7, 2: 9}[key], 0])
            self.streaming[mtype] = settings
            now = pylsl.local_clock()
            self.stream_t0[mtype] = now
            self.next_sample[mtype] = 0
            if mtype == pmd.ECG:
                self.ecg_starts.append({"t0": now, "true_rate": self.rate_of(mtype)})
            return bytes([0xF0, op, mtype, 0, 0])
        if op == pmd.OP_STOP:
            if mtype not in self.streaming:
                return bytes([0xF0, op, mtype, 6, 0])
            del self.streaming[mtype]
            return bytes([0xF0, op, mtype, 0, 0])
        return bytes([0xF0, op, mtype, 1, 0])

    def link_lost(self) -> None:
        """The connection ends: the H10 stops its measurements (the client must start them again)."""
        self.connected = False
        self.streaming.clear()
        self.subscribed.clear()

    # -- what is due ----------------------------------------------------------------------------------
    def due(self, now: float) -> list[tuple[float, str, bytes]]:
        """Notifications whose data is complete by `now`: (true time ready, characteristic, payload)."""
        out: list[tuple[float, str, bytes]] = []
        for mtype in list(self.streaming):
            frame = ECG_FRAME if mtype == pmd.ECG else ACC_FRAME
            rate = self.rate_of(mtype)
            t0 = self.stream_t0[mtype]
            while True:
                k0 = self.next_sample[mtype]
                t_last = t0 + (k0 + frame - 1) / rate
                if t_last > now:
                    break
                t = t0 + np.arange(k0, k0 + frame) / rate
                if mtype == pmd.ECG:
                    payload = pmd.encode_frame(pmd.ECG, int(self.sensor_ns(t_last)), 0, self.body.ecg(t))
                    self.frames_sent += 1
                    n = self.s.faults.truncated_every
                    if n and self.frames_sent % n == 0:
                        payload = payload[:-2]
                        self.log.append({"kind": "truncated", "frame_ns": int(self.sensor_ns(t_last))})
                else:
                    payload = pmd.encode_frame(pmd.ACC, int(self.sensor_ns(t_last)), 1, self.body.acc(t))
                out.append((t_last, pmd.PMD_DATA, payload))
                self.next_sample[mtype] = k0 + frame
        if hrs.HR_MEASUREMENT in self.subscribed:
            while self.hr_next <= now:
                beats = self.sim.heart_beats(self.hr_next - 5.0, self.hr_next)
                since = self.last_beat if self.last_beat is not None else self.hr_next - 1.0
                new = [i for i in range(1, len(beats)) if beats[i] > since]
                rr = [int(round((beats[i] - beats[i - 1]) * 1024.0)) for i in new]
                bpm = int(round(61440.0 / rr[-1])) if rr else int(round(self.sim.heart_bpm))
                out.append((self.hr_next, hrs.HR_MEASUREMENT, hrs.encode_heart_rate(bpm, rr, contact=True)))
                if new:
                    self.last_beat = float(beats[new[-1]])
                self.hr_next += 1.0
        return sorted(out, key=lambda x: x[0])

    def truth(self) -> dict[str, Any]:
        return {
            "kind": "chest", "powered_at": self.powered_at, "clock_base_ns": self.clock_base_ns,
            "drift_ppm": self.s.truth.drift_ppm, "latency_s": self.s.truth.latency_s,
            "jitter_s": self.s.truth.jitter_s, "connection_interval_s": self.s.connection_interval_s,
            "hr_bpm": self.sim.heart_bpm, "breaths_per_min": self.sim.breaths_per_min,
            "ecg_true_rate": 130.0 * (1 + self.s.ecg_rate_error) * (1 + self.drift),
            "sensor_time": "clock_base_ns + (t - powered_at) * (1 + drift_ppm 1e-6) * 1e9 ns at true host time t",
            "power_cycles": self.power_cycles, "ecg_starts": self.ecg_starts,
        }


class EmulatedH10Backend(BaseBleakClient):
    """A bleak client backend whose peripheral is a SimulatedH10 (pass `device=` to BleakClient)."""

    GATT = [
        (hrs.HR_SERVICE, [(hrs.HR_MEASUREMENT, ["notify"]), (hrs.BODY_SENSOR_LOCATION, ["read"])]),
        (hrs.BATTERY_SERVICE, [(hrs.BATTERY_LEVEL, ["read", "notify"])]),
        (pmd.PMD_SERVICE, [(pmd.PMD_CONTROL, ["read", "write", "indicate"]), (pmd.PMD_DATA, ["notify"])]),
    ]

    def __init__(self, address_or_ble_device: Any, *, disconnected_callback: Callable[[], None] | None = None,
                 timeout: float = 10.0, device: SimulatedH10 | None = None, **kwargs: Any) -> None:
        super().__init__(address_or_ble_device, disconnected_callback=disconnected_callback, timeout=timeout)
        if device is None:
            raise BleakError("EmulatedH10Backend needs device=SimulatedH10(...)")
        self.device = device
        self._task: asyncio.Task | None = None
        self._chars: dict[str, BleakGATTCharacteristic] = {}

    @property
    def name(self) -> str:
        return NAME

    @property
    def mtu_size(self) -> int:
        return self.device.s.mtu

    @property
    def is_connected(self) -> bool:
        return self.device.connected

    def _build_services(self) -> BleakGATTServiceCollection:
        services = BleakGATTServiceCollection()
        handle = 1
        for service_uuid, chars in self.GATT:
            service = BleakGATTService(None, handle, service_uuid)
            services.add_service(service)
            handle += 1
            for uuid, props in chars:
                char = BleakGATTCharacteristic(None, handle, uuid, props, lambda: self.mtu_size - 3, service)
                services.add_characteristic(char)
                self._chars[uuid] = char
                handle += 2
        return services

    async def connect(self, pair: bool = False, **kwargs: Any) -> None:
        self.services = self._build_services()
        self.device.connected = True
        self.device.connected_at = pylsl.local_clock()
        self.device.hr_next = self.device.connected_at + 1.0
        self._task = asyncio.get_running_loop().create_task(self._deliver())

    async def disconnect(self) -> None:
        await self._stop_task()
        self.device.link_lost()

    async def _stop_task(self) -> None:
        if self._task is not None and self._task is not asyncio.current_task():
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
        self._task = None

    async def pair(self, *args: Any, **kwargs: Any) -> None:
        return None

    async def unpair(self) -> None:
        return None

    async def read_gatt_char(self, characteristic: BleakGATTCharacteristic, **kwargs: Any) -> bytearray:
        self._require()
        return bytearray(self.device.read(characteristic.uuid))

    async def read_gatt_descriptor(self, descriptor: Any, **kwargs: Any) -> bytearray:
        raise BleakError("descriptors are not emulated")

    async def write_gatt_char(self, characteristic: BleakGATTCharacteristic, data: Any, response: bool = True) -> None:
        self._require()
        if characteristic.uuid != pmd.PMD_CONTROL:
            raise BleakError(f"characteristic {characteristic.uuid} is not writable")
        reply = self.device.control(bytes(data))
        if reply is not None:
            callback = self.device.subscribed.get(pmd.PMD_CONTROL)
            loop = asyncio.get_running_loop()
            loop.call_later(self.device.s.connection_interval_s, lambda: callback and callback(bytearray(reply)))

    async def write_gatt_descriptor(self, descriptor: Any, data: Any) -> None:
        raise BleakError("descriptors are not emulated")

    async def start_notify(self, characteristic: BleakGATTCharacteristic, callback: Callable[[bytearray], None],
                           **kwargs: Any) -> None:
        self._require()
        self.device.subscribed[characteristic.uuid] = callback

    async def stop_notify(self, characteristic: BleakGATTCharacteristic) -> None:
        self.device.subscribed.pop(characteristic.uuid, None)

    def _require(self) -> None:
        if not self.device.connected:
            raise BleakError("Not connected")

    async def _deliver(self) -> None:
        """Notifications at connection events: the data is ready at its true time, waits for the next
        connection event, and reaches the host latency + jitter later."""
        dev = self.device
        interval = dev.s.connection_interval_s
        faults = dev.s.faults
        cycled = False
        while dev.connected:
            now = pylsl.local_clock()
            since = now - dev.connected_at
            if faults.disconnect_at_s is not None and since >= faults.disconnect_at_s and dev.connected_at:
                dev.log.append({"kind": "disconnect", "at": now})
                dev.link_lost()
                faults.disconnect_at_s = None  # once
                if self._disconnected_callback is not None:
                    self._disconnected_callback()
                return
            if faults.power_cycle_at_s is not None and not cycled and since >= faults.power_cycle_at_s:
                dev.power_cycle(now)
                cycled = True
            latency = dev.s.truth.latency_s + (dev.rng.exponential(dev.s.truth.jitter_s) if dev.s.truth.jitter_s else 0)
            for _ready, uuid, payload in dev.due(now - latency):
                callback = dev.subscribed.get(uuid)
                if callback is not None:
                    callback(bytearray(payload))
            # sleep to the next connection event
            await asyncio.sleep(interval - math.fmod(pylsl.local_clock() - dev.connected_at, interval))
