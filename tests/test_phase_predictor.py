"""PhasePredictor: monotone, rate-limited, convergent and independent of the query cadence."""

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fractalsync_tracking.beat_state import BeatClockState
from fractalsync_tracking.phase_predictor import PhasePredictor

C = 0.25


@st.composite
def state_at(draw, t):
    bpb = draw(st.integers(1, 7))
    return BeatClockState(
        t_sec=t - draw(st.floats(0.0, 0.2)),  # states describe the recent past
        spb=draw(st.floats(0.25, 1.2)),
        phase=draw(st.floats(0.0, 1.0, exclude_max=True)),
        beat_count=draw(st.integers(0, 10_000)),
        conf=draw(st.floats(0, 1)),
        downbeat_prob=draw(st.floats(0, 1)),
        beat_in_bar=draw(st.integers(1, bpb)),
        beats_per_bar=bpb,
    )


@st.composite
def scripts(draw):
    """A list of ("u", state) / ("q", t) operations with non-decreasing clock time."""
    t = draw(st.floats(-5.0, 100.0))
    ops = [("u", draw(state_at(t)))]
    for _ in range(draw(st.integers(1, 40))):
        t += draw(st.one_of(st.just(0.0), st.floats(0.0, 0.05), st.floats(0.0, 3.0)))
        if draw(st.integers(0, 3)) == 0:
            ops.append(("u", draw(state_at(t))))
        else:
            ops.append(("q", t))
            if draw(st.integers(0, 9)) == 0:
                ops.append(("q", t - draw(st.floats(0.0, 1.0))))  # a late query
    return ops


def target_position(s, t):
    return s.beat_count + s.phase + (t - s.t_sec) / s.spb


@settings(deadline=None, max_examples=50)
@given(ops=scripts())
def test_never_runs_backwards_and_respects_the_rate_limit(ops):
    p = PhasePredictor(C)
    last_pos, last_t, last_count = -math.inf, -math.inf, -1
    state_since_last_query = True
    for kind, arg in ops:
        if kind == "u":
            p.update(arg)
            state_since_last_query = True
            continue
        q = p.query(arg)
        t = max(arg, last_t)
        pos = q.beat_count + q.phase
        assert 0.0 <= q.phase < 1.0
        assert isinstance(q.beat_count, int) and q.beat_count >= last_count
        assert pos >= last_pos - 1e-9
        s = p.state
        assert 1 <= q.beat_in_bar <= s.beats_per_bar
        assert q.next_beat_t >= t
        if not state_since_last_query and last_t > -math.inf:
            dt = t - last_t
            rate = 1.0 / s.spb
            assert pos - last_pos <= (1 + C) * rate * dt + 1e-9
            assert pos - last_pos >= (1 - C) * rate * dt - 1e-9
        last_pos, last_t, last_count = pos, t, q.beat_count
        state_since_last_query = False


@settings(deadline=None, max_examples=50)
@given(ops=scripts(), extra=st.floats(0.0, 5.0))
def test_converges_to_the_latest_state(ops, extra):
    p = PhasePredictor(C)
    t_last = -math.inf
    for kind, arg in ops:
        if kind == "u":
            p.update(arg)
        else:
            p.query(arg)
            t_last = max(t_last, arg)
    s = p.state
    t0 = max(t_last, s.t_sec)
    # any disagreement (at most half a beat) is gone after 0.5 / C beats
    t = t0 + (0.5 / C) * s.spb + extra
    q = p.query(t)
    target = target_position(s, t)
    assert (q.phase - target + 0.5) % 1.0 - 0.5 == pytest.approx(0.0, abs=1e-6)
    n_target = math.floor(target + 1e-9)
    expected_bib = (s.beat_in_bar - 1 + n_target - s.beat_count) % s.beats_per_bar + 1
    if abs(target - round(target)) > 1e-6:  # not exactly on a beat boundary
        assert q.beat_in_bar == expected_bib
        assert q.next_beat_t == pytest.approx(t + (math.floor(target) + 1 - target) * s.spb,
                                              abs=1e-6)


@settings(deadline=None, max_examples=40)
@given(ops=scripts(), fine=st.integers(2, 12))
def test_answers_do_not_depend_on_the_query_cadence(ops, fine):
    """Querying 'fine' times more often gives the same answers at the shared query times."""
    sparse, dense = PhasePredictor(C), PhasePredictor(C)
    t_prev = None
    for kind, arg in ops:
        if kind == "u":
            sparse.update(arg)
            dense.update(arg)
            continue
        if t_prev is not None and arg > t_prev:
            for j in range(1, fine):
                dense.query(t_prev + (arg - t_prev) * j / fine)
        a, b = sparse.query(arg), dense.query(arg)
        assert a.beat_count + a.phase == pytest.approx(b.beat_count + b.phase, abs=1e-7)
        assert a.beat_in_bar == b.beat_in_bar or abs(a.phase - round(a.phase)) < 1e-6
        t_prev = max(arg, t_prev) if t_prev is not None else arg


def make_state(**kw):
    base = dict(t_sec=0.0, spb=0.5, phase=0.0, beat_count=0, conf=1.0, downbeat_prob=1.0,
                beat_in_bar=1, beats_per_bar=4)
    base.update(kw)
    return BeatClockState(**base)


def test_extrapolates_with_spb_and_counts_bars():
    p = PhasePredictor()
    p.update(make_state())
    q = p.query(0.25)
    assert q.phase == pytest.approx(0.5) and q.beat_count == 0 and q.beat_in_bar == 1
    assert q.next_beat_t == pytest.approx(0.5)
    q = p.query(1.6)
    assert q.beat_count == 3 and q.phase == pytest.approx(0.2) and q.beat_in_bar == 4
    assert p.query(2.1).beat_in_bar == 1


def test_disagreeing_state_is_approached_at_the_documented_rate():
    p = PhasePredictor(C)
    p.update(make_state())
    p.query(1.0)  # displayed position 2.0
    p.update(make_state(t_sec=1.0, phase=0.2, beat_count=2))  # target 0.2 beats ahead
    # the displayed clock runs 25 % fast until it has caught up: 0.2 beats take 0.8 beats = 0.4 s
    q = p.query(1.2)
    assert q.beat_count + q.phase == pytest.approx(2.0 + 1.25 * 0.4)
    q = p.query(1.5)  # caught up at 1.4 s; from there on at the tempo
    assert q.beat_count == 3 and q.phase == pytest.approx(0.2)
    assert q.next_beat_t == pytest.approx(1.9)


def test_a_state_behind_slows_down_but_never_reverses():
    p = PhasePredictor(C)
    p.update(make_state())
    p.query(1.0)
    p.update(make_state(t_sec=1.0, phase=0.7, beat_count=1))  # target 0.3 beats behind
    q = p.query(1.2)  # 75 % speed: 0.4 s -> 0.3 beats
    assert q.beat_count + q.phase == pytest.approx(2.3)


def test_late_query_returns_the_latest_answer():
    p = PhasePredictor()
    p.update(make_state())
    a = p.query(1.3)
    assert p.query(0.2) == a


def test_errors():
    p = PhasePredictor()
    with pytest.raises(RuntimeError, match="no state"):
        p.query(0.0)
    with pytest.raises(TypeError, match="BeatClockState"):
        p.update({"phase": 0.1})
    p.update(make_state())
    with pytest.raises(ValueError, match="finite"):
        p.query(float("nan"))
    for bad in (0.0, 1.0, -0.1, True, "0.2"):
        with pytest.raises(ValueError, match="max_correction"):
            PhasePredictor(bad)


def test_reset_forgets():
    p = PhasePredictor()
    p.update(make_state(beat_count=7))
    p.query(3.0)
    p.reset()
    assert p.state is None
    p.update(make_state(beat_count=1))
    assert p.query(0.0).beat_count == 1
