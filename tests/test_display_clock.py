"""DisplayClock (the live app's and the server's beat clock): no beat before a state, never
runs backwards, latency and nudges shift the query time, taps set the tempo (median of the
intervals in 30-300 BPM, reset after a pause) and hand back to the tracker, octave flips are
held, bad numbers are rejected with a clear error."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from fractalsync_tracking.beat_state import BeatClockState
from fractalsync_tracking.display_clock import (
    NO_BEAT,
    TAP_HOLD_BEATS,
    TAP_RESET_S,
    BeatNow,
    DisplayClock,
)


def _state(t, spb=0.5, count=None, bib=1, conf=0.9):
    n = int(t / spb) if count is None else count
    return BeatClockState(t_sec=t, spb=spb, phase=(t / spb) % 1.0, beat_count=n, conf=conf,
                          downbeat_prob=0.1, beat_in_bar=bib, beats_per_bar=4)


def test_before_any_state_no_beat():
    now = DisplayClock().at(1.0)
    assert now is NO_BEAT
    assert now.source == "none" and now.conf == 0.0 and now.phase == 0.0


@given(st.lists(st.floats(0.0, 0.6), min_size=1, max_size=60), st.floats(0, 0.3))
def test_never_runs_backwards(steps, latency):
    clock = DisplayClock(latency)
    t, last = 0.0, (-1, 0.0)
    for i, dt in enumerate(steps):
        t += dt
        clock.update(_state(t, spb=0.4 + 0.05 * (i % 3)))
        now = clock.at(t)
        assert 0.0 <= now.phase < 1.0 and 0.0 <= now.bar_phase < 1.0
        assert (now.beat_count, now.phase) >= last
        last = (now.beat_count, now.phase)


def test_latency_and_nudge_predict_ahead():
    a, b, c = DisplayClock(0.0), DisplayClock(0.1), DisplayClock(0.1)
    c.nudge(-0.05)
    for clock in (a, b, c):
        clock.update(_state(1.0))  # 120 BPM, on a beat at t = 1
    assert a.at(1.0).phase == pytest.approx(0.0, abs=1e-9)
    assert b.at(1.0).phase == pytest.approx(0.2, abs=1e-9)  # 0.1 s = 0.2 beat ahead
    assert c.at(1.0).phase == pytest.approx(0.1, abs=1e-9)  # 0.1 - 0.05 s


def test_nudges_add_up_unlimited_by_default_and_clip_when_limited():
    free, limited = DisplayClock(), DisplayClock(max_nudge_s=0.02)
    for _ in range(5):
        free.nudge(0.01)
        limited.nudge(0.01)
    assert free.nudge_s == pytest.approx(0.05) and limited.nudge_s == 0.02
    for _ in range(10):
        limited.nudge(-0.01)
    assert limited.nudge_s == -0.02


def test_taps_set_the_tempo_then_the_tracker_takes_over():
    clock = DisplayClock()
    clock.update(_state(0.0))
    for k in range(4):
        clock.tap(10.0 + 0.6 * k)  # 100 BPM
    now = clock.at(11.8)
    assert now.source == "tap" and now.spb == pytest.approx(0.6) and now.bpm == pytest.approx(100)
    assert now.phase == pytest.approx(0.0, abs=1e-9)  # a beat on the latest tap
    clock.update(_state(12.0))  # ignored while the tap clock holds
    assert clock.at(12.0).spb == pytest.approx(0.6)
    later = 11.8 + TAP_HOLD_BEATS * 0.6 + 0.1
    clock.update(_state(later))
    assert clock.at(later).source == "tracker"


def test_tap_tempo_is_the_median_of_the_intervals_in_range():
    clock = DisplayClock()
    times = [0.0, 0.5, 0.55, 1.1, 1.62, 2.2]  # 0.05 (double press) is ignored
    for t in times:
        clock.tap(t)
    gaps = np.diff(times)
    assert clock.at(2.2).spb == pytest.approx(float(np.median(gaps[gaps >= 0.2])))
    assert clock.at(2.2).source == "tap"


def test_a_single_tap_or_a_pause_starts_no_tap_clock():
    clock = DisplayClock()
    clock.tap(1.0)
    assert clock.at(1.0) is NO_BEAT
    clock.tap(1.0 + TAP_RESET_S + 0.1)  # a new sequence: still one tap
    assert clock.at(3.2) is NO_BEAT
    clock.tap(3.1 + 0.5)
    assert clock.at(3.6).spb == pytest.approx(0.5)


def test_octave_flip_of_the_tracker_is_held():
    clock = DisplayClock()
    for k in range(200):  # 4 s at 120 BPM
        clock.update(_state(0.02 * k))
    for k in range(200, 250):  # 1 s at double tempo: held at 120 BPM
        clock.update(_state(0.02 * k, spb=0.25))
    now = clock.at(5.0)
    assert now.spb == pytest.approx(0.5) and now.source == "tracker"


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf, "1", None, True])
def test_non_finite_numbers_are_rejected(bad):
    clock = DisplayClock()
    with pytest.raises(ValueError, match="tap time"):
        clock.tap(bad)
    with pytest.raises(ValueError, match="nudge"):
        clock.nudge(bad)
    with pytest.raises(ValueError, match="latency"):
        clock.set_latency(bad)
    with pytest.raises(ValueError, match="latency"):
        DisplayClock(bad)
    with pytest.raises(ValueError, match="latency"):
        DisplayClock(-0.01)
    assert clock.nudge_s == 0.0 and clock.latency_s == 0.0


def test_beat_now_dict_and_features():
    now = BeatNow(0.25, 9, 2, 4, 0.5, 0.8, 0.1, "tracker")
    d = now.to_dict()
    json.dumps(d, allow_nan=False)
    assert d["bpm"] == 120.0 and d["bar_phase"] == pytest.approx(1.25 / 4)
    f = now.features()
    assert f.dtype == np.float32 and f.shape == (5,)
    np.testing.assert_allclose(f, [1.0, 0.0, math.log(0.5), 0.8, 0.1], atol=1e-7)
