"""SlowClock: one SlowState per block; block partitions do not matter; the pure reads
(features_at, feature_window) equal the frames' own values, do not depend on the polling rate
and change nothing; the structure seam; reset; errors."""

from __future__ import annotations

import json
import threading

import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from fractalsync_dsp.micro import micro_features
from fractalsync_models.training.synth import make_item
from fractalsync_tracking.slow_clock import INITIAL_BEAT, SlowClock
from fractalsync_tracking.slow_state import SlowState, StructureState

SR = 48000
SILENCE = (-120.0, -120.0, -120.0, -120.0, 0.0, 0.0, 0.0)


@pytest.fixture(scope="module")
def audio(beatnet_models_dir):  # the fixture makes sure the ONNX models exist
    return make_item("slow_clock_test", 128.0, duration=4.0, sample_rate=SR, seed=5).audio


class Recorder:
    """An analysis-clock consumer keeping every frame's windows and magnitudes."""

    def __init__(self):
        self.reset()

    def reset(self):
        self.windows, self.mags = [], []

    def on_frames(self, batch):
        self.windows.append(batch.windows.copy())
        self.mags.append(batch.magnitudes.copy())


def run(clock, x, sizes, poll=None):
    """Push x in blocks of the given sizes (cycled); return (SlowStates, beat states, events).
    ``poll(clock, t0, t1)`` is called after each push with the stream time before and after."""
    slow, states, events = [], [], []
    i = j = 0
    while i < len(x):
        n = sizes[j % len(sizes)]
        t0 = clock.stream_time
        slow.append(clock.push(x[i:i + n]))
        states += clock.beat_states_since_last_push
        events += clock.beat_events_since_last_push
        if poll is not None:
            poll(clock, t0, clock.stream_time)
        i += n
        j += 1
    return slow, states, events


@pytest.fixture(scope="module")
def reference(audio):
    """The 1024-block run, with every frame's micro features and BeatNet features."""
    clock = SlowClock(SR)
    rec = clock.analysis_clock.add_consumer(Recorder())
    slow, states, events = run(clock, audio, [1024])
    n = clock.frames_analysed
    micro = micro_features(np.concatenate(rec.windows), np.concatenate(rec.mags))
    return {"slow": slow, "states": states, "events": events, "frames": n, "micro": micro,
            "features": clock.feature_window(n, clock.frame_time(n - 1)), "clock": clock}


def test_one_state_per_block_with_the_newest_values(audio, reference):
    clock = SlowClock(SR)
    assert clock.latest == SlowState(INITIAL_BEAT, StructureState.neutral(), SILENCE)
    assert clock.push(np.zeros(0, np.float32)) == clock.latest
    slow, states, _ = run(clock, audio, [1024])
    assert len(slow) == -(-len(audio) // 1024)
    assert clock.samples_consumed == len(audio)
    assert clock.stream_time == len(audio) / SR
    assert len(states) == clock.frames_analysed - 4  # one per frame past the decision delay
    assert slow[-1] is clock.latest
    assert slow[-1].beat == states[-1] and slow[-1].beat.conf > 0.5
    np.testing.assert_array_equal(slow[-1].features, reference["micro"][-1])
    assert slow[-1].structure == StructureState.neutral()
    # each published beat is the newest state of its push, or the previous one if none came
    latest = INITIAL_BEAT
    for s in slow:
        assert s.beat.t_sec >= latest.t_sec
        latest = s.beat
    assert SlowState.from_json(slow[-1].to_json()) == slow[-1]
    json.loads(slow[-1].to_json())


def test_states_follow_stream_time(reference):
    """Every state describes the time of its analysis frame, and the frames keep up with the
    stream: the lag behind stream time stays within a fixed bound."""
    clock = reference["clock"]
    for k, s in enumerate(reference["states"]):
        assert s.t_sec == clock.frame_time(k)
    lags = [1024 * (k + 1) / SR - s.t_sec for k, s in enumerate(reference["slow"])
            if s.beat is not INITIAL_BEAT]
    assert 0.0 < min(lags) and max(lags) < 0.2


@settings(max_examples=8, deadline=None)
@given(sizes=st.lists(st.sampled_from([0, 1, 7, 441, 1000, 1024, 4096, 30001]), min_size=1,
                      max_size=4).filter(any))
@example(sizes=[1])
@example(sizes=[10**7])  # the whole item in one push: the batch path
def test_block_partitions_do_not_matter(audio, reference, sizes):
    """Any partition gives the 1024-block run's states, beats and frames (small blocks run on
    the first half second only, to keep the number of pushes down)."""
    whole = sum(sizes) / len(sizes) >= 400
    x = audio if whole else audio[: SR // 2]
    clock = SlowClock(SR)
    slow, states, events = run(clock, x, sizes)
    n = clock.frames_analysed
    assert len(states) == n - 4 > 0
    assert states == reference["states"][:len(states)]
    assert events == reference["events"][:len(events)]
    np.testing.assert_array_equal(clock.feature_window(n, clock.frame_time(n - 1)),
                                  reference["features"][:n])
    if whole:
        assert n == reference["frames"]
        assert slow[-1] == reference["slow"][-1]


def test_reads_equal_each_frames_values(reference):
    clock, micro, feats = reference["clock"], reference["micro"], reference["features"]
    n = reference["frames"]
    for i in [0, 1, 2, 17, n // 2, n - 2, n - 1]:
        t = clock.frame_time(i)
        assert clock.frame_index_at(t) == i
        np.testing.assert_array_equal(clock.features_at(t), micro[i])
        np.testing.assert_array_equal(clock.features_at(np.nextafter(t, np.inf)), micro[i])
        if i:
            assert clock.frame_index_at(np.nextafter(t, -np.inf)) == i - 1
            np.testing.assert_array_equal(clock.features_at(np.nextafter(t, -np.inf)),
                                          micro[i - 1])
        for T in (0, 1, 5, 40):
            want = np.zeros((T, 272), np.float32)
            lo = i - T + 1
            want[max(0, -lo):] = feats[max(lo, 0):i + 1]
            np.testing.assert_array_equal(clock.feature_window(T, t), want)
    # before the first frame: silence and zeros; after the newest frame: the newest frame
    assert clock.frame_index_at(-0.001) == -1
    assert tuple(clock.features_at(-1.0)) == SILENCE
    np.testing.assert_array_equal(clock.feature_window(3, -1.0), np.zeros((3, 272)))
    assert clock.frame_index_at(1e9) == n - 1
    np.testing.assert_array_equal(clock.features_at(1e9), micro[-1])


def test_polling_rate_does_not_matter_and_changes_nothing(audio):
    """The render loop polls features_at and feature_window at 30, 60 or 144 FPS between
    pushes (at the render times the pushed audio has reached). Values at the times the rates
    share (every 1/6 s) are identical, and every clock produces what an unpolled one does."""

    def poller(fps, seen):
        def poll(clock, t0, t1):
            k = int(np.ceil(t0 * fps))
            while k / fps < t1:
                t = k / fps
                seen[t] = (clock.features_at(t), clock.feature_window(16, t),
                           clock.frame_index_at(t))
                k += 1
        return poll

    quiet = run(SlowClock(SR), audio, [1024])
    polls = {}
    for fps in (30, 60, 144):
        seen = {}
        assert run(SlowClock(SR), audio, [1024], poll=poller(fps, seen)) == quiet
        polls[fps] = seen
    shared = [k / 6 for k in range(int(len(audio) / SR * 6))]
    assert len(shared) >= 20
    for t in shared:
        a, b, c = polls[30][t], polls[60][t], polls[144][t]
        assert a[2] == b[2] == c[2]
        for x, y in ((a, b), (a, c)):
            np.testing.assert_array_equal(x[0], y[0])
            np.testing.assert_array_equal(x[1], y[1])


class StubStructure:
    """A structure tracker: records what it is given; speaks once it has seen `after` states."""

    def __init__(self, after=50, on_clock=False):
        self.after = after
        self.calls, self.resets, self.frames = [], 0, 0
        if on_clock:
            self.on_frames = self._on_frames

    def _on_frames(self, batch):
        self.frames += batch.count

    def update(self, states):
        self.calls.append(tuple(states))
        seen = sum(len(c) for c in self.calls)
        if seen < self.after:
            return None
        hazard = min(1.0, seen / 1000)
        return StructureState((0.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0), (hazard,) * 5)

    def reset(self):
        self.resets += 1
        self.calls, self.frames = [], 0


@pytest.mark.parametrize("on_clock", [False, True])
def test_structure_seam(audio, reference, on_clock):
    stub = StubStructure(on_clock=on_clock)
    clock = SlowClock(SR, structure=stub)
    slow, states, _ = run(clock, audio, [1024])
    assert len(stub.calls) == len(slow)  # once per push, with exactly that push's states
    assert [s for c in stub.calls for s in c] == states == reference["states"]
    first = next(k for k, s in enumerate(slow) if s.structure != StructureState.neutral())
    assert sum(len(c) for c in stub.calls[:first + 1]) >= stub.after
    assert sum(len(c) for c in stub.calls[:first]) < stub.after
    assert slow[-1].structure.label == "chorus"
    assert slow[-1].structure.hazard_probs[0] == len(states) / 1000
    assert stub.frames == (clock.frames_analysed if on_clock else 0)
    clock.reset()
    assert stub.resets == 1  # by the analysis clock when it is a consumer, else by SlowClock
    assert clock.latest.structure == StructureState.neutral()


def test_reset_starts_a_new_stream(audio, reference):
    clock = SlowClock(SR)
    run(clock, audio[: SR], [4096])
    clock.reset()
    assert (clock.samples_consumed, clock.frames_analysed) == (0, 0)
    assert clock.latest == SlowState(INITIAL_BEAT, StructureState.neutral(), SILENCE)
    assert tuple(clock.features_at(10.0)) == SILENCE
    assert clock.beat_states_since_last_push == ()
    slow, states, events = run(clock, audio, [1024])
    assert (slow, states, events) == (reference["slow"], reference["states"],
                                      reference["events"])


def test_bad_input(audio, reference):
    with pytest.raises(ValueError, match="sample_rate"):
        SlowClock(0)
    with pytest.raises(TypeError, match="sample_rate"):
        SlowClock("48000")
    with pytest.raises(ValueError, match="history_frames"):
        SlowClock(SR, history_frames=0)
    with pytest.raises(TypeError, match="update"):
        SlowClock(SR, structure=object())

    clock = SlowClock(SR, history_frames=64)
    for bad, exc in ((np.zeros(10, "U1"), TypeError), (np.zeros((4, 2, 2)), ValueError)):
        with pytest.raises(exc):
            clock.push(bad)
    assert clock.samples_consumed == 0
    slow, states, _ = run(clock, audio, [1024])  # the rejected blocks left no trace
    assert states == reference["states"] and slow[-1] == reference["slow"][-1]

    for t, exc in ((float("nan"), ValueError), (float("inf"), ValueError), ("1", TypeError),
                   (None, TypeError)):
        with pytest.raises(exc, match="t must be"):
            clock.features_at(t)
        with pytest.raises(exc, match="t must be"):
            clock.feature_window(1, t)
    for T in (-1, 65, 2.0, True):
        with pytest.raises(ValueError, match="T must be"):
            clock.feature_window(T, 1.0)
    with pytest.raises(ValueError, match="older than the 64 frames kept"):
        clock.features_at(0.5)
    with pytest.raises(ValueError, match="older than the 64 frames kept"):
        clock.feature_window(2, clock.frame_time(clock.frames_analysed - 64))
    clock.feature_window(1, clock.frame_time(clock.frames_analysed - 64))  # the oldest kept

    class Wrong(StubStructure):
        def update(self, states):
            return {"section_probs": [1.0] + [0.0] * 7}

    with pytest.raises(TypeError, match="StructureState or None"):
        SlowClock(SR, structure=Wrong()).push(audio[:1024])


def test_a_read_during_a_store_waits_for_it(audio, reference):
    """A read that starts while the producer is storing a batch (after the feature ring was
    extended, before the frame count moved) returns only once the store is complete, with the
    frames the count names: the seqlock, checked deterministically by pausing a store."""
    clock = SlowClock(SR)
    store = next(c for c in clock.analysis_clock.consumers if hasattr(c, "micros"))
    run(clock, audio[: SR], [1024])
    n0 = clock.frames_analysed
    results, paused = [], []
    extend = store.micros.extend

    def paused_extend(rows):  # the store's second ring, while the first already holds the batch
        reader = threading.Thread(
            target=lambda: results.append(clock.feature_window(3, clock.frame_time(n0 - 1))))
        reader.start()
        reader.join(0.2)
        paused.append(reader.is_alive())  # still waiting for the store to end
        extend(rows)
        paused.append(reader)

    store.micros.extend = paused_extend
    try:
        clock.push(audio[SR:SR + 4096])
    finally:
        del store.micros.extend
    assert clock.frames_analysed > n0
    paused[1].join(5)
    assert paused[0] is True and not paused[1].is_alive()
    np.testing.assert_array_equal(results[0], reference["features"][n0 - 3:n0])
