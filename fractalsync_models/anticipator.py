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

``run`` runs the graph under onnxruntime (one thread, sequential). ``step`` runs on the
engine chosen at load (:class:`Anticipator` ``engine``): by default the numba kernel of
:mod:`fractalsync_models.anticipator_kernel`, which reads every weight and constant of one step
from the same file (the ONNX graph stays the contract and the reference: the kernel is checked
against onnxruntime on probe steps at every load, and the model falls back to onnxruntime with
an :class:`EngineFallbackWarning` when it does not match), without onnxruntime's per-call
overhead (``benchmarks/bench_anticipator.py`` times both engines).

Non-finite inputs (either engine, and ``run``): NaN and ±inf (also float64 values beyond
float32's range) are replaced by 0 before the model runs, with a :class:`NonFiniteInputWarning`;
finite inputs are clipped to ±:data:`INPUT_LIMIT`. Zero is the model's own "no information"
value: all-zero audio features are silence (``log10(1 + 0)``, no flux), all-zero beat features
are a dropped beat state, which the model saw in training (robustness noise of
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

from .anticipator_kernel import (
    AnticipatorGraph,
    _sanitized_step,
    probabilities,
    probabilities_into,
    read_anticipator_graph,
    sanitize,
    step_into,
)
from .contract import load_contract, validate_onnx_model
from .crnn import ModelNotFoundError, _open_session

__all__ = ["DEFAULT_MODEL_PATH", "ENGINES", "PROBE_STEPS", "PROBE_TOL", "Anticipator",
           "EngineFallbackWarning", "NonFiniteInputWarning"]

DEFAULT_MODEL_PATH = Path(__file__).resolve().parent / "models" / "anticipator_v1.onnx"
N_AUDIO = 272  # contract frontend.dim
N_BEAT = 5  # contract beat_features.dim
N_SECTIONS = 8  # len(contract sections.labels)
N_HORIZONS = 5  # len(contract hazard.horizons_beats)
# The network's beat/bar counters, as the torch model builds them
# (fractalsync_models.training.anticipator_model imports these; the numba engine reads the
# exported values from the model file instead): the state (contract models.anticipator
# state_in.shape[-1]) is [GRU hidden (that size - 4), previous sin 2πφ, previous cos 2πφ,
# beat count mod 64, bar count mod 16].
COUNTER_STATE = 4
BEAT_PERIODS = (4, 8, 16, 32, 64)
BAR_PERIODS = (2, 4, 8, 16)
N_COUNTER = 2 * (len(BEAT_PERIODS) + len(BAR_PERIODS))
DOWNBEAT_THRESHOLD = 0.5
INPUT_LIMIT = 1e4
"""Inputs are clipped to [-INPUT_LIMIT, INPUT_LIMIT] (real features are within a few units)."""
_LIMIT = np.float32(INPUT_LIMIT)
#: ``Anticipator(engine=...)`` values.
ENGINES = ("numba", "onnxruntime")
#: Probe steps run through both engines at load, and the tolerance the numba kernel must meet.
PROBE_STEPS, PROBE_TOL = 96, 1e-5
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


class EngineFallbackWarning(RuntimeWarning):
    """``engine="numba"`` was asked for, but the numba kernel cannot read the model file or does
    not reproduce onnxruntime on the probe steps: ``step`` runs on onnxruntime (see
    :class:`Anticipator`)."""


def _probe_inputs(graph: AnticipatorGraph):
    """The fixed probe sequence (:data:`PROBE_STEPS` steps of ``graph``'s inputs) and its
    initial state, all float32.

    Audio: in the training corpus's range, ``audio_mean + u / audio_scale`` (``u`` smooth
    patterns in [-1.5, 3] standard deviations, the graph's own statistics). Beat: a phase
    advancing 0.15-0.4 beat per step (beat wraps) with downbeat_prob 0.9 on every second beat
    (bar counts) and 0.3 otherwise, two steps running backwards (no wrap), four all-zero steps
    (a dropped beat state). State: small GRU values, previous phase 0.9, the counters at 61
    beats and 13 bars, so both counters pass their periods (64, 16).
    """
    t = np.arange(PROBE_STEPS, dtype=np.float64)
    u = 0.75 + 2.25 * np.sin(t[:, None] * 0.37 + np.arange(graph.n_audio) * 0.11)
    audio = graph.audio_mean + u / graph.audio_scale
    phase = np.cumsum(0.15 + 0.25 * (np.sin(t * 1.3) + 1) / 2)
    phase[40:42] = phase[39] - np.array([0.1, 0.2])  # backwards: no wrap
    beat = np.stack([np.sin(2 * np.pi * phase), np.cos(2 * np.pi * phase),
                     np.log(0.5) + 0.2 * np.sin(t), 0.5 + 0.4 * np.cos(t),
                     np.where(np.floor(phase) % 2 == 0, 0.9, 0.3)], axis=1)
    beat[60:64] = 0.0
    hid = graph.hidden
    state = np.concatenate([0.3 * np.sin(np.arange(hid)), [np.sin(2 * np.pi * 0.9),
                                                          np.cos(2 * np.pi * 0.9), 61.0, 13.0]])
    return audio.astype(np.float32), beat.astype(np.float32), state.astype(np.float32)


def _probe_difference(got, want) -> float:
    """Largest of ``|got - want| / max(1, |want|)`` over the pairs of arrays (logits and state);
    inf when a value is not finite."""
    worst = 0.0
    for g, w in zip(got, want, strict=True):
        with np.errstate(invalid="ignore"):
            d = np.abs(g.astype(np.float64) - w) / np.maximum(1.0, np.abs(w))
        worst = max(worst, float(np.max(d, initial=0.0)) if np.isfinite(d).all() else math.inf)
    return worst


class Anticipator:
    """Stateful section and boundary-hazard model, one call per 80 ms slow step.

    Parameters
    ----------
    path : the ``.onnx`` model; default :data:`DEFAULT_MODEL_PATH` (the shipped model).
    contract : contract dict to validate against (default: the packaged v1).
    engine : ``"numba"`` (default) or ``"onnxruntime"``: what runs ``step`` (``run`` always
        runs the graph under onnxruntime). The engine that runs is in :attr:`engine`, the
        reason for a fallback in :attr:`engine_note`.

    Raises :class:`~fractalsync_models.crnn.ModelNotFoundError` (a FileNotFoundError) for a
    missing file, :class:`~fractalsync_models.contract.ContractError` (a ValueError) naming
    the problem for a file that is not ONNX, is truncated, has other tensor names, shapes or
    dtypes than ``models.anticipator``, or that onnxruntime cannot load; ValueError for an
    unknown ``engine``.

    Engines: ``"onnxruntime"`` runs the file's graph for each step (T = 1, the state handed
    over through preallocated IO bindings). ``"numba"`` runs the kernel of
    :mod:`fractalsync_models.anticipator_kernel`, which reads every weight and constant of one
    step from the same file and computes the same float32 function without onnxruntime's
    per-call overhead. It is used only if, at load, it reproduces onnxruntime on
    :data:`PROBE_STEPS` fixed probe steps run with the state carried (beat and bar wraps, both
    counters passing their periods, backwards phase, dropped beat features): section and hazard
    logits and the state within :data:`PROBE_TOL` (relative to ``max(1, |value|)``, i.e.
    absolute for values up to 1; the counters must agree exactly). Otherwise ``step`` runs on
    onnxruntime and an :class:`EngineFallbackWarning` says why (any contract-conforming graph
    still runs).
    """

    def __init__(self, path: str | os.PathLike = DEFAULT_MODEL_PATH, contract: dict | None = None,
                 engine: str = "numba"):
        if engine not in ENGINES:
            raise ValueError(f"engine must be one of {ENGINES}, got {engine!r}")
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
        self._session = _open_session(self.path)
        self._h = np.zeros(self.state_size, np.float32)
        self._h_out = np.zeros((1, self.state_size), np.float32)
        self._audio = np.zeros(N_AUDIO, np.float32)
        self._beat = np.zeros(N_BEAT, np.float32)
        self._logits = (np.zeros(N_SECTIONS, np.float32), np.zeros(N_HORIZONS, np.float32))
        self._sec = np.zeros(N_SECTIONS, np.float32)
        self._haz = np.zeros(N_HORIZONS, np.float32)
        #: Read-only views of the output buffers (what ``step(copy=False)`` gives).
        self._outputs = (self._sec.view(), self._haz.view())
        for v in self._outputs:
            v.flags.writeable = False
        self._binding = self._io_binding()
        self._graph: AnticipatorGraph | None = None
        #: The engine that runs ``step``: ``"numba"`` or ``"onnxruntime"``.
        self.engine = "onnxruntime"
        #: Why :attr:`engine` is what it is.
        self.engine_note = "asked for"
        if engine == "numba":
            self._use_kernel_if_it_matches(proto)

    def __repr__(self) -> str:
        return f"Anticipator(path={str(self.path)!r}, engine={self.engine!r})"

    def _io_binding(self):
        """The onnxruntime engine's binding: inputs from ``_audio``, ``_beat``, ``_h``; outputs
        into ``_logits`` and ``_h_out`` (no allocation per step)."""
        binding = self._session.io_binding()
        for name, buf in zip(_INPUTS, (self._audio.reshape(1, 1, -1),
                                       self._beat.reshape(1, 1, -1),
                                       self._h.reshape(1, -1)), strict=True):
            binding.bind_cpu_input(name, buf)
        outs = (self._logits[0].reshape(1, 1, -1), self._logits[1].reshape(1, 1, -1),
                self._h_out)
        for name, buf in zip(_OUTPUTS, outs, strict=True):
            binding.bind_output(name, "cpu", 0, np.float32, list(buf.shape), buf.ctypes.data)
        return binding

    def _use_kernel_if_it_matches(self, proto) -> None:
        """Switch ``step`` to the numba kernel if it reads the file and reproduces onnxruntime
        on the probe steps (class docstring); else warn and stay on onnxruntime."""
        try:
            graph = read_anticipator_graph(proto)
            if (graph.state_size, graph.n_audio, graph.n_beat, graph.n_sections,
                    graph.n_horizons) != (self.state_size, N_AUDIO, N_BEAT, N_SECTIONS,
                                          N_HORIZONS):
                raise ValueError(f"the graph's sizes (state {graph.state_size}) are not the "
                                 f"contract's (state {self.state_size})")
        except ValueError as exc:
            self._fall_back(f"the numba kernel cannot read this graph: {exc}")
            return
        audio, beat, state = _probe_inputs(graph)
        want = self._session.run(_OUTPUTS, {_INPUTS[0]: audio[None], _INPUTS[1]: beat[None],
                                            _INPUTS[2]: state[None]})
        scratch = graph.scratch()
        sec_logits = np.zeros((PROBE_STEPS, N_SECTIONS), np.float32)
        haz_logits = np.zeros((PROBE_STEPS, N_HORIZONS), np.float32)
        sec, haz = np.zeros(N_SECTIONS, np.float32), np.zeros(N_HORIZONS, np.float32)
        for i in range(PROBE_STEPS):
            step_into(graph, audio[i], beat[i], state, scratch, sec_logits[i], haz_logits[i],
                      sec, haz, INPUT_LIMIT)
        worst = _probe_difference((sec_logits, haz_logits, state),
                                  (want[0][0], want[1][0], want[2][0]))
        if not worst <= PROBE_TOL:
            self._fall_back(f"the numba kernel differs from onnxruntime by {worst:.3g} "
                            f"(> {PROBE_TOL:g}) on the {PROBE_STEPS} probe steps")
            return
        self._graph, self._scratch, self.engine = graph, scratch, "numba"
        self.engine_note = (f"matches onnxruntime within {worst:.2g} on the {PROBE_STEPS} "
                            "probe steps")

    def _fall_back(self, why: str) -> None:
        self.engine_note = why
        warnings.warn(f"{self.path.name}: {why}; step runs on onnxruntime",
                      EngineFallbackWarning, stacklevel=4)

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
        """Process a sequence of T slow steps on onnxruntime (either engine); does not touch
        the streaming state of ``step``.

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
        _warn_non_finite("audio_features", sanitize(audio.reshape(-1), INPUT_LIMIT))
        _warn_non_finite("beat_features", sanitize(beat.reshape(-1), INPUT_LIMIT))
        h0 = (np.zeros(self.state_size, np.float32) if state is None
              else _check_state(state, self.state_size))
        if t == 0:
            empty = np.zeros((0, N_SECTIONS), np.float32), np.zeros((0, N_HORIZONS), np.float32)
            return (*empty, h0)
        sec, haz, h = self._session.run(
            _OUTPUTS, {_INPUTS[0]: audio[None], _INPUTS[1]: beat[None], _INPUTS[2]: h0[None]}
        )
        return (*probabilities(sec[0], haz[0]), h[0])

    def step(self, audio_features, beat_features, *, copy: bool = True):
        """Process one slow step, carrying the state (on :attr:`engine`).

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
        if self._graph is not None:
            bad_audio, bad_beat = _sanitized_step(
                self._audio, self._beat, self._h, _LIMIT, self._graph.params,
                self._graph.layout, self._scratch, *self._logits, self._sec, self._haz)
        else:
            bad_audio = sanitize(self._audio, INPUT_LIMIT)
            bad_beat = sanitize(self._beat, INPUT_LIMIT)
            self._session.run_with_iobinding(self._binding)
            self._h[:] = self._h_out[0]
            probabilities_into(*self._logits, self._sec, self._haz)
        if bad_audio or bad_beat:
            _warn_non_finite("audio_features", bad_audio)
            _warn_non_finite("beat_features", bad_beat)
        if copy:
            return self._sec.copy(), self._haz.copy()
        return self._outputs


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
