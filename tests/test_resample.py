"""Tests for fractalsync_dsp.resample: to_mono, resample, StreamResampler."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fractalsync_dsp.resample import (
    MAX_ABS,
    MAX_CHANNELS,
    QUALITIES,
    StreamResampler,
    resample,
    to_mono,
)

RNG = np.random.default_rng(1234)
NOISE = (0.3 * RNG.standard_normal(12000)).astype(np.float32)


def _push_all(rs: StreamResampler, x: np.ndarray, sizes: list[int]) -> np.ndarray:
    """Push x in blocks cycling through sizes (0-size blocks included), then flush."""
    outs, i, j = [rs.push(x[:0])], 0, 0
    sizes = sizes if any(sizes) else [*sizes, len(x)]
    while i < len(x):
        n = sizes[j % len(sizes)]
        j += 1
        outs.append(rs.push(x[i : i + n]))
        i += n
    outs.append(rs.flush())
    return np.concatenate(outs)


def _time_offset_samples(y: np.ndarray, freq: float, sr: float) -> float:
    """Fit y[m] ~ A sin(2 pi f (m - d) / sr) on the middle half; return d in samples."""
    m = np.arange(len(y))[len(y) // 4 : 3 * len(y) // 4]
    w = 2 * np.pi * freq / sr
    basis = np.stack([np.sin(w * m), np.cos(w * m)], axis=1)
    (a, b), *_ = np.linalg.lstsq(basis, y[m].astype(np.float64), rcond=None)
    # a sin(wm) + b cos(wm) = A sin(w m + phi), phi = atan2(b, a) = -w d
    return float(-np.arctan2(b, a) / w)


# ----------------------------------------------------------------------------- to_mono


def test_to_mono_mean_of_channels():
    x = RNG.standard_normal((100, 3)).astype(np.float32)
    y = to_mono(x)
    assert y.dtype == np.float32 and y.shape == (100,) and y.flags.c_contiguous
    np.testing.assert_allclose(y, x.astype(np.float64).mean(axis=1), rtol=0, atol=1e-6)


def test_to_mono_mono_inputs():
    x = RNG.standard_normal(50).astype(np.float32)
    np.testing.assert_array_equal(to_mono(x), x)
    np.testing.assert_array_equal(to_mono(x[:, None]), x)
    np.testing.assert_array_equal(to_mono(x.astype(np.float64)), x)
    assert to_mono(x[::2]).flags.c_contiguous


@pytest.mark.parametrize("shape", [(0,), (0, 2), (1,), (1, 2)])
def test_to_mono_tiny(shape):
    x = np.full(shape, 0.5, np.float32)
    y = to_mono(x)
    assert y.shape == (shape[0],) and y.dtype == np.float32
    np.testing.assert_array_equal(y, np.full(shape[0], 0.5, np.float32))


@pytest.mark.parametrize("dtype", [np.int16, np.int32])
def test_int_scaled_by_max(dtype):
    top = np.iinfo(dtype).max
    x = np.array([[top, -top], [top, top], [0, -top]], dtype=dtype)
    np.testing.assert_allclose(to_mono(x), [0.0, 1.0, -0.5], rtol=0, atol=1e-7)


@pytest.mark.parametrize(
    "x", [np.ones(4, bool), np.ones(4, np.int8), np.ones(4, np.int64), np.ones(4, complex),
          np.array([0.1, None], dtype=object)]
)
def test_bad_dtype_rejected(x):
    with pytest.raises(TypeError, match="dtype"):
        to_mono(x)
    with pytest.raises(TypeError, match="dtype"):
        resample(x, 48000, 22050)
    with pytest.raises(TypeError, match="dtype"):
        StreamResampler(48000).push(x)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf, 1e31, -3e38])
def test_non_finite_or_huge_rejected(bad):
    x = np.zeros((40, 2), np.float32)
    x[17, 1] = bad
    with pytest.raises(ValueError, match=r"NaN or inf .*\(first at index \(17, 1\)"):
        to_mono(x)
    with pytest.raises(ValueError, match="NaN or inf"):
        resample(x, 48000, 22050)
    rs = StreamResampler(48000)
    with pytest.raises(ValueError, match="NaN or inf"):
        rs.push(x)
    assert rs.samples_in == 0  # a rejected block leaves the stream untouched


def test_huge_finite_values_accepted():
    big = np.float32(MAX_ABS)
    np.testing.assert_array_equal(to_mono(np.full((8, 2), big, np.float32)), np.full(8, big))
    rng = np.random.default_rng(3)
    for x in (np.full(4096, big), rng.choice([-big, big], 4096), big * rng.uniform(-1, 1, 4096)):
        assert np.isfinite(resample(x.astype(np.float32), 48000, 22050, quality="VHQ")).all()
        assert np.isfinite(_push_all(StreamResampler(44100), x.astype(np.float32), [999])).all()


@pytest.mark.parametrize("x", [np.zeros((2, 2, 2), np.float32), np.zeros((5, 0), np.float32)])
def test_bad_shape_rejected(x):
    with pytest.raises(ValueError, match="shape"):
        to_mono(x)
    with pytest.raises(ValueError, match="shape"):
        resample(x, 48000, 22050)
    with pytest.raises(ValueError, match="shape"):
        StreamResampler(48000).push(x)


@pytest.mark.parametrize("shape", [(2, 48000), (2, 1024), (1, 65), (6, MAX_CHANNELS + 1)])
def test_channels_first_rejected_with_the_layout_rule(shape):
    """More than MAX_CHANNELS columns is a channels-first block: refused, not read as garbage."""
    x = np.zeros(shape, np.float32)
    rule = r"\(n_samples, n_channels\).*x\.T"
    with pytest.raises(ValueError, match=rule):
        to_mono(x)
    with pytest.raises(ValueError, match=rule):
        resample(x, 48000, 22050)
    rs = StreamResampler(48000)
    with pytest.raises(ValueError, match=r"\(n_samples, n_channels\).*block\.T"):
        rs.push(x)
    assert rs.samples_in == 0  # a rejected block leaves the stream untouched


def test_max_channels_still_accepted():
    x = RNG.standard_normal((300, MAX_CHANNELS)).astype(np.float32)
    np.testing.assert_allclose(to_mono(x), x.astype(np.float64).mean(axis=1), rtol=0, atol=1e-6)
    assert resample(x, 44100, 22050).shape == (150, MAX_CHANNELS)
    y = _push_all(StreamResampler(44100), x, [100])
    np.testing.assert_array_equal(y, resample(to_mono(x), 44100, 22050))
    # the transposed channels-first block, as the error message suggests, is the same signal
    # (a Fortran-order matrix-vector product may round differently in the last bit)
    channels_first = np.ascontiguousarray(x.T)
    np.testing.assert_allclose(to_mono(channels_first.T), to_mono(x), rtol=0, atol=1e-6)


# ------------------------------------------------------------------------------- rates


@pytest.mark.parametrize("rate", [0, -48000, float("nan"), float("inf"), -float("inf")])
def test_bad_rates_rejected(rate):
    with pytest.raises(ValueError, match="sr_in must be finite and > 0"):
        StreamResampler(rate)
    with pytest.raises(ValueError, match="sr_out must be finite and > 0"):
        StreamResampler(48000, rate)
    with pytest.raises(ValueError, match="sr_in must be finite and > 0"):
        resample(NOISE, rate, 22050)


def test_non_numeric_rate_and_bad_quality():
    with pytest.raises(TypeError, match="sr_in must be a number"):
        StreamResampler("fast")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="quality must be one of"):
        StreamResampler(48000, quality="ultra")
    with pytest.raises(ValueError, match="quality must be one of"):
        resample(NOISE, 48000, 22050, quality="hq")


# ------------------------------------------------------------------------------ resample


@pytest.mark.parametrize("sr_in", [8000, 44100, 48000, 96000])
def test_batch_resample_keeps_time_and_channels(sr_in):
    t = np.arange(sr_in) / sr_in
    x = np.stack([np.sin(2 * np.pi * 440 * t), 0.5 * np.sin(2 * np.pi * 880 * t)], axis=1)
    y = resample(x, sr_in, 22050)
    assert y.dtype == np.float32 and y.shape == (22050, 2)
    assert abs(_time_offset_samples(y[:, 0], 440, 22050)) < 0.01
    assert abs(_time_offset_samples(y[:, 1], 880, 22050)) < 0.01


def test_batch_resample_empty_and_single():
    assert resample(np.zeros(0, np.float32), 48000, 22050).shape == (0,)
    assert resample(np.zeros(1, np.float32), 22050, 48000).shape[0] in (2, 3)


# ------------------------------------------------------------------------- stream timing


@pytest.mark.parametrize("quality", QUALITIES)
@pytest.mark.parametrize("sr_in", [8000, 44100, 48000, 96000])
def test_stream_delay_samples_aligns_sine_phase(quality, sr_in):
    rs = StreamResampler(sr_in, 22050, quality=quality)
    t = np.arange(2 * sr_in) / sr_in
    x = np.sin(2 * np.pi * 500 * t).astype(np.float32)
    y = _push_all(rs, x, [1024])
    # out[m + delay] is the input at time m / sr_out
    assert abs(_time_offset_samples(y, 500, 22050) - rs.delay_samples) < 0.01


@pytest.mark.parametrize("quality", QUALITIES)
def test_stream_impulse_lands_at_its_time(quality):
    rs = StreamResampler(48000, 22050, quality=quality)
    x = np.zeros(48000, np.float32)
    x[4800] = 1.0  # t = 0.1 s = output sample 2205
    y = _push_all(rs, x, [1024])
    k = int(np.argmax(np.abs(y)))
    w = y[k - 3 : k + 4].astype(np.float64) ** 2
    centre = k - 3 + np.sum(w * np.arange(7)) / np.sum(w)
    assert abs(centre - (2205 + rs.delay_samples)) < 0.01


@pytest.mark.parametrize("quality", QUALITIES)
def test_pending_samples_is_latency(quality):
    rs = StreamResampler(48000, 22050, quality=quality)
    emitted = 0
    for _ in range(50):
        emitted += len(rs.push(NOISE[:1024]))
        assert rs.samples_in % 1024 == 0 and rs.samples_out == emitted
        assert rs.pending_samples == pytest.approx(rs.samples_in * 22050 / 48000 - emitted)
        assert -1.0 < rs.pending_samples < 2000.0
    # the latency is real: flush hands out exactly the held-back samples
    pending = rs.pending_samples
    assert abs(len(rs.flush()) - pending) <= 0.5 + 1e-9


# ------------------------------------------------------------------- stream equals batch


@settings(max_examples=30, deadline=None)
@given(
    sizes=st.lists(
        st.one_of(st.sampled_from([0, 1, 2, 3, 5, 7, 1024, 4999]), st.integers(0, 3000)),
        min_size=1, max_size=12,
    ),
    quality=st.sampled_from(QUALITIES),
    sr_in=st.sampled_from([8000, 22050, 44100, 48000, 96000]),
    n=st.integers(0, 12000),
)
def test_stream_any_block_sizes_equals_batch(sizes, quality, sr_in, n):
    x = NOISE[:n]
    y = _push_all(StreamResampler(sr_in, 22050, quality=quality), x, sizes)
    np.testing.assert_array_equal(y, resample(x, sr_in, 22050, quality=quality))


def test_stream_stereo_int16_blocks_equal_batch_of_mono():
    stereo = (RNG.standard_normal((5000, 2)) * 8000).astype(np.int16)
    y = _push_all(StreamResampler(44100), stereo, [441, 0, 1, 1000])
    np.testing.assert_array_equal(y, resample(to_mono(stereo), 44100, 22050))
    assert y.dtype == np.float32 and y.ndim == 1


def test_tiny_blocks_work():
    rs = StreamResampler(48000)
    assert rs.push(np.zeros(0, np.float32)).shape == (0,)
    for _ in range(3000):
        out = rs.push(np.ones(1, np.float32))
        assert out.ndim == 1 and out.dtype == np.float32
    assert rs.samples_in == 3000


def test_flush_resets_and_stream_restarts_identically():
    rs = StreamResampler(48000, quality="HQ")
    first = _push_all(rs, NOISE, [1024])
    assert rs.samples_in == 0 and rs.samples_out == 0
    second = _push_all(rs, NOISE, [1024])
    np.testing.assert_array_equal(first, second)


def test_reset_mid_stream_equals_fresh():
    rs = StreamResampler(48000)
    rs.push(NOISE[:3000])
    rs.reset()
    assert rs.samples_in == 0 and rs.pending_samples == 0.0
    np.testing.assert_array_equal(
        _push_all(rs, NOISE[3000:], [700]), _push_all(StreamResampler(48000), NOISE[3000:], [700])
    )
