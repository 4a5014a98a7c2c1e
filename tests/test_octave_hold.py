"""OctaveHold: the displayed tempo keeps its octave through short flips of the tracker, follows a
sustained or a clearly more confident change, and never breaks the beat grid or the clock."""

import math

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from fractalsync_tracking.beat_state import BeatClockState
from fractalsync_tracking.display_clock import DisplayClock
from fractalsync_tracking.octave_hold import (
    CLEAR_MARGIN,
    HOLD_BEATS,
    OCTAVE_TOL,
    OctaveHold,
)

DT = 0.02  # the tracker's state period


def clock_states(t0, t1, spb, beat0_t, count0=0, conf=0.8, bpb=4, bib0=1):
    """States every DT of an exact clock with a beat at ``beat0_t`` counted ``count0``."""
    out = []
    for k in range(int(round((t1 - t0) / DT))):
        t = t0 + k * DT
        pos = count0 + (t - beat0_t) / spb
        n = math.floor(pos)
        out.append(BeatClockState(t_sec=t, spb=spb, phase=min(pos - n, math.nextafter(1, 0)),
                                  beat_count=max(n, 0), conf=conf, downbeat_prob=0.0,
                                  beat_in_bar=(bib0 - 1 + n - count0) % bpb + 1,
                                  beats_per_bar=bpb))
    return out


def position(s):
    return s.beat_count + s.phase


def held_beat_times(outs):
    """Times of the beats of the output clocks (one per output beat number)."""
    beats = {}
    for s in outs:
        beats.setdefault(s.beat_count, s.t_sec - s.phase * s.spb)
    return sorted(beats.values())


def flip_script(spb, j, start, length, conf_held, conf_other, beat0=0.13):
    """Held tempo ``spb`` for ``start`` s, ``2**j`` times its period for ``length`` s on the same
    grid (the first flipped state's beat lies on a held beat), then the held tempo again."""
    a = clock_states(0.0, start, spb, beat0, conf=conf_held)
    n_at = math.floor((start - beat0) / spb)  # the held beat at or before the flip
    other = 2.0 ** j * spb
    b = clock_states(start, start + length, other, beat0 + n_at * spb, count0=5, conf=conf_other)
    c = clock_states(start + length, start + length + 3.0, spb, beat0, conf=conf_held)
    return a + b + c


@settings(deadline=None, max_examples=60)
@given(spb=st.floats(0.3, 1.0), j=st.sampled_from([-1, 1]), start=st.floats(2.0, 6.0),
       beats=st.floats(0.0, HOLD_BEATS * 0.9), conf_held=st.floats(0.3, 1.0),
       dconf=st.floats(-0.3, CLEAR_MARGIN * 0.95))
@example(spb=0.5, j=-1, start=2.0, beats=0.0, conf_held=0.8, dconf=0.0)  # a single state
def test_a_short_flip_keeps_the_octave_and_the_grid(spb, j, start, beats, conf_held, dconf):
    """A flip shorter than the hold, without a clear confidence win, is never shown: every output
    has the held tempo, and its beats stay on the held grid."""
    script = flip_script(spb, j, start, max(beats * spb, DT), conf_held,
                         min(max(conf_held + dconf, 0.0), 1.0))
    hold = OctaveHold()
    outs = [hold.update(s) for s in script]
    for s, o in zip(script, outs, strict=True):
        assert o.t_sec == s.t_sec
        assert math.isclose(o.spb, spb, rel_tol=1e-9)
        assert 1 <= o.beat_in_bar <= o.beats_per_bar == 4
        assert o.conf == s.conf
    for t in held_beat_times(outs):
        k = (t - 0.13) / spb
        assert abs(k - round(k)) < 1e-6  # a held beat is a beat of the original grid


@settings(deadline=None, max_examples=40)
@given(spb=st.floats(0.3, 1.0), j=st.sampled_from([-1, 1]), conf=st.floats(0.0, 1.0))
def test_a_sustained_change_is_followed_within_the_hold(spb, j, conf):
    script = flip_script(spb, j, 3.0, HOLD_BEATS * spb + 1.0, conf, conf)
    hold = OctaveHold()
    outs = [hold.update(s) for s in script]
    flipped = [k for k, s in enumerate(script) if not math.isclose(s.spb, spb)]
    first = flipped[0]
    adopted = next(k for k in flipped if outs[k] is script[k])
    # held for at most HOLD_BEATS held beats (one more state for the rounding of the sum)
    assert (adopted - first) * DT <= HOLD_BEATS * spb + DT + 1e-9
    assert all(outs[k] is script[k] for k in flipped if k >= adopted)


@settings(deadline=None, max_examples=40)
@given(spb=st.floats(0.3, 1.0), j=st.sampled_from([-1, 1]), conf_held=st.floats(0.0, 0.8))
def test_a_clearly_more_confident_octave_is_followed_at_once(spb, j, conf_held):
    script = flip_script(spb, j, 3.0, 2.0, conf_held, min(conf_held + CLEAR_MARGIN + 0.01, 1.0))
    hold = OctaveHold()
    outs = [hold.update(s) for s in script]
    first = next(k for k, s in enumerate(script) if not math.isclose(s.spb, spb))
    assert outs[first] is script[first]


def test_a_tempo_that_is_no_octave_of_the_held_one_passes_at_once():
    hold = OctaveHold()
    for s in clock_states(0.0, 3.0, 0.5, 0.1):
        assert hold.update(s) is s
    for ratio in (1.5, 0.75, 2.0 ** (1 + 1.5 * OCTAVE_TOL), 2.0 ** -(1 + 1.5 * OCTAVE_TOL)):
        s = clock_states(3.0, 3.02, 0.5 * ratio, 0.1)[0]
        assert hold.update(s) is s
        hold.reset()
        hold.update(clock_states(0.0, 0.02, 0.5, 0.1)[0])


@st.composite
def state_sequences(draw):
    """Random tracker streams: tempo jumps (octaves and others), phases, counts, meters."""
    t = draw(st.floats(0.0, 100.0))
    out = []
    spb = draw(st.floats(0.2, 2.0))
    for _ in range(draw(st.integers(1, 120))):
        kind = draw(st.integers(0, 9))
        if kind == 0:
            spb = draw(st.floats(0.2, 2.0))
        elif kind == 1:
            spb = min(max(spb * draw(st.sampled_from([0.25, 0.5, 2.0, 4.0])), 0.2), 2.0)
        bpb = draw(st.integers(1, 7))
        out.append(BeatClockState(
            t_sec=t, spb=spb, phase=draw(st.floats(0.0, 1.0, exclude_max=True)),
            beat_count=draw(st.integers(0, 10_000)), conf=draw(st.floats(0.0, 1.0)),
            downbeat_prob=draw(st.floats(0.0, 1.0)), beat_in_bar=draw(st.integers(1, bpb)),
            beats_per_bar=bpb))
        t += draw(st.one_of(st.just(DT), st.floats(0.0, 1.0)))
    return out


@settings(deadline=None, max_examples=100)
@given(seq=state_sequences())
def test_random_streams_give_valid_states_at_an_octave_of_the_input(seq):
    hold = OctaveHold()
    prev_in = prev_out = None
    for s in seq:
        o = hold.update(s)
        assert isinstance(o, BeatClockState)  # validated on construction
        assert o.t_sec == s.t_sec and o.conf == s.conf
        j = math.log2(s.spb / o.spb)
        assert abs(j - round(j)) < 1e-9  # the input's tempo times a power of two
        if hold.mapping:
            assert round(j) == hold.mapping
            assert o.beats_per_bar == prev_out.beats_per_bar
            if prev_out is not None and hold.mapping == round(math.log2(prev_in.spb
                                                                       / prev_out.spb)):
                # within an episode the output is the input's clock, rescaled (up to whole held
                # beats, added only if the input's count fell so far that the output's would
                # go below 0): it moves with the input and never stalls
                d_in = position(s) - position(prev_in)
                d_out = position(o) - position(prev_out)
                e = d_out - 2.0 ** hold.mapping * d_in
                assert abs(e - round(e)) < 1e-6
                assert round(e) == 0 or position(prev_out) + 2.0 ** hold.mapping * d_in < 0.5
        else:
            assert o is s
        prev_in, prev_out = s, o


def test_display_clock_keeps_pulsing_on_the_beats_through_a_double_tempo_flip():
    """DisplayClock at 60 Hz: the tracker flips to double tempo for 3 s (4 bars at 85 BPM, the
    seed-1004 case) and back; the displayed beats stay one per true beat, on the beat."""
    spb = 60.0 / 85.0
    script = flip_script(spb, -1, 6.0, 3.0, 0.8, 0.7, beat0=0.1)
    fb = DisplayClock()
    shown, k = [], 0
    frames = int(script[-1].t_sec * 60)
    last = None
    for f in range(frames):
        t = f / 60.0
        while k < len(script) and script[k].t_sec <= t:
            fb.update(script[k])
            k += 1
        now = fb.at(t)
        if last is not None and now.beat_count > last.beat_count:
            shown.append(t - now.phase * now.spb)
        last = now
    lo, hi = 1.0, frames / 60.0 - 0.1
    true = [0.1 + n * spb for n in range(100) if lo < 0.1 + n * spb < hi]
    shown = [x for x in shown if lo - 0.05 < x < hi + 0.05]
    assert len(shown) == len(true) > 10  # one displayed beat per true beat, none between
    for t in true:
        assert min(abs(x - t) for x in shown) < 1.0 / 60.0


def test_errors_and_reset():
    with pytest.raises(ValueError, match="hold_beats"):
        OctaveHold(0.0)
    with pytest.raises(ValueError, match="hold_beats"):
        OctaveHold(math.inf)
    with pytest.raises(TypeError, match="BeatClockState"):
        OctaveHold().update((0.0, 0.5))
    hold = OctaveHold()
    a = clock_states(0.0, 1.0, 0.5, 0.1)
    for s in a:
        hold.update(s)
    hold.reset()
    s = clock_states(1.0, 1.02, 0.25, 0.1)[0]
    assert hold.update(s) is s and hold.evidence_s == 0.0 and hold.mapping == 0
