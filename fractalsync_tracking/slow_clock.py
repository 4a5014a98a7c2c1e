"""The slow clock: input blocks in, one immutable :class:`SlowState` per block out.

:class:`SlowClock` is the synchronous core of the live app's analysis side. It owns one
:class:`~fractalsync_tracking.analysis_clock.AnalysisClock` and feeds every analysis frame
(50 per second) to, in this order:

1. a :class:`~fractalsync_tracking.beat_tracker.BeatTracker` (CRNN step + particle filter:
   one :class:`BeatClockState` per frame once the filter's decision delay has passed);
2. its frame store: :class:`~fractalsync_dsp.micro.MicroFeatures` per frame, and two
   :class:`~fractalsync_dsp.feature_ring.FeatureRing` s holding the last ``history_frames``
   frames' 272 BeatNet features and 7 micro features;
3. the structure tracker, if it is also an analysis-clock consumer (see below).

:meth:`SlowClock.push` then hands the beat states of the block to the structure tracker and
returns ``SlowState(beat=latest state, structure=latest structure, features=latest micro
features)``: one publication per input block (46.875 Hz for 1024-sample blocks at 48 kHz).

Times.  Everything is stream time (input samples consumed / input rate). Analysis frame ``i``
describes time :meth:`frame_time(i) <frame_time>` (= i / 50 s); a beat state at ``t_sec``
describes the audio at ``t_sec`` and is published when ``stream_time`` is 117-169 ms later
(measured with 1024-sample blocks at 48 kHz over a 10-minute stream, constant: 32 ms framing,
the filter's 80 ms decision delay, soxr's buffering and the frame and block granularity).

Producer/consumer rule.  Only :meth:`push` and :meth:`reset` change anything (the producer,
one thread). :meth:`features_at`, :meth:`feature_window`, :meth:`frame_index_at` and the
properties are pure reads: calling them any number of times, from the producer or from one
other thread (the render loop) while the producer pushes, changes nothing the clock later
produces, and at a given time they return the same values whatever the polling rate. A read
racing a push is made consistent by a sequence counter (seqlock): the reader retries if a
push stored frames meanwhile; the producer never waits for a reader.

Structure seam.  ``structure`` is any object with

* ``update(states: Sequence[BeatClockState]) -> StructureState | None``: called once after
  every push with the beat states that push produced (possibly none), in time order; it
  returns its latest structure state, or None while it has none (the published structure then
  stays what it was: :meth:`StructureState.neutral` at first);
* ``reset()``: called by :meth:`SlowClock.reset`.

If it also has ``on_frames(batch)`` it is registered on the analysis clock after the frame
store, and sees every analysis frame (features, magnitudes, windows, times) before its
``update``. With ``structure=None`` the published structure is always the neutral state.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Protocol

import numpy as np

from fractalsync_dsp.feature_ring import FeatureRing
from fractalsync_dsp.frontend import DIM, HOP, SAMPLE_RATE
from fractalsync_dsp.micro import MICRO_NAMES, MicroFeatures
from fractalsync_dsp.resample import check_rate
from fractalsync_models.beatnet import ONLINE_MODEL

from .analysis_clock import MAX_BATCH, AnalysisClock
from .beat_state import BeatClockState, BeatEvent
from .beat_tracker import BeatTracker
from .particle_filter import FilterConfig
from .slow_state import SlowState, StructureState

__all__ = ["INITIAL_BEAT", "SlowClock", "StructureSource"]

#: The beat clock published before the tracker's first state: stream time 0, 120 BPM, phase 0,
#: zero confidence (no beat known), bar position 1 of 4. A renderer treats conf = 0 as "no
#: beat": it must not pulse on it.
INITIAL_BEAT = BeatClockState(t_sec=0.0, spb=0.5, phase=0.0, beat_count=0, conf=0.0,
                              downbeat_prob=0.0, beat_in_bar=1, beats_per_bar=4)

_SILENCE = MicroFeatures().poll()  # the micro features before any frame, (7,) float32


class StructureSource(Protocol):
    """What :class:`SlowClock` needs from a structure tracker (see the module docstring)."""

    def update(self, states: Sequence[BeatClockState]) -> StructureState | None: ...

    def reset(self) -> None: ...


class _FrameStore:
    """Analysis-clock consumer: micro features per frame, and rings of the last frames'
    features (272) and micro features (7), published under a sequence counter.

    ``seq`` is odd while a batch is being stored; ``frames`` counts frames stored since reset.
    Frame ``frames - 1`` is the newest held; frames older than ``frames - capacity`` are gone.
    """

    def __init__(self, capacity: int) -> None:
        self.micro = MicroFeatures()
        self.features = FeatureRing(capacity, DIM)
        self.micros = FeatureRing(capacity, len(MICRO_NAMES))
        self._batch_micro = np.zeros((MAX_BATCH, len(MICRO_NAMES)), np.float32)
        self.seq = 0
        self.frames = 0

    def on_frames(self, batch) -> None:
        k = batch.count
        rows = self._batch_micro[:k]
        for j in range(k):
            rows[j] = self.micro.update(batch.windows[j], batch.magnitudes[j])
        self.seq += 1
        self.features.extend(batch.features)
        self.micros.extend(rows)
        self.frames += k
        self.seq += 1

    def reset(self) -> None:
        self.seq += 1
        self.micro.reset()
        self.features.clear()
        self.micros.clear()
        self.frames = 0
        self.seq += 1

    def read(self, fn):
        """``fn(frames)`` computed from a state no store overlapped (seqlock reader); an
        exception raised on an overlapped state is discarded with it."""
        while True:
            seq = self.seq
            if not seq & 1:
                try:
                    result = fn(self.frames)
                except Exception:
                    if self.seq == seq:
                        raise
                else:
                    if self.seq == seq:
                        return result
            time.sleep(0)  # let the producer finish its store


class SlowClock:
    """The synchronous slow clock (see the module docstring).

    Parameters
    ----------
    sample_rate : float
        Input rate in Hz (e.g. 48000), fixed for the clock's life.
    model : 1, 2, 3 or "ensemble"
        BeatNet weight set of the beat tracker (``fractalsync_models.beatnet``); ignored when
        ``crnn`` is given.
    seed : int
        Seed of the particle filter: the same audio and seed give the same states.
    structure : StructureSource or None
        The structure tracker (see "Structure seam" above); None publishes the neutral state.
    filter_config : FilterConfig, optional
        Particle-filter parameters (default ``FilterConfig()``).
    crnn : object, optional
        A ready CRNN for the tracker (see :class:`BeatTracker`), e.g. one shared model.
    quality : str
        soxr quality of the resampler (default "HQ", the offline path's).
    history_frames : int
        Analysis frames kept for :meth:`features_at` / :meth:`feature_window` (default 512,
        10.24 s; >= 1).

    Threads: :meth:`push` and :meth:`reset` from one producer thread; the reads from that
    thread or one other, concurrently (see the module docstring).
    """

    def __init__(self, sample_rate: float, *, model: int | str = ONLINE_MODEL, seed: int = 0,
                 structure: StructureSource | None = None,
                 filter_config: FilterConfig | None = None, crnn=None, quality: str = "HQ",
                 history_frames: int = 512) -> None:
        self.sample_rate = check_rate(sample_rate, "sample_rate")
        if structure is not None:
            for name in ("update", "reset"):
                if not callable(getattr(structure, name, None)):
                    raise TypeError(f"structure needs an {name}() method, "
                                    f"{type(structure).__name__} has none")
        if (isinstance(history_frames, bool) or not isinstance(history_frames, (int, np.integer))
                or history_frames < 1):
            raise ValueError(f"history_frames must be an int >= 1, got {history_frames!r}")
        self.analysis_clock = AnalysisClock(quality)
        self._tracker = BeatTracker(model, filter_config, seed, crnn, clock=self.analysis_clock)
        self._store = self.analysis_clock.add_consumer(_FrameStore(int(history_frames)))
        self._structure = structure
        self._structure_on_clock = callable(getattr(structure, "on_frames", None))
        if self._structure_on_clock:
            self.analysis_clock.add_consumer(structure)
        self._clear_published()

    def _clear_published(self) -> None:
        self._beat = INITIAL_BEAT
        self._structure_state = StructureState.neutral()
        self._samples = 0
        self._states: tuple[BeatClockState, ...] = ()
        self._events: tuple[BeatEvent, ...] = ()
        self._latest = SlowState(self._beat, self._structure_state,
                                 self._micro_tuple(self._store.micro.latest))

    @staticmethod
    def _micro_tuple(values: np.ndarray) -> tuple[float, ...]:
        return tuple(float(v) for v in values)

    # ------------------------------------------------------------------ producer

    def push(self, block) -> SlowState:
        """Analyse the next input block and publish the resulting state.

        Parameters
        ----------
        block : array, shape (n,) or (n, channels), any n >= 0
            Audio at `sample_rate`, as :meth:`AnalysisClock.push
            <fractalsync_tracking.analysis_clock.AnalysisClock.push>` accepts it (float or int
            PCM; NaN/inf analysed as silence with a warning). A rejected block (TypeError or
            ValueError) changes nothing.

        Returns
        -------
        SlowState
            ``beat``: the newest beat state so far (:data:`INITIAL_BEAT` before the first);
            ``structure``: the structure tracker's latest (neutral before it has one);
            ``features``: the newest analysis frame's 7 micro features (the silence vector
            ``(-120, -120, -120, -120, 0, 0, 0)`` before the first frame).
        """
        self.analysis_clock.push(block, self.sample_rate)
        out = self._tracker.collect()
        self._samples = int(round(self.analysis_clock.stream_time * self.sample_rate))
        self._states = tuple(out.states)
        self._events = tuple(out.events)
        if out.states:
            self._beat = out.states[-1]
        if self._structure is not None:
            new = self._structure.update(self._states)
            if new is not None:
                if not isinstance(new, StructureState):
                    raise TypeError("structure.update() must return a StructureState or None, "
                                    f"got {type(new).__name__}")
                self._structure_state = new
        self._latest = SlowState(self._beat, self._structure_state,
                                 self._micro_tuple(self._store.micro.latest))
        return self._latest

    def reset(self) -> None:
        """Start a new stream at time 0: the analysis clock, tracker, micro features, rings,
        structure tracker and the published state (back to the initial one)."""
        self.analysis_clock.reset()  # resets every clock consumer, the structure one included
        if self._structure is not None and not self._structure_on_clock:
            self._structure.reset()
        self._clear_published()

    # ------------------------------------------------------------------ published state

    @property
    def latest(self) -> SlowState:
        """The state the last :meth:`push` returned (the initial state before any)."""
        return self._latest

    @property
    def beat_states_since_last_push(self) -> tuple[BeatClockState, ...]:
        """Every beat state the last :meth:`push` produced, in time order (one per analysis
        frame it completed; possibly none). Feed each to the phase predictor."""
        return self._states

    @property
    def beat_events_since_last_push(self) -> tuple[BeatEvent, ...]:
        """The beats the last :meth:`push` decided, in time order (possibly none)."""
        return self._events

    @property
    def samples_consumed(self) -> int:
        """Input samples (per channel) pushed since construction or :meth:`reset`."""
        return self._samples

    @property
    def stream_time(self) -> float:
        """Seconds of input pushed since construction or :meth:`reset`."""
        return self._samples / self.sample_rate

    @property
    def frames_analysed(self) -> int:
        """Analysis frames completed since construction or :meth:`reset`."""
        return self._store.frames

    # ------------------------------------------------------------------ pure reads

    def frame_time(self, index: int) -> float:
        """Stream time (s) that analysis frame ``index`` describes (``index / 50``)."""
        return self.analysis_clock.frame_time(index)

    def frame_index_at(self, t: float) -> int:
        """Index of the newest analysis frame held whose time is <= ``t`` (s), or -1 if there
        is none yet. Frames not analysed yet do not count: the answer is causal."""
        t = self._check_time(t)
        return self._store.read(lambda n: self._index_at(t, n))

    def features_at(self, t: float) -> np.ndarray:
        """The 7 micro features of frame :meth:`frame_index_at(t) <frame_index_at>`.

        A pure read (nothing advances). Before the first frame (index -1): the silence vector
        ``(-120, -120, -120, -120, 0, 0, 0)``.

        Parameters
        ----------
        t : float
            Stream time in seconds (finite).

        Returns
        -------
        np.ndarray, shape (7,), float32
            A new array, in ``MICRO_NAMES`` order.

        Raises
        ------
        ValueError
            ``t`` is not finite, or its frame is older than the ``history_frames`` kept.
        """
        t = self._check_time(t)

        def read(n: int) -> np.ndarray:
            i = self._index_at(t, n)
            if i < 0:
                return _SILENCE.copy()
            return self._store.micros.last(self._back(n, i, 1))[0].copy()

        return self._store.read(read)

    def feature_window(self, T: int, t: float) -> np.ndarray:
        """The 272 BeatNet features of the T frames ending at :meth:`frame_index_at(t)
        <frame_index_at>`, oldest first.

        A pure read. Row ``j`` is frame ``i - T + 1 + j`` (i = ``frame_index_at(t)``); rows for
        frames before the stream's first (negative indices) are zeros.

        Parameters
        ----------
        T : int
            Number of frames, 0 <= T <= history_frames.
        t : float
            Stream time in seconds (finite).

        Returns
        -------
        np.ndarray, shape (T, 272), float32 (a new array)

        Raises
        ------
        ValueError
            Bad T or t, or a window reaching older frames than the ``history_frames`` kept.
        """
        cap = self._store.features.capacity
        if isinstance(T, bool) or not isinstance(T, (int, np.integer)) or not 0 <= T <= cap:
            raise ValueError(f"T must be an int in [0, {cap}], got {T!r}")
        t = self._check_time(t)

        def read(n: int) -> np.ndarray:
            i = self._index_at(t, n)
            return self._store.features.last(self._back(n, i, T))[:T].copy()

        return self._store.read(read)

    # ------------------------------------------------------------------ helpers

    @staticmethod
    def _check_time(t) -> float:
        if isinstance(t, bool) or not isinstance(t, (int, float, np.integer, np.floating)):
            raise TypeError(f"t must be a number (seconds), got {type(t).__name__}")
        t = float(t)
        if not np.isfinite(t):
            raise ValueError(f"t must be finite, got {t!r}")
        return t

    def _index_at(self, t: float, n: int) -> int:
        """Newest frame index in [-1, n - 1] whose frame_time is <= t."""
        if n == 0:
            return -1
        i = int(np.floor(t * SAMPLE_RATE / HOP))
        i = min(max(i, -1), n - 1)
        ft = self.analysis_clock.frame_time
        while i + 1 <= n - 1 and ft(i + 1) <= t:  # exact with respect to frame_time
            i += 1
        while i >= 0 and ft(i) > t:
            i -= 1
        return i

    def _back(self, n: int, i: int, T: int) -> int:
        """Frames to take from the ring's end so that the first T of them end at frame i."""
        m = n - 1 - i + T
        cap = self._store.features.capacity
        if m > cap:
            raise ValueError(
                f"the frames asked for (back to frame {i - T + 1}) are older than the "
                f"{cap} frames kept (newest: {n - 1}); raise history_frames"
            )
        return m
