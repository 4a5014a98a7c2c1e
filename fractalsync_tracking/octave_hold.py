"""Tempo-octave hysteresis for a displayed beat clock: keep the tempo octave through short flips.

An online tracker's posterior often holds a tempo and its double (or half) with similar weight,
and its point estimate can flip between them for a few bars and back (the CRNN marks the
off-beat eighths of some passages as strongly as the beats). Both readings put beats on the
music's beats, so the reported beats stay right; but a display that follows the flip doubles
(or halves) its pulse rate for those bars, and at each flip its phase has to re-converge,
which costs a few beats of pulses off the beat.

:class:`OctaveHold` sits between the tracker's :class:`~fractalsync_tracking.beat_state.
BeatClockState` stream and a display (e.g. the
:class:`~fractalsync_tracking.phase_predictor.PhasePredictor`). It passes every state through,
except one whose tempo is a power-of-two multiple of the held tempo (``spb_in = 2**j *
spb_held``, ``j != 0``, within ``OCTAVE_TOL`` in log2): that state is *mapped* onto the held
octave, the same beat grid read at the held tempo,

* ``spb = spb_in / 2**j``, beat position ``P = 2**j * (beat_count + phase) + c``, where the offset
  ``c`` is fixed when such an episode starts: the grid alignment (an integer for ``j > 0``, a
  multiple of ``2**j`` for ``j < 0``) that puts ``P`` nearest the held clock extrapolated to
  the state's time; so with ``j = -1`` (double tempo) every other reported beat is a held beat,
  with ``j = 1`` (half tempo) every reported beat is one;
* ``beat_in_bar`` counts on from the previous output in its meter (``beats_per_bar`` is held);
  ``conf`` and ``downbeat_prob`` are the input's.

The display adopts the input's octave when the other octave wins clearly, either

* for long: evidence, a leaky count in seconds, grows by the time between states while the
  input is in another octave and shrinks by the same while it is in the held one; it adopts
  when the evidence reaches ``hold_beats`` held beats (a sustained change is followed); or
* by confidence: the input's ``conf`` exceeds the held octave's by ``CLEAR_MARGIN``. The held
  octave's confidence is the input's ``conf`` followed (exponentially, time constant
  ``CONF_TAU_BEATS`` beats) while the input is in the held octave, and frozen while it is not;
  so a tempo held with little confidence (the first seconds of a stream) is left as soon as
  the tracker locks confidently elsewhere.

An input whose tempo is no power-of-two multiple of the held tempo (a real tempo change, or a
lost tracker) is passed through at once. Adopting an input resets the evidence and takes its
``conf`` as the held octave's.

The outputs are valid states: positive ``spb``, phase in [0, 1), ``beat_count >= 0``; the
mapping never stalls a clock that follows them (its tempo is the input's, scaled by a power of
two).
"""

from __future__ import annotations

import math

from .beat_state import BeatClockState

__all__ = ["CLEAR_MARGIN", "CONF_TAU_BEATS", "HOLD_BEATS", "OCTAVE_TOL", "OctaveHold"]

#: Held beats of evidence before the display adopts another tempo octave.
HOLD_BEATS = 16.0
#: Largest |log2(spb_in / spb_held) - j| for which a state counts as octave ``j`` of the held
#: tempo (0.1: within about 7 %).
OCTAVE_TOL = 0.1
#: Confidence by which another octave wins at once.
CLEAR_MARGIN = 0.2
#: Time constant (held beats) of the held octave's confidence.
CONF_TAU_BEATS = 4.0


class OctaveHold:
    """Tempo-octave hysteresis on a stream of beat states (see the module docstring).

    Parameters
    ----------
    hold_beats : float > 0
        Evidence (in held beats) needed to adopt another octave.
    """

    def __init__(self, hold_beats: float = HOLD_BEATS) -> None:
        if isinstance(hold_beats, bool) or not isinstance(hold_beats, (int, float)) \
                or not 0.0 < hold_beats < math.inf:
            raise ValueError(f"hold_beats must be a finite number > 0, got {hold_beats!r}")
        self.hold_beats = float(hold_beats)
        self.reset()

    def reset(self) -> None:
        """Forget the held octave and the evidence."""
        self._out: BeatClockState | None = None  # the latest output (the held clock)
        self._t_in = 0.0  # time of the latest input
        self._evidence = 0.0  # seconds of input in another octave (leaky)
        self._conf = 0.0  # the held octave's confidence
        self._j = 0  # octave of the current mapping episode (0: passing through)
        self._c = 0.0  # offset of the current mapping episode

    @property
    def evidence_s(self) -> float:
        """Seconds of (leaky) evidence for another octave."""
        return self._evidence

    @property
    def mapping(self) -> int:
        """``j`` of the latest input when it was mapped (its beat is ``2**j`` held beats), 0
        when it was passed through."""
        return self._j

    def update(self, state: BeatClockState) -> BeatClockState:
        """Take the tracker's next state (in time order); return the state to display."""
        if not isinstance(state, BeatClockState):
            raise TypeError(f"state must be a BeatClockState, got {type(state).__name__}")
        held = self._out
        dt = max(state.t_sec - self._t_in, 0.0)
        self._t_in = state.t_sec
        if held is None:
            return self._adopt(state)
        x = math.log2(state.spb / held.spb)
        j = round(x)
        if j == 0:  # the held octave
            self._evidence = max(self._evidence - dt, 0.0)
            a = 1.0 - math.exp(-dt / (CONF_TAU_BEATS * state.spb))
            self._conf += a * (state.conf - self._conf)
            self._j = 0
            self._out = state
            return state
        self._evidence += dt
        if abs(x - j) > OCTAVE_TOL or self._evidence >= self.hold_beats * held.spb \
                or state.conf >= self._conf + CLEAR_MARGIN:
            return self._adopt(state)
        return self._map(state, held, j)

    @property
    def held_conf(self) -> float:
        """The held octave's confidence (see the module docstring)."""
        return self._conf

    def _adopt(self, state: BeatClockState) -> BeatClockState:
        """Pass ``state`` through as the new held octave."""
        self._evidence = 0.0
        self._conf = state.conf
        self._j = 0
        self._out = state
        return state

    def _map(self, s: BeatClockState, held: BeatClockState, j: int) -> BeatClockState:
        scale = 2.0 ** j
        p_in = scale * (s.beat_count + s.phase)
        if j != self._j:  # a new episode: the grid alignment nearest the held clock
            p_held = held.beat_count + held.phase + (s.t_sec - held.t_sec) / held.spb
            step = min(scale, 1.0)
            self._c = round((p_held - p_in) / step) * step
            self._j = j
        pos = p_in + self._c
        if pos < 0.0:  # only at the very start of a stream: shift by whole held beats
            shift = math.ceil(-pos)
            self._c += shift
            pos += shift
        count = math.floor(pos)
        phase = min(pos - count, math.nextafter(1.0, 0.0))
        bpb = held.beats_per_bar
        bib = (held.beat_in_bar - 1 + count - held.beat_count) % bpb + 1
        out = BeatClockState(t_sec=s.t_sec, spb=s.spb / scale, phase=phase, beat_count=count,
                             conf=s.conf, downbeat_prob=s.downbeat_prob, beat_in_bar=bib,
                             beats_per_bar=bpb)
        self._out = out
        return out
