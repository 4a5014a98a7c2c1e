"""Dominant tempo, grid tempo, half/double alternative."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fractalsync_tracking.tempo import (
    alternative_tempo,
    beat_autocorrelation,
    dominant_tempo,
    grid_tempo,
    onbeat_offbeat_activation,
)

FPS = 50.0


def _naive_acf(x, max_lag):
    x = np.asarray(x, dtype=np.float64)
    out = np.zeros(max_lag + 1)
    if x.size == 0:
        return out
    x = x - x.mean()
    energy = np.dot(x, x)
    if energy <= 1e-12 * x.size:
        return out
    for lag in range(min(max_lag + 1, x.size)):
        out[lag] = np.dot(x[: x.size - lag], x[lag:]) / energy
    return out


@settings(deadline=None, max_examples=50)
@given(st.lists(st.floats(0, 1), min_size=0, max_size=200), st.integers(0, 250))
def test_autocorrelation_matches_naive(values, max_lag):
    np.testing.assert_allclose(beat_autocorrelation(values, max_lag),
                               _naive_acf(values, max_lag), atol=1e-9)


def test_autocorrelation_edge_cases():
    assert np.all(beat_autocorrelation(np.full(100, 0.3), 10) == 0.0)  # constant
    assert np.all(beat_autocorrelation([], 5) == 0.0)
    with pytest.raises(ValueError, match="NaN or inf"):
        beat_autocorrelation([0.1, np.nan], 3)
    with pytest.raises(ValueError, match="1-D"):
        beat_autocorrelation(np.zeros((3, 3)), 3)


def _pulse(bpm, seconds=30.0, fps=FPS, width=1):
    """Impulse train at ``bpm`` with beats at rounded frame positions."""
    act = np.zeros(int(seconds * fps))
    frames = np.round(np.arange(0.3, seconds, 60.0 / bpm) * fps).astype(int)
    frames = frames[frames < act.size]
    for d in range(-width + 1, width):
        act[np.clip(frames + d, 0, act.size - 1)] = 0.9
    return act, frames


@pytest.mark.parametrize("bpm", [85.0, 96.0, 110.0, 123.0, 128.0, 140.0, 165.0])
def test_dominant_tempo_of_pulse_trains(bpm):
    est = dominant_tempo(_pulse(bpm, width=2)[0])
    assert est.bpm == pytest.approx(bpm, rel=0.02)
    assert 0.3 < est.strength <= 1.0


def test_dominant_tempo_fast_pulse_is_the_tempo_or_its_half():
    """The 120 BPM-centred prior may prefer the half of a very fast pulse (documented)."""
    est = dominant_tempo(_pulse(200.0, width=2)[0])
    assert min(abs(est.bpm / 200.0 - r) for r in (1.0, 0.5)) <= 0.02


def test_dominant_tempo_without_periodicity():
    est = dominant_tempo(np.zeros(1000))
    assert np.isnan(est.bpm) and est.strength == 0.0
    assert np.isnan(dominant_tempo(np.ones(10)).bpm)  # shorter than a period, constant
    with pytest.raises(ValueError):
        dominant_tempo(np.zeros(100), fps=0.0)


def test_grid_tempo():
    t = np.arange(40) * 0.5 + 0.25
    assert grid_tempo(t) == pytest.approx(120.0)
    # frame-quantised 128 BPM grid
    q = np.round(np.arange(60) * 60.0 / 128.0 * FPS) / FPS
    assert grid_tempo(q) == pytest.approx(128.0, rel=0.005)
    # one misplaced beat does not move the median
    bad = t.copy()
    bad[20] += 0.1
    assert grid_tempo(bad) == pytest.approx(120.0)
    assert grid_tempo([1.0, 1.5]) == pytest.approx(120.0)
    assert np.isnan(grid_tempo([1.0])) and np.isnan(grid_tempo([]))
    with pytest.raises(ValueError):
        grid_tempo([2.0, 1.0, 0.0])


def test_alternative_tempo_rules():
    act, frames = _pulse(100.0)
    assert alternative_tempo(act, frames, 100.0) is None
    # strong off-beats: double
    dbl = act.copy()
    dbl[(frames[:-1] + frames[1:]) // 2] = 0.8
    assert alternative_tempo(dbl, frames, 100.0) == pytest.approx(200.0)
    # alternating strong/weak beats: half
    alt = act.copy()
    alt[frames[1::2]] = 0.2
    assert alternative_tempo(alt, frames, 100.0, min_bpm=40.0) == pytest.approx(50.0)
    assert alternative_tempo(alt, frames, 100.0) is None  # 50 BPM is below the default range
    # the activation's dominant tempo names an octave
    assert alternative_tempo(act, frames, 100.0, dominant_bpm=199.0) == pytest.approx(200.0)
    assert alternative_tempo(act, frames, 100.0, dominant_bpm=51.0, min_bpm=40.0) == 50.0
    # but never outside the allowed range
    assert alternative_tempo(dbl, frames, 150.0, max_bpm=215.0) is None
    assert alternative_tempo(act, frames[:3], 100.0) is None
    with pytest.raises(ValueError):
        alternative_tempo(act, frames, 100.0, ratio=1.5)


def test_onbeat_offbeat_activation():
    act = np.zeros(100)
    act[[10, 30, 50]] = [0.5, 0.7, 0.9]
    act[40] = 0.3
    on, off = onbeat_offbeat_activation(act, [10, 30, 50])
    np.testing.assert_allclose(on, [0.5, 0.7, 0.9])
    np.testing.assert_allclose(off, [0.0, 0.3])
    on, off = onbeat_offbeat_activation(act, [])
    assert on.size == 0 and off.size == 0
    with pytest.raises(ValueError, match="out of range"):
        onbeat_offbeat_activation(act, [5, 100])
