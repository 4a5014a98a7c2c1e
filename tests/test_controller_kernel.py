"""The trained controller's numba step kernel against onnxruntime running the same file.

Models: the shipped ``controller_v1.onnx`` and random-weight models of the same graph
(``onnx_controllers.controller_like``: every initializer, constants included, replaced), so the
kernel is checked to read the file, not to copy the training code's numbers. Inputs come
through ``ContractInputs`` (NaN, infinities and huge values included), each engine carries its
own state. Also: ``ContractInputs.convert_into`` against the numpy sanitisers of the analytic
controller, the loader's errors, and ``OnnxController``'s engines (same outputs, fallback to
onnxruntime for other graphs, the non-finite output fallback on the numba engine).
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from onnx_controllers import controller_like, random_controller

from examples.julia.controller import (
    SILENCE_MICRO,
    SPB_RANGE,
    ControlInputs,
    _nearest_is_downbeat,
    _sanitise_hazards,
    _sanitise_micro,
    _sanitise_probs,
)
from examples.julia.controller_io import ContractInputs
from examples.julia.controller_kernel import N_INPUTS, load_controller_kernel
from examples.julia.controller_onnx import (
    DEFAULT_MODEL_PATH,
    KernelMismatchWarning,
    NonFiniteOutputWarning,
    OnnxController,
)
from fractalsync_models.contract import ContractError

NAMES = ("micro_features", "beat_features", "section_probs", "hazard_probs")
STATE = 64
ROT_CONTROL, ANGLE_STATE, HUE = 3, STATE - 1, 4
TOL = 1e-5
#: Random weights are worse conditioned than the trained ones (masks that exponentiate 2 v,
#: large pulse gains): onnxruntime's own float32 rounding is larger there, the kernel
#: (float64 inside) is compared to it within this.
RANDOM_TOL = 5e-5


def tolerance(model: str) -> float:
    return TOL if model == "shipped" else RANDOM_TOL


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """name -> path: the shipped model and three random-weight models of its graph."""
    d = tmp_path_factory.mktemp("controller_kernel")
    out = {"shipped": DEFAULT_MODEL_PATH}
    for seed in (1, 2, 3):
        out[f"random{seed}"] = controller_like(d / f"random{seed}.onnx", DEFAULT_MODEL_PATH, seed)
    out["random1_no_spin"] = controller_like(d / "no_spin.onnx", DEFAULT_MODEL_PATH, 1,
                                             overrides={"speed_pick": np.zeros_like})
    return out


@pytest.fixture(scope="module")
def engines(models):
    """name -> (kernel, onnxruntime session)."""
    return {name: (load_controller_kernel(p),
                   ort.InferenceSession(str(p), providers=["CPUExecutionProvider"]))
            for name, p in models.items()}


def ort_step(session, x: np.ndarray, state: np.ndarray):
    feeds = dict(zip(NAMES, np.split(x[None], np.cumsum([7, 5, 8])[:3], axis=1), strict=True))
    feeds["state_in"] = state[None]
    control, state_out = session.run(None, feeds)
    return control[0], state_out[0]


def close(a: np.ndarray, b: np.ndarray, angles=(), periods=(), tol: float = TOL) -> float:
    """Largest |a - b| - tol * max(|b|, 1) (<= 0: within tolerance); ``angles``: indices
    compared modulo 2 pi, ``periods``: (index, period) pairs compared modulo the period."""
    d = np.abs(a.astype(np.float64) - b)
    for i in angles:
        d[i] = min(d[i], abs(d[i] - 2 * math.pi))
    for i, p in periods:
        d[i] = min(d[i], abs(d[i] - p))
    return float(np.max(d - tol * np.maximum(np.abs(b), 1.0)))


def as_vector(inputs: ControlInputs, convert: ContractInputs) -> np.ndarray:
    x = np.zeros((1, N_INPUTS), np.float32)
    ends = (0, 7, 12, 20, 25)
    convert.convert_into(inputs, *(x[:, ends[i]:ends[i + 1]] for i in range(4)))
    return x[0]


# ------------------------------------------------------------------ strategies

any_float = st.floats(allow_nan=True, allow_infinity=True)
wide = st.one_of(st.floats(-200.0, 12000.0), any_float,
                 st.sampled_from([0.0, -0.0, 1e300, -1e300, 1e-300]))


@st.composite
def control_inputs(draw) -> ControlInputs:
    return ControlInputs(
        t=0.0, phase=draw(st.one_of(st.floats(0.0, 1.0), any_float)),
        beat_in_bar=draw(st.integers(1, 8)), beats_per_bar=draw(st.integers(1, 8)),
        spb=draw(st.one_of(st.floats(0.1, 3.0), any_float)),
        conf=draw(st.one_of(st.floats(0.0, 1.0), any_float)),
        micro=tuple(draw(st.lists(wide, min_size=7, max_size=7))),
        section_probs=tuple(draw(st.lists(st.one_of(st.floats(0.0, 1.0), any_float),
                                          min_size=8, max_size=8))),
        hazard_probs=tuple(draw(st.lists(st.one_of(st.floats(0.0, 1.0), any_float),
                                         min_size=5, max_size=5))))


SILENCE = ControlInputs(0.0, 0.0, 1, 4, 0.5, 0.0, SILENCE_MICRO, (0.125,) * 8, (0.0,) * 5)
NAN = ControlInputs(0.0, math.nan, 1, 4, math.nan, math.nan, (math.nan,) * 7, (math.nan,) * 8,
                    (math.nan,) * 5)
INF = ControlInputs(0.0, math.inf, 4, 4, math.inf, -math.inf, (math.inf,) * 7,
                    (math.inf,) * 8, (-math.inf,) * 5)
HUGE = ControlInputs(0.0, 1e300, 4, 4, 1e300, 1e300, (1e300,) * 7, (1e300,) * 8, (1e300,) * 5)
BEAT = ControlInputs(0.0, 0.0, 1, 4, 0.5, 1.0, (-20.0, -25.0, -30.0, -45.0, 0.02, 2000.0, 0.9),
                     (0.0, 1.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0), (0.1, 0.2, 0.3, 0.4, 0.5))


# ------------------------------------------------------------------ kernel vs onnxruntime

@settings(max_examples=60, deadline=None)
@given(model=st.sampled_from(["shipped", "random1", "random2", "random3"]),
       frames=st.lists(control_inputs(), min_size=1, max_size=12),
       start=st.one_of(st.just(None), st.lists(st.floats(-3.0, 3.0, width=32),
                                                min_size=STATE, max_size=STATE)))
@example(model="shipped", frames=[SILENCE], start=None)
@example(model="shipped", frames=[NAN, INF, HUGE, BEAT, SILENCE], start=None)
@example(model="random1", frames=[HUGE, BEAT, NAN], start=[0.0] * STATE)
@example(model="random2", frames=[BEAT] * 3, start=[3.0] * STATE)
def test_the_kernel_computes_the_graph_of_the_file(engines, model, frames, start):
    kernel, session = engines[model]
    convert = ContractInputs()
    s_k = np.zeros(STATE, np.float32) if start is None else np.array(start, np.float32)
    s_o = s_k.copy()
    for inputs in frames:
        x = as_vector(inputs, convert)
        assert np.all(np.isfinite(x))
        c_k, s_k = kernel.step(x, s_k)
        c_o, s_o = ort_step(session, x, s_o)
        tol = tolerance(model)
        assert close(c_k, c_o, angles=[ROT_CONTROL], tol=tol) <= 0, (c_k, c_o)
        assert close(s_k, s_o, angles=[ANGLE_STATE], tol=tol) <= 0, (s_k, s_o)


@pytest.mark.parametrize("model", ["shipped", "random1_no_spin"])
def test_a_long_sequence_does_not_drift(engines, model):
    """5000 frames (83 s at 60 fps) of in-range inputs, each engine on its own state.

    The rotation angle is a pure integrator (``a += s2 . speed_pick``, float32 in both
    engines): a sum that rounds differently, by one float32 step of the angle, stays in it
    forever, so over long enough streams any two float32 implementations part by a random
    walk of such steps. The shipped model is checked with its rotation; the random model with
    its speed read-out zeroed, so that what is checked over 5000 frames is the GRU and the
    filters (the recurrences that contract), not the accumulated rounding of a sum."""
    kernel, session = engines[model]
    rng = np.random.default_rng(5)
    convert = ContractInputs()
    s_k = np.zeros(STATE, np.float32)
    s_o = s_k.copy()
    worst = -math.inf
    for k in range(5000):
        inputs = ControlInputs(
            k / 60, (k / 30) % 1.0, 1 + (k // 30) % 4, 4, 0.5, float(rng.uniform()),
            tuple(rng.uniform([-80, -80, -80, -80, 0, 0, 0], [0, 0, 0, 0, 2, 8000, 1])),
            tuple(rng.dirichlet(np.ones(8))), tuple(rng.uniform(size=5)))
        x = as_vector(inputs, convert)
        c_k, s_k = kernel.step(x, s_k)
        c_o, s_o = ort_step(session, x, s_o)
        worst = max(worst, close(c_k, c_o, angles=[ROT_CONTROL], tol=tolerance(model)),
                    close(s_k, s_o, angles=[ANGLE_STATE], tol=tolerance(model)))
    assert worst <= 0


def test_step_into_writes_the_given_buffers_and_step_checks_shapes(engines):
    kernel, _ = engines["shipped"]
    x = as_vector(BEAT, ContractInputs())
    control, state_out = np.full(8, np.nan, np.float32), np.full(STATE, np.nan, np.float32)
    kernel.step_into(x, np.zeros(STATE, np.float32), control, state_out)
    want_c, want_s = kernel.step(x, np.zeros(STATE))
    np.testing.assert_array_equal(control, want_c)
    np.testing.assert_array_equal(state_out, want_s)
    with pytest.raises(ValueError, match="inputs must have shape"):
        kernel.step(np.zeros(24), np.zeros(STATE))
    with pytest.raises(ValueError, match="state_in"):
        kernel.step(np.zeros(N_INPUTS), np.zeros(STATE + 1))


# ------------------------------------------------------------------ loader

def test_the_loader_refuses_other_graphs_naming_the_part(tmp_path):
    mlp = random_controller(tmp_path / "mlp.onnx")
    with pytest.raises(ContractError, match=r"mlp.onnx: not the trained controller's graph.*"
                                            r"initializers"):
        load_controller_kernel(mlp)
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"not a model")
    with pytest.raises(ContractError, match="junk.onnx: not a readable ONNX file"):
        load_controller_kernel(junk)
    wrong = controller_like(tmp_path / "wrong.onnx", DEFAULT_MODEL_PATH, 0,
                            overrides={"centre": lambda a: a[:7]})
    with pytest.raises(ContractError, match=r"centre of shape \(8,\), got \(7,\)"):
        load_controller_kernel(wrong)


# ------------------------------------------------------------------ ContractInputs

def reference_convert(inputs: ControlInputs, spb: float):
    """The conversion written with the analytic controller's numpy sanitisers (float64, then
    float32): the four (1, n) vectors and the held spb."""
    if math.isfinite(inputs.spb) and inputs.spb > 0:
        spb = min(max(inputs.spb, SPB_RANGE[0]), SPB_RANGE[1])
    phase, conf, down = 0.0, 0.0, 0.0
    if math.isfinite(inputs.phase) and math.isfinite(inputs.conf):
        phase = min(inputs.phase % 1.0, math.nextafter(1.0, 0.0))
        conf = min(max(inputs.conf, 0.0), 1.0)
        down = float(_nearest_is_downbeat(phase, inputs.beat_in_bar, inputs.beats_per_bar))
    a = 2.0 * math.pi * phase
    section = _sanitise_probs(inputs.section_probs)
    vectors = (_sanitise_micro(inputs.micro), [math.sin(a), math.cos(a), math.log(spb), conf,
                                               down],
               section, _sanitise_hazards(inputs.hazard_probs))
    return tuple(np.asarray(v, np.float64).astype(np.float32)[None] for v in vectors), spb


@settings(max_examples=200, deadline=None)
@given(frames=st.lists(control_inputs(), min_size=1, max_size=6))
@example(frames=[SILENCE, NAN, INF, HUGE, BEAT])
# finite section values whose plain sum would overflow: scaled by the peak, they read as uniform
@example(frames=[ControlInputs(0.0, 0.0, 1, 4, 0.5, 1.0, section_probs=(1e308,) * 8)])
def test_convert_into_matches_the_numpy_sanitisers(frames):
    convert, spb = ContractInputs(), 0.5
    buffer = np.full((1, N_INPUTS), np.nan, np.float32)
    views = (buffer[:, 0:7], buffer[:, 7:12], buffer[:, 12:20], buffer[:, 20:25])
    again = ContractInputs()
    for inputs in frames:
        want, spb = reference_convert(inputs, spb)
        convert.convert_into(inputs, *views)
        for got, ref in zip(views, want, strict=True):
            np.testing.assert_array_equal(got, ref)
        for got, ref in zip(again.convert(inputs), want, strict=True):
            assert got.dtype == np.float32
            np.testing.assert_array_equal(got, ref)


def test_convert_into_names_a_bad_buffer():
    convert = ContractInputs()
    good = [np.zeros((1, n), np.float32) for n in (7, 5, 8, 5)]
    for i, name in enumerate(("micro", "beat", "section", "hazard")):
        for bad in (np.zeros((1, good[i].shape[1]), np.float64),
                    np.zeros(good[i].shape[1], np.float32),
                    np.zeros((1, good[i].shape[1] + 1), np.float32)):
            args = list(good)
            args[i] = bad
            with pytest.raises(ValueError, match=f"{name} must be a writable float32"):
                convert.convert_into(SILENCE, *args)
    frozen = np.zeros((1, 7), np.float32)
    frozen.flags.writeable = False
    with pytest.raises(ValueError, match="micro"):
        convert.convert_into(SILENCE, frozen, *good[1:])
    with pytest.raises(TypeError, match="ControlInputs"):
        convert.convert_into((0.0,) * 7, *good)


# ------------------------------------------------------------------ OnnxController engines

def song_like_frames(n: int, seed: int) -> list[ControlInputs]:
    rng = np.random.default_rng(seed)
    out = []
    for k in range(n):
        bad = rng.uniform() < 0.02  # now and then a frame with missing conditioning
        out.append(ControlInputs(
            k / 60, math.nan if bad else (k / 28) % 1.0, 1 + (k // 28) % 4, 4,
            0.47, 0.9, tuple(rng.uniform([-80, -80, -80, -80, 0, 0, 0],
                                         [0, 0, 0, 0, 2, 8000, 1])),
            tuple(rng.dirichlet(np.ones(8))), (math.nan,) * 5 if bad else
            tuple(rng.uniform(size=5))))
    return out


def test_the_shipped_model_runs_on_numba_and_agrees_with_onnxruntime():
    fast, ref = OnnxController(), OnnxController(engine="onnxruntime")
    assert fast.engine == "numba" and "matches onnxruntime" in fast.engine_note
    assert ref.engine == "onnxruntime"
    worst = -math.inf
    for x in song_like_frames(1800, seed=3):
        worst = max(worst, close(fast.step(x), ref.step(x), angles=[ROT_CONTROL],
                                 periods=[(HUE, 1.0)]))
    assert worst <= 0
    assert fast.nonfinite_frames == ref.nonfinite_frames == 0
    fast.reset()
    ref.reset()
    np.testing.assert_allclose(fast.step(SILENCE), ref.step(SILENCE), atol=TOL)


def test_an_unknown_engine_is_refused():
    with pytest.raises(ValueError, match="engine must be one of"):
        OnnxController(engine="torch")


def test_another_graph_runs_on_onnxruntime_and_says_why(tmp_path):
    ctl = OnnxController(random_controller(tmp_path / "mlp.onnx"))
    assert ctl.engine == "onnxruntime"
    assert "cannot run this graph" in ctl.engine_note and "initializers" in ctl.engine_note
    assert "engine='onnxruntime'" in repr(ctl)


def test_non_finite_output_falls_back_the_same_on_both_engines(tmp_path):
    """A random model of the controller graph with a huge pulse bump at phase 0: frames far
    from the beat overflow it (exp -> inf, then NaN controls) on both engines."""
    def huge_bump_at_zero(k):
        k[0] = 1e6
        return k

    def bump_at_zero(u):
        u[:, 0] = (0.0, 1.0)
        return u

    path = controller_like(tmp_path / "nan.onnx", DEFAULT_MODEL_PATH, 4, overrides={
        "bump_k": huge_bump_at_zero, "bump_u": bump_at_zero,
        "conf_pick": lambda c: np.array([0, 0, 0, 1, 0])})
    with warnings.catch_warnings():
        warnings.simplefilter("error", KernelMismatchWarning)
        fast = OnnxController(path)
    ref = OnnxController(path, engine="onnxruntime")
    assert fast.engine == "numba"
    on_beat = ControlInputs(0.0, 0.0, 1, 4, 0.5, 1.0)
    off_beat = ControlInputs(0.0, 0.5, 1, 4, 0.5, 1.0)
    frames = [on_beat] * 5 + [off_beat] * 3 + [on_beat] * 4 + [off_beat] + [on_beat] * 2
    with pytest.warns(NonFiniteOutputWarning):
        got = [fast.step(x) for x in frames]
    with pytest.warns(NonFiniteOutputWarning):
        want = [ref.step(x) for x in frames]
    assert fast.nonfinite_frames == ref.nonfinite_frames == 4
    for g, w in zip(got, want, strict=True):
        assert close(g, w, angles=[ROT_CONTROL], periods=[(HUE, 1.0)], tol=RANDOM_TOL) <= 0
    np.testing.assert_array_equal(got[5], got[4])  # the last good control held
    # after the bad frames the state restarts from zeros: as a fresh stream from that frame
    fresh = OnnxController(path)
    np.testing.assert_array_equal(got[8], fresh.step(on_beat))


def test_a_graph_the_kernel_reads_but_does_not_reproduce_runs_on_onnxruntime(tmp_path):
    """The shipped graph with the targets' Tanh replaced by Softsign: every part the kernel
    reads is there, the function is another; the load-time probe sees it."""
    model = onnx.load(str(DEFAULT_MODEL_PATH))
    (tanh,) = [n for n in model.graph.node if n.op_type == "Tanh"]
    tanh.op_type = "Softsign"
    path = tmp_path / "softsign.onnx"
    onnx.save(model, str(path))
    load_controller_kernel(path)  # reads
    with pytest.warns(KernelMismatchWarning, match="differs from onnxruntime"):
        ctl = OnnxController(path)
    assert ctl.engine == "onnxruntime" and "differs from onnxruntime" in ctl.engine_note
    ref = OnnxController(path, engine="onnxruntime")
    for x in song_like_frames(20, seed=1):
        np.testing.assert_array_equal(ctl.step(x), ref.step(x))
