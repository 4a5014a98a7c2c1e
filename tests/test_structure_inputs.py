"""SlowStepInputs: the anticipator's inputs per slow step (block-size invariance, pairing with the
tracker's states by frame index, extrapolation, causality, NaN audio, errors, reset)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from fractalsync_dsp.sample_format import NonFiniteAudioWarning
from fractalsync_models.beatnet import ONLINE_MODEL, ONLINE_RULE, load_beatnet
from fractalsync_models.contract import load_contract
from fractalsync_models.training.synth import make_item
from fractalsync_tracking.analysis_clock import AnalysisClock
from fractalsync_tracking.beat_state import BeatClockState
from fractalsync_tracking.beat_tracker import BeatTracker
from fractalsync_tracking.particle_filter import FilterConfig
from fractalsync_tracking.structure_inputs import (
    BEAT_FEATURE_NAMES,
    DECIMATION,
    NEUTRAL_BEAT_FEATURES,
    SlowStepInputs,
    beat_feature_vector,
)

SR = 44100  # not the analysis rate: the resampler is in the path


@pytest.fixture(scope="module")
def crnn(beatnet_models_dir):
    return load_beatnet(ONLINE_MODEL, ONLINE_RULE)


@pytest.fixture(scope="module")
def item():
    return make_item("inputs_4-4_128bpm", 128.0, duration=4.0, sample_rate=SR)


@pytest.fixture(scope="module")
def audio(item):
    return item.audio


class _Recorder:
    """Clock consumer keeping a copy of every frame's features and time."""

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.features: list[np.ndarray] = []
        self.times: list[float] = []

    def on_frames(self, batch) -> None:
        self.features += list(batch.features.copy())
        self.times += [batch.time(j) for j in range(batch.count)]


def _live(crnn, delay: int = 4):
    """Clock + tracker + inputs (+ a recorder), registered in the live order."""
    clock = AnalysisClock()
    tracker = BeatTracker(crnn=crnn, seed=1, clock=clock,
                          filter_config=FilterConfig(decision_delay_frames=delay))
    inputs = clock.add_consumer(SlowStepInputs(delay))
    recorder = clock.add_consumer(_Recorder())
    return clock, tracker, inputs, recorder


def _run(tracker, inputs, x, sizes):
    """Push x in blocks of ``sizes`` (cycled; 0-sample blocks included); take after each push.
    Returns (times, audio_features, beat_features, all states)."""
    times, audio, beat, states = [], [], [], []
    i = j = 0
    while i < len(x):
        n = sizes[j % len(sizes)]
        out = tracker.push(x[i:i + n], SR)
        steps = inputs.take(out.states)
        assert steps.start == len(times)
        times += list(steps.times)
        audio += list(steps.audio_features.copy())
        beat += list(steps.beat_features.copy())
        states += out.states
        i += n
        j += 1
    return (np.array(times), np.array(audio, np.float32).reshape(-1, 272),
            np.array(beat, np.float32).reshape(-1, 5), states)


@pytest.fixture(scope="module")
def reference(crnn, audio):
    """The inputs and states of the audio pushed in 1024-sample blocks."""
    clock, tracker, inputs, recorder = _live(crnn)
    result = _run(tracker, inputs, audio, [1024])
    return result, np.array(recorder.features), np.array(recorder.times)


def test_constants_follow_the_contract():
    contract = load_contract()
    assert DECIMATION == contract["models"]["anticipator"]["decimation"]
    assert list(BEAT_FEATURE_NAMES) == contract["beat_features"]["names"]
    shapes = {t["name"]: t["shape"] for t in contract["models"]["anticipator"]["inputs"]}
    assert shapes["audio_features"][-1] == 272
    assert shapes["beat_features"][-1] == len(BEAT_FEATURE_NAMES) == NEUTRAL_BEAT_FEATURES.size
    assert NEUTRAL_BEAT_FEATURES.tolist() == pytest.approx([0, 1, math.log(0.5), 0, 0])


def test_steps_pair_frames_and_states_by_index(reference, item):
    """Step s: time of frame 4s+3, mean of frames 4s..4s+3, and the state emitted at frame
    4s+3 (the (4s+3-4)-th state, describing frame 4s-1) extrapolated by 4 frames."""
    (times, audio, beat, states), frames, frame_times = reference
    n = len(frames) // DECIMATION
    assert len(times) == n > 40
    np.testing.assert_array_equal(times, frame_times[DECIMATION - 1::DECIMATION][:n])
    means = frames[:n * DECIMATION].astype(np.float64).reshape(n, DECIMATION, -1).mean(axis=1)
    np.testing.assert_allclose(audio, means, rtol=1e-6, atol=1e-7)
    assert audio.dtype == np.float32 and beat.dtype == np.float32
    np.testing.assert_array_equal(beat[0], NEUTRAL_BEAT_FEATURES)  # no state before frame 4
    for s in range(1, n):
        state = states[DECIMATION * s + DECIMATION - 1 - 4]
        assert state.t_sec == pytest.approx(times[s] - 4 * 0.02, abs=1e-12)
        phase = (state.phase + 0.08 / state.spb) % 1.0
        expected = [math.sin(2 * math.pi * phase), math.cos(2 * math.pi * phase),
                    math.log(state.spb), state.conf, state.downbeat_prob]
        np.testing.assert_allclose(beat[s], expected, rtol=1e-6, atol=1e-6)
    # once the tracker has locked on, the extrapolated phase is the audio's phase at the step
    late = times > 2.5
    assert beat[late, 3].min() > 0.5
    last = np.searchsorted(item.beats, times[late], side="right") - 1
    true_phase = (times[late] - item.beats[last]) / np.diff(item.beats).mean()
    phase = np.arctan2(beat[late, 0], beat[late, 1]) / (2 * np.pi)
    error = (phase - true_phase + 0.5) % 1.0 - 0.5
    assert np.abs(error).max() < 0.1, error


def test_hand_checked_pairing_and_extrapolation():
    """A clock with hand-made states: delay 2, so step 1 (frame 7) pairs with the 6th state
    (index 5, describing frame 5)."""
    clock = AnalysisClock()
    inputs = clock.add_consumer(SlowStepInputs(tracker_delay_frames=2))
    recorder = clock.add_consumer(_Recorder())
    x = np.random.default_rng(0).standard_normal(441 * 8 + 705).astype(np.float32) * 0.1
    assert clock.push(x, 22050) == 8
    states = [BeatClockState(t_sec=clock.frame_time(k), spb=0.4, phase=0.1 * k, beat_count=k,
                             conf=0.5, downbeat_prob=0.25, beat_in_bar=1, beats_per_bar=4)
              for k in range(6)]  # frames 2..7 emit states describing frames 0..5
    steps = inputs.take(states)
    assert steps.start == 0 and len(steps.times) == 2
    np.testing.assert_allclose(steps.times, [0.06, 0.14], atol=1e-12)
    # step 0 completes at frame 3, whose state (index 1) describes frame 1 at 0.02 s, phase 0.1
    # step 1 completes at frame 7, whose state (index 5) describes frame 5 at 0.10 s, phase 0.5
    for row, phase in zip(steps.beat_features, (0.1 + 0.04 / 0.4, 0.5 + 0.04 / 0.4),
                          strict=True):
        np.testing.assert_allclose(row, [math.sin(2 * math.pi * phase),
                                         math.cos(2 * math.pi * phase), math.log(0.4), 0.5,
                                         0.25], atol=1e-6)
    feats = np.array(recorder.features, np.float64)
    np.testing.assert_allclose(steps.audio_features, [feats[0:4].mean(0), feats[4:8].mean(0)],
                               rtol=1e-6, atol=1e-7)


@settings(max_examples=12, deadline=None)
@given(sizes=st.lists(st.integers(0, 6000), min_size=1, max_size=12).filter(any))
@example(sizes=[1, 0, 333])
@example(sizes=[10 ** 6])  # the whole file at once: more pending steps than preallocated
@example(sizes=[441, 0, 1023])
def test_block_sizes_do_not_matter(crnn, audio, reference, sizes):
    (times, audio_f, beat, _), _, _ = reference
    _, tracker, inputs, _ = _live(crnn)
    got = _run(tracker, inputs, audio, sizes)
    np.testing.assert_array_equal(got[0], times)
    np.testing.assert_array_equal(got[1], audio_f)
    np.testing.assert_array_equal(got[2], beat)


@settings(max_examples=8, deadline=None)
@given(cut=st.integers(0, 4 * SR))
@example(cut=0)
@example(cut=1)
def test_more_audio_never_changes_earlier_steps(crnn, audio, reference, cut):
    (times, audio_f, beat, _), _, _ = reference
    _, tracker, inputs, _ = _live(crnn)
    got = _run(tracker, inputs, audio[:cut], [1024])
    n = len(got[0])
    assert n <= len(times)
    np.testing.assert_array_equal(got[0], times[:n])
    np.testing.assert_array_equal(got[1], audio_f[:n])
    np.testing.assert_array_equal(got[2], beat[:n])


def test_nan_audio_is_silence_as_the_clock_does(crnn, audio):
    bad = audio.copy()
    bad[SR:SR + 5000] = np.nan
    bad[2 * SR:2 * SR + 10] = np.inf
    silent = audio.copy()
    silent[SR:SR + 5000] = 0.0
    silent[2 * SR:2 * SR + 10] = 0.0
    _, tracker, inputs, _ = _live(crnn)
    with pytest.warns(NonFiniteAudioWarning):
        got = _run(tracker, inputs, bad, [1024])
    _, tracker, inputs, _ = _live(crnn)
    want = _run(tracker, inputs, silent, [1024])
    for a, b in zip(got[:3], want[:3], strict=True):
        np.testing.assert_array_equal(a, b)
    assert np.isfinite(got[1]).all() and np.isfinite(got[2]).all()


def test_reset_starts_a_new_stream(crnn, audio, reference):
    (times, audio_f, beat, _), _, _ = reference
    clock, tracker, inputs, _ = _live(crnn)
    _run(tracker, inputs, audio[:SR], [2048])
    inputs_pending = tracker.push(audio[SR:SR + 5000], SR)  # steps left pending, then dropped
    assert inputs.pending > 0 and inputs_pending.states
    tracker.reset()
    assert inputs.pending == 0 and inputs.steps_completed == 0
    got = _run(tracker, inputs, audio, [1024])
    np.testing.assert_array_equal(got[0], times)
    np.testing.assert_array_equal(got[1], audio_f)
    np.testing.assert_array_equal(got[2], beat)


def test_take_refuses_states_that_do_not_pair(crnn, audio, reference):
    (times, audio_f, beat, _), _, _ = reference
    clock = AnalysisClock()
    tracker = BeatTracker(crnn=crnn, seed=1, clock=clock)
    wrong_delay = clock.add_consumer(SlowStepInputs(tracker_delay_frames=3))
    out = tracker.push(audio[:SR], SR)
    with pytest.raises(ValueError, match="take\\(\\) got .* expected"):
        wrong_delay.take(out.states)  # 3 frames more than the tracker's 4 would give
    clock.remove_consumer(wrong_delay)

    _, tracker, inputs, _ = _live(crnn)
    out = tracker.push(audio[:SR], SR)
    with pytest.raises(ValueError, match="take\\(\\) got 0 states, expected 4[0-9]"):
        inputs.take([])
    with pytest.raises(ValueError, match="expected"):
        inputs.take(out.states[:-1])
    shifted = out.states[1:] + out.states[:1]  # right count, wrong frames
    with pytest.raises(ValueError, match="tracker_delay_frames=4"):
        inputs.take(shifted)
    with pytest.raises(TypeError, match="BeatClockState"):
        inputs.take([None] * len(out.states))
    steps = inputs.take(out.states)  # nothing was consumed by the refused calls
    n = len(steps.times)
    assert steps.start == 0 and n == inputs.steps_completed > 10
    np.testing.assert_array_equal(steps.times, times[:n])
    np.testing.assert_array_equal(steps.beat_features, beat[:n])


def test_bad_arguments():
    for delay in (-1, 1.5, True, "4", AnalysisClock()):
        with pytest.raises(ValueError, match="tracker_delay_frames"):
            SlowStepInputs(delay)


@given(phase=st.floats(0, 1, exclude_max=True), spb=st.floats(0.1, 3.0),
       dt=st.floats(-10.0, 10.0))
@example(phase=0.0, spb=0.5, dt=-1e-17)
@example(phase=0.999999999, spb=0.25, dt=0.0)
def test_beat_feature_vector_extrapolates_the_phase(phase, spb, dt):
    state = BeatClockState(t_sec=5.0, spb=spb, phase=phase, beat_count=3, conf=0.75,
                           downbeat_prob=0.5, beat_in_bar=2, beats_per_bar=3)
    v = beat_feature_vector(state, 5.0 + dt)
    assert v.dtype == np.float32 and v.shape == (5,)
    turns = phase + ((5.0 + dt) - 5.0) / spb
    np.testing.assert_allclose(v[:2], [math.sin(2 * math.pi * turns),
                                       math.cos(2 * math.pi * turns)], atol=1e-5)
    np.testing.assert_allclose(v[2:], [math.log(spb), 0.75, 0.5], rtol=1e-6)
    out = np.zeros(5, np.float32)
    assert beat_feature_vector(state, 5.0 + dt, out) is out
    np.testing.assert_array_equal(out, v)


def test_no_array_data_allocated_per_push(audio):
    """After warm-up, pushes and takes allocate nothing of a frame's size in this module (the
    steps are views of the preallocated buffers)."""
    import tracemalloc

    from fractalsync_tracking import structure_inputs

    clock = AnalysisClock()
    inputs = clock.add_consumer(SlowStepInputs(tracker_delay_frames=0))
    state = BeatClockState(t_sec=0.0, spb=0.5, phase=0.0, beat_count=0, conf=0.5,
                           downbeat_prob=0.5, beat_in_bar=1, beats_per_bar=4)

    def push(x):
        n = clock.push(x, SR)
        states = [BeatClockState(**{**state.to_dict(), "t_sec": clock.frame_time(k)})
                  for k in range(clock.frames_emitted - n, clock.frames_emitted)]
        return inputs.take(states)

    for i in range(0, SR, 1024):  # warm-up
        push(audio[i:i + 1024])
    module = [tracemalloc.Filter(True, structure_inputs.__file__)]
    tracemalloc.start()
    try:
        kept = [push(audio[i:i + 1024]) for i in range(SR, 3 * SR, 1024)]  # alive till the end
        snapshot = tracemalloc.take_snapshot().filter_traces(module)
    finally:
        tracemalloc.stop()
    assert sum(len(steps.times) for steps in kept) > 20
    # the largest single allocation is an object header (views, tuples), not array data
    assert max((t.size for t in snapshot.traces), default=0) < 272 * 4
