"""Tests for fractalsync_tracking.metrics: cross-checks against mir_eval plus hand-worked cases."""

import warnings

import mir_eval
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fractalsync_tracking.metrics import (
    beat_f_measure,
    beat_time_errors,
    continuity,
    downbeat_f_measure,
    evaluate,
    lock_index,
    trim,
)

TOL = 1e-9


def _mir_f(ref, est, window=0.07):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return mir_eval.beat.f_measure(np.asarray(ref), np.asarray(est), window)


def _mir_continuity(ref, est):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return mir_eval.beat.continuity(np.asarray(ref), np.asarray(est))


# --- hypothesis strategies -------------------------------------------------------------------

_TRANSFORMS = ("jitter", "shift", "half", "double", "offbeat", "random", "empty", "single")


@st.composite
def beat_pairs(draw):
    """(reference, estimated) beat sequences in seconds, both sorted.

    The reference is a jittered isochronous grid; the estimate is derived from it (jittered,
    shifted, half/double tempo, off-beat), unrelated, empty or a single beat.
    """
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    n = draw(st.integers(0, 40))
    ibi = draw(st.floats(0.25, 1.5))
    start = draw(st.floats(0.0, 10.0))
    ref_jitter = draw(st.sampled_from([0.0, 0.005, 0.02]))
    ref = start + ibi * np.arange(n) + rng.normal(0.0, ref_jitter, n)
    ref = np.sort(ref)
    kind = draw(st.sampled_from(_TRANSFORMS))
    sigma = draw(st.sampled_from([0.0, 0.01, 0.03, 0.06]))
    if kind == "jitter":
        est = ref + rng.normal(0.0, sigma, n)
    elif kind == "shift":
        est = ref + draw(st.floats(-0.5, 0.5))
    elif kind == "half":
        sub = ref[draw(st.integers(0, 1)) :: 2]
        est = sub + rng.normal(0.0, sigma, sub.size)
    elif kind == "double":
        mids = ref[:-1] + 0.5 * np.diff(ref)
        est = np.concatenate([ref, mids])
        est = est + rng.normal(0.0, sigma, est.size)
    elif kind == "offbeat":
        est = ref + 0.5 * ibi + rng.normal(0.0, sigma, n)
    elif kind == "random":
        est = rng.uniform(0.0, 40.0, draw(st.integers(0, 40)))
    elif kind == "empty":
        est = np.zeros(0)
    else:
        est = np.array([draw(st.floats(0.0, 40.0))])
    est = np.sort(est)
    if draw(st.booleans()):
        ref, est = est, ref
    return ref, est


_sorted_floats = st.lists(
    st.floats(0.0, 60.0, allow_nan=False, allow_infinity=False), max_size=30
).map(lambda xs: np.array(sorted(xs), dtype=np.float64))


# --- cross-checks against mir_eval ------------------------------------------------------------


@settings(max_examples=50, deadline=None)
@given(beat_pairs(), st.sampled_from([0.07, 0.05, 0.1]))
def test_f_measure_matches_mir_eval(pair, window):
    ref, est = pair
    assert abs(beat_f_measure(ref, est, window) - _mir_f(ref, est, window)) <= TOL


@settings(max_examples=50, deadline=None)
@given(beat_pairs())
def test_continuity_matches_mir_eval(pair):
    ref, est = pair
    ours = continuity(ref, est)
    theirs = _mir_continuity(ref, est)
    np.testing.assert_allclose(ours, theirs, rtol=0, atol=TOL)


@settings(max_examples=50, deadline=None)
@given(_sorted_floats, _sorted_floats)
def test_arbitrary_sorted_sequences_match_mir_eval(ref, est):
    # Unstructured input: duplicates, clusters, equal-distance ties.
    assert abs(beat_f_measure(ref, est) - _mir_f(ref, est)) <= TOL
    np.testing.assert_allclose(continuity(ref, est), _mir_continuity(ref, est), atol=TOL)


@settings(max_examples=50, deadline=None)
@given(beat_pairs())
def test_downbeat_f_is_f_measure_on_downbeats(pair):
    ref, est = pair
    ref_db, est_db = ref[::4], est[1::3]
    assert abs(downbeat_f_measure(ref_db, est_db) - _mir_f(ref_db, est_db)) <= TOL


@settings(max_examples=50, deadline=None)
@given(beat_pairs(), st.sampled_from([None, 0.0, 5.0, 8.0]))
def test_evaluate_matches_mir_eval_after_trimming(pair, skip):
    ref, est = pair
    scores = evaluate(ref, est, ref[::3], est[::3], skip=skip)
    if skip is None:
        r, e, rd, ed = ref, est, ref[::3], est[::3]
    else:
        r, e = mir_eval.beat.trim_beats(ref, skip), mir_eval.beat.trim_beats(est, skip)
        rd = mir_eval.beat.trim_beats(ref[::3], skip)
        ed = mir_eval.beat.trim_beats(est[::3], skip)
    assert abs(scores["beat_f"] - _mir_f(r, e)) <= TOL
    np.testing.assert_allclose(
        [scores["cmlc"], scores["cmlt"], scores["amlc"], scores["amlt"]],
        _mir_continuity(r, e),
        atol=TOL,
    )
    assert abs(scores["downbeat_f"] - _mir_f(rd, ed)) <= TOL
    assert scores["n_ref_beats"] == r.size and scores["n_est_beats"] == e.size
    assert scores["n_ref_downbeats"] == rd.size and scores["n_est_downbeats"] == ed.size


@settings(max_examples=50, deadline=None)
@given(beat_pairs())
def test_time_errors_count_and_bound(pair):
    ref, est = pair
    errors = beat_time_errors(ref, est)
    # One error per matched pair: the count reproduces mir_eval's matching size.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        n_match = len(mir_eval.util.match_events(ref, est, 0.07)) if ref.size and est.size else 0
    assert errors.size == n_match
    assert np.all(errors >= 0)
    assert np.all(errors <= 0.07 + 1e-12)


def test_trim_matches_mir_eval():
    beats = np.array([0.5, 4.999, 5.0, 7.25, 30.0])
    np.testing.assert_array_equal(trim(beats), mir_eval.beat.trim_beats(beats))
    np.testing.assert_array_equal(trim(beats, 7.0), [7.25, 30.0])
    assert trim([], 5.0).shape == (0,)
    with pytest.raises(ValueError, match="min_time"):
        trim(beats, np.nan)


@settings(max_examples=50, deadline=None)
@given(beat_pairs())
def test_f_measure_symmetric_and_bounded(pair):
    ref, est = pair
    f = beat_f_measure(ref, est)
    assert 0.0 <= f <= 1.0
    assert f == beat_f_measure(est, ref)
    scores = continuity(ref, est)
    assert all(0.0 <= s <= 1.0 for s in scores)
    # Any metrical level is at least as good as the correct one.
    assert scores[2] >= scores[0] and scores[3] >= scores[1]


# --- hand-checked cases -------------------------------------------------------------------------


def test_perfect_estimate_scores_one():
    beats = np.arange(0.0, 10.0, 0.5)
    assert beat_f_measure(beats, beats) == 1.0
    assert continuity(beats, beats) == (1.0, 1.0, 1.0, 1.0)
    np.testing.assert_array_equal(beat_time_errors(beats, beats), np.zeros(beats.size))


def test_window_edges():
    ref = np.arange(1.0, 11.0)
    assert beat_f_measure(ref, ref + 0.06) == 1.0
    assert beat_f_measure(ref, ref - 0.06) == 1.0
    assert beat_f_measure(ref, ref + 0.08) == 0.0
    assert beat_f_measure(ref, ref + 0.08, window=0.1) == 1.0


def test_one_to_one_matching():
    # Two estimates near one reference: only one counts. P = 1/2, R = 1 -> F = 2/3.
    assert beat_f_measure([1.0], [0.98, 1.02]) == pytest.approx(2 / 3)
    # 1.05 is in range of both references; a maximum matching uses 1.0 for it and 1.1 for 1.15.
    assert beat_f_measure([1.0, 1.1], [1.05, 1.15]) == 1.0


def test_empty_and_single():
    assert beat_f_measure([], []) == 0.0
    assert beat_f_measure([1.0, 2.0], []) == 0.0
    assert beat_f_measure([], [1.0]) == 0.0
    assert beat_f_measure([1.0], [1.0]) == 1.0
    assert continuity([1.0], [1.0]) == (0.0, 0.0, 0.0, 0.0)
    assert continuity([1.0, 2.0, 3.0], []) == (0.0, 0.0, 0.0, 0.0)
    assert beat_time_errors([], [1.0]).shape == (0,)
    scores = evaluate([], [], skip=None)
    assert scores["beat_f"] == 0.0
    assert np.isnan(scores["error_median_s"]) and np.isnan(scores["error_p95_s"])


def test_double_tempo_estimate():
    # Reference at 60 BPM over 20 s, estimate at 120 BPM on the same phase.
    ref = np.arange(0.0, 20.0, 1.0)
    est = np.arange(0.0, 20.0, 0.5)
    # 20 matches, P = 20/40, R = 1 -> F = 2/3.
    assert beat_f_measure(ref, est) == pytest.approx(2 / 3)
    cmlc, cmlt, amlc, amlt = continuity(ref, est)
    # Estimated interval 0.5 vs 1.0: period error 0.5 -> nothing correct at the right level.
    assert (cmlc, cmlt) == (0.0, 0.0)
    # Double-tempo reference has 39 beats (0..19 step 0.5); the last estimate 19.5 is half a
    # period from 19.0, so 39 of max(39, 40) = 40 are correct.
    assert amlc == pytest.approx(39 / 40)
    assert amlt == pytest.approx(39 / 40)


def test_half_tempo_estimate():
    ref = np.arange(0.0, 20.0, 1.0)
    est = ref[::2]
    cmlc, cmlt, amlc, amlt = continuity(ref, est)
    assert (cmlc, cmlt) == (0.0, 0.0)
    assert (amlc, amlt) == (1.0, 1.0)  # equals the half-tempo (odd) variation exactly


def test_offbeat_estimate():
    ref = np.arange(0.0, 20.0, 1.0)
    est = ref + 0.5
    cmlc, cmlt, amlc, amlt = continuity(ref, est)
    assert (cmlc, cmlt) == (0.0, 0.0)
    # Off-beat variation: 19 midpoints 0.5..18.5; estimate 19.5 has no partner -> 19/20.
    assert amlt == pytest.approx(19 / 20)
    assert amlc == pytest.approx(19 / 20)


def test_continuity_broken_by_one_bad_beat():
    ref = np.arange(0.0, 20.0, 1.0)
    est = ref.copy()
    est[10] += 0.3  # phase error 0.3 > 0.175; also makes est[11]'s interval 0.7 (period 0.3)
    cmlc, cmlt, amlc, amlt = continuity(ref, est)
    assert cmlt == pytest.approx(18 / 20)
    assert cmlc == pytest.approx(10 / 20)  # longest run: beats 0..9
    assert (amlc, amlt) == (cmlc, cmlt)


def test_time_errors_values():
    errors = beat_time_errors([1.0, 2.0, 3.0], [1.01, 2.0, 3.05, 5.0])
    np.testing.assert_allclose(errors, [0.01, 0.0, 0.05], atol=1e-12)
    # Plain lists and ints are accepted.
    np.testing.assert_allclose(beat_time_errors([1, 2], (1, 2)), [0.0, 0.0])


def test_window_zero_counts_exact_hits_only():
    assert beat_f_measure([1.0, 2.0], [1.0, 2.001], window=0.0) == pytest.approx(0.5)


def test_evaluate_error_statistics():
    ref = np.arange(5.0, 25.0, 0.5)
    est = ref.copy()
    est[::2] += 0.01  # 20 beats 10 ms late
    est[1::2] -= 0.03  # 20 beats 30 ms early
    scores = evaluate(ref, est)
    assert scores["beat_f"] == 1.0
    # Sorted errors: 20 x 0.01 then 20 x 0.03 -> median 0.02, 95th percentile 0.03.
    assert scores["error_median_s"] == pytest.approx(0.02)
    assert scores["error_p95_s"] == pytest.approx(0.03)


def test_evaluate_trims_first_five_seconds():
    ref = np.arange(0.0, 10.0, 0.5)
    est = ref.copy()
    est[:10] += 0.2  # all wrong, but only before 5 s
    scores = evaluate(ref, est)
    assert scores["beat_f"] == 1.0
    assert scores["n_ref_beats"] == 10
    assert "downbeat_f" not in scores
    assert evaluate(ref, est, skip=None)["beat_f"] == pytest.approx(0.5)


@pytest.mark.parametrize(
    ("ref", "est", "exc", "match"),
    [
        ([[1.0, 1], [2.0, 2]], [1.0], ValueError, "1-D"),
        ([1.0, np.nan], [1.0], ValueError, "NaN"),
        ([1.0, np.inf], [1.0], ValueError, "NaN or infinite"),
        ([2.0, 1.0], [1.0], ValueError, "non-decreasing"),
        (["a", "b"], [1.0], TypeError, "numbers"),
    ],
)
def test_bad_input_raises(ref, est, exc, match):
    with pytest.raises(exc, match=match):
        beat_f_measure(ref, est)
    with pytest.raises(exc, match=match):
        continuity(ref, est)


def test_bad_window_and_downbeat_pairing_raise():
    with pytest.raises(ValueError, match="window"):
        beat_f_measure([1.0], [1.0], window=-0.1)
    with pytest.raises(ValueError, match="window"):
        beat_time_errors([1.0], [1.0], window=np.nan)
    with pytest.raises(ValueError, match="both"):
        evaluate([1.0], [1.0], ref_downbeats=[1.0])
    with pytest.raises(ValueError, match="est_downbeats"):
        evaluate([1.0], [1.0], [1.0], [3.0, 2.0])


# ------------------------------------------------------------------------------ lock_index


def ref_lock_index(reference, estimated, start, run, window):
    """Brute force: every reference beat against every estimate, then every window of `run`."""
    r = [t for t in reference if t >= start]
    hit = [any(abs(e - t) <= window for e in estimated) for t in r]
    for i in range(len(r) - run + 1):
        if all(hit[i:i + run]):
            return i
    return None


@settings(deadline=None, max_examples=200)
@given(
    ref=st.lists(st.floats(0, 60), max_size=60).map(sorted),
    est=st.lists(st.floats(0, 60), max_size=60).map(sorted),
    start=st.sampled_from([0.0, 10.0, 30.0, 100.0]),
    run=st.integers(1, 10),
    window=st.sampled_from([0.0, 0.07, 0.5]),
)
def test_lock_index_matches_brute_force(ref, est, start, run, window):
    assert lock_index(ref, est, start, run, window) == ref_lock_index(ref, est, start, run,
                                                                      window)


def test_lock_index_on_a_tracker_that_locks_late():
    ref = np.arange(0.5, 30, 0.5)
    est = np.concatenate([ref[:3], ref[10:] + 0.02])  # a lucky start, lost, then locked at 5.5 s
    assert lock_index(ref, est) == 10
    assert lock_index(ref, est, run=3) == 0
    assert lock_index(ref, est, start=15.0) == 0
    assert lock_index(ref, est + 0.06, window=0.07) is None  # 80 ms off from beat 10 on
    assert lock_index(ref, []) is None
    assert lock_index([], ref) is None


@pytest.mark.parametrize("run", [0, -1, 2.5, True, "8"])
def test_lock_index_refuses_bad_run(run):
    with pytest.raises(ValueError, match="run"):
        lock_index([1.0, 2.0], [1.0, 2.0], run=run)
