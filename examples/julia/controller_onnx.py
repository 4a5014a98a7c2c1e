"""The trained controller at run time: an ONNX model stepped once per render frame.

:class:`OnnxController` has the interface of
:class:`~examples.julia.controller.AnalyticController`: ``step(ControlInputs)`` returns the
control vector, float32 (8,) in ``CONTROL_NAMES`` order within ``CONTROL_RANGES``, and
``reset()`` starts a fresh stream. It runs a model with the contract's ``controller`` tensors
(``contracts/v1.json`` ``models.controller``): inputs ``micro_features [B, 7]``,
``beat_features [B, 5]``, ``section_probs [B, 8]``, ``hazard_probs [B, 5]``, ``state_in
[B, 64]``; outputs ``control [B, 8]``, ``state_out [B, 64]``; here B = 1.

* **Inputs**: one :class:`~examples.julia.controller_io.ContractInputs` converts each frame's
  ``ControlInputs`` to the four vectors (the same conversion the training data used; it
  sanitises non-finite and out-of-range values), copied into preallocated buffers.
* **State**: ``state_out`` of a frame is ``state_in`` of the next, zeros at the start and after
  ``reset()``. The model is called once per ``step``, whatever the time between steps: the
  contract's rate is one call per 60 Hz render frame (``ControlInputs.t`` is not an input).
* **Outputs**: rotation (radians) and hue (turns) are periodic: they are wrapped into
  ``[-pi, pi)`` and ``[0, 1)``; the other controls are clipped into ``CONTROL_RANGES``.
* **Non-finite output** (documented fallback): when ``control`` or ``state_out`` holds a NaN or
  an infinity, the step returns the last good control (before any: the neutral control of
  :func:`~examples.julia.controller.to_params`: c = 0, zoom 1, rotation 0, hue 0, saturation
  1, brightness 1, detail 0.5) and the state goes back to zeros, so one bad frame cannot poison
  the ones after it. The first such frame raises a :class:`NonFiniteOutputWarning`; all are
  counted in ``nonfinite_frames``.
* **Loading**: the file is checked against the contract (:func:`validate_onnx_model`), opened by
  onnxruntime on one intra-op thread and run once on a zero frame. A missing file is a
  ``ModelNotFoundError`` (a ``FileNotFoundError``); an unreadable or non-conforming one, or one
  that does not run on a batch of one, a ``ContractError`` (a ``ValueError``); every message
  names the file.
* **Engines**: ``engine="numba"`` (default) steps the numba kernel of
  :mod:`~examples.julia.controller_kernel`, which computes the trained controller's graph from
  the file's own weights and constants; ``engine="onnxruntime"`` runs the file through
  onnxruntime (the reference; the contract check at load always runs it). The kernel is used
  only when the file holds the trained controller's graph (``ControllerNet`` of
  ``controller_training/model.py``) and reproduces onnxruntime on 32 probe frames (state
  carried, within 1e-4); otherwise, with ``engine="numba"``, the model runs on onnxruntime
  (any contract-conforming graph still runs): ``engine`` says which one runs and
  ``engine_note`` why; a graph the kernel reads but does not reproduce also raises a
  :class:`KernelMismatchWarning`. Both engines agree to ~1e-6 (``tests/test_controller_kernel.py``).
* **Speed**: inputs are converted into one preallocated buffer
  (:meth:`~examples.julia.controller_io.ContractInputs.convert_into`); the state alternates
  between two buffers (A -> B, B -> A) that both engines write in place, onnxruntime through
  two prepared IO bindings, so a step allocates no arrays and copies no state
  (``benchmarks/bench_controller.py`` measures the cost per frame of both engines).

Not thread-safe: one instance per stream and thread.
"""

from __future__ import annotations

import math
import os
import warnings
from pathlib import Path

import numpy as np
from numba import njit

import fractalsync_models
from examples.julia.controller import _HI, _LO, _NEUTRAL, CONTROL_NAMES, ControlInputs
from examples.julia.controller_io import ContractInputs
from examples.julia.controller_kernel import N_INPUTS, load_controller_kernel
from fractalsync_models.contract import ContractError, load_contract, validate_onnx_model
from fractalsync_models.crnn import ModelNotFoundError, _open_session

__all__ = ["DEFAULT_MODEL_PATH", "ENGINES", "KernelMismatchWarning", "NonFiniteOutputWarning",
           "OnnxController"]

#: The shipped trained controller, in the fractalsync_models package (its model card
#: ``controller_v1.json`` next to it gives the command that made it).
DEFAULT_MODEL_PATH = Path(fractalsync_models.__file__).resolve().parent / "models" \
    / "controller_v1.onnx"
_INPUTS = ("micro_features", "beat_features", "section_probs", "hazard_probs")
_ROTATION, _HUE = CONTROL_NAMES.index("rotation"), CONTROL_NAMES.index("hue")
#: ``OnnxController(engine=...)`` values.
ENGINES = ("numba", "onnxruntime")
_PROBE_FRAMES, _PROBE_TOL = 32, 1e-4


class KernelMismatchWarning(RuntimeWarning):
    """The numba kernel read the model file but did not reproduce onnxruntime on the probe
    frames; the controller runs on onnxruntime (see the module docstring)."""


class NonFiniteOutputWarning(RuntimeWarning):
    """The controller model gave a non-finite output; the last good control was held and the
    state reset (see the module docstring)."""


@njit(cache=True, nogil=True)
def _finish(control: np.ndarray, state: np.ndarray, last: np.ndarray, lo: np.ndarray,
            hi: np.ndarray, rotation: int, hue: int) -> bool:
    """True when ``control`` (8,) and ``state`` (n,) are all finite; then ``last`` (8,) receives
    ``control`` with ``control[rotation]`` wrapped into [-pi, pi), ``control[hue]`` into [0, 1)
    and every value clipped into ``[lo, hi]``. False (``last`` untouched) otherwise."""
    for i in range(control.shape[0]):
        if not math.isfinite(control[i]):
            return False
    for i in range(state.shape[0]):
        if not math.isfinite(state[i]):
            return False
    for i in range(control.shape[0]):
        v = np.float64(control[i])
        if i == rotation:
            v = (v + math.pi) % (2.0 * math.pi) - math.pi
        elif i == hue:
            v = v % 1.0
        last[i] = min(max(v, lo[i]), hi[i])
    return True


def finish_control(control, state, last: np.ndarray) -> bool:
    """The output step of :meth:`OnnxController.step` on plain arrays.

    ``control``: (8,) numbers in ``CONTROL_NAMES`` order; ``state``: (n,) numbers (the model's
    ``state_out``), both taken as float32 as the model gives them; ``last``: a writable
    float32 (8,) array. When every value of ``control`` and ``state`` is finite, ``last``
    receives ``control`` with the rotation wrapped into [-pi, pi), the hue into [0, 1) and
    every value clipped into ``CONTROL_RANGES``, and the result is True; otherwise it is
    False and ``last`` is left as it was. ValueError for wrong shapes or a ``last`` that is
    not a writable float32 (8,) array.
    """
    with np.errstate(over="ignore"):  # beyond float32's range: inf, i.e. not finite
        c = np.ascontiguousarray(control, np.float32)
        s = np.ascontiguousarray(state, np.float32)
    if c.shape != (len(CONTROL_NAMES),) or s.ndim != 1:
        raise ValueError(f"control must have shape ({len(CONTROL_NAMES)},) and state be 1-D, "
                         f"got {c.shape} and {s.shape}")
    if not isinstance(last, np.ndarray) or last.dtype != np.float32 \
            or last.shape != (len(CONTROL_NAMES),) or not last.flags.writeable:
        raise ValueError("last must be a writable float32 array of shape (8,)")
    return bool(_finish(c, s, last, _LO, _HI, _ROTATION, _HUE))


def _probe_difference(a: np.ndarray, b: np.ndarray, angles) -> float:
    """Largest difference between the float32 vectors ``a`` and ``b``, angles (the indices
    ``angles``, radians) modulo 2 pi; non-finite values must agree exactly (NaN with NaN),
    else the difference is infinite."""
    finite = np.isfinite(a) & np.isfinite(b)
    if not np.array_equal(a[~finite], b[~finite], equal_nan=True):
        return math.inf
    diff = np.where(finite, np.abs(np.where(finite, a, 0.0) - np.where(finite, b, 0.0)), 0.0)
    for i in angles:
        diff[i] = min(diff[i], abs(diff[i] - 2 * math.pi))
    return float(np.max(diff))


class OnnxController:
    """A trained controller model, stepped once per render frame (see the module docstring).

    Parameters
    ----------
    path : the ``.onnx`` file (default :data:`DEFAULT_MODEL_PATH`).
    contract : a contract dict (default: the packaged ``contracts/v1.json``).
    engine : ``"numba"`` (default) or ``"onnxruntime"`` (see the module docstring); the engine
        that runs is in the ``engine`` attribute, the reason for a fallback in ``engine_note``.
    """

    def __init__(self, path: str | os.PathLike | None = None, contract: dict | None = None,
                 engine: str = "numba"):
        if engine not in ENGINES:
            raise ValueError(f"engine must be one of {ENGINES}, got {engine!r}")
        self.path = Path(DEFAULT_MODEL_PATH if path is None else path)
        if not self.path.is_file():
            raise ModelNotFoundError(
                f"controller model not found: {self.path} (the shipped one is "
                f"fractalsync_models/models/{DEFAULT_MODEL_PATH.name})")
        contract = load_contract() if contract is None else contract
        validate_onnx_model(self.path, "controller", contract)
        spec = contract["models"]["controller"]
        sizes = {t["name"]: t["shape"][-1] for t in spec["inputs"] + spec["outputs"]}
        self._session = _open_session(self.path)
        ends = np.cumsum([0] + [sizes[name] for name in _INPUTS])
        self._x = np.zeros((1, int(ends[-1])), np.float32)  # the four inputs, one buffer
        self._inputs = {name: self._x[:, ends[i]:ends[i + 1]] for i, name in enumerate(_INPUTS)}
        self._views = tuple(self._inputs.values())
        self._state = (np.zeros((1, sizes["state_in"]), np.float32),
                       np.zeros((1, sizes["state_out"]), np.float32))
        self._control = np.zeros((1, sizes["control"]), np.float32)
        self._bindings = tuple(self._binding(self._state[i], self._state[1 - i])
                               for i in (0, 1))
        self._convert = ContractInputs()
        self.nonfinite_frames = 0
        try:  # one probe frame: a model that cannot run on a batch of one fails here
            self._session.run_with_iobinding(self._bindings[0])
        except Exception as exc:  # onnxruntime raises its own exception types
            raise ContractError(f"{self.path}: the model does not run on one frame: "
                                f"{exc}") from None
        self.engine, self.engine_note, self._kernel = "onnxruntime", "asked for", None
        if engine == "numba":
            self._use_kernel_if_it_matches(sizes)
        self.reset()

    def _use_kernel_if_it_matches(self, sizes: dict) -> None:
        """Switch to the numba kernel when it reads the file and reproduces onnxruntime on
        ``_PROBE_FRAMES`` random in-range frames (state carried); else note why not."""
        try:
            kernel = load_controller_kernel(self.path)
        except ContractError as exc:
            self.engine_note = f"the numba kernel cannot run this graph: {exc}"
            return
        if kernel.state_size != sizes["state_in"] or self._x.shape[1] != N_INPUTS:
            self.engine_note = (f"the numba kernel's state ({kernel.state_size}) or inputs "
                                f"({N_INPUTS}) differ from the contract's")
            return
        rng = np.random.default_rng(0)
        state = np.zeros(kernel.state_size, np.float32)
        worst = 0.0
        for _ in range(_PROBE_FRAMES):
            phase = rng.uniform()
            self._x[0] = np.concatenate([
                rng.uniform([-80, -80, -80, -80, 0, 0, 0], [0, 0, 0, 0, 2, 8000, 1]),
                [math.sin(2 * math.pi * phase), math.cos(2 * math.pi * phase),
                 math.log(rng.uniform(0.25, 2.0)), rng.uniform(), rng.integers(2)],
                rng.dirichlet(np.ones(8)), rng.uniform(size=5)])
            self._state[0][0] = state
            self._session.run_with_iobinding(self._bindings[0])
            control, state = kernel.step(self._x[0], state)
            worst = max(worst, _probe_difference(np.concatenate([control, state]),
                                                 np.concatenate([self._control[0],
                                                                 self._state[1][0]]),
                                                 (_ROTATION, len(control) + len(state) - 1)))
            if not np.all(np.isfinite(state)):
                state[:] = 0.0  # as step() does after a non-finite frame
        if not worst <= _PROBE_TOL:
            self.engine_note = (f"the numba kernel differs from onnxruntime by {worst:.3g} "
                                f"(> {_PROBE_TOL:g}) on the probe frames")
            warnings.warn(f"{self.path.name}: {self.engine_note}; running onnxruntime",
                          KernelMismatchWarning, stacklevel=3)
            return
        self.engine, self._kernel = "numba", kernel
        self.engine_note = f"matches onnxruntime to {worst:.2g} on {_PROBE_FRAMES} probe frames"
        self._flat = (self._x[0], (self._state[0][0], self._state[1][0]), self._control[0])

    def __repr__(self) -> str:
        return f"OnnxController(path={str(self.path)!r}, engine={self.engine!r})"

    def _binding(self, state_in: np.ndarray, state_out: np.ndarray):
        binding = self._session.io_binding()
        for name, buf in self._inputs.items():
            binding.bind_cpu_input(name, buf)
        binding.bind_cpu_input("state_in", state_in)
        for name, buf in (("control", self._control), ("state_out", state_out)):
            binding.bind_output(name, "cpu", 0, np.float32, list(buf.shape), buf.ctypes.data)
        return binding

    def reset(self) -> None:
        """A fresh stream: zero state, the neutral control as the held one, the converter's
        held seconds-per-beat forgotten."""
        self._side = 0  # self._state[_side] is the next state_in
        self._state[0].fill(0.0)
        self._last = _NEUTRAL.astype(np.float32)
        self._convert.reset()

    def step(self, inputs: ControlInputs) -> np.ndarray:
        """One render frame: the control vector, float32 (8,) in ``CONTROL_NAMES`` order,
        within ``CONTROL_RANGES`` (rotation and hue wrapped)."""
        self._convert.convert_into(inputs, *self._views)
        if self._kernel is None:
            self._session.run_with_iobinding(self._bindings[self._side])
        else:
            x, states, control = self._flat
            self._kernel.step_into(x, states[self._side], control, states[1 - self._side])
        state_out = self._state[1 - self._side]
        if _finish(self._control[0], state_out[0], self._last, _LO, _HI, _ROTATION, _HUE):
            self._side = 1 - self._side
        else:
            self._state[self._side].fill(0.0)
            self.nonfinite_frames += 1
            if self.nonfinite_frames == 1:
                warnings.warn(f"{self.path.name}: non-finite controller output; holding the "
                              "last control and resetting the state (further frames counted "
                              "in nonfinite_frames)", NonFiniteOutputWarning, stacklevel=2)
        return self._last.copy()
