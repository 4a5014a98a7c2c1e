"""OnnxController against the contract, on small random-weight models made with onnx.helper
(tests/onnx_controllers.py; no torch): state carried as in a manual onnxruntime loop, reset,
NaN inputs, a model emitting NaN (the documented fallback), bad model files; the output step
(finish_control) against a numpy reference; the shipped model when it is in the checkout."""

from __future__ import annotations

import math
import warnings

import numpy as np
import onnxruntime as ort
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from onnx_controllers import random_controller

from examples.julia.controller import CONTROL_NAMES, CONTROL_RANGES, SILENCE_MICRO, ControlInputs
from examples.julia.controller_io import ContractInputs
from examples.julia.controller_onnx import (
    DEFAULT_MODEL_PATH,
    NonFiniteOutputWarning,
    OnnxController,
    finish_control,
)
from fractalsync_models.contract import ContractError
from fractalsync_models.crnn import ModelNotFoundError

LO = np.array([CONTROL_RANGES[n][0] for n in CONTROL_NAMES])
HI = np.array([CONTROL_RANGES[n][1] for n in CONTROL_NAMES])
ROT, HUE = CONTROL_NAMES.index("rotation"), CONTROL_NAMES.index("hue")
NEUTRAL = np.array([0.0, 0.0, 1.0, 0.0, 0.0, 1.0, 1.0, 0.5], np.float32)


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    d = tmp_path_factory.mktemp("controllers")
    return {"plain": random_controller(d / "plain.onnx", seed=1),
            "other": random_controller(d / "other.onnx", seed=2),
            "nan": random_controller(d / "nan.onnx", seed=1, nan_above_half_onset=True),
            "dir": d}


def frames(n: int, seed: int = 0, onset=None) -> list[ControlInputs]:
    """n frames of plausible inputs at 60 Hz (a 120 BPM beat, moving features and sections)."""
    rng = np.random.default_rng(seed)
    out = []
    for k in range(n):
        t = k / 60.0
        micro = (-20 + 5 * rng.standard_normal(), -25 + 5 * rng.standard_normal(), -30.0,
                 -40.0, float(rng.uniform(0, 0.05)), float(rng.uniform(500, 4000)),
                 float(rng.uniform(0, 0.5)) if onset is None else onset[k])
        p = rng.dirichlet(np.ones(8))
        out.append(ControlInputs(t, (t / 0.5) % 1.0, int(t / 0.5) % 4 + 1, 4, 0.5,
                                 float(rng.uniform(0.5, 1)), micro, tuple(p),
                                 tuple(rng.uniform(0, 1, 5))))
    return out


def reference_finish(control: np.ndarray) -> np.ndarray:
    """The documented output step in plain numpy (float64, then float32)."""
    c = control.astype(np.float64).copy()
    c[ROT] = (c[ROT] + math.pi) % (2 * math.pi) - math.pi
    c[HUE] = c[HUE] % 1.0
    return np.clip(c, LO, HI).astype(np.float32)


def manual_loop(path, inputs: list[ControlInputs], carry: bool = True) -> np.ndarray:
    """The contract by hand: onnxruntime's plain run, state_out fed back as state_in."""
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    convert = ContractInputs()
    state = np.zeros((1, 64), np.float32)
    out = []
    for x in inputs:
        micro, beat, section, hazard = convert.convert(x)
        control, state_out = session.run(None, {
            "micro_features": micro, "beat_features": beat, "section_probs": section,
            "hazard_probs": hazard, "state_in": state})
        if carry:
            state = state_out
        out.append(reference_finish(control[0]))
    return np.array(out)


def test_the_random_model_satisfies_the_contract_and_steps_within_the_ranges(models):
    ctl = OnnxController(models["plain"])
    out = np.array([ctl.step(x) for x in frames(200)])
    assert out.dtype == np.float32 and out.shape == (200, 8)
    assert np.all(np.isfinite(out))
    assert np.all(out >= LO.astype(np.float32)) and np.all(out <= HI.astype(np.float32))
    assert np.ptp(out, axis=0).min() > 0  # every control moves: the model is not constant
    assert ctl.nonfinite_frames == 0 and "plain.onnx" in repr(ctl)


def test_the_state_is_carried_exactly_as_a_manual_onnxruntime_loop(models):
    inputs = frames(120, seed=3)
    want = manual_loop(models["plain"], inputs)
    ctl = OnnxController(models["plain"])
    got = np.array([ctl.step(x) for x in inputs])
    np.testing.assert_array_equal(got, want)
    # the comparison can fail: without the state carried the outputs differ
    assert not np.allclose(manual_loop(models["plain"], inputs, carry=False), want, atol=1e-4)
    # and another model's outputs differ too
    other = OnnxController(models["other"])
    assert not np.allclose([other.step(x) for x in inputs], want, atol=1e-3)


def test_reset_starts_a_fresh_stream(models):
    a, b = frames(40, seed=4), frames(40, seed=5)
    ctl = OnnxController(models["plain"])
    first = np.array([ctl.step(x) for x in a])
    [ctl.step(x) for x in b]
    ctl.reset()
    np.testing.assert_array_equal([ctl.step(x) for x in a], first)
    # the converter's held spb is forgotten too: after reset a NaN spb reads as 0.5 s again
    odd = [ControlInputs(x.t, x.phase, x.beat_in_bar, x.beats_per_bar, 1.7, x.conf, x.micro,
                         x.section_probs, x.hazard_probs) for x in b[:3]]
    nan_spb = ControlInputs(0.0, 0.2, 1, 4, math.nan, 0.9)
    fresh = OnnxController(models["plain"]).step(nan_spb)
    [ctl.step(x) for x in odd]
    ctl.reset()
    np.testing.assert_array_equal(ctl.step(nan_spb), fresh)


def test_nan_and_missing_conditioning_reads_as_the_sanitised_inputs(models):
    nan8, nan5 = (math.nan,) * 8, (math.nan,) * 5
    bad = ControlInputs(0.0, math.nan, 1, 4, math.nan, math.nan, (math.nan,) * 7, nan8, nan5)
    # the frame the converter reads instead: no beat (phase 0, conf 0, not a downbeat), silence,
    # uniform sections, no hazard
    clean = ControlInputs(0.0, 0.0, 2, 4, 0.5, 0.0, SILENCE_MICRO, (1 / 8,) * 8, (0.0,) * 5)
    a, b = OnnxController(models["plain"]), OnnxController(models["plain"])
    for _ in range(5):
        got, want = a.step(bad), b.step(clean)
        assert np.all(np.isfinite(got))
        np.testing.assert_array_equal(got, want)
    huge = ControlInputs(0.0, 1e300, 1, 4, 1e300, 1e300, (1e300,) * 7, (1e300,) * 8,
                         (1e300,) * 5)
    assert np.all(np.isfinite(a.step(huge)))
    with pytest.raises(TypeError, match="ControlInputs"):
        a.step((0.0, 0.5))


def test_a_model_emitting_nan_holds_the_last_control_and_resets_the_state(models):
    onset = [0.1] * 10 + [0.9] + [0.1] * 10 + [0.8, 0.8] + [0.1] * 5
    inputs = frames(len(onset), seed=6, onset=onset)
    ctl = OnnxController(models["nan"])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        out = np.array([ctl.step(x) for x in inputs])
    assert [w.category for w in caught] == [NonFiniteOutputWarning]  # once, not per frame
    assert "nan.onnx" in str(caught[0].message)
    assert ctl.nonfinite_frames == 3
    assert np.all(np.isfinite(out))
    np.testing.assert_array_equal(out[10], out[9])  # held
    np.testing.assert_array_equal(out[21], out[20])
    np.testing.assert_array_equal(out[22], out[20])
    # the state was reset at frame 10: frame 11 on equals a fresh stream started at frame 11
    # (the same model without the NaN branch, a converter holding the same spb)
    fresh = OnnxController(models["plain"])
    np.testing.assert_array_equal([fresh.step(x) for x in inputs[11:21]], out[11:21])
    # frames before the first NaN are the plain model's
    plain = OnnxController(models["plain"])
    np.testing.assert_array_equal([plain.step(x) for x in inputs[:10]], out[:10])


def test_nan_on_the_first_frame_gives_the_neutral_control(models):
    ctl = OnnxController(models["nan"])
    with pytest.warns(NonFiniteOutputWarning):
        got = ctl.step(frames(1, onset=[1.0])[0])
    np.testing.assert_array_equal(got, NEUTRAL)


def test_a_missing_file_names_it(tmp_path):
    with pytest.raises(ModelNotFoundError, match="nothing.onnx"):
        OnnxController(tmp_path / "nothing.onnx")
    with pytest.raises(FileNotFoundError, match="not found"):
        OnnxController(tmp_path)  # a directory is not a model file


def test_a_file_that_is_not_onnx_names_it(tmp_path):
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"\x08\x07not a protobuf at all" * 10)
    with pytest.raises(ContractError, match="junk.onnx"):
        OnnxController(junk)


def test_a_model_of_another_contract_is_refused_naming_the_tensor(tmp_path):
    import onnx
    from onnx import TensorProto, helper

    # a controller whose state is 32 wide and whose control is called "controls"
    inputs = [helper.make_tensor_value_info(n, TensorProto.FLOAT, ["B", k]) for n, k in
              (("micro_features", 7), ("beat_features", 5), ("section_probs", 8),
               ("hazard_probs", 5), ("state_in", 32))]
    outputs = [helper.make_tensor_value_info("controls", TensorProto.FLOAT, ["B", 8]),
               helper.make_tensor_value_info("state_out", TensorProto.FLOAT, ["B", 32])]
    nodes = [helper.make_node("Identity", ["state_in"], ["state_out"]),
             helper.make_node("Concat", ["micro_features", "section_probs"], ["x"], axis=1),
             helper.make_node("Slice", ["x", "s0", "s8", "ax"], ["controls"])]
    inits = [onnx.numpy_helper.from_array(np.array([v], np.int64), n)
             for n, v in (("s0", 0), ("s8", 8), ("ax", 1))]
    model = helper.make_model(helper.make_graph(nodes, "wrong", inputs, outputs, inits),
                              opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    path = tmp_path / "wrong.onnx"
    onnx.save(model, str(path))
    with pytest.raises(ContractError) as err:
        OnnxController(path)
    text = str(err.value)
    assert "wrong.onnx" in text and "state_in" in text and "control" in text


def test_a_model_that_cannot_run_one_frame_is_refused_at_load(tmp_path):
    # batch fixed to 2 everywhere: consistent for the contract's symbol B, but not one frame
    path = random_controller(tmp_path / "batch2.onnx", batch=2)
    with pytest.raises(ContractError, match="batch2.onnx: the model does not run on one frame"):
        OnnxController(path)


near = st.floats(-10, 10, width=32)  # around the ranges: clipping and wrapping both happen
any32 = st.floats(width=32, allow_nan=True, allow_infinity=True)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.one_of(near, any32), min_size=8, max_size=8),
       st.lists(st.one_of(near, any32), min_size=0, max_size=70))
@example([0.0] * 8, [])  # no state at all: finite
@example([math.nan] + [0.0] * 7, [0.0] * 64)
@example([0.0] * 8, [0.0] * 63 + [math.inf])  # a bad state alone rejects the frame
@example([1e30, -1e30, 1e30, 1e30, -1e30, 1e30, -1e30, 1e30], [0.0])  # huge: clipped, wrapped
@example([0.0, 0.0, 1.0, math.pi, 1.0, 0.5, 1.0, 0.5], [0.0])  # the wrap ends
@example([0.0, 0.0, 1.0, -math.pi, -1e-9, 0.5, 1.0, 0.5], [0.0])
def test_finish_control_matches_a_numpy_reference(control, state):
    c = np.array(control, np.float32)
    s = np.array(state, np.float32)
    last = np.full(8, 7.0, np.float32)
    ok = finish_control(c, s, last)
    assert ok == bool(np.all(np.isfinite(c)) and np.all(np.isfinite(s)))
    if ok:
        np.testing.assert_array_equal(last, reference_finish(c))
        assert np.all(last >= LO.astype(np.float32)) and np.all(last <= HI.astype(np.float32))
    else:
        assert np.all(last == 7.0)


def test_finish_control_refuses_wrong_shapes():
    last = np.zeros(8, np.float32)
    with pytest.raises(ValueError, match="shape"):
        finish_control(np.zeros(7), np.zeros(3), last)
    with pytest.raises(ValueError, match="1-D"):
        finish_control(np.zeros(8), np.zeros((2, 3)), last)
    with pytest.raises(ValueError, match="last"):
        finish_control(np.zeros(8), np.zeros(3), np.zeros(8))
    beyond = np.array([1e39] + [0.0] * 7)  # beyond float32: infinite as the model would give it
    assert finish_control(beyond, np.zeros(3), last) is False


def test_the_shipped_model_loads_and_follows_the_contract():
    inputs = frames(300, seed=7)
    expected = manual_loop(DEFAULT_MODEL_PATH, inputs)
    ctl = OnnxController(engine="onnxruntime")
    np.testing.assert_array_equal(np.array([ctl.step(x) for x in inputs]), expected)
    # the default engine, the numba kernel on the file's weights: float32 rounding only
    ctl = OnnxController()
    assert ctl.engine == "numba"
    np.testing.assert_allclose(np.array([ctl.step(x) for x in inputs]), expected, atol=1e-5)
    assert DEFAULT_MODEL_PATH.stat().st_size <= 1_000_000
