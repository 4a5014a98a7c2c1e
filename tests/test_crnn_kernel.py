"""The numba CRNN step kernel against the ONNX step graph (onnxruntime) and the numpy reference.

Tolerances. The kernel and onnxruntime are two float32 evaluations of the same network, so
they are compared one step at a time from the same state (the graph carries the state along
the sequence; before each step the kernel is given the graph's state): probabilities and h
within 1e-5 absolute, c within 1e-5 * max(1, |c|) (c is an unbounded accumulator, |c| reaches
~70 on real frames, where float32 spacing alone is 7.6e-6). For inputs beyond the features'
range (0..2.2 on real audio) the tolerances grow with max(1, max|frame|): float32 rounding of
the dot products grows with the size of their terms. Carried freely over 1500 frames, the
rounding differences are amplified by the recurrence (onnxruntime itself ends up to 9e-5 from
the float64 reference on c), so the free-running kernel is held to what the ONNX graph is held
to: BeatNet's torch activations within 1e-4.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from fractalsync_models import BeatNetCRNN
from fractalsync_models.crnn import _open_session
from fractalsync_models.crnn_kernel import (
    _LAYOUT,
    _XH,
    N_WORK,
    StepKernel,
    _dense,
    _front,
    _lstm_layer,
    _sigmoid_neg,
    _step,
    pack_weights,
    read_onnx_weights,
)
from fractalsync_models.crnn_reference import reference_forward
from fractalsync_models.export_beatnet import (
    EXPECTED_SHAPES,
    STEP_STATE_INPUTS,
    build_step_model,
    fetch_wheel,
    read_weights,
)

REF = Path(__file__).parent / "data" / "reference"
CLIPS = ["vibe_ace", "lets_go_fishin"]
TOL = 1e-5


def _features(clip: str) -> np.ndarray:
    return np.load(REF / clip / "features.npy")


class GraphStep:
    """The ONNX step graph under onnxruntime, state passed in and out as (2, 150) arrays."""

    def __init__(self, path):
        self.session = _open_session(path)
        self.outputs = [o.name for o in self.session.get_outputs()]

    def __call__(self, frame, h, c):
        """One frame from state (h, c) -> (probs (3,), h (2, 150), c (2, 150)), float32."""
        feeds = {"features": np.asarray(frame, np.float32).reshape(1, 1, -1)}
        for layer in range(2):
            feeds[STEP_STATE_INPUTS[2 * layer]] = h[layer].reshape(1, 1, -1).astype(np.float32)
            feeds[STEP_STATE_INPUTS[2 * layer + 1]] = c[layer].reshape(1, 1, -1).astype(np.float32)
        got = dict(zip(self.outputs, self.session.run(self.outputs, feeds), strict=True))
        h = np.stack([got["hN_l0"].ravel(), got["hN_l1"].ravel()])
        c = np.stack([got["cN_l0"].ravel(), got["cN_l1"].ravel()])
        return got["probs"].ravel(), h, c


@pytest.fixture(scope="module")
def pairs(beatnet_models_dir):
    """Per variant: (StepKernel, GraphStep) on the same step model file."""
    out = {}
    for v in (1, 2, 3):
        path = beatnet_models_dir / f"beatnet_m{v}_step.onnx"
        out[v] = (StepKernel(path), GraphStep(path))
    return out


@pytest.fixture(scope="module")
def torch_weights(beatnet_models_dir):
    """BeatNet's variant-1 state dict (torch names and gate order), float64."""
    return {k: v.astype(np.float64) for k, v in read_weights(fetch_wheel(), 1).items()}


def _run_synced(kernel, graph, frames, h, c, scale=1.0):
    """Step graph and kernel over ``frames``, the kernel starting each step from the graph's
    state; assert parity on every step; return the number of steps and the graph's max |c|."""
    out = np.empty(3, np.float32)
    tol = TOL * scale
    max_c = 0.0
    for i, frame in enumerate(frames):
        kernel.state = (h, c)
        kernel.step(np.ascontiguousarray(frame, np.float32), out)
        probs, h, c = graph(frame, h, c)
        kh, kc = kernel.state
        assert np.abs(out - probs).max() <= tol, f"probs at step {i}"
        assert np.abs(kh - h).max() <= tol, f"h at step {i}"
        assert (np.abs(kc - c) <= tol * np.maximum(1.0, np.abs(c))).all(), f"c at step {i}"
        max_c = max(max_c, float(np.abs(c).max()))
    return len(frames), max_c


@pytest.mark.parametrize("clip", CLIPS)
@pytest.mark.parametrize("variant", [1, 2, 3])
def test_parity_with_the_step_graph_on_every_real_frame(pairs, variant, clip):
    kernel, graph = pairs[variant]
    z = np.zeros((2, 150), np.float32)
    n, max_c = _run_synced(kernel, graph, _features(clip), z, z)
    assert n == 1500 and max_c > 5.0  # every frame compared, and the state went somewhere


@pytest.mark.parametrize("clip", CLIPS)
@pytest.mark.parametrize("variant", [1, 2, 3])
def test_free_running_kernel_reproduces_torch_activations(pairs, variant, clip):
    kernel = pairs[variant][0]
    kernel.reset()
    x = _features(clip)
    probs = np.stack([kernel.step(f, np.empty(3, np.float32)) for f in x])
    expected = np.load(REF / clip / f"act_m{variant}.npy")
    assert probs.shape == expected.shape == (1500, 3)
    assert np.abs(probs - expected).max() <= 1e-4
    assert probs[:, 0].max() > 0.5  # beats were found: not a flat output


_FRAME = st.one_of(
    st.just(np.zeros(272, np.float32)),  # silence
    st.sampled_from([1e4, -1e4, 2.0, 1e-30]).map(lambda v: np.full(272, v, np.float32)),
    arrays(np.float32, 272, elements=st.floats(0.0, 3.0, width=32)),  # the features' range
    arrays(np.float32, 272, elements=st.floats(-1e4, 1e4, width=32)),  # far beyond it
)
_STATE = st.tuples(
    arrays(np.float32, (2, 150), elements=st.floats(-1.0, 1.0, width=32)),
    arrays(np.float32, (2, 150), elements=st.floats(-50.0, 50.0, width=32)),
)


@settings(deadline=None, max_examples=40)
@given(
    frames=st.lists(_FRAME, min_size=1, max_size=6),
    state=_STATE,
    variant=st.sampled_from([1, 2, 3]),
)
def test_parity_with_the_step_graph_on_generated_frames(pairs, frames, state, variant):
    kernel, graph = pairs[variant]
    scale = max(1.0, max(float(np.abs(f).max()) for f in frames))
    n, _ = _run_synced(kernel, graph, frames, *state, scale=scale)
    assert n == len(frames)


def test_step_trusted_equals_step(beatnet_models_dir):
    crnn = BeatNetCRNN(path=beatnet_models_dir / "beatnet_m2.onnx")
    x = _features("vibe_ace")[:300]
    checked = np.stack([crnn.step(f) for f in x])
    state = crnn.state
    crnn.reset()
    trusted = np.empty((len(x), 3), np.float32)
    for f, out in zip(x, trusted, strict=True):
        crnn._step_trusted(f, out)
    np.testing.assert_array_equal(trusted, checked)
    np.testing.assert_array_equal(crnn.state[0], state[0])
    np.testing.assert_array_equal(crnn.state[1], state[1])
    assert np.abs(state[1]).max() > 1.0


def test_kernel_reset_and_state(pairs):
    kernel, graph = pairs[1]
    x = _features("vibe_ace")
    out = np.empty(3, np.float32)
    kernel.reset()
    first = [kernel.step(f, out).copy() for f in x[:20]]
    saved = kernel.state
    assert saved[0].shape == saved[1].shape == (2, 150) and saved[0].dtype == np.float32
    assert np.abs(saved[1]).max() > 0
    kernel.reset()
    h, c = kernel.state
    assert not h.any() and not c.any()
    np.testing.assert_array_equal(kernel.step(x[0], out), first[0])
    # the state is BeatNetCRNN.state's: (h, c) of (2, 150), (2, 1, 150) and float64 accepted
    kernel.state = (saved[0][:, None, :], saved[1].astype(np.float64))
    np.testing.assert_array_equal(kernel.state[0], saved[0])
    kernel.state[0][...] = 7.0  # the getter hands out copies
    np.testing.assert_array_equal(kernel.state[0], saved[0])


def test_missing_or_misshapen_initializer_is_named(beatnet_models_dir):
    inits = read_onnx_weights(beatnet_models_dir / "beatnet_m1_step.onnx")
    params = pack_weights(inits)
    assert params.ctypes.data % 64 == 0 and params.dtype == np.float32
    with pytest.raises(ValueError, match="'lstm1_r' is missing"):
        pack_weights({k: v for k, v in inits.items() if k != "lstm1_r"})
    with pytest.raises(ValueError, match=r"'fc0_w' has shape \(262, 150\)"):
        pack_weights({**inits, "fc0_w": inits["fc0_w"].T})


# ------------------------------------------------------------- kernels vs plain numpy


def _random_state_dict(seed: int) -> dict[str, np.ndarray]:
    """A BeatNet-shaped torch state dict of random float32 weights (not BeatNet's)."""
    rng = np.random.default_rng(seed)
    return {
        k: (rng.standard_normal(s) * 0.2).astype(np.float32) for k, s in EXPECTED_SHAPES.items()
    }


def _block(params, name):
    offset, shape = _LAYOUT[name]
    return params[offset : offset + int(np.prod(shape))].reshape(shape)


@settings(deadline=None, max_examples=50)
@given(arrays(np.float32, st.integers(1, 700), elements=st.floats(-200.0, 200.0, width=32)))
def test_sigmoid_kernel_matches_numpy(x):
    z = x.copy()
    _sigmoid_neg(z, np.empty_like(z))
    expected = 1.0 / (1.0 + np.exp(x.astype(np.float64)))
    assert np.abs(z - expected).max() <= 1.2e-7
    moderate = np.abs(x) <= 80.0  # a normal float32 result: relative accuracy too
    assert (np.abs(z - expected)[moderate] <= 3e-7 * expected[moderate]).all()


@settings(deadline=None, max_examples=30)
@given(
    w=arrays(np.float32, (7, 33), elements=st.floats(-1e3, 1e3, width=32)),
    b=arrays(np.float32, 7, elements=st.floats(-1e3, 1e3, width=32)),
    x=arrays(np.float32, 33, elements=st.floats(-1e3, 1e3, width=32)),
)
def test_dense_kernel_matches_numpy(w, b, x):
    y = np.empty(7, np.float32)
    _dense(w, b, x, y)
    w64, x64 = w.astype(np.float64), x.astype(np.float64)
    bound = 1e-6 * (np.abs(w64) @ np.abs(x64) + np.abs(b)) + 1e-30
    assert (np.abs(y - (w64 @ x64 + b)) <= bound).all()


@settings(deadline=None, max_examples=30)
@given(seed=st.integers(0, 2**32 - 1), frame=_FRAME)
def test_front_kernel_matches_numpy(seed, frame):
    params = pack_weights(read_onnx_weights(build_step_model(_random_state_dict(seed))))
    conv_w, conv_b = _block(params, "conv_w"), _block(params, "conv_b")
    fc0_w, fc0_b = _block(params, "fc0_w"), _block(params, "fc0_b")
    pooled = np.empty(262, np.float32)
    emb = np.empty(150, np.float32)
    _front(frame, conv_w, conv_b, fc0_w, fc0_b, pooled, emb)
    # plain numpy: conv per channel, ReLU, pairs' max, flattened channel-major, linear
    x = frame.astype(np.float64)
    windows = np.lib.stride_tricks.sliding_window_view(x, 10)  # (263, 10)
    conv = np.maximum(windows @ conv_w.T.astype(np.float64) + conv_b, 0.0)  # (263, 2)
    want_pooled = np.maximum(conv[0:262:2], conv[1:262:2]).T.ravel()  # (262,)
    want_emb = fc0_w.astype(np.float64) @ want_pooled + fc0_b
    scale = max(1.0, float(np.abs(x).max()))
    assert np.abs(pooled - want_pooled).max() <= 1e-6 * scale
    assert np.abs(emb - want_emb).max() <= 1e-5 * scale


@settings(deadline=None, max_examples=30)
@given(
    seed=st.integers(0, 2**32 - 1),
    x=arrays(np.float32, 150, elements=st.floats(-5.0, 5.0, width=32)),
    state=_STATE,
)
def test_lstm_layer_kernel_matches_the_numpy_reference(seed, x, state):
    # the reference's layer 0 sees emb = fc0.bias when the convolution is all zeros
    weights = _random_state_dict(seed)
    weights["conv1.weight"][:] = 0.0
    weights["conv1.bias"][:] = 0.0
    weights["linear0.bias"] = x
    h0, c0 = state
    with np.errstate(over="ignore"):  # the reference's exp overflows for saturated gates
        _, ref_h, ref_c = reference_forward(
            weights, np.zeros((1, 1, 272)), h0[:, None, :].astype(np.float64), c0[:, None, :]
        )
    params = pack_weights(read_onnx_weights(build_step_model(weights)))
    xh = np.zeros(_XH, np.float32)
    xh[:150], xh[150:300] = x, h0[0]
    c, h = c0[0].copy(), np.empty(150, np.float32)
    _lstm_layer(
        _block(params, "lstm0_w"), _block(params, "lstm0_b"), xh, c, h,
        np.empty(600, np.float32), np.empty(600, np.float32),
    )  # fmt: skip
    assert np.abs(h - ref_h[0, 0]).max() <= TOL
    assert (np.abs(c - ref_c[0, 0]) <= TOL * np.maximum(1.0, np.abs(ref_c[0, 0]))).all()


@settings(deadline=None, max_examples=30)
@given(frame=_FRAME, state=_STATE)
def test_step_kernel_matches_the_numpy_reference(pairs, torch_weights, frame, state):
    # BeatNet's variant-1 weights, read from the ONNX step graph, against the float64 spec
    kernel = pairs[1][0]
    h0, c0 = state
    with np.errstate(over="ignore"):  # the reference's exp overflows for saturated gates
        ref, ref_h, ref_c = reference_forward(
            torch_weights, frame[None, None], h0[:, None, :], c0[:, None, :]
        )
    state_buf = np.stack([h0, c0])
    out = np.empty(3, np.float32)
    _step(frame, kernel.params, state_buf, np.zeros(N_WORK, np.float32), out)
    tol = TOL * max(1.0, float(np.abs(frame).max()))
    assert np.abs(out - ref[0, 0]).max() <= tol
    assert np.abs(state_buf[0] - ref_h[:, 0]).max() <= tol
    assert (np.abs(state_buf[1] - ref_c[:, 0]) <= tol * np.maximum(1.0, np.abs(ref_c[:, 0]))).all()


def test_kernel_reads_gates_in_the_graph_order(tmp_path):
    # random (non-BeatNet) weights through the converter: the gate reordering and the weight
    # layout are checked against the reference with weights whose gates all differ
    weights = _random_state_dict(7)
    model = build_step_model(weights)
    onnx.save(model, tmp_path / "m_step.onnx")
    kernel = StepKernel(tmp_path / "m_step.onnx")
    rng = np.random.default_rng(3)
    x = rng.random((40, 272)).astype(np.float32) * 2
    z = np.zeros((2, 1, 150))
    ref, ref_h, ref_c = reference_forward(weights, x[None], z, z)
    got = np.stack([kernel.step(f, np.empty(3, np.float32)) for f in x])
    assert np.abs(got - ref[0]).max() <= 1e-5
    assert np.abs(kernel.state[0] - ref_h[:, 0]).max() <= 1e-5
    assert np.abs(ref_c).max() > 0.5
