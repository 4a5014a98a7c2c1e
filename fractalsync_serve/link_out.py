"""Ableton Link output: the tracked tempo and beat phase, so Link peers play in time.

``fractalsync-serve --link`` joins (or starts) the Link session on the local network and steers
it: :meth:`LinkOut.publish` is a publisher sink, called once per publication, that

1. updates a :class:`~fractalsync_serve.beat_follower.BeatFollower` and reads the beat position
   for *now* (``time.monotonic()``, the clock Link uses on Linux), ``latency_s`` ahead;
2. sets the session tempo when it differs by more than ``tempo_tolerance_bpm`` from the tracked
   tempo smoothed over ``TEMPO_SMOOTHING_S`` (exponentially: the tracker's tempo wobbles by about
   a BPM from one publication to the next, and peers would show every wobble; the phase
   correction below keeps the beats in place meanwhile);
3. sets the quantum to the tracked meter (``beats_per_bar``), so peers that use the same quantum
   align bars, not only beats, and compares the session's phase in the bar with the tracked bar
   position; when they differ by more than ``phase_tolerance`` beats it moves the session's
   timeline onto the tracked one (``force_beat``: Link's way for a session leader that follows
   an external clock).

Peers follow the tempo and the phase; the beat *count* stays each peer's own (Link shares tempo
and phase within a quantum, not a song position). ``latency_s`` makes the session's beats lead
the tracked audio by that much, for peers whose output path is slower than they compensate.

Link is the optional extra ``link`` (the ``aalink`` package, GPL-3.0-or-later, wrapping Ableton's
Link library). ``aalink`` needs an asyncio event loop: :class:`LinkOut` runs one in a daemon
thread of its own; every call here is from the caller's thread and returns at once (Link's
session-state calls are thread-safe and do not wait for the network).

Link finds peers by UDP multicast on every network interface; the tests run it inside a
private network namespace that has only a loopback interface.
"""

from __future__ import annotations

import asyncio
import math
import threading
import time

from .beat_follower import BeatFollower, BeatPosition, SyncOutputError

__all__ = ["TEMPO_SMOOTHING_S", "LinkOut"]

_START_BPM = 120.0
#: Time constant (s) of the exponential smoothing of the tempo given to the session.
TEMPO_SMOOTHING_S = 1.0


def _import_aalink():
    try:
        import aalink
    except ImportError as exc:
        raise SyncOutputError("Ableton Link needs the optional 'aalink' package, the [link] "
                              f"extra: pip install 'fractalsync-dsp[link]' ({exc})") from exc
    return aalink


class LinkOut:
    """Steers an Ableton Link session to the published beat (see the module docstring).

    Parameters
    ----------
    latency_s : float
        How far (s, 0..2) the session's beats lead the tracked audio.
    phase_tolerance : float
        Largest phase difference (beats) left alone; larger ones move the session's timeline.
    tempo_tolerance_bpm : float
        Largest tempo difference (BPM) left alone.
    """

    def __init__(self, latency_s: float = 0.0, *, phase_tolerance: float = 0.01,
                 tempo_tolerance_bpm: float = 0.01) -> None:
        aalink = _import_aalink()
        if not 0.0 < phase_tolerance < 0.5:
            raise ValueError(f"phase_tolerance must be in (0, 0.5) beats, got {phase_tolerance!r}")
        if not tempo_tolerance_bpm > 0.0:
            raise ValueError(f"tempo_tolerance_bpm must be > 0, got {tempo_tolerance_bpm!r}")
        self._follower = BeatFollower(latency_s)
        self.phase_tolerance = float(phase_tolerance)
        self.tempo_tolerance_bpm = float(tempo_tolerance_bpm)
        self.corrections = 0  # times the session's timeline was moved
        self._bpm: float | None = None  # smoothed tracked tempo
        self._last = 0.0  # monotonic time of the last steering
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="fractalsync-link",
                                        daemon=True)
        self._thread.start()

        async def make():
            link = aalink.Link(_START_BPM)
            link.enabled = True
            return link

        self._link = asyncio.run_coroutine_threadsafe(make(), self._loop).result(10)
        self._closed = False

    @property
    def latency_s(self) -> float:
        return self._follower.latency_s

    @property
    def num_peers(self) -> int:
        """Other Link peers in the session now."""
        return self._link.num_peers

    @property
    def link(self):
        """The ``aalink.Link`` object (read its ``tempo``, ``beat``, ``phase``...)."""
        return self._link

    def publish(self, pub) -> None:
        """Publisher sink: follow one publication and steer the session (returns at once)."""
        if self._closed:
            return
        self._follower.update(pub)
        now = time.monotonic()
        pos = self._follower.at(now)
        if pos is not None:
            self._steer(pos, now)

    def _steer(self, pos: BeatPosition, now: float) -> None:
        link = self._link
        quantum = float(pos.beats_per_bar)
        if link.quantum != quantum:
            link.quantum = quantum
        bpm = 60.0 / pos.spb
        if self._bpm is None:
            self._bpm = bpm
        else:
            self._bpm += (1.0 - math.exp(-(now - self._last) / TEMPO_SMOOTHING_S)) \
                * (bpm - self._bpm)
        self._last = now
        if abs(link.tempo - self._bpm) > self.tempo_tolerance_bpm:
            link.tempo = self._bpm
        err = (link.phase - pos.bar_position + quantum / 2) % quantum - quantum / 2
        if abs(err) > self.phase_tolerance:
            link.force_beat(link.beat - err)
            self.corrections += 1

    def close(self) -> None:
        """Leave the session and stop the event-loop thread (idempotent)."""
        if self._closed:
            return
        self._closed = True

        async def disable():
            self._link.enabled = False

        try:
            asyncio.run_coroutine_threadsafe(disable(), self._loop).result(5)
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(5)
            self._loop.close()
