"""The displayed beat clock: the tracker's beat predicted for the moment it is seen, with taps,
nudges and an output latency (one implementation for the live app and ``fractalsync-serve``).

The tracker's beat states describe the audio some 120-170 ms in the past. :class:`DisplayClock`
passes each one through an :class:`~fractalsync_tracking.octave_hold.OctaveHold` (a flip to
double or half tempo for a few bars keeps pulsing at the held tempo on the same beats; a change
lasting ``HOLD_BEATS`` beats is followed; the reported beats are not touched) into a
:class:`~fractalsync_tracking.phase_predictor.PhasePredictor`. ``at(t)`` queries the predictor
at ``t + latency_s + nudge_s`` (``t`` = stream time of the newest sample analysed), so the shown
phase is *predicted* for the moment the output is seen or heard.

* **tap** at stream time ``t``: taps closer than ``TAP_RESET_S`` form one sequence; from the
  second tap on, the tempo is the median of the sequence's last ``TAP_INTERVALS`` intervals
  inside 30-300 BPM, and a beat falls on the latest tap. The tap clock steers the predictor for
  ``TAP_HOLD_BEATS`` beats after the last tap; afterwards the tracker's states steer it again
  (the predictor converges without running backwards).
* **nudge** by ``seconds``: adds to ``nudge_s`` (clipped to +-``max_nudge_s``), shifting the
  shown beat later (positive) or earlier.
* **latency** ``seconds``: ``latency_s`` (0..``max_latency_s``), the output path's delay.

One thread calls every method.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass

import numpy as np

from .beat_state import BeatClockState
from .octave_hold import OctaveHold
from .phase_predictor import PhasePredictor

__all__ = ["NO_BEAT", "TAP_HOLD_BEATS", "TAP_INTERVALS", "TAP_RESET_S", "BeatNow",
           "DisplayClock"]

TAP_RESET_S = 2.0
TAP_HOLD_BEATS = 16
TAP_INTERVALS = 8
_TAP_SPB = (0.2, 2.0)  # tap intervals outside 30..300 BPM are ignored (double press, pause)


@dataclass(frozen=True)
class BeatNow:
    """The shown beat clock at one time.

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

    def features(self) -> np.ndarray:
        """The contract's beat features (5,) float32: sin/cos 2π phase, ln spb, conf,
        downbeat_prob (``contracts/v1.json`` ``beat_features.names``)."""
        a = 2.0 * np.pi * self.phase
        return np.array([np.sin(a), np.cos(a), np.log(self.spb), self.conf, self.downbeat_prob],
                        np.float32)


NO_BEAT = BeatNow(0.0, 0, 1, 4, 0.5, 0.0, 0.0, "none")


def _finite(name: str, value) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) \
            or not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number, got {value!r}")
    return float(value)


class DisplayClock:
    """Predicted beat phase with octave hold, taps, nudges and latency (see the module
    docstring).

    Parameters
    ----------
    latency_s : float
        Output-path delay in seconds, 0..max_latency_s.
    max_latency_s, max_nudge_s : float
        Largest accepted latency and largest total nudge (s); unlimited by default.
    """

    def __init__(self, latency_s: float = 0.0, *, max_latency_s: float = math.inf,
                 max_nudge_s: float = math.inf) -> None:
        self.max_latency_s = float(max_latency_s)
        self.max_nudge_s = float(max_nudge_s)
        self.latency_s = 0.0
        self.set_latency(latency_s)
        self.nudge_s = 0.0
        self._predictor = PhasePredictor()
        self._octave = OctaveHold()
        self._latest: BeatClockState | None = None  # the latest shown (octave-held) state
        self._taps: deque[float] = deque(maxlen=TAP_INTERVALS + 1)
        self._tap_until = -math.inf

    def set_latency(self, seconds: float) -> None:
        """Set the output delay (s, 0..max_latency_s; ValueError otherwise)."""
        s = _finite("latency", seconds)
        if not 0.0 <= s <= self.max_latency_s:
            raise ValueError(f"latency must be in 0..{self.max_latency_s * 1e3:g} ms, "
                             f"got {s * 1e3:g} ms")
        self.latency_s = s

    def nudge(self, seconds: float) -> None:
        """Shift the shown beat by ``seconds`` (positive: later); the total is clipped to
        +-max_nudge_s."""
        s = _finite("nudge", seconds)
        self.nudge_s = min(self.max_nudge_s, max(-self.max_nudge_s, self.nudge_s + s))

    def update(self, state: BeatClockState) -> None:
        """Take one beat state of the tracker (in stream-time order); it is shown in the held
        tempo octave."""
        shown = self._octave.update(state)
        self._latest = shown
        if shown.t_sec >= self._tap_until:
            self._predictor.update(shown)

    def tap(self, t: float) -> None:
        """A tap at stream time ``t`` (s). Taps must come in time order; a tap earlier than
        the previous one starts a new sequence."""
        t = _finite("tap time", t)
        if self._taps and not 0.0 < t - self._taps[-1] <= TAP_RESET_S:
            self._taps.clear()
        self._taps.append(t)
        gaps = np.diff(np.asarray(self._taps))
        gaps = gaps[(gaps >= _TAP_SPB[0]) & (gaps <= _TAP_SPB[1])]
        if gaps.size == 0:
            return
        spb = float(np.median(gaps))
        bpb = self._latest.beats_per_bar if self._latest is not None else 4
        count = self._predictor.query(t).beat_count + 1 if self._predictor.state else 0
        self._predictor.update(BeatClockState(
            t_sec=t, spb=spb, phase=0.0, beat_count=count, conf=1.0, downbeat_prob=0.0,
            beat_in_bar=count % bpb + 1, beats_per_bar=bpb))
        self._tap_until = t + TAP_HOLD_BEATS * spb

    def at(self, t: float) -> BeatNow:
        """The beat shown when the newest analysed sample is at stream time ``t`` (s): the
        predictor at ``t + latency_s + nudge_s``. Calls must not go back in time (an earlier
        time gets the latest answer)."""
        target = self._predictor.state
        if target is None:
            return NO_BEAT
        tq = t + self.latency_s + self.nudge_s
        q = self._predictor.query(tq)
        tapping = tq < self._tap_until
        src = target if tapping or self._latest is None else self._latest
        return BeatNow(phase=q.phase, beat_count=q.beat_count, beat_in_bar=q.beat_in_bar,
                       beats_per_bar=src.beats_per_bar, spb=target.spb, conf=src.conf,
                       downbeat_prob=src.downbeat_prob, source="tap" if tapping else "tracker")
