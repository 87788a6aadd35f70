"""Chest-strap payloads: every heart-rate flags variant, PMD frames and control responses built from
the documented layouts decode to exact values and times; fuzzed payloads only ever raise PayloadError."""

from __future__ import annotations

import struct

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from drivers.chest import hrs, pmd
from drivers.chest.hrs import PayloadError


@pytest.mark.parametrize("flags", range(32))
def test_every_heart_rate_flags_combination(flags):
    u16, contact_detected, contact_supported = bool(flags & 1), bool(flags & 2), bool(flags & 4)
    energy, has_rr = bool(flags & 8), bool(flags & 16)
    for rr in ([], [800], [790, 1024, 65535]) if has_rr else ([],):
        bpm = 300 if u16 else 72
        payload = bytes([flags | 0xA0])  # reserved bits set: must be ignored
        payload += struct.pack("<H", bpm) if u16 else bytes([bpm])
        if energy:
            payload += struct.pack("<H", 4321)
        payload += b"".join(struct.pack("<H", r) for r in rr)
        m = hrs.parse_heart_rate(payload)
        assert m.bpm == bpm
        assert m.contact == (contact_detected if contact_supported else None)
        assert m.energy_kj == (4321 if energy else None)
        assert m.rr_1024 == rr
        assert m.rr_ms == [r * 1000 / 1024 for r in rr]
        # the emulator's encoder writes what the parser reads
        again = hrs.parse_heart_rate(hrs.encode_heart_rate(bpm, rr, m.contact, m.energy_kj, u16))
        assert (again.bpm, again.contact, again.energy_kj, again.rr_1024) == (bpm, m.contact, m.energy_kj, rr)


def test_documented_heart_rate_vectors():
    m = hrs.parse_heart_rate(bytes.fromhex("10484003"))
    assert (m.bpm, m.contact, m.rr_ms) == (72, None, [812.5])
    m = hrs.parse_heart_rate(bytes.fromhex("164B2F03"))
    assert (m.bpm, m.contact) == (75, True) and m.rr_ms[0] == pytest.approx(795.898, abs=1e-3)
    m = hrs.parse_heart_rate(bytes.fromhex("194B0012340004"))
    assert (m.bpm, m.energy_kj, m.rr_ms) == (75, 0x3412, [1000.0])


@pytest.mark.parametrize("payload,message", [
    ("10", "heart rate measurement of 1 bytes: needs flags and a heart rate"),
    ("0148", "says u16 heart rate but has 2 bytes"),
    ("084812", "announces energy expended but ends before it"),
    ("104840", "RR field of 1 bytes is not whole u16 values"),
    ("0048FF", "has 1 bytes after its last field"),
])
def test_bad_heart_rate_payloads_are_named(payload, message):
    with pytest.raises(PayloadError, match=message):
        hrs.parse_heart_rate(bytes.fromhex(payload))


def test_documented_ecg_frame():
    frame = pmd.parse_frame(bytes.fromhex("00 DAEBC39E98435208 00 2CFFFF 100000"))
    assert frame.meas_type == pmd.ECG and frame.frame_type == 0 and not frame.compressed
    assert frame.timestamp_ns == 599_616_023_171_427_290
    assert frame.samples[:, 0].tolist() == [-212, 16]


@pytest.mark.parametrize("frame_type,width", [(0, 1), (1, 2), (2, 3)])
def test_acc_frames_every_width(frame_type, width):
    values = np.array([[1, -2, 3], [-(2 ** (8 * width - 1)), 2 ** (8 * width - 1) - 1, 0]])
    payload = pmd.encode_frame(pmd.ACC, 123456789, frame_type, values)
    assert len(payload) == 10 + 2 * 3 * width
    frame = pmd.parse_frame(payload)
    assert frame.timestamp_ns == 123456789 and frame.samples.tolist() == values.tolist()


def test_delta_compressed_acc_frame():
    # reference sample (x, y, z as i16 LE), then one block: 4-bit deltas, 2 samples, packed LSB first
    ref = struct.pack("<3h", 100, -50, 1000)
    deltas = [1, -1, 7, -8, 0, 3]  # sample 1: +1 -1 +7; sample 2: -8 0 +3
    packed = 0
    for i, d in enumerate(deltas):
        packed |= (d & 0xF) << (4 * i)
    block = bytes([4, 2]) + packed.to_bytes(3, "little")
    frame = pmd.parse_frame(bytes([pmd.ACC]) + struct.pack("<Q", 5) + bytes([0x81]) + ref + block)
    assert frame.compressed and frame.samples.tolist() == [[100, -50, 1000], [101, -51, 1007], [93, -51, 1010]]


@pytest.mark.parametrize("payload,message", [
    ("00 0100000000000000", "PMD data frame of 9 bytes"),
    ("07 0100000000000000 00 00", r"measurement type 7 \(SKIN_TEMP\) is not decoded"),
    ("00 0100000000000000 05 000000", "ECG frame type 5 is not decoded"),
    ("00 0100000000000000 00 0000", "ECG frame type 0: 2 bytes of samples is not a whole number of 3-byte samples"),
    ("02 0100000000000000 81 0100", "ACC frame type 1: compressed frame shorter than its reference sample"),
])
def test_bad_frames_are_named(payload, message):
    with pytest.raises(PayloadError, match=message):
        pmd.parse_frame(bytes.fromhex(payload))


def test_control_point_commands_and_responses():
    assert bytes.fromhex("02 00 00 01 82 00 01 01 0E 00") == pmd.ECG_START
    assert pmd.acc_start(200, 8) == bytes.fromhex("02 02 02 01 08 00 00 01 C8 00 01 01 10 00")
    assert pmd.stop_command(pmd.ACC) == bytes.fromhex("03 02")
    acc_settings_reply = "F0 01 02 00 00 · 00 04 19 00 32 00 64 00 C8 00 · 01 01 10 00 · 02 03 02 00 04 00 08 00"
    r = pmd.parse_control(bytes.fromhex(acc_settings_reply.replace("·", "")))
    assert (r.op, r.meas_type, r.ok, r.more) == (1, pmd.ACC, True, False)
    assert pmd.parse_settings(r.params) == {0: [25, 50, 100, 200], 1: [16], 2: [2, 4, 8]}
    err = pmd.parse_control(bytes.fromhex("F0 02 00 0A 00"))
    assert not err.ok and err.status_text == "invalid MTU"
    assert pmd.parse_control(bytes.fromhex("01 00 02")) == [pmd.ECG, pmd.ACC]  # the sensor stopped both
    with pytest.raises(PayloadError, match="starts with 0x0F, not 0xF0"):
        pmd.parse_control(bytes.fromhex("0F 05 00"))
    with pytest.raises(PayloadError, match="setting 0 announces 4 values but the payload ends"):
        pmd.parse_settings(bytes.fromhex("00 04 19 00"))


def test_per_sample_times_follow_the_polar_rule():
    clock = pmd.SampleClock(130.0)
    step = 1e9 / 130.0

    def frame(ts: int, n: int) -> pmd.PmdFrame:
        return pmd.PmdFrame(pmd.ECG, ts, 0, False, np.zeros((n, 1), np.int64))

    first = clock.times(frame(1_000_000_000, 73))
    np.testing.assert_array_equal(first, np.round(1e9 - (72 - np.arange(73)) * step).astype(np.int64))
    later = clock.times(frame(1_000_000_000 + 560_000_000, 73))  # a slightly slow sensor: 7.671 ms steps
    assert later[-1] == 1_560_000_000 and later[0] == round(1e9 + 560e6 / 73)
    np.testing.assert_allclose(np.diff(later), 560e6 / 73, atol=1)
    again = clock.times(frame(500_000_000, 73))  # the sensor clock went back: reset
    assert clock.resets == 1 and "clock reset" in clock.notes[-1]
    assert again[-1] == 500_000_000 and again[-2] == 500_000_000 - round(step)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=260))
def test_fuzzed_payloads_raise_only_payload_errors(data):
    for parse in (hrs.parse_heart_rate, pmd.parse_frame, pmd.parse_control, pmd.parse_settings):
        try:
            parse(data)
        except PayloadError:
            pass


@settings(max_examples=200, deadline=None)
@given(st.integers(0, 4), st.lists(st.integers(-(2**15), 2**15 - 1), min_size=3, max_size=3 * 40))
def test_fuzzed_acc_round_trip(frame_type_index, values):
    frame_type = [0, 1, 2, 1, 2][frame_type_index]
    width = pmd.ACC_FRAMES[frame_type][1]
    lo, hi = -(2 ** (8 * width - 1)), 2 ** (8 * width - 1) - 1
    v = np.clip(np.array(values[: len(values) // 3 * 3]).reshape(-1, 3), lo, hi)
    assert pmd.parse_frame(pmd.encode_frame(pmd.ACC, 42, frame_type, v)).samples.tolist() == v.tolist()

