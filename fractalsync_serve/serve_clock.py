"""The server's fast clock: the beat as published, with taps, nudges and an output latency.

The slow clock's beat states describe the audio 117-169 ms in the past. :class:`ServeClock`
holds a :class:`~fractalsync_tracking.phase_predictor.PhasePredictor` fed with every beat state
and answers "which beat phase should a receiver show now" for each publication:
``at(t)`` queries the predictor at ``t + latency_s + nudge_s`` (``t`` = stream time of the
newest sample analysed), so the published phase is *predicted* for the moment the receiver's
output is seen or heard.

Commands (from WebSocket clients, applied by the analysis thread between two pushes):

* **tap** at stream time ``t``: taps closer than ``TAP_RESET_S`` form one sequence; from the
  second tap on, the tempo is the median of the sequence's last ``TAP_INTERVALS`` intervals
  inside 30-300 BPM, and a beat falls on the latest tap. The tap clock steers the predictor for
  ``TAP_HOLD_BEATS`` beats after the last tap; afterwards the tracker's states steer it again
  (the predictor converges without running backwards).
* **nudge** by ``ms``: adds to ``nudge_s`` (clipped to +-``MAX_NUDGE_S``), shifting the
  published beat later (positive) or earlier.
* **latency** ``ms``: sets ``latency_s`` (0..``MAX_LATENCY_S``), the receiver's output delay.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass

from fractalsync_tracking.beat_state import BeatClockState
from fractalsync_tracking.phase_predictor import PhasePredictor

__all__ = ["MAX_LATENCY_S", "MAX_NUDGE_S", "TAP_HOLD_BEATS", "TAP_INTERVALS", "TAP_RESET_S",
           "ClockNow", "ServeClock"]

TAP_RESET_S = 2.0
TAP_HOLD_BEATS = 16
TAP_INTERVALS = 8
MAX_NUDGE_S = 0.5
MAX_LATENCY_S = 2.0
_TAP_SPB = (0.2, 2.0)  # tap intervals outside 30..300 BPM are ignored


@dataclass(frozen=True)
class ClockNow:
    """The published beat clock at one publication.

    ``phase`` in [0, 1) (0 = on the beat), ``beat_count`` (beats shown so far), ``beat_in_bar``
    (1-based) of ``beats_per_bar``, ``spb`` seconds per beat, ``conf`` and ``downbeat_prob``
    in [0, 1], ``source``: "tracker", "tap" or "none" (no beat state yet: phase 0, conf 0).
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
        """Tempo in beats per minute."""
        return 60.0 / self.spb

    @property
    def bar_phase(self) -> float:
        """Position in the bar in [0, 1): ``(beat_in_bar - 1 + phase) / beats_per_bar``."""
        return (self.beat_in_bar - 1 + self.phase) / self.beats_per_bar

    def to_dict(self) -> dict:
        """Plain dict (JSON types) of the fields plus ``bpm`` and ``bar_phase``."""
        return {"phase": self.phase, "beat_count": self.beat_count,
                "beat_in_bar": self.beat_in_bar, "beats_per_bar": self.beats_per_bar,
                "spb": self.spb, "bpm": self.bpm, "bar_phase": self.bar_phase, "conf": self.conf,
                "downbeat_prob": self.downbeat_prob, "source": self.source}


NO_BEAT = ClockNow(0.0, 0, 1, 4, 0.5, 0.0, 0.0, "none")


def _finite(name: str, value) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) \
            or not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number, got {value!r}")
    return float(value)


class ServeClock:
    """Predicted beat phase with taps, nudges and latency (see the module docstring).

    Parameters
    ----------
    latency_s : float
        Output delay of the receivers in seconds, 0..MAX_LATENCY_S.

    One thread (the analysis thread) calls every method.
    """

    def __init__(self, latency_s: float = 0.0) -> None:
        self.latency_s = 0.0
        self.set_latency(latency_s)
        self.nudge_s = 0.0
        self._predictor = PhasePredictor()
        self._tracker: BeatClockState | None = None
        self._taps: deque[float] = deque(maxlen=TAP_INTERVALS + 1)
        self._tap_until = -math.inf

    def set_latency(self, seconds: float) -> None:
        """Set the receivers' output delay (s, 0..MAX_LATENCY_S; ValueError otherwise)."""
        s = _finite("latency", seconds)
        if not 0.0 <= s <= MAX_LATENCY_S:
            raise ValueError(f"latency must be in 0..{MAX_LATENCY_S * 1e3:g} ms, "
                             f"got {s * 1e3:g} ms")
        self.latency_s = s

    def nudge(self, seconds: float) -> None:
        """Shift the published beat by ``seconds`` (positive: later); the total is clipped to
        +-MAX_NUDGE_S."""
        s = _finite("nudge", seconds)
        self.nudge_s = min(MAX_NUDGE_S, max(-MAX_NUDGE_S, self.nudge_s + s))

    def update(self, states) -> None:
        """Take the tracker's beat states of one push (stream-time order)."""
        for state in states:
            self._tracker = state
            if state.t_sec >= self._tap_until:
                self._predictor.update(state)

    def tap(self, t: float) -> None:
        """A tap at stream time ``t`` (s). Taps must come in time order; a tap earlier than
        the previous one starts a new sequence."""
        t = _finite("tap time", t)
        if self._taps and not 0.0 < t - self._taps[-1] <= TAP_RESET_S:
            self._taps.clear()
        self._taps.append(t)
        taps = list(self._taps)
        gaps = sorted(b - a for a, b in zip(taps, taps[1:], strict=False)
                      if _TAP_SPB[0] <= b - a <= _TAP_SPB[1])
        if not gaps:
            return
        mid = len(gaps) // 2
        spb = gaps[mid] if len(gaps) % 2 else 0.5 * (gaps[mid - 1] + gaps[mid])
        bpb = self._tracker.beats_per_bar if self._tracker is not None else 4
        count = self._predictor.query(t).beat_count + 1 if self._predictor.state else 0
        self._predictor.update(BeatClockState(
            t_sec=t, spb=spb, phase=0.0, beat_count=count, conf=1.0, downbeat_prob=0.0,
            beat_in_bar=count % bpb + 1, beats_per_bar=bpb))
        self._tap_until = t + TAP_HOLD_BEATS * spb

    def at(self, t: float) -> ClockNow:
        """The clock to publish when the newest analysed sample is at stream time ``t`` (s):
        the predictor at ``t + latency_s + nudge_s``. Calls must not go back in time (an earlier
        time gets the latest answer)."""
        target = self._predictor.state
        if target is None:
            return NO_BEAT
        tq = t + self.latency_s + self.nudge_s
        q = self._predictor.query(tq)
        tapping = tq < self._tap_until
        src = target if tapping or self._tracker is None else self._tracker
        return ClockNow(phase=q.phase, beat_count=q.beat_count, beat_in_bar=q.beat_in_bar,
                        beats_per_bar=src.beats_per_bar, spb=target.spb, conf=src.conf,
                        downbeat_prob=src.downbeat_prob, source="tap" if tapping else "tracker")
