"""Tests for fractalsync_models.training.synth: annotations agree with the rendered audio and the
tempo curve, the set covers the required scenarios, and generation is deterministic."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.signal import butter, hilbert, sosfiltfilt

from fractalsync_models.training.synth import SynthItem, make_item, synth_set


@pytest.fixture(scope="module")
def items() -> list[SynthItem]:
    return synth_set()


# --- independent measurements on the audio ----------------------------------------------------


def _band_envelope(item: SynthItem, btype: str, cutoff_hz: float) -> np.ndarray:
    """Zero-phase band-limited amplitude envelope, shape (n_samples,): Hilbert magnitude
    smoothed by a centred 3 ms moving average (tames the fluctuations of noise sounds)."""
    sos = butter(4, cutoff_hz, btype=btype, fs=item.sample_rate, output="sos")
    magnitude = np.abs(hilbert(sosfiltfilt(sos, item.audio.astype(np.float64))))
    width = int(0.003 * item.sample_rate) | 1
    return np.convolve(magnitude, np.ones(width) / width, mode="same")


def _rise_and_peak(envelope, sr, times, half_window=0.04):
    """Per time t, within t +- half_window: the time (relative to t, s) where the envelope first
    gets half-way from its level at the window start to the window maximum, the maximum, and
    the increase (maximum - level at the window start)."""
    rises, peaks, increases = [], [], []
    for t in times:
        a = max(int(round((t - half_window) * sr)), 0)
        b = min(int(round((t + half_window) * sr)), envelope.size)
        seg = envelope[a:b]
        peak = seg.max()
        threshold = seg[0] + 0.5 * (peak - seg[0])
        rises.append((a + int(np.argmax(seg >= threshold))) / sr - t)
        peaks.append(peak)
        increases.append(peak - seg[0])
    return np.array(rises), np.array(peaks), np.array(increases)


def _gap_free_pairs(item: SynthItem):
    """Indices k of consecutive annotated beats (k, k+1) not separated by a gap."""
    k = np.arange(item.beats.size - 1)
    if item.gap is None:
        return k
    return k[~((item.beats[k] < item.gap[0]) & (item.beats[k + 1] >= item.gap[1]))]


# --- the set ----------------------------------------------------------------------------------


def test_set_covers_required_scenarios(items):
    names = [it.name for it in items]
    assert len(set(names)) == len(names)
    steady = [it for it in items if it.steady]
    tempos = sorted(it.tempo_bpm for it in steady)
    assert tempos[0] <= 60 and tempos[-1] >= 200
    # Several tempos spread over the range (at least 8 distinct, every 40 BPM band covered).
    assert len(set(tempos)) >= 8
    for lo in range(60, 200, 40):
        assert any(lo <= t < lo + 40 for t in tempos), f"no steady item in {lo}-{lo + 40} BPM"
    assert sum(it.beats_per_bar == 3 for it in items) >= 3
    assert sum(it.beats_per_bar == 4 for it in items) >= 3
    assert any(it.swing > 0.5 for it in items)
    assert any(it.gap is not None for it in items)
    ramps = [it for it in items if not it.steady and np.unique(it.tempo_curve[:, 0]).size > 1]
    steps = [it for it in items if not it.steady and np.unique(it.tempo_curve[:, 0]).size == 1]
    assert ramps and steps


def test_basic_invariants(items):
    for it in items:
        assert it.audio.dtype == np.float32 and it.audio.ndim == 1, it.name
        assert it.sample_rate == 22050
        assert it.duration == pytest.approx(30.0, abs=1 / it.sample_rate), it.name
        assert np.all(np.isfinite(it.audio)) and np.max(np.abs(it.audio)) <= 1.0, it.name
        assert np.all(np.diff(it.beats) > 0), it.name
        assert it.beats[0] >= 0 and it.beats[-1] < it.duration, it.name
        assert it.beats.shape == it.beat_positions.shape
        assert set(np.unique(it.beat_positions)) <= set(range(1, it.beats_per_bar + 1))
        np.testing.assert_array_equal(it.downbeats, it.beats[it.beat_positions == 1])
        # The first annotated beat is the first beat of music: nothing loud before it.
        lead = it.audio[: int((it.beats[0] - 0.005) * it.sample_rate)]
        assert lead.size == 0 or np.max(np.abs(lead)) < 0.02, it.name


def test_beats_follow_tempo_curve(items):
    """Integrating tempo/60 numerically between annotated beats gives whole beats, and the bar
    positions advance by that many beats (across a gap, by the beats that were left out)."""
    for it in items:
        n_steps = 20000
        counts = []
        for a, b in zip(it.beats[:-1], it.beats[1:], strict=True):
            t = np.linspace(a, b, n_steps)
            counts.append(np.trapezoid(it.tempo_at(t), t) / 60.0)
        counts = np.array(counts)
        whole = np.round(counts)
        np.testing.assert_allclose(counts, whole, atol=1e-3, err_msg=it.name)
        assert np.all(whole >= 1)
        advance = (it.beat_positions[1:] - it.beat_positions[:-1]) % it.beats_per_bar
        np.testing.assert_array_equal(advance, whole.astype(int) % it.beats_per_bar, it.name)


def test_steady_items_have_exact_intervals(items):
    for it in items:
        if it.steady:
            k = _gap_free_pairs(it)
            np.testing.assert_allclose(
                np.diff(it.beats)[k], 60.0 / it.tempo_bpm, rtol=0, atol=1e-9, err_msg=it.name
            )


def test_meter_from_positions(items):
    for it in items:
        if it.gap is None:
            # Downbeats every beats_per_bar beats.
            assert np.all(np.diff(np.flatnonzero(it.beat_positions == 1)) == it.beats_per_bar)
    assert {it.beats_per_bar for it in items} == {3, 4}


def test_ramp_item():
    it = make_item("ramp", [(0.0, 100.0), (30.0, 130.0)])
    ibi = np.diff(it.beats)
    assert np.all(np.diff(ibi) < 0)  # strictly accelerating
    # Each interval lies between the periods at its two ends.
    assert np.all(ibi <= 60.0 / it.tempo_at(it.beats[:-1]) + 1e-12)
    assert np.all(ibi >= 60.0 / it.tempo_at(it.beats[1:]) - 1e-12)
    assert it.tempo_at(0.0) == 100.0 and it.tempo_at(30.0) == 130.0
    assert not it.steady


def test_abrupt_change_item():
    it = make_item("change", [(15.0, 120.0), (15.0, 150.0)], first_beat=1.0)
    before, after = it.beats[it.beats <= 15.0], it.beats[it.beats >= 15.0]
    np.testing.assert_allclose(np.diff(before), 0.5, atol=1e-9)
    np.testing.assert_allclose(np.diff(after), 0.4, atol=1e-9)
    assert 15.0 in it.downbeats


def test_gap_items(items):
    gap_items = [it for it in items if it.gap is not None]
    assert gap_items
    for it in gap_items:
        start, end = it.gap
        assert end - start >= 4.0
        assert not np.any((it.beats >= start) & (it.beats < end)), it.name
        assert np.any(it.beats < start) and np.any(it.beats >= end), it.name
        sr = it.sample_rate
        inside = it.audio[int((start + 0.05) * sr) : int((end - 0.05) * sr)]
        before = it.audio[int((start - 4.0) * sr) : int(start * sr)]
        rms_in = np.sqrt(np.mean(inside.astype(np.float64) ** 2))
        rms_before = np.sqrt(np.mean(before.astype(np.float64) ** 2))
        assert rms_in < 2e-3, it.name  # noise floor only (about -60 dBFS)
        assert rms_in < 0.02 * rms_before, it.name


# --- annotations agree with the audio ---------------------------------------------------------


def test_low_band_onsets_at_downbeats_and_accented(items):
    """Kick + bass (< 200 Hz) start within 5 ms of every downbeat, louder than on other beats."""
    for it in items:
        env = _band_envelope(it, "lowpass", 200.0)
        rises, db_peaks, _ = _rise_and_peak(env, it.sample_rate, it.downbeats)
        assert np.max(np.abs(rises)) < 0.005, (it.name, rises)
        _, other_peaks, _ = _rise_and_peak(env, it.sample_rate, it.beats[it.beat_positions != 1])
        assert db_peaks.min() > 1.3 * other_peaks.max(), it.name


def test_high_band_onsets_at_every_beat(items):
    """Hi-hat/snare (> 5 kHz) start within 5 ms of every annotated beat."""
    for it in items:
        env = _band_envelope(it, "highpass", 5000.0)
        rises, _, _ = _rise_and_peak(env, it.sample_rate, it.beats)
        assert np.max(np.abs(rises)) < 0.005, (it.name, rises)


def test_swing_moves_offbeat_hats_only(items):
    for it in items:
        if it.swing == 0.5:
            continue
        env = _band_envelope(it, "highpass", 5000.0)
        k = _gap_free_pairs(it)
        ibi = np.diff(it.beats)[k]
        swung = it.beats[k] + it.swing * ibi
        straight = it.beats[k] + 0.5 * ibi
        rises, _, increases = _rise_and_peak(env, it.sample_rate, swung, half_window=0.02)
        assert np.max(np.abs(rises)) < 0.005, it.name
        # Nothing starts at the straight eighth position: only decaying tails, whose noisy
        # envelope wobbles by ~25 % (a hat there would rise as much as the swung one).
        _, _, straight = _rise_and_peak(env, it.sample_rate, straight, half_window=0.01)
        assert np.all(straight < 0.5 * increases), it.name


# --- determinism and parameters ---------------------------------------------------------------


def test_deterministic(items):
    again = synth_set()
    for a, b in zip(items, again, strict=True):
        np.testing.assert_array_equal(a.audio, b.audio)
        np.testing.assert_array_equal(a.beats, b.beats)
        np.testing.assert_array_equal(a.downbeats, b.downbeats)
    other = make_item("steady_4-4_120bpm", 120, seed=1)
    same_name = next(it for it in items if it.name == "steady_4-4_120bpm")
    assert not np.array_equal(other.audio, same_name.audio)  # seed changes the noise
    np.testing.assert_array_equal(other.beats, same_name.beats)  # not the annotations


def test_sample_rate_44100():
    a = make_item("x", 128, beats_per_bar=3, sample_rate=22050, duration=8.0)
    b = make_item("x", 128, beats_per_bar=3, sample_rate=44100, duration=8.0)
    assert b.audio.size == 2 * a.audio.size and b.sample_rate == 44100
    np.testing.assert_array_equal(a.beats, b.beats)
    np.testing.assert_array_equal(a.beat_positions, b.beat_positions)
    env = _band_envelope(b, "lowpass", 200.0)
    rises, _, _ = _rise_and_peak(env, b.sample_rate, b.downbeats)
    assert np.max(np.abs(rises)) < 0.005


@st.composite
def tempo_curves(draw):
    """Piecewise-linear tempo breakpoints (time_s, bpm), possibly with steps (equal times)."""
    n = draw(st.integers(1, 4))
    times = sorted(draw(st.lists(st.floats(0.0, 8.0), min_size=n, max_size=n)))
    if n > 1 and draw(st.booleans()):
        times[1] = times[0]  # a step
    bpms = draw(st.lists(st.floats(40.0, 240.0), min_size=n, max_size=n))
    return list(zip(times, bpms, strict=True))


@settings(max_examples=30, deadline=None)
@given(tempo_curves(), st.floats(0.0, 2.0), st.integers(2, 7))
def test_random_tempo_curves_integrate_to_one_beat(curve, first_beat, meter):
    it = make_item("prop", curve, beats_per_bar=meter, duration=8.0, first_beat=first_beat)
    assert it.beats[0] == first_beat
    assert np.all(np.diff(it.beats) > 0) and it.beats[-1] < 8.0
    # No whole beat fits between the last annotated beat and the end.
    t = np.linspace(it.beats[-1], 8.0, 20000)
    assert np.trapezoid(it.tempo_at(t), t) / 60.0 < 1.0 + 2e-3
    for a, b in zip(it.beats[:-1], it.beats[1:], strict=True):
        t = np.linspace(a, b, 20000)
        assert np.trapezoid(it.tempo_at(t), t) / 60.0 == pytest.approx(1.0, abs=2e-3)
    np.testing.assert_array_equal(it.beat_positions, np.arange(it.beats.size) % meter + 1)
    assert np.all(np.isfinite(it.audio))


def test_gap_over_everything_is_silent_and_unannotated():
    it = make_item("all_gap", 120, duration=4.0, gap=(0.0, 4.0))
    assert it.beats.size == 0 and it.downbeats.size == 0
    assert np.all(np.isfinite(it.audio)) and np.max(np.abs(it.audio)) < 0.01


def test_pickup_beats():
    it = make_item("pickup", 100, beats_per_bar=4, first_position=3, duration=6.0)
    np.testing.assert_array_equal(it.beat_positions[:4], [3, 4, 1, 2])
    assert it.downbeats[0] == it.beats[2]


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        (dict(tempo=0.0), "tempo values"),
        (dict(tempo=[(0.0, 120.0), (5.0, 1e9)]), "tempo values"),
        (dict(tempo=[(1.0, 120.0), (0.5, 130.0)]), "non-decreasing"),
        (dict(tempo=[[1.0, 2.0, 3.0]]), "pairs"),
        (dict(tempo=np.nan), "NaN"),
        (dict(tempo=120, beats_per_bar=1), "beats_per_bar"),
        (dict(tempo=120, first_position=5), "first_position"),
        (dict(tempo=120, duration=0.0), "duration"),
        (dict(tempo=120, first_beat=40.0), "first_beat"),
        (dict(tempo=120, swing=0.9), "swing"),
        (dict(tempo=120, gap=(20.0, 10.0)), "gap"),
        (dict(tempo=120, sample_rate=100), "sample_rate"),
        (dict(tempo=120, sample_rate=22050.5), "sample_rate"),
        (dict(tempo=120, seed=-1), "seed"),
    ],
)
def test_bad_parameters_raise(kwargs, match):
    with pytest.raises(ValueError, match=match):
        make_item("bad", **kwargs)
