"""The anticipator's numba engine (fractalsync_models.anticipator_kernel): what it reads from the
ONNX file, the step against a plain numpy reference (GRU cell and counter features) on random
graphs of odd sizes and constants, against onnxruntime (the shipped model over a generated song
through the live SlowClock path, and random graphs), edge inputs, the engine choice and the
fallback to onnxruntime."""

from __future__ import annotations

import math
import re
import warnings

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from onnx import helper, numpy_helper

from fractalsync_models.anticipator import (
    BAR_PERIODS,
    BEAT_PERIODS,
    DEFAULT_MODEL_PATH,
    DOWNBEAT_THRESHOLD,
    INPUT_LIMIT,
    PROBE_TOL,
    Anticipator,
    EngineFallbackWarning,
    NonFiniteInputWarning,
)
from fractalsync_models.anticipator_kernel import (
    _O_KCOS,
    _O_KCOUNTER,
    _O_KSCALE,
    _O_PERIOD,
    _O_THRESH,
    probabilities,
    read_anticipator_graph,
    sanitize,
    step_into,
)

SHIPPED = onnx.load(DEFAULT_MODEL_PATH)
_W = {t.name: numpy_helper.to_array(t) for t in SHIPPED.graph.initializer}
#: The shipped graph's GRU width (read from the file: the model may be retrained).
H0 = _W["gru.R"].shape[-1]
N_K = 2 * len(BEAT_PERIODS + BAR_PERIODS)
NB = 5


# --------------------------------------------------------------------------- graphs


def make_graph(a: int, p: int, hid: int, d: int, seed: int, scale: float = 0.5,
               beat_period: float = 64.0, bar_period: float = 16.0, threshold: float = 0.5,
               angle_factor: float = 1.0):
    """The shipped graph's structure with other sizes (A audio features, P projection units,
    H GRU units, D head units), random weights (N(0, scale^2 / fan_in) as an initialised
    network's, biases and statistics N(0, scale^2)) and other counter constants (periods,
    downbeat threshold, every angle scale times ``angle_factor``). Returns the
    ``onnx.ModelProto`` and the weights it holds (float32, the exporter's layouts)."""
    rng = np.random.default_rng(seed)

    def w(*shape, fan_in=1):
        return (rng.standard_normal(shape) * scale / np.sqrt(fan_in)).astype(np.float32)

    x = p + NB + N_K
    weights = {
        "audio_mean": w(a), "audio_scale": (np.abs(w(a)) + 0.5).astype(np.float32),
        "beat_mean": w(NB), "beat_scale": (np.abs(w(NB)) + 0.5).astype(np.float32),
        "audio_proj.weight_t": w(a, p, fan_in=a), "audio_proj.bias": w(p),
        "gru.W": w(1, 3 * hid, x, fan_in=x), "gru.R": w(1, 3 * hid, hid, fan_in=hid),
        "gru.B": w(1, 6 * hid), "head.weight_t": w(hid + N_K, d, fan_in=hid + N_K),
        "head.bias": w(d), "section_out.weight_t": w(d, 8, fan_in=d), "section_out.bias": w(8),
        "hazard_out.weight_t": w(d, 5, fan_in=d), "hazard_out.bias": w(5),
    }  # fmt: skip
    proto = onnx.ModelProto()
    proto.CopyFrom(SHIPPED)
    for t in proto.graph.initializer:
        t.CopyFrom(numpy_helper.from_array(weights[t.name], t.name))
    scales = {float(np.float32(2 * np.pi / q)) for q in BEAT_PERIODS + BAR_PERIODS}
    for n in proto.graph.node:
        if n.op_type == "GRU":
            for att in n.attribute:
                if att.name == "hidden_size":
                    att.i = hid
        if n.op_type != "Constant":
            continue
        v = numpy_helper.to_array(n.attribute[0].t)
        new = v
        if v.dtype == np.int64 and v.size == 1 and v.reshape(-1)[0] == H0:
            new = np.full_like(v, hid)  # the state slices at the GRU width
        elif v.dtype == np.float32 and v.size == 1:
            f = float(v.reshape(()))
            if f == BEAT_PERIODS[-1]:
                new = np.full_like(v, beat_period)
            elif f == BAR_PERIODS[-1]:
                new = np.full_like(v, bar_period)
            elif f == DOWNBEAT_THRESHOLD:
                new = np.full_like(v, threshold)
            elif f in scales:
                new = (v * np.float32(angle_factor)).astype(np.float32)
        n.attribute[0].t.CopyFrom(numpy_helper.from_array(new))
    proto.graph.input[0].type.tensor_type.shape.dim[2].dim_value = a
    for t in (proto.graph.input[2], proto.graph.output[2]):
        t.type.tensor_type.shape.dim[1].dim_value = hid + 4
    return proto, weights


def constants(beat_period=64.0, bar_period=16.0, threshold=0.5, angle_factor=1.0):
    """The counter constants :func:`make_graph` puts in: (periods, threshold, per feature
    (bar counter?, cos?, scale)); the exporter's order: sin of the 5 beat then 4 bar angles,
    then their cos."""
    angles = [(False, 2 * np.pi / q) for q in BEAT_PERIODS] + [(True, 2 * np.pi / q)
                                                               for q in BAR_PERIODS]
    feats = [(bar, cos, np.float32(np.float32(s) * np.float32(angle_factor)))
             for cos in (False, True) for bar, s in angles]
    return (np.float32(beat_period), np.float32(bar_period)), np.float32(threshold), feats


# --------------------------------------------------------------------------- numpy reference


def _sigmoid64(x):
    with np.errstate(over="ignore"):  # exp(-x) = inf for x << 0: the sigmoid is then 0
        return 1.0 / (1.0 + np.exp(-x))


def gru_cell(x, h, w, r, b):
    """One ONNX GRU step in float64 (gates z, r, h; linear_before_reset = 1): W (3H, X),
    R (3H, H), B (6H,) = [Wb, Rb]."""
    n = len(h)
    gi, gh = w @ x + b[: 3 * n], r @ h + b[3 * n :]
    z = _sigmoid64(gi[:n] + gh[:n])
    rr = _sigmoid64(gi[n : 2 * n] + gh[n : 2 * n])
    cand = np.tanh(gi[2 * n :] + rr * gh[2 * n :])
    return (1.0 - z) * cand + z * h


def counter_features(beat, tail, consts):
    """The beat/bar counters of one step: (K features float64, new tail (4,)). The wrap test,
    the counts and their modulo in float32 as the graph's float32 ops; the angles in float32."""
    (p_beat, p_bar), threshold, feats = consts
    s_prev, c_prev, beats, bars = (np.float32(v) for v in tail)
    s, c = np.float32(beat[0]), np.float32(beat[1])
    wrap = bool(s_prev < 0 and s >= 0 and c_prev * s - s_prev * c > 0)
    beats = np.float32(beats + np.float32(wrap))
    bars = np.float32(bars + np.float32(wrap and np.float32(beat[4]) > threshold))
    beats = np.float32(beats - np.floor(np.float32(beats / p_beat)) * p_beat)
    bars = np.float32(bars - np.floor(np.float32(bars / p_bar)) * p_bar)
    k = [(np.cos if cos else np.sin)(np.float64(np.float32((bars if bar else beats) * sc)))
         for bar, cos, sc in feats]
    return np.array(k), np.array([s, c, beats, bars], np.float32)


def reference_step(audio, beat, state, wt, consts):
    """One step of the graph in float64 numpy: (section logits, hazard logits, new state)."""
    f = {k: np.asarray(v, np.float64) for k, v in wt.items()}
    n = len(state) - 4
    k, tail = counter_features(beat, state[n:], consts)
    proj = np.maximum(((audio - f["audio_mean"]) * f["audio_scale"]) @ f["audio_proj.weight_t"]
                      + f["audio_proj.bias"], 0.0)
    x = np.concatenate([proj, (beat - f["beat_mean"]) * f["beat_scale"], k])
    h = gru_cell(x, np.asarray(state[:n], np.float64), f["gru.W"][0], f["gru.R"][0],
                 f["gru.B"][0])
    z = np.maximum(np.concatenate([h, k]) @ f["head.weight_t"] + f["head.bias"], 0.0)
    sec = z @ f["section_out.weight_t"] + f["section_out.bias"]
    haz = z @ f["hazard_out.weight_t"] + f["hazard_out.bias"]
    return sec, haz, np.concatenate([h, tail])


def softmax(v):
    e = np.exp(v - v.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


class Buffers:
    """The output and work arrays of one graph's step_into."""

    def __init__(self, graph):
        self.scratch = graph.scratch()
        self.sec_logits, self.sec = np.zeros(8, np.float32), np.zeros(8, np.float32)
        self.haz_logits, self.haz = np.zeros(5, np.float32), np.zeros(5, np.float32)

    def step(self, graph, audio, beat, state):
        return step_into(graph, audio, beat, state, self.scratch, self.sec_logits,
                         self.haz_logits, self.sec, self.haz, INPUT_LIMIT)


# --------------------------------------------------------------------------- reading the file


def test_the_shipped_graph_is_read_with_its_sizes_and_constants():
    g = read_anticipator_graph(SHIPPED)
    assert (g.n_audio, g.n_beat, g.hidden, g.n_sections, g.n_horizons) == (272, 5, H0, 8, 5)
    assert g.state_size == H0 + 4 and g.params.dtype == np.float32
    np.testing.assert_array_equal(g.audio_mean, _W["audio_mean"])
    np.testing.assert_array_equal(g.audio_scale, _W["audio_scale"])
    # the reader found the counters' constants the torch model was built with
    (p_beat, p_bar), threshold, feats = constants()
    def block(offset, n):
        return g.params[g.layout[offset] : g.layout[offset] + n]

    assert list(block(_O_PERIOD, 2)) == [p_beat, p_bar] and block(_O_THRESH, 1) == threshold
    np.testing.assert_array_equal(block(_O_KSCALE, N_K), [s for *_, s in feats])
    np.testing.assert_array_equal(block(_O_KCOUNTER, N_K), [b for b, *_ in feats])
    np.testing.assert_array_equal(block(_O_KCOS, N_K), [c for _, c, _ in feats])


def _rename(proto, old, new):
    for t in proto.graph.initializer:
        if t.name == old:
            t.name = new
    for n in proto.graph.node:
        n.input[:] = [new if i == old else i for i in n.input]


def _set_op(op_from, op_to, index=0):
    def edit(proto):
        [n for n in proto.graph.node if n.op_type == op_from][index].op_type = op_to
    return edit


def _set_attr(name, value):
    def edit(proto):
        gru = next(n for n in proto.graph.node if n.op_type == "GRU")
        gru.attribute.append(helper.make_attribute(name, value))
    return edit


def _split_period(proto):
    """The beat counter's Div by 64 and Mul by 64 given different constants."""
    div = next(n for n in proto.graph.node if n.op_type == "Div")
    const = next(n for n in proto.graph.node if n.output[0] == div.input[1])
    const.attribute[0].t.CopyFrom(numpy_helper.from_array(np.array(63.0, np.float32)))


@pytest.mark.parametrize(("edit", "message"), [
    (lambda p: _rename(p, "head.bias", "head.b"), r"initializers \['head.bias'\] missing"),
    (_set_attr("linear_before_reset", 0), "linear_before_reset=1"),
    (_set_attr("clip", 5.0), "no clip"),
    (_set_op("Sin", "Tanh"), r"Unsqueeze\(Sin or Cos"),
    (_set_op("CumSum", "Add"), "CumSum"),
    (_set_op("Greater", "Less", 1), "Greater"),
    (_set_op("Floor", "Ceil"), "expected a Floor node"),
    (_split_period, "one period"),
], ids=["named-weight", "gru-reset", "gru-clip", "feature-op", "count-op", "downbeat-op",
        "modulo-op", "modulo-period"])
def test_a_graph_without_a_part_the_kernel_reads_is_refused_naming_it(edit, message):
    proto = onnx.ModelProto()
    proto.CopyFrom(SHIPPED)
    edit(proto)
    with pytest.raises(ValueError, match=message):
        read_anticipator_graph(proto)


# --------------------------------------------------------------------------- kernel vs numpy

STEP_VALUES = st.floats(-10, 10, width=32)


@st.composite
def graph_case(draw):
    """A random graph of odd sizes and constants, an initial state (GRU values in [-1, 1],
    any counts below the periods, a previous phase) and 1-5 steps of inputs whose phases make
    some steps wrap a beat (and a bar), some not."""
    a, p = draw(st.integers(1, 17)), draw(st.integers(1, 9))
    hid, d = draw(st.integers(1, 11)), draw(st.integers(1, 7))
    periods = draw(st.sampled_from([(64.0, 16.0), (4.0, 2.0), (48.0, 12.0), (1.0, 1.0)]))
    threshold = draw(st.sampled_from([0.5, 0.2, 0.85]))
    factor = draw(st.sampled_from([1.0, 0.5, 3.0]))
    scale = draw(st.sampled_from([0.0, 0.3, 1.0, 4.0]))
    proto, wt = make_graph(a, p, hid, d, draw(st.integers(0, 2**32 - 1)), scale, *periods,
                           threshold, factor)
    n = draw(st.integers(1, 5))
    audio = draw(arrays(np.float32, (n, a), elements=STEP_VALUES))
    phases = draw(st.lists(st.sampled_from([0.0, 0.05, 0.3, 0.5, 0.9, 0.97]), min_size=n + 1,
                           max_size=n + 1))
    down = draw(st.lists(st.sampled_from([0.0, 0.2, 0.3, 0.5, 0.6, 0.85, 0.9]), min_size=n,
                         max_size=n))  # some exactly at a threshold: not a downbeat
    mid = draw(arrays(np.float32, (n, 2), elements=STEP_VALUES))
    ang = 2 * np.pi * np.array(phases[1:])
    beat = np.column_stack([np.sin(ang), np.cos(ang), mid, down]).astype(np.float32)
    counts = [draw(st.integers(0, int(periods[0]) - 1)), draw(st.integers(0, int(periods[1]) - 1))]
    state = np.concatenate([
        draw(arrays(np.float32, hid, elements=st.floats(-1, 1, width=32))),
        [np.sin(2 * np.pi * phases[0]), np.cos(2 * np.pi * phases[0])], counts,
    ]).astype(np.float32)  # fmt: skip
    return proto, wt, constants(*periods, threshold, factor), audio, beat, state


def check_against_reference(proto, wt, consts, audio, beat, state, tol=1e-4):
    graph = read_anticipator_graph(proto)
    buf = Buffers(graph)
    ref_state = state.astype(np.float64)
    state = state.copy()
    for a, b in zip(audio, beat, strict=True):
        sec, haz, ref_state = reference_step(a.astype(np.float64), b, ref_state, wt, consts)
        assert buf.step(graph, a.copy(), b.copy(), state) == (0, 0)
        np.testing.assert_allclose(buf.sec_logits, sec, atol=tol, rtol=tol)
        np.testing.assert_allclose(buf.haz_logits, haz, atol=tol, rtol=tol)
        np.testing.assert_allclose(buf.sec, softmax(sec), atol=tol)
        np.testing.assert_allclose(buf.haz, _sigmoid64(haz), atol=tol)
        n = len(state) - 4
        np.testing.assert_allclose(state[:n], ref_state[:n], atol=tol)
        np.testing.assert_array_equal(state[n:], ref_state[n:])  # counters and phase: exact
        ref_state = state.astype(np.float64)  # each step from the kernel's state


_ZERO_CASE = make_graph(1, 1, 1, 1, 0, 0.0)
_ODD_CASE = make_graph(17, 3, 7, 5, 4, 4.0, 4.0, 2.0, 0.85, 3.0)


@given(graph_case())
@settings(max_examples=60, deadline=None)
@example((*_ZERO_CASE, constants(), np.zeros((1, 1), np.float32), np.zeros((1, 5), np.float32),
          np.zeros(5, np.float32)))  # all zeros, the smallest graph
@example((*_ODD_CASE, constants(4.0, 2.0, 0.85, 3.0),
          np.full((3, 17), 10.0, np.float32),
          np.array([[0.0, 1.0, 1, 1, 0.9], [0.0, 1.0, 1, 1, 0.9], [-0.5, 0.9, 1, 1, 0.9]],
                   np.float32),
          np.array([1, -1, 0.5, 0, 0, 0.2, -0.7, -0.3, 0.95, 3.0, 1.0], np.float32)))  # both wrap
def test_the_step_matches_the_numpy_reference(case):
    check_against_reference(*case)


def test_huge_inputs_are_clipped_and_saturate_like_the_reference():
    proto, wt = make_graph(9, 4, 6, 3, 7, 0.3)
    consts = constants()
    graph = read_anticipator_graph(proto)
    buf = Buffers(graph)
    state = np.zeros(10, np.float32)
    audio = np.array([1e30, -1e30, 3e38, -3e38, INPUT_LIMIT, 2e4, -2e4, 1.0, 0.0], np.float32)
    beat = np.array([1e9, -1e9, 1e5, -1e5, 1e5], np.float32)
    clipped_a, clipped_b = np.clip(audio, -INPUT_LIMIT, INPUT_LIMIT), np.clip(beat, -1e4, 1e4)
    sec, haz, ref_state = reference_step(clipped_a.astype(np.float64), clipped_b, state, wt,
                                         consts)
    assert buf.step(graph, audio, beat, state) == (0, 0)
    np.testing.assert_array_equal(audio, clipped_a)  # clipped in place
    assert np.isfinite(buf.sec_logits).all() and np.isfinite(state).all()
    np.testing.assert_allclose(buf.sec_logits, sec, rtol=1e-5, atol=1e-3)
    np.testing.assert_allclose(buf.haz_logits, haz, rtol=1e-5, atol=1e-3)
    np.testing.assert_allclose(state[:6], ref_state[:6], atol=1e-5)
    assert np.abs(state[:6]).max() <= 1.0 and abs(buf.sec.sum() - 1) < 1e-6


def test_non_finite_inputs_are_the_zero_step_and_counted():
    proto, _ = make_graph(6, 3, 4, 3, 9, 1.0)
    graph = read_anticipator_graph(proto)
    buf, zero = Buffers(graph), Buffers(graph)
    s1, s2 = np.full(8, 0.2, np.float32), np.full(8, 0.2, np.float32)
    audio = np.array([np.nan, np.inf, -np.inf, 0, 0, np.nan], np.float32)
    beat = np.array([np.nan, 0, np.inf, 0, -np.inf], np.float32)
    assert buf.step(graph, audio, beat, s1) == (4, 3)
    assert zero.step(graph, np.zeros(6, np.float32), np.zeros(5, np.float32), s2) == (0, 0)
    np.testing.assert_array_equal(s1, s2)
    np.testing.assert_array_equal(buf.sec_logits, zero.sec_logits)
    np.testing.assert_array_equal(buf.haz, zero.haz)


def test_step_into_names_a_wrong_array():
    graph = read_anticipator_graph(SHIPPED)
    buf = Buffers(graph)
    good = (np.zeros(272, np.float32), np.zeros(5, np.float32), np.zeros(H0 + 4, np.float32))
    with pytest.raises(ValueError, match=rf"state: .* float32 array of shape \({H0 + 4},\)"):
        buf.step(graph, good[0], good[1], np.zeros(H0 + 4))
    with pytest.raises(ValueError, match=r"audio: .* shape \(272,\)"):
        buf.step(graph, np.zeros(271, np.float32), good[1], good[2])
    ro = np.zeros(8, np.float32)
    ro.flags.writeable = False
    with pytest.raises(ValueError, match="section_probs: expected a writable"):
        step_into(graph, *good, buf.scratch, buf.sec_logits, buf.haz_logits, ro, buf.haz, 1e4)


def reference_sanitize(x, limit):
    return np.where(np.isfinite(x), np.clip(x, -limit, limit), 0.0).astype(np.float32)


@given(arrays(np.float32, st.integers(0, 40),
              elements=st.floats(allow_nan=True, allow_infinity=True, width=32)))
@example(np.zeros(0, np.float32))
@example(np.array([np.nan], np.float32))
@example(np.array([np.inf, -np.inf, 3e38, -3e38, 1e4, -1e4, 0.0], np.float32))
@settings(max_examples=100, deadline=None)
def test_sanitize_matches_numpy(x):
    want, n_bad = reference_sanitize(x, 1e4), int((~np.isfinite(x)).sum())
    assert sanitize(x, 1e4) == n_bad
    np.testing.assert_array_equal(x, want)


FINITE32 = st.floats(allow_nan=False, allow_infinity=False, width=32)


@given(st.integers(0, 6).flatmap(lambda t: st.tuples(
    arrays(np.float32, (t, 8), elements=FINITE32), arrays(np.float32, (t, 5), elements=FINITE32))))
@example((np.zeros((0, 8), np.float32), np.zeros((0, 5), np.float32)))
@example((np.full((1, 8), 3e38, np.float32), np.array([[-3e38, 3e38, 0, 88, -104]], np.float32)))
@settings(max_examples=100, deadline=None)
def test_probabilities_match_numpy(logits):
    sec_logits, haz_logits = logits
    sec, haz = probabilities(sec_logits, haz_logits)
    want_sec = softmax(sec_logits.astype(np.float64)) if len(sec_logits) else sec_logits
    np.testing.assert_allclose(sec, want_sec, atol=1e-6)
    np.testing.assert_allclose(haz, _sigmoid64(haz_logits.astype(np.float64)), atol=1e-7)
    assert sec.dtype == haz.dtype == np.float32


# --------------------------------------------------------------------------- kernel vs onnxruntime


def _session(proto):
    return ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])


def _logit_difference(got, want) -> float:
    """Largest ``|got - want| / max(1, |want|)`` (the load probe's measure)."""
    return float(np.max(np.abs(got.astype(np.float64) - want) / np.maximum(1.0, np.abs(want))))


@pytest.mark.parametrize(("sizes", "consts"), [
    ((272, 64, H0, 64), (64.0, 16.0, 0.5, 1.0)),
    ((5, 3, 9, 2), (8.0, 4.0, 0.7, 0.5)),
    ((40, 17, 31, 11), (96.0, 24.0, 0.3, 2.0)),
], ids=["shipped-sizes", "tiny", "odd"])
def test_random_graphs_match_onnxruntime(sizes, consts):
    """Random weights of other sizes and other counter constants: the kernel follows what the
    file says (nothing hard-coded), logits and state within the probe's tolerance over 300
    steps with the state carried."""
    a, p, hid, d = sizes
    proto, _ = make_graph(a, p, hid, d, sum(sizes), 1.0, *consts)
    rng = np.random.default_rng(1)
    t = 300
    phase = np.cumsum(rng.uniform(0.05, 0.4, t))
    audio = rng.uniform(-2, 3, (t, a)).astype(np.float32)
    beat = np.column_stack([np.sin(2 * np.pi * phase), np.cos(2 * np.pi * phase),
                            rng.uniform(-1, 0, t), rng.random(t),
                            rng.random(t)]).astype(np.float32)
    state = np.concatenate([np.zeros(hid), [0.0, 1.0, consts[0] - 2, consts[1] - 1]])
    state = state.astype(np.float32)
    sec, haz, end = _session(proto).run(None, {"audio_features": audio[None],
                                               "beat_features": beat[None],
                                               "state_in": state[None]})
    graph = read_anticipator_graph(proto)
    buf = Buffers(graph)
    got_sec, got_haz = np.zeros((t, 8), np.float32), np.zeros((t, 5), np.float32)
    for i in range(t):
        buf.step(graph, audio[i].copy(), beat[i].copy(), state)
        got_sec[i], got_haz[i] = buf.sec_logits, buf.haz_logits
    assert state[-2] != consts[0] - 2 and state[-1] != consts[1] - 1  # the counters moved
    assert _logit_difference(got_sec, sec[0]) <= PROBE_TOL
    assert _logit_difference(got_haz, haz[0]) <= PROBE_TOL
    np.testing.assert_array_equal(state[-4:], end[0][-4:])
    assert np.abs(state - end[0]).max() <= PROBE_TOL


@pytest.fixture(scope="module")
def song_inputs(beatnet_models_dir):
    """A 60 s generated song (seed 7) through the live path (analysis clock, beat tracker,
    SlowStepInputs): 749 slow steps of real audio and beat features."""
    from fractalsync_models.training.song_generator import generate_song
    from fractalsync_tracking.analysis_clock import AnalysisClock
    from fractalsync_tracking.beat_tracker import BeatTracker
    from fractalsync_tracking.structure_inputs import SlowStepInputs

    song = generate_song(7, sample_rate=22050, duration_s=60.0)
    clock = AnalysisClock()
    beats = BeatTracker(clock=clock)
    inputs = clock.add_consumer(SlowStepInputs())
    audio, beat = [], []
    for i in range(0, len(song.audio), 1024):
        steps = inputs.take(beats.push(song.audio[i:i + 1024], 22050).states)
        audio.append(steps.audio_features.copy())
        beat.append(steps.beat_features.copy())
    return np.concatenate(audio), np.concatenate(beat)


def test_the_shipped_model_on_a_song_numba_equals_onnxruntime(song_inputs):
    audio, beat = song_inputs
    assert len(audio) > 700
    numba, onnxrt = Anticipator(), Anticipator(engine="onnxruntime")
    assert (numba.engine, onnxrt.engine) == ("numba", "onnxruntime")
    assert onnxrt.engine_note == "asked for" and "matches onnxruntime" in numba.engine_note
    # the logits of the kernel against the graph run over the whole song
    graph = read_anticipator_graph(SHIPPED)
    buf = Buffers(graph)
    state = np.zeros(graph.state_size, np.float32)
    sec_logits, haz_logits, end = _session(SHIPPED).run(
        None, {"audio_features": audio[None], "beat_features": beat[None],
               "state_in": state[None]})
    got = np.zeros((len(audio), 13), np.float32)
    for i in range(len(audio)):
        buf.step(graph, audio[i].copy(), beat[i].copy(), state)
        got[i] = np.concatenate([buf.sec_logits, buf.haz_logits])
    assert _logit_difference(got[:, :8], sec_logits[0]) <= PROBE_TOL
    assert _logit_difference(got[:, 8:], haz_logits[0]) <= PROBE_TOL
    assert np.abs(state - end[0]).max() <= PROBE_TOL
    assert state[-2] > 0 and state[-1] > 0  # the song counted beats and bars
    # the two engines' steps (probabilities and state) against each other and against run
    sec, haz, run_state = numba.run(audio, beat)
    for model in (numba, onnxrt):
        out = [model.step(a, b) for a, b in zip(audio, beat, strict=True)]
        assert np.abs(np.stack([s for s, _ in out]) - sec).max() <= 1e-5
        assert np.abs(np.stack([h for _, h in out]) - haz).max() <= 1e-5
        assert np.abs(model.state - run_state).max() <= 1e-5


# --------------------------------------------------------------------------- engines


def test_an_unknown_engine_is_refused():
    with pytest.raises(ValueError, match="engine must be one of"):
        Anticipator(engine="torch")


def test_a_graph_with_other_counter_constants_still_runs_on_numba(tmp_path):
    """A file whose constants differ from the torch model's (period, threshold, angles): the
    kernel reads them, so the probe passes and numba runs."""
    proto, _ = make_graph(272, 64, H0, 64, 3, 0.2, 32.0, 8.0, 0.7, 2.0)
    path = tmp_path / "other_constants.onnx"
    onnx.save(proto, path)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        model = Anticipator(path)
    assert model.engine == "numba"


def _head_sigmoid(proto):
    [n for n in proto.graph.node if n.op_type == "Relu"][-1].op_type = "Sigmoid"


def _fake_graph(proto):
    """The contract's tensors, but a graph the kernel cannot read (no initializers)."""
    del proto.graph.initializer[:]
    del proto.graph.node[:]
    proto.graph.node.extend([
        helper.make_node("ReduceSum", ["audio_features"], ["s"], axes=[2], keepdims=1),
        helper.make_node("Concat", ["s"] * 8, ["section_logits"], axis=2),
        helper.make_node("Identity", ["beat_features"], ["hazard_logits"]),
        helper.make_node("Identity", ["state_in"], ["state_out"]),
    ])  # fmt: skip
    proto.opset_import[0].version = 11  # ReduceSum with axes as an attribute


@pytest.mark.parametrize(("edit", "why"), [
    (_head_sigmoid, r"differs from onnxruntime by .* on the 96 probe steps"),
    (_fake_graph, "cannot read this graph"),
], ids=["other-computation", "unreadable"])
def test_a_graph_the_kernel_does_not_reproduce_runs_on_onnxruntime(tmp_path, edit, why):
    proto = onnx.ModelProto()
    proto.CopyFrom(SHIPPED)
    edit(proto)
    path = tmp_path / "perturbed.onnx"
    onnx.save(proto, path)
    with pytest.warns(EngineFallbackWarning, match=why):
        model = Anticipator(path)
    assert model.engine == "onnxruntime" and re.search(why, model.engine_note)
    rng = np.random.default_rng(4)
    audio, beat = rng.random((30, 272)).astype(np.float32), rng.random((30, 5)) - 0.5
    sec, haz, state = model.run(audio, beat)
    out = [model.step(a, b) for a, b in zip(audio, beat, strict=True)]
    assert np.abs(np.stack([s for s, _ in out]) - sec).max() <= 1e-6
    assert np.abs(np.stack([h for _, h in out]) - haz).max() <= 1e-6
    assert np.abs(model.state - state).max() <= 1e-6
    with pytest.warns(NonFiniteInputWarning):
        s, h = model.step(np.full(272, np.nan), np.full(5, np.inf))
    assert np.isfinite(s).all() and np.isfinite(h).all() and math.isclose(s.sum(), 1, abs_tol=1e-5)

