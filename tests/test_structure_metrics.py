"""Tests for fractalsync_tracking.structure_metrics: hand-computed cases for every metric,
boundary hit rates cross-checked against mir_eval.segment.detection, AUROC against a pairwise
reference, and the phrase prior against a plain-python reference of its derivation."""

import math
import warnings

import mir_eval
import numpy as np
import pytest
from beat_positions import reference_position
from hypothesis import example, given, settings
from hypothesis import strategies as st

from fractalsync_tracking.slow_state import HORIZONS_BEATS, SECTION_LABELS
from fractalsync_tracking.structure_metrics import (
    HARMONIX_PHRASE_PRIOR,
    PhrasePrior,
    auroc,
    boundary_hit_rate,
    brier,
    majority_label_accuracy,
    median_detection_lag,
    phrase_prior_hazard,
    section_accuracy,
)

L = {name: i for i, name in enumerate(SECTION_LABELS)}


# --- section accuracy --------------------------------------------------------------------------

def test_section_accuracy_is_time_weighted_and_skips_ignore():
    truth = [L["intro"], L["verse"], L["verse"], -1, L["chorus"]]
    pred = [L["intro"], L["chorus"], L["verse"], L["verse"], L["chorus"]]
    durations = [1.0, 2.0, 3.0, 10.0, 4.0]
    # right: 1 + 3 + 4 of 1 + 2 + 3 + 4 seconds
    assert section_accuracy(pred, truth, durations) == pytest.approx(0.8)
    assert section_accuracy(pred, truth) == pytest.approx(3 / 4)
    times = [0.0, 1.0, 3.0, 6.0, 16.0]  # steps 1, 2, 3, 10, last repeats 10
    assert section_accuracy(pred, truth, times=times) == pytest.approx(14 / 16)


def test_section_accuracy_merge_for_seven_labels():
    truth = [L["verse"], L["pre-chorus"], L["chorus"]]
    pred = [L["pre-chorus"], L["verse"], L["chorus"]]
    assert section_accuracy(pred, truth) == pytest.approx(1 / 3)
    assert section_accuracy(pred, truth, merge={"pre-chorus": "verse"}) == 1.0


def test_section_accuracy_edges():
    assert math.isnan(section_accuracy([0, 1], [-1, -1]))
    assert math.isnan(section_accuracy([], []))
    assert section_accuracy([-1], [2]) == 0.0
    assert math.isnan(section_accuracy([1], [1], [0.0]))
    assert section_accuracy([1], [1], times=[3.0]) == 1.0


@pytest.mark.parametrize("kwargs,match", [
    ({"pred": [0, 1], "truth": [0]}, "same shape"),
    ({"pred": [0, 8], "truth": [0, 1]}, r"\[-1, 7\]"),
    ({"pred": [0.0, 1.0], "truth": [0, 1]}, "integer"),
    ({"pred": [[0]], "truth": [[0]]}, "1-D"),
    ({"pred": [0, 1], "truth": [0, 1], "durations": [1.0]}, "durations must have shape"),
    ({"pred": [0, 1], "truth": [0, 1], "durations": [1.0, -1.0]}, ">= 0"),
    ({"pred": [0, 1], "truth": [0, 1], "durations": [1.0, 1.0], "times": [0.0, 1.0]}, "not both"),
    ({"pred": [0, 1], "truth": [0, 1], "times": [1.0, 1.0]}, "strictly increasing"),
    ({"pred": [0, 1], "truth": [0, 1], "merge": {"prechorus": "verse"}}, "merge"),
])
def test_section_accuracy_rejects_bad_input(kwargs, match):
    with pytest.raises(ValueError, match=match):
        section_accuracy(**kwargs)


def test_majority_label_accuracy():
    truth = [L["verse"], L["verse"], L["chorus"], -1]
    assert majority_label_accuracy(truth) == pytest.approx(2 / 3)
    # weighted by time the chorus wins
    assert majority_label_accuracy(truth, [1.0, 1.0, 5.0, 9.0]) == pytest.approx(5 / 7)
    # ties go to the lower index
    assert majority_label_accuracy([L["chorus"], L["verse"]]) == 0.5
    assert majority_label_accuracy([L["pre-chorus"], L["verse"], L["chorus"]],
                                   merge={"pre-chorus": "verse"}) == pytest.approx(2 / 3)
    assert math.isnan(majority_label_accuracy([-1, -1]))


# --- boundaries ------------------------------------------------------------------------------

def test_boundary_hit_rate_hand_cases():
    est, ref = [10.2, 20.0, 31.0], [10.0, 30.0, 50.0]
    assert boundary_hit_rate(est, ref, 0.5) == pytest.approx((1 / 3, 1 / 3, 1 / 3))
    assert boundary_hit_rate(est, ref, 3.0) == pytest.approx((2 / 3, 2 / 3, 2 / 3))
    assert boundary_hit_rate([10.0, 10.1], [10.0], 0.5) == pytest.approx((0.5, 1.0, 2 / 3))
    # one-to-one and maximal: taking the nearest estimate for 2.0 first would leave 1.0 alone
    assert boundary_hit_rate([1.9, 2.5], [1.0, 2.0], 1.0) == (1.0, 1.0, 1.0)
    assert boundary_hit_rate([], [1.0], 0.5) == (0.0, 0.0, 0.0)
    assert boundary_hit_rate([1.0], [], 0.5) == (0.0, 0.0, 0.0)
    assert boundary_hit_rate([5.0], [1.0], 0.5) == (0.0, 0.0, 0.0)


def test_boundary_input_checks():
    for args, match in [(([2.0, 1.0], [1.0], 0.5), "est_boundaries must be sorted"),
                        (([1.0], [np.nan], 0.5), "ref_boundaries contains NaN"),
                        (([1.0], [1.0], -0.5), "window_s"), (([1.0], [1.0], np.inf), "window_s")]:
        with pytest.raises(ValueError, match=match):
            boundary_hit_rate(*args)
        with pytest.raises(ValueError, match=match):
            median_detection_lag(*args)


def test_median_detection_lag():
    assert median_detection_lag([10.2, 29.5, 41.0], [10.0, 30.0, 40.0], 1.5) == pytest.approx(0.2)
    assert median_detection_lag([10.5, 20.5], [10.0, 20.0], 3.0) == pytest.approx(0.5)
    assert math.isnan(median_detection_lag([50.0], [10.0], 3.0))
    assert math.isnan(median_detection_lag([], [10.0], 3.0))


def _mir_detection(est, ref, window):
    end = 200.0
    to_intervals = lambda b: np.column_stack([[0.0, *b], [*b, end]])  # noqa: E731
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return mir_eval.segment.detection(to_intervals(ref), to_intervals(est), window=window,
                                          trim=True)


_boundary_lists = st.lists(st.floats(0.5, 199.5), max_size=25).map(
    lambda xs: sorted({round(x, 3) for x in xs}))


@settings(max_examples=100, deadline=None)
@given(est=_boundary_lists, ref=_boundary_lists, window=st.sampled_from([0.5, 3.0, 0.0, 10.0]),
       offsets=st.one_of(st.none(), st.lists(st.floats(-4.0, 4.0), min_size=25, max_size=25)))
@example(est=[1.9, 2.5], ref=[1.0, 2.0], window=1.0, offsets=None)
def test_boundary_hit_rate_matches_mir_eval(est, ref, window, offsets):
    if offsets is not None:  # estimates near the references, as a real detector gives
        near = {round(r + o, 3) for r, o in zip(ref, offsets, strict=False)}
        est = sorted(e for e in near | set(est[:3]) if 0.001 < e < 199.999)
    ours = boundary_hit_rate(est, ref, window)
    np.testing.assert_allclose(ours, _mir_detection(est, ref, window), rtol=1e-12, atol=1e-12)


# --- AUROC and Brier ---------------------------------------------------------------------------

def test_auroc_hand_cases():
    assert auroc([0.1, 0.4, 0.35, 0.8], [0, 0, 1, 1]) == 0.75
    assert auroc([0.5, 0.5], [0, 1]) == 0.5
    assert auroc([0.2, 0.9], [False, True]) == 1.0
    assert auroc([0.9, 0.2], [0, 1]) == 0.0
    assert math.isnan(auroc([0.1, 0.2], [1, 1]))
    assert math.isnan(auroc([], []))


def _auroc_pairs(scores, labels):
    pos = [s for s, y in zip(scores, labels, strict=True) if y]
    neg = [s for s, y in zip(scores, labels, strict=True) if not y]
    if not pos or not neg:
        return math.nan
    wins = sum((p > n) + 0.5 * (p == n) for p in pos for n in neg)
    return wins / (len(pos) * len(neg))


@settings(max_examples=150, deadline=None)
@given(data=st.lists(st.tuples(st.sampled_from([0.0, 0.25, 0.5, 1.0, -3.0]) | st.floats(-5, 5),
                               st.booleans()), max_size=40))
def test_auroc_matches_pairwise_reference(data):
    scores = [s for s, _ in data]
    labels = [y for _, y in data]
    expected = _auroc_pairs(scores, labels)
    got = auroc(scores, labels)
    assert (math.isnan(got) and math.isnan(expected)) or got == pytest.approx(expected, abs=1e-12)


def test_brier():
    assert brier([0.1, 0.9, 0.5], [0, 1, 1]) == pytest.approx(0.09)
    assert brier([1.0, 0.0], [True, False]) == 0.0
    assert math.isnan(brier([], []))


@pytest.mark.parametrize("fn", [auroc, brier])
@pytest.mark.parametrize("scores,labels,match", [
    ([0.5, np.nan], [0, 1], "NaN"), ([0.5, 0.5], [0, 2], "0/1"), ([0.5], [0, 1], "shape"),
    ([[0.5]], [0], "1-D"),
])
def test_score_input_checks(fn, scores, labels, match):
    with pytest.raises(ValueError, match=match):
        fn(scores, labels)


def test_brier_rejects_non_probabilities():
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        brier([1.5], [1])


# --- phrase prior ----------------------------------------------------------------------------

# 120 BPM in 4/4: beats every 0.5 s, downbeats every 2 s, one true boundary at 0 s.
BEATS = np.arange(0.0, 60.0, 0.5)
DOWNS = np.arange(0.0, 60.0, 2.0)


def test_phrase_prior_table():
    assert dict(HARMONIX_PHRASE_PRIOR.table) == {4: 0.117, 8: 0.478, 12: 0.152, 16: 0.484,
                                                 24: 0.308, 32: 0.383}
    assert HARMONIX_PHRASE_PRIOR.other == 0.03
    np.testing.assert_array_equal(HARMONIX_PHRASE_PRIOR.hazard(np.array([1, 4, 8, 9, 32, 64])),
                                  [0.03, 0.117, 0.478, 0.03, 0.383, 0.03])
    for table, other in [({0: 0.5}, 0.0), ({4: 1.5}, 0.0), ({4: 0.5}, -0.1)]:
        with pytest.raises(ValueError):
            PhrasePrior(table, other)


def test_phrase_prior_hand_computed():
    y = phrase_prior_hazard([0.0, 14.1, 15.0, 16.0], BEATS, DOWNS, [0.0])
    h1, h4, h8 = 0.03, 0.117, 0.478
    at_start = [0, 0, h1, h1 + (1 - h1) * h1, 1 - (1 - h1) ** 3 * (1 - h4)]
    # 14.1 s: bars 1..7 passed; bar 8 (16 s) is 3.8 beats ahead, bars 8-11 within 16 beats
    after7 = [0, 0, h8, h8 + (1 - h8) * h1, h8 + (1 - h8) * (1 - (1 - h1) ** 3)]
    # 15 s: bar 8 is exactly 2 beats ahead (inside horizon 2)
    at15 = [0, h8, *after7[2:]]
    # 16 s: bar 8 passed without a boundary; bar 9 starts 4 beats ahead
    at16 = [0, 0, h1, h1 + (1 - h1) * h1, 1 - (1 - h1) ** 3 * (1 - 0.152)]
    np.testing.assert_allclose(y, [at_start, after7, at15, at16], atol=1e-12)


def test_phrase_prior_counts_from_the_last_past_boundary():
    # boundary at 16.05 s snaps to the downbeat at 16 s: at 30 s, 7 bars have passed
    y = phrase_prior_hazard([30.0], BEATS, DOWNS, [0.0, 16.05, 40.0])
    np.testing.assert_allclose(y[0, 2], 0.478)
    # a boundary after t does not count (causal)
    np.testing.assert_array_equal(y, phrase_prior_hazard([30.0], BEATS, DOWNS, [0.0, 16.05]))


def test_phrase_prior_before_any_boundary_counts_from_the_first_downbeat():
    y = phrase_prior_hazard([3.0], BEATS, DOWNS + 1.0, [])
    # first downbeat 1 s, bar 1 at 3 s passed; bar 2 (5 s) is 4 beats ahead
    np.testing.assert_allclose(y[0], [0, 0, 0.03, 0.03 + 0.97 * 0.03,
                                      1 - 0.97 ** 2 * (1 - 0.117) * 0.97])


def test_phrase_prior_ends_with_the_tracked_downbeats():
    y = phrase_prior_hazard([55.0, 59.0], BEATS, DOWNS, [0.0])
    # after the last downbeat (58 s) there is no bar left to start
    np.testing.assert_array_equal(y[1], np.zeros(5))
    assert y[0, 2] > 0


def test_phrase_prior_edges():
    assert np.isnan(phrase_prior_hazard([1.0], [0.5], DOWNS, [0.0])).all()
    assert np.isnan(phrase_prior_hazard([1.0], BEATS, [], [0.0])).all()
    assert phrase_prior_hazard([], BEATS, DOWNS, [0.0]).shape == (0, 5)
    assert phrase_prior_hazard([1.0], BEATS, DOWNS, [0.0], horizons=(4,)).shape == (1, 1)
    with pytest.raises(ValueError, match="horizons"):
        phrase_prior_hazard([1.0], BEATS, DOWNS, [0.0], horizons=(0,))
    with pytest.raises(ValueError, match="downbeat_times must be strictly increasing"):
        phrase_prior_hazard([1.0], BEATS, [2.0, 2.0], [0.0])
    with pytest.raises(ValueError, match="past_boundaries must be sorted"):
        phrase_prior_hazard([1.0], BEATS, DOWNS, [3.0, 1.0])




def _prior_reference(t, beats, downs, bounds, horizons, prior):
    past = [b for b in bounds if b <= t]
    j0 = min(range(len(downs)), key=lambda j: (abs(downs[j] - past[-1]), j)) if past else 0
    m = max(0, sum(d <= t for d in downs) - 1 - j0)
    out = [0.0] * len(horizons)
    survival, k = 1.0, m + 1
    while j0 + k < len(downs):
        delta = reference_position(downs[j0 + k], beats) - reference_position(t, beats)
        hk = prior.table.get(k, prior.other)
        for i, h in enumerate(horizons):
            if 0 < delta <= h:
                out[i] += survival * hk
        survival *= 1 - hk
        k += 1
    return out


@st.composite
def tracked_songs(draw):
    """Beats with varying intervals, downbeats every 2-5 beats (from an offset), boundaries on
    some downbeats (jittered) plus a few anywhere, and query times."""
    n = draw(st.integers(2, 80))
    ibis = draw(st.lists(st.floats(0.3, 1.0), min_size=n - 1, max_size=n - 1))
    beats = draw(st.floats(0.0, 3.0)) + np.concatenate([[0.0], np.cumsum(ibis)])
    per_bar = draw(st.integers(2, 5))
    downs = beats[draw(st.integers(0, per_bar - 1))::per_bar]
    chosen = draw(st.lists(st.integers(0, max(downs.size - 1, 0)), max_size=6))
    jitter = draw(st.floats(-0.1, 0.1))
    bounds = sorted([float(downs[i]) + jitter for i in chosen if downs.size]
                    + draw(st.lists(st.floats(0.0, 80.0), max_size=2)))
    times = draw(st.lists(st.floats(-2.0, 85.0), max_size=12)) + list(downs[:3])
    return beats, downs, bounds, times


@settings(max_examples=80, deadline=None)
@given(song=tracked_songs())
def test_phrase_prior_matches_reference(song):
    beats, downs, bounds, times = song
    y = phrase_prior_hazard(times, beats, downs, bounds)
    if downs.size == 0:
        assert np.isnan(y).all()
        return
    expected = [_prior_reference(t, list(beats), list(downs), bounds, HORIZONS_BEATS,
                                 HARMONIX_PHRASE_PRIOR) for t in times]
    np.testing.assert_allclose(y, np.array(expected).reshape(y.shape), rtol=1e-9, atol=1e-12)
    assert np.all((y >= 0) & (y <= 1))
    assert np.all(y[:, :-1] <= y[:, 1:] + 1e-15)
