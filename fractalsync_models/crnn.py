"""Runtime wrapper of the converted BeatNet CRNN (ONNX, onnxruntime on one thread).

``BeatNetCRNN.run`` processes a whole feature sequence (offline), ``step`` one 20 ms
frame at a time carrying the LSTM state (online), ``reset`` returns to the zero state.
Outputs are softmax probabilities in the contract's order ``[beat, downbeat, no-beat]``.

Design notes, measured with ``benchmarks/bench_crnn.py`` on the 2-core EPYC dev machine:
``step`` uses onnxruntime IOBinding on preallocated, double-buffered state: the bare call
took about 37 µs median per frame against 44 µs for a plain ``session.run`` (interleaved in
one process), and it allocates no outputs; the input checks add ~4 µs. Passing a
``RunOptions`` object to ``run_with_iobinding`` costs ~25 µs more, so none is passed.
A numba single-frame kernel was no faster (41-44 µs): a step streams the 1.6 MB of
float32 weights, more than the 1 MB L2 cache, so memory bandwidth sets the pace.
Not thread-safe: use one instance per stream and thread.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from .contract import ContractError, load_contract, validate_onnx_model
from .export_beatnet import VARIANTS, model_filename
from .paths import models_dir

N_FEATURES = 272
N_LAYERS = 2
HIDDEN = 150
_OUTPUTS = ["probs", "hN", "cN"]


class ModelNotFoundError(FileNotFoundError):
    """A converted model file does not exist; the message gives the command that creates it."""


def _finite_or_raise(x: np.ndarray, what: str, finite: np.ndarray | None = None) -> None:
    ok = np.isfinite(x, out=finite) if finite is not None else np.isfinite(x)
    if not ok.all():
        idx = tuple(int(i) for i in np.argwhere(~ok)[0])
        raise ValueError(f"{what} must be finite: element {idx} is {x[idx]}")


def resolve_model_path(variant: int = 1, path: str | os.PathLike | None = None) -> Path:
    """Path of a converted model: ``path``, or ``$FRACTALSYNC_HOME/models/beatnet_m{variant}.onnx``.

    Raises :class:`ModelNotFoundError` naming the command that creates a missing file, and
    ValueError for a variant other than 1, 2, 3.
    """
    if path is None:
        if isinstance(variant, bool) or not isinstance(variant, int) or variant not in VARIANTS:
            raise ValueError(f"variant must be one of {VARIANTS}, got {variant!r}")
        path = models_dir() / model_filename(variant)
        hint = f"fractalsync-export-beatnet --model {variant}"
    else:
        hint = "fractalsync-export-beatnet --model N --out DIR"
    path = Path(path)
    if not path.is_file():
        raise ModelNotFoundError(f"BeatNet CRNN model not found: {path}. Create it with: {hint}")
    return path


def _load_frame(frame, buf: np.ndarray, finite: np.ndarray) -> None:
    """Check one (272,) float frame and copy it into the float32 buffer ``buf`` (no allocation).

    Raises ValueError for a wrong shape or a non-finite value, TypeError for a non-float dtype.
    """
    frame = np.asarray(frame)
    if frame.shape != (N_FEATURES,):
        raise ValueError(f"frame: expected shape ({N_FEATURES},), got {frame.shape}")
    if frame.dtype.kind != "f":
        raise TypeError(f"frame: expected float features, got dtype {frame.dtype}")
    np.copyto(buf, frame, casting="same_kind")
    _finite_or_raise(buf, "frame", finite)


def _check_state(value) -> tuple[np.ndarray, np.ndarray]:
    """Validate an LSTM state ``(h, c)``, each of shape (2, 150) or (2, 1, 150), float, finite.

    Returns float32 copies of shape (2, 1, 150). Raises TypeError/ValueError naming h or c.
    """
    if not (isinstance(value, (tuple, list)) and len(value) == 2):
        raise TypeError("state must be a pair (h, c) of arrays of shape (2, 150)")
    out = []
    for name, a in zip(("h", "c"), value, strict=True):
        a = np.asarray(a)
        if a.dtype.kind != "f":
            raise TypeError(f"state {name}: expected a float array, got dtype {a.dtype}")
        if a.shape not in ((N_LAYERS, HIDDEN), (N_LAYERS, 1, HIDDEN)):
            raise ValueError(f"state {name}: expected shape (2, 150), got {a.shape}")
        a = a.astype(np.float32).reshape(N_LAYERS, 1, HIDDEN)
        _finite_or_raise(a, f"state {name}")
        out.append(a)
    return out[0], out[1]


class BeatNetCRNN:
    """Stateful BeatNet CRNN: 272 features per 20 ms frame -> [beat, downbeat, no-beat].

    Parameters
    ----------
    variant : 1, 2 or 3 (BeatNet's models trained without GTZAN, Ballroom, Rock); the file
        is ``$FRACTALSYNC_HOME/models/beatnet_m{variant}.onnx``.
    path : explicit ``.onnx`` path instead of ``variant``.
    contract : contract dict to validate against (default: the packaged v1).

    Raises :class:`ModelNotFoundError` (with the command that creates the model) if the
    file is missing, :class:`~fractalsync_models.contract.ContractError` if it does not
    satisfy ``models.beatnet_crnn`` of the contract.

    The session runs on one intra-op thread with sequential execution. ``step`` writes
    into preallocated input and state buffers.
    """

    def __init__(
        self,
        variant: int = 1,
        path: str | os.PathLike | None = None,
        contract: dict | None = None,
    ):
        import onnxruntime as ort

        self.path = resolve_model_path(variant, path)
        contract = load_contract() if contract is None else contract
        validate_onnx_model(self.path, "beatnet_crnn", contract)
        self.output_order = tuple(contract["models"]["beatnet_crnn"]["output_order"])

        options = ort.SessionOptions()
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.log_severity_level = 3
        try:
            self._session = ort.InferenceSession(
                str(self.path), options, providers=["CPUExecutionProvider"]
            )
        except Exception as exc:  # onnxruntime raises its own exception types
            raise ContractError(f"{self.path}: onnxruntime cannot load the model: {exc}") from None

        # step(): IOBinding on preallocated buffers; the state is double-buffered (h, c) pairs,
        # binding k reads pair k and writes pair 1 - k, so a step allocates nothing.
        self._frame = np.zeros((1, 1, N_FEATURES), np.float32)
        self._finite = np.zeros(N_FEATURES, bool)
        self._probs = np.zeros((1, 1, 3), np.float32)
        shape = (N_LAYERS, 1, HIDDEN)
        self._pairs = [(np.zeros(shape, np.float32), np.zeros(shape, np.float32)) for _ in range(2)]
        self._cur = 0
        self._bindings = [self._bind(k) for k in range(2)]

    def _bind(self, k: int):
        from onnxruntime import OrtValue

        ov = OrtValue.ortvalue_from_numpy  # wraps the numpy buffer, no copy
        binding = self._session.io_binding()
        binding.bind_ortvalue_input("features", ov(self._frame))
        binding.bind_ortvalue_input("h0", ov(self._pairs[k][0]))
        binding.bind_ortvalue_input("c0", ov(self._pairs[k][1]))
        binding.bind_ortvalue_output("probs", ov(self._probs))
        binding.bind_ortvalue_output("hN", ov(self._pairs[1 - k][0]))
        binding.bind_ortvalue_output("cN", ov(self._pairs[1 - k][1]))
        return binding

    def __repr__(self) -> str:
        return f"BeatNetCRNN(path={str(self.path)!r})"

    # ----------------------------------------------------------------------- state

    def reset(self) -> None:
        """Return the LSTM state to zeros (a fresh stream)."""
        for a in self._pairs[self._cur]:
            a.fill(0.0)

    @property
    def state(self) -> tuple[np.ndarray, np.ndarray]:
        """Copy of the LSTM state ``(h, c)``, each float32 of shape (2, 150) (layer, unit)."""
        h, c = self._pairs[self._cur]
        return h[:, 0].copy(), c[:, 0].copy()

    @state.setter
    def state(self, value) -> None:
        h, c = _check_state(value)
        self._pairs[self._cur][0][...] = h
        self._pairs[self._cur][1][...] = c

    # ----------------------------------------------------------------------- inference

    def step(self, frame, out: np.ndarray | None = None) -> np.ndarray:
        """Process one frame, carrying the LSTM state.

        Parameters
        ----------
        frame : (272,) float features of one 20 ms frame (float64 is cast to float32).
        out : optional (3,) float array to write into (avoids allocating the result); other
            shapes raise ValueError, non-float dtypes TypeError.

        Returns (3,) float32 probabilities [beat, downbeat, no-beat]. Raises ValueError for
        a wrong shape or a non-finite value (the state is then left unchanged), TypeError
        for a non-float dtype.
        """
        if out is not None:
            if getattr(out, "shape", None) != (3,):
                raise ValueError(f"out: expected a (3,) float array, got {out!r:.60}")
            if out.dtype.kind != "f":
                raise TypeError(f"out: expected a float array, got dtype {out.dtype}")
        _load_frame(frame, self._frame[0, 0], self._finite)
        # run_with_iobinding without a RunOptions object: passing one cost ~25 us per call
        self._session.run_with_iobinding(self._bindings[self._cur])
        self._cur = 1 - self._cur
        if out is None:
            return self._probs[0, 0].copy()
        out[...] = self._probs[0, 0]
        return out

    def run(self, features, state=None, return_state: bool = False):
        """Process a whole sequence; does not touch the streaming state of ``step``.

        Parameters
        ----------
        features : (T, 272) float features, T >= 0 frames at 50 frames/s.
        state : initial ``(h, c)`` (see :attr:`state`); default zeros.
        return_state : also return the final ``(h, c)``.

        Returns probs (T, 3) float32 [beat, downbeat, no-beat], or ``(probs, (h, c))``.
        """
        x = np.asarray(features)
        if x.ndim != 2 or x.shape[1] != N_FEATURES:
            raise ValueError(f"features: expected shape (T, {N_FEATURES}), got {x.shape}")
        if x.dtype.kind != "f":
            raise TypeError(f"features: expected float features, got dtype {x.dtype}")
        x = np.ascontiguousarray(x, dtype=np.float32)
        _finite_or_raise(x, "features")
        if state is None:
            h0 = np.zeros((N_LAYERS, 1, HIDDEN), np.float32)
            c0 = np.zeros((N_LAYERS, 1, HIDDEN), np.float32)
        else:
            h0, c0 = _check_state(state)
        if len(x) == 0:
            probs, h, c = np.zeros((0, 3), np.float32), h0, c0
        else:
            probs, h, c = self._session.run(_OUTPUTS, {"features": x[None], "h0": h0, "c0": c0})
            probs = probs[0]
        if return_state:
            return probs, (h[:, 0].copy(), c[:, 0].copy())
        return probs
