"""AnalysisClock: one producer of analysis frames (index, time, features, magnitudes, raw window)
fanned out to every consumer; frames equal the batch front end's; consumers plug in and out."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fractalsync_dsp.feature_ring import FeatureRing
from fractalsync_dsp.frontend import FRAME, HOP, LAG_SAMPLES, BeatNetFrontEnd
from fractalsync_dsp.micro import MicroFeatures, micro_features
from fractalsync_dsp.resample import resample
from fractalsync_dsp.sample_format import NonFiniteAudioWarning
from fractalsync_tracking.analysis_clock import MAX_BATCH, AnalysisClock

CLIP = "tests/data/reference/vibe_ace/x22050.npy"


@pytest.fixture(scope="module")
def clip():
    return np.load(CLIP)[: 22050 * 3]


class Recorder:
    """Keeps a copy of everything the clock hands over."""

    def __init__(self):
        self.reset()
        self.resets = 0

    def reset(self):
        self.index, self.time, self.features, self.mags, self.windows = [], [], [], [], []
        self.counts = []
        self.resets = getattr(self, "resets", -1) + 1

    def on_frames(self, batch):
        self.counts.append(batch.count)
        for j in range(batch.count):
            self.index.append(batch.index(j))
            self.time.append(batch.time(j))
        self.features.append(batch.features.copy())
        self.mags.append(batch.magnitudes.copy())
        self.windows.append(batch.windows.copy())

    def arrays(self):
        def cat(parts, dim):
            return np.concatenate(parts) if parts else np.zeros((0, dim), np.float32)

        return cat(self.features, 272), cat(self.mags, 705), cat(self.windows, FRAME)


def push_blocks(clock, x, sr, sizes):
    i = j = 0
    while i < len(x):
        n = sizes[j % len(sizes)]
        clock.push(x[i:i + n], sr)
        i += n
        j += 1


def centred_windows(x, k):
    """Raw samples of the first k centred frames (zeros outside the signal)."""
    padded = np.concatenate([np.zeros(LAG_SAMPLES, np.float32), x,
                             np.zeros(FRAME, np.float32)])
    return np.stack([padded[i * HOP:i * HOP + FRAME] for i in range(k)])


@settings(deadline=None, max_examples=10)
@given(sizes=st.lists(st.sampled_from([0, 1, 7, 440, 441, 1024, 4096, 30000]), min_size=1,
                      max_size=5).filter(any))
def test_frames_equal_the_batch_front_end(clip, sizes):
    clock = AnalysisClock()
    rec = clock.add_consumer(Recorder())
    push_blocks(clock, clip, 22050, sizes)
    feats, mags, windows = rec.arrays()
    k = len(feats)
    assert k == clock.frames_emitted == (len(clip) + LAG_SAMPLES - FRAME) // HOP + 1
    want_f, want_m = BeatNetFrontEnd().features(clip, return_magnitudes=True)
    np.testing.assert_array_equal(feats, want_f[:k])
    np.testing.assert_array_equal(mags, want_m[:k])
    np.testing.assert_array_equal(windows, centred_windows(clip, k))
    assert rec.index == list(range(k))
    assert rec.time == pytest.approx(np.arange(k) / 50.0, abs=1e-12)
    assert max(rec.counts) <= MAX_BATCH and min(rec.counts) >= 1


def test_resampled_input_and_a_long_block(clip):
    x = resample(clip, 22050, 48000)
    clock = AnalysisClock()
    rec = clock.add_consumer(Recorder())
    assert clock.push(x, 48000) == clock.frames_emitted  # one 3 s block: many batches
    assert len(rec.counts) > 1 and max(rec.counts) == MAX_BATCH
    feats, _, _ = rec.arrays()
    # streamed resampling lags (soxr holds samples back) but the frames it completed are the
    # batch frames of the batch-resampled signal
    want = BeatNetFrontEnd().features(resample(x, 48000, 22050))
    np.testing.assert_array_equal(feats, want[:len(feats)])
    assert clock.stream_time == pytest.approx(3.0)


def test_every_consumer_sees_the_same_frames_and_late_ones_plug_in(clip):
    clock = AnalysisClock()
    first = clock.add_consumer(Recorder())
    push_blocks(clock, clip[:22050], 22050, [1000])
    micro = clock.add_consumer(MicroFeatures())
    ring = clock.add_consumer(FeatureRing(400, 272))
    late = clock.add_consumer(Recorder())
    push_blocks(clock, clip[22050:], 22050, [1000])
    f_all, m_all, w_all = first.arrays()
    f_late, m_late, w_late = late.arrays()
    n = len(f_late)
    assert n > 50 and late.index[0] == len(f_all) - n
    np.testing.assert_array_equal(f_late, f_all[-n:])
    np.testing.assert_array_equal(w_late, w_all[-n:])
    # the micro features of the frames the late consumers saw, as a fresh MicroFeatures gives
    np.testing.assert_array_equal(micro.latest, micro_features(w_late, m_late)[-1])
    assert micro.frames_seen == n
    np.testing.assert_array_equal(ring.last(n), f_late)
    assert clock.consumers == (first, micro, ring, late)


def test_reset_resets_every_consumer_and_the_stream(clip):
    clock = AnalysisClock()
    rec = clock.add_consumer(Recorder())
    micro = clock.add_consumer(MicroFeatures())
    clock.push(clip[:5000], 44100)
    assert clock.sample_rate == 44100
    clock.reset()
    assert rec.resets == 1 and rec.index == [] and micro.frames_seen == 0
    assert clock.sample_rate is None and clock.stream_time == 0 and clock.frames_emitted == 0
    clock.push(clip[:5000], 22050)  # a new stream may use another rate
    assert rec.index[0] == 0


def test_consumer_registration_errors():
    clock = AnalysisClock()
    with pytest.raises(TypeError, match="on_frames"):
        clock.add_consumer(object())
    rec = clock.add_consumer(Recorder())
    with pytest.raises(ValueError, match="already"):
        clock.add_consumer(rec)
    clock.remove_consumer(rec)
    with pytest.raises(ValueError, match="not registered"):
        clock.remove_consumer(rec)
    clock.push(np.zeros(5000, np.float32), 22050)
    assert rec.index == []


@pytest.mark.parametrize("block,sr,exc,match", [
    (np.zeros(10, bool), 22050, TypeError, "dtype"),
    (np.zeros((2, 3000), np.float32), 22050, ValueError, r"\(n_samples, n_channels\)"),
    (np.zeros((4, 2, 2), np.float32), 22050, ValueError, "shape"),
    (np.zeros(10, np.float32), 48000, ValueError, "changed"),
    (np.zeros(10, np.float32), 0, ValueError, "sample_rate"),
])
def test_a_rejected_block_reaches_no_consumer(clip, block, sr, exc, match):
    clock = AnalysisClock()
    rec = clock.add_consumer(Recorder())
    clock.push(clip[:3000], 22050)
    before = (list(rec.index), clock.stream_time)
    with pytest.raises(exc, match=match):
        clock.push(block, sr)
    assert (rec.index, clock.stream_time) == before


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_samples_are_silence_with_one_warning(clip, bad):
    x = clip[:8000].copy()
    x[[10, 500, 4000]] = bad
    zeroed = x.copy()
    zeroed[[10, 500, 4000]] = 0.0
    a, b = AnalysisClock(), AnalysisClock()
    ra, rb = a.add_consumer(Recorder()), b.add_consumer(Recorder())
    with pytest.warns(NonFiniteAudioWarning, match="3 ") as caught:
        a.push(x, 44100)
    assert len([w for w in caught if w.category is NonFiniteAudioWarning]) == 1
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        b.push(zeroed, 44100)
    np.testing.assert_array_equal(ra.arrays()[0], rb.arrays()[0])
    assert np.isnan(x[10]) or np.isinf(x[10])  # the caller's block is not modified
