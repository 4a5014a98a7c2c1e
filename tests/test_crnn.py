"""BeatNetCRNN: parity with BeatNet's torch activations, streaming state, errors."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from fractalsync_models import BeatNetCRNN, ContractError, ModelNotFoundError
from fractalsync_models.crnn_reference import reference_forward
from fractalsync_models.export_beatnet import fetch_wheel, read_weights

REF = Path(__file__).parent / "data" / "reference"
CLIPS = ["vibe_ace", "lets_go_fishin"]


def _features(clip: str) -> np.ndarray:
    return np.load(REF / clip / "features.npy")


@pytest.fixture(scope="module")
def models(beatnet_models_dir):
    return {v: BeatNetCRNN(path=beatnet_models_dir / f"beatnet_m{v}.onnx") for v in (1, 2, 3)}


@pytest.mark.parametrize("clip", CLIPS)
@pytest.mark.parametrize("variant", [1, 2, 3])
def test_run_reproduces_torch_activations(models, clip, variant):
    probs = models[variant].run(_features(clip))
    expected = np.load(REF / clip / f"act_m{variant}.npy")
    assert probs.shape == expected.shape == (1500, 3) and probs.dtype == np.float32
    assert np.abs(probs - expected).max() <= 1e-4


@pytest.mark.parametrize("variant", [1, 2, 3])
def test_step_equals_run(models, variant):
    # step runs the numba kernel on the step graph's weights, run the sequence graph through
    # onnxruntime: two float32 evaluations of the same network. Over 1500 frames the rounding
    # differences carried in the state reach a few 1e-6 on the probabilities and h, a few
    # 1e-5 on c (|c| reaches ~70); the per-step parity is in tests/test_crnn_kernel.py.
    crnn = models[variant]
    x = _features("lets_go_fishin")
    crnn.reset()
    stepped = np.stack([crnn.step(frame) for frame in x])
    probs, (h, c) = crnn.run(x, return_state=True)
    assert np.abs(stepped - probs).max() <= 1e-5
    assert np.abs(crnn.state[0] - h).max() <= 2e-5 and np.abs(crnn.state[1] - c).max() <= 1e-4


@pytest.mark.parametrize("clip", CLIPS)
def test_step_and_run_match_the_numpy_reference(models, beatnet_models_dir, clip):
    # both graphs against the float64 numpy specification of the CRNN, on 500 real frames
    x = _features(clip)[:500]
    z = np.zeros((2, 1, 150))
    weights = read_weights(fetch_wheel(), 1)
    ref, ref_h, ref_c = reference_forward(weights, x[None], z, z)
    crnn = models[1]
    crnn.reset()
    stepped = np.stack([crnn.step(frame) for frame in x])
    assert np.abs(stepped - ref[0]).max() <= 1e-5
    assert np.abs(crnn.state[0] - ref_h[:, 0]).max() <= 1e-5
    assert np.abs(crnn.state[1] - ref_c[:, 0]).max() <= 1e-5
    assert np.abs(crnn.run(x) - ref[0]).max() <= 1e-5


def test_variant_lookup_uses_fractalsync_home(beatnet_models_dir, fractalsync_home):
    assert beatnet_models_dir == fractalsync_home / "models"
    crnn = BeatNetCRNN(2)
    assert crnn.path == beatnet_models_dir / "beatnet_m2.onnx"
    assert crnn.step_path == beatnet_models_dir / "beatnet_m2_step.onnx"
    assert crnn.output_order == ("beat", "downbeat", "no-beat")


def test_reset_restores_a_fresh_state(models):
    crnn, x = models[1], _features("vibe_ace")
    for frame in x[:300]:
        crnn.step(frame)
    assert np.abs(crnn.state[0]).max() > 0
    crnn.reset()
    h, c = crnn.state
    assert not h.any() and not c.any()
    again = np.stack([crnn.step(frame) for frame in x[:50]])
    assert np.abs(again - crnn.run(x[:50])).max() <= 1e-6


def test_state_save_and_restore(models):
    crnn, x = models[3], _features("vibe_ace")
    crnn.reset()
    for frame in x[:200]:
        crnn.step(frame)
    saved = crnn.state
    assert saved[0].shape == saved[1].shape == (2, 150) and saved[0].dtype == np.float32
    first = np.stack([crnn.step(frame) for frame in x[200:300]])
    crnn.state = saved
    second = np.stack([crnn.step(frame) for frame in x[200:300]])
    np.testing.assert_array_equal(first, second)
    # the offline path accepts the same state and returns the same final state
    probs, (h, c) = crnn.run(x[200:300], state=saved, return_state=True)
    assert np.abs(probs - first).max() <= 1e-5  # kernel against graph, as test_step_equals_run
    assert np.abs(h - crnn.state[0]).max() <= 2e-5 and np.abs(c - crnn.state[1]).max() <= 1e-4
    # the getter hands out copies
    h, c = crnn.state
    h[...] = 123.0
    assert crnn.state[0].max() < 1.0
    # (2, 1, 150) and float64 are accepted too
    crnn.state = (saved[0][:, None, :], saved[1].astype(np.float64))
    np.testing.assert_array_equal(crnn.state[0], saved[0])


def test_run_does_not_touch_streaming_state(models):
    crnn, x = models[1], _features("vibe_ace")
    crnn.reset()
    for frame in x[:10]:
        crnn.step(frame)
    before = crnn.state
    crnn.run(x)
    np.testing.assert_array_equal(crnn.state[0], before[0])


def test_outputs_and_dtypes(models):
    crnn, x = models[1], _features("vibe_ace")
    crnn.reset()
    out = np.empty(3, np.float32)
    assert crnn.step(x[0], out=out) is out
    np.testing.assert_allclose(out.sum(), 1.0, atol=1e-6)
    crnn.reset()
    np.testing.assert_array_equal(crnn.step(x[0].astype(np.float64)), out)
    np.testing.assert_array_equal(crnn.run(x[:20].astype(np.float64)), crnn.run(x[:20]))
    empty, (h, _) = crnn.run(np.zeros((0, 272), np.float32), return_state=True)
    assert empty.shape == (0, 3) and not h.any()


def test_bad_inputs_are_refused(models):
    crnn, x = models[1], _features("vibe_ace")
    crnn.reset()
    crnn.step(x[0])
    before = crnn.state
    with pytest.raises(ValueError, match=r"frame: expected shape \(272,\), got \(271,\)"):
        crnn.step(x[0, :271])
    with pytest.raises(ValueError, match=r"expected shape \(272,\), got \(1, 272\)"):
        crnn.step(x[:1])
    with pytest.raises(TypeError, match="frame: expected float features, got dtype int64"):
        crnn.step(np.zeros(272, np.int64))
    bad = x[1].copy()
    bad[17] = np.nan
    with pytest.raises(ValueError, match=r"frame must be finite: element \(17,\) is nan"):
        crnn.step(bad)
    np.testing.assert_array_equal(crnn.state[0], before[0])  # state unchanged by refusals
    seq = x[:30].copy()
    seq[12, 200] = np.inf
    with pytest.raises(ValueError, match=r"features must be finite: element \(12, 200\) is inf"):
        crnn.run(seq)
    with pytest.raises(ValueError, match=r"features: expected shape \(T, 272\), got \(272,\)"):
        crnn.run(x[0])
    with pytest.raises(TypeError, match="got dtype bool"):
        crnn.run(np.zeros((3, 272), bool))
    with pytest.raises(ValueError, match=r"state h: expected shape \(2, 150\), got \(150,\)"):
        crnn.state = (np.zeros(150), np.zeros((2, 150)))
    with pytest.raises(TypeError, match="pair"):
        crnn.state = np.zeros((2, 150))
    with pytest.raises(ValueError, match="state c must be finite"):
        crnn.run(x[:2], state=(np.zeros((2, 150)), np.full((2, 150), np.nan)))


def test_missing_model_names_the_command(tmp_path, monkeypatch):
    monkeypatch.setenv("FRACTALSYNC_HOME", str(tmp_path))
    with pytest.raises(ModelNotFoundError) as exc:
        BeatNetCRNN(variant=2)
    assert "fractalsync-export-beatnet --model 2" in str(exc.value)
    assert str(tmp_path / "models" / "beatnet_m2.onnx") in str(exc.value)
    with pytest.raises(ModelNotFoundError, match="fractalsync-export-beatnet --model N --out DIR"):
        BeatNetCRNN(path=tmp_path / "nope.onnx")
    with pytest.raises(ValueError, match=r"variant must be one of \(1, 2, 3\)"):
        BeatNetCRNN(variant=4)


def test_explicit_path_finds_the_step_model_next_to_it(beatnet_models_dir, tmp_path):
    for name in ("beatnet_m3.onnx", "beatnet_m3_step.onnx"):
        shutil.copy(beatnet_models_dir / name, tmp_path / name.replace("beatnet_m3", "mine"))
    crnn = BeatNetCRNN(path=tmp_path / "mine.onnx")
    assert crnn.step_path == tmp_path / "mine_step.onnx"
    x = _features("vibe_ace")[:20]
    assert np.abs(np.stack([crnn.step(f) for f in x]) - crnn.run(x)).max() <= 1e-6


def test_missing_step_model_names_the_command(beatnet_models_dir, tmp_path, monkeypatch):
    models_dir = tmp_path / "models"
    models_dir.mkdir()
    shutil.copy(beatnet_models_dir / "beatnet_m2.onnx", models_dir)
    monkeypatch.setenv("FRACTALSYNC_HOME", str(tmp_path))
    with pytest.raises(ModelNotFoundError) as exc:
        BeatNetCRNN(variant=2)
    assert str(models_dir / "beatnet_m2_step.onnx") in str(exc.value)
    assert "fractalsync-export-beatnet --model 2" in str(exc.value)
    with pytest.raises(ModelNotFoundError, match="fractalsync-export-beatnet --model N --out DIR"):
        BeatNetCRNN(path=models_dir / "beatnet_m2.onnx")


def test_step_model_failing_the_contract_is_refused(beatnet_models_dir, tmp_path):
    seq = (beatnet_models_dir / "beatnet_m1.onnx").read_bytes()
    (tmp_path / "m.onnx").write_bytes(seq)
    (tmp_path / "m_step.onnx").write_bytes(seq)  # the sequence graph is not a step graph
    with pytest.raises(ContractError, match="does not satisfy contract models.beatnet_crnn_step"):
        BeatNetCRNN(path=tmp_path / "m.onnx")
    (tmp_path / "m_step.onnx").write_bytes(b"\x00\x01garbage" * 100)
    with pytest.raises(ContractError, match="m_step.onnx: not a readable ONNX model"):
        BeatNetCRNN(path=tmp_path / "m.onnx")


def test_model_failing_the_contract_is_refused(tmp_path):
    # a runnable model with the right names but 128 features instead of 272
    graph = helper.make_graph(
        [
            helper.make_node("ReduceSum", ["features"], ["s"], keepdims=1, axes=[2]),
            helper.make_node("Concat", ["s", "s", "s"], ["probs"], axis=2),
            helper.make_node("Identity", ["h0"], ["hN"]),
            helper.make_node("Identity", ["c0"], ["cN"]),
        ],
        "wrong",
        [
            helper.make_tensor_value_info("features", TensorProto.FLOAT, ["B", "T", 128]),
            helper.make_tensor_value_info("h0", TensorProto.FLOAT, [2, "B", 150]),
            helper.make_tensor_value_info("c0", TensorProto.FLOAT, [2, "B", 150]),
        ],
        [
            helper.make_tensor_value_info("probs", TensorProto.FLOAT, ["B", "T", 3]),
            helper.make_tensor_value_info("hN", TensorProto.FLOAT, [2, "B", 150]),
            helper.make_tensor_value_info("cN", TensorProto.FLOAT, [2, "B", 150]),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 11)])
    onnx.checker.check_model(model)
    path = tmp_path / "wrong.onnx"
    onnx.save(model, path)
    with pytest.raises(ContractError, match=r"'features'\)\.shape\[2\]: expected 272, got 128"):
        BeatNetCRNN(path=path)
    # right tensors now, but an operator onnxruntime does not know
    model.graph.input[0].type.tensor_type.shape.dim[2].dim_value = 272
    model.graph.node[0].op_type = "NoSuchOp"
    onnx.save(model, path)
    with pytest.raises(ContractError, match="onnxruntime cannot load the model"):
        BeatNetCRNN(path=path)
    garbage = tmp_path / "garbage.onnx"
    garbage.write_bytes(b"\x00\x01garbage" * 100)
    with pytest.raises(ContractError, match="not a readable ONNX model"):
        BeatNetCRNN(path=garbage)
