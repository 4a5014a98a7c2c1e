"""Runtime wrapper of the anticipator ONNX model (torch-free, onnxruntime on one thread).

The anticipator runs once per slow step (4 analysis frames, 80 ms, 12.5 Hz) on the step's
audio features (272, the mean of its 4 BeatNet frames) and beat features (5: ``sin 2πφ``,
``cos 2πφ``, ``ln spb``, ``conf``, ``downbeat_prob``), carrying a recurrent state of 128 floats,
and gives section probabilities over the contract's 8 labels and the boundary hazard for the
horizons 1, 2, 4, 8, 16 beats (``contracts/v1.json`` ``models.anticipator``; probabilities are
``softmax(section_logits)`` and ``sigmoid(hazard_logits)``).

:class:`Anticipator` ``run`` processes a sequence (offline, or a block of steps), ``step`` one
slow step carrying the state internally, ``reset`` returns to the zero state (a fresh stream).
The model file is validated against the contract when it is loaded; inference reads the
``.onnx`` file and runs nothing else (no pickles, no Python code from the model directory).

Non-finite inputs: NaN and ±inf (also float64 values beyond float32's range) are replaced by 0
before the graph runs, with a :class:`NonFiniteInputWarning`. Zero is the model's own "no
information" value: all-zero audio features are silence (``log10(1 + 0)``, no flux), all-zero
beat features are a dropped beat state, which the model saw in training (robustness noise of
:mod:`fractalsync_models.training.train_anticipator`).

The shipped model ``models/anticipator_v1.onnx`` (next to this module) and its model card
``anticipator_v1.json`` (training command, corpus seeds, held-out metrics, sha256) are made by
``python -m fractalsync_models.training.train_anticipator``.

Not thread-safe: use one instance per stream and thread.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np

from .contract import load_contract, validate_onnx_model
from .crnn import ModelNotFoundError, _open_session

__all__ = ["DEFAULT_MODEL_PATH", "Anticipator", "NonFiniteInputWarning"]

DEFAULT_MODEL_PATH = Path(__file__).resolve().parent / "models" / "anticipator_v1.onnx"
N_AUDIO = 272
N_BEAT = 5
N_SECTIONS = 8
N_HORIZONS = 5
STATE = 128
_INPUTS = ("audio_features", "beat_features", "state_in")
_OUTPUTS = ["section_logits", "hazard_logits", "state_out"]


class NonFiniteInputWarning(RuntimeWarning):
    """NaN or ±inf in the anticipator's input was replaced by 0 (see the module docstring)."""


def _as_input(x, shape: tuple[int, ...], what: str) -> np.ndarray:
    """``x`` as a C-contiguous float32 array of ``shape`` with non-finite values set to 0.

    Raises ValueError for a wrong shape, TypeError for a non-numeric dtype.
    """
    a = np.asarray(x)
    if a.shape != shape:
        want = tuple("T" if d == -1 else d for d in shape)
        raise ValueError(f"{what}: expected shape {want}, got {a.shape}")
    if a.dtype.kind not in "fiu":
        raise TypeError(f"{what}: expected real numbers, got dtype {a.dtype}")
    with np.errstate(over="ignore"):  # beyond float32 becomes inf, replaced just below
        a = np.ascontiguousarray(a, dtype=np.float32)
    finite = np.isfinite(a)
    if not finite.all():
        warnings.warn(
            f"{what}: {int((~finite).sum())} non-finite value(s) replaced by 0",
            NonFiniteInputWarning,
            stacklevel=3,
        )
        a = np.where(finite, a, np.float32(0.0))
    return a


def _softmax(logits: np.ndarray) -> np.ndarray:
    e = np.exp(logits - logits.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def _sigmoid(logits: np.ndarray) -> np.ndarray:
    # exp of a non-positive number only: no overflow for large |logit|
    e = np.exp(-np.abs(logits))
    return np.where(logits >= 0, 1.0 / (1.0 + e), e / (1.0 + e)).astype(np.float32)


class Anticipator:
    """Stateful section and boundary-hazard model, one call per 80 ms slow step.

    Parameters
    ----------
    path : the ``.onnx`` model; default :data:`DEFAULT_MODEL_PATH` (the shipped model).
    contract : contract dict to validate against (default: the packaged v1).

    Raises :class:`~fractalsync_models.crnn.ModelNotFoundError` (a FileNotFoundError) for a
    missing file, :class:`~fractalsync_models.contract.ContractError` (a ValueError) naming
    the problem for a file that is not ONNX, is truncated, has other tensor names, shapes or
    dtypes than ``models.anticipator``, or that onnxruntime cannot load.
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
        validate_onnx_model(self.path, "anticipator", contract)
        spec = contract["models"]["anticipator"]
        self.section_labels = tuple(contract["sections"]["labels"])
        self.horizons_beats = tuple(contract["hazard"]["horizons_beats"])
        self.decimation = int(spec["decimation"])
        self._session = _open_session(self.path)
        self._state = np.zeros((1, STATE), np.float32)

    def __repr__(self) -> str:
        return f"Anticipator(path={str(self.path)!r})"

    # ----------------------------------------------------------------------- state

    def reset(self) -> None:
        """Return the recurrent state to zeros (a fresh stream)."""
        self._state = np.zeros((1, STATE), np.float32)

    @property
    def state(self) -> np.ndarray:
        """Copy of the recurrent state, float32 (128,)."""
        return self._state[0].copy()

    @state.setter
    def state(self, value) -> None:
        self._state = self._check_state(value)

    @staticmethod
    def _check_state(value) -> np.ndarray:
        a = np.asarray(value)
        if a.shape != (STATE,):
            raise ValueError(f"state: expected shape ({STATE},), got {a.shape}")
        if a.dtype.kind != "f":
            raise TypeError(f"state: expected a float array, got dtype {a.dtype}")
        if not np.isfinite(a).all():
            raise ValueError("state: must be finite")
        return a.astype(np.float32).reshape(1, STATE)

    # ----------------------------------------------------------------------- inference

    def _run(self, audio: np.ndarray, beat: np.ndarray, state: np.ndarray):
        sec, haz, out = self._session.run(
            _OUTPUTS, {_INPUTS[0]: audio[None], _INPUTS[1]: beat[None], _INPUTS[2]: state}
        )
        return _softmax(sec[0]), _sigmoid(haz[0]), out

    def run(self, audio_features, beat_features, state=None):
        """Process a sequence of T slow steps; does not touch the streaming state of ``step``.

        Parameters
        ----------
        audio_features : (T, 272) audio features per slow step, T >= 0.
        beat_features : (T, 5) beat features per slow step.
        state : (128,) initial recurrent state; default zeros.

        Returns ``(section_probs (T, 8), hazard_probs (T, 5), state (128,))``, float32: the
        probabilities of each step and the state after the last one.
        """
        a = np.asarray(audio_features)
        t = a.shape[0] if a.ndim == 2 else -1
        audio = _as_input(a, (t, N_AUDIO), "audio_features")
        beat = _as_input(beat_features, (len(audio), N_BEAT), "beat_features")
        h0 = np.zeros((1, STATE), np.float32) if state is None else self._check_state(state)
        if len(audio) == 0:
            empty = np.zeros((0, N_SECTIONS), np.float32), np.zeros((0, N_HORIZONS), np.float32)
            return (*empty, h0[0].copy())
        sec, haz, h = self._run(audio, beat, h0)
        return sec, haz, h[0]

    def step(self, audio_features, beat_features):
        """Process one slow step, carrying the state.

        Parameters
        ----------
        audio_features : (272,) audio features of the step.
        beat_features : (5,) beat features of the step.

        Returns ``(section_probs (8,), hazard_probs (5,))``, float32.
        """
        audio = _as_input(audio_features, (N_AUDIO,), "audio_features")
        beat = _as_input(beat_features, (N_BEAT,), "beat_features")
        sec, haz, self._state = self._run(audio[None], beat[None], self._state)
        return sec[0], haz[0]
