"""Anticipator runtime (torch-free): the shipped model, step == run, state, bad model files,
non-finite input."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import warnings

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from fractalsync_models.anticipator import (
    DEFAULT_MODEL_PATH,
    ENGINES,
    INPUT_LIMIT,
    Anticipator,
    NonFiniteInputWarning,
)
from fractalsync_models.contract import ContractError, load_contract, validate_onnx_model
from fractalsync_models.crnn import ModelNotFoundError


@pytest.fixture(scope="module", params=ENGINES)
def model(request) -> Anticipator:
    """The shipped model on each engine (``step``'s numba kernel, or onnxruntime)."""
    m = Anticipator(engine=request.param)
    assert m.engine == request.param
    return m


#: The recurrent state's size in the packaged contract (``state_in`` [B, S]).
S = load_contract()["models"]["anticipator"]["inputs"][2]["shape"][-1]


def _inputs(seed: int, steps: int) -> tuple[np.ndarray, np.ndarray]:
    """Plausible slow-step inputs: non-negative audio features, beat features of a 120 BPM
    beat clock (phase advancing 0.16 beat per 80 ms step) with some noise."""
    rng = np.random.default_rng(seed)
    audio = (rng.random((steps, 272)) * rng.random(272) * 2).astype(np.float32)
    phase = (np.arange(steps) * 0.16) % 1.0
    beat = np.stack(
        [np.sin(2 * np.pi * phase), np.cos(2 * np.pi * phase), np.full(steps, np.log(0.5)),
         rng.random(steps), rng.random(steps) * (phase < 0.2)], axis=1,
    ).astype(np.float32)  # fmt: skip
    return audio, beat


def test_shipped_model_matches_the_contract_and_its_card():
    proto = validate_onnx_model(DEFAULT_MODEL_PATH, "anticipator", load_contract())
    assert proto.ir_version == 8
    onnx.checker.check_model(proto, full_check=True)
    data = DEFAULT_MODEL_PATH.read_bytes()
    assert len(data) <= 1 << 20
    card = json.loads(DEFAULT_MODEL_PATH.with_suffix(".json").read_text())
    assert card["sha256"] == hashlib.sha256(data).hexdigest() and card["bytes"] == len(data)
    assert card["holdout_seeds"] and not set(card["holdout_tracks"]) & set(card["train_tracks"])


def test_runtime_does_not_import_torch():
    code = (
        "import sys, numpy as np\n"
        "from fractalsync_models.anticipator import Anticipator\n"
        "Anticipator().step(np.zeros(272), np.zeros(5))\n"
        "assert 'torch' not in sys.modules, 'torch imported'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


def test_run_outputs_are_probabilities(model):
    audio, beat = _inputs(0, 300)
    sec, haz, state = model.run(audio, beat)
    assert sec.shape == (300, 8) and haz.shape == (300, 5) and state.shape == (S,)
    assert sec.dtype == haz.dtype == state.dtype == np.float32
    np.testing.assert_allclose(sec.sum(1), 1.0, atol=1e-5)
    assert ((haz >= 0) & (haz <= 1)).all() and np.isfinite(state).all()
    assert model.section_labels[4] == "chorus" and model.horizons_beats == (1, 2, 4, 8, 16)
    assert model.decimation == 4


def test_step_equals_run_and_carries_the_state(model):
    audio, beat = _inputs(1, 400)
    sec, haz, state = model.run(audio, beat)
    model.reset()
    stepped = [model.step(a, b) for a, b in zip(audio, beat, strict=True)]
    assert np.abs(np.stack([s for s, _ in stepped]) - sec).max() <= 1e-5
    assert np.abs(np.stack([h for _, h in stepped]) - haz).max() <= 1e-5
    assert np.abs(model.state - state).max() <= 1e-5
    # the state matters: a second pass from the carried state differs from a fresh one
    carried = model.step(audio[0], beat[0])[0]
    assert np.abs(carried - sec[0]).max() > 1e-4
    # run in two pieces with the state handed over == run in one piece
    s1, h1, mid = model.run(audio[:150], beat[:150])
    s2, h2, end = model.run(audio[150:], beat[150:], state=mid)
    assert np.abs(np.concatenate([s1, s2]) - sec).max() <= 1e-5
    assert np.abs(end - state).max() <= 1e-5


def test_step_without_copy_gives_the_model_buffers(model):
    """copy=False: the same read-only arrays every step (no allocation), holding the values
    copy=True returns, overwritten by the next step."""
    audio, beat = _inputs(5, 3)
    model.reset()
    want = [model.step(a, b) for a, b in zip(audio, beat, strict=True)]
    model.reset()
    sec, haz = model.step(audio[0], beat[0], copy=False)
    assert not sec.flags.writeable and not haz.flags.writeable
    np.testing.assert_array_equal(sec, want[0][0])
    np.testing.assert_array_equal(haz, want[0][1])
    for i in (1, 2):
        again = model.step(audio[i], beat[i], copy=False)
        assert again[0] is sec and again[1] is haz
        np.testing.assert_array_equal(sec, want[i][0])
        np.testing.assert_array_equal(haz, want[i][1])
    with pytest.raises(ValueError, match="read-only"):
        sec[0] = 1.0
    model.reset()


def test_reset_and_state_setter(model):
    audio, beat = _inputs(2, 20)
    sec, _, state = model.run(audio, beat)
    for a, b in zip(audio, beat, strict=True):
        model.step(a, b)
    model.reset()
    np.testing.assert_array_equal(model.state, np.zeros(S, np.float32))
    assert np.abs(model.step(audio[0], beat[0])[0] - sec[0]).max() <= 1e-6
    model.state = state
    np.testing.assert_array_equal(model.state, state)
    with pytest.raises(ValueError, match=rf"state: expected shape \({S},\)"):
        model.state = np.zeros(64)
    with pytest.raises(ValueError, match="finite"):
        model.state = np.full(S, np.nan)
    with pytest.raises(TypeError, match="float"):
        model.state = np.zeros(S, dtype=np.int64)


def test_empty_run_keeps_the_state(model):
    state = np.linspace(-0.5, 0.5, S).astype(np.float32)
    sec, haz, out = model.run(np.zeros((0, 272)), np.zeros((0, 5)), state=state)
    assert sec.shape == (0, 8) and haz.shape == (0, 5)
    np.testing.assert_array_equal(out, state)


def test_bad_inputs_name_the_problem(model):
    with pytest.raises(ValueError, match=r"audio_features: expected shape \(10, 272\)"):
        model.run(np.zeros((10, 271)), np.zeros((10, 5)))
    with pytest.raises(ValueError, match=r"audio_features: expected shape \(T, 272\)"):
        model.run(np.zeros(272), np.zeros((1, 5)))
    with pytest.raises(ValueError, match=r"beat_features: expected shape \(10, 5\)"):
        model.run(np.zeros((10, 272)), np.zeros((9, 5)))
    with pytest.raises(ValueError, match=r"audio_features: expected shape \(272,\)"):
        model.step(np.zeros(5), np.zeros(5))
    with pytest.raises(TypeError, match="dtype"):
        model.step(np.array(["a"] * 272), np.zeros(5))


def test_non_finite_input_is_replaced_by_zero_with_a_warning(model):
    audio, beat = _inputs(3, 30)
    bad_audio, bad_beat = audio.copy(), beat.copy().astype(np.float64)
    bad_audio[5, :10] = np.nan
    bad_audio[7, 3] = np.inf
    bad_beat[9, 2] = -np.inf
    bad_beat[11, 0] = 1e300  # beyond float32: inf, then 0
    clean_audio, clean_beat = audio.copy(), beat.copy()
    clean_audio[5, :10] = 0
    clean_audio[7, 3] = 0
    clean_beat[9, 2] = 0
    clean_beat[11, 0] = 0
    want = model.run(clean_audio, clean_beat)
    with pytest.warns(NonFiniteInputWarning) as record:
        got = model.run(bad_audio, bad_beat)
    assert sorted(str(w.message) for w in record) == [
        "audio_features: 11 non-finite value(s) replaced by 0",
        "beat_features: 2 non-finite value(s) replaced by 0",
    ]
    for g, w in zip(got, want, strict=True):
        np.testing.assert_array_equal(g, w)
    model.reset()
    with pytest.warns(NonFiniteInputWarning):
        sec, haz = model.step(np.full(272, np.nan), np.full(5, np.nan))
    assert np.isfinite(sec).all() and np.isfinite(haz).all()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        model.step(audio[0], beat[0])  # finite input: no warning


# --------------------------------------------------------------------------- bad model files


def _graph_model(state_dim: int = S, state_name: str = "state_in", ir: int = 8):
    """A small runnable ONNX graph with the contract's tensor names (or changed ones)."""
    f32 = TensorProto.FLOAT
    inputs = [
        helper.make_tensor_value_info("audio_features", f32, ["B", "T", 272]),
        helper.make_tensor_value_info("beat_features", f32, ["B", "T", 5]),
        helper.make_tensor_value_info(state_name, f32, ["B", state_dim]),
    ]
    outputs = [
        helper.make_tensor_value_info("section_logits", f32, ["B", "T", 8]),
        helper.make_tensor_value_info("hazard_logits", f32, ["B", "T", 5]),
        helper.make_tensor_value_info("state_out", f32, ["B", state_dim]),
    ]
    w8 = helper.make_tensor("w8", f32, [272, 8], np.zeros(272 * 8, np.float32))
    nodes = [
        helper.make_node("MatMul", ["audio_features", "w8"], ["section_logits"]),
        helper.make_node("Identity", ["beat_features"], ["hazard_logits"]),
        helper.make_node("Identity", [state_name], ["state_out"]),
    ]
    graph = helper.make_graph(nodes, "fake", inputs, outputs, [w8])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=ir)


def test_missing_model_file(tmp_path):
    with pytest.raises(ModelNotFoundError, match="anticipator model not found"):
        Anticipator(tmp_path / "nope.onnx")


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda p: p.write_bytes(DEFAULT_MODEL_PATH.read_bytes()[:5000]), "not a readable ONNX"),
        (lambda p: p.write_text("just some text, not a model\n"), "not a readable ONNX"),
        (lambda p: p.write_bytes(b""), "'audio_features'\\): missing from the model"),
        (lambda p: onnx.save(_graph_model(state_name="hidden"), p),
         r"unexpected model inputs \['hidden'\]"),
        (lambda p: onnx.save(_graph_model(state_dim=S + 1), p),
         rf"shape\[1\]: expected {S}, got {S + 1}"),
    ],
    ids=["truncated", "text", "empty", "wrong-name", "wrong-shape"],
)
def test_bad_model_files_give_clear_errors(tmp_path, make, message):
    path = tmp_path / "bad.onnx"
    make(path)
    with pytest.raises(ContractError, match=message):
        Anticipator(path)


# --------------------------------------------------------------------------- counters, huge input


def test_beat_and_bar_counters_count(model):
    # 120 BPM at 12.5 Hz: 0.16 beat per step; downbeat_prob 0.9 on every 4th beat
    steps = 200
    cycles = np.arange(steps) * 0.16
    down = np.where(np.floor(cycles) % 4 == 0, 0.9, 0.1)
    beat = np.stack([np.sin(2 * np.pi * cycles), np.cos(2 * np.pi * cycles),
                     np.full(steps, np.log(0.5)), np.full(steps, 0.8), down], 1)
    model.reset()
    for b in beat:
        model.step(np.zeros(272), b)
    state = model.state
    # beats 1..31 wrap (step 0 has no previous phase); bars are the wraps onto beats 4, 8, ..
    n_beats = int(np.floor(cycles[-1]))
    assert n_beats == 31 and state[-2] == n_beats
    assert state[-1] == len(range(4, n_beats + 1, 4))
    _, _, run_state = model.run(np.zeros((steps, 272)), beat)
    np.testing.assert_array_equal(run_state[-4:], state[-4:])
    model.reset()


def test_huge_inputs_are_clipped_to_the_limit(model):
    # beyond the limit (within float32's range) is the limit; the gates saturate, the outputs
    # stay probabilities and the GRU units within [-1, 1]
    model.reset()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # finite: no NonFiniteInputWarning
        sec, haz = model.step(np.full(272, 1e30), np.full(5, -3e38))
    huge_state = model.state
    model.reset()
    want = model.step(np.full(272, INPUT_LIMIT), np.full(5, -INPUT_LIMIT))
    np.testing.assert_array_equal(sec, want[0])
    np.testing.assert_array_equal(haz, want[1])
    np.testing.assert_array_equal(huge_state, model.state)
    assert np.isfinite(sec).all() and abs(sec.sum() - 1) < 1e-5 and np.isfinite(haz).all()
    # the GRU units (then sin, cos, counts); onnxruntime's tanh saturates at 1 + 5e-7
    assert np.abs(huge_state[: S - 4]).max() <= 1.0 + 1e-6
    model.reset()
