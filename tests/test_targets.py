"""Tests for fractalsync_models.training.targets: hand-computed beats-to-boundary and hazard
rows on a 4-beats-per-second grid, the edge cases (no beats, no boundaries, a boundary before the
first beat or exactly on a beat, t exactly on a boundary), snapping, section targets, and
hypothesis properties against a plain-python reference."""

import json
import math
from pathlib import Path

import numpy as np
import pytest
from beat_positions import reference_position
from hypothesis import example, given, settings
from hypothesis import strategies as st

from fractalsync_models.training.labels import IGNORE, Segment, segments_to_frames
from fractalsync_models.training.targets import (
    HORIZONS_BEATS,
    beat_position,
    beats_to_next_boundary,
    hazard_targets,
    section_targets,
    snap_boundaries,
)

REPO = Path(__file__).resolve().parents[1]
INF = math.inf

# 4 beats per second from 0 s to 10 s; boundaries at 1 s (beat 4) and 3 s (beat 12).
BEATS_4HZ = np.arange(41) * 0.25
BOUNDS = np.array([1.0, 3.0])


def test_horizons_follow_the_contract():
    contract = json.loads((REPO / "contracts" / "v1.json").read_text())
    assert list(HORIZONS_BEATS) == contract["hazard"]["horizons_beats"]


@pytest.mark.parametrize("t,btnb,row", [
    (0.0, 4.0, [0, 0, 1, 1, 1]),
    (0.125, 3.5, [0, 0, 1, 1, 1]),
    (0.5, 2.0, [0, 1, 1, 1, 1]),
    (0.625, 1.5, [0, 1, 1, 1, 1]),
    (0.75, 1.0, [1, 1, 1, 1, 1]),
    (0.9, 0.4, [1, 1, 1, 1, 1]),
    (1.0, 8.0, [0, 0, 0, 1, 1]),    # exactly on the first boundary: counts to the next one
    (1.1, 7.6, [0, 0, 0, 1, 1]),
    (2.0, 4.0, [0, 0, 1, 1, 1]),
    (2.5, 2.0, [0, 1, 1, 1, 1]),
    (2.999, 0.004, [1, 1, 1, 1, 1]),
    (3.0, INF, [0, 0, 0, 0, 0]),    # on the last boundary: none follows
    (7.0, INF, [0, 0, 0, 0, 0]),
])
def test_hand_computed_grid(t, btnb, row):
    got = beats_to_next_boundary([t], BEATS_4HZ, BOUNDS)
    np.testing.assert_allclose(got, [btnb], rtol=0, atol=1e-9)
    np.testing.assert_array_equal(hazard_targets(got), np.array([row], dtype=np.float32))


def test_hand_computed_grid_vectorised():
    times = np.arange(0.0, 4.0, 0.25)
    expected = [4, 3, 2, 1, 8, 7, 6, 5, 4, 3, 2, 1, INF, INF, INF, INF]
    btnb = beats_to_next_boundary(times, BEATS_4HZ, BOUNDS)
    np.testing.assert_array_equal(btnb, expected)  # on beats the counts are exact integers
    y = hazard_targets(btnb)
    assert y.dtype == np.float32 and y.shape == (16, 5)
    np.testing.assert_array_equal(y[:, 2], [1, 1, 1, 1, 0, 0, 0, 0, 1, 1, 1, 1, 0, 0, 0, 0])
    np.testing.assert_array_equal(y[:, 3], [1] * 12 + [0] * 4)


def test_boundary_exactly_on_a_beat_counts_the_beats_in_between():
    # t on beat 3, boundary on beat 7: beats 4, 5, 6, 7 lie in (t, b] -> 4, inside horizon 4.
    btnb = beats_to_next_boundary([BEATS_4HZ[3]], BEATS_4HZ, [BEATS_4HZ[7]])
    assert btnb.tolist() == [4.0]
    assert hazard_targets(btnb).tolist() == [[0, 0, 1, 1, 1]]


def test_tempo_change_interpolates_each_interval():
    beats = [0.0, 1.0, 1.5, 1.75, 2.0]
    # boundary at 1.25 = half-way between beats 1 and 2 -> position 1.5
    np.testing.assert_allclose(beats_to_next_boundary([0.0, 0.5, 1.0, 1.2], beats, [1.25]),
                               [1.5, 1.0, 0.5, 0.1], atol=1e-12)


def test_beat_position_hand_case():
    beats = [1.0, 2.0, 2.5, 3.0]
    np.testing.assert_allclose(beat_position([0.0, 1.0, 1.5, 2.25, 3.0, 4.0], beats),
                               [-1.0, 0.0, 0.5, 1.5, 3.0, 5.0], atol=1e-12)
    for bad in ([], [1.0]):
        with pytest.raises(ValueError, match="at least 2 beats"):
            beat_position([0.0], bad)


def test_boundary_before_the_first_beat_extrapolates_the_first_interval():
    beats = np.arange(2.0, 5.01, 0.5)  # first beat 2 s, 0.5 s apart
    np.testing.assert_allclose(beats_to_next_boundary([0.0, 0.5, 0.9], beats, [1.0]),
                               [2.0, 1.0, 0.2], atol=1e-12)


def test_boundary_after_the_last_beat_extrapolates_the_last_interval():
    beats = [0.0, 0.5, 1.0, 1.5, 2.0]
    np.testing.assert_allclose(beats_to_next_boundary([2.0, 1.0], beats, [3.0]), [2.0, 4.0])


@pytest.mark.parametrize("beats", [[], [1.0]])
def test_fewer_than_two_beats_gives_nan_where_a_boundary_follows(beats):
    btnb = beats_to_next_boundary([0.0, 1.0, 2.0, 6.0], beats, [5.0])
    assert np.isnan(btnb[:3]).all() and btnb[3] == INF
    np.testing.assert_array_equal(hazard_targets(btnb), np.zeros((4, 5), np.float32))


def test_no_boundaries_gives_inf_and_zero_hazard():
    btnb = beats_to_next_boundary([0.0, 1.0, 9.0], BEATS_4HZ, [])
    assert btnb.tolist() == [INF, INF, INF]
    assert not hazard_targets(btnb).any()


def test_empty_times():
    assert beats_to_next_boundary([], BEATS_4HZ, BOUNDS).shape == (0,)
    assert hazard_targets(np.zeros(0)).shape == (0, 5)


def test_repeated_boundaries_are_one():
    np.testing.assert_array_equal(beats_to_next_boundary([0.0], BEATS_4HZ, [1.0, 1.0, 3.0]), [4.0])


@pytest.mark.parametrize("kwargs,match", [
    ({"times": [0.0, np.nan]}, "times contains NaN"),
    ({"times": [[0.0]]}, "times must be 1-D"),
    ({"times": ["a"]}, "times must be a sequence"),
    ({"beat_times": [0.0, 0.5, 0.5, 1.0]}, "strictly increasing"),
    ({"beat_times": [0.0, np.inf]}, "beat_times contains NaN"),
    ({"boundaries": [3.0, 1.0]}, "non-decreasing"),
])
def test_bad_input_raises(kwargs, match):
    args = {"times": [0.0], "beat_times": BEATS_4HZ, "boundaries": BOUNDS, **kwargs}
    with pytest.raises((ValueError, TypeError), match=match):
        beats_to_next_boundary(**args)


def test_hazard_thresholds_and_custom_horizons():
    btnb = [-1.0, 0.0, 1e-9, 1.0, 1.0000001, 2.0, 16.0, 16.5, INF, np.nan]
    y = hazard_targets(btnb)
    np.testing.assert_array_equal(y, np.array([
        [0, 0, 0, 0, 0], [0, 0, 0, 0, 0], [1, 1, 1, 1, 1], [1, 1, 1, 1, 1], [0, 1, 1, 1, 1],
        [0, 1, 1, 1, 1], [0, 0, 0, 0, 1], [0, 0, 0, 0, 0], [0, 0, 0, 0, 0], [0, 0, 0, 0, 0],
    ], dtype=np.float32))
    assert hazard_targets([3.0], horizons=(3, 0.5)).tolist() == [[1.0, 0.0]]


@pytest.mark.parametrize("horizons", [(), (0, 1), (-1,), (np.nan,), ((1, 2),)])
def test_hazard_rejects_bad_horizons(horizons):
    with pytest.raises(ValueError, match="horizons"):
        hazard_targets([1.0], horizons=horizons)


def test_hazard_rejects_2d():
    with pytest.raises(ValueError, match="1-D"):
        hazard_targets([[1.0]])


# --- snapping ---------------------------------------------------------------------------------

DOWNBEATS = [0.0, 2.0, 4.0, 6.0, 8.0]


def test_snap_moves_within_tolerance_only():
    np.testing.assert_array_equal(snap_boundaries([1.9, 4.2, 5.0, 8.1], DOWNBEATS, 0.15),
                                  [2.0, 4.2, 5.0, 8.0])


def test_snap_tolerance_is_inclusive_and_ties_go_earlier():
    np.testing.assert_array_equal(snap_boundaries([2.25], DOWNBEATS, 0.25), [2.0])
    np.testing.assert_array_equal(snap_boundaries([3.0], DOWNBEATS, 1.0), [2.0])


def test_snap_merges_boundaries_on_one_downbeat():
    np.testing.assert_array_equal(snap_boundaries([1.9, 2.1, 7.0], DOWNBEATS, 0.2), [2.0, 7.0])


@pytest.mark.parametrize("tolerance", [None, 0, 0.0])
def test_snap_off(tolerance):
    bounds = np.array([1.9, 2.1])
    out = snap_boundaries(bounds, DOWNBEATS, tolerance)
    np.testing.assert_array_equal(out, bounds)
    assert out is not bounds


def test_snap_edges():
    assert snap_boundaries([1.0], [], 0.5).tolist() == [1.0]
    assert snap_boundaries([], DOWNBEATS, 0.5).shape == (0,)
    assert snap_boundaries([-0.1, 9.0], DOWNBEATS, 1.0).tolist() == [0.0, 8.0]
    for bad in (-0.1, np.nan, np.inf):
        with pytest.raises(ValueError, match="tolerance_s"):
            snap_boundaries([1.0], DOWNBEATS, bad)


# --- section targets --------------------------------------------------------------------------

def test_section_targets_on_the_slow_grid():
    segments = [Segment(0.0, 0.5, "silence"), Segment(0.5, 1.0, "intro"),
                Segment(1.0, 1.2, IGNORE), Segment(1.2, 2.0, "chorus")]
    times = np.arange(25) / 12.5  # 12.5 Hz: 0, 0.08, ..., 1.92
    y = section_targets(segments, times)
    assert y.dtype == np.int64
    expected = [0] * 7 + [1] * 6 + [-1] * 2 + [4] * 10
    assert y.tolist() == expected
    np.testing.assert_array_equal(y, segments_to_frames(segments, times))


# --- hypothesis -------------------------------------------------------------------------------

@st.composite
def beat_grids(draw):
    """Strictly increasing beat times (0..60 beats) with varying intervals 0.2..1.5 s."""
    n = draw(st.integers(0, 60))
    start = draw(st.floats(0.0, 5.0))
    ibis = draw(st.lists(st.floats(0.2, 1.5), min_size=n, max_size=n))
    return start + np.concatenate([[0.0], np.cumsum(ibis)])[:n] if n else np.zeros(0)




def _btnb_reference(times, beats, bounds):
    out = []
    for t in times:
        nxt = next((b for b in bounds if b > t), None)
        if nxt is None:
            out.append(math.inf)
        elif len(beats) < 2:
            out.append(math.nan)
        else:
            out.append(reference_position(nxt, list(beats)) - reference_position(t, list(beats)))
    return out


_time = st.floats(-5.0, 100.0)


@settings(max_examples=150, deadline=None)
@given(beats=beat_grids(), bounds=st.lists(_time, max_size=8).map(sorted),
       times=st.lists(_time, max_size=40), extra=st.booleans())
@example(beats=np.array([1.0, 1.5]), bounds=[0.0, 1.5, 1.5], times=[1.5, 0.0, -1.0, 2.0],
         extra=True)
@example(beats=np.zeros(0), bounds=[1.0], times=[0.0, 2.0], extra=False)
@example(beats=np.array([1.0, 2.0]), bounds=[2.0003473852749704e-184], times=[0.0], extra=False)
@example(beats=np.array([0.0, 1.0, 2.0]), bounds=[1.0], times=[float(np.nextafter(1.0, 0.0))],
         extra=False)
def test_btnb_matches_plain_python_reference(beats, bounds, times, extra):
    if extra:  # times exactly on beats and on boundaries
        times = times + list(beats) + bounds
    got = beats_to_next_boundary(times, beats, bounds)
    np.testing.assert_allclose(got, _btnb_reference(times, beats, bounds), rtol=1e-9, atol=1e-9)
    finite = np.isfinite(got)
    assert np.all(got[finite] > 0)
    if len(beats) >= 2 and times:
        np.testing.assert_allclose(beat_position(times, beats),
                                   [reference_position(t, list(beats)) for t in times],
                                   rtol=1e-9, atol=1e-9)


@settings(max_examples=150, deadline=None)
@given(btnb=st.lists(st.one_of(st.floats(-5.0, 40.0), st.just(math.inf), st.just(math.nan)),
                     max_size=50))
def test_hazard_is_monotone_in_horizon(btnb):
    y = hazard_targets(btnb)
    assert y.shape == (len(btnb), len(HORIZONS_BEATS))
    assert np.all(y[:, :-1] <= y[:, 1:])
    assert set(np.unique(y)) <= {0.0, 1.0}


@settings(max_examples=150, deadline=None)
@given(beats=beat_grids().filter(lambda b: b.size >= 2),
       bounds=st.lists(_time, max_size=8).map(sorted), times=st.lists(_time, max_size=40))
def test_btnb_decreases_between_boundaries(beats, bounds, times):
    times = np.sort(np.asarray(times, dtype=np.float64))
    btnb = beats_to_next_boundary(times, beats, bounds)
    nxt = np.searchsorted(np.asarray(bounds, dtype=np.float64), times, side="right")
    for a in range(times.size - 1):
        if nxt[a] == nxt[a + 1] and np.isfinite(btnb[a]):
            assert btnb[a + 1] <= btnb[a]
            if times[a + 1] - times[a] > 1e-6:
                assert btnb[a + 1] < btnb[a]


@settings(max_examples=100, deadline=None)
@given(beats=beat_grids().filter(lambda b: b.size >= 2), data=st.data())
def test_btnb_on_beats_counts_beats(beats, data):
    i = data.draw(st.integers(0, beats.size - 2))
    j = data.draw(st.integers(i + 1, beats.size - 1))
    assert beats_to_next_boundary([beats[i]], beats, [beats[j]]).tolist() == [float(j - i)]
