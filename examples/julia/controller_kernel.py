"""The trained controller's one-frame graph as a numba kernel, weights read from the ONNX file.

The ONNX graph exported from ``controller_training/model.py`` (``ControllerNet.forward``) stays
the contract and the reference; :func:`load_controller_kernel` reads every number the graph
uses from the file (the weights and every fixed constant: normalisation, pulse bumps, filter
alphas, centre, scale, output masks, the rotation wrap, the ranges) and :class:`ControllerKernel`
computes the same function, per 60 Hz render frame, with no allocation:

1. ``x`` (25) = ``[(micro - micro_mean) * micro_inv_std, beat - beat_offset, section, hazard]``;
   ``bank[j] = conf * exp(bump_k[j] ((sin - bump_u[0, j])^2 + (cos - bump_u[1, j])^2))`` with
   ``conf = beat . conf_pick``;
2. one ONNX GRU step (gates z, r, n; ``linear_before_reset = 1``) from the state's ``h``;
3. ``out = head.weight [h, x] + head.bias``; targets ``scale * tanh(out[:8])``, gains
   ``out[8:]``;
4. ``s1 += alpha1 (target - s1)``, ``s2 += alpha2 (s1 - s2)``, angle ``a + s2 . speed_pick``
   wrapped as the graph does: ``a - w2 floor((a + w0) w1)``;
5. ``v = s2 + centre + (gains * [bank, bank]) @ pulse_map``, ``control = v m_lin +
   exp(v m_exp) m_exp + sigmoid(v) m_sig + angle m_angle``, clipped to ``[lo, hi]``;
   ``state_out = [h, s1, s2, angle]``.

Where the file names them, initializers are read by name (``micro_mean``, ..., ``head.weight``);
the GRU's weights by their role in the GRU node (its W, R, B inputs); the four output masks
and the three wrap constants, which the exporter folds into unnamed initializers and Constant
nodes, by their place in the graph (the masks: the Mul operands beside the Sigmoid and the Exp
on ``v`` and beside the wrapped angle; the wrap: the operands around the Floor). A file whose
graph does not have these parts is a ``ContractError`` naming the missing part. The kernel
accumulates in float64 (the file's float32 values, widened) and stores float32 wherever the
graph hands a float32 on (h, s1, s2, the state); the rotation angle, a pure integrator, is
summed and wrapped in float32 operations as the graph does. Against onnxruntime running the
same file the shipped model agrees to ~2e-6 over 5000 frames (tests/test_controller_kernel.py).
Cost: ~5-7 us per frame (benchmarks/bench_controller.py).
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np
import onnx
from numba import njit
from onnx import numpy_helper

from fractalsync_models.contract import ContractError

__all__ = ["N_INPUTS", "N_CONTROL", "ControllerKernel", "load_controller_kernel"]

#: The contract's controller input sizes, in the order of the kernel's input vector.
INPUT_SIZES = {"micro_features": 7, "beat_features": 5, "section_probs": 8, "hazard_probs": 5}
N_INPUTS = sum(INPUT_SIZES.values())  # 25: the GRU features are these, normalised
N_CONTROL = 8
_MICRO, _BEAT = 7, 5

#: Blocks of the flat parameter vector (float64 copies of the file's float32 values), in
#: order; shapes (:func:`_shapes`) use H (GRU width) and NB (pulse bumps).
_BLOCKS = ("micro_mean", "micro_inv_std", "beat_offset", "conf_pick", "bump_u", "bump_k",
           "gru_w", "gru_r", "gru_b", "head_w", "head_b", "scale", "centre", "alpha1",
           "alpha2", "speed_pick", "pulse_map", "masks", "wrap", "lo", "hi")


def _shapes(h: int, nb: int) -> dict[str, tuple[int, ...]]:
    return {"micro_mean": (_MICRO,), "micro_inv_std": (_MICRO,), "beat_offset": (_BEAT,),
            "conf_pick": (_BEAT,), "bump_u": (2, nb), "bump_k": (nb,),
            "gru_w": (1, 3 * h, N_INPUTS), "gru_r": (1, 3 * h, h), "gru_b": (1, 6 * h),
            "head_w": (N_CONTROL + 2 * nb, h + N_INPUTS), "head_b": (N_CONTROL + 2 * nb,),
            "scale": (N_CONTROL,), "centre": (N_CONTROL,), "alpha1": (N_CONTROL,),
            "alpha2": (N_CONTROL,), "speed_pick": (N_CONTROL, 1),
            "pulse_map": (2 * nb, N_CONTROL), "masks": (4, N_CONTROL), "wrap": (3,),
            "lo": (N_CONTROL,), "hi": (N_CONTROL,)}


# Index of each block's offset in the layout vector (after H and NB).
(_O_MEAN, _O_INV, _O_BOFF, _O_CONF, _O_BU, _O_BK, _O_GW, _O_GR, _O_GB, _O_HW, _O_HB, _O_SCALE,
 _O_CENTRE, _O_A1, _O_A2, _O_SPEED, _O_PMAP, _O_MASK, _O_WRAP, _O_LO, _O_HI) = \
    range(2, 2 + len(_BLOCKS))


#: Dot products may be reassociated (SIMD partial sums) and fused (FMA); no other fast-math flag
#: (NaN and infinity keep their IEEE meaning).
_DOT = {"reassoc", "contract"}


@njit(cache=True, nogil=True)
def _sigmoid(v):
    return 1.0 / (1.0 + math.exp(-v))


@njit(cache=True, nogil=True, fastmath=_DOT)
def _dot(params, at, scratch, start, n):
    """``params[at:at + n] . scratch[start:start + n]`` (flat offsets: contiguous loads)."""
    w = params[at:at + n]  # views with indices from range(n): no wraparound checks, SIMD
    v = scratch[start:start + n]
    acc = 0.0
    for i in range(n):
        acc += w[i] * v[i]
    return acc


@njit(cache=True, nogil=True)
def _rotation_angle(angle, s2, params, speed_at, wrap_at):
    """The new wrapped angle in float32 operations, as the graph's float32 ops (an integrator
    keeps every rounding difference): ``a = angle + s2 . speed_pick``, ``a - w2 floor((a + w0)
    w1)``. No fast-math: each product and sum rounds as onnxruntime's do."""
    speed = np.float32(0.0)
    for c in range(s2.shape[0]):
        speed += s2[c] * np.float32(params[speed_at + c])
    a = angle + speed
    w0, w1, w2 = (np.float32(params[wrap_at]), np.float32(params[wrap_at + 1]),
                  np.float32(params[wrap_at + 2]))
    return a - w2 * np.floor((a + w0) * w1)


@njit(cache=True, nogil=True, fastmath=_DOT)
def _controller_step(inputs, state_in, control, state_out, params, layout, scratch):
    """One frame (module docstring). ``inputs`` (25,) float32 ``[micro 7, beat 5, section 8,
    hazard 5]``; ``state_in`` (64,), ``state_out`` (64,), ``control`` (8,) float32 (written);
    ``params`` float64 (the file's float32 values), ``layout`` int64 ``[H, NB, offsets...]``;
    ``scratch`` float64 (25 + 2 H + 8 + 3 NB,) working space. ``state_out`` must not alias
    ``state_in``."""
    hid, nb = layout[0], layout[1]
    nx = inputs.shape[0]
    nc = control.shape[0]
    # scratch: x (nx) | h in (hid) | h out, float32-rounded (hid) | head out | bank
    h0, h1, out, bank = nx, nx + hid, nx + 2 * hid, nx + 2 * hid + nc + 2 * nb
    # 1. features and pulse bank
    for i in range(_MICRO):
        scratch[i] = ((np.float64(inputs[i]) - params[layout[_O_MEAN] + i])
                      * params[layout[_O_INV] + i])
    conf = 0.0
    for i in range(_BEAT):
        b = np.float64(inputs[_MICRO + i])
        scratch[_MICRO + i] = b - params[layout[_O_BOFF] + i]
        conf += b * params[layout[_O_CONF] + i]
    for i in range(_MICRO + _BEAT, nx):
        scratch[i] = inputs[i]
    for k in range(hid):
        scratch[h0 + k] = state_in[k]
    for j in range(nb):
        d0 = np.float64(inputs[_MICRO]) - params[layout[_O_BU] + j]
        d1 = np.float64(inputs[_MICRO + 1]) - params[layout[_O_BU] + nb + j]
        scratch[bank + j] = math.exp((d0 * d0 + d1 * d1) * params[layout[_O_BK] + j]) * conf
    # 2. GRU step (ONNX gate order z, r, h; linear_before_reset = 1; B = [Wb | Rb])
    gw, gr, gb = layout[_O_GW], layout[_O_GR], layout[_O_GB]
    for u in range(hid):
        z = _sigmoid(params[gb + u] + params[gb + 3 * hid + u]
                     + _dot(params, gw + u * nx, scratch, 0, nx)
                     + _dot(params, gr + u * hid, scratch, h0, hid))
        ru = hid + u
        r = _sigmoid(params[gb + ru] + params[gb + 3 * hid + ru]
                     + _dot(params, gw + ru * nx, scratch, 0, nx)
                     + _dot(params, gr + ru * hid, scratch, h0, hid))
        nu = 2 * hid + u
        n = math.tanh(params[gb + nu] + _dot(params, gw + nu * nx, scratch, 0, nx)
                      + r * (params[gb + 3 * hid + nu]
                             + _dot(params, gr + nu * hid, scratch, h0, hid)))
        hn = np.float32((1.0 - z) * n + z * scratch[h0 + u])
        state_out[u] = hn
        scratch[h1 + u] = hn
    # 3. head on [h, x]
    hw, hb = layout[_O_HW], layout[_O_HB]
    for r in range(nc + 2 * nb):
        base = hw + r * (hid + nx)
        scratch[out + r] = (params[hb + r] + _dot(params, base, scratch, h1, hid)
                            + _dot(params, base + hid, scratch, 0, nx))
    # 4. filters and rotation angle
    s1i, s2i, ai = hid, hid + nc, hid + 2 * nc
    for c in range(nc):
        tgt = params[layout[_O_SCALE] + c] * math.tanh(scratch[out + c])
        s1 = np.float64(state_in[s1i + c])
        s1 = s1 + params[layout[_O_A1] + c] * (tgt - s1)
        s2 = np.float64(state_in[s2i + c])
        s2 = s2 + params[layout[_O_A2] + c] * (np.float64(np.float32(s1)) - s2)
        state_out[s1i + c] = s1
        state_out[s2i + c] = s2
    angle = _rotation_angle(state_in[ai], state_out[s2i:s2i + nc], params, layout[_O_SPEED],
                            layout[_O_WRAP])
    state_out[ai] = angle
    # 5. outputs
    pm, mk = layout[_O_PMAP], layout[_O_MASK]
    angle = np.float64(state_out[ai])
    for c in range(nc):
        v = np.float64(state_out[s2i + c]) + params[layout[_O_CENTRE] + c]
        for j in range(2 * nb):
            v += scratch[out + nc + j] * scratch[bank + j % nb] * params[pm + j * nc + c]
        m_lin, m_exp = params[mk + c], params[mk + nc + c]
        m_sig, m_ang = params[mk + 2 * nc + c], params[mk + 3 * nc + c]
        y = v * m_lin + math.exp(v * m_exp) * m_exp + _sigmoid(v) * m_sig + angle * m_ang
        lo, hi = params[layout[_O_LO] + c], params[layout[_O_HI] + c]
        if y == y:  # NaN stays NaN (the caller's non-finite fallback sees it)
            y = min(max(y, lo), hi)
        control[c] = y


class _Graph:
    """Name -> value, producer and consumer lookups over one ONNX graph."""

    def __init__(self, graph, where: str) -> None:
        self.where = where
        self.values = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
        self.initializers = set(self.values)
        for node in graph.node:
            if node.op_type == "Constant":
                for attr in node.attribute:
                    if attr.name == "value":
                        self.values[node.output[0]] = numpy_helper.to_array(attr.t)
        self.producer = {out: node for node in graph.node for out in node.output}
        self.consumers: dict[str, list] = {}
        for node in graph.node:
            for name in node.input:
                self.consumers.setdefault(name, []).append(node)
        self.nodes = list(graph.node)

    def fail(self, what: str) -> ContractError:
        return ContractError(f"{self.where}: not the trained controller's graph (the numba "
                             f"kernel reads {what})")

    def only(self, op: str):
        found = [n for n in self.nodes if n.op_type == op]
        if len(found) != 1:
            raise self.fail(f"exactly one {op} node, found {len(found)}")
        return found[0]

    def constant_operand(self, node, other: str, what: str) -> np.ndarray:
        """The operand of binary ``node`` that is not ``other``, which must be a constant."""
        rest = [name for name in node.input if name != other]
        if len(rest) != 1 or rest[0] not in self.values:
            raise self.fail(what)
        return self.values[rest[0]]

    def consumer(self, name: str, op: str, what: str):
        found = [n for n in self.consumers.get(name, ()) if n.op_type == op]
        if len(found) != 1:
            raise self.fail(what)
        return found[0]


def _gru_weights(g: _Graph) -> dict[str, np.ndarray]:
    gru = g.only("GRU")
    attrs = {a.name: onnx.helper.get_attribute_value(a) for a in gru.attribute}
    extra = set(attrs) - {"hidden_size", "linear_before_reset"}
    if attrs.get("linear_before_reset") != 1 or extra:
        raise g.fail("a forward GRU with linear_before_reset=1 and default activations "
                     f"(found attributes {sorted(attrs)})")
    if len(gru.input) < 4 or any(name not in g.values for name in gru.input[1:4]) \
            or (len(gru.input) > 4 and gru.input[4]):
        raise g.fail("the GRU's W, R, B as initializers and no sequence_lens")
    return dict(zip(("gru_w", "gru_r", "gru_b"), (g.values[n] for n in gru.input[1:4]),
                    strict=True))


def _output_masks(g: _Graph) -> np.ndarray:
    """(4, 8): the masks of ``v`` (linear, exp, sigmoid) and of the wrapped angle."""
    sig = g.only("Sigmoid")
    v = sig.input[0]
    m_sig = g.constant_operand(g.consumer(sig.output[0], "Mul", "the Mul after Sigmoid"),
                               sig.output[0], "the sigmoid's mask")
    m_lin = m_exp = None
    for node in g.consumers.get(v, ()):
        if node.op_type != "Mul":
            continue
        mask = g.constant_operand(node, v, "the masks of v")
        if any(n.op_type == "Exp" for n in g.consumers.get(node.output[0], ())):
            m_exp = mask
        else:
            m_lin = mask
    floor = g.only("Floor")
    sub = g.consumer(g.consumer(floor.output[0], "Mul", "the Mul after Floor").output[0],
                     "Sub", "the wrap's Sub")
    angle = sub.output[0]
    m_ang = g.constant_operand(g.consumer(angle, "Mul", "the angle's mask"), angle,
                               "the angle's mask")
    if m_lin is None or m_exp is None:
        raise g.fail("the linear and exp masks of v")
    try:
        return np.stack([np.asarray(m, np.float32).reshape(N_CONTROL)
                         for m in (m_lin, m_exp, m_sig, m_ang)])
    except ValueError:
        raise g.fail(f"output masks of {N_CONTROL} values") from None


def _wrap_constants(g: _Graph) -> np.ndarray:
    """(3,): ``w0, w1, w2`` of the graph's ``a - w2 floor((a + w0) w1)``."""
    floor = g.only("Floor")
    mul = g.producer.get(floor.input[0])
    add = g.producer.get(mul.input[0]) if mul is not None and mul.op_type == "Mul" else None
    if add is None or add.op_type != "Add":
        raise g.fail("the rotation wrap Floor((a + w0) * w1)")
    w1 = g.constant_operand(mul, add.output[0], "the wrap's scale")
    a = [n for n in add.input if n not in g.values]
    if len(a) != 1:
        raise g.fail("the wrap's angle")
    w0 = g.constant_operand(add, a[0], "the wrap's offset")
    after = g.consumer(floor.output[0], "Mul", "the Mul after Floor")
    w2 = g.constant_operand(after, floor.output[0], "the wrap's period")
    try:
        return np.array([float(w0), float(w1), float(w2)], np.float32)
    except TypeError:
        raise g.fail("scalar wrap constants") from None


class ControllerKernel:
    """The numba step of one controller file (module docstring); built by
    :func:`load_controller_kernel`. ``hidden``: GRU width; ``n_bank``: pulse bumps;
    ``state_size``: ``hidden + 17``."""

    def __init__(self, arrays: dict[str, np.ndarray], hidden: int, n_bank: int) -> None:
        self.hidden, self.n_bank = hidden, n_bank
        self.state_size = hidden + 2 * N_CONTROL + 1
        offsets, flat, at = [], [], 0
        for name in _BLOCKS:
            block = np.ascontiguousarray(arrays[name], np.float32).ravel()
            offsets.append(at)
            flat.append(block)
            at += block.size
        self._params = np.concatenate(flat).astype(np.float64)
        self._layout = np.array([hidden, n_bank, *offsets], np.int64)
        self._scratch = np.zeros(N_INPUTS + 2 * hidden + N_CONTROL + 3 * n_bank)

    def step_into(self, inputs: np.ndarray, state_in: np.ndarray, control: np.ndarray,
                  state_out: np.ndarray) -> None:
        """One frame: ``inputs`` float32 (25,) ``[micro 7, beat 5, section 8, hazard 5]``
        (the contract vectors, as :class:`~examples.julia.controller_io.ContractInputs` makes
        them), ``state_in`` float32 (state_size,) -> writes ``control`` float32 (8,) (clipped
        to the graph's ``lo, hi``; rotation as the state's angle) and ``state_out`` float32
        (state_size,). All contiguous 1-D; ``state_out`` must not be ``state_in``. No checks
        (the hot path): :meth:`step` is the checked form."""
        _controller_step(inputs, state_in, control, state_out, self._params, self._layout,
                         self._scratch)

    def step(self, inputs, state_in) -> tuple[np.ndarray, np.ndarray]:
        """Checked, allocating form of :meth:`step_into`: ``inputs`` (25,) and ``state_in``
        (state_size,) numbers -> new ``(control (8,), state_out (state_size,))`` float32.
        ValueError for wrong shapes."""
        x = np.ascontiguousarray(inputs, np.float32)
        s = np.ascontiguousarray(state_in, np.float32)
        if x.shape != (N_INPUTS,) or s.shape != (self.state_size,):
            raise ValueError(f"inputs must have shape ({N_INPUTS},) and state_in "
                             f"({self.state_size},), got {x.shape} and {s.shape}")
        control = np.empty(N_CONTROL, np.float32)
        state_out = np.empty(self.state_size, np.float32)
        self.step_into(x, s, control, state_out)
        return control, state_out


def load_controller_kernel(path: str | os.PathLike) -> ControllerKernel:
    """The :class:`ControllerKernel` of the controller ONNX file ``path``, every number read
    from the file (module docstring). ``ContractError`` (a ValueError) naming the file and the
    part when the file cannot be read or its graph is not the trained controller's (missing
    initializer or node, wrong shape)."""
    path = Path(path)
    try:
        model = onnx.load(str(path))
    except Exception as exc:  # protobuf raises its own types
        raise ContractError(f"{path}: not a readable ONNX file: {exc}") from None
    g = _Graph(model.graph, str(path))
    named = {"micro_mean": "micro_mean", "micro_inv_std": "micro_inv_std",
             "beat_offset": "beat_offset", "conf_pick": "conf_pick", "bump_u": "bump_u",
             "bump_k": "bump_k", "head_w": "head.weight", "head_b": "head.bias",
             "scale": "scale", "centre": "centre", "alpha1": "alpha1", "alpha2": "alpha2",
             "speed_pick": "speed_pick", "pulse_map": "pulse_map", "lo": "lo", "hi": "hi"}
    missing = sorted(n for n in named.values() if n not in g.initializers)
    if missing:
        raise g.fail(f"the initializers {missing}")
    arrays = {key: g.values[name] for key, name in named.items()}
    arrays.update(_gru_weights(g))
    arrays["masks"] = _output_masks(g)
    arrays["wrap"] = _wrap_constants(g)
    hidden = int(arrays["gru_r"].shape[-1])
    n_bank = int(arrays["bump_k"].shape[0]) if arrays["bump_k"].ndim == 1 else -1
    for name, shape in _shapes(hidden, n_bank).items():
        if arrays[name].shape != shape:
            raise g.fail(f"{name} of shape {shape}, got {arrays[name].shape}")
    return ControllerKernel(arrays, hidden, n_bank)
