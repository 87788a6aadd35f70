"""The sync controller's pieces on synthetic data with exact answers: edges between samples, flashes
inside a frame's exposure, matching coded trains, the fit and its error estimate, gap-free segments."""

from __future__ import annotations

import numpy as np
import pytest

from acquisition.sync.events import flash_edges, peak_times, trigger_edges, two_levels
from acquisition.sync.fit import fit_segment, match_events
from acquisition.sync.timebase import counter_positions, lsl_offset_at, make_timebase, split_segments
from drivers.sim.lab import SimLabSettings, qrs_waveform
from drivers.sim.scene import LED_UNLIT, led_level_of
from drivers.sim.triggerline import PulseEdges
from drivers.trigger.trains import pulse_offsets_s, train_durations

FS = 2048.0


def train_pulses(seq: int, start: float) -> list[tuple[float, float]]:
    return [(start + r, start + f) for r, f in pulse_offsets_s(train_durations(seq))]


def test_trigger_edges_are_placed_between_samples_exactly():
    pulses = train_pulses(5, 10.0012345) + train_pulses(6, 17.5000077)
    line = PulseEdges(pulses)
    t = 9.9 + np.arange(int(9.0 * FS)) / FS
    level = np.round(line.overlap_many(t - 1 / FS, t) * FS * 3900) / 4095  # the Shimmer's 12-bit input
    events = trigger_edges(level, t, 1 / FS)
    assert [e.kind for e in events] == ["rise", "fall"] * 8
    expected = np.ravel(pulses)
    got = np.array([e.time for e in events])
    np.testing.assert_allclose(got, expected, rtol=0, atol=2e-7)  # a 12-bit level: 1/3900 of a sample
    assert all(e.precise and e.lo <= x <= e.hi for e, x in zip(events, expected, strict=True))


def test_a_digital_trigger_input_gives_the_middle_of_the_sample_interval():
    pulses = [(1.0003, 1.0803), (1.3001, 1.4201)]
    t = 0.9 + np.arange(int(0.7 * 250)) / 250.0
    state = PulseEdges(pulses).active(t).astype(float)
    events = trigger_edges(state, t, 1 / 250.0)
    got = np.array([e.time for e in events])
    assert np.all(np.abs(got - np.ravel(pulses)) <= 0.5 / 250 + 1e-12)
    assert all(not e.precise and e.lo <= x <= e.hi for e, x in zip(events, np.ravel(pulses), strict=True))


def test_an_edge_cut_by_the_start_of_the_take_is_not_an_event():
    t = np.arange(2000) / FS
    level = PulseEdges([(-0.01, 0.05), (0.5, 0.6)]).overlap_many(t - 1 / FS, t) * FS  # high when recording starts
    events = trigger_edges(level, t, 1 / FS)
    assert [(e.kind, round(e.time, 9)) for e in events] == [("fall", 0.05), ("rise", 0.5), ("fall", 0.6)]


def light_of(level: np.ndarray, gamma: float = 2.2) -> np.ndarray:
    return (level / 255.0) ** gamma


@pytest.mark.parametrize("shutter", [180.0, 360.0])
def test_flash_onsets_inside_the_exposure_through_the_camera_gamma(shutter):
    fps, e = 60.0, shutter / 360.0 / 60.0
    pulses = train_pulses(3, 2.00123) + train_pulses(4, 3.70411)
    line = PulseEdges(pulses)
    starts = 1.9 + np.arange(int(3.0 * fps)) / fps
    lit = np.array([line.overlap(s, s + e) / e for s in starts])
    level = np.array([led_level_of(x) for x in lit], dtype=np.float64)
    levels = two_levels(light_of(level))
    assert levels is not None
    l0, l1, noise = levels
    assert l0 == pytest.approx(light_of(np.array([LED_UNLIT]))[0]) and l1 == pytest.approx(1.0)
    events = flash_edges((light_of(level) - l0) / (l1 - l0), starts, np.arange(len(starts)), e, noise)
    assert len(events) == 16
    truth = np.ravel(pulses)
    for ev, x in zip(events, truth, strict=True):
        assert ev.lo - 1e-12 <= x <= ev.hi + 1e-12
        if ev.precise:  # within half an 8-bit level step of light (at most 0.43 % of the exposure)
            assert abs(ev.time - x) < 0.005 * e, (ev.kind, ev.time - x)
    precise = sum(ev.precise for ev in events)
    # an open shutter sees nearly every edge inside an exposure (all but those within 5 % of a frame's
    # boundary); a 180-degree shutter misses those in its closed half
    assert (precise >= 13) if shutter == 360.0 else (2 <= precise <= 12)
    # ignoring the gamma (treating levels as light) misplaces partly lit onsets by up to milliseconds
    naive = flash_edges((level - LED_UNLIT) / (255.0 - LED_UNLIT), starts, np.arange(len(starts)), e, 0.0)
    assert max(abs(a.time - x) for a, x in zip(naive, truth, strict=True) if a.precise) > 5e-4


def test_a_dropped_frame_next_to_a_flash_gives_no_event():
    starts = np.arange(10) / 60.0
    fraction = np.array([0, 0, 0, 0.4, 1, 1, 1, 0, 0, 0], dtype=float)
    index = np.array([0, 1, 2, 4, 5, 6, 7, 8, 9, 10])  # frame 3 was dropped just before the first lit one
    events = flash_edges(fraction, starts, index, 1 / 120, 0.0)
    assert [e.kind for e in events] == ["fall"]


def test_coded_trains_match_only_at_the_true_offset():
    rng = np.random.default_rng(4)
    pulses = [(s, i, r, f) for s, start in ((40, 5.0), (41, 12.0), (42, 19.0))
              for i, (r, f) in enumerate(train_pulses(s, start))]
    refs = {"rise": np.array([p[2] for p in pulses]), "fall": np.array([p[3] for p in pulses])}
    ids = {k: [(p[0], p[1]) for p in pulses] for k in refs}
    latency = 0.1734
    from acquisition.sync.events import Event

    events = [Event(p[2 + j] + latency + rng.normal(0, 1e-5), k, 1e-5, 0, 0, True)
              for p in pulses for j, k in enumerate(("rise", "fall"))]
    del events[5]  # one edge not seen
    events.append(Event(13.4, "rise", 1e-5, 0, 0, True))  # a spurious flash
    matches, unmatched, offset = match_events(events, refs, ids, (-0.6, 0.05), 0.01)
    assert offset == pytest.approx(-latency, abs=3e-5)
    assert len(matches) == 23 and [e.time for e in unmatched] == [13.4]
    assert all(m.pulse == (p[0], p[1]) for m in matches for p in pulses
               if abs(m.ref_time - p[2]) < 1e-12 or abs(m.ref_time - p[3]) < 1e-12)


def test_the_fit_recovers_offset_and_drift_and_rejects_an_outlier():
    from acquisition.sync.events import Event
    from acquisition.sync.fit import Match

    rng = np.random.default_rng(1)
    ref = np.concatenate([np.linspace(0, 0.8, 8), np.linspace(10, 10.8, 8)])
    base = (ref + 0.0625) / (1 + 30e-6) + rng.normal(0, 2e-5, len(ref))  # 62.5 ms late, 30 ppm fast
    base[3] += 0.004  # a flash misread by 4 ms
    matches = [Match(Event(b, "rise", 2e-5, b - 1e-4, b + 1e-4, True), r, (0, i))
               for i, (b, r) in enumerate(zip(base, ref, strict=True))]
    m = fit_segment(matches, base.min(), base.max())
    assert m is not None and m.n_rejected == 1 and m.n_events == 15
    truth = (ref + 0.0625) / (1 + 30e-6)
    np.testing.assert_allclose(m.apply(truth), ref, rtol=0, atol=4e-5)
    assert m.drift * 1e6 == pytest.approx(30.0, abs=5.0)
    assert 2e-6 < m.error_s < 3e-5  # about 2e-5 / sqrt(15), scaled by the residuals


def test_bounded_events_alone_pin_the_offset_to_their_overlap():
    from acquisition.sync.events import Event
    from acquisition.sync.fit import Match

    true_offset = -0.0831
    refs = np.array([1.0, 1.3, 1.65, 2.1])
    # each edge only known to lie in an 8 ms window, at different places in it
    shifts = [0.001, 0.007, 0.004, 0.0065]
    matches = []
    for r, s in zip(refs, shifts, strict=True):
        b = r - true_offset
        matches.append(Match(Event(b, "rise", 0.0023, b - s, b - s + 0.008, False), r, (0, 0)))
    m = fit_segment(matches, 0.0, 3.0)
    assert m is not None and m.method == "intervals"
    assert abs(m.offset - true_offset) <= 0.0015  # the overlap is [b - 0.001, b + 0.001]


def test_segments_break_at_a_counter_reset_not_at_a_dropped_frame():
    period = 1 / 60
    idx = np.concatenate([np.arange(0, 100), np.arange(101, 200), np.arange(0, 50)])  # a drop, then a reset
    stamps = np.concatenate([5 + np.arange(0, 100) * period, 5 + np.arange(101, 200) * period,
                             9 + np.arange(0, 50) * period])
    assert split_segments(stamps, idx.astype(float), period, counted=True) == [(0, 199), (199, 249)]
    jitter = np.random.default_rng(0).normal(0, 0.002, len(stamps))
    tb = make_timebase(stamps + jitter, np.array([[5.0, 1e-3], [8.0, 1e-3]]), 60.0, idx)
    np.testing.assert_allclose(tb.base, stamps + 1e-3, rtol=0, atol=6e-4)  # dejittered, offset applied
    # without a counter, a missing sample is a gap in the stamps
    assert split_segments(np.array([0, 1, 2, 4, 5.0]), np.arange(5.0), 1.0, counted=False) == [(0, 3), (3, 5)]


def test_counter_positions_unwrap_and_count_lost_packets():
    ticks = (np.array([0, 16, 32, 64, 80]) + (1 << 24) - 40) % (1 << 24)  # a wrap, one sample lost
    np.testing.assert_array_equal(counter_positions(ticks), [0, 1, 2, 4, 5])
    cyton = np.array([254, 255, 0, 1, 3])
    np.testing.assert_array_equal(counter_positions(cyton), [0, 1, 2, 3, 5])


def test_lsl_offsets_follow_a_line():
    # measured at these recorder times; a wild probe is ignored
    co = np.array([[0.0, 0.010], [5.0, 0.0101], [10.0, 0.0102], [15.0, 0.5]])
    # stream stamps t are on the stream's clock: t + offset on the recorder's, where the line is evaluated
    t = np.array([2.5, 12.5])
    np.testing.assert_allclose(lsl_offset_at(co, t), 0.010 + 0.00002 * (t + 0.01015), rtol=0, atol=1e-12)
    # a host booted 3 days after the recorder's: the line is evaluated where the stream's samples were
    far = np.array([[1000.0, 259200.0], [1005.0, 259200.0001], [1010.0, 259200.0002]])
    np.testing.assert_allclose(lsl_offset_at(far, np.array([-258195.0])), [259200.0001], rtol=0, atol=1e-7)
    assert lsl_offset_at(np.zeros((0, 2)), np.array([1.0]))[0] == 0.0


def test_r_peaks_of_a_coarsely_sampled_ecg_land_on_the_beats():
    sim = SimLabSettings()
    beats = sim.heart_beats(100.0, 130.0)
    t = 100.0 + np.arange(int(30 * 130)) / 130.0
    ecg = np.zeros_like(t)
    for b in beats:
        ecg += 1200 * qrs_waveform(t - b)
    events = peak_times(ecg, t, band_limited=True)
    got = np.array([e.time for e in events])
    # the same definition of a beat as the waveform's own maximum (the S wave pulls it slightly early)
    fine = np.arange(-0.01, 0.01, 1e-6)
    shift = fine[np.argmax(qrs_waveform(fine))]
    assert len(got) == len(beats)
    assert np.max(np.abs(got - (beats + shift))) < 2.5e-4


def test_a_model_from_events_at_one_end_says_its_error_grows_with_distance():
    """Only the start train (say the take was stopped by a full disk): the drift stays the driver's, and the
    error estimate covers what that drift can do 20 s later."""
    from acquisition.sync.events import Event
    from acquisition.sync.fit import DEVICE_CLOCK, Match

    ref = np.linspace(0, 0.8, 8)
    base = ref + 0.012
    matches = [Match(Event(b, "rise", 5e-6, b - 1e-5, b + 1e-5, True), r, (0, i))
               for i, (b, r) in enumerate(zip(base, ref, strict=True))]
    m = fit_segment(matches, 0.0, 20.0)
    assert m is not None and m.drift == 0.0 and m.offset == pytest.approx(-0.012, abs=1e-9)
    assert m.error_s >= 0.999 * DEVICE_CLOCK.unfitted * (20.0 - 0.412)  # 0.39 ms at the far end, not 2 us


def test_events_a_misnumbered_timeline_contradicts_are_counted():
    """A phone numbered from Wi-Fi arrivals can put a run of frames one period late: their flashes then
    disagree with any single model, and the count says so (the report turns it red)."""
    from acquisition.sync.align import _inconsistent
    from acquisition.sync.events import Event
    from acquisition.sync.fit import Match

    ref = np.concatenate([np.linspace(0, 0.8, 8), np.linspace(10, 10.8, 8)])
    base = ref + 0.15
    base[12:] += 1 / 30  # the last frames are numbered one too many
    matches = [Match(Event(b, "rise", 5e-5, b - 2e-4, b + 2e-4, True), r, (0, i))
               for i, (b, r) in enumerate(zip(base, ref, strict=True))]
    m = fit_segment(matches, base.min(), base.max())
    # no single line serves both halves of the end train: 9 of the 16 events are off it by over 1 ms
    assert _inconsistent([m], matches) == (9, 16)
    clean = [Match(Event(r + 0.15, "rise", 5e-5, r + 0.1498, r + 0.1502, True), r, (0, i)) for i, r in enumerate(ref)]
    assert _inconsistent([fit_segment(clean, 0.15, 11.0)], clean) == (0, 16)


PHONE_PERIOD, PHONE_EXPOSURE = 1 / 30, 1 / 120
PHONE_OFFSET, PHONE_DRIFT, PHONE_PHASE = -0.15, 220e-6, 0.004
PHONE_TRAINS = (0.3, 5.0, 10.0, 12.5)


def _phone_take(inside: set[tuple[int, int]], seed: int = 5) -> list:
    """Matches of a phone's flash edges: 30 fps, 1/120 s shutter, frame k's exposure starting at phase + k
    period on its base clock (true = base + offset + drift base), 8 edges in each of PHONE_TRAINS. The edges
    (train, j) in `inside` fall inside an exposure (precise), every other one while the shutter was closed
    (bounded by the exposures around it)."""
    from acquisition.sync.events import Event
    from acquisition.sync.fit import Match

    rng = np.random.default_rng(seed)
    period, exposure = PHONE_PERIOD, PHONE_EXPOSURE
    out = []
    for i, t0 in enumerate(PHONE_TRAINS):
        for j in range(8):
            k = np.floor((t0 + 0.08 * j - PHONE_OFFSET) / period)
            start = PHONE_PHASE + k * period
            if (i, j) in inside:
                t = start + rng.uniform(0.001, exposure - 0.001)
                event = Event(t, "rise", 1e-5, t - 3e-5, t + 3e-5, True)
            else:
                t = start + exposure + rng.uniform(0.001, period - exposure - 0.001)
                lo, hi = start + exposure, start + period
                event = Event((lo + hi) / 2, "rise", (hi - lo) / np.sqrt(12), lo, hi, False)
            out.append(Match(event, float(PHONE_OFFSET + t * (1 + PHONE_DRIFT)), (i, j)))
    return out


def _phone_fit(matches: list):
    """The phone's model over a 13 s take, and its worst error against true time."""
    from acquisition.sync.align import PHONE_CLOCK

    true = np.linspace(0.0, 13.0, 200)
    base = (true - PHONE_OFFSET) / (1 + PHONE_DRIFT)
    m = fit_segment(matches, base[0], base[-1], clock=PHONE_CLOCK)
    assert m is not None and m.method == "fit"
    return m, float(np.max(np.abs(m.apply(base) - true)))


def test_a_phone_whose_precise_flashes_are_all_at_the_start_takes_its_drift_from_the_bounded_ones():
    """A phone's frame times are its driver's fit of Wi-Fi arrivals, off by up to 400 ppm over a take. When
    only the start train's edges fell inside an exposure, the other trains' edges (each known to the 25 ms the
    shutter was closed, at different phases) still narrow the drift: the model stays within the phone's 2 ms,
    and its error estimate covers what it missed."""
    matches = _phone_take({(0, 0), (0, 3), (0, 5)})
    m, worst = _phone_fit(matches)
    assert m.drift == pytest.approx(PHONE_DRIFT, abs=100e-6)
    assert worst < 1.5e-3 and worst <= 1.96 * m.error_s < 2.5e-3, (worst, m.error_s)
    # without the bounded edges the drift is the driver's: 2.8 ms off at the end, and the estimate (400 ppm
    # over the take) says so
    alone, missed = _phone_fit([x for x in matches if x.event.precise])
    assert alone.drift == 0.0
    assert 2.5e-3 < missed <= 1.96 * alone.error_s, (missed, alone.error_s)


def test_a_lone_precise_flash_at_the_other_end_sets_the_drift_unless_the_bounded_ones_contradict_it():
    """Three precise edges at the start and one at the end: the lone one measures the drift (nothing else in
    its half could show it wrong, so the bounded edges check it). Misread by 5 ms, the bounded edges
    overrule it, and the estimate still covers the error."""
    inside = {(0, 0), (0, 3), (0, 5), (3, 4)}
    m, worst = _phone_fit(_phone_take(inside))
    assert m.drift == pytest.approx(PHONE_DRIFT, abs=5e-6) and worst < 1e-4 and worst <= 1.96 * m.error_s
    misread = _phone_take(inside)
    lone = next(x for x in misread if x.pulse == (3, 4))
    lone.event.time += 0.005
    m, worst = _phone_fit(misread)
    assert abs(m.drift - PHONE_DRIFT) < 100e-6, m.drift  # a 5 ms misreading would put it 400 ppm off
    assert worst < 1.5e-3 and worst <= 1.96 * m.error_s, (worst, m.error_s)
    # one precise edge at each end and nothing else precise: the two measure the drift, checked by the rest
    m, worst = _phone_fit(_phone_take({(0, 2), (3, 6)}))
    assert m.drift == pytest.approx(PHONE_DRIFT, abs=5e-6) and worst < 1e-4 and worst <= 1.96 * m.error_s
