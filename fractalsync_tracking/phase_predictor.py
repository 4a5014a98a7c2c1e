"""Beat phase for the fast (render) clock: extrapolate the latest beat state, never jump back.

The slow clock publishes a :class:`~fractalsync_tracking.beat_state.BeatClockState` about every
20 ms, describing a moment slightly in the past; the renderer asks for the beat phase at its own
times (~60 Hz).  :class:`PhasePredictor` answers from a *displayed* clock, a beat position
``P = beat_count + phase`` that

* runs at the tracker's tempo ``1 / spb`` (beats per second) of the latest state, and
* converges to the latest state's clock, extrapolated to the query time,
  ``P_target(t) = state.beat_count + state.phase + (t - state.t_sec) / state.spb``, at a rate of
  at most ``max_correction`` times the tempo: the displayed clock's speed stays within
  ``[1 - max_correction, 1 + max_correction] / spb`` (default 0.25, i.e. 75 %–125 % of the
  tempo), so a disagreement of ``e`` beats is gone after ``|e| / max_correction`` beats.

The error is taken modulo one beat, in ``[-0.5, 0.5)``: the displayed clock aligns with the
nearest beat of the target and never runs backwards, so ``beat_count`` counts the beats it has
shown (it equals the tracker's count unless the tracker re-phases by more than half a beat).
``beat_in_bar`` is the target's bar position of the beat the displayed one is aligned with.

Answers do not depend on how often the predictor is queried (60 Hz or 5 Hz give the same values
at the same times): between updates the error shrinks linearly in time.  A query earlier than
the latest query returns the latest answer.
"""

from __future__ import annotations

import math
from typing import NamedTuple

from .beat_state import BeatClockState

__all__ = ["PhasePredictor", "PhaseQuery"]


class PhaseQuery(NamedTuple):
    """The displayed beat clock at a query time.

    ``phase`` in [0, 1), ``beat_count`` (beats shown so far), ``beat_in_bar`` (1-based),
    ``next_beat_t``: stream time (s) at which the displayed clock reaches its next beat if no new
    state arrives.
    """

    phase: float
    beat_count: int
    beat_in_bar: int
    next_beat_t: float


class PhasePredictor:
    """Smooth, monotone beat phase between slow-clock updates (see the module docstring).

    Parameters
    ----------
    max_correction : float in (0, 1)
        Largest relative speed change used to converge to a new state.
    """

    def __init__(self, max_correction: float = 0.25) -> None:
        if isinstance(max_correction, bool) or not isinstance(max_correction, (int, float)) \
                or not 0.0 < max_correction < 1.0:
            raise ValueError(f"max_correction must be a number in (0, 1), got {max_correction!r}")
        self.max_correction = float(max_correction)
        self.reset()

    def reset(self) -> None:
        """Forget the state and the displayed clock."""
        self._state: BeatClockState | None = None
        self._t = 0.0  # time of the displayed clock's anchor
        self._n = 0  # displayed beat count at the anchor
        self._f = 0.0  # displayed phase at the anchor

    @property
    def state(self) -> BeatClockState | None:
        """The latest state given to :meth:`update` (None before the first)."""
        return self._state

    def update(self, state: BeatClockState) -> None:
        """Take a new target state; the first one also starts the displayed clock exactly on it."""
        if not isinstance(state, BeatClockState):
            raise TypeError(f"state must be a BeatClockState, got {type(state).__name__}")
        if self._state is None:
            self._t, self._n, self._f = state.t_sec, state.beat_count, state.phase
        self._state = state

    def _error(self, t: float) -> tuple[float, int]:
        """(error modulo one beat in [-0.5, 0.5), integer beat offset) of the target at ``t``."""
        s = self._state
        diff = (s.beat_count - self._n) + (s.phase - self._f) + (t - s.t_sec) / s.spb
        offset = math.floor(diff + 0.5)
        return diff - offset, offset

    def query(self, t: float) -> PhaseQuery:
        """The displayed clock at stream time ``t`` (seconds).

        Raises RuntimeError before the first :meth:`update`, ValueError for a non-finite ``t``.
        """
        if self._state is None:
            raise RuntimeError("PhasePredictor.query: no state yet; call update(state) first")
        if isinstance(t, bool) or not isinstance(t, (int, float)) or not math.isfinite(t):
            raise ValueError(f"query time must be a finite number of seconds, got {t!r}")
        t = max(float(t), self._t)
        s = self._state
        rate = 1.0 / s.spb
        err, _ = self._error(self._t)
        dt = t - self._t
        step = max(-self.max_correction * rate * dt, min(err, self.max_correction * rate * dt))
        f = self._f + rate * dt + step
        carry = math.floor(f)
        self._n += carry
        self._f = min(f - carry, math.nextafter(1.0, 0.0))
        self._t = t
        err, offset = self._error(t)
        bib = (s.beat_in_bar - 1 + self._n + offset - s.beat_count) % s.beats_per_bar + 1
        return PhaseQuery(self._f, self._n, bib, t + self._time_to_next_beat(err, rate))

    def _time_to_next_beat(self, err: float, rate: float) -> float:
        """Seconds until the displayed clock's phase reaches 1, correcting ``err`` on the way."""
        remaining = 1.0 - self._f
        if err == 0.0:
            return remaining / rate
        fast = rate * (1.0 + math.copysign(self.max_correction, err))
        t_corr = abs(err) / (self.max_correction * rate)  # time until converged
        if remaining <= fast * t_corr:
            return remaining / fast
        return t_corr + (remaining - fast * t_corr) / rate
