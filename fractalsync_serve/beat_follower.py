"""The published beat at any moment, for the sync outputs (Ableton Link, MIDI clock).

The server publishes once per analysed block (~20-50 ms apart); Link and MIDI clock need the
beat position at arbitrary moments between publications. :class:`BeatFollower` takes each
:class:`~fractalsync_serve.publisher.Publication` and answers :meth:`BeatFollower.at` for a
``time.monotonic()`` reading:

* The publication's ``clock`` is the server's fast clock (taps and nudges applied) predicted for
  stream time ``stream_time + latency_s`` of the publication (the server-wide output latency).
  The follower turns it into a :class:`~fractalsync_tracking.beat_state.BeatClockState` at that
  stream time and feeds a :class:`~fractalsync_tracking.phase_predictor.PhasePredictor`, so the
  position it gives runs smoothly at the tempo and never backwards.
* ``wall_time`` (Unix time at which the audio at ``stream_time`` was captured or heard) maps
  stream time to ``time.monotonic()``: stream time at monotonic ``m`` is
  ``stream_time + m - (wall_time + monotonic_now - unix_now)``.
* :meth:`at` queries the predictor at that stream time plus the follower's own ``latency_s``:
  the output leads the audio by ``latency_s`` (the delay of what receives it: a synth's audio
  path, a Link peer's output beyond what it compensates itself). The server-wide latency that
  WebSocket clients set does not apply here; taps and nudges do.

Real-time inputs only: with ``--fast`` stream time runs faster than the wall clock and the
position is meaningless. Publications whose clock has no beat yet (``source == "none"``) are
skipped. :meth:`update` and :meth:`at` may be called from different threads (one lock, held for
microseconds).
"""

from __future__ import annotations

import math
import threading
import time
from typing import NamedTuple

from fractalsync_tracking.beat_state import BeatClockState
from fractalsync_tracking.phase_predictor import PhasePredictor

__all__ = ["MAX_OUTPUT_LATENCY_S", "BeatFollower", "BeatPosition", "SyncOutputError",
           "check_latency"]

#: Largest output latency the sync outputs accept (s).
MAX_OUTPUT_LATENCY_S = 2.0


class SyncOutputError(OSError):
    """A sync output cannot start: its optional package is missing or its port cannot be opened.
    The message says what to do (an OSError, so FractalSync commands report it as one
    ``PROG: error: ...`` line and exit 1)."""


class BeatPosition(NamedTuple):
    """The beat an output should play at one moment.

    ``beats`` = ``beat_count + phase`` (beats since the stream started, never decreasing),
    ``phase`` in [0, 1), ``beat_count``, ``beat_in_bar`` (1-based) of ``beats_per_bar``,
    ``spb`` seconds per beat of the target (tempo ``60 / spb`` BPM).
    """

    beats: float
    phase: float
    beat_count: int
    beat_in_bar: int
    beats_per_bar: int
    spb: float

    @property
    def bar_position(self) -> float:
        """Beats into the bar, in [0, beats_per_bar)."""
        return self.beat_in_bar - 1 + self.phase


def check_latency(latency_s) -> float:
    """``latency_s`` as a float if it is a number in 0..MAX_OUTPUT_LATENCY_S s, else
    ValueError naming it."""
    if isinstance(latency_s, bool) or not isinstance(latency_s, (int, float)) \
            or not math.isfinite(latency_s) or not 0.0 <= latency_s <= MAX_OUTPUT_LATENCY_S:
        raise ValueError(f"output latency must be a number of seconds in "
                         f"0..{MAX_OUTPUT_LATENCY_S:g}, got {latency_s!r}")
    return float(latency_s)


class BeatFollower:
    """Beat position at ``time.monotonic()`` readings from the publications (module docstring).

    Parameters
    ----------
    latency_s : float
        How far (s, 0..MAX_OUTPUT_LATENCY_S) the output leads the audio.
    """

    def __init__(self, latency_s: float = 0.0) -> None:
        self.latency_s = check_latency(latency_s)
        self._predictor = PhasePredictor()
        self._offset: float | None = None  # stream time minus time.monotonic()
        self._lock = threading.Lock()

    def update(self, pub, unix_now: float | None = None, mono_now: float | None = None) -> None:
        """Take one publication (in publication order).

        ``unix_now``/``mono_now``: simultaneous ``time.time()`` and ``time.monotonic()``
        readings (default: read now), for the stream-time mapping.
        """
        clock = pub.clock
        if clock.source == "none":
            return
        if unix_now is None or mono_now is None:
            unix_now, mono_now = time.time(), time.monotonic()
        t = pub.stream_time + pub.latency_s
        state = BeatClockState(t_sec=t, spb=clock.spb, phase=clock.phase,
                               beat_count=clock.beat_count, conf=clock.conf,
                               downbeat_prob=clock.downbeat_prob,
                               beat_in_bar=clock.beat_in_bar, beats_per_bar=clock.beats_per_bar)
        offset = pub.stream_time - (pub.wall_time + mono_now - unix_now)
        with self._lock:
            self._predictor.update(state)
            self._offset = offset

    def at(self, mono: float) -> BeatPosition | None:
        """The position to output at monotonic time ``mono`` (s); None before the first beat.

        Times must not go back: an earlier ``mono`` gets the latest answer.
        """
        with self._lock:
            target = self._predictor.state
            if target is None:
                return None
            q = self._predictor.query(mono + self._offset + self.latency_s)
        return BeatPosition(q.beat_count + q.phase, q.phase, q.beat_count, q.beat_in_bar,
                            target.beats_per_bar, target.spb)
