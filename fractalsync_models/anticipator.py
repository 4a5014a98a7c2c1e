"""Runtime wrapper of the anticipator ONNX model (torch-free: onnxruntime and a numba kernel).

The anticipator runs once per slow step (4 analysis frames, 80 ms, 12.5 Hz) on the step's
audio features (272, the mean of its 4 BeatNet frames) and beat features (5: ``sin 2πφ``,
``cos 2πφ``, ``ln spb``, ``conf``, ``downbeat_prob``), carrying a recurrent state (the
contract's ``state_in`` size), and gives section probabilities over the contract's 8 labels
and the boundary hazard for the horizons 1, 2, 4, 8, 16 beats (``contracts/v1.json``
``models.anticipator``; probabilities are ``softmax(section_logits)`` and
``sigmoid(hazard_logits)``).

:class:`Anticipator` ``run`` processes a sequence (offline, or a block of steps), ``step`` one
slow step carrying the state internally, ``reset`` returns to the zero state (a fresh stream).
The model file is validated against the contract when it is loaded; inference reads the
``.onnx`` file and runs nothing else (no pickles, no Python code from the model directory).

``run`` runs the graph under onnxruntime (one thread, sequential). ``step`` runs a private numba
kernel (:func:`_step_kernel`) on the weights it reads from the same file's initializers
(:data:`KERNEL_WEIGHTS`): the ONNX graph stays the contract and the reference (checked on probe
steps at load; step == run within 1e-5 in the tests), without onnxruntime's per-call overhead
(``benchmarks/bench_anticipator.py``: the kernel step against one graph step).

Non-finite inputs: NaN and ±inf (also float64 values beyond float32's range) are replaced by 0
before the model runs, with a :class:`NonFiniteInputWarning`; finite inputs are clipped to
±:data:`INPUT_LIMIT`. Zero is the model's own "no
information" value: all-zero audio features are silence (``log10(1 + 0)``, no flux), all-zero
beat features are a dropped beat state, which the model saw in training (robustness noise of
:mod:`fractalsync_models.training.train_anticipator`).

The shipped model ``models/anticipator_v1.onnx`` (next to this module) and its model card
``anticipator_v1.json`` (training command, corpus seeds, held-out metrics, sha256) are made by
``python -m fractalsync_models.training.train_anticipator``.

Not thread-safe: use one instance per stream and thread.
"""

from __future__ import annotations

import math
import os
import warnings
from pathlib import Path

import numpy as np
from numba import njit

from .contract import ContractError, load_contract, validate_onnx_model
from .crnn import ModelNotFoundError, _open_session

__all__ = ["DEFAULT_MODEL_PATH", "Anticipator", "NonFiniteInputWarning"]

DEFAULT_MODEL_PATH = Path(__file__).resolve().parent / "models" / "anticipator_v1.onnx"
N_AUDIO = 272  # contract frontend.dim
N_BEAT = 5  # contract beat_features.dim
N_SECTIONS = 8  # len(contract sections.labels)
N_HORIZONS = 5  # len(contract hazard.horizons_beats)
# The network's beat/bar counters (fractalsync_models.training.anticipator_model, which
# imports these): the state (contract models.anticipator state_in.shape[-1]) is
# [GRU hidden (that size - 4), previous sin 2πφ, previous cos 2πφ, beat count mod 64,
# bar count mod 16].
COUNTER_STATE = 4
BEAT_PERIODS = (4, 8, 16, 32, 64)
BAR_PERIODS = (2, 4, 8, 16)
N_COUNTER = 2 * (len(BEAT_PERIODS) + len(BAR_PERIODS))
DOWNBEAT_THRESHOLD = 0.5
INPUT_LIMIT = 1e4
"""Inputs are clipped to [-INPUT_LIMIT, INPUT_LIMIT] (real features are within a few units)."""
_INPUTS = ("audio_features", "beat_features", "state_in")
_OUTPUTS = ["section_logits", "hazard_logits", "state_out"]


class NonFiniteInputWarning(RuntimeWarning):
    """NaN or ±inf in the anticipator's input was replaced by 0 (see the module docstring)."""


def _checked(x, what: str, shape: tuple[int, ...], want: str) -> np.ndarray:
    """``x`` as an array of real numbers of ``shape`` (no copy when it is one already).

    Raises ValueError for another shape (``want`` describes the expected one), TypeError for a
    non-numeric dtype.
    """
    a = np.asarray(x)
    if a.shape != shape:
        raise ValueError(f"{what}: expected shape {want}, got {a.shape}")
    if a.dtype.kind not in "fiu":
        raise TypeError(f"{what}: expected real numbers, got dtype {a.dtype}")
    return a


def _copy_in(a: np.ndarray, buf: np.ndarray) -> None:
    """Copy the real array ``a`` into the float32 array ``buf`` of its shape; values beyond
    float32's range become ±inf (then replaced by 0 with the other non-finite values)."""
    if a.dtype == np.float32:
        np.copyto(buf, a)
    else:
        with np.errstate(over="ignore"):
            np.copyto(buf, a, casting="unsafe")


def _warn_non_finite(what: str, bad: int) -> None:
    """The :class:`NonFiniteInputWarning` of ``bad`` replaced values of input ``what``, pointed
    at the caller of ``run`` or ``step`` (none when ``bad`` is 0)."""
    if bad:
        warnings.warn(f"{what}: {bad} non-finite value(s) replaced by 0", NonFiniteInputWarning,
                      stacklevel=3)


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


def _softmax(logits: np.ndarray) -> np.ndarray:
    e = np.exp(logits - logits.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def _sigmoid_np(logits: np.ndarray) -> np.ndarray:
    # exp of a non-positive number only: no overflow for large |logit|
    e = np.exp(-np.abs(logits))
    return np.where(logits >= 0, 1.0 / (1.0 + e), e / (1.0 + e)).astype(np.float32)


# --------------------------------------------------------------------------- step kernel

#: The graph initializers the step kernel reads (names given by the exporter,
#: ``fractalsync_models.training.train_anticipator``), in the kernel's argument order.
KERNEL_WEIGHTS = (
    "audio_mean", "audio_scale", "beat_mean", "beat_scale", "audio_proj.weight_t",
    "audio_proj.bias", "gru.W", "gru.R", "gru.B", "head.weight_t", "head.bias",
    "section_out.weight_t", "section_out.bias", "hazard_out.weight_t", "hazard_out.bias",
)  # fmt: skip


def read_kernel_weights(proto, state_size: int) -> tuple[np.ndarray, ...]:
    """The step kernel's weights from an anticipator ``onnx.ModelProto`` whose recurrent state
    has ``state_size`` floats, float32, C-contiguous, matrices as rows per output unit:
    audio_mean, audio_scale (272), beat_mean, beat_scale (5), proj_w (P, 272), proj_b (P), gru_w
    (3H, P+5+18), gru_r (3H, H), gru_wb, gru_rb (3H; gate rows z, r, h as in ONNX), head_w (D,
    H+18), head_b (D), sec_w (8, D), sec_b (8), haz_w (5, D), haz_b (5), with H = ``state_size -
    4`` (:data:`COUNTER_STATE`), then the counters' constants: angle_scale (9,) ``2π / period``
    for BEAT_PERIODS then BAR_PERIODS. Raises ValueError naming a missing initializer, a wrong
    shape or a GRU node that is not ``linear_before_reset=1`` with the default activations."""
    from onnx import helper, numpy_helper

    inits = {t.name: t for t in proto.graph.initializer}
    missing = [n for n in KERNEL_WEIGHTS if n not in inits]
    if missing:
        raise ValueError(
            f"not an anticipator graph of this runtime: initializers {missing} missing"
        )
    w = {n: numpy_helper.to_array(inits[n]).astype(np.float32) for n in KERNEL_WEIGHTS}
    grus = [n for n in proto.graph.node if n.op_type == "GRU"]
    attrs = {a.name: helper.get_attribute_value(a) for a in grus[0].attribute} if grus else {}
    if len(grus) != 1 or attrs.get("linear_before_reset") != 1 or "activations" in attrs:
        raise ValueError("not an anticipator graph of this runtime: expected one GRU node with "
                         "linear_before_reset=1 and the default activations")
    p = w["audio_proj.bias"].shape[0]
    d = w["head.bias"].shape[0]
    hidden = state_size - COUNTER_STATE
    h3 = 3 * hidden
    want = {
        "audio_mean": (N_AUDIO,), "audio_scale": (N_AUDIO,), "beat_mean": (N_BEAT,),
        "beat_scale": (N_BEAT,), "audio_proj.weight_t": (N_AUDIO, p), "audio_proj.bias": (p,),
        "gru.W": (1, h3, p + N_BEAT + N_COUNTER), "gru.R": (1, h3, hidden),
        "gru.B": (1, 2 * h3), "head.weight_t": (hidden + N_COUNTER, d), "head.bias": (d,),
        "section_out.weight_t": (d, N_SECTIONS),
        "section_out.bias": (N_SECTIONS,), "hazard_out.weight_t": (d, N_HORIZONS),
        "hazard_out.bias": (N_HORIZONS,),
    }  # fmt: skip
    for name, shape in want.items():
        if w[name].shape != shape:
            raise ValueError(f"initializer {name!r}: expected shape {shape}, got {w[name].shape}")
    c = np.ascontiguousarray
    return (
        w["audio_mean"], w["audio_scale"], w["beat_mean"], w["beat_scale"],
        c(w["audio_proj.weight_t"].T), w["audio_proj.bias"], c(w["gru.W"][0]), c(w["gru.R"][0]),
        c(w["gru.B"][0, :h3]), c(w["gru.B"][0, h3:]), c(w["head.weight_t"].T), w["head.bias"],
        c(w["section_out.weight_t"].T), w["section_out.bias"], c(w["hazard_out.weight_t"].T),
        w["hazard_out.bias"], _angle_scale(),
    )  # fmt: skip


def _angle_scale() -> np.ndarray:
    """(9,) float32 ``2π / period``, beat periods then bar periods (the graph's constants)."""
    return np.array([2 * np.pi / p for p in BEAT_PERIODS + BAR_PERIODS], np.float32)


@njit(cache=True, nogil=True)
def _sigmoid(x: float) -> float:
    if x >= 0.0:
        return 1.0 / (1.0 + math.exp(-x))
    e = math.exp(x)
    return e / (1.0 + e)


@njit(cache=True, nogil=True)
def _count(h: np.ndarray, beat: np.ndarray, hid: int, n_beat_periods: int,
           angle_scale: np.ndarray, k: np.ndarray) -> None:
    """The beat/bar counters of one step (no fast-math: the wrap test must round as the
    graph does): updates the counter state ``h[hid:hid+4]`` and writes the 18 counter features
    ``k`` (sin of the 9 angles, then their cos)."""
    s, c = beat[0], beat[1]
    s_prev, c_prev = h[hid], h[hid + 1]
    wrap = s_prev < 0 and s >= 0 and c_prev * s - s_prev * c > 0
    beats = h[hid + 2] + np.float32(1.0 if wrap else 0.0)
    bars = h[hid + 3] + np.float32(1.0 if wrap and beat[4] > DOWNBEAT_THRESHOLD else 0.0)
    p_beats = np.float32(BEAT_PERIODS[-1])
    p_bars = np.float32(BAR_PERIODS[-1])
    beats = beats - np.floor(beats / p_beats) * p_beats
    bars = bars - np.floor(bars / p_bars) * p_bars
    h[hid], h[hid + 1], h[hid + 2], h[hid + 3] = s, c, beats, bars
    n = angle_scale.shape[0]
    for i in range(n):
        angle = (beats if i < n_beat_periods else bars) * angle_scale[i]
        k[i] = math.sin(angle)
        k[n + i] = math.cos(angle)


@njit(cache=True, nogil=True, fastmath={"reassoc", "contract"})
def _step_kernel(audio, beat, h, a_mean, a_scale, b_mean, b_scale, proj_w, proj_b, gru_w,
                 gru_r, gru_wb, gru_rb, head_w, head_b, sec_w, sec_b, haz_w, haz_b, angle_scale,
                 norm, x, h_new, z, sec_out, haz_out):  # fmt: skip
    """One slow step of the exported graph, in place: ``h`` (state: H GRU units, then the 4
    counter values) becomes the new state, ``sec_out`` the section probabilities, ``haz_out``
    the hazard probabilities.

    audio (A,) and beat (5,) float32 finite inputs; weights as :func:`read_kernel_weights`;
    work buffers norm (A,), x (P+5+18,), h_new (H+18,), z (D,) float32. Float32 accumulation.
    """
    n_audio = audio.shape[0]
    for i in range(n_audio):
        norm[i] = (audio[i] - a_mean[i]) * a_scale[i]
    n_proj = proj_b.shape[0]
    for j in range(n_proj):
        acc = proj_b[j]
        for i in range(n_audio):
            acc += proj_w[j, i] * norm[i]
        x[j] = max(acc, np.float32(0.0))
    n_b = beat.shape[0]
    for i in range(n_b):
        x[n_proj + i] = (beat[i] - b_mean[i]) * b_scale[i]
    hid = gru_r.shape[1]
    n_k = 2 * angle_scale.shape[0]
    k = x[n_proj + n_b :]
    _count(h, beat, hid, len(BEAT_PERIODS), angle_scale, k)
    n_x = x.shape[0]
    for u in range(hid):  # ONNX GRU, gates z, r, h; linear_before_reset = 1
        gz = gru_wb[u] + gru_rb[u]
        gr = gru_wb[hid + u] + gru_rb[hid + u]
        gn = gru_wb[2 * hid + u]
        rn = gru_rb[2 * hid + u]
        for i in range(n_x):
            gz += gru_w[u, i] * x[i]
            gr += gru_w[hid + u, i] * x[i]
            gn += gru_w[2 * hid + u, i] * x[i]
        for j in range(hid):
            gz += gru_r[u, j] * h[j]
            gr += gru_r[hid + u, j] * h[j]
            rn += gru_r[2 * hid + u, j] * h[j]
        zu = _sigmoid(gz)
        n = math.tanh(gn + _sigmoid(gr) * rn)
        h_new[u] = (1.0 - zu) * n + zu * h[u]
    for u in range(hid):
        h[u] = h_new[u]
    for i in range(n_k):  # the head reads [h; k]
        h_new[hid + i] = k[i]
    for d in range(head_b.shape[0]):
        acc = head_b[d]
        for j in range(hid + n_k):
            acc += head_w[d, j] * h_new[j]
        z[d] = max(acc, np.float32(0.0))
    top = -np.inf
    for c in range(sec_b.shape[0]):
        acc = sec_b[c]
        for d in range(z.shape[0]):
            acc += sec_w[c, d] * z[d]
        sec_out[c] = acc
        top = max(top, acc)
    total = 0.0
    for c in range(sec_b.shape[0]):
        sec_out[c] = math.exp(sec_out[c] - top)
        total += sec_out[c]
    for c in range(sec_b.shape[0]):
        sec_out[c] /= total
    for k_ in range(haz_b.shape[0]):
        acc = haz_b[k_]
        for d in range(z.shape[0]):
            acc += haz_w[k_, d] * z[d]
        haz_out[k_] = _sigmoid(acc)


@njit(cache=True, nogil=True)
def _sanitized_step(audio, beat, h, limit, a_mean, a_scale, b_mean, b_scale, proj_w, proj_b,
                    gru_w, gru_r, gru_wb, gru_rb, head_w, head_b, sec_w, sec_b, haz_w, haz_b,
                    angle_scale, norm, x, h_new, z, sec_out, haz_out):  # fmt: skip
    """:func:`_sanitize` both inputs in place (``limit``), then :func:`_step_kernel`: one
    dispatch per slow step. Returns the counts of non-finite values replaced in ``audio`` and
    in ``beat``."""
    bad_audio = _sanitize(audio, limit)
    bad_beat = _sanitize(beat, limit)
    _step_kernel(audio, beat, h, a_mean, a_scale, b_mean, b_scale, proj_w, proj_b, gru_w, gru_r,
                 gru_wb, gru_rb, head_w, head_b, sec_w, sec_b, haz_w, haz_b, angle_scale, norm, x,
                 h_new, z, sec_out, haz_out)
    return bad_audio, bad_beat


class _StepKernel:
    """The step kernel with its weights, preallocated work buffers and output buffers."""

    def __init__(self, weights: tuple[np.ndarray, ...]):
        self.weights = weights
        n_x = weights[6].shape[1]
        self.work = (
            np.zeros(N_AUDIO, np.float32), np.zeros(n_x, np.float32),
            np.zeros(weights[7].shape[1] + N_COUNTER, np.float32),
            np.zeros(weights[10].shape[0], np.float32),
        )  # fmt: skip
        self.sec = np.zeros(N_SECTIONS, np.float32)
        self.haz = np.zeros(N_HORIZONS, np.float32)
        #: Read-only views of ``sec`` and ``haz`` (what ``Anticipator.step(copy=False)`` gives).
        self.outputs = (self.sec.view(), self.haz.view())
        for v in self.outputs:
            v.flags.writeable = False
        self._limit = np.float32(INPUT_LIMIT)

    def __call__(self, audio: np.ndarray, beat: np.ndarray, h: np.ndarray) -> tuple[int, int]:
        """audio (272,), beat (5,) float32 inputs, sanitized in place (NaN/inf -> 0, clipped to
        ±INPUT_LIMIT); h (H+4,) float32 state, updated in place; the probabilities land in
        ``self.sec`` and ``self.haz``. Returns the non-finite counts of audio and beat."""
        return _sanitized_step(audio, beat, h, self._limit, *self.weights, *self.work, self.sec,
                               self.haz)


class Anticipator:
    """Stateful section and boundary-hazard model, one call per 80 ms slow step.

    Parameters
    ----------
    path : the ``.onnx`` model; default :data:`DEFAULT_MODEL_PATH` (the shipped model).
    contract : contract dict to validate against (default: the packaged v1).

    Raises :class:`~fractalsync_models.crnn.ModelNotFoundError` (a FileNotFoundError) for a
    missing file, :class:`~fractalsync_models.contract.ContractError` (a ValueError) naming
    the problem for a file that is not ONNX, is truncated, has other tensor names, shapes or
    dtypes than ``models.anticipator``, is not the exporter's graph (the weights the step
    kernel reads), or that onnxruntime cannot load.

    ``run`` runs the graph under onnxruntime (one intra-op thread, sequential execution).
    ``step`` runs a numba kernel on the graph's own weights (initializers
    :data:`KERNEL_WEIGHTS`): the same float32 computation without onnxruntime's per-call
    overhead. At load the kernel is checked against the graph on 16 probe steps (ContractError
    beyond 1e-4), and ``tests/test_anticipator.py`` checks step == run within 1e-5.
    """

    def __init__(self, path: str | os.PathLike = DEFAULT_MODEL_PATH, contract: dict | None = None):
        self.path = Path(path)
        if not self.path.is_file():
            raise ModelNotFoundError(
                f"anticipator model not found: {self.path} (the shipped model is "
                f"{DEFAULT_MODEL_PATH}; train one with python -m "
                "fractalsync_models.training.train_anticipator)"
            )
        contract = load_contract() if contract is None else contract
        proto = validate_onnx_model(self.path, "anticipator", contract)
        spec = contract["models"]["anticipator"]
        #: Floats of the recurrent state (the contract's ``state_in`` [B, S]).
        self.state_size = int(spec["inputs"][2]["shape"][-1])
        self.section_labels = tuple(contract["sections"]["labels"])
        self.horizons_beats = tuple(contract["hazard"]["horizons_beats"])
        self.decimation = int(spec["decimation"])
        try:
            self._kernel = _StepKernel(read_kernel_weights(proto, self.state_size))
        except ValueError as exc:
            raise ContractError(f"{self.path}: {exc}") from None
        self._session = _open_session(self.path)
        self._h = np.zeros(self.state_size, np.float32)
        self._audio = np.zeros(N_AUDIO, np.float32)
        self._beat = np.zeros(N_BEAT, np.float32)
        self._probe()

    def __repr__(self) -> str:
        return f"Anticipator(path={str(self.path)!r})"

    def _probe(self) -> None:
        """Run 16 fixed steps through the kernel and the graph; ContractError if they differ
        by more than 1e-4 (a graph with the kernel's weight names but another computation)."""
        t = np.arange(16, dtype=np.float32)[:, None]
        audio = (np.abs(np.sin(t * 0.7 + np.arange(N_AUDIO) * 0.1)) * 2).astype(np.float32)
        beat = np.concatenate(
            [np.sin(t), np.cos(t), np.full_like(t, -0.7), np.full_like(t, 0.8), t % 4 == 0],
            axis=1,
        ).astype(np.float32)
        sec, haz, state = self.run(audio, beat)
        h = np.zeros(self.state_size, np.float32)
        err = 0.0
        for i in range(len(t)):
            self._kernel(audio[i], beat[i], h)
            err = max(err, np.abs(self._kernel.sec - sec[i]).max(),
                      np.abs(self._kernel.haz - haz[i]).max())
        err = max(err, np.abs(h - state).max())
        if not err <= 1e-4:
            raise ContractError(
                f"{self.path}: the step kernel does not reproduce the graph (difference {err:.3g} "
                "on the probe steps): not an anticipator graph of this runtime"
            )

    # ----------------------------------------------------------------------- state

    def reset(self) -> None:
        """Return the recurrent state to zeros (a fresh stream)."""
        self._h[:] = 0.0

    @property
    def state(self) -> np.ndarray:
        """Copy of the recurrent state, float32 (:attr:`state_size`,)."""
        return self._h.copy()

    @state.setter
    def state(self, value) -> None:
        self._h[:] = _check_state(value, self.state_size)

    # ----------------------------------------------------------------------- inference

    def run(self, audio_features, beat_features, state=None):
        """Process a sequence of T slow steps; does not touch the streaming state of ``step``.

        Parameters
        ----------
        audio_features : (T, 272) audio features per slow step, T >= 0.
        beat_features : (T, 5) beat features per slow step.
        state : (S,) initial recurrent state (S = :attr:`state_size`); default zeros.

        Returns ``(section_probs (T, 8), hazard_probs (T, 5), state (S,))``, float32: the
        probabilities of each step and the state after the last one.
        """
        a = np.asarray(audio_features)
        t = a.shape[0] if a.ndim == 2 else 0
        audio = np.zeros((t, N_AUDIO), np.float32)
        _copy_in(_checked(a, "audio_features", audio.shape,
                          f"({'T' if a.ndim != 2 else t}, {N_AUDIO})"), audio)
        beat = np.zeros((t, N_BEAT), np.float32)
        _copy_in(_checked(beat_features, "beat_features", beat.shape, f"({t}, {N_BEAT})"), beat)
        limit = np.float32(INPUT_LIMIT)
        _warn_non_finite("audio_features", _sanitize(audio.reshape(-1), limit))
        _warn_non_finite("beat_features", _sanitize(beat.reshape(-1), limit))
        h0 = (np.zeros(self.state_size, np.float32) if state is None
              else _check_state(state, self.state_size))
        if t == 0:
            empty = np.zeros((0, N_SECTIONS), np.float32), np.zeros((0, N_HORIZONS), np.float32)
            return (*empty, h0)
        sec, haz, h = self._session.run(
            _OUTPUTS, {_INPUTS[0]: audio[None], _INPUTS[1]: beat[None], _INPUTS[2]: h0[None]}
        )
        return _softmax(sec[0]), _sigmoid_np(haz[0]), h[0]

    def step(self, audio_features, beat_features, *, copy: bool = True):
        """Process one slow step, carrying the state.

        Parameters
        ----------
        audio_features : (272,) audio features of the step.
        beat_features : (5,) beat features of the step.
        copy : bool
            True (default): return new arrays. False: return read-only views of the model's
            output buffers, overwritten by the next ``step`` (no allocation: the live path's
            choice).

        Returns ``(section_probs (8,), hazard_probs (5,))``, float32.
        """
        _copy_in(_checked(audio_features, "audio_features", (N_AUDIO,), f"({N_AUDIO},)"),
                 self._audio)
        _copy_in(_checked(beat_features, "beat_features", (N_BEAT,), f"({N_BEAT},)"), self._beat)
        bad_audio, bad_beat = self._kernel(self._audio, self._beat, self._h)
        if bad_audio or bad_beat:
            _warn_non_finite("audio_features", bad_audio)
            _warn_non_finite("beat_features", bad_beat)
        if copy:
            return self._kernel.sec.copy(), self._kernel.haz.copy()
        return self._kernel.outputs


def _check_state(value, size: int) -> np.ndarray:
    """A (size,) finite float state as float32; ValueError/TypeError naming the problem."""
    a = np.asarray(value)
    if a.shape != (size,):
        raise ValueError(f"state: expected shape ({size},), got {a.shape}")
    if a.dtype.kind != "f":
        raise TypeError(f"state: expected a float array, got dtype {a.dtype}")
    if not np.isfinite(a).all():
        raise ValueError("state: must be finite")
    return a.astype(np.float32)
