"""One BeatNet CRNN frame as a numba kernel, weights read from the ONNX step (or sequence) file.

The ONNX graph stays the contract and the reference: :class:`StepKernel` reads its weights
from the file's initializers (``conv_w``, ``conv_b``, ``fc0_w``, ``fc0_b``, ``lstm{l}_w``,
``lstm{l}_r``, ``lstm{l}_b``, ``out_w_t``, ``out_b``, see :mod:`.export_beatnet`) and computes
what the step graph computes, per 20 ms frame:

features (272) -> Conv1d(1->2, k=10) -> ReLU -> MaxPool(2) -> flatten channel-major (262)
-> Linear(262->150) -> LSTM layer 0 -> LSTM layer 1 (hidden 150) -> Linear(150->3) -> softmax,
probabilities ordered [beat, downbeat, no-beat].

Weight layout (all float32, one contiguous buffer in the order a step reads it, each block
starting on a 64-byte boundary): conv taps and biases; ``fc0`` rows (150 x 262) and bias; per
LSTM layer one fused matrix of 600 rows x 304 columns, row ``4 u + g`` holding gate ``g`` of
unit ``u`` (gates in the order i, f, g, o) as ``[W_ih row (150) | W_hh row (150) | 4 zeros]``
and multiplied by the concatenated ``[x; h; 0]`` (304), so one pass over the weights computes
the four gate pre-activations of a unit, plus the summed bias ``b_ih + b_hh`` (600, same row
order); the output layer (3 x 150) and bias. The g rows and biases are stored doubled (exact
in float32) so that every gate is a sigmoid: ``tanh(a) = 2 sigmoid(2 a) - 1``. Rows are
padded to 304 floats so each starts on a cache line; the padding multiplies zeros by zeros
and adds exactly nothing.

The kernels accumulate in float32. The dot products let the compiler reassociate the sum
(``fastmath={"reassoc", "contract"}``: SIMD partial sums and FMA); no other fast-math flag is
set. The sigmoids (all gates, then tanh of the cell state) run as one vectorisable loop each
over an exp of our own (:func:`_sigmoid_neg`, relative error below 3e-7), instead of five libm
calls per unit; the 3-way softmax uses ``np.exp``.
"""

from __future__ import annotations

import math
import os

import numpy as np
from numba import njit

N_FEATURES = 272  # the contract's features.dim (tests/test_contract.py ties the two)
HIDDEN = 150
N_LAYERS = 2
N_OUT = 3
_TAPS = 10
_POOLED = 2 * ((N_FEATURES - _TAPS + 1) // 2)  # 262: MaxPool(2) keeps 131 of 263 per channel
_GATES = 4 * HIDDEN  # 600
_XH = 304  # [x (150); h (150); 4 zeros]: a fused LSTM row, a whole number of cache lines
_ALIGN = 16  # floats per 64-byte cache line


def _layout() -> dict[str, tuple[int, tuple[int, ...]]]:
    """Offset (floats) and shape of each block of the flat weight buffer, in reading order."""
    blocks = [
        ("conv_w", (2, _TAPS)),
        ("conv_b", (2,)),
        ("fc0_w", (HIDDEN, _POOLED)),
        ("fc0_b", (HIDDEN,)),
    ]
    for layer in range(N_LAYERS):
        blocks += [(f"lstm{layer}_w", (_GATES, _XH)), (f"lstm{layer}_b", (_GATES,))]
    blocks += [("out_w", (N_OUT, HIDDEN)), ("out_b", (N_OUT,))]
    layout, offset = {}, 0
    for name, shape in blocks:
        layout[name] = (offset, shape)
        size = int(np.prod(shape))
        offset += -(-size // _ALIGN) * _ALIGN
    layout["_total"] = (offset, ())
    return layout


_LAYOUT = _layout()
_CONV_W = _LAYOUT["conv_w"][0]
_CONV_B = _LAYOUT["conv_b"][0]
_FC0_W = _LAYOUT["fc0_w"][0]
_FC0_B = _LAYOUT["fc0_b"][0]
_L0_W = _LAYOUT["lstm0_w"][0]
_L0_B = _LAYOUT["lstm0_b"][0]
_L1_W = _LAYOUT["lstm1_w"][0]
_L1_B = _LAYOUT["lstm1_b"][0]
_OUT_W = _LAYOUT["out_w"][0]
_OUT_B = _LAYOUT["out_b"][0]
N_PARAMS = _LAYOUT["_total"][0]

# scratch buffer (floats): pooled features, [x; h; 0] of layer 0 and of layer 1, the gates
# and the scratch of _sigmoid_neg
_WORK_POOLED = 0
_WORK_XH0 = -(-_POOLED // _ALIGN) * _ALIGN  # 272: the pooled features, cache-line aligned
_WORK_XH1 = _WORK_XH0 + _XH
_WORK_GATES = _WORK_XH1 + _XH
_WORK_SCRATCH = _WORK_GATES + _GATES
N_WORK = _WORK_SCRATCH + _GATES

_FAST = {"reassoc", "contract"}
_LOG2E = np.float32(1.0 / math.log(2.0))
_LN2_HI = np.float32(round(math.log(2.0) * 2**11) / 2**11)  # 11 bits: n * _LN2_HI is exact
_LN2_LO = np.float32(math.log(2.0) - float(_LN2_HI))
_EXP_MIN = np.float32(-87.0)  # exp(-87) = 1.6e-38: still a normal float32
_EXP_MAX = np.float32(88.0)  # exp(88) = 1.7e38 < FLT_MAX


@njit(cache=True, fastmath=_FAST)
def _sigmoid_neg(z, scratch):
    """In place ``z <- 1 / (1 + exp(z))``, i.e. sigmoid(-z), elementwise in float32.

    z (n,) float32 finite; scratch (n,) float32 (overwritten). Vectorisable (no libm call):
    ``exp(x) = 2**n exp(r)`` with ``n = round(x / ln 2)``, ``r = x - n ln 2`` (|r| <= ln(2)/2,
    ln 2 split in two for an exact product) and ``exp(r)`` its Taylor series to degree 7
    (truncation below 1.2e-8 relative); ``2**n`` is built in the exponent bits of ``scratch``.
    x is clamped to [-87, 88], where the sigmoid is 1 and 0 to float32 precision (relative
    error of the result within a few 1e-7).
    """
    one = np.float32(1.0)
    bits = scratch.view(np.int32)
    for j in range(z.shape[0]):
        x = min(max(z[j], _EXP_MIN), _EXP_MAX)
        n = np.floor(x * _LOG2E + np.float32(0.5))
        r = (x - n * _LN2_HI) - n * _LN2_LO
        p = np.float32(1.0 / 5040.0)
        p = p * r + np.float32(1.0 / 720.0)
        p = p * r + np.float32(1.0 / 120.0)
        p = p * r + np.float32(1.0 / 24.0)
        p = p * r + np.float32(1.0 / 6.0)
        p = p * r + np.float32(0.5)
        p = p * r + one
        z[j] = p * r + one
        bits[j] = (np.int32(n) + np.int32(127)) << np.int32(23)
    for j in range(z.shape[0]):
        z[j] = one / (one + z[j] * scratch[j])


@njit(cache=True, fastmath=_FAST)
def _dense(w, b, x, y):
    """``y = w @ x + b`` in float32: w (m, n), b (m,), x (n,) -> y (m,)."""
    for r in range(w.shape[0]):
        acc = np.float32(0.0)
        for k in range(w.shape[1]):
            acc += w[r, k] * x[k]
        y[r] = acc + b[r]


@njit(cache=True)
def _front(frame, conv_w, conv_b, fc0_w, fc0_b, pooled, emb):
    """Conv1d(1->2, k=10) -> ReLU -> MaxPool(2) -> flatten -> Linear(262->150), float32.

    frame (272,) features; conv_w (2, 10), conv_b (2,); fc0_w (150, 262), fc0_b (150,);
    pooled (262,) scratch, filled channel-major (``pooled[131 ch + p]``); writes emb (150,).
    """
    n_pool = pooled.shape[0] // 2
    for ch in range(2):
        bias = conv_b[ch]
        for p in range(n_pool):
            best = np.float32(0.0)  # ReLU, then the larger of the two
            for q in range(2):
                start = 2 * p + q
                acc = bias
                for k in range(_TAPS):
                    acc += conv_w[ch, k] * frame[start + k]
                best = max(best, acc)
            pooled[ch * n_pool + p] = best
    _dense(fc0_w, fc0_b, pooled, emb)


@njit(cache=True, fastmath=_FAST)
def _lstm_layer(w, b, xh, c, h, gates, scratch):
    """One LSTM layer for one frame, in place on its state.

    w (600, 304) fused rows (row ``4 u + g``: gate g in i, f, g, o order of unit u, as
    ``[W_ih | W_hh | 0]``, the g rows times 2); b (600,) summed biases, same rows and scale;
    xh (304,) ``[x; h_prev; 0]``; c (150,) cell state, updated in place; h (150,) receives
    the new hidden state (it may alias h_prev in the caller's state: xh holds a copy);
    gates (600,) and scratch (600,) float32 work space.

    The g rows are stored doubled (exact in float32) so that all four gates are sigmoids:
    ``tanh(a) = 2 sigmoid(2 a) - 1``.
    """
    n = c.shape[0]
    for u in range(n):
        r = 4 * u
        a_i = np.float32(0.0)
        a_f = np.float32(0.0)
        a_g = np.float32(0.0)
        a_o = np.float32(0.0)
        for k in range(xh.shape[0]):
            v = xh[k]
            a_i += w[r, k] * v
            a_f += w[r + 1, k] * v
            a_g += w[r + 2, k] * v
            a_o += w[r + 3, k] * v
        # negated pre-activations, gate-major, for _sigmoid_neg
        gates[u] = -(a_i + b[r])
        gates[n + u] = -(a_f + b[r + 1])
        gates[2 * n + u] = -(a_g + b[r + 2])
        gates[3 * n + u] = -(a_o + b[r + 3])
    _sigmoid_neg(gates, scratch)
    one = np.float32(1.0)
    two = np.float32(2.0)
    cell = gates[:n]  # gate i is consumed here: reuse its memory for -2 c
    for u in range(n):
        c_new = gates[n + u] * c[u] + gates[u] * (two * gates[2 * n + u] - one)
        c[u] = c_new
        cell[u] = -two * c_new
    _sigmoid_neg(cell, scratch[:n])
    for u in range(n):
        h[u] = gates[3 * n + u] * (two * cell[u] - one)


@njit(cache=True)
def _step(frame, params, state, work, out):
    """One frame of the CRNN, carrying the LSTM state; allocates nothing.

    frame (272,) float32 finite features; params (N_PARAMS,) float32 flat weights (see the
    module docstring); state (2, 2, 150) float32 ``[h or c, layer, unit]``, updated in place;
    work (N_WORK,) float32 scratch whose LSTM padding (``xh[300:304]``) is zero; out (3,)
    float32 receives the probabilities [beat, downbeat, no-beat].
    """
    conv_w = params[_CONV_W : _CONV_W + 2 * _TAPS].reshape((2, _TAPS))
    conv_b = params[_CONV_B : _CONV_B + 2]
    fc0_w = params[_FC0_W : _FC0_W + HIDDEN * _POOLED].reshape((HIDDEN, _POOLED))
    fc0_b = params[_FC0_B : _FC0_B + HIDDEN]
    w0 = params[_L0_W : _L0_W + _GATES * _XH].reshape((_GATES, _XH))
    b0 = params[_L0_B : _L0_B + _GATES]
    w1 = params[_L1_W : _L1_W + _GATES * _XH].reshape((_GATES, _XH))
    b1 = params[_L1_B : _L1_B + _GATES]
    out_w = params[_OUT_W : _OUT_W + N_OUT * HIDDEN].reshape((N_OUT, HIDDEN))
    out_b = params[_OUT_B : _OUT_B + N_OUT]
    pooled = work[_WORK_POOLED : _WORK_POOLED + _POOLED]
    xh0 = work[_WORK_XH0 : _WORK_XH0 + _XH]
    xh1 = work[_WORK_XH1 : _WORK_XH1 + _XH]
    gates = work[_WORK_GATES : _WORK_GATES + _GATES]
    scratch = work[_WORK_SCRATCH : _WORK_SCRATCH + _GATES]
    h = state[0]
    c = state[1]

    _front(frame, conv_w, conv_b, fc0_w, fc0_b, pooled, xh0[:HIDDEN])
    xh0[HIDDEN : 2 * HIDDEN] = h[0]
    _lstm_layer(w0, b0, xh0, c[0], h[0], gates, scratch)
    xh1[:HIDDEN] = h[0]
    xh1[HIDDEN : 2 * HIDDEN] = h[1]
    _lstm_layer(w1, b1, xh1, c[1], h[1], gates, scratch)
    _dense(out_w, out_b, h[1], out)
    top = max(out[0], max(out[1], out[2]))
    total = np.float32(0.0)
    for j in range(N_OUT):
        e = np.exp(out[j] - top)
        out[j] = e
        total += e
    for j in range(N_OUT):
        out[j] /= total


def _onnx_to_ifgo(a: np.ndarray) -> np.ndarray:
    """Reorder 4 stacked gate blocks (axis 0) from ONNX's (i, o, f, c) to (i, f, g, o)."""
    i, o, f, g = np.split(a, 4, axis=0)
    return np.concatenate([i, f, g, o], axis=0)


def pack_weights(inits: dict[str, np.ndarray]) -> np.ndarray:
    """The flat float32 weight buffer (N_PARAMS,) from the ONNX initializers of a BeatNet graph.

    ``inits`` maps initializer names to arrays: ``conv_w`` (2,1,10), ``conv_b`` (2,),
    ``fc0_w`` (150,262), ``fc0_b`` (150,), ``lstm{l}_w`` and ``lstm{l}_r`` (1,600,150) and
    ``lstm{l}_b`` (1,1200) with ONNX's gate order (i, o, f, c), ``out_w_t`` (150,3), ``out_b``
    (3,). The buffer starts on a 64-byte boundary. Raises ValueError for a missing name or
    a wrong shape.
    """
    expected = {
        "conv_w": (2, 1, _TAPS),
        "conv_b": (2,),
        "fc0_w": (HIDDEN, _POOLED),
        "fc0_b": (HIDDEN,),
        "out_w_t": (HIDDEN, N_OUT),
        "out_b": (N_OUT,),
        **{
            f"lstm{layer}_{kind}": shape
            for layer in range(N_LAYERS)
            for kind, shape in (("w", (1, _GATES, HIDDEN)), ("r", (1, _GATES, HIDDEN)),
                                ("b", (1, 2 * _GATES)))
        },
    }  # fmt: skip
    for name, shape in expected.items():
        if name not in inits:
            raise ValueError(f"BeatNet weights: initializer {name!r} is missing")
        if np.shape(inits[name]) != shape:
            raise ValueError(
                f"BeatNet weights: initializer {name!r} has shape {np.shape(inits[name])}, "
                f"expected {shape}"
            )
    blocks = {
        "conv_w": inits["conv_w"][:, 0, :],
        "conv_b": inits["conv_b"],
        "fc0_w": inits["fc0_w"],
        "fc0_b": inits["fc0_b"],
        "out_w": np.asarray(inits["out_w_t"]).T,
        "out_b": inits["out_b"],
    }
    for layer in range(N_LAYERS):
        w_ih = _onnx_to_ifgo(np.asarray(inits[f"lstm{layer}_w"][0], np.float32))
        w_hh = _onnx_to_ifgo(np.asarray(inits[f"lstm{layer}_r"][0], np.float32))
        bias = np.asarray(inits[f"lstm{layer}_b"][0], np.float32)
        fused = np.zeros((4, HIDDEN, _XH), np.float32)  # [gate, unit, column]
        fused[:, :, :HIDDEN] = w_ih.reshape(4, HIDDEN, HIDDEN)
        fused[:, :, HIDDEN : 2 * HIDDEN] = w_hh.reshape(4, HIDDEN, HIDDEN)
        b = (_onnx_to_ifgo(bias[:_GATES]) + _onnx_to_ifgo(bias[_GATES:])).reshape(4, HIDDEN)
        fused[2] *= 2.0  # gate g doubled (exact): tanh(a) = 2 sigmoid(2 a) - 1
        b[2] *= 2.0
        # rows 4 u + g: the four gates of a unit next to each other
        blocks[f"lstm{layer}_w"] = fused.transpose(1, 0, 2).reshape(_GATES, _XH)
        blocks[f"lstm{layer}_b"] = b.T.reshape(_GATES)
    raw = np.zeros(N_PARAMS + _ALIGN, np.float32)
    skip = (-raw.ctypes.data % 64) // 4
    params = raw[skip : skip + N_PARAMS]
    for name, value in blocks.items():
        offset, shape = _LAYOUT[name]
        params[offset : offset + int(np.prod(shape))] = np.asarray(value, np.float32).ravel()
    return params


def read_onnx_weights(model) -> dict[str, np.ndarray]:
    """The float initializers of an ONNX model (a path or an ``onnx.ModelProto``) by name."""
    import onnx
    from onnx import numpy_helper

    if isinstance(model, (str, os.PathLike)):
        model = onnx.load(os.fspath(model))
    return {
        t.name: numpy_helper.to_array(t)
        for t in model.graph.initializer
        if t.data_type == onnx.TensorProto.FLOAT
    }


class StepKernel:
    """The BeatNet CRNN step as a numba kernel: weights and LSTM state, one frame at a time.

    Parameters
    ----------
    model : path of a BeatNet ONNX file made by ``fractalsync-export-beatnet`` (the step or the
        sequence graph: both carry the same initializers), or an ``onnx.ModelProto``.

    Not thread-safe: one instance per stream and thread.
    """

    def __init__(self, model):
        self.params = pack_weights(read_onnx_weights(model))
        self._state = np.zeros((2, N_LAYERS, HIDDEN), np.float32)  # [h or c, layer, unit]
        self._work = np.zeros(N_WORK, np.float32)

    def reset(self) -> None:
        """Return the LSTM state to zeros (a fresh stream)."""
        self._state.fill(0.0)

    @property
    def state(self) -> tuple[np.ndarray, np.ndarray]:
        """Copy of the LSTM state ``(h, c)``, each float32 (2, 150) (layer, unit)."""
        return self._state[0].copy(), self._state[1].copy()

    @state.setter
    def state(self, value) -> None:
        """Set ``(h, c)``, each 300 float values ((2, 150) or (2, 1, 150)); cast to float32."""
        h, c = value
        self._state[0] = np.reshape(h, (N_LAYERS, HIDDEN))
        self._state[1] = np.reshape(c, (N_LAYERS, HIDDEN))

    def step(self, frame: np.ndarray, out: np.ndarray) -> np.ndarray:
        """Process one frame, carrying the state; unchecked, allocates nothing.

        frame: C-contiguous float32 (272,) finite features; out: float32 (3,), receives
        [beat, downbeat, no-beat] and is returned.
        """
        _step(frame, self.params, self._state, self._work, out)
        return out
