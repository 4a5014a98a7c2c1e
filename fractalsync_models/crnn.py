"""Runtime wrapper of the converted BeatNet CRNN (ONNX, onnxruntime on one thread).

``BeatNetCRNN.run`` processes a whole feature sequence (offline), ``step`` one 20 ms
frame at a time carrying the LSTM state (online), ``reset`` returns to the zero state.
Outputs are softmax probabilities in the contract's order ``[beat, downbeat, no-beat]``.

Two graphs of the same weights, both made by ``fractalsync-export-beatnet``: ``run`` uses the
sequence model ``beatnet_m{N}.onnx`` (two ONNX ``LSTM`` nodes, dynamic batch and time) through
onnxruntime. ``step`` runs the step model ``beatnet_m{N}_step.onnx`` next to it (one frame,
static shapes) as a numba kernel (:mod:`.crnn_kernel`) that reads the graph's initializers:
the step graph stays the contract (validated against ``contracts/v1.json``) and the
reference the kernel is tested against on every step (``tests/test_crnn_kernel.py``).

Design notes, measured with ``benchmarks/bench_crnn.py`` on the 2-core EPYC dev machine
(interleaved frame by frame in one process over 3000 real frames, input checks included):

- ``step`` through onnxruntime: the step graph took p50 36-38 µs per frame against 42-44 µs
  for the sequence graph run on one frame the same way (that graph spends the difference in
  the nodes that reshape [B,T] and split/concat the state); IOBinding on preallocated,
  double-buffered state beat a plain ``session.run`` (p50 37 against 45 µs); passing a
  ``RunOptions`` object to ``run_with_iobinding`` cost ~25 µs more.
- ``step`` through the numba kernel, in one run with another process busy on the second
  core: with input checks p50 30.9 against 48.4 µs for the IOBinding step graph, p99 78.9
  against 111.3 µs; unchecked (``_step_trusted`` against the bare IOBinding call) p50 25.7
  against 41.9 µs, p99 63.5 against 102.4 µs: 0.61-0.71 of the graph's time. A first, naive
  kernel was no faster (41-44 µs). What made the difference: one fused, aligned [600, 304]
  matrix per LSTM layer (``[W_ih | W_hh]`` rows, the four gates of a unit next to each other)
  read in a single pass with four float32 accumulators the compiler vectorises (the hot
  layer is then close to L2 bandwidth, ~8 µs), and sigmoid/tanh as a vectorised exp instead
  of five libm calls per unit (~3 µs saved per layer). ``np.dot`` (OpenBLAS sgemv) was about
  as fast on the matrix but may start BLAS threads, so hand loops are used.
- The input checks add 3-5 µs; ``_step_trusted`` skips them for callers that already hold a
  finite float32 frame.
- ``step`` and ``run`` are no longer the same numbers bit for bit (the step graph and the
  sequence graph were): two float32 evaluations, within 1e-6 per step from the same state,
  a few 1e-6 on the probabilities after 1500 frames carried freely.

Not thread-safe: use one instance per stream and thread.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from .contract import ContractError, load_contract, validate_onnx_model
from .crnn_kernel import HIDDEN, N_FEATURES, N_LAYERS, StepKernel
from .export_beatnet import VARIANTS, model_filename, step_model_path
from .paths import models_dir

_OUTPUTS = ["probs", "hN", "cN"]


class ModelNotFoundError(FileNotFoundError):
    """A converted model file does not exist; the message gives the command that creates it."""


def _finite_or_raise(x: np.ndarray, what: str, finite: np.ndarray | None = None) -> None:
    ok = np.isfinite(x, out=finite) if finite is not None else np.isfinite(x)
    if not ok.all():
        idx = tuple(int(i) for i in np.argwhere(~ok)[0])
        raise ValueError(f"{what} must be finite: element {idx} is {x[idx]}")


def _export_hint(variant: int, path: str | os.PathLike | None) -> str:
    """The command that creates the model files of ``variant`` (or of an explicit ``path``)."""
    if path is None:
        return f"fractalsync-export-beatnet --model {variant}"
    return "fractalsync-export-beatnet --model N --out DIR"


def resolve_model_path(variant: int = 1, path: str | os.PathLike | None = None) -> Path:
    """Path of a converted model: ``path``, or ``$FRACTALSYNC_HOME/models/beatnet_m{variant}.onnx``.

    Raises :class:`ModelNotFoundError` naming the command that creates a missing file, and
    ValueError for a variant other than 1, 2, 3.
    """
    if path is None:
        if isinstance(variant, bool) or not isinstance(variant, int) or variant not in VARIANTS:
            raise ValueError(f"variant must be one of {VARIANTS}, got {variant!r}")
        resolved = models_dir() / model_filename(variant)
    else:
        resolved = Path(path)
    if not resolved.is_file():
        raise ModelNotFoundError(
            f"BeatNet CRNN model not found: {resolved}. "
            f"Create it with: {_export_hint(variant, path)}"
        )
    return resolved


def _open_session(path: Path):
    """An onnxruntime session on one intra-op thread, sequential, all graph optimisations."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.log_severity_level = 3
    try:
        return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime raises its own exception types
        raise ContractError(f"{path}: onnxruntime cannot load the model: {exc}") from None


def _load_frame(frame, buf: np.ndarray, finite: np.ndarray) -> None:
    """Check one (272,) float frame and copy it into the float32 buffer ``buf`` (no allocation).

    Raises ValueError for a wrong shape or a non-finite value, TypeError for a non-float dtype.
    """
    frame = np.asarray(frame)
    if frame.shape != (N_FEATURES,):
        raise ValueError(f"frame: expected shape ({N_FEATURES},), got {frame.shape}")
    if frame.dtype.kind != "f":
        raise TypeError(f"frame: expected float features, got dtype {frame.dtype}")
    if frame.dtype == np.float32:
        np.copyto(buf, frame)
    else:
        with np.errstate(over="ignore"):  # beyond float32 becomes inf, refused just below
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
    variant : 1, 2 or 3 (BeatNet's models trained without GTZAN, Ballroom, Rock); the files
        are ``$FRACTALSYNC_HOME/models/beatnet_m{variant}.onnx`` (sequence model, for ``run``)
        and ``beatnet_m{variant}_step.onnx`` (step model, for ``step``).
    path : explicit sequence ``.onnx`` path instead of ``variant``; the step model is the file
        ``<stem>_step.onnx`` in the same directory (``a/b.onnx`` -> ``a/b_step.onnx``), which
        is how ``fractalsync-export-beatnet --out DIR`` writes them.
    contract : contract dict to validate against (default: the packaged v1).

    Raises :class:`ModelNotFoundError` (with the command that creates the models) if either
    file is missing, :class:`~fractalsync_models.contract.ContractError` if the models do not
    satisfy ``models.beatnet_crnn`` and ``models.beatnet_crnn_step`` of the contract or
    onnxruntime cannot load them.

    The ``run`` session runs on one intra-op thread with sequential execution. ``step`` is
    the numba kernel of :mod:`.crnn_kernel` on preallocated input, state and work buffers.
    """

    def __init__(
        self,
        variant: int = 1,
        path: str | os.PathLike | None = None,
        contract: dict | None = None,
    ):
        self.path = resolve_model_path(variant, path)
        contract = load_contract() if contract is None else contract
        validate_onnx_model(self.path, "beatnet_crnn", contract)
        self.output_order = tuple(contract["models"]["beatnet_crnn"]["output_order"])
        self._session = _open_session(self.path)
        self.step_path = step_model_path(self.path)
        if not self.step_path.is_file():
            raise ModelNotFoundError(
                f"BeatNet CRNN step model not found: {self.step_path} (it belongs next to "
                f"{self.path.name}). Create it with: {_export_hint(variant, path)}"
            )
        validate_onnx_model(self.step_path, "beatnet_crnn_step", contract)
        try:
            self._kernel = StepKernel(self.step_path)
        except ValueError as exc:  # an initializer missing or of the wrong shape
            raise ContractError(f"{self.step_path}: {exc}") from None
        # step(): _frame and _probs hold the checked copies
        self._frame = np.zeros(N_FEATURES, np.float32)
        self._finite = np.zeros(N_FEATURES, bool)
        self._probs = np.zeros(3, np.float32)

    def __repr__(self) -> str:
        return f"BeatNetCRNN(path={str(self.path)!r})"

    # ----------------------------------------------------------------------- state

    def reset(self) -> None:
        """Return the LSTM state to zeros (a fresh stream)."""
        self._kernel.reset()

    @property
    def state(self) -> tuple[np.ndarray, np.ndarray]:
        """Copy of the LSTM state ``(h, c)``, each float32 of shape (2, 150) (layer, unit)."""
        return self._kernel.state

    @state.setter
    def state(self, value) -> None:
        self._kernel.state = _check_state(value)

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
        _load_frame(frame, self._frame, self._finite)
        self._kernel.step(self._frame, self._probs)
        if out is None:
            return self._probs.copy()
        out[...] = self._probs
        return out

    def _step_trusted(self, frame: np.ndarray, out: np.ndarray) -> None:
        """``step`` without checks or allocation, for callers that checked their input.

        frame: C-contiguous float32 (272,) finite features (not checked: anything else gives
        wrong results or a numba type error); out: float32 (3,), receives [beat, downbeat,
        no-beat]. Carries the state as ``step`` does.
        """
        self._kernel.step(frame, out)

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
        with np.errstate(over="ignore"):  # beyond float32 becomes inf, refused just below
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
