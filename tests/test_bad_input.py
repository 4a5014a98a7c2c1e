"""Garbage fed to every public entry point: a clear exception naming the problem, never a crash.

Table-driven. Anything that once crashed the interpreter or hung (soxr at extreme rate ratios,
a ring left half-written) runs in a subprocess or a thread with a time limit, so that a
regression fails this test instead of killing or stalling the whole run.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

import fractalsync_dsp as dsp
from fractalsync_dsp.resample import MAX_RATIO
from fractalsync_models import (
    BeatNetCRNN,
    ContractError,
    TorchZipError,
    load_contract,
    load_state_dict,
    validate_onnx_model,
)
from fractalsync_tracking import (
    BeatClockState,
    BeatTracker,
    ParticleFilter,
    PhasePredictor,
    beat_f_measure,
    continuity,
    evaluate,
    grid_from_activations,
    track_activations,
)
from fractalsync_tracking.particle_filter import FilterConfig

N = 4410
_BASE = np.linspace(-0.5, 0.5, N).astype(np.float32)

# name -> (value, expected exception type or None for "accepted")
AUDIO = {
    "None": (None, TypeError),
    "str": ("abc", TypeError),
    "list of str": (["a", "b"], TypeError),
    "dict": ({"a": 1}, TypeError),
    "bool": (np.ones(N, bool), TypeError),
    "complex": (_BASE.astype(np.complex64), TypeError),
    "object": (_BASE.astype(object), TypeError),
    "int64": (np.zeros(N, np.int64), TypeError),
    "uint8": (np.zeros(N, np.uint8), TypeError),
    "0-d": (np.float32(0.5), ValueError),
    "3-d": (np.zeros((10, 2, 2), np.float32), ValueError),
    "channels-first (2, n)": (np.stack([_BASE, _BASE]), ValueError),
    "NaN": (np.full(N, np.nan, np.float32), ValueError),
    "inf": (np.full(N, -np.inf, np.float32), ValueError),
    "1e38": (np.full(N, 1e38, np.float32), ValueError),
    "1e300 float64": (np.full(N, 1e300), ValueError),
    "float16": (_BASE.astype(np.float16), None),
    "empty": (np.zeros(0, np.float32), None),
    "1 sample": (np.zeros(1, np.float32), None),
    "non-contiguous": (np.repeat(_BASE, 2)[::2], None),
    "reversed": (_BASE[::-1], None),
    "read-only": (np.frombuffer(_BASE.tobytes(), np.float32), None),
}


def _front_end_features(x):
    return dsp.BeatNetFrontEnd().features(x)


def _front_end_push(x):
    return dsp.BeatNetFrontEnd().push(x)


AUDIO_ENTRY_POINTS = {
    "as_float32": lambda x: dsp.as_float32(x, "x"),
    "as_float32_repaired": lambda x: dsp.as_float32_repaired(x, "x", warn=False)[0],
    "to_mono": dsp.to_mono,
    "resample": lambda x: dsp.resample(x, 44100, 22050),
    "StreamResampler.push": lambda x: dsp.StreamResampler(48000).push(x),
    "BeatNetFrontEnd.features": _front_end_features,
    "BeatNetFrontEnd.push": _front_end_push,
}


@pytest.mark.parametrize("entry", sorted(AUDIO_ENTRY_POINTS))
@pytest.mark.parametrize("case", sorted(AUDIO))
def test_audio_entry_points(entry, case):
    value, expected = AUDIO[case]
    fn = AUDIO_ENTRY_POINTS[entry]
    if entry.startswith("as_float32") and case in ("0-d", "3-d", "channels-first (2, n)"):
        expected = None  # as_float32(_repaired) accepts any shape by design
    if entry == "as_float32_repaired" and case in ("NaN", "inf", "1e38", "1e300 float64"):
        expected = None  # repaired to silence: the output is checked to be finite
    if expected is None:
        out = fn(value)
        assert out.dtype == np.float32 and np.all(np.isfinite(out))
        return
    with pytest.raises(expected) as info:
        fn(value)
    text = str(info.value)
    assert any(word in text for word in ("dtype", "shape", "NaN")), text


def test_float16_audio_is_the_same_signal_as_float32():
    x16 = _BASE.astype(np.float16)
    np.testing.assert_array_equal(dsp.to_mono(x16), x16.astype(np.float32))


def test_non_contiguous_and_fortran_audio_equal_their_contiguous_copies():
    stereo = np.stack([_BASE, -_BASE[::-1]], axis=1)
    fortran = np.asfortranarray(stereo)
    np.testing.assert_array_equal(dsp.to_mono(fortran), dsp.to_mono(stereo))
    rev = _BASE[::-1]
    fe = dsp.BeatNetFrontEnd()
    np.testing.assert_array_equal(fe.features(rev), fe.features(rev.copy()))


@pytest.mark.parametrize(
    "rate, error",
    [(0, ValueError), (-1, ValueError), (float("nan"), ValueError), (float("inf"), ValueError),
     (None, TypeError), ("abc", TypeError), ([44100], TypeError)],
)
def test_bad_rates(rate, error):
    with pytest.raises(error, match="sr_in"):
        dsp.resample(_BASE, rate, 22050)
    with pytest.raises(error, match="sr_in"):
        dsp.StreamResampler(rate)


_EXTREME_RATES = """
import numpy as np
from fractalsync_dsp import StreamResampler, resample
x = np.zeros(100, np.float32)
for sr_in in (1e-3, 1e-300, 22050 * 1e12, 1e300):
    for make in (lambda: resample(x, sr_in, 22050),
                 lambda: StreamResampler(sr_in).push(x),
                 lambda: StreamResampler(22050, sr_in)):
        try:
            make()
            print("accepted", sr_in)
        except ValueError as exc:
            assert "outside" in str(exc), exc
print("ok")
"""


def test_extreme_rate_ratios_are_refused_not_crashed():
    """soxr 1.1.0 segfaults at 0.001 -> 22050 Hz and does not return at 2.2e16 -> 22050 Hz."""
    proc = subprocess.run([sys.executable, "-c", _EXTREME_RATES], capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.split() == ["ok"], proc.stdout


def test_rate_ratio_limit_is_inclusive_and_works():
    sr_in = 22050 / MAX_RATIO
    y = dsp.resample(np.ones(3, np.float32), sr_in, 22050)
    assert y.shape == (3 * int(MAX_RATIO),) and np.all(np.isfinite(y))
    with pytest.raises(ValueError, match="outside"):
        dsp.resample(np.ones(3, np.float32), sr_in * 0.999, 22050)


# ------------------------------------------------------------------------------ feature ring


def _returns_within(fn, seconds=5.0):
    result = {}
    thread = threading.Thread(target=lambda: result.setdefault("value", fn()), daemon=True)
    thread.start()
    thread.join(seconds)
    assert not thread.is_alive(), "call did not return (hang)"
    return result["value"]


@pytest.mark.parametrize(
    "frame", [["a", "b", "c", "d"], np.ones(4, complex), np.array([1, None, 2, 3], object)],
    ids=["str", "complex", "object"],
)
def test_feature_ring_refuses_uncastable_frames_and_stays_readable(frame):
    ring = dsp.FeatureRing(4, 4)
    ring.append(np.arange(4))
    with pytest.raises(TypeError, match="cannot be stored"):
        ring.append(frame)
    with pytest.raises(TypeError, match="cannot be stored"):
        ring.extend(np.stack([np.asarray(frame)] * 2))
    got = _returns_within(lambda: ring.last(4))
    np.testing.assert_array_equal(got[-1], np.arange(4))
    assert ring.frames_written == 1 and not got[:3].any()


@pytest.mark.parametrize("T", [None, -1, 5, 2.0, "2", True])
def test_feature_ring_bad_read_length(T):
    with pytest.raises(ValueError, match="T must be an int"):
        dsp.FeatureRing(4, 4).last(T)


def test_feature_ring_bad_out():
    ring = dsp.FeatureRing(4, 4)
    with pytest.raises(TypeError, match="out must be a numpy array"):
        ring.last(2, out=[[0.0] * 4] * 2)
    with pytest.raises(ValueError, match="out must have shape"):
        ring.last(2, out=np.zeros((2, 4), np.float64))


# ------------------------------------------------------------------------------ micro features


@pytest.mark.parametrize(
    "frame, error",
    [(None, TypeError), ("a", TypeError), (np.ones(1411, bool), TypeError),
     (np.zeros(1411, complex), TypeError), (np.zeros(1411, np.int16), TypeError),
     (np.zeros(1410, np.float32), ValueError), (np.zeros((1, 1411), np.float32), ValueError)],
)
def test_micro_features_bad_frames(frame, error):
    mag = np.zeros(705, np.float32)
    with pytest.raises(error, match="frame"):
        dsp.MicroFeatures().update(frame, mag)
    frames = frame[None] if isinstance(frame, np.ndarray) else frame
    with pytest.raises(error, match="frames"):
        dsp.micro_features(frames, mag[None])


def test_micro_features_zero_non_finite_values_as_documented():
    frame = np.zeros(1411, np.float32)
    frame[::7] = np.nan
    mag = np.full(705, np.inf, np.float32)
    out = dsp.MicroFeatures().update(frame, mag)
    np.testing.assert_array_equal(out, dsp.MicroFeatures().update(np.zeros(1411, np.float32),
                                                                  np.zeros(705, np.float32)))


# ------------------------------------------------------------------------------ audio files


@pytest.mark.parametrize("path", [None, 123, ["a.wav"], b"a.wav"])
def test_audio_path_types(path):
    with pytest.raises(TypeError, match="path must be"):
        dsp.load_audio(path)
    with pytest.raises(TypeError, match="path must be"):
        dsp.AudioReader(path)


def test_reader_bad_block_arguments(tmp_path):
    wav = tmp_path / "a.wav"
    sf.write(wav, np.zeros(100, np.float32), 8000)
    with dsp.AudioReader(wav) as reader:
        for bad in (0, -1, 1.5, True, None, "8"):
            with pytest.raises(ValueError, match="block_frames"):
                reader.blocks(bad)
        with pytest.raises(ValueError, match="read_ahead"):
            reader.blocks(read_ahead=-1)
        with pytest.raises(TypeError, match="transform"):
            reader.blocks(transform=3)


# ------------------------------------------------------------------------------ models


def test_contract_files_that_are_not_json(tmp_path):
    binary = tmp_path / "binary.json"
    binary.write_bytes(b"\xff\xfe\x00garbage")
    deep = tmp_path / "deep.json"
    deep.write_text("[" * 100_000)
    for path in (binary, deep):
        with pytest.raises(ContractError, match=str(path.name)):
            load_contract(path)


@pytest.mark.parametrize("source", [None, 123, 1.5, ["a"]])
def test_state_dict_source_types(source):
    with pytest.raises(TypeError, match="source must be"):
        load_state_dict(source)


@pytest.mark.parametrize("source", [b"", b"garbage", bytearray(b"PK\x03\x04")])
def test_state_dict_garbage_bytes(source):
    with pytest.raises(TorchZipError):
        load_state_dict(source)


@pytest.mark.parametrize("model", [None, 123, b"x.onnx", ["x"]])
def test_validate_onnx_model_types(model):
    with pytest.raises(TypeError, match="model must be"):
        validate_onnx_model(model)


def test_validate_onnx_model_garbage_file(tmp_path):
    junk = tmp_path / "junk.onnx"
    junk.write_text("not a model")
    with pytest.raises(ContractError, match="not a readable ONNX model"):
        validate_onnx_model(junk)


@pytest.mark.parametrize("variant", [True, 1.0, "1", 0, 4, None])
def test_crnn_variant(variant):
    with pytest.raises(ValueError, match="variant must be one of"):
        BeatNetCRNN(variant)


@pytest.fixture(scope="module")
def crnn(beatnet_models_dir):
    return BeatNetCRNN(1)


FRAME = np.zeros(272, np.float32)
FRAMES = {
    "None": (None, ValueError),
    "str": ("a", ValueError),
    "list of str": (["a"] * 272, TypeError),
    "bool": (np.ones(272, bool), TypeError),
    "complex": (FRAME.astype(complex), TypeError),
    "object": (FRAME.astype(object), TypeError),
    "int64": (FRAME.astype(np.int64), TypeError),
    "0-d": (np.float32(0), ValueError),
    "3-d": (FRAME[None, None], ValueError),
    "empty": (np.zeros(0, np.float32), ValueError),
    "NaN": (np.full(272, np.nan, np.float32), ValueError),
    "1e300 float64": (np.full(272, 1e300), ValueError),
    "float16": (FRAME.astype(np.float16), None),
    "reversed": (np.arange(272, dtype=np.float32)[::-1] / 272, None),
    "non-contiguous": (np.zeros(544, np.float32)[::2], None),
}


@pytest.mark.parametrize("case", sorted(FRAMES))
def test_crnn_step_and_run(crnn, case):
    value, expected = FRAMES[case]
    seq = np.stack([value] * 3) if isinstance(value, np.ndarray) and value.shape == (272,) \
        else value
    if expected is None:
        ref = np.ascontiguousarray(value, np.float32)
        np.testing.assert_array_equal(crnn.run(seq), crnn.run(np.stack([ref] * 3)))
        return
    before = crnn.state
    with pytest.raises(expected):
        crnn.step(value)
    with pytest.raises(expected if case not in ("list of str",) else ValueError):
        crnn.run(seq)
    np.testing.assert_array_equal(crnn.state[0], before[0])


@pytest.mark.parametrize(
    "out, error",
    [([0.0, 0.0, 0.0], ValueError), (np.zeros(5, np.float32), ValueError),
     (np.zeros((1, 3), np.float32), ValueError), (np.zeros(3, np.int64), TypeError)],
)
def test_crnn_step_out_is_checked_before_stepping(crnn, out, error):
    crnn.reset()
    with pytest.raises(error, match="out"):
        crnn.step(FRAME, out=out)
    assert not np.any(crnn.state[0]), "a refused step must not advance the LSTM state"


@pytest.mark.parametrize(
    "state",
    [None, "hc", (None, None), (np.zeros((2, 150)),), (np.zeros((150, 2)), np.zeros((2, 150))),
     (np.full((2, 150), np.nan), np.zeros((2, 150))), (np.zeros((2, 150), complex),) * 2],
)
def test_crnn_bad_state(crnn, state):
    with pytest.raises((TypeError, ValueError), match="state"):
        crnn.state = state
    if state is not None:  # run(state=None) means the zero state
        with pytest.raises((TypeError, ValueError), match="state"):
            crnn.run(np.zeros((2, 272), np.float32), state=state)


# ------------------------------------------------------------------------------ tracking

_ACT = np.zeros((500, 3))
_ACT[::25, 0] = 0.9
_ACT[:, 2] = 1.0 - _ACT[:, 0]

ACTIVATIONS = {
    "None": (None, ValueError),
    "str": ("a", ValueError),
    "list of str": ([["a", "b"]] * 10, TypeError),
    "bool": (_ACT > 0.5, TypeError),
    "complex": (_ACT.astype(complex), TypeError),
    "object": (_ACT.astype(object), TypeError),
    "1-d": (_ACT[:, 0], ValueError),
    "3-d": (_ACT[None], ValueError),
    "(n, 0)": (np.zeros((10, 0)), ValueError),
    "(n, 4)": (np.zeros((10, 4)), ValueError),
    "NaN": (np.full((100, 3), np.nan), ValueError),
    "inf": (np.full((100, 3), np.inf), ValueError),
}


@pytest.mark.parametrize("case", sorted(ACTIVATIONS))
def test_activation_entry_points(case):
    value, expected = ACTIVATIONS[case]
    with pytest.raises(expected):
        grid_from_activations(value)
    with pytest.raises(expected):
        track_activations(value, FilterConfig(n_particles=20))


def test_grid_from_activations_accepts_odd_layouts_with_the_same_result():
    ref = grid_from_activations(_ACT)
    assert ref.tempo == pytest.approx(120.0, rel=0.01)  # one beat every 25 frames at 50 fps
    for x in (np.asfortranarray(_ACT), np.repeat(_ACT, 2, axis=0)[::2], _ACT.tolist(),
              _ACT.astype(np.float16).astype(np.float64)):
        assert grid_from_activations(x).beats == ref.beats
    empty = grid_from_activations(np.zeros((0, 3)))
    assert empty.beats == () and empty.tempo is None


_HUGE_GRIDS = """
import resource, numpy as np
from fractalsync_tracking import grid_from_activations
resource.setrlimit(resource.RLIMIT_AS, (4 << 30, 4 << 30))  # a regression fails, not OOM-kills
act = np.zeros((500, 3)); act[::25, 0] = 0.9; act[:, 2] = 1.0 - act[:, 0]
for options, match in (({"fps": 1e9}, "beat periods"), ({"min_bpm": 1e-12}, "beat periods"),
                       ({"meters": (10**6,)}, "MAX_STATES")):
    try:
        grid_from_activations(act, **options)
        print("accepted", options)
    except ValueError as exc:
        assert match in str(exc), exc
print("ok")
"""


def test_grid_options_that_would_exhaust_memory():
    """fps=1e9 did not return, min_bpm=1e-12 raised MemoryError, meters=(10**6,) got the
    process OOM-killed; run in a memory-limited subprocess so that a regression cannot."""
    proc = subprocess.run([sys.executable, "-c", _HUGE_GRIDS], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.split() == ["ok"], proc.stdout


@pytest.mark.parametrize(
    "options, match",
    [({"min_bpm": 0.5}, "beat periods"), ({"meters": (2.5,)}, "meters"),
     ({"meters": "234"}, "meters"), ({"meters": ()}, "meters"), ({"fps": 0}, "fps"),
     ({"fps": float("nan")}, "fps"), ({"threshold": float("nan")}, "threshold"),
     ({"tempo_window": float("nan")}, "tempo_window"), ({"tempo_window": -1}, "tempo_window"),
     ({"transition_lambda": float("nan")}, "transition_lambda"), ({"alt_ratio": 2}, "ratio"),
     ({"observation_lambda": 1}, "observation_lambda"),
     ({"observation_lambda": 10**400}, "observation_lambda")],
)
def test_grid_options_that_would_mislead(options, match):
    with pytest.raises(ValueError, match=match):
        grid_from_activations(_ACT, **options)


@pytest.mark.parametrize("value", [2.5, 16.0, True, "16"])
def test_grid_observation_lambda_must_be_an_int(value):
    with pytest.raises(TypeError, match="observation_lambda must be an int"):
        grid_from_activations(_ACT, observation_lambda=value)


@pytest.mark.parametrize(
    "beat, downbeat",
    [(float("nan"), 0.0), (0.0, float("inf")), (-0.1, 0.0), (0.7, 0.7), (1e38, 0.0)],
)
def test_particle_filter_step_refuses_non_probabilities(beat, downbeat):
    pf = ParticleFilter(FilterConfig(n_particles=20))
    with pytest.raises(ValueError, match="activations must be finite probabilities"):
        pf.step(beat, downbeat)
    assert pf.frames_seen == 0


@pytest.mark.parametrize("beat, downbeat", [("0.5", 0.0), (0.5, None), (True, 0.0),
                                            (np.array([0.5]), 0.0)])
def test_particle_filter_step_refuses_non_numbers(beat, downbeat):
    pf = ParticleFilter(FilterConfig(n_particles=20))
    with pytest.raises(TypeError, match="activations must be real numbers"):
        pf.step(beat, downbeat)
    assert pf.frames_seen == 0


def test_phase_predictor_bad_calls():
    pp = PhasePredictor()
    with pytest.raises(RuntimeError, match="no state yet"):
        pp.query(0.0)
    for bad in (None, {}, "state"):
        with pytest.raises(TypeError, match="BeatClockState"):
            pp.update(bad)
    pp.update(BeatClockState(0.0, 0.5, 0.0, 0, 1.0, 0.5, 1, 4))
    for t in (float("nan"), float("inf"), None, "1.0"):
        with pytest.raises(ValueError, match="finite"):
            pp.query(t)
    for c in (0, 1, float("nan"), True, "0.2"):
        with pytest.raises(ValueError, match="max_correction"):
            PhasePredictor(c)


_STATE = BeatClockState(1.0, 0.5, 0.25, 3, 0.9, 0.1, 2, 4).to_dict()


@pytest.mark.parametrize(
    "text, error",
    [(None, ValueError), ("", ValueError), ("[1, 2]", ValueError), ("{}", ValueError),
     (json.dumps({**_STATE, "spb": "0.5"}), TypeError),
     (json.dumps({**_STATE, "spb": 0.0}), ValueError),
     (json.dumps({**_STATE, "phase": 1.0}), ValueError),
     (json.dumps({**_STATE, "beat_count": 3.0}), TypeError),
     (json.dumps({**_STATE, "beat_in_bar": 5}), ValueError),
     (json.dumps({**_STATE, "extra": 1}), ValueError),
     (json.dumps(_STATE).replace("0.9", "NaN"), ValueError),
     (json.dumps(_STATE).replace("0.9", "1e400"), ValueError)],
)
def test_beat_clock_state_from_bad_json(text, error):
    with pytest.raises(error):
        BeatClockState.from_json(text)


@pytest.mark.parametrize(
    "times, error",
    [(None, ValueError), ("abc", TypeError), ([["a"]], TypeError), ({"a": 1}, TypeError),
     ([[1.0, 2.0]], ValueError), ([1.0, float("nan")], ValueError), ([2.0, 1.0], ValueError),
     ([1.0, 2j], TypeError)],
)
def test_metrics_bad_times(times, error):
    ok = [1.0, 2.0, 3.0]
    for fn in (beat_f_measure, continuity, evaluate):
        with pytest.raises(error):
            fn(ok, times)
        with pytest.raises(error):
            fn(times, ok)


def test_metrics_bad_window():
    for window in (-0.1, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="window"):
            beat_f_measure([1.0], [1.0], window)


@pytest.mark.parametrize(
    "rate, error",
    [(0, ValueError), (-44100, ValueError), (float("nan"), ValueError), (1e-3, ValueError),
     (22050 * 1e12, ValueError), ("44100", TypeError), (None, TypeError), (True, TypeError)],
)
def test_tracker_bad_rates_leave_it_unchanged(rate, error):
    class Constant:  # a CRNN stand-in: the rate checks happen before any frame is analysed
        def reset(self):
            pass

        def step(self, frame, out):
            out[:] = (0.0, 0.0, 1.0)
            return out

    tracker = BeatTracker(crnn=Constant())
    with pytest.raises(error):
        tracker.push(np.zeros(1024, np.float32), rate)
    assert tracker.sample_rate is None and tracker.stream_time == 0.0


# ------------------------------------------------------------------------------ CLIs


def _cli(module: str, *args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    code = f"import sys; from {module} import main; sys.exit(main())"
    return subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True,
                          timeout=120, cwd=cwd)


def test_beats_cli_bad_inputs(tmp_path):
    (tmp_path / "notes.txt").write_text("not audio")
    script = textwrap.dedent(f"""
        import sys
        from fractalsync_tracking.cli_beats import main
        for argv in ({[str(tmp_path / "missing.wav")]!r}, {[str(tmp_path / "notes.txt")]!r},
                     ["x.wav", "--min-bpm", "nan"], ["x.wav", "--model", "7"], [],
                     [{str(tmp_path)!r}, "--out", {str(tmp_path / "o")!r}]):
            try:
                code = main(argv)
            except SystemExit as exc:
                code = exc.code
            print("EXIT", code, file=sys.stderr)
    """)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=120)
    codes = [int(line.split()[1]) for line in proc.stderr.splitlines() if line.startswith("EXIT")]
    assert codes == [1, 1, 2, 2, 2, 1], proc.stderr[-3000:]
    assert "missing.wav" in proc.stderr and "No such file" in proc.stderr
    assert "notes.txt" in proc.stderr and "not readable as audio" in proc.stderr
    assert "contains no audio files" in proc.stderr
    assert "Traceback" not in proc.stderr and proc.stdout == ""


def test_export_cli_bad_inputs(tmp_path):
    junk = tmp_path / "junk.whl"
    junk.write_text("not a zip")
    bad_model = _cli("fractalsync_models.export_beatnet", "--model", "7")
    assert bad_model.returncode == 2 and "invalid choice" in bad_model.stderr
    out = str(tmp_path / "models")
    # a junk wheel is refused by its hash before it is opened; allowed unpinned, it is opened
    # and refused as an unreadable zip
    for wheel, message, extra in ((str(tmp_path / "missing.whl"), "no such file", ()),
                                  (str(junk), "sha256", ()),
                                  (str(junk), "not a wheel", ("--allow-unpinned",))):
        proc = _cli("fractalsync_models.export_beatnet", "--wheel", wheel, "--out", out,
                    "--model", "1", *extra)
        assert proc.returncode == 1, proc.stderr
        assert message in proc.stderr and "Traceback" not in proc.stderr
