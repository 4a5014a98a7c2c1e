"""Tests for fractalsync_dsp.micro against a plain numpy reference written from the definitions."""

from __future__ import annotations

import json
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fractalsync_dsp.micro import (
    BAND_EDGES_HZ,
    MICRO_NAMES,
    ONSET_ALPHA,
    ONSET_EPS,
    MicroFeatures,
    micro_features,
)

CONTRACT = json.loads(
    (Path(__file__).resolve().parents[1] / "contracts" / "v1.json").read_text()
)["micro_features"]
SR, N, K = 22050, 1411, 705
HANN = np.hanning(N)
SILENCE = np.array([-120, -120, -120, -120, 0, 0, 0], np.float32)


def ref_micro(frames: np.ndarray, mags: np.ndarray) -> np.ndarray:
    """Numpy reference of the module docstring's definitions (float64, vectorised)."""
    frames = np.where(np.isfinite(frames), frames, 0).astype(np.float64)
    mags = np.abs(np.where(np.isfinite(mags), mags, 0).astype(np.float64))
    f = np.arange(K) * SR / N
    out = np.zeros((len(frames), 7))
    out[:, 0] = 10 * np.log10(np.maximum(np.mean(frames**2, axis=1), 1e-12))
    norm = 2 / (N * np.sum(HANN**2))
    for j, name in enumerate(("bass", "mid", "treble")):
        lo, hi = CONTRACT["band_edges_hz"][name]
        power = norm * np.sum(mags[:, (f >= lo) & (f < hi)] ** 2, axis=1)
        out[:, 1 + j] = 10 * np.log10(np.maximum(power, 1e-12))
    span = (f >= 20) & (f < 11025)
    logmag = np.log10(1 + mags[:, span])
    out[1:, 4] = np.mean(np.maximum(0, np.diff(logmag, axis=0)), axis=1)
    total = norm * np.sum(mags[:, span] ** 2, axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        centroid = np.sum(f[span] * mags[:, span], axis=1) / np.sum(mags[:, span], axis=1)
    out[:, 5] = np.where(total >= 1e-12, centroid, 0.0)
    mean = 0.0
    for t in range(len(frames)):
        out[t, 6] = out[t, 4] / (out[t, 4] + mean + ONSET_EPS)
        mean += ONSET_ALPHA * (out[t, 4] - mean)
    return out


def _mag(frame: np.ndarray) -> np.ndarray:
    return np.abs(np.fft.rfft(HANN * frame))[:K].astype(np.float32)


def _sine(freq: float, amp: float = 1.0, phase: float = 0.0) -> np.ndarray:
    return (amp * np.sin(2 * np.pi * freq * np.arange(N) / SR + phase)).astype(np.float32)


@st.composite
def frame_sequences(draw):
    """(frames (n, 1411), mags (n, 705)) covering silence, DC, noise, sines, spikes, huge and
    tiny values, NaN/inf injected into samples or bins, and mags unrelated to the frame."""
    n = draw(st.integers(0, 6))
    frames, mags = np.zeros((n, N), np.float32), np.zeros((n, K), np.float32)
    for i in range(n):
        rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
        kind = draw(st.sampled_from(["silence", "dc", "noise", "sine", "spike", "scaled"]))
        if kind == "dc":
            frames[i] = draw(st.floats(-1, 1))
        elif kind == "noise":
            frames[i] = rng.uniform(-1, 1, N)  # full-scale noise
        elif kind == "sine":
            frames[i] = _sine(draw(st.floats(0, SR / 2)), draw(st.floats(0, 1)))
        elif kind == "spike":
            frames[i, rng.integers(N)] = 1.0
        elif kind == "scaled":
            frames[i] = rng.standard_normal(N) * 10.0 ** draw(st.integers(-30, 36))
        if draw(st.booleans()):
            mags[i] = _mag(frames[i])
        else:
            mags[i] = rng.standard_normal(K) * 10.0 ** draw(st.integers(-20, 20))
        for _ in range(draw(st.integers(0, 3))):
            bad = draw(st.sampled_from([np.nan, np.inf, -np.inf]))
            if draw(st.booleans()):
                frames[i, rng.integers(N)] = bad
            else:
                mags[i, rng.integers(K)] = bad
    return frames, mags


@settings(max_examples=50, deadline=None)
@given(seq=frame_sequences())
def test_batch_matches_numpy_reference(seq):
    frames, mags = seq
    got = micro_features(frames, mags)
    assert got.shape == (len(frames), 7) and got.dtype == np.float32
    assert np.isfinite(got).all()
    np.testing.assert_allclose(got, ref_micro(frames, mags), rtol=2e-5, atol=1e-6)


@settings(max_examples=50, deadline=None)
@given(seq=frame_sequences(), polls=st.lists(st.integers(0, 100), min_size=6, max_size=6))
def test_stream_equals_batch_and_polling_changes_nothing(seq, polls):
    frames, mags = seq
    batch = micro_features(frames, mags)
    quiet, busy = MicroFeatures(), MicroFeatures()
    out = np.empty(7, np.float32)
    for t in range(len(frames)):
        q = quiet.update(frames[t], mags[t]).copy()
        b = busy.update(frames[t], mags[t]).copy()
        for _ in range(polls[t]):
            np.testing.assert_array_equal(busy.latest, b)
            np.testing.assert_array_equal(busy.poll(), b)
            np.testing.assert_array_equal(busy.poll(out=out), b)
        np.testing.assert_array_equal(q, b)
        np.testing.assert_array_equal(q, batch[t])
    assert busy.frames_seen == quiet.frames_seen == len(frames)


def test_flux_sequence_equals_reference():
    rng = np.random.default_rng(5)
    frames = np.stack([_sine(220 * (1 + t % 4), 0.5) + 0.05 * rng.standard_normal(N)
                       for t in range(20)]).astype(np.float32)
    mags = np.stack([_mag(f) for f in frames])
    micro = MicroFeatures()
    flux = []
    for f, m in zip(frames, mags, strict=True):
        micro.update(f, m)
        for _ in range(7):  # the roadmap's bug: reading recomputed flux against itself
            micro.poll()
            _ = micro.latest
        flux.append(micro.latest[4])
    np.testing.assert_allclose(flux, ref_micro(frames, mags)[:, 4], rtol=1e-5, atol=1e-7)
    assert flux[0] == 0 and min(flux[1:]) > 0


def test_silence_and_initial_state():
    micro = MicroFeatures()
    np.testing.assert_array_equal(micro.latest, SILENCE)
    zeros_f, zeros_m = np.zeros(N, np.float32), np.zeros(K, np.float32)
    for _ in range(3):
        np.testing.assert_array_equal(micro.update(zeros_f, zeros_m), SILENCE)


def test_full_scale_sine_levels():
    frame = _sine(1000.0)
    v = micro_features(frame[None], _mag(frame)[None])[0]
    assert v[0] == pytest.approx(-3.0103, abs=1e-3)  # 10 log10(0.5)
    assert v[2] == pytest.approx(-3.0103, abs=0.05)  # Parseval: the band holds the sine
    assert v[1] < -60 and v[3] < -60
    assert v[5] == pytest.approx(1000.0, abs=5.0)


def test_dc_counts_in_rms_only():
    frame = np.ones(N, np.float32)
    v = micro_features(frame[None], _mag(frame)[None])[0]
    assert v[0] == pytest.approx(0.0, abs=1e-5)
    assert max(v[1], v[2], v[3]) < -60


def test_nan_is_zeroed():
    frame, mag = _sine(300.0, 0.3), np.zeros(K, np.float32)
    mag[:] = _mag(frame)
    bad_f, bad_m = frame.copy(), mag.copy()
    bad_f[[3, 700]] = [np.nan, np.inf]
    bad_m[[0, 50, 704]] = [np.inf, np.nan, -np.inf]
    zero_f, zero_m = frame.copy(), mag.copy()
    zero_f[[3, 700]] = 0
    zero_m[[0, 50, 704]] = 0
    frames_bad = np.stack([frame, bad_f, frame])
    frames_zero = np.stack([frame, zero_f, frame])
    np.testing.assert_array_equal(
        micro_features(frames_bad, np.stack([mag, bad_m, mag])),
        micro_features(frames_zero, np.stack([mag, zero_m, mag])),
    )


def test_onset_bounded_and_high_on_attack():
    quiet = _sine(440, 0.01)
    loud = _sine(440, 0.01) + np.random.default_rng(0).uniform(-1, 1, N).astype(np.float32)
    frames = np.stack([quiet] * 100 + [loud]).astype(np.float32)
    v = micro_features(frames, np.stack([_mag(f) for f in frames]))
    assert ((v[:, 6] >= 0) & (v[:, 6] < 1)).all()
    assert v[-1, 6] > 0.9 and v[-2, 6] < 0.5


def test_latest_is_read_only_and_reset():
    micro = MicroFeatures()
    frame = _sine(100.0, 0.5)
    first = micro.update(frame, _mag(frame)).copy()
    with pytest.raises(ValueError):
        micro.latest[0] = 1.0
    micro.update(frame * 2, _mag(frame * 2))
    micro.reset()
    np.testing.assert_array_equal(micro.latest, SILENCE)
    assert micro.frames_seen == 0
    np.testing.assert_array_equal(micro.update(frame, _mag(frame)), first)


def test_matches_contract():
    assert list(MICRO_NAMES) == CONTRACT["names"] and len(MICRO_NAMES) == CONTRACT["dim"]
    assert {k: list(v) for k, v in BAND_EDGES_HZ.items()} == CONTRACT["band_edges_hz"]


def test_empty_batch():
    assert micro_features(np.zeros((0, N), np.float32), np.zeros((0, K))).shape == (0, 7)


def test_float64_input_accepted():
    frame = _sine(500.0).astype(np.float64)
    np.testing.assert_array_equal(
        MicroFeatures().update(frame, _mag(frame).astype(np.float64)),
        micro_features(frame[None].astype(np.float32), _mag(frame)[None])[0],
    )


@pytest.mark.parametrize(
    ("frame", "mag", "err", "match"),
    [
        (np.zeros(1410), np.zeros(K), ValueError, "shapes"),
        (np.zeros(N), np.zeros(706), ValueError, "shapes"),
        (np.zeros((1, N)), np.zeros((1, K)), ValueError, "shapes"),
        (np.zeros(N), np.zeros(K, complex), TypeError, "np.abs"),
        (np.zeros(N, np.int16), np.zeros(K), TypeError, "float"),
        (np.zeros(N, object), np.zeros(K), TypeError, "float"),
    ],
)
def test_update_rejects_bad_input(frame, mag, err, match):
    micro = MicroFeatures()
    with pytest.raises(err, match=match):
        micro.update(frame, mag)
    assert micro.frames_seen == 0


def test_batch_rejects_bad_shapes():
    with pytest.raises(ValueError, match="shapes"):
        micro_features(np.zeros((2, N)), np.zeros((3, K)))
    with pytest.raises(ValueError, match="shapes"):
        micro_features(np.zeros(N), np.zeros(K))


def test_update_and_reads_allocate_no_array_data():
    micro = MicroFeatures()
    frame = _sine(700.0, 0.5)
    mag = _mag(frame)
    out = np.empty(7, np.float32)
    micro.update(frame, mag)  # warm-up
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        base = tracemalloc.get_traced_memory()[0]
        for _ in range(200):
            micro.update(frame, mag)
            micro.poll(out=out)
            _ = micro.latest
        peak = tracemalloc.get_traced_memory()[1] - base
        tracemalloc.reset_peak()
        micro.update(frame.astype(np.float64), mag)  # a float64 frame is converted: visible
        peak_convert = tracemalloc.get_traced_memory()[1] - base
    finally:
        tracemalloc.stop()
    assert peak < 1000
    assert peak_convert >= 4 * N
