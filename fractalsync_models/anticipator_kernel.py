"""The anticipator's one-step graph as a numba kernel, every number read from the ONNX file.

The exported graph (``fractalsync_models.training.anticipator_model.AnticipatorNet``, opset 17)
stays the contract and the reference; :func:`read_anticipator_graph` reads from the file every
weight and constant one slow step uses, and :func:`step_into` computes that step for a batch of
one, with no allocation (``Anticipator(engine="numba")``, the default engine of
:class:`~fractalsync_models.anticipator.Anticipator`). With A audio features (272), 5 beat
features, P projection units, H GRU units, K counter features, D head units:

1. ``a = (audio - audio_mean) * audio_scale`` (A), ``b = (beat - beat_mean) * beat_scale`` (5),
   ``p = relu(audio_proj.weight_t.T a + audio_proj.bias)`` (P);
2. the beat and bar counters: a beat is counted when the beat phase wraps (``beat[0]`` = sin 2πφ
   goes from negative, in the state, to non-negative while ``prev_cos * sin - prev_sin * cos >
   0``), a bar when that beat's downbeat probability exceeds the graph's threshold; each count
   is kept modulo its period ``n - floor(n / period) * period`` in float32, as the graph does;
   ``k[j] = sin or cos(count_j * scale_j)`` (K);
3. one ONNX GRU step (gates z, r, h; ``linear_before_reset = 1``) on ``x = [p, b, k]`` from the
   state's ``h``;
4. ``z = relu(head.weight_t.T [h', k] + head.bias)`` (D); ``section_logits = section_out z``,
   ``hazard_logits = hazard_out z``; the state becomes ``[h', sin, cos, beats, bars]``.

What is read and how: the normalisation, projection, head and output weights by their
initializer names (:data:`NAMED_WEIGHTS`, named by the exporter); the GRU's W, R, B by their role
in the one GRU node (whose attributes must be ``linear_before_reset = 1`` with the default
activations); the counters' constants, which the exporter folds into unnamed Constant nodes, by
their place in the graph: the K features are the inputs of the Concat the head's MatMul reads
after the GRU output, each ``Unsqueeze(Sin|Cos(Mul(counter, scale)))``; each counter is
``Sub(n, Mul(Floor(Div(n, period)), period))`` with ``n = Add(state slice, CumSum(e))``; the
beat counter's ``e`` is ``Cast(wrap)``, the bar counter's ``Mul(Cast(wrap),
Cast(Greater(Gather(beat_features, i), threshold)))``. Every size comes from the file (the
shapes of the weights; the counters' state slots are checked against the state layout). A file
without these parts gives a ValueError naming the missing part. The wrap rule itself (the
comparisons with 0) is the graph's structure, not read: the wrapper checks the kernel against
onnxruntime on probe steps that wrap beats, bars and both counters' periods at every load.

Numerics: float32 storage and accumulation as the graph's float32 ops, dot products
reassociated (SIMD partial sums) and fused (FMA), no other fast-math flag. The GRU's gate
sigmoids and its candidate's ``tanh(a) = 2 sigmoid(2 a) - 1`` run as vectorisable loops over
the CRNN kernel's exp (:func:`fractalsync_models.crnn_kernel._sigmoid_neg`, relative error a few
1e-7) instead of one libm call per unit. The counters are exact small integers in float32; the
angle ``count * scale`` is rounded to float32 before its sine as the graph's Mul does.

The kernel's inputs must be finite: :func:`step_into` first runs :func:`sanitize` (NaN/±inf ->
0, the rest clipped to ``±limit``) on them, in the same dispatch.

Cost: ``Anticipator.step`` p50 ~15 us, p99 ~20-25 us on the numba engine against ~63 / ~105 us on
onnxruntime (``benchmarks/bench_anticipator.py``, load 2); most of it is the GRU's
matrix-vector products streaming ~0.3 MB of float32 weights.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from numba import njit

from .crnn_kernel import _sigmoid_neg

__all__ = ["NAMED_WEIGHTS", "AnticipatorGraph", "probabilities", "probabilities_into",
           "read_anticipator_graph", "sanitize", "step_into"]

#: Initializers read by name (the exporter's names,
#: ``fractalsync_models.training.train_anticipator``).
NAMED_WEIGHTS = (
    "audio_mean", "audio_scale", "beat_mean", "beat_scale", "audio_proj.weight_t",
    "audio_proj.bias", "head.weight_t", "head.bias", "section_out.weight_t", "section_out.bias",
    "hazard_out.weight_t", "hazard_out.bias",
)  # fmt: skip
#: Values of the state after the GRU units: previous sin 2πφ, previous cos 2πφ, beats, bars.
COUNTER_SLOTS = 4

# Offsets in the int64 layout vector: sizes, then block offsets into the float32 parameters.
(_A, _NB, _P, _H, _K, _D, _S, _Z, _DOWN, _O_AMEAN, _O_ASCALE, _O_BMEAN, _O_BSCALE, _O_PW, _O_PB,
 _O_GW, _O_GR, _O_GWB, _O_GRB, _O_HW, _O_HB, _O_SW, _O_SB, _O_ZW, _O_ZB, _O_KSCALE, _O_PERIOD,
 _O_THRESH, _O_KCOUNTER, _O_KCOS) = range(30)  # fmt: skip


@dataclass(frozen=True)
class AnticipatorGraph:
    """The numbers of one anticipator graph, as the kernel reads them.

    ``params`` float32 (flat: every weight and constant), ``layout`` int64 (sizes and offsets
    into ``params``); the sizes: ``n_audio`` A, ``n_beat`` 5, ``proj`` P, ``hidden`` H,
    ``n_counter`` K, ``head`` D, ``n_sections``, ``n_horizons``; ``state_size`` = H + 4.
    """

    params: np.ndarray
    layout: np.ndarray

    def size(self, which: int) -> int:
        return int(self.layout[which])

    @property
    def n_audio(self) -> int:
        return self.size(_A)

    @property
    def n_beat(self) -> int:
        return self.size(_NB)

    @property
    def hidden(self) -> int:
        return self.size(_H)

    @property
    def n_sections(self) -> int:
        return self.size(_S)

    @property
    def n_horizons(self) -> int:
        return self.size(_Z)

    @property
    def audio_mean(self) -> np.ndarray:
        """(A,) the audio features' normalisation mean (a view of ``params``)."""
        return self.params[self.layout[_O_AMEAN] : self.layout[_O_AMEAN] + self.n_audio]

    @property
    def audio_scale(self) -> np.ndarray:
        """(A,) the audio features' normalisation scale, 1 / std (a view of ``params``)."""
        return self.params[self.layout[_O_ASCALE] : self.layout[_O_ASCALE] + self.n_audio]

    @property
    def state_size(self) -> int:
        return self.hidden + COUNTER_SLOTS

    def scratch(self) -> np.ndarray:
        """A float32 work buffer for :func:`step_into` (A + P + 5 + K, the GRU input; H + K,
        the head's; D; 6 H for the gates)."""
        lay = self.layout
        return np.zeros(lay[_A] + lay[_P] + lay[_NB] + 2 * lay[_K] + 7 * lay[_H] + lay[_D],
                        np.float32)


# --------------------------------------------------------------------------- reading the graph


class _Graph:
    """Producers and constant values of an ONNX graph's tensors."""

    def __init__(self, proto):
        from onnx import helper, numpy_helper

        self.proto = proto
        self.producer = {o: n for n in proto.graph.node for o in n.output}
        self.values = {t.name: numpy_helper.to_array(t) for t in proto.graph.initializer}
        for n in proto.graph.node:
            if n.op_type == "Constant" and n.attribute and n.attribute[0].name == "value":
                self.values[n.output[0]] = numpy_helper.to_array(n.attribute[0].t)
        self.attrs = lambda node: {a.name: helper.get_attribute_value(a) for a in node.attribute}

    def node(self, tensor: str, op: str, what: str):
        """The node of type ``op`` producing ``tensor``; ValueError naming ``what`` if none."""
        n = self.producer.get(tensor)
        if n is None or n.op_type != op:
            got = "a graph input or initializer" if n is None else f"a {n.op_type} node"
            raise ValueError(f"{what}: expected a {op} node, found {got} ({tensor!r})")
        return n

    def scalar(self, tensor: str, what: str) -> float:
        v = self.values.get(tensor)
        if v is None or v.size != 1:
            raise ValueError(f"{what}: expected a scalar constant, found {tensor!r}")
        return float(v.reshape(()))

    def split(self, node, what: str) -> tuple[str, float]:
        """(the non-constant input, the scalar constant) of a binary node."""
        a, b = node.input
        if b in self.values:
            return a, self.scalar(b, what)
        if a in self.values:
            return b, self.scalar(a, what)
        raise ValueError(f"{what}: expected a constant operand of {node.op_type} {node.name!r}")

    def slice_offset(self, tensor: str, what: str) -> int:
        """Start of a chain of Slice nodes on the last axis of ``state_in``, in state floats."""
        offset = 0
        while tensor != "state_in":
            n = self.node(tensor, "Slice", what)
            offset += int(self.values[n.input[1]].reshape(-1)[0])
            tensor = n.input[0]
        return offset


def _counter(g: _Graph, tensor: str) -> tuple[str, float, int, float, int]:
    """(kind "beat" or "bar", period, state slot, downbeat threshold, downbeat index) of the
    counter tensor ``tensor`` (module docstring); threshold and index are nan, -1 for beats."""
    what = f"counter {tensor!r}"
    sub = g.node(tensor, "Sub", what)
    n_name, mul_name = sub.input
    period_mul = g.node(mul_name, "Mul", what)
    floor_in, period = g.split(period_mul, what)
    div = g.node(g.node(floor_in, "Floor", what).input[0], "Div", what)
    if div.input[0] != n_name or g.scalar(div.input[1], what) != period:
        raise ValueError(f"{what}: expected n - floor(n / p) * p with one period p")
    add = g.node(n_name, "Add", what)
    cumsum_in = [t for t in add.input if g.producer.get(t) is not None
                 and g.producer[t].op_type == "CumSum"]
    if len(cumsum_in) != 1:
        raise ValueError(f"{what}: expected the count to be Add(state slice, CumSum(...))")
    state_in = next(t for t in add.input if t != cumsum_in[0])
    slot = g.slice_offset(state_in, what)
    event = g.producer.get(g.producer[cumsum_in[0]].input[0])
    if event is not None and event.op_type == "Cast":
        return "beat", period, slot, math.nan, -1
    if event is None or event.op_type != "Mul":
        raise ValueError(f"{what}: expected CumSum(Cast(wrap)) or CumSum(Mul(Cast(wrap), "
                         "Cast(Greater(downbeat_prob, threshold))))")
    for t in event.input:
        greater = g.producer.get(g.node(t, "Cast", what).input[0])
        if greater is not None and greater.op_type == "Greater":
            gathered, threshold = g.split(greater, what)
            gather = g.node(gathered, "Gather", what)
            if gather.input[0] != "beat_features":
                raise ValueError(f"{what}: the downbeat test does not read beat_features")
            return "bar", period, slot, threshold, int(g.values[gather.input[1]].reshape(()))
    raise ValueError(f"{what}: expected a Greater(downbeat_prob, threshold) in the bar count")


def _counter_features(g: _Graph, head_in: str):
    """The K counter features the head reads beside the GRU output: per feature (counter
    tensor, cos?, scale); and the tensor of the K features."""
    concat = g.node(head_in, "Concat", "the head's input [h, k]")
    if len(concat.input) != 2:
        raise ValueError("the head's input: expected Concat([GRU output, counter features])")
    k_name = concat.input[1]
    feats = []
    for t in g.node(k_name, "Concat", "the counter features").input:
        what = f"counter feature {t!r}"
        trig = g.producer.get(g.node(t, "Unsqueeze", what).input[0])
        if trig is None or trig.op_type not in ("Sin", "Cos"):
            raise ValueError(f"{what}: expected Unsqueeze(Sin or Cos(count * scale))")
        counter, scale = g.split(g.node(trig.input[0], "Mul", what), what)
        feats.append((counter, trig.op_type == "Cos", scale))
    return feats, k_name


def _gru(g: _Graph):
    """The GRU node's (W, R, B) arrays [1, 3H, X], [1, 3H, H], [1, 6H]."""
    grus = [n for n in g.proto.graph.node if n.op_type == "GRU"]
    if len(grus) != 1:
        raise ValueError(f"expected one GRU node, found {len(grus)}")
    attrs = g.attrs(grus[0])
    if attrs.get("linear_before_reset") != 1 or "activations" in attrs or "clip" in attrs \
            or attrs.get("direction", b"forward") != b"forward":
        raise ValueError("the GRU node: expected linear_before_reset=1, forward, the default "
                         "activations and no clip")
    ins = list(grus[0].input)
    if len(ins) < 3 or any(t not in g.values for t in ins[1:3]) or (len(ins) > 3 and ins[3]
                                                                    and ins[3] not in g.values):
        raise ValueError("the GRU node: expected its W, R and B as initializers")
    w, r = g.values[ins[1]], g.values[ins[2]]
    h3 = r.shape[1] if r.ndim == 3 else -1
    b = g.values[ins[3]] if len(ins) > 3 and ins[3] else np.zeros((1, 2 * h3), np.float32)
    if r.ndim != 3 or r.shape[0] != 1 or r.shape[1] != 3 * r.shape[2] or w.ndim != 3 \
            or w.shape[:2] != r.shape[:2] or b.shape != (1, 2 * h3):
        raise ValueError(f"the GRU node: inconsistent W {w.shape}, R {r.shape}, B {b.shape}")
    return w[0], r[0], b[0]


def read_anticipator_graph(proto) -> AnticipatorGraph:
    """Every number of one slow step of an anticipator ``onnx.ModelProto`` (module docstring).

    Raises ValueError naming the missing or inconsistent part when the graph is not the
    exporter's anticipator graph.
    """
    g = _Graph(proto)
    missing = [n for n in NAMED_WEIGHTS if n not in g.values]
    if missing:
        raise ValueError(f"not an anticipator graph of this runtime: initializers {missing} "
                         "missing")
    w = {n: np.asarray(g.values[n], np.float32) for n in NAMED_WEIGHTS}
    gru_w, gru_r, gru_b = _gru(g)
    hid = gru_r.shape[1]
    head_mm = [n for n in proto.graph.node if n.op_type == "MatMul"
               and n.input[1] == "head.weight_t"]
    if len(head_mm) != 1:
        raise ValueError("expected one MatMul reading head.weight_t")
    feats, _ = _counter_features(g, head_mm[0].input[0])
    counters: dict[str, tuple] = {}
    for tensor, _, _ in feats:
        if tensor not in counters:
            counters[tensor] = _counter(g, tensor)
    kinds = {c[0]: c for c in counters.values()}
    if len(counters) != 2 or set(kinds) != {"beat", "bar"}:
        raise ValueError("the counter features: expected one beat and one bar counter, found "
                         f"{sorted(c[0] for c in counters.values())}")
    for kind, slot in (("beat", hid + 2), ("bar", hid + 3)):
        if kinds[kind][2] != slot:
            raise ValueError(f"the {kind} count: expected in state slot {slot}, read from "
                             f"{kinds[kind][2]}")
    n_a, n_b = w["audio_mean"].shape[0], w["beat_mean"].shape[0]
    p, d, n_k = w["audio_proj.bias"].shape[0], w["head.bias"].shape[0], len(feats)
    n_s, n_z = w["section_out.bias"].shape[0], w["hazard_out.bias"].shape[0]
    down = kinds["bar"][4]
    want = {
        "audio_mean": (n_a,), "audio_scale": (n_a,), "beat_mean": (n_b,), "beat_scale": (n_b,),
        "audio_proj.weight_t": (n_a, p), "head.weight_t": (hid + n_k, d),
        "section_out.weight_t": (d, n_s), "hazard_out.weight_t": (d, n_z),
    }  # fmt: skip
    for name, shape in want.items():
        if w[name].shape != shape:
            raise ValueError(f"initializer {name!r}: expected shape {shape}, got {w[name].shape}")
    if gru_w.shape[1] != p + n_b + n_k:
        raise ValueError(f"the GRU input: expected {p + n_b + n_k} features (projection, beat, "
                         f"counters), W has {gru_w.shape[1]}")
    if n_b < 2 or not 0 <= down < n_b:
        raise ValueError(f"beat features: {n_b}, downbeat index {down}")
    c = np.ascontiguousarray
    blocks = [
        w["audio_mean"], w["audio_scale"], w["beat_mean"], w["beat_scale"],
        c(w["audio_proj.weight_t"].T), w["audio_proj.bias"], gru_w, gru_r, gru_b[: 3 * hid],
        gru_b[3 * hid :], c(w["head.weight_t"].T), w["head.bias"],
        c(w["section_out.weight_t"].T), w["section_out.bias"], c(w["hazard_out.weight_t"].T),
        w["hazard_out.bias"], np.array([s for _, _, s in feats]),
        np.array([kinds["beat"][1], kinds["bar"][1]]), np.array([kinds["bar"][3]]),
        np.array([counters[t][0] == "bar" for t, _, _ in feats]),
        np.array([is_cos for _, is_cos, _ in feats]),
    ]  # fmt: skip
    sizes = [b.size for b in blocks]
    offsets = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    params = np.concatenate([np.asarray(b, np.float32).reshape(-1) for b in blocks])
    if not np.isfinite(params).all():
        raise ValueError("the graph's weights or constants are not all finite")
    layout = np.array([n_a, n_b, p, hid, n_k, d, n_s, n_z, down, *offsets], np.int64)
    return AnticipatorGraph(params, layout)


# --------------------------------------------------------------------------- kernels

#: Dot products may be reassociated (SIMD partial sums) and fused (FMA); no other fast-math flag.
_DOT = {"reassoc", "contract"}


@njit(cache=True, nogil=True)
def _sanitize(x: np.ndarray, limit: np.float32) -> int:
    """In place on a 1-D float32 array: NaN/±inf -> 0, the rest clipped to [-limit, limit];
    returns the number of non-finite values."""
    bad = 0
    for i in range(x.shape[0]):
        v = x[i]
        if not math.isfinite(v):
            x[i] = 0.0
            bad += 1
        elif v > limit:
            x[i] = limit
        elif v < -limit:
            x[i] = -limit
    return bad


def sanitize(x: np.ndarray, limit: float) -> int:
    """In place on a 1-D float32 array ``x``: NaN and ±inf become 0, finite values are clipped to
    ``[-limit, limit]``. Returns the number of non-finite values replaced."""
    return int(_sanitize(x, np.float32(limit)))


@njit(cache=True, nogil=True, fastmath=_DOT)
def _dot(w, at, v, n):
    """``w[at:at + n] . v[:n]``, float32 (contiguous 1-D views: SIMD)."""
    ws = w[at : at + n]
    acc = np.float32(0.0)
    for i in range(n):
        acc += ws[i] * v[i]
    return acc


@njit(cache=True, nogil=True, fastmath=_DOT)
def _dot3(w, at0, at1, at2, v, n):
    """The three dot products ``w[at_i:at_i + n] . v[:n]`` in one pass over ``v``, float32."""
    w0, w1, w2 = w[at0 : at0 + n], w[at1 : at1 + n], w[at2 : at2 + n]
    a0 = a1 = a2 = np.float32(0.0)
    for i in range(n):
        vi = v[i]
        a0 += w0[i] * vi
        a1 += w1[i] * vi
        a2 += w2[i] * vi
    return a0, a1, a2


@njit(cache=True, nogil=True)
def _sigmoid(x):
    if x >= 0.0:
        return 1.0 / (1.0 + math.exp(-x))
    e = math.exp(x)
    return e / (1.0 + e)


@njit(cache=True, nogil=True)
def _counters(beat, h, params, lay, k):
    """The beat/bar counters of one step (no fast-math: the wrap test and the modulo round as
    the graph's float32 ops): updates the counter slots of the state ``h`` and writes the K
    counter features into ``k``."""
    hid = lay[_H]
    s, c = beat[0], beat[1]
    s_prev, c_prev = h[hid], h[hid + 1]
    wrap = s_prev < 0 and s >= 0 and c_prev * s - s_prev * c > 0
    down = beat[lay[_DOWN]] > params[lay[_O_THRESH]]
    counts = (h[hid + 2] + np.float32(1.0 if wrap else 0.0),
              h[hid + 3] + np.float32(1.0 if wrap and down else 0.0))
    beats = counts[0] - np.floor(counts[0] / params[lay[_O_PERIOD]]) * params[lay[_O_PERIOD]]
    bars = counts[1] - np.floor(counts[1] / params[lay[_O_PERIOD] + 1]) \
        * params[lay[_O_PERIOD] + 1]
    h[hid], h[hid + 1], h[hid + 2], h[hid + 3] = s, c, beats, bars
    for j in range(lay[_K]):
        count = bars if params[lay[_O_KCOUNTER] + j] != 0 else beats
        angle = count * params[lay[_O_KSCALE] + j]  # float32, as the graph's Mul
        k[j] = math.cos(angle) if params[lay[_O_KCOS] + j] != 0 else math.sin(angle)


@njit(cache=True, nogil=True, fastmath=_DOT)
def _step(audio, beat, h, params, lay, scratch, sec_logits, haz_logits, sec, haz):
    """One slow step (module docstring) on finite inputs, in place; see :func:`step_into`."""
    n_a, n_b, n_p, hid, n_k, n_d = lay[_A], lay[_NB], lay[_P], lay[_H], lay[_K], lay[_D]
    n_x = n_p + n_b + n_k
    norm = scratch[:n_a]
    x = scratch[n_a : n_a + n_x]
    hk = scratch[n_a + n_x : n_a + n_x + hid + n_k]  # [h', k]: the head's input
    z = scratch[n_a + n_x + hid + n_k : n_a + n_x + hid + n_k + n_d]
    am, asc = lay[_O_AMEAN], lay[_O_ASCALE]
    for i in range(n_a):
        norm[i] = (audio[i] - params[am + i]) * params[asc + i]
    pw, pb = lay[_O_PW], lay[_O_PB]
    for j in range(n_p):
        x[j] = max(params[pb + j] + _dot(params, pw + j * n_a, norm, n_a), np.float32(0.0))
    bm, bsc = lay[_O_BMEAN], lay[_O_BSCALE]
    for i in range(n_b):
        x[n_p + i] = (beat[i] - params[bm + i]) * params[bsc + i]
    k = x[n_p + n_b :]
    _counters(beat, h, params, lay, k)
    gw, gr, gwb, grb = lay[_O_GW], lay[_O_GR], lay[_O_GWB], lay[_O_GRB]
    at = n_a + n_x + hid + n_k + n_d
    gates = scratch[at : at + 2 * hid]  # z and r: -(pre-activation), then the sigmoid
    cand = scratch[at + 2 * hid : at + 3 * hid]  # candidate: -2 (pre-activation), then tanh
    rec = scratch[at + 3 * hid : at + 4 * hid]  # R_h h + Rb_h
    work = scratch[at + 4 * hid : at + 6 * hid]
    for u in range(hid):  # ONNX GRU: gates z, r, h; linear_before_reset = 1
        gz, g_r, gn = _dot3(params, gw + u * n_x, gw + (hid + u) * n_x,
                            gw + (2 * hid + u) * n_x, x, n_x)
        rz, rr, rn = _dot3(params, gr + u * hid, gr + (hid + u) * hid,
                           gr + (2 * hid + u) * hid, h, hid)
        gates[u] = -(gz + params[gwb + u] + rz + params[grb + u])
        gates[hid + u] = -(g_r + params[gwb + hid + u] + rr + params[grb + hid + u])
        cand[u] = gn + params[gwb + 2 * hid + u]
        rec[u] = rn + params[grb + 2 * hid + u]
    _sigmoid_neg(gates, work)  # z, r = sigmoid(pre-activations), vectorised
    one, two = np.float32(1.0), np.float32(2.0)
    for u in range(hid):
        cand[u] = -two * (cand[u] + gates[hid + u] * rec[u])
    _sigmoid_neg(cand, work[:hid])  # tanh(a) = 2 sigmoid(2 a) - 1
    for u in range(hid):
        zu = gates[u]
        hk[u] = (one - zu) * (two * cand[u] - one) + zu * h[u]
    for u in range(hid):
        h[u] = hk[u]
    for i in range(n_k):
        hk[hid + i] = k[i]
    hw, hb = lay[_O_HW], lay[_O_HB]
    for d in range(n_d):
        z[d] = max(params[hb + d] + _dot(params, hw + d * (hid + n_k), hk, hid + n_k),
                   np.float32(0.0))
    sw, sb, zw, zb = lay[_O_SW], lay[_O_SB], lay[_O_ZW], lay[_O_ZB]
    for c in range(lay[_S]):
        sec_logits[c] = params[sb + c] + _dot(params, sw + c * n_d, z, n_d)
    for c in range(lay[_Z]):
        haz_logits[c] = params[zb + c] + _dot(params, zw + c * n_d, z, n_d)
    _probabilities_into(sec_logits, haz_logits, sec, haz)


@njit(cache=True, nogil=True)
def _softmax_into(logits, out):
    """``out = softmax(logits)`` (1-D float32; float64 sums)."""
    top = -np.inf
    for c in range(logits.shape[0]):
        top = max(top, logits[c])
    total = 0.0
    for c in range(logits.shape[0]):
        e = math.exp(logits[c] - top)
        out[c] = e
        total += e
    for c in range(logits.shape[0]):
        out[c] /= total


@njit(cache=True, nogil=True)
def _sigmoid_into(logits, out):
    """``out = sigmoid(logits)`` (1-D float32, no overflow for large ``|logit|``)."""
    for c in range(logits.shape[0]):
        out[c] = _sigmoid(logits[c])


@njit(cache=True, nogil=True)
def _probabilities(sec_logits, haz_logits, sec, haz):
    for t in range(sec_logits.shape[0]):
        _probabilities_into(sec_logits[t], haz_logits[t], sec[t], haz[t])


@njit(cache=True, nogil=True)
def _probabilities_into(sec_logits, haz_logits, sec, haz):
    _softmax_into(sec_logits, sec)
    _sigmoid_into(haz_logits, haz)


def probabilities_into(section_logits, hazard_logits, section_probs, hazard_probs) -> None:
    """One step's :func:`probabilities` into preallocated float32 arrays: section_logits and
    section_probs (8,), hazard_logits and hazard_probs (5,) (the onnxruntime engine's step;
    arguments not checked: the caller made them once)."""
    _probabilities_into(section_logits, hazard_logits, section_probs, hazard_probs)


def probabilities(section_logits: np.ndarray, hazard_logits: np.ndarray):
    """Section probabilities ``softmax`` (T, 8) and hazard probabilities ``sigmoid`` (T, 5),
    float32, of the float32 logits (T, 8) and (T, 5): the same functions as the step kernel's
    (for logits onnxruntime computed)."""
    sec_logits = np.ascontiguousarray(section_logits, np.float32)
    haz_logits = np.ascontiguousarray(hazard_logits, np.float32)
    if sec_logits.ndim != 2 or haz_logits.ndim != 2 or len(sec_logits) != len(haz_logits):
        raise ValueError(f"logits: expected (T, n) arrays with one T, got {sec_logits.shape} "
                         f"and {haz_logits.shape}")
    sec, haz = np.empty_like(sec_logits), np.empty_like(haz_logits)
    _probabilities(sec_logits, haz_logits, sec, haz)
    return sec, haz


def _check_step_args(graph: AnticipatorGraph, arrays) -> None:
    names = ("audio", "beat", "state", "scratch", "section_logits", "hazard_logits",
             "section_probs", "hazard_probs")
    sizes = (graph.n_audio, graph.n_beat, graph.state_size, graph.scratch().size,
             graph.n_sections, graph.n_horizons, graph.n_sections, graph.n_horizons)
    for name, a, n in zip(names, arrays, sizes, strict=True):
        if not (isinstance(a, np.ndarray) and a.dtype == np.float32 and a.shape == (n,)
                and a.flags.c_contiguous and (name in ("audio", "beat") or a.flags.writeable)):
            raise ValueError(f"{name}: expected a writable C-contiguous float32 array of shape "
                             f"({n},)")


def step_into(graph: AnticipatorGraph, audio, beat, state, scratch, section_logits,
              hazard_logits, section_probs, hazard_probs, limit: float) -> tuple[int, int]:
    """One slow step of ``graph``, for a batch of one, in place.

    audio (A,), beat (5,) float32, first :func:`sanitize`-d in place with ``limit``; state
    (H + 4,) float32, the recurrent state, replaced by the new one; scratch from
    :meth:`AnticipatorGraph.scratch`; section_logits, section_probs (8,) and hazard_logits,
    hazard_probs (5,) float32, written (probabilities ``softmax`` and ``sigmoid`` of the
    logits). Returns the counts of non-finite values replaced in audio and in beat. ValueError
    for an array of another dtype or shape. (``Anticipator.step`` calls the kernel behind this,
    ``_sanitized_step``, directly: its buffers are made once with the right shapes.)
    """
    arrays = (audio, beat, state, scratch, section_logits, hazard_logits, section_probs,
              hazard_probs)
    _check_step_args(graph, arrays)
    return _sanitized_step(audio, beat, state, np.float32(limit), graph.params, graph.layout,
                           scratch, section_logits, hazard_logits, section_probs, hazard_probs)


@njit(cache=True, nogil=True)
def _sanitized_step(audio, beat, h, limit, params, lay, scratch, sec_logits, haz_logits, sec,
                    haz):
    """:func:`_sanitize` both inputs in place, then :func:`_step`: one dispatch per slow step.
    Returns the non-finite counts of audio and beat."""
    bad_audio = _sanitize(audio, limit)
    bad_beat = _sanitize(beat, limit)
    _step(audio, beat, h, params, lay, scratch, sec_logits, haz_logits, sec, haz)
    return bad_audio, bad_beat
