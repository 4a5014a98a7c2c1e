"""MIDI clock output: 24 clock messages per beat with start/stop, following the published beat.

``fractalsync-serve --midi-clock NAME`` sends MIDI real-time messages to the output port
``NAME`` (an existing port of that name, else a new virtual port that other programs connect
to): ``clock`` (0xF8) 24 times per beat (``PPQN``), ``start`` (0xFA) once, right before the
clock of a bar's first beat, so a receiver's bar 1 starts on a tracked downbeat, and ``stop``
(0xFC) when the output closes. Song position pointers are not sent.

Two parts:

* :class:`ClockTicks` (pure logic): given the beat position as it advances (never backwards,
  from :class:`~fractalsync_serve.beat_follower.BeatFollower`), which messages are due: tick
  ``k`` is due once the position reaches ``k / PPQN`` beats. Ticks are counted from the first
  position seen (the tick boundary after it), each tick is sent once, and a stall longer than
  one beat skips the missed ticks (counted in :attr:`ClockTicks.skipped`) instead of sending a
  burst.
* :class:`MidiClockOut`: a publisher sink (:meth:`~MidiClockOut.publish`, returns at once) and a
  sender thread that wakes at each tick's estimated time (at least every ``MAX_SLEEP_S``), asks
  the follower for the position *now* plus ``latency_s`` (the receiving device's delay: the
  clock leads the audio by that much) and sends what :class:`ClockTicks` says is due. The
  follower's position runs at the tracked tempo and corrects errors at no more than 25 % of it,
  so the tick rate never jumps.

MIDI clock is the optional extra ``midi`` (mido with the python-rtmidi backend). On Linux
python-rtmidi uses the ALSA sequencer (``/dev/snd/seq``, kernel module ``snd-seq``); without it
no port can be opened and :class:`MidiClockOut` raises a
:class:`~fractalsync_serve.beat_follower.SyncOutputError` (an OSError) that says so.
"""

from __future__ import annotations

import math
import os
import threading
import time

from .beat_follower import BeatFollower, BeatPosition, SyncOutputError

__all__ = ["MAX_SLEEP_S", "PPQN", "ClockTicks", "MidiClockOut", "open_midi_output"]

#: MIDI clock resolution: clock messages per quarter note (beat).
PPQN = 24
#: Longest sleep of the sender thread between two position checks (s).
MAX_SLEEP_S = 0.004


class ClockTicks:
    """Which MIDI clock messages are due as the beat position advances (module docstring).

    ``advance(pos)`` returns the messages due up to ``pos``, in order: ``"clock"`` for each tick
    and ``"start"`` right before the first tick on a downbeat (``beat_in_bar == 1``, tick a
    multiple of ``PPQN``). ``stop()`` returns ``["stop"]`` once started (and ends the start).
    """

    def __init__(self) -> None:
        self._next: int | None = None  # index of the next tick to send
        self.started = False
        self.ticks = 0  # clock messages returned
        self.skipped = 0  # ticks skipped after a stall

    def advance(self, pos: BeatPosition) -> list[str]:
        """Messages due now that the position is ``pos`` (positions must not decrease)."""
        last = math.floor(pos.beats * PPQN)  # the latest tick reached
        if self._next is None:
            self._next = last + 1
            return []
        if last - self._next >= PPQN:  # stalled for more than a beat: resume at the latest
            self.skipped += last - self._next
            self._next = last
        out: list[str] = []
        for k in range(self._next, last + 1):
            if not self.started and k % PPQN == 0 and self._beat_in_bar(pos, k // PPQN) == 1:
                out.append("start")
                self.started = True
            out.append("clock")
        self.ticks += max(0, last + 1 - self._next)
        self._next = max(self._next, last + 1)
        return out

    @staticmethod
    def _beat_in_bar(pos: BeatPosition, beat: int) -> int:
        """Bar position (1-based) of beat index ``beat``, from the position's current beat."""
        return (pos.beat_in_bar - 1 - (pos.beat_count - beat)) % pos.beats_per_bar + 1

    def seconds_to_next(self, pos: BeatPosition) -> float:
        """Estimated seconds from ``pos`` to the next tick at the nominal tempo (>= 0)."""
        if self._next is None:
            return 0.0
        return max(0.0, (self._next / PPQN - pos.beats) * pos.spb)

    def stop(self) -> list[str]:
        """``["stop"]`` if started (the next downbeat starts again), else nothing."""
        if not self.started:
            return []
        self.started = False
        return ["stop"]


def open_midi_output(name: str):
    """A mido output port: the existing port called ``name`` (exact, or the only one whose name
    starts with it), else a new virtual port ``name``. SyncOutputError (an OSError) naming the
    cause if neither can be opened (no ``mido``/``python-rtmidi``, no ALSA sequencer)."""
    if not isinstance(name, str) or not name.strip():
        raise ValueError(f"MIDI port name must be a non-empty string, got {name!r}")
    mido = _import_mido()
    try:
        names = mido.get_output_names()
        matches = [n for n in names if n == name] or [n for n in names if n.startswith(name)]
        if len(matches) == 1:
            return mido.open_output(matches[0])
        return mido.open_output(name, virtual=True)
    except Exception as exc:  # rtmidi raises its own SystemError types
        seq = "" if os.path.exists("/dev/snd/seq") else \
            " (/dev/snd/seq does not exist: this system has no ALSA sequencer, snd-seq)"
        raise SyncOutputError(f"cannot open MIDI output {name!r}: {exc}{seq}") from exc


def _import_mido():
    try:
        import mido
        import rtmidi  # noqa: F401  (mido's default backend)
    except ImportError as exc:
        raise SyncOutputError("MIDI clock needs mido and python-rtmidi, the [midi] extra: "
                              f"pip install 'fractalsync-dsp[midi]' ({exc})") from exc
    return mido


class MidiClockOut:
    """MIDI clock to a port, following the publications (see the module docstring).

    Parameters
    ----------
    port : str or port object
        A port name for :func:`open_midi_output` (closed by :meth:`close`), or an object with
        ``send(mido.Message)`` (left open).
    latency_s : float
        How far (s, 0..2) the clock leads the audio.
    """

    def __init__(self, port, latency_s: float = 0.0) -> None:
        self._follower = BeatFollower(latency_s)
        mido = _import_mido()
        self._messages = {kind: mido.Message(kind) for kind in ("clock", "start", "stop")}
        self._owns_port = isinstance(port, str)
        self.port = open_midi_output(port) if self._owns_port else port
        self.ticks = ClockTicks()
        self._halt = threading.Event()
        self._thread = threading.Thread(target=self._run, name="fractalsync-midi-clock",
                                        daemon=True)
        self._thread.start()

    @property
    def latency_s(self) -> float:
        return self._follower.latency_s

    def publish(self, pub) -> None:
        """Publisher sink: follow one publication (returns at once)."""
        self._follower.update(pub)

    def _run(self) -> None:
        while not self._halt.is_set():
            pos = self._follower.at(time.monotonic())
            if pos is None:
                self._halt.wait(MAX_SLEEP_S)
                continue
            for kind in self.ticks.advance(pos):
                self.port.send(self._messages[kind])
            self._halt.wait(min(self.ticks.seconds_to_next(pos), MAX_SLEEP_S))

    def close(self) -> None:
        """Stop the sender thread, send ``stop`` if started, close a port opened here
        (idempotent)."""
        if self._halt.is_set():
            return
        self._halt.set()
        self._thread.join(5)
        for kind in self.ticks.stop():
            self.port.send(self._messages[kind])
        if self._owns_port:
            self.port.close()
