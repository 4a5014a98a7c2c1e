"""Small controller ONNX models made with onnx.helper (no torch), for tests of the runtime.

:func:`random_controller` writes a model with the contract's ``controller`` inputs and outputs
(``contracts/v1.json``) and random weights:

    x = concat(micro * micro_scale, beat, section, hazard, state_in)          [B, 89]
    state_out = tanh(x @ W1 + b1)                                    [B, 64]
    control = state_out @ W2 + b2 (+ 0 * sqrt(0.5 - onset) with nan_above_half_onset)

so the state matters (the output depends on every earlier frame) and, with
``nan_above_half_onset``, both outputs are NaN on frames whose onset feature exceeds 0.5
(``sqrt`` of a negative number), finite otherwise.

:func:`controller_like` writes the trained controller's own graph (the shipped
``controller_v1.onnx``, exported from ``ControllerNet``) with every initializer replaced by
random values of its shape and role (weights, normalisation, pulse bumps, filter alphas,
centre, scale, masks, ranges), torch-free: a model of the real architecture whose numbers are
not the shipped ones, so a kernel that copied a constant instead of reading it would differ.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

N_IN = {"micro_features": 7, "beat_features": 5, "section_probs": 8, "hazard_probs": 5,
        "state_in": 64}
N_STATE, N_CONTROL = 64, 8
#: Bias of the control output: the middle of the non-periodic controls' ranges, so that random
#: outputs stay mostly in range (c 0, zoom 1.5, rotation 0, hue 0.5, ...).
CONTROL_BIAS = np.array([0.0, 0.0, 1.5, 0.0, 0.5, 0.5, 1.0, 0.5], np.float32)


def random_controller(path: Path, seed: int = 0, *, nan_above_half_onset: bool = False,
                      batch: str | int = "B", opset: int = 17, ir_version: int = 8) -> Path:
    """Write the random-weight controller model (module docstring) to ``path``; returns it.
    ``batch``: the batch dimension of every tensor (a symbol, or a fixed size)."""
    rng = np.random.default_rng(seed)
    n_x = sum(N_IN.values())
    inits = [
        numpy_helper.from_array(np.array([[1 / 40] * 4 + [1 / 2000, 1 / 2000, 1]], np.float32),
                                "micro_scale"),
        numpy_helper.from_array((rng.standard_normal((n_x, N_STATE)) * 0.5).astype(np.float32),
                                "w1"),
        numpy_helper.from_array((rng.standard_normal(N_STATE) * 0.1).astype(np.float32), "b1"),
        numpy_helper.from_array((rng.standard_normal((N_STATE, N_CONTROL)) * 0.1)
                                .astype(np.float32), "w2"),
        numpy_helper.from_array(CONTROL_BIAS, "b2"),
    ]
    nodes = [
        helper.make_node("Mul", ["micro_features", "micro_scale"], ["micro_scaled"]),
        helper.make_node("Concat", ["micro_scaled", "beat_features", "section_probs",
                                    "hazard_probs", "state_in"], ["x"], axis=1),
        helper.make_node("MatMul", ["x", "w1"], ["h_lin"]),
        helper.make_node("Add", ["h_lin", "b1"], ["h_pre"]),
        helper.make_node("Tanh", ["h_pre"], ["h"]),
        helper.make_node("MatMul", ["h", "w2"], ["c_lin"]),
        helper.make_node("Add", ["c_lin", "b2"], ["c_out"]),
    ]
    if nan_above_half_onset:
        select = np.zeros((7, 1), np.float32)
        select[6, 0] = 1.0
        inits += [numpy_helper.from_array(select, "onset_select"),
                  numpy_helper.from_array(np.array(0.5, np.float32), "half"),
                  numpy_helper.from_array(np.array(0.0, np.float32), "zero")]
        nodes += [
            helper.make_node("MatMul", ["micro_features", "onset_select"], ["onset"]),
            helper.make_node("Sub", ["half", "onset"], ["margin"]),
            helper.make_node("Sqrt", ["margin"], ["root"]),
            helper.make_node("Mul", ["root", "zero"], ["poison"]),
            helper.make_node("Add", ["c_out", "poison"], ["control"]),
            helper.make_node("Add", ["h", "poison"], ["state_out"]),
        ]
    else:
        nodes += [helper.make_node("Identity", ["c_out"], ["control"]),
                  helper.make_node("Identity", ["h"], ["state_out"])]
    inputs = [helper.make_tensor_value_info(name, TensorProto.FLOAT, [batch, n])
              for name, n in N_IN.items()]
    outputs = [helper.make_tensor_value_info("control", TensorProto.FLOAT, [batch, N_CONTROL]),
               helper.make_tensor_value_info("state_out", TensorProto.FLOAT, [batch, N_STATE])]
    graph = helper.make_graph(nodes, "random_controller", inputs, outputs, inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = ir_version
    onnx.checker.check_model(model)
    path = Path(path)
    onnx.save(model, str(path))
    return path


def _random_initializer(name: str, shape: tuple, rng, gru: dict) -> np.ndarray:
    """Random values for the initializer ``name`` of the controller graph, by its role."""
    if name in gru:
        return rng.standard_normal(shape) * (0.6 if gru[name] == "B" else 0.35)
    u = rng.uniform
    table = {
        # corpus-like statistics (dB levels, flux, centroid Hz, onset): features of order 1,
        # as the training's normalisation makes them
        "micro_mean": lambda: np.array([-30, -30, -30, -45, 0.05, 2000, 0.4]) * u(0.5, 1.5, 7),
        "micro_inv_std": lambda: 1 / (np.array([8, 10, 8, 12, 0.05, 1200, 0.2])
                                      * u(0.5, 2.0, 7)),
        "beat_offset": lambda: rng.standard_normal(shape),
        "conf_pick": lambda: u(0.0, 1.5, shape),
        "bump_u": lambda: np.stack([np.sin(a := u(-math.pi, math.pi, shape[1])), np.cos(a)]),
        "bump_k": lambda: -u(5.0, 400.0, shape),
        "pulse_map": lambda: rng.standard_normal(shape) * 0.5,
        "scale": lambda: u(0.1, 3.0, shape),
        "centre": lambda: rng.standard_normal(shape) * 0.5,
        "alpha1": lambda: u(0.01, 1.0, shape),
        "alpha2": lambda: u(0.01, 1.0, shape),
        # one control lane read as a rotation speed (the angle integrates it: a pure
        # integrator, so a dense random read-out would add up float32 rounding over minutes)
        "speed_pick": lambda: np.eye(shape[0])[:, [rng.integers(shape[0])]] * u(-0.05, 0.05),
        "lo": lambda: -u(0.5, 3.0, shape),
        "hi": lambda: u(0.5, 3.0, shape),
        "head.weight": lambda: rng.standard_normal(shape) * 0.3,
        "head.bias": lambda: rng.standard_normal(shape) * 0.5,
    }
    if name in table:
        return table[name]()
    return rng.choice([0.0, 0.5, 1.0, 2.0], shape)  # the folded output masks (v, angle)


def controller_like(path: Path, source: Path, seed: int = 0, *,
                    overrides: dict | None = None) -> Path:
    """Write ``source``'s graph (the trained controller's ONNX file) with random initializers
    (module docstring) to ``path``; returns it. ``overrides``: initializer name -> function of
    the random array giving the array to store (e.g. a NaN or a huge bump)."""
    rng = np.random.default_rng(seed)
    model = onnx.load(str(source))
    gru = {}
    for node in model.graph.node:
        if node.op_type == "GRU":
            gru.update(zip(node.input[1:4], ("W", "R", "B"), strict=True))
    for tensor in model.graph.initializer:
        old = numpy_helper.to_array(tensor)
        new = _random_initializer(tensor.name, old.shape, rng, gru)
        if overrides and tensor.name in overrides:
            new = overrides[tensor.name](new)
        tensor.CopyFrom(numpy_helper.from_array(np.asarray(new, np.float32), tensor.name))
    onnx.checker.check_model(model)
    path = Path(path)
    onnx.save(model, str(path))
    return path
