"""The controller model's contract inputs, made from what the render loop has at one frame.

``contracts/v1.json`` ``models.controller`` feeds a trained controller four vectors per render
frame. :class:`ContractInputs` makes them from a :class:`~examples.julia.controller.ControlInputs`
(the same object the analytic controller reads), so the training data and the runtime use one
conversion:

* ``micro_features`` (7): ``rms_db, bass, mid, treble`` (dB, floor -120), ``flux`` (>= 0),
  ``centroid_hz``, ``onset`` ([0, 1]), sanitised as the analytic controller does
  (non-finite values read as silence, finite ones clipped);
* ``beat_features`` (5): ``sin 2 pi phase, cos 2 pi phase, ln spb, conf, downbeat_prob``, where
  ``downbeat_prob`` is 1 when the nearest beat is a downbeat (the beat just passed is beat 1 of
  its bar while ``phase < 0.5``; the coming one is, ``beat_in_bar >= beats_per_bar``, while
  ``phase >= 0.5``), else 0. A non-finite phase or conf reads as conf 0 and phase 0 (no beat
  information); a non-finite or non-positive ``spb`` holds the last valid one (initially 0.5 s),
  and ``spb`` is clipped to ``SPB_RANGE``;
* ``section_probs`` (8): non-finite or negative values count as 0, then renormalised (all zero:
  uniform);
* ``hazard_probs`` (5): non-finite values count as 0, clipped to [0, 1].

Each is a float32 array of shape (1, n) (batch of one), ready for onnxruntime.
:meth:`ContractInputs.convert_into` writes them into given buffers without allocating (one
numba kernel does the sanitising); :meth:`ContractInputs.convert` is it on fresh buffers.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

from examples.julia.controller import (
    _CENTROID_MAX,
    _DB_CLIP,
    _FLUX_MAX,
    SILENCE_MICRO,
    SPB_RANGE,
    ControlInputs,
    _nearest_is_downbeat,
)

__all__ = ["DEFAULT_SPB", "ContractInputs"]

#: Seconds per beat assumed until the first valid one.
DEFAULT_SPB = 0.5
_SIZES = (7, 5, 8, 5)
_LAST_PHASE = math.nextafter(1.0, 0.0)


@njit(cache=True, nogil=True)
def _write_inputs(micro_in, section_in, hazard_in, sin_phase, cos_phase, ln_spb, conf, down,
                  micro, beat, section, hazard):
    """The sanitised contract vectors (module docstring) of the tuples ``micro_in`` (7),
    ``section_in`` (8), ``hazard_in`` (5) and the beat scalars, written into float32 (1, n)
    ``micro, beat, section, hazard``. Computed in float64, stored float32."""
    for i in range(7):
        v = micro_in[i]
        if not math.isfinite(v):
            v = SILENCE_MICRO[i]
        if i < 4:
            v = min(max(v, _DB_CLIP[0]), _DB_CLIP[1])
        elif i == 4:
            v = min(max(v, 0.0), _FLUX_MAX)
        elif i == 5:
            v = min(max(v, 0.0), _CENTROID_MAX)
        else:
            v = min(max(v, 0.0), 1.0)
        micro[0, i] = v
    beat[0, 0], beat[0, 1], beat[0, 2] = sin_phase, cos_phase, ln_spb
    beat[0, 3], beat[0, 4] = conf, down
    peak = 0.0
    for i in range(8):
        v = section_in[i]
        if math.isfinite(v) and v > peak:
            peak = v
    total = 0.0
    for i in range(8):
        v = section_in[i]
        if peak > 0.0 and math.isfinite(v) and v >= 0.0:
            total += v / peak
    for i in range(8):
        v = section_in[i]
        if peak > 0.0:
            section[0, i] = v / peak / total if math.isfinite(v) and v >= 0.0 else 0.0
        else:
            section[0, i] = 1.0 / 8.0
    for i in range(5):
        v = hazard_in[i]
        hazard[0, i] = min(max(v, 0.0), 1.0) if math.isfinite(v) else 0.0


class ContractInputs:
    """Stateful ControlInputs -> contract vectors converter (holds the last valid spb).

    ``convert(inputs)`` returns ``(micro_features, beat_features, section_probs,
    hazard_probs)``, float32 arrays of shapes (1, 7), (1, 5), (1, 8), (1, 5), all finite.
    ``reset()`` forgets the held spb.
    """

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        """Forget the held seconds-per-beat (back to ``DEFAULT_SPB``)."""
        self._spb = DEFAULT_SPB

    def convert(self, inputs: ControlInputs):
        """The four contract vectors of one frame (see the module docstring), new arrays."""
        out = tuple(np.empty((1, n), np.float32) for n in _SIZES)
        self.convert_into(inputs, *out)
        return out

    def convert_into(self, inputs: ControlInputs, micro: np.ndarray, beat: np.ndarray,
                     section: np.ndarray, hazard: np.ndarray) -> None:
        """:meth:`convert` into given buffers, without allocating: writable float32 arrays of
        shapes (1, 7), (1, 5), (1, 8), (1, 5) (views into one larger buffer are fine).
        TypeError for inputs that are not a ControlInputs, ValueError naming a bad buffer."""
        if not isinstance(inputs, ControlInputs):
            raise TypeError(f"convert() takes a ControlInputs, got {type(inputs).__name__}")
        for name, buf, n in zip(("micro", "beat", "section", "hazard"),
                                (micro, beat, section, hazard), _SIZES, strict=True):
            if not isinstance(buf, np.ndarray) or buf.dtype != np.float32 \
                    or buf.shape != (1, n) or not buf.flags.writeable:
                raise ValueError(f"convert_into: {name} must be a writable float32 array of "
                                 f"shape (1, {n})")
        if math.isfinite(inputs.spb) and inputs.spb > 0:
            self._spb = min(max(inputs.spb, SPB_RANGE[0]), SPB_RANGE[1])
        phase, conf, down = 0.0, 0.0, 0.0
        if math.isfinite(inputs.phase) and math.isfinite(inputs.conf):
            phase = min(inputs.phase % 1.0, _LAST_PHASE)
            conf = min(max(inputs.conf, 0.0), 1.0)
            down = float(_nearest_is_downbeat(phase, inputs.beat_in_bar, inputs.beats_per_bar))
        angle = 2.0 * math.pi * phase
        _write_inputs(inputs.micro, inputs.section_probs, inputs.hazard_probs, math.sin(angle),
                      math.cos(angle), math.log(self._spb), conf, down, micro, beat, section,
                      hazard)
