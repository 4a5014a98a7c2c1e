"""The analysis thread: ring of input blocks -> SlowClock -> the latest SlowState for the renderer.

::

    audio callback --write--> BlockRing --read (block_samples)--> AnalysisThread
        --push--> SlowClock --> latest SlowState (reference swap) + queue of beat states
                                          ^ read by the render loop, never blocking

Three threads touch it, and none waits for another:

* The **producer** (an audio callback, a file reader) only writes to the
  :class:`~fractalsync_dsp.block_ring.BlockRing`: it never sees this class. When analysis falls
  behind, the ring fills and the producer's excess samples are dropped and counted
  (``ring.dropped_samples``); the producer is never blocked.
* The **analysis thread** (a daemon thread started by :meth:`AnalysisThread.start`) waits
  for ``block_samples`` samples, pushes them into the :class:`SlowClock`, appends the beat
  states they produced to a bounded queue, and publishes the resulting immutable ``SlowState``
  by rebinding one attribute: a reference swap, atomic under the GIL.
* The **render loop** reads :attr:`AnalysisThread.latest` (one attribute read: it gets the old
  or the new state, whole, never a half-built one, and it takes no lock) and takes the beat
  states with :meth:`AnalysisThread.drain_beat_states` (``collections.deque.popleft``, a single
  C-level operation under the GIL: no Python lock, no waiting). It may also read
  ``slow_clock.features_at`` / ``feature_window`` (seqlock readers, see
  :mod:`fractalsync_tracking.slow_clock`). None of these waits for the analysis thread; the
  only contention is the GIL itself, which CPython hands over at least every 5 ms.
"""

from __future__ import annotations

import threading
from collections import deque

import numpy as np

from fractalsync_dsp.block_ring import BlockRing

from .beat_state import BeatClockState
from .slow_clock import SlowClock
from .slow_state import SlowState

__all__ = ["AnalysisThread"]

_WAIT_S = 0.05  # longest wait for data before the thread looks at its stop flag again


class AnalysisThread:
    """Runs a :class:`SlowClock` on a :class:`BlockRing` in a daemon thread (module docstring).

    Parameters
    ----------
    ring : BlockRing
        The input ring, written by the producer at the clock's ``sample_rate``.
    slow_clock : SlowClock
        Pushed only by this thread once started (do not push it elsewhere meanwhile).
    block_samples : int
        Samples per push, 1 <= block_samples <= ring.capacity (default 1024: 21.3 ms at
        48 kHz, the input cadence of ``contracts/v1.json``).
    beat_queue_size : int
        Most beat states held for :meth:`drain_beat_states` (default 1024, 20 s at 50 per
        second); when the reader falls further behind, the oldest are discarded.
    """

    def __init__(self, ring: BlockRing, slow_clock: SlowClock, block_samples: int = 1024,
                 *, beat_queue_size: int = 1024) -> None:
        if not isinstance(ring, BlockRing):
            raise TypeError(f"ring must be a BlockRing, got {type(ring).__name__}")
        if not isinstance(slow_clock, SlowClock):
            raise TypeError(f"slow_clock must be a SlowClock, got {type(slow_clock).__name__}")
        for name, value, hi in (("block_samples", block_samples, ring.capacity),
                                ("beat_queue_size", beat_queue_size, None)):
            if (isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1
                    or hi is not None and value > hi):
                bound = f"in [1, {hi}] (the ring's capacity)" if hi is not None else ">= 1"
                raise ValueError(f"{name} must be an int {bound}, got {value!r}")
        self.ring = ring
        self.slow_clock = slow_clock
        self.block_samples = int(block_samples)
        self._block = np.zeros((self.block_samples, ring.channels), np.float32)
        self._beats: deque[BeatClockState] = deque(maxlen=int(beat_queue_size))
        self._latest: SlowState = slow_clock.latest
        self._samples = 0
        self._published = 0
        self._stop = threading.Event()  # set by stop(); only the analysis thread waits on it
        self._drain = False
        self._error: BaseException | None = None
        self._thread: threading.Thread | None = None

    # ------------------------------------------------------------------ control

    def start(self) -> None:
        """Start the daemon thread (once per instance; RuntimeError on a second call)."""
        if self._thread is not None:
            raise RuntimeError("this AnalysisThread was already started")
        self._thread = threading.Thread(target=self._run, name="fractalsync-analysis",
                                        daemon=True)
        self._thread.start()

    def stop(self, timeout: float | None = None, *, drain: bool = False) -> None:
        """Stop the thread and wait for it (at most `timeout` seconds; None: no limit).

        With ``drain=True`` the thread first analyses everything in the ring (the last,
        partial block too), e.g. at the end of a file: stop the producer first, or what it
        keeps writing is analysed too. Then re-raises the exception that ended the analysis,
        if one did (as :meth:`check`).

        Raises
        ------
        TimeoutError
            The thread did not finish within `timeout` (it keeps running; call again).
        """
        self._drain = bool(drain)
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            if self._thread.is_alive():
                raise TimeoutError(f"the analysis thread did not stop within {timeout} s")
        self.check()

    def check(self) -> None:
        """Re-raise the exception that ended the analysis thread, if any (else do nothing)."""
        if self._error is not None:
            raise self._error

    @property
    def running(self) -> bool:
        """True while the thread is alive."""
        return self._thread is not None and self._thread.is_alive()

    # ------------------------------------------------------------------ reads (any thread)

    @property
    def latest(self) -> SlowState:
        """The newest published SlowState (the slow clock's initial one before any push).
        One attribute read: never blocks, never half-built."""
        return self._latest

    @property
    def samples_analysed(self) -> int:
        """Input samples pushed into the slow clock so far (its ``samples_consumed``)."""
        return self._samples

    @property
    def published_count(self) -> int:
        """SlowStates published so far (one per push)."""
        return self._published

    def drain_beat_states(self) -> list[BeatClockState]:
        """Take every beat state published since the last drain, oldest first.

        For one reader (the render loop, which feeds them to its phase predictor). Lock-free
        for the reader: ``deque.popleft`` until empty. If more than ``beat_queue_size``
        states piled up, only the newest ``beat_queue_size`` are returned.
        """
        out = []
        beats = self._beats
        while True:
            try:
                out.append(beats.popleft())
            except IndexError:
                return out

    # ------------------------------------------------------------------ the thread

    def _run(self) -> None:
        try:
            ring, n = self.ring, self.block_samples
            while not self._stop.is_set():
                if ring.wait_readable(n, _WAIT_S):
                    self._push(ring.read(self._block))
            while self._drain and ring.available:
                self._push(ring.read(self._block))
        except BaseException as exc:  # kept for check()/stop(); the producer is unaffected
            self._error = exc

    def _push(self, k: int) -> None:
        state = self.slow_clock.push(self._block[:k])
        self._beats.extend(self.slow_clock.beat_states_since_last_push)
        self._samples += k
        self._latest = state  # the reference swap that publishes it
        self._published += 1
