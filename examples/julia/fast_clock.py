"""The fast (render) clock's beat: the held slow state, the phase predictor, taps and nudges.

The slow clock publishes :class:`~fractalsync_tracking.slow_state.SlowState` at the input
cadence and hands over every beat state it decided; the render loop, at its own rate, asks
:meth:`FastBeat.at` for the beat at a stream time. Nothing here blocks or advances analysis.

The tracker's states go through an :class:`~fractalsync_tracking.octave_hold.OctaveHold` before
the phase predictor: when the tracker flips to double (or half) tempo for a few bars, the
picture keeps pulsing at the held tempo on the same beats; a change that lasts
``HOLD_BEATS`` beats is followed. The reported beats are not touched (this is the display's
clock only).

User controls (the window's keys):

* **tap** (space): taps at stream times ``t_1 < t_2 < ...``; from the second tap on, the tempo
  is the median of the last (up to 8) intervals and a beat falls on the latest tap. The tap clock
  replaces the tracker for ``TAP_HOLD_BEATS`` beats after the last tap, then the tracker's clock
  takes over again (the predictor converges to it without jumping back). A pause longer than
  ``TAP_RESET_S`` starts a new tap sequence.
* **nudge** (arrows): shifts the displayed beat by ``NUDGE_S`` seconds per press (later or
  earlier), on top of ``latency_s``: the query time is ``t + latency_s + nudge``.

``latency_s`` is the output path's delay: with it the picture shows the beat state of the audio
that is *heard* when the frame is *seen*.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

import numpy as np

from fractalsync_tracking.beat_state import BeatClockState
from fractalsync_tracking.octave_hold import OctaveHold
from fractalsync_tracking.phase_predictor import PhasePredictor

__all__ = ["NUDGE_S", "TAP_HOLD_BEATS", "TAP_RESET_S", "BeatNow", "FastBeat"]

NUDGE_S = 0.010
TAP_HOLD_BEATS = 16
TAP_RESET_S = 2.0
_TAP_INTERVALS = 8
#: Tap intervals outside 30..300 BPM are ignored (a double press, a long pause).
_TAP_MIN_S, _TAP_MAX_S = 0.2, 2.0


@dataclass(frozen=True)
class BeatNow:
    """The beat as the render loop shows it at one time.

    ``phase`` in [0, 1) (0 = the beat), ``beat_count``, ``beat_in_bar`` (1-based),
    ``beats_per_bar``, ``spb`` (s), ``conf`` and ``downbeat_prob`` in [0, 1], ``source``
    ("tracker", "tap" or "none" before any beat state).
    """

    phase: float
    beat_count: int
    beat_in_bar: int
    beats_per_bar: int
    spb: float
    conf: float
    downbeat_prob: float
    source: str

    @property
    def bpm(self) -> float:
        return 60.0 / self.spb

    def features(self) -> np.ndarray:
        """The contract's beat features (5,) float32: sin/cos 2π phase, ln spb, conf,
        downbeat_prob (``contracts/v1.json`` ``beat_features.names``)."""
        a = 2.0 * np.pi * self.phase
        return np.array([np.sin(a), np.cos(a), np.log(self.spb), self.conf, self.downbeat_prob],
                        np.float32)


_NO_BEAT = BeatNow(0.0, 0, 1, 4, 0.5, 0.0, 0.0, "none")


class FastBeat:
    """Beat phase for the render clock (see the module docstring).

    Parameters
    ----------
    latency_s : float
        Output-path delay in seconds (>= 0): queries look this far ahead of the stream time.
    """

    def __init__(self, latency_s: float = 0.0) -> None:
        if not latency_s >= 0:
            raise ValueError(f"latency must be >= 0 s, got {latency_s!r}")
        self.latency_s = float(latency_s)
        self.nudge_s = 0.0
        self._predictor = PhasePredictor()
        self._octave = OctaveHold()
        self._latest: BeatClockState | None = None  # the latest displayed (octave-held) state
        self._taps: deque[float] = deque(maxlen=_TAP_INTERVALS + 1)
        self._tap_until = -np.inf

    def update(self, state: BeatClockState) -> None:
        """Take one beat state of the tracker (in stream-time order); it is shown in the held
        tempo octave (:class:`~fractalsync_tracking.octave_hold.OctaveHold`)."""
        shown = self._octave.update(state)
        self._latest = shown
        if shown.t_sec >= self._tap_until:
            self._predictor.update(shown)

    def tap(self, t: float) -> None:
        """A tap at stream time ``t`` (s)."""
        if self._taps and not 0.0 < t - self._taps[-1] <= TAP_RESET_S:
            self._taps.clear()
        self._taps.append(t)
        intervals = np.diff(np.asarray(self._taps))
        intervals = intervals[(intervals >= _TAP_MIN_S) & (intervals <= _TAP_MAX_S)]
        if intervals.size == 0:
            return
        spb = float(np.median(intervals))
        bpb = self._latest.beats_per_bar if self._latest else 4
        count = self._predictor.query(t).beat_count + 1 if self._predictor.state else 0
        self._predictor.update(BeatClockState(t_sec=t, spb=spb, phase=0.0, beat_count=count,
                                              conf=1.0, downbeat_prob=0.0,
                                              beat_in_bar=count % bpb + 1, beats_per_bar=bpb))
        self._tap_until = t + TAP_HOLD_BEATS * spb

    def nudge(self, direction: int) -> None:
        """Shift the shown beat ``NUDGE_S`` later (+1) or earlier (-1)."""
        self.nudge_s += NUDGE_S * (1 if direction > 0 else -1)

    def at(self, t: float) -> BeatNow:
        """The beat shown at stream time ``t`` (s): the predictor queried at
        ``t + latency_s + nudge``. Queries must not go back in time (an earlier query returns
        the latest answer, as the predictor does)."""
        state = self._predictor.state
        if state is None:
            return _NO_BEAT
        tq = t + self.latency_s + self.nudge_s
        q = self._predictor.query(tq)
        tapping = tq < self._tap_until
        src = self._latest if self._latest is not None and not tapping else state
        return BeatNow(phase=q.phase, beat_count=q.beat_count, beat_in_bar=q.beat_in_bar,
                       beats_per_bar=src.beats_per_bar, spb=state.spb, conf=src.conf,
                       downbeat_prob=src.downbeat_prob, source="tap" if tapping else "tracker")
