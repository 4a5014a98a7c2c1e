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
"""

from __future__ import annotations

import math

import numpy as np

from examples.julia.controller import (
    SPB_RANGE,
    ControlInputs,
    _nearest_is_downbeat,
    _sanitise_hazards,
    _sanitise_micro,
    _sanitise_probs,
)

__all__ = ["DEFAULT_SPB", "ContractInputs"]

#: Seconds per beat assumed until the first valid one.
DEFAULT_SPB = 0.5


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
        """The four contract vectors of one frame (see the module docstring)."""
        if not isinstance(inputs, ControlInputs):
            raise TypeError(f"convert() takes a ControlInputs, got {type(inputs).__name__}")
        if math.isfinite(inputs.spb) and inputs.spb > 0:
            self._spb = min(max(inputs.spb, SPB_RANGE[0]), SPB_RANGE[1])
        phase, conf, down = 0.0, 0.0, 0.0
        if math.isfinite(inputs.phase) and math.isfinite(inputs.conf):
            phase = min(inputs.phase % 1.0, math.nextafter(1.0, 0.0))
            conf = min(max(inputs.conf, 0.0), 1.0)
            down = float(_nearest_is_downbeat(phase, inputs.beat_in_bar, inputs.beats_per_bar))
        angle = 2.0 * math.pi * phase
        beat = np.array([[math.sin(angle), math.cos(angle), math.log(self._spb), conf, down]],
                        np.float32)
        micro = _sanitise_micro(inputs.micro).astype(np.float32)[None, :]
        section = _sanitise_probs(inputs.section_probs).astype(np.float32)[None, :]
        hazard = _sanitise_hazards(inputs.hazard_probs).astype(np.float32)[None, :]
        return micro, beat, section, hazard
