"""Offline beat grid: parity with madmom's DBN, accuracy on the synthetic set, confidence, API."""

import importlib
import json
from pathlib import Path

import numpy as np
import pytest

from fractalsync_models.beatnet import OFFLINE_RULE, combine
from fractalsync_models.training.synth import synth_set
from fractalsync_tracking.beat_grid import (
    BeatGrid,
    beat_activations,
    beat_grid,
    grid_confidence,
    grid_from_activations,
)
from fractalsync_tracking.metrics import beat_f_measure, downbeat_f_measure

REFERENCE = Path(__file__).parent / "data" / "reference"
CLIPS = ("vibe_ace", "lets_go_fishin")
SR = 22050


# ---------------------------------------------------------------- decoder parity (activations)


@pytest.mark.parametrize("clip", CLIPS)
def test_decoder_matches_beatnet_dbn_on_reference_activations(clip):
    """Same activations (act_m1) as BeatNet's madmom DBN run: the grids must agree."""
    act = np.load(REFERENCE / clip / "act_m1.npy")
    ref = np.loadtxt(REFERENCE / clip / "beatnet_dbn.txt")
    grid = grid_from_activations(act)
    ref_down = ref[ref[:, 1] == 1, 0]
    assert beat_f_measure(ref[:, 0], grid.beats) >= 0.95
    assert downbeat_f_measure(ref_down, grid.downbeats) >= 0.9
    assert grid.meter == int(ref[:, 1].max())
    # beat-in-bar numbering agrees wherever the beats coincide
    est = np.array(grid.beats)
    for t, pos in ref:
        k = int(np.argmin(np.abs(est - t)))
        if abs(est[k] - t) <= 0.02:
            assert grid.beat_positions[k] == int(pos)


@pytest.mark.parametrize("clip", CLIPS)
def test_ensemble_activations_agree_with_beatnet_dbn(clip):
    act = combine([np.load(REFERENCE / clip / f"act_m{m}.npy") for m in (1, 2, 3)], OFFLINE_RULE)
    ref = np.loadtxt(REFERENCE / clip / "beatnet_dbn.txt")
    assert beat_f_measure(ref[:, 0], grid_from_activations(act).beats) >= 0.95


@pytest.mark.parametrize("model", [1, "ensemble"])
@pytest.mark.parametrize("clip", CLIPS)
def test_full_pipeline_on_reference_audio_agrees_with_beatnet_dbn(beatnet_models_dir, clip,
                                                                   model):
    """Our front end + ONNX CRNN + decoder on the excerpt audio vs BeatNet's (torch + madmom)."""
    x = np.load(REFERENCE / clip / "x22050.npy")
    ref = np.loadtxt(REFERENCE / clip / "beatnet_dbn.txt")
    grid = beat_grid(x, sr=SR, model=model)
    assert beat_f_measure(ref[:, 0], grid.beats) >= 0.95
    assert downbeat_f_measure(ref[ref[:, 1] == 1, 0], grid.downbeats) >= 0.9


# ---------------------------------------------------------------- synthetic set, full pipeline


@pytest.fixture(scope="module")
def synth_grids(beatnet_models_dir):
    items = synth_set(sample_rate=SR)
    return [(item, beat_grid(item.audio, sr=item.sample_rate)) for item in items]


def _scored_beats(item, grid):
    """Estimated beats, without those inside an item's silent gap.

    The synthetic annotations contain no beats inside a gap (nothing is audible there), while
    the offline grid deliberately keeps running through it; those beats are neither right nor
    wrong, so they are left out of the scoring.
    """
    beats = np.array(grid.beats)
    downs = np.array(grid.downbeats)
    if item.gap is not None:
        g0, g1 = item.gap
        beats = beats[(beats < g0) | (beats >= g1)]
        downs = downs[(downs < g0) | (downs >= g1)]
    return beats, downs


def test_synthetic_beat_and_downbeat_accuracy(synth_grids):
    beat_f, down_f = [], []
    for item, grid in synth_grids:
        beats, downs = _scored_beats(item, grid)
        beat_f.append(beat_f_measure(item.beats, beats))
        down_f.append(downbeat_f_measure(item.downbeats, downs))
    assert np.mean(beat_f) >= 0.97, dict(zip([i.name for i, _ in synth_grids], beat_f,
                                             strict=True))
    assert np.mean(down_f) >= 0.9
    assert min(beat_f) >= 0.9


def test_synthetic_meter(synth_grids):
    correct = [grid.meter == item.beats_per_bar for item, grid in synth_grids]
    assert np.mean(correct) >= 0.9
    for meter in (3, 4):
        sub = [c for c, (item, _) in zip(correct, synth_grids, strict=True)
               if item.beats_per_bar == meter]
        assert np.mean(sub) >= 0.8


def test_synthetic_tempo_or_octave_with_bpm_alt(synth_grids):
    for item, grid in synth_grids:
        true = item.tempo_bpm
        if abs(grid.tempo / true - 1.0) <= 0.02:
            continue
        # an octave error is acceptable only when bpm_alt offers the right tempo
        assert grid.bpm_alt is not None, item.name
        assert abs(grid.bpm_alt / true - 1.0) <= 0.02, item.name
        assert min(abs(grid.tempo / true - r) for r in (0.5, 2.0)) <= 0.04, item.name


def test_tempo_prior_restricts_decoded_tempo():
    """A pulse at 100 BPM (30 frames) for 40 s, then 150 BPM (20 frames) for 20 s: the dominant
    tempo is 100 BPM. Without a prior the decoder leaves 90..110 BPM; with a ±10 BPM prior every
    inter-beat interval lies in that window (one frame of quantisation allowed)."""
    act = np.zeros((3000, 3))
    act[:, 2] = 1.0
    beats = np.concatenate([np.arange(10, 2000, 30), np.arange(2000, 3000, 20)])
    act[beats, 0], act[beats, 2] = 0.9, 0.1

    def inside(grid):
        ibi = np.diff(grid.beats)
        assert ibi.size >= 50
        return (60.0 / (ibi + 0.02) <= 110.0 + 1e-9) & (60.0 / (ibi - 0.02) >= 90.0 - 1e-9)

    assert not inside(grid_from_activations(act)).all()
    assert inside(grid_from_activations(act, tempo_window=10.0)).all()


# ---------------------------------------------------------------- confidence


def _speech_like(rng, seconds):
    """Syllable-like bursts (harmonic tone + noise, random lengths and gaps): onsets without
    a pulse."""
    out = np.zeros(int(seconds * SR))
    t = 0.2
    while t < seconds - 0.5:
        dur = rng.uniform(0.08, 0.3)
        n = int(dur * SR)
        tt = np.arange(n) / SR
        f0 = rng.uniform(100, 220)
        tone = sum(np.sin(2 * np.pi * f0 * h * tt) / h for h in range(1, 12))
        start = int(t * SR)
        out[start:start + n] += np.sin(np.pi * tt / dur) ** 2 * (tone + 0.3 * rng.normal(size=n))
        t += dur + rng.exponential(0.15) + (rng.uniform(0.3, 0.8) if rng.random() < 0.12 else 0)
    return 0.5 * out / np.abs(out).max()


@pytest.fixture(scope="module")
def non_music_grids(beatnet_models_dir):
    rng = np.random.default_rng(7)
    n = 30 * SR
    pink = np.cumsum(rng.normal(size=n))
    pink -= np.convolve(pink, np.ones(2000) / 2000, "same")
    signals = {
        "white": 0.3 * rng.normal(size=n),
        "pink": 0.3 * pink / pink.std(),
        "speech_like": _speech_like(rng, 30),
        "silence": np.zeros(n),
        "dc": np.full(n, 0.3),
    }
    return {k: beat_grid(v.astype(np.float32), sr=SR) for k, v in signals.items()}


def test_confidence_separates_music_from_noise_speech_and_silence(synth_grids, non_music_grids):
    music = [grid.confidence for _, grid in synth_grids]
    other = {k: g.confidence for k, g in non_music_grids.items()}
    assert all(0.0 <= c <= 1.0 for c in music + list(other.values()))
    assert min(music) > max(other.values()), (min(music), other)
    assert np.median(music) >= 0.9
    assert max(other.values()) <= 0.4
    assert other["silence"] == 0.0 and non_music_grids["silence"].beats == ()


def test_confidence_definition_on_constructed_activations():
    n = 500
    clean = np.zeros(n)
    beats = np.arange(10, n, 25)
    clean[beats] = 0.9
    assert grid_confidence(clean, beats) == pytest.approx(1.0)
    # off-beats as strong as the beats: no contrast
    both = clean.copy()
    both[beats[:-1] + 12] = 0.9
    assert grid_confidence(both, beats) == pytest.approx(0.0)
    # weak beats scale by salience (0.2 / 0.5)
    assert grid_confidence(clean * 0.2 / 0.9, beats) == pytest.approx(0.4)
    # fewer than 9 beats scale by support; 0 or 1 beat gives 0
    assert grid_confidence(clean, beats[:5]) == pytest.approx(4 / 8)
    assert grid_confidence(clean, beats[:1]) == 0.0


# ---------------------------------------------------------------- API and edge cases


def test_grid_json_shape_matches_product_page():
    act = np.load(REFERENCE / "vibe_ace" / "act_m1.npy")
    grid = grid_from_activations(act)
    d = json.loads(grid.to_json())
    assert list(d) == ["tempo", "downbeat", "beats", "downbeats", "confidence", "bpm_alt",
                       "beat_positions", "meter", "mode"]
    assert d["mode"] == "offline" and d["meter"] == 4
    assert d["downbeat"] == d["downbeats"][0]
    assert set(d["downbeats"]) <= set(d["beats"])
    assert len(d["beat_positions"]) == len(d["beats"])
    assert all(1 <= p <= d["meter"] for p in d["beat_positions"])
    assert np.all(np.diff(d["beats"]) > 0)
    assert isinstance(d["tempo"], float) and 0.0 <= d["confidence"] <= 1.0
    assert d == grid.to_dict()
    with pytest.raises(AttributeError):
        grid.tempo = 1.0  # frozen


def test_silence_and_subthreshold_activations_give_empty_grid():
    act = np.zeros((1000, 3))
    act[:, 2] = 1.0
    act[:, 0] = 0.01
    grid = grid_from_activations(act)
    assert grid == BeatGrid(None, None, (), (), 0.0, None, (), None, "offline")
    assert json.loads(grid.to_json())["beats"] == []


@pytest.mark.parametrize("n", [0, 1, 2])
def test_very_short_inputs(n):
    act = np.tile([[0.9, 0.05, 0.05]], (n, 1))
    grid = grid_from_activations(act)
    assert grid.beats == () and grid.confidence == 0.0 and grid.tempo is None


def test_bad_activations_raise():
    with pytest.raises(ValueError, match="NaN or inf"):
        grid_from_activations(np.full((100, 3), np.nan))
    with pytest.raises(ValueError, match="shape"):
        grid_from_activations(np.zeros((100, 5)))


def test_beat_grid_argument_errors(tmp_path):
    from fractalsync_dsp.audio_io import AudioLoadError

    with pytest.raises(ValueError, match="sr"):
        beat_grid(np.zeros(1000, np.float32))
    with pytest.raises(ValueError, match="sr"):
        beat_grid(str(tmp_path / "x.wav"), sr=22050)
    with pytest.raises(ValueError, match="model"):
        beat_grid(np.zeros(1000, np.float32), sr=22050, model=4)
    bad = tmp_path / "bad.wav"
    bad.write_text("not audio")
    with pytest.raises(AudioLoadError):
        beat_grid(bad)


def test_beat_grid_from_file_equals_array(beatnet_models_dir, tmp_path):
    import soundfile as sf

    item = synth_set(sample_rate=SR)[3]
    path = tmp_path / "x.wav"
    sf.write(path, item.audio, SR, subtype="FLOAT")
    assert beat_grid(path) == beat_grid(item.audio, sr=SR)
    stereo = beat_grid(np.stack([item.audio, item.audio], axis=1), sr=SR)
    assert stereo.beats == beat_grid(item.audio, sr=SR).beats


def test_nan_audio_raises(beatnet_models_dir):
    x = np.zeros(SR, np.float32)
    x[100] = np.nan
    with pytest.raises(ValueError, match=r"NaN or inf .*index \(100,\)"):
        beat_grid(x, sr=SR)


@pytest.mark.parametrize("n", [0, 1, 441, SR // 2])
def test_tiny_audio_arrays(beatnet_models_dir, n):
    grid = beat_grid(np.zeros(n, np.float32), sr=SR)
    assert grid.beats == () and grid.confidence == 0.0 and grid.tempo is None


def test_int16_and_other_rates(beatnet_models_dir):
    item = synth_set(sample_rate=SR)[3]  # 120 BPM 4/4
    pcm = np.round(item.audio * 32767).astype(np.int16)
    grid16 = beat_grid(pcm, sr=SR)
    assert beat_f_measure(item.beats, grid16.beats) >= 0.97
    from fractalsync_dsp.resample import resample

    x44 = resample(item.audio, SR, 44100)
    grid44 = beat_grid(x44, sr=44100)
    assert beat_f_measure(item.beats, grid44.beats) >= 0.97




# ---------------------------------------------------------------- pipelined file analysis

DEMO_SONG = Path(__file__).parent.parent / "data" / "audio" / "Kevin_MacLeod_-_Vibe_Ace.ogg"


def _reader_threads() -> list:
    """Live decoder threads and CRNN workers of the pipelined path."""
    import threading

    return [t for t in threading.enumerate()
            if t.name.startswith(("AudioReader(", "beat_grid-crnn"))]


@pytest.fixture(params=["here", "threads"])
def crnn_placement(request, monkeypatch):
    """Forces where file_activations runs the CRNN members; yields the list of switches made."""
    bg = importlib.import_module("fractalsync_tracking.beat_grid")  # the module, not the function

    if request.param == "here":
        monkeypatch.setattr(bg, "DECIDE_AFTER", 10**9)  # never decides
    else:
        monkeypatch.setattr(bg, "DECIDE_AFTER", 2)
        monkeypatch.setattr(bg, "THREADS_BELOW", float("inf"))
    switches = []
    real = bg._PieceRuns.use_threads

    def spy(self):
        switches.append(request.param)
        real(self)

    monkeypatch.setattr(bg._PieceRuns, "use_threads", spy)
    yield request.param, switches


def _within(fn, *args, timeout: float = 120.0, **kwargs):
    """fn(*args) on a worker thread; TimeoutError instead of a hung suite."""
    from concurrent.futures import ThreadPoolExecutor

    pool = ThreadPoolExecutor(max_workers=1)
    try:
        return pool.submit(fn, *args, **kwargs).result(timeout=timeout)
    finally:
        pool.shutdown(wait=False)


@pytest.mark.parametrize("model", [1, "ensemble"])
def test_pipelined_demo_ogg_equals_in_memory(beatnet_models_dir, crnn_placement, model):
    """Decoder thread + streamed resampler/front end + pieced CRNN == load_audio + batch path,
    to the bit (activations) and exactly (grid), with the CRNN members here or on threads."""
    from fractalsync_dsp.audio_io import load_audio
    from fractalsync_tracking.beat_grid import file_activations

    placement, switches = crnn_placement
    x, sr = load_audio(DEMO_SONG)
    in_memory = beat_activations(x, sr, model)
    pipelined = file_activations(DEMO_SONG, model)
    assert switches == ([] if placement == "here" else ["threads"])
    assert pipelined.dtype == np.float32 and pipelined.shape == in_memory.shape
    np.testing.assert_array_equal(pipelined, in_memory)
    grid = beat_grid(DEMO_SONG, model=model)
    assert grid == grid_from_activations(in_memory) == beat_grid(x, sr=sr, model=model)
    assert len(grid.beats) > 100 and _reader_threads() == []


def test_pipelined_generated_stereo_flac_equals_in_memory(beatnet_models_dir, tmp_path,
                                                          monkeypatch, crnn_placement):
    """48 kHz stereo (different channels), 22 decoded blocks, a read-ahead queue of 1."""
    import soundfile as sf

    bg = importlib.import_module("fractalsync_tracking.beat_grid")  # the module, not the function
    from fractalsync_dsp.audio_io import load_audio
    from fractalsync_dsp.resample import resample

    item = synth_set(sample_rate=SR)[5]
    left = resample(item.audio, SR, 48000)
    noise = np.random.default_rng(1).standard_normal(left.size).astype(np.float32)
    stereo = np.stack([left, 0.5 * left + 0.01 * noise], axis=1)
    path = tmp_path / "stereo.flac"
    sf.write(path, stereo, 48000, subtype="PCM_24")
    monkeypatch.setattr(bg, "READ_AHEAD", 1)
    x, sr = load_audio(path)
    for model in (2, "ensemble"):
        np.testing.assert_array_equal(bg.file_activations(path, model),
                                      beat_activations(x, sr, model))
    assert beat_grid(path) == beat_grid(x, sr=sr)


def test_crnn_pieces_with_state_equal_one_run(beatnet_models_dir):
    """The members fed a feature sequence in pieces of any size (0 and 1 included), carrying
    their LSTM state, give the whole-sequence ``run`` to the bit."""
    from fractalsync_dsp.frontend import BeatNetFrontEnd
    from fractalsync_models.crnn import BeatNetCRNN
    from fractalsync_tracking.beat_grid import _PieceRuns

    features = BeatNetFrontEnd().features(np.load(REFERENCE / "vibe_ace" / "x22050.npy"))
    members = [BeatNetCRNN(variant=v) for v in (1, 2, 3)]
    whole = [crnn.run(features) for crnn in members]
    rng = np.random.default_rng(7)
    for sizes, switch in (([len(features)], 0), ([1, 0, 1, 2, 3, 50], 3),
                          (list(rng.integers(0, 300, 40)), 0), (list(rng.integers(0, 300, 40)), 5)):
        with _PieceRuns(members) as runs:
            cuts = np.minimum(np.cumsum([0, *sizes]), len(features))
            for k, (a, b) in enumerate(zip(cuts[:-1], cuts[1:], strict=True)):
                if k == switch:  # from here on, on worker threads
                    runs.use_threads()
                runs.feed(features[a:b])
            runs.feed(features[cuts[-1]:])
            assert runs.threaded == (switch < len(sizes))
            for got, want in zip(runs.results(), whole, strict=True):
                np.testing.assert_array_equal(got, want)


def _truncated_flac(tmp_path):
    import soundfile as sf

    item = synth_set(sample_rate=SR)[3]
    path = tmp_path / "cut.flac"
    sf.write(path, np.stack([item.audio, item.audio], axis=1), SR, subtype="PCM_16")
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * 0.8)])
    return path


def test_pipelined_file_errors_are_load_audio_errors(beatnet_models_dir, tmp_path):
    """Errors the decoder thread meets part-way reach the caller as load_audio's error."""
    import soundfile as sf

    from fractalsync_dsp.audio_io import AudioLoadError, load_audio

    empty = tmp_path / "empty.wav"
    sf.write(empty, np.zeros((0, 1), np.float32), SR)
    for path in (_truncated_flac(tmp_path), empty, tmp_path / "missing.ogg"):
        with pytest.raises(AudioLoadError) as expected:
            load_audio(path)
        with pytest.raises(AudioLoadError) as got:
            _within(beat_grid, path)
        assert (got.value.path, got.value.reason) == (expected.value.path, expected.value.reason)
        assert _reader_threads() == []
    with pytest.raises(AudioLoadError, match="decoding failed after frame"):
        beat_grid(_truncated_flac(tmp_path))


def test_nan_samples_in_a_file_are_analysed_as_silence(beatnet_models_dir, tmp_path):
    """The pipelined file path repairs NaN/inf (one warning with the count): its grid is the
    grid of the audio with those samples set to 0."""
    import soundfile as sf

    from fractalsync_dsp import NonFiniteAudioWarning

    audio = synth_set(sample_rate=SR)[3].audio.copy()
    bad = [17, 20 * SR + 17, 25 * SR]  # in the first block and far past it
    audio[bad] = [np.nan, np.inf, -np.inf]
    path = tmp_path / "nan.wav"
    sf.write(path, audio, SR, subtype="FLOAT")
    with pytest.warns(NonFiniteAudioWarning) as record:
        grid = _within(beat_grid, path)
    assert [str(w.message).split(" replaced")[0] for w in record] == [
        f"{path}: 3 NaN/inf samples (of {len(audio)})"]
    audio[bad] = 0.0
    assert grid == beat_grid(audio, sr=SR)


@pytest.mark.parametrize("where", ["crnn", "front_end"])
def test_pipelined_exception_mid_way_stops_all_threads(beatnet_models_dir, monkeypatch,
                                                       crnn_placement, where):
    """An exception in the CRNN or the front end part-way through the file propagates at once;
    the decoder thread (blocked on its full queue) and the CRNN workers end, nothing hangs."""
    bg = importlib.import_module("fractalsync_tracking.beat_grid")  # the module, not the function
    from fractalsync_dsp.frontend import BeatNetFrontEnd
    from fractalsync_models.crnn import BeatNetCRNN

    calls = {"n": 0}
    target = (BeatNetCRNN, "run") if where == "crnn" else (BeatNetFrontEnd, "push")
    real = getattr(*target)

    def failing(self, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 10:
            raise RuntimeError(f"injected in {where}")
        return real(self, *args, **kwargs)

    monkeypatch.setattr(*target, failing)
    monkeypatch.setattr(bg, "READ_AHEAD", 1)
    with pytest.raises(RuntimeError, match=f"injected in {where}"):
        _within(beat_grid, DEMO_SONG)
    # it stops there; on threads, the other two members' pieces already running also finish
    threads = crnn_placement[0] == "threads" and where == "crnn"
    assert 10 <= calls["n"] <= (12 if threads else 10)
    assert _reader_threads() == []
