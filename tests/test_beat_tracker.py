"""BeatTracker: the live chain (resampler -> front end -> CRNN -> filter), its timing and errors;
the fast clock fed from it; the causal file grid (``online_beat_grid``, ``--online``)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import soundfile as sf
from hypothesis import given, settings
from hypothesis import strategies as st

from fractalsync_dsp.audio_io import AudioLoadError, load_audio
from fractalsync_dsp.frontend import BeatNetFrontEnd
from fractalsync_dsp.resample import resample
from fractalsync_dsp.sample_format import NonFiniteAudioWarning
from fractalsync_models.beatnet import BeatNetModel
from fractalsync_models.crnn import BeatNetCRNN
from fractalsync_models.training.synth import make_item
from fractalsync_tracking.analysis_clock import AnalysisClock
from fractalsync_tracking.beat_state import BeatClockState, BeatEvent
from fractalsync_tracking.beat_tracker import BeatTracker
from fractalsync_tracking.cli_beats import main as cli_main
from fractalsync_tracking.online_grid import BLOCK, TAIL_S, online_beat_grid
from fractalsync_tracking.particle_filter import FilterConfig, track_activations
from fractalsync_tracking.phase_predictor import PhasePredictor

CLIP = "tests/data/reference/vibe_ace/x22050.npy"


@pytest.fixture(scope="module")
def crnn(beatnet_models_dir):
    return BeatNetCRNN(path=beatnet_models_dir / "beatnet_m1.onnx")


@pytest.fixture(scope="module")
def clip():
    return np.load(CLIP)[: 22050 * 8]


def run(tracker, x, sr, blocks):
    """Push x in consecutive blocks of the given sizes (cycled); return (states, events)."""
    states, events, i, j = [], [], 0, 0
    while i < len(x):
        n = blocks[j % len(blocks)]
        out = tracker.push(x[i : i + n], sr)
        states += out.states
        events += out.events
        i += n
        j += 1
    return states, events


def test_equals_the_filter_on_batch_activations(crnn, clip):
    """Streaming through the tracker == batch features -> CRNN steps -> filter, frame for frame
    (``step`` runs the numba kernel, ``run`` the ONNX graph: they agree to ~1e-6, which the
    filter's discrete decisions may amplify, so the reference steps too)."""
    states, events = run(BeatTracker(crnn=crnn, seed=3), clip, 22050, [1024])
    crnn.reset()
    act = np.array([crnn.step(f) for f in BeatNetFrontEnd().features(clip)])
    ref = track_activations(act, seed=3)
    n = len(states) + FilterConfig().decision_delay_frames
    assert n <= len(ref.frames)
    live = [f for f in ref.frames[:n] if f.ref_frame >= 0]
    assert [s.t_sec for s in states] == pytest.approx([f.ref_frame / 50 for f in live], abs=1e-12)
    assert [s.phase for s in states] == [f.phase for f in live]
    assert [s.beat_count for s in states] == [f.beat_count for f in live]
    emitted = [f for f in ref.frames[:n] if f.emitted]
    assert [e.t_sec for e in events] == pytest.approx([f.beat_frame / 50 for f in emitted],
                                                      abs=1e-12)
    assert [e.is_downbeat for e in events] == [f.is_downbeat for f in emitted]
    assert len(events) > 10


@settings(deadline=None, max_examples=5)
@given(blocks=st.lists(st.integers(0, 9000), min_size=1, max_size=6).filter(any))
def test_block_sizes_do_not_change_the_result(crnn, clip, blocks):
    x = clip[: 22050 * 4]
    a = run(BeatTracker(crnn=crnn), x, 22050, [2048])
    b = run(BeatTracker(crnn=crnn), x, 22050, blocks)
    assert b[0] == a[0][: len(b[0])] and len(a[0]) - len(b[0]) <= 1
    assert b[1] == a[1][: len(b[1])]


def test_one_sample_blocks_and_empty_blocks(crnn, clip):
    x = clip[:9000]
    a = run(BeatTracker(crnn=crnn), x, 22050, [9000])
    b = run(BeatTracker(crnn=crnn), x, 22050, [1, 0, 1, 0, 3])
    assert a == b
    assert BeatTracker(crnn=crnn).push(np.zeros(0, np.float32), 44100) == ([], [])


def test_a_ten_second_block(crnn, clip):
    out = BeatTracker(crnn=crnn).push(np.tile(clip, 3)[: 10 * 48000], 48000)
    assert len(out.states) >= 10 * 50 - 10
    assert all(isinstance(s, BeatClockState) for s in out.states)
    assert all(isinstance(e, BeatEvent) for e in out.events)


@pytest.fixture(scope="module")
def groove():
    return make_item("tracker_groove", 120.0, beats_per_bar=4, duration=16.0, first_beat=0.5,
                     sample_rate=44100)


@pytest.mark.parametrize("sr,channels", [(44100, 1), (48000, 2), (22050, 1), (16000, 2)])
def test_beats_are_reported_at_the_audio_beat_times(crnn, groove, sr, channels):
    """Any input rate and channel count: beats land on the annotated beats (stream time)."""
    x = groove.audio if sr == 44100 else resample(groove.audio, 44100, sr)
    if channels == 2:
        x = np.stack([x, 0.5 * x], axis=1)
    _, events = run(BeatTracker(crnn=crnn), x, sr, [1024])
    times = np.array([e.t_sec for e in events])
    late = times[times > 5.0]
    ref = groove.beats[(groove.beats > 5.0) & (groove.beats < 15.5)]
    err = np.abs(late[:, None] - groove.beats[None, :]).min(axis=1)
    assert len(late) >= len(ref) - 1
    assert np.all(err < 0.035)
    assert np.median(err) < 0.02
    # downbeats: on an audio beat (timing), and mostly on the annotated downbeats (the
    # downbeat accuracy targets are in test_online_accuracy.py)
    downs = np.array([e.t_sec for e in events if e.is_downbeat and e.t_sec > 5.0])
    assert np.all(np.abs(downs[:, None] - groove.beats[None, :]).min(axis=1) < 0.035)
    on_down = np.abs(downs[:, None] - groove.downbeats[None, :]).min(axis=1) < 0.035
    assert on_down.sum() >= 0.8 * len(downs) and on_down.sum() >= 4


def test_input_rate_does_not_shift_the_times(crnn, groove):
    """The same audio at 22050 and 48000 Hz gives beats within 2 ms (resampler timing)."""
    a = np.array([e.t_sec for e in run(BeatTracker(crnn=crnn), resample(groove.audio, 44100,
                                                                         22050), 22050, [512])[1]])
    b = np.array([e.t_sec for e in run(BeatTracker(crnn=crnn), resample(groove.audio, 44100,
                                                                         48000), 48000, [1024])[1]])
    a, b = a[a > 5], b[b > 5]
    assert len(a) == len(b) >= 15  # ~21 beats of the 120 BPM groove after 5 s
    np.testing.assert_allclose(a, b, atol=0.002)


def test_stereo_equals_mono_and_int16_equals_float(crnn, clip):
    x = clip[: 22050 * 3]
    mono = run(BeatTracker(crnn=crnn), x, 22050, [700])
    stereo = run(BeatTracker(crnn=crnn), np.stack([x, x], axis=1), 22050, [700])
    assert mono == stereo
    q = np.round(np.clip(x, -1, 1) * 32767).astype(np.int16)
    as_int = run(BeatTracker(crnn=crnn), q, 22050, [700])
    as_float = run(BeatTracker(crnn=crnn), q.astype(np.float32) / 32767, 22050, [700])
    assert as_int == as_float


@pytest.mark.parametrize("kind", ["zeros", "noise", "dc"])
def test_silence_gives_low_confidence_and_no_beats(crnn, kind):
    n = 48000 * 12
    x = {"zeros": np.zeros(n, np.float32),
         "noise": np.random.default_rng(0).normal(0, 1e-3, n).astype(np.float32),
         "dc": np.full(n, 0.3, np.float32)}[kind]
    states, events = run(BeatTracker(crnn=crnn), x, 48000, [1024])
    assert events == []
    assert max(s.conf for s in states[250:]) < 0.2


def test_stream_time_and_reset(crnn, clip):
    t = BeatTracker(crnn=crnn)
    x = clip[:22050 * 2]
    first = run(t, x, 22050, [4096])
    assert t.stream_time == pytest.approx(2.0)
    assert t.sample_rate == 22050
    t.reset()
    assert t.stream_time == 0.0 and t.sample_rate is None
    assert run(t, x, 22050, [4096]) == first
    # after reset a new rate is fine
    t.reset()
    t.push(np.zeros(4800, np.float32), 48000)
    assert t.stream_time == pytest.approx(0.1)


@pytest.mark.parametrize("stream_sr", [22050, 44100])
@pytest.mark.parametrize(
    "block,sr,exc,match",
    [
        (np.zeros(10, bool), None, TypeError, "dtype"),
        (np.zeros(10, np.complex64), None, TypeError, "dtype"),
        (np.zeros((4, 2, 2), np.float32), None, ValueError, "shape"),
        (np.zeros((2, 3000), np.float32), None, ValueError, r"\(n_samples, n_channels\)"),
        (np.zeros(10, np.float32), 0, ValueError, "sample_rate"),
        (np.zeros(10, np.float32), -44100, ValueError, "sample_rate"),
        (np.zeros(10, np.float32), float("nan"), ValueError, "sample_rate"),
        (np.zeros(10, np.float32), "44100", TypeError, "sample_rate"),
        (np.zeros(10, np.float32), True, TypeError, "sample_rate"),
    ],
)
def test_bad_input_is_refused_and_leaves_the_tracker_unchanged(crnn, clip, stream_sr, block, sr,
                                                                 exc, match):
    x = clip[: 22050 * 2]
    clean = run(BeatTracker(crnn=crnn), x, stream_sr, [3000])
    t = BeatTracker(crnn=crnn)
    a = t.push(x[:3000], stream_sr)
    with pytest.raises(exc, match=match):
        t.push(block, stream_sr if sr is None else sr)
    rest = run(t, x[3000:], stream_sr, [3000])
    assert (a.states + rest[0], a.events + rest[1]) == clean


def test_rate_change_within_a_stream_is_refused(crnn):
    t = BeatTracker(crnn=crnn)
    t.push(np.zeros(100, np.float32), 44100)
    with pytest.raises(ValueError, match="changed"):
        t.push(np.zeros(100, np.float32), 48000)


def test_constructor_validation(crnn):
    with pytest.raises(ValueError, match="fps"):
        BeatTracker(crnn=crnn, filter_config=FilterConfig(fps=100.0))
    with pytest.raises(TypeError, match="FilterConfig"):
        BeatTracker(crnn=crnn, filter_config={"fps": 50})


def test_loads_the_model_by_variant(beatnet_models_dir, fractalsync_home):
    t = BeatTracker(model=1)
    assert t.push(np.zeros(22050, np.float32), 22050).states


def test_fast_clock_shows_beats_on_time(crnn):
    """Tracker states -> PhasePredictor queried at 60 Hz at the current stream time: the beats
    the renderer shows land on the audio's beats (after the first 5 s)."""
    item = make_item("fast_clock", 120.0, duration=20.0, sample_rate=48000)
    tracker, predictor = BeatTracker(crnn=crnn), PhasePredictor()
    shown, last = [], None
    for i in range(0, len(item.audio), 800):  # one render frame = 800 samples at 48 kHz
        for state in tracker.push(item.audio[i:i + 800], 48000).states:
            predictor.update(state)
        if predictor.state is None:
            continue
        now = tracker.stream_time
        q = predictor.query(now)
        if last is not None and q.beat_count > last.beat_count:
            shown.append(now - q.phase * predictor.state.spb)  # crossing inside the frame
        last = q
    shown = np.array(shown)
    shown = shown[(shown > 5.0) & (shown < item.beats[-1] + 0.25)]
    ref = item.beats[item.beats > 5.0]
    err = np.abs(shown[:, None] - item.beats[None, :]).min(axis=1)
    assert abs(len(shown) - len(ref)) <= 1
    assert np.all(err < 0.03) and np.median(err) < 0.015


# ------------------------------------------------------------------------------ online grid


@pytest.fixture(scope="module")
def groove_wav(groove, tmp_path_factory):
    path = tmp_path_factory.mktemp("online") / "groove.wav"
    sf.write(path, np.stack([groove.audio, groove.audio], axis=1), groove.sample_rate)
    return path


def test_online_grid_is_the_live_path(crnn, groove, groove_wav, beatnet_models_dir):
    """The grid equals what a live stream reports: here pushed in 777-sample blocks (not the
    grid's BLOCK) with a whole second of silence after the file (not its TAIL_S), since
    neither the block size nor a longer tail may change a beat before the end of the audio."""
    grid = online_beat_grid(groove_wav, model=1)
    x, sr = load_audio(groove_wav)
    assert BLOCK != 777 and TAIL_S < 1.0
    x = np.concatenate([x, np.zeros((sr, x.shape[1]), np.float32)])
    tracker = BeatTracker(crnn=crnn)
    events = [e for i in range(0, len(x), 777) for e in tracker.push(x[i:i + 777], sr).events]
    events = [e for e in events if e.t_sec < len(x) / sr - 1.0]
    assert grid.mode == "online"
    assert list(grid.beats) == [e.t_sec for e in events]
    assert list(grid.beat_positions) == [e.beat_in_bar for e in events]
    assert list(grid.downbeats) == [e.t_sec for e in events if e.is_downbeat]
    assert grid.downbeat == grid.downbeats[0]
    assert grid.meter == 4 and grid.tempo == pytest.approx(120.0, rel=0.01)
    assert 0.0 < grid.confidence <= 1.0
    d = json.loads(grid.to_json())
    assert set(d) == {"tempo", "downbeat", "beats", "downbeats", "confidence", "bpm_alt",
                      "beat_positions", "meter", "mode"}


def test_online_grid_of_silence_is_empty(tmp_path, beatnet_models_dir):
    path = tmp_path / "silence.wav"
    sf.write(path, np.zeros(44100 * 6, np.float32), 44100)
    grid = online_beat_grid(path)
    assert grid.beats == () and grid.tempo is None and grid.confidence == 0.0
    assert grid.mode == "online"


def test_online_grid_errors(tmp_path, groove_wav):
    with pytest.raises(ValueError, match="model"):
        online_beat_grid(groove_wav, model=4)
    bad = tmp_path / "bad.wav"
    bad.write_bytes(b"not audio")
    with pytest.raises(AudioLoadError):
        online_beat_grid(bad)


def test_cli_online_json(groove_wav, beatnet_models_dir, capsys):
    assert cli_main([str(groove_wav), "--online", "--json"]) == 0
    d = json.loads(capsys.readouterr().out)
    assert d["mode"] == "online"
    assert d["beats"] == [round(t, 4) for t in online_beat_grid(groove_wav).beats]


def test_models_come_from_the_registry(beatnet_models_dir, fractalsync_home):
    assert isinstance(BeatTracker(model="ensemble")._crnn, BeatNetModel)
    assert BeatTracker(model=2)._crnn.model == 2
    for bad in (4, "all", True):
        with pytest.raises(ValueError, match="model"):
            BeatTracker(model=bad)
    out = BeatTracker(model="ensemble").push(np.zeros(22050, np.float32), 22050)
    assert len(out.states) > 0


def test_nan_blocks_are_tracked_as_silence_with_a_warning(crnn, clip):
    """A live loop must not die on a NaN: the bad samples are silence, one warning per block."""
    x = clip[:22050 * 2].copy()
    x[[100, 30000]] = [np.nan, np.inf]
    zeroed = np.nan_to_num(x, nan=0.0, posinf=0.0)
    want = run(BeatTracker(crnn=crnn), zeroed, 22050, [4096])
    with pytest.warns(NonFiniteAudioWarning, match="1 NaN/inf samples") as caught:
        got = run(BeatTracker(crnn=crnn), x, 22050, [4096])
    assert got == want and len(got[0]) > 50
    assert len(caught) == 2  # the two bad samples are in two different blocks


def test_a_shared_clock_feeds_other_consumers_without_changing_the_beats(crnn, clip):
    from fractalsync_dsp.micro import MicroFeatures

    x = clip[:22050 * 3]
    alone = run(BeatTracker(crnn=crnn), x, 22050, [1024])
    clock = AnalysisClock()
    micro = clock.add_consumer(MicroFeatures())
    tracker = BeatTracker(crnn=crnn, clock=clock)
    shared = run(tracker, x, 22050, [1024])
    assert shared == alone
    assert micro.frames_seen == clock.frames_emitted > 100
    # pushed by someone else: the tracker's output waits in collect()
    tracker.reset()
    assert micro.frames_seen == 0
    clock.push(x, 22050)
    out = tracker.collect()
    # one 3 s block instead of 1024-sample ones: the same states and beats (the last frame may
    # complete in a different push, as test_block_sizes_do_not_change_the_result allows)
    assert out.states == alone[0][:len(out.states)] and abs(len(out.states) - len(alone[0])) <= 1
    assert out.events == alone[1][:len(out.events)] and len(out.events) >= len(alone[1]) - 1
    assert len(out.events) > 3
    assert tracker.collect() == ([], [])
