"""Contract loading/validation and ONNX model IO checks (fractalsync_models.contract)."""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path

import onnx
import pytest
from onnx import TensorProto, helper

from fractalsync_models.contract import (
    ContractError,
    load_contract,
    validate_contract,
    validate_onnx_model,
)

REPO_CONTRACT = Path(__file__).parent.parent / "contracts" / "v1.json"


@pytest.fixture(scope="module")
def contract():
    return load_contract()


def test_packaged_contract_is_the_repo_file(contract):
    assert contract == json.loads(REPO_CONTRACT.read_text())
    assert load_contract(REPO_CONTRACT) == contract


def test_contract_v1_content(contract):
    crnn = contract["models"]["beatnet_crnn"]
    assert contract["version"] == 1
    assert [t["name"] for t in crnn["inputs"]] == ["features", "h0", "c0"]
    assert crnn["inputs"][0]["shape"] == ["B", "T", 272]
    assert crnn["output_order"] == ["beat", "downbeat", "no-beat"]
    assert contract["clocks"]["analysis"]["hop_samples"] == 441
    step = contract["models"]["beatnet_crnn_step"]
    assert [(t["name"], t["shape"]) for t in step["inputs"]] == [
        ("features", [1, 1, 272]),
        ("h0_l0", [1, 1, 150]),
        ("c0_l0", [1, 1, 150]),
        ("h0_l1", [1, 1, 150]),
        ("c0_l1", [1, 1, 150]),
    ]
    assert [t["name"] for t in step["outputs"]] == ["probs", "hN_l0", "cN_l0", "hN_l1", "cN_l1"]
    assert step["outputs"][0]["shape"] == [1, 1, 3]


def test_load_returns_independent_dicts():
    a = load_contract()
    a["models"]["beatnet_crnn"]["inputs"][0]["shape"][2] = 1
    assert load_contract()["models"]["beatnet_crnn"]["inputs"][0]["shape"][2] == 272


def _set(d, path, value):
    *head, last = path
    for k in head:
        d = d[k]
    if value is _DELETE:
        del d[last]
    else:
        d[last] = value


_DELETE = object()
CRNN = ("models", "beatnet_crnn")
STEP = ("models", "beatnet_crnn_step")

MUTATIONS = [
    (("version",), 2, "version: unsupported contract version 2"),
    (("version",), True, "version: unsupported"),
    (("clocks", "input", "block_samples"), _DELETE, "clocks.input.block_samples: missing"),
    (("clocks", "input", "block_samples"), 0, "clocks.input.block_samples: expected a positive"),
    (("clocks", "analysis", "frame_rate_hz"), 40.0, "clocks.analysis.frame_rate_hz: expected 50.0"),
    (("clocks", "analysis", "frame_samples"), 1024, "frontend.fft_size: must equal"),
    (("frontend", "dim"), 270, "frontend.dim: expected 2 * frontend.n_bands"),
    (("frontend", "fmin_hz"), 20000.0, "frontend.fmin_hz: must be below"),
    (("micro_features", "dim"), 6, "micro_features.dim: expected len(micro_features.names)"),
    (("sections", "labels", 1), "silence", "sections.labels: duplicate names"),
    (("hazard", "horizons_beats"), [1, 2, 2], "hazard.horizons_beats: expected increasing"),
    (("hazard", "horizons_beats"), [], "hazard.horizons_beats: expected increasing"),
    ((*CRNN, "inputs", 0, "shape", 2), 0, "models.beatnet_crnn.inputs[0].shape[2]: expected a"),
    ((*CRNN, "inputs", 0, "shape", 0), "2B", "models.beatnet_crnn.inputs[0].shape[0]"),
    ((*CRNN, "inputs", 0, "shape"), [], "models.beatnet_crnn.inputs[0].shape: expected a non"),
    ((*CRNN, "inputs", 1, "dtype"), "float", "models.beatnet_crnn.inputs[1].dtype: expected one"),
    ((*CRNN, "inputs", 2, "name"), "h0", "models.beatnet_crnn.inputs[2].name: duplicate tensor"),
    ((*CRNN, "outputs"), [], "models.beatnet_crnn.outputs: expected a non-empty list"),
    ((*CRNN, "inputs", 0, "shape", 2), 271, "models.beatnet_crnn.features.shape[-1]: expected"),
    ((*CRNN, "output_order"), ["beat", "downbeat"], "models.beatnet_crnn.probs.shape[-1]"),
    ((*STEP,), _DELETE, "models.beatnet_crnn_step: missing"),
    ((*STEP, "inputs", 0, "shape", 2), 271, "models.beatnet_crnn_step.features.shape[-1]: expec"),
    ((*STEP, "outputs", 0, "shape", 2), 2, "models.beatnet_crnn_step.probs.shape[-1]: expected"),
    ((*STEP, "inputs", 4, "shape", 2), 149, "models.beatnet_crnn_step.c0_l1.shape[-1]: expected"),
    ((*STEP, "outputs", 1, "shape", 2), 151, "models.beatnet_crnn_step.hN_l0.shape[-1]: expected"),
    ((*STEP, "outputs", 4, "name"), "cN_l0", "beatnet_crnn_step.outputs[4].name: duplicate tensor"),
    ((*CRNN, "inputs", 1, "shape", 2), "H", "models.beatnet_crnn.h0.shape[-1]: expected a size"),
    (("models", "anticipator", "outputs", 0, "shape", 2), 7, "models.anticipator.section_logits"),
    (("models", "anticipator", "outputs", 1, "shape", 2), 4, "models.anticipator.hazard_logits"),
    (("models", "controller", "control_names"), ["a"], "models.controller.control.shape[-1]"),
    (("models", "controller"), _DELETE, "models.controller: missing"),
    (("state_bus", "SlowState"), "beat", "state_bus.SlowState: expected a non-empty list"),
]


@pytest.mark.parametrize("path, value, message", MUTATIONS, ids=[m[2][:40] for m in MUTATIONS])
def test_invalid_contract_names_the_field(contract, tmp_path, path, value, message):
    bad = copy.deepcopy(contract)
    _set(bad, path, value)
    with pytest.raises(ContractError) as exc:
        validate_contract(bad)
    assert message in str(exc.value)
    file = tmp_path / "bad.json"
    file.write_text(json.dumps(bad))
    with pytest.raises(ContractError, match=re.escape(message)):
        load_contract(file)


def test_invalid_json_and_missing_file(tmp_path):
    file = tmp_path / "broken.json"
    file.write_text('{"version": 1,')
    with pytest.raises(ContractError, match="broken.json: not valid JSON"):
        load_contract(file)
    with pytest.raises(FileNotFoundError):
        load_contract(tmp_path / "absent.json")
    with pytest.raises(ContractError, match="expected a JSON object"):
        validate_contract([1, 2])


# --------------------------------------------------------------------------- ONNX model IO


def _vi(name, shape, elem=TensorProto.FLOAT):
    return helper.make_tensor_value_info(name, elem, shape)


def _io_model(inputs, outputs):
    """A model whose graph declares only the given inputs/outputs (IO checks only)."""
    graph = helper.make_graph([], "io_only", inputs=inputs, outputs=outputs)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def _crnn_io(**overrides):
    spec = {
        "features": ["B", "T", 272],
        "h0": [2, "B", 150],
        "c0": [2, "B", 150],
        "probs": ["B", "T", 3],
        "hN": [2, "B", 150],
        "cN": [2, "B", 150],
    }
    spec.update(overrides)
    vis = {k: (_vi(k, v) if v is not None else None) for k, v in spec.items()}
    ins = [vis[k] for k in ("features", "h0", "c0") if vis[k] is not None]
    outs = [vis[k] for k in ("probs", "hN", "cN") if vis[k] is not None]
    return _io_model(ins, outs)


def test_matching_model_passes(contract):
    model = _crnn_io()
    assert validate_onnx_model(model, "beatnet_crnn", contract) is model


def test_symbolic_dims_accept_fixed_sizes():
    validate_onnx_model(
        _crnn_io(features=[1, 5, 272], h0=[2, 1, 150], probs=[1, 5, 3], hN=[2, "batch", 150])
    )


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"features": ["B", "T", 271]}, "inputs[0] ('features').shape[2]: expected 272, got 271"),
        ({"features": ["B", "T", "F"]}, "('features').shape[2]: expected 272, got dynamic 'F'"),
        ({"h0": [2, 150]}, "inputs[1] ('h0').shape: expected rank 3"),
        ({"cN": None}, "outputs[2] ('cN'): missing from the model"),
        ({"features": [1, "T", 272], "h0": [2, 2, 150]}, "symbol 'B' fixed to 2 here but to 1"),
    ],
)
def test_mismatching_model_names_the_tensor(overrides, message):
    with pytest.raises(ContractError) as exc:
        validate_onnx_model(_crnn_io(**overrides))
    assert message in str(exc.value)
    assert "does not satisfy contract models.beatnet_crnn" in str(exc.value)


def test_wrong_dtype_and_extra_tensors_are_reported_together():
    model = _io_model(
        [
            _vi("features", ["B", "T", 272], TensorProto.DOUBLE),
            _vi("h0", [2, "B", 150]),
            _vi("c0", [2, "B", 150]),
            _vi("gain", [1]),
        ],
        [_vi("probs", ["B", "T", 3]), _vi("hN", [2, "B", 150]), _vi("cN", [2, "B", 150])],
    )
    with pytest.raises(ContractError) as exc:
        validate_onnx_model(model)
    msg = str(exc.value)
    assert "inputs[0] ('features').dtype: expected float32, got float64" in msg
    assert "models.beatnet_crnn.inputs: unexpected model inputs ['gain']" in msg


def test_step_model_io(contract):
    spec = contract["models"]["beatnet_crnn_step"]
    inputs = [_vi(t["name"], t["shape"]) for t in spec["inputs"]]
    outputs = [_vi(t["name"], t["shape"]) for t in spec["outputs"]]
    validate_onnx_model(_io_model(inputs, outputs), "beatnet_crnn_step")
    # a one-frame graph needs fixed sizes: a dynamic frame axis is refused
    inputs[0] = _vi("features", [1, "T", 272])
    with pytest.raises(ContractError, match=r"\('features'\)\.shape\[1\]: expected 1, got dynamic"):
        validate_onnx_model(_io_model(inputs, outputs), "beatnet_crnn_step")
    # the sequence model's tensors are not a step model
    with pytest.raises(ContractError, match="does not satisfy contract models.beatnet_crnn_step"):
        validate_onnx_model(_crnn_io(), "beatnet_crnn_step")


def test_other_contract_models(contract):
    spec = contract["models"]["controller"]
    model = _io_model(
        [_vi(t["name"], t["shape"]) for t in spec["inputs"]],
        [_vi(t["name"], t["shape"]) for t in spec["outputs"]],
    )
    validate_onnx_model(model, "controller")
    with pytest.raises(ContractError, match="models.beatnet_crnn"):
        validate_onnx_model(model, "beatnet_crnn")
    with pytest.raises(ContractError, match=r"models.nope: no such model"):
        validate_onnx_model(model, "nope")


def test_model_from_path(tmp_path):
    good = tmp_path / "good.onnx"
    onnx.save(_crnn_io(), good)
    validate_onnx_model(good)
    validate_onnx_model(str(good))
    garbage = tmp_path / "garbage.onnx"
    garbage.write_bytes(b"\xff\x00not a protobuf" * 10)
    with pytest.raises(ContractError, match="garbage.onnx: not a readable ONNX model"):
        validate_onnx_model(garbage)
    with pytest.raises(FileNotFoundError, match="absent.onnx"):
        validate_onnx_model(tmp_path / "absent.onnx")
    with pytest.raises(TypeError, match="path or onnx.ModelProto"):
        validate_onnx_model(42)


def test_code_constants_are_the_contracts(contract):
    """The feature size and the LSTM shape are defined once per package (fractalsync_dsp and
    fractalsync_models cannot import each other); both must be the contract's."""
    from fractalsync_dsp.frontend import DIM, N_BANDS
    from fractalsync_models.crnn_kernel import HIDDEN, N_FEATURES, N_LAYERS

    assert contract["frontend"]["dim"] == DIM == N_FEATURES == 2 * N_BANDS
    inputs = {t["name"]: t["shape"] for t in contract["models"]["beatnet_crnn"]["inputs"]}
    assert inputs["features"][2] == N_FEATURES
    assert inputs["h0"][0] == N_LAYERS and inputs["h0"][2] == HIDDEN
