"""The driver runtime over real LSL: declared metadata, explicit stamps, status stream, reconnects."""

from __future__ import annotations

import json
import threading
import time

import numpy as np
import pylsl
import pytest
from pydantic import BaseModel

from drivers.runtime.driver import DeviceError, Driver, DriverContext, run_driver
from drivers.runtime.streams import channels


class FlakySettings(BaseModel):
    fail_opens: int = 2
    lose_after_reads: int = 5


class FlakyDriver(Driver):
    """Refuses to open twice, then sends 5 blocks of 10 samples and is 'unplugged'; repeats."""

    kind = "test-flaky"
    Settings = FlakySettings

    @classmethod
    def stream_specs(cls, ctx):
        return [ctx.spec("data", "flaky", "EMG", channels(["a", "b"], "microvolts", "EMG"), 100.0)]

    def __init__(self, ctx):
        super().__init__(ctx)
        self.opens = 0
        self.reads = 0
        self.counter = 0

    def open(self):
        self.opens += 1
        if self.opens <= self.settings.fail_opens:
            raise DeviceError(f"port /dev/ttyFAKE busy (attempt {self.opens})")
        self.reads = 0

    def read(self):
        if self.reads >= self.settings.lose_after_reads:
            raise DeviceError("device unplugged")
        self.reads += 1
        c = np.arange(self.counter, self.counter + 10)
        self.counter += 10
        self.publish("data", np.stack([c, -c], axis=1).astype(np.float32), 1000.0 + c / 100.0)
        time.sleep(0.02)


def resolve(source_id: str) -> pylsl.StreamInlet:
    found = pylsl.resolve_byprop("source_id", source_id, 1, 10.0)
    assert found, f"{source_id} not found"
    inlet = pylsl.StreamInlet(found[0], max_buflen=60)
    inlet.open_stream(5.0)
    return inlet


def test_status_reconnect_and_exact_samples():
    ctx = DriverContext("flaky1", "test-flaky", rig_name="rt", settings=FlakySettings())
    driver = FlakyDriver(ctx)
    stop = threading.Event()
    # outlets exist before the thread starts so the inlets see every sample
    driver.make_outlets()
    data = resolve("flexcap:rt:flaky1:data")
    status = resolve("flexcap:rt:flaky1:status")
    info = data.info(5.0)
    ch = info.desc().child("channels").child("channel")
    assert (ch.child_value("label"), ch.child_value("unit"), ch.child_value("type")) == ("a", "microvolts", "EMG")
    assert info.nominal_srate() == 100.0 and info.channel_count() == 2
    thread = threading.Thread(target=run_driver, args=(driver, stop, 0.1))
    thread.start()
    statuses: list[dict] = []
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and (driver.opens < 5 or len(statuses) < 10):
        samples, _ = status.pull_chunk(timeout=0.2)
        statuses += [json.loads(s[0]) for s in samples]
    stop.set()
    thread.join(10)
    assert not thread.is_alive()
    samples, _ = status.pull_chunk(timeout=1.0)
    statuses += [json.loads(s[0]) for s in samples]
    errors = [s["last_error"] for s in statuses if not s["connected"]]
    assert "port /dev/ttyFAKE busy (attempt 1)" in errors or "port /dev/ttyFAKE busy (attempt 2)" in errors
    assert "device unplugged" in errors
    assert any(s["connected"] for s in statuses)
    assert max(s["reconnects"] for s in statuses) >= 1
    assert statuses[-1]["connected"] is False  # the final report at shutdown
    assert {"device", "kind", "rates", "drops", "host"} <= set(statuses[0])
    # every published sample arrives, with the stamps the driver gave
    samples, stamps = data.pull_chunk(timeout=1.0, max_samples=100000)
    samples = np.asarray(samples)
    n = driver.counter
    assert n >= 100
    np.testing.assert_array_equal(samples[:, 0], np.arange(n))
    np.testing.assert_array_equal(samples[:, 1], -np.arange(n))
    np.testing.assert_allclose(stamps, 1000.0 + np.arange(n) / 100.0, rtol=0, atol=1e-9)


def test_publish_rejects_wrong_channel_count():
    driver = FlakyDriver(DriverContext("flaky2", "test-flaky", rig_name="rt", settings=FlakySettings()))
    driver.make_outlets()
    with pytest.raises(ValueError, match="same number of channels"):
        driver.publish("data", np.zeros((3, 5), np.float32), [1.0, 2.0, 3.0])
