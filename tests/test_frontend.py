"""BeatNet front end: filterbank, madmom parity, kernel vs numpy, streaming == batch."""

from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fractalsync_dsp.filterbank import bin_frequencies, log_filterbank
from fractalsync_dsp.frontend import (
    FRAME,
    HOP,
    LAG_SAMPLES,
    N_BANDS,
    BeatNetFrontEnd,
    _bands_log_diff,
    _stage_frames,
)
from fractalsync_dsp.reference import NaiveStreamingFrontEnd, naive_features

REF = Path(__file__).parent / "data" / "reference"
CLIPS = ["vibe_ace", "lets_go_fishin"]


@pytest.fixture(scope="module")
def fe():
    return BeatNetFrontEnd()


# --- filterbank -------------------------------------------------------------------------------


def test_filterbank_equals_madmom_matrix():
    fb = log_filterbank()
    ref = np.load(REF / "filterbank_705x136.npy")
    assert fb.n_bands == 136 and ref.shape == (705, 136)
    assert np.abs(fb.dense() - ref).max() <= 1e-6


def test_filterbank_centres_and_unit_area():
    fb = log_filterbank()
    ref_centres = np.load(REF / "band_center_hz.npy")
    # The reference names the lower bin as the centre of the six two-bin bands whose weights are
    # (1/3, 2/3); we name the peak bin. Every centre agrees to within one bin spacing.
    spacing = bin_frequencies(705, 22050)[1]
    assert np.abs(fb.centre_hz - ref_centres).max() <= spacing + 1e-9
    assert np.sum(np.abs(fb.centre_hz - ref_centres) > 1e-6) <= 6
    sums = np.add.reduceat(fb.weights.astype(np.float64), fb.indptr[:-1])
    np.testing.assert_allclose(sums, 1.0, atol=1e-6)


def test_filterbank_rejects_bad_parameters():
    with pytest.raises(ValueError, match="fmin"):
        log_filterbank(fmin=0.0)
    with pytest.raises(ValueError, match="sample_rate"):
        log_filterbank(sample_rate=-1.0)


# --- parity with madmom -----------------------------------------------------------------------


@pytest.mark.parametrize("clip", CLIPS)
def test_batch_matches_madmom_features(fe, clip):
    x = np.load(REF / clip / "x22050.npy")
    ref = np.load(REF / clip / "features.npy")
    out = fe.features(x)
    assert out.shape == ref.shape == (1500, 272) and out.dtype == np.float32
    assert np.abs(out - ref).max() <= 1e-4


@pytest.mark.parametrize("clip", CLIPS)
def test_streaming_reference_clip_equals_batch(fe, clip):
    x = np.load(REF / clip / "x22050.npy")
    batch = fe.features(x)
    stream = BeatNetFrontEnd()
    parts = [stream.push(x[i : i + 1024]) for i in range(0, len(x), 1024)]
    parts.append(stream.flush())
    assert np.array_equal(np.concatenate(parts), batch)


# --- numba kernel vs numpy reference ----------------------------------------------------------

finite32 = st.floats(-1e6, 1e6, allow_nan=False, width=32)


def naive_bands_log_diff(spec, fb_dense, prev, started):
    mag = np.abs(spec[:, :705].astype(np.complex128))
    out = np.zeros((len(spec), 2 * N_BANDS))
    for t in range(len(spec)):
        s = np.log10(1.0 + mag[t] @ fb_dense)
        out[t, :N_BANDS] = s
        out[t, N_BANDS:] = np.maximum(s - prev, 0) if started else 0.0
        prev, started = s, True
    return out, mag


@settings(max_examples=40, deadline=None)
@given(
    n=st.integers(0, 4),
    seed=st.integers(0, 2**32 - 1),
    scale=st.sampled_from([0.0, 1e-6, 1.0, 1e3, 1e9]),
    started=st.booleans(),
)
def test_kernel_matches_numpy_reference(n, seed, scale, started):
    rng = np.random.default_rng(seed)
    spec = (rng.standard_normal((n, 706)) + 1j * rng.standard_normal((n, 706))) * scale
    spec = spec.astype(np.complex64)
    fb = log_filterbank()
    prev = rng.random(N_BANDS).astype(np.float32) * 3
    prev_in = prev.copy()
    flag = np.array([started], dtype=np.uint8)
    out = np.empty((n, 272), np.float32)
    mags = np.empty((n, 705), np.float32)
    _bands_log_diff(spec, fb.indptr, fb.bins, fb.weights, prev, flag, out, mags)
    want, want_mags = naive_bands_log_diff(spec, fb.dense().astype(np.float64), prev_in, started)
    np.testing.assert_allclose(mags, want_mags, rtol=1e-6, atol=1e-30)
    np.testing.assert_allclose(out, want, rtol=1e-5, atol=1e-5)
    if n:
        assert flag[0] == 1 and np.array_equal(prev, out[-1, :N_BANDS])


@settings(max_examples=25, deadline=None)
@given(
    n=st.integers(0, 6000),
    seed=st.integers(0, 2**32 - 1),
    kind=st.sampled_from(["noise", "full_scale", "silence", "dc", "tone", "tiny", "huge"]),
)
def test_batch_matches_numpy_reference(fe, n, seed, kind):
    rng = np.random.default_rng(seed)
    x = {
        "noise": lambda: rng.standard_normal(n) * 0.1,
        "full_scale": lambda: rng.choice([-1.0, 1.0], n),
        "silence": lambda: np.zeros(n),
        "dc": lambda: np.full(n, 0.5),
        "tone": lambda: np.sin(2 * np.pi * 440 * np.arange(n) / 22050),
        "tiny": lambda: rng.standard_normal(n) * 1e-30,
        "huge": lambda: rng.uniform(-1.0, 1.0, n) * 1e30,  # up to MAX_ABS
    }[kind]().astype(np.float32)
    out = fe.features(x)
    assert out.shape == (-(-n // HOP), 272)
    np.testing.assert_allclose(out, naive_features(x), rtol=1e-4, atol=1e-5)


@settings(max_examples=40, deadline=None)
@given(fill=st.integers(0, FRAME - 1), n=st.integers(0, 3 * FRAME), seed=st.integers(0, 2**32 - 1))
def test_stage_frames_matches_numpy_reference(fill, n, seed):
    rng = np.random.default_rng(seed)
    buf = np.zeros(FRAME + 4 * FRAME, np.float32)
    buf[:fill] = rng.standard_normal(fill)
    block = rng.standard_normal(n).astype(np.float32)
    window = np.hanning(FRAME).astype(np.float32)
    frames = np.full((16, FRAME), np.nan, np.float32)  # the caller sizes it: up to 13 frames
    raws = np.full((16, FRAME), np.nan, np.float32)
    joined = np.concatenate([buf[:fill], block])
    k, new_fill = _stage_frames(buf, fill, block, window, frames, raws)
    want_k = (len(joined) - FRAME) // HOP + 1 if len(joined) >= FRAME else 0
    assert k == want_k and new_fill == len(joined) - k * HOP
    for j in range(k):
        np.testing.assert_array_equal(frames[j], joined[j * HOP : j * HOP + FRAME] * window)
        np.testing.assert_array_equal(raws[j], joined[j * HOP : j * HOP + FRAME])
    assert np.isnan(raws[k:]).all()  # rows past the staged frames are not written
    np.testing.assert_array_equal(buf[:new_fill], joined[k * HOP :])


# --- streaming == batch -----------------------------------------------------------------------

block_sizes = st.lists(
    st.one_of(
        st.sampled_from([0, 1, 2, 3, 5, 7, 440, 441, 442, 704, 705, 706, 1410, 1411, 1412]),
        st.integers(0, 3000),
        st.just(100_003),
    ),
    min_size=0,
    max_size=25,
)


@settings(max_examples=40, deadline=None)
@given(sizes=block_sizes, seed=st.integers(0, 2**32 - 1))
def test_streaming_equals_batch_for_any_blocks(fe, sizes, seed):
    x = (np.random.default_rng(seed).standard_normal(sum(sizes)) * 0.3).astype(np.float32)
    batch = fe.features(x)
    stream = BeatNetFrontEnd()
    parts, start = [], 0
    for size in sizes:
        got = stream.push(x[start : start + size])
        start += size
        # Causality: exactly the frames whose last sample (i*HOP + LAG) has arrived.
        ready = (start - LAG_SAMPLES - 1) // HOP + 1 if start > LAG_SAMPLES else 0
        assert stream.frames_emitted == ready
        parts.append(got)
    live = np.concatenate(parts) if parts else np.zeros((0, 272), np.float32)
    assert np.array_equal(live, batch[: len(live)])
    tail = stream.flush()
    assert np.array_equal(np.concatenate([live, tail]), batch)
    assert stream.frames_emitted == 0 and stream.samples_pushed == 0  # flush resets


def test_reset_starts_a_new_stream(fe):
    x = np.random.default_rng(3).standard_normal(5000).astype(np.float32)
    stream = BeatNetFrontEnd()
    stream.push(x[::-1])
    stream.reset()
    got = np.concatenate([stream.push(x), stream.flush()])
    assert np.array_equal(got, fe.features(x))


def test_frame_time_is_centre_of_window(fe):
    assert fe.frame_time(50) == pytest.approx(1.0)
    np.testing.assert_allclose(fe.frame_time(np.arange(3)), [0.0, 0.02, 0.04])


def test_magnitudes_are_returned_consistently(fe):
    x = np.random.default_rng(4).standard_normal(3000).astype(np.float32)
    feats, mags = fe.features(x, return_magnitudes=True)
    assert mags.shape == (len(feats), 705)
    stream = BeatNetFrontEnd()
    f1, m1 = stream.push(x, return_magnitudes=True)
    f2, m2 = stream.flush(return_magnitudes=True)
    assert np.array_equal(np.concatenate([m1, m2]), mags)
    frame0 = np.concatenate([np.zeros(LAG_SAMPLES), x[: FRAME - LAG_SAMPLES]])
    want = np.abs(np.fft.rfft(frame0 * np.hanning(FRAME)))[:705]
    np.testing.assert_allclose(mags[0], want, rtol=1e-4, atol=1e-4)


# --- input handling ---------------------------------------------------------------------------


def test_edge_inputs(fe):
    assert fe.features(np.zeros(0, np.float32)).shape == (0, 272)
    one = fe.features(np.array([0.5], np.float32))
    assert one.shape == (1, 272) and np.all(np.isfinite(one))
    silence = fe.features(np.zeros(22050, np.float32))
    assert silence.shape == (50, 272) and not silence.any()
    dc = fe.features(np.ones(22050, np.float32))
    assert np.all(np.isfinite(dc)) and dc[:, N_BANDS:].min() >= 0


def test_int16_is_scaled_like_madmom(fe):
    x = (np.random.default_rng(5).standard_normal(4000) * 3000).astype(np.int16)
    np.testing.assert_array_equal(fe.features(x), fe.features(x.astype(np.float32) / 32767))


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf, 1e31])
def test_non_finite_and_huge_samples_are_rejected(fe, bad):
    x = np.zeros(1000, np.float32)
    x[123] = bad
    with pytest.raises(ValueError, match=r"index \(123,\)"):
        fe.features(x)
    stream = BeatNetFrontEnd()
    with pytest.raises(ValueError, match=r"index \(123,\)"):
        stream.push(x)
    assert stream.samples_pushed == 0  # a rejected block leaves the stream untouched


def test_large_finite_samples_stay_finite(fe):
    out = fe.features(np.full(3000, 1e30, np.float32))
    assert np.all(np.isfinite(out))


def test_wrong_shape_and_dtype(fe):
    with pytest.raises(ValueError, match="mono"):
        fe.features(np.zeros((100, 2), np.float32))
    with pytest.raises(TypeError, match="dtype"):
        fe.features(np.zeros(100, dtype=np.int64))
    with pytest.raises(TypeError, match="dtype"):
        fe.features(np.zeros(100, dtype=bool))
    with pytest.raises(TypeError, match="dtype"):
        fe.push(np.array(["a", "b"]))


@settings(max_examples=15, deadline=None)
@given(sizes=st.lists(st.integers(0, 2000), max_size=8), seed=st.integers(0, 2**32 - 1))
def test_streaming_matches_naive_streaming_reference(sizes, seed):
    x = (np.random.default_rng(seed).standard_normal(sum(sizes)) * 0.3).astype(np.float32)
    fast, naive, start = BeatNetFrontEnd(), NaiveStreamingFrontEnd(), 0
    for size in sizes:
        got, want = fast.push(x[start : start + size]), naive.push(x[start : start + size])
        start += size
        assert got.shape == want.shape
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)


def test_naive_streaming_reference_agrees_with_naive_batch():
    x = np.random.default_rng(6).standard_normal(4000)
    stream = NaiveStreamingFrontEnd()
    live = np.concatenate([stream.push(x[:1234]), stream.push(x[1234:])])
    np.testing.assert_allclose(live, naive_features(x)[: len(live)], rtol=1e-12, atol=1e-12)
