"""The anticipator's inputs on the slow grid, exactly as the live path makes them.

The anticipator (``contracts/v1.json`` ``models.anticipator``) runs once per **slow step**: the
analysis frames decimated by :data:`DECIMATION` (4 frames of 20 ms, 12.5 Hz). Training data
(:mod:`fractalsync_tracking.prepare`) and the runtime structure tracker both get its inputs from
:class:`SlowStepInputs`, so they are the same numbers by construction.

Slow step ``s`` covers analysis frames ``4s .. 4s+3`` and completes with frame ``k = 4s + 3``:

* ``times[s] = clock.frame_time(k)``: the stream time (s) the step describes (the time of its
  last frame);
* ``audio_features[s]``: the mean of the 4 frames' 272 BeatNet features (``batch.features``),
  summed in float64 in frame order, times 0.25, rounded to float32;
* ``beat_features[s]``: the beat state the live app holds when frame ``k`` completes, i.e. the
  :class:`~fractalsync_tracking.beat_state.BeatClockState` the
  :class:`~fractalsync_tracking.beat_tracker.BeatTracker` emitted while processing frame ``k``.
  That state describes frame ``k - d`` (``d = decision_delay_frames``, 4 by default), so it is
  extrapolated to ``times[s]`` (:func:`beat_feature_vector`)::

      phase' = frac(phase + (times[s] - state.t_sec) / spb)
      [sin 2π phase', cos 2π phase', ln spb, conf, downbeat_prob]   (float32)

  Steps completed before the tracker has emitted any state (with ``d = 4``: step 0 only) get
  :data:`NEUTRAL_BEAT_FEATURES`, ``[0, 1, ln 0.5, 0, 0]``: phase 0, 120 BPM, no confidence.

The tracker emits one state per frame from frame ``d`` on, so the state of frame ``k`` is the
``(k - d)``-th state of the stream: pairing goes by frame index, never by push, and the result
does not depend on block sizes. :meth:`SlowStepInputs.take` checks the pairing (the count of
states, and each paired state's ``t_sec`` against the time of frame ``k - d``), so missing or
repeated states, or a wrong ``d``, raise instead of mixing frames. The consumer needs no clock
at construction (a structure tracker may be built before the clock it will be registered on,
as :class:`~fractalsync_tracking.slow_clock.SlowClock` does); its times come from the frames it
is given. Every step only uses frames up to its own (causal): pushing more audio never changes
an earlier step.

Use::

    clock = AnalysisClock()
    tracker = BeatTracker(clock=clock)
    inputs = clock.add_consumer(SlowStepInputs())           # after the tracker
    for block in blocks:
        out = tracker.push(block, sr)                       # states and beat events
        steps = inputs.take(out.states)                     # StepInputs of the steps completed
        for s in range(len(steps.times)): ...               # one anticipator step each
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import NamedTuple

import numpy as np

from fractalsync_dsp.frontend import DIM, HOP, SAMPLE_RATE

from .beat_state import BeatClockState
from .particle_filter import FilterConfig

__all__ = [
    "BEAT_FEATURE_NAMES", "DECIMATION", "NEUTRAL_BEAT_FEATURES", "SlowStepInputs", "StepInputs",
    "beat_feature_vector",
]  # fmt: skip

#: Analysis frames per slow step (``contracts/v1.json`` ``models.anticipator.decimation``).
DECIMATION = 4
#: Names of the beat features (``contracts/v1.json`` ``beat_features.names``).
BEAT_FEATURE_NAMES: tuple[str, ...] = (
    "sin_2pi_phase", "cos_2pi_phase", "log_spb", "conf", "downbeat_prob",
)
#: Beat features before the tracker has emitted a state: phase 0, spb 0.5 s, conf 0, downbeat 0.
NEUTRAL_BEAT_FEATURES = np.array([0.0, 1.0, math.log(0.5), 0.0, 0.0], np.float32)
NEUTRAL_BEAT_FEATURES.flags.writeable = False

_N_BEAT = len(BEAT_FEATURE_NAMES)
_INITIAL_CAPACITY = 32  # pending steps; one push of 64 frames completes at most 16 of them
_TIME_TOL = 1e-9  # s; a state paired with frame k must describe frame k - d


class StepInputs(NamedTuple):
    """The inputs of the slow steps completed since the previous :meth:`SlowStepInputs.take`.

    ``start`` is the index of the first step (steps counted since the clock's reset); the arrays
    have ``n >= 0`` rows, one per step, in order:

    * ``times``: (n,) float64, stream time (s) of each step;
    * ``audio_features``: (n, 272) float32, mean BeatNet features of the step's 4 frames;
    * ``beat_features``: (n, 5) float32, ``[sin 2πφ, cos 2πφ, ln spb, conf, downbeat_prob]``.

    The arrays are views of the producer's buffers, valid until its next push or ``take``:
    copy what you keep.
    """

    start: int
    times: np.ndarray
    audio_features: np.ndarray
    beat_features: np.ndarray


def beat_feature_vector(state: BeatClockState, t_sec: float, out: np.ndarray | None = None,
                        ) -> np.ndarray:
    """Beat features of ``state`` extrapolated to stream time ``t_sec``.

    ``phase' = frac(state.phase + (t_sec - state.t_sec) / state.spb)`` (the tempo held), and the
    result is ``[sin 2π phase', cos 2π phase', ln spb, conf, downbeat_prob]``.

    Parameters
    ----------
    state : BeatClockState
        The latest state (its fields are validated finite by the class).
    t_sec : float
        Stream time (s) to extrapolate to; earlier than ``state.t_sec`` extrapolates backwards.
    out : (5,) float32 array, optional
        Written in place and returned.

    Returns
    -------
    (5,) float32 array
    """
    phase = (state.phase + (t_sec - state.t_sec) / state.spb) % 1.0
    if phase >= 1.0:  # rounding of a tiny negative argument
        phase = 0.0
    if out is None:
        out = np.empty(_N_BEAT, np.float32)
    angle = 2.0 * math.pi * phase
    out[0] = math.sin(angle)
    out[1] = math.cos(angle)
    out[2] = math.log(state.spb)
    out[3] = state.conf
    out[4] = state.downbeat_prob
    return out


class SlowStepInputs:
    """Analysis-clock consumer that builds the anticipator's inputs per slow step (see the module
    docstring).

    Register it on the analysis clock of the
    :class:`~fractalsync_tracking.beat_tracker.BeatTracker` whose states are passed to
    :meth:`take` (``clock.add_consumer(inputs)``, after the tracker).

    Parameters
    ----------
    tracker_delay_frames : int
        The tracker's ``FilterConfig.decision_delay_frames`` (default: that of the default
        config, 4): the state emitted at frame ``k`` describes frame ``k - tracker_delay_frames``.

    Memory: buffers for 32 pending steps are allocated up front and doubled only when more steps
    are pending at once than ever before (a push of more than ~2.5 s of audio, or pushes without
    :meth:`take`); otherwise no array data is allocated per push (:meth:`take` returns views).
    """

    def __init__(self, tracker_delay_frames: int = FilterConfig().decision_delay_frames) -> None:
        if isinstance(tracker_delay_frames, bool) or not isinstance(tracker_delay_frames, int) \
                or tracker_delay_frames < 0:
            raise ValueError("tracker_delay_frames must be an int >= 0, "
                             f"got {tracker_delay_frames!r}")
        self._delay = tracker_delay_frames
        self._delay_s = tracker_delay_frames * HOP / SAMPLE_RATE
        self._acc = np.zeros(DIM, np.float64)
        self._allocate(_INITIAL_CAPACITY)
        self.reset()

    def _allocate(self, capacity: int) -> None:
        self._times = np.zeros(capacity, np.float64)
        self._ref_times = np.zeros(capacity, np.float64)  # frame_time(k - d) of each step
        self._audio = np.zeros((capacity, DIM), np.float32)
        self._beat = np.zeros((capacity, _N_BEAT), np.float32)

    def _grow(self) -> None:
        n = self._pending
        old = self._times, self._ref_times, self._audio, self._beat
        self._allocate(2 * self._times.shape[0])
        for new, prev in zip((self._times, self._ref_times, self._audio, self._beat), old,
                             strict=True):
            new[:n] = prev[:n]

    # ------------------------------------------------------------------------- consumer

    def reset(self) -> None:
        """Start a new stream (the clock calls this on its reset)."""
        self._acc[:] = 0.0
        self._frames = 0  # frames seen since the reset
        self._steps_taken = 0  # steps handed out by take()
        self._pending = 0  # steps completed, not yet taken
        self._states_seen = 0  # tracker states passed to take()

    def on_frames(self, batch) -> None:
        """Accumulate the batch's frames; record every step they complete (clock consumer)."""
        features = batch.features
        for j in range(batch.count):
            k = batch.start + j
            np.add(self._acc, features[j], out=self._acc)
            if k % DECIMATION == DECIMATION - 1:
                if self._pending == self._times.shape[0]:
                    self._grow()
                i = self._pending
                np.multiply(self._acc, 1.0 / DECIMATION, out=self._audio[i], casting="same_kind")
                self._acc[:] = 0.0
                self._times[i] = batch.time(j)
                self._ref_times[i] = self._times[i] - self._delay_s  # frame k - d
                self._pending += 1
        self._frames = batch.start + batch.count

    # ------------------------------------------------------------------------- owner

    @property
    def steps_completed(self) -> int:
        """Slow steps completed since the last reset (taken or pending)."""
        return self._steps_taken + self._pending

    @property
    def pending(self) -> int:
        """Steps completed but not yet returned by :meth:`take`."""
        return self._pending

    def take(self, states: Sequence[BeatClockState]) -> StepInputs:
        """Pair the pending steps with the tracker's states; return and clear them.

        Parameters
        ----------
        states : sequence of BeatClockState
            Every state the tracker emitted since the previous ``take`` (``TrackerOutput.states``
            of the pushes since then, concatenated in order).

        Returns
        -------
        StepInputs
            The steps completed since the previous ``take`` (possibly none).

        Raises
        ------
        ValueError
            If ``states`` are not exactly the states of the frames pushed since the previous
            ``take`` (a missing or repeated push's states, or a ``tracker_delay_frames`` that is
            not the tracker's); nothing is consumed then.
        """
        n_states = len(states)
        expected = max(0, self._frames - self._delay)
        if self._states_seen + n_states != expected:
            raise ValueError(
                f"take() got {n_states} states, expected {expected - self._states_seen}: pass "
                "every state the tracker emitted since the previous take(), in order (the "
                f"tracker emits one per frame from frame {self._delay} on; "
                f"{self._frames} frames were pushed)")
        d = self._delay
        first_frame = (self._steps_taken + 1) * DECIMATION - 1
        for i in range(self._pending):
            ref = first_frame + i * DECIMATION - d  # index of the state of the step's frame
            if ref < 0:
                self._beat[i] = NEUTRAL_BEAT_FEATURES
                continue
            state = states[ref - self._states_seen]
            if not isinstance(state, BeatClockState):
                raise TypeError(f"states must be BeatClockState, got {type(state).__name__}")
            if abs(state.t_sec - self._ref_times[i]) > _TIME_TOL:
                raise ValueError(
                    f"the state paired with frame {ref + d} describes t={state.t_sec:.6f} s, "
                    f"expected frame {ref} at t={self._ref_times[i]:.6f} s: is "
                    f"tracker_delay_frames={d} the tracker's decision delay?")
            beat_feature_vector(state, float(self._times[i]), self._beat[i])
        n = self._pending
        out = StepInputs(self._steps_taken, self._times[:n], self._audio[:n], self._beat[:n])
        self._states_seen += n_states
        self._steps_taken += n
        self._pending = 0
        return out
