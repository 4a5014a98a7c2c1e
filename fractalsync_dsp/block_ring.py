"""A lock-free single-producer single-consumer ring of float32 audio, for an audio callback.

The audio device's callback (the producer) writes each block it receives; the analysis thread
(the consumer) reads blocks at its own pace. The producer never waits: when the consumer falls
behind and the ring is full, the samples that do not fit are dropped and counted.

Why this is safe without a lock (CPython with the GIL, 3.10-3.13):

- The ring has two position counters, ``_written`` and ``_read``, plain Python ints that only
  grow. Each has exactly one writer: only the producer assigns ``_written`` (and
  ``_dropped``), only the consumer assigns ``_read``. Either thread may read the other's
  counter at any time; rebinding an attribute to a new int is a single atomic store under the
  GIL, so a reader sees either the old or the new value, never a torn one.
- The producer copies the samples into the buffer first and advances ``_written`` after the
  copy has returned: the data is published before the counter. A consumer that reads
  ``_written == w`` therefore finds every sample before ``w`` completely stored.
- Symmetrically the consumer copies the samples out first and advances ``_read`` afterwards,
  so the producer only reuses slots whose samples have already been copied out.
- The free space the producer computes from a stale ``_read`` can only be smaller than the
  truth, and the available count the consumer computes from a stale ``_written`` can only be
  smaller: a stale view makes either side do less, never overwrite or read unwritten slots.

Under a free-threaded build (no GIL) these plain attribute stores are not guaranteed to be
ordered after the buffer copy; this module is written for the GIL build the project uses.

"Sample" here means one time step of all channels (a frame of ``channels`` float32 values).
"""

from __future__ import annotations

import time

import numpy as np

__all__ = ["BlockRing"]


class BlockRing:
    """Single-producer single-consumer ring of ``capacity_samples`` float32 samples.

    One thread (the producer, e.g. a PortAudio callback) calls `write`; one other thread (the
    consumer, e.g. the analysis thread) calls `read` and `wait_readable`. The counters and
    `available` may be read from any thread.

    Guarantees:

    - `write` never blocks, never takes a lock and allocates no array data (it copies into the
      preallocated buffer; only the small Python view objects of the two slices are created).
      On overflow it stores the oldest part of the block that fits, drops the rest and adds it
      to `dropped_samples`. Samples already in the ring are never overwritten.
    - `read` never blocks and allocates no array data; samples come out in the order they were
      written, each exactly once.

    Parameters
    ----------
    capacity_samples : int
        Ring size in samples (time steps), >= 1. At 48 kHz, 48000 holds one second.
    channels : int, default 1
        Values per sample, >= 1.
    """

    def __init__(self, capacity_samples: int, channels: int = 1) -> None:
        for name, value in (("capacity_samples", capacity_samples), ("channels", channels)):
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
                raise ValueError(f"{name} must be an int >= 1, got {value!r}")
        self.capacity = int(capacity_samples)
        self.channels = int(channels)
        self._buf = np.zeros((self.capacity, self.channels), np.float32)
        self._written = 0  # producer only
        self._dropped = 0  # producer only
        self._read = 0  # consumer only

    # -- counters (any thread) -------------------------------------------------------------

    @property
    def written_total(self) -> int:
        """Samples stored since construction (monotonic; advanced by the producer only)."""
        return self._written

    @property
    def read_total(self) -> int:
        """Samples read since construction (monotonic; advanced by the consumer only)."""
        return self._read

    @property
    def dropped_samples(self) -> int:
        """Samples `write` discarded because the ring was full (monotonic; producer only)."""
        return self._dropped

    @property
    def available(self) -> int:
        """Samples written and not yet read, in [0, capacity]. Exact for the consumer thread
        (a later write can only add to it); from other threads a momentary value."""
        read = self._read  # read first: a later _written can only make the difference larger
        return self._written - read

    # -- shape checks ----------------------------------------------------------------------

    def _as_frames(self, arr, name: str) -> np.ndarray:
        """``arr`` as a (n, channels) float32 view (no copy), or a clear error."""
        if not isinstance(arr, np.ndarray):
            raise TypeError(f"{name} must be a numpy float32 array, got {type(arr).__name__}")
        if arr.dtype != np.float32:
            raise TypeError(f"{name} must have dtype float32, got {arr.dtype}")
        if arr.ndim == 1 and self.channels == 1:
            return arr.reshape(-1, 1)
        if arr.ndim == 2 and arr.shape[1] == self.channels:
            return arr
        expected = "(n,) or (n, 1)" if self.channels == 1 else f"(n, {self.channels})"
        raise ValueError(f"{name} must have shape {expected}, got {arr.shape}")

    # -- producer ----------------------------------------------------------------------------

    def write(self, block: np.ndarray) -> int:
        """Store a block (producer thread only); never blocks.

        Parameters
        ----------
        block : np.ndarray, float32, shape (n,) (mono ring only) or (n, channels)
            Samples in time order; n may be 0. Values are stored as given (NaN/inf included:
            sanitising is the consumer's business).

        Returns
        -------
        int
            Samples stored, ``min(n, free space)``; the other ``n - stored`` are counted in
            `dropped_samples`.
        """
        frames = self._as_frames(block, "block")
        n = frames.shape[0]
        written = self._written
        free = self.capacity - (written - self._read)
        k = n if n <= free else free
        if k:
            start = written % self.capacity
            first = min(k, self.capacity - start)
            self._buf[start : start + first] = frames[:first]
            if k > first:
                self._buf[: k - first] = frames[first:k]
            self._written = written + k  # publish after the data
        if k < n:
            self._dropped += n - k
        return k

    # -- consumer ----------------------------------------------------------------------------

    def read(self, out: np.ndarray) -> int:
        """Copy up to ``len(out)`` of the oldest unread samples into `out` (consumer only).

        Never blocks: returns at once with however many samples are available (maybe 0).

        Parameters
        ----------
        out : np.ndarray, float32, shape (m,) (mono ring only) or (m, channels)
            Destination; rows ``[:count]`` are filled, the rest are left untouched.

        Returns
        -------
        int
            count, the number of samples copied, in [0, m].
        """
        dest = self._as_frames(out, "out")
        read = self._read
        k = min(dest.shape[0], self._written - read)
        if k:
            start = read % self.capacity
            first = min(k, self.capacity - start)
            dest[:first] = self._buf[start : start + first]
            if k > first:
                dest[first:k] = self._buf[: k - first]
            self._read = read + k  # release the slots after the copy
        return k

    def wait_readable(
        self, min_samples: int, timeout: float | None, poll_interval: float = 0.002
    ) -> bool:
        """Wait until at least `min_samples` are available (consumer thread only).

        This polls `available`, sleeping `poll_interval` seconds between looks, rather than
        waiting on a ``threading.Event`` the producer would set: ``Event.set()`` acquires the
        event's condition lock, which the waiting thread also holds while it goes to sleep, so
        an audio callback could be made to wait for the consumer. Polling leaves the producer
        entirely lock-free; it costs the consumer at most `poll_interval` of extra latency
        (2 ms against a 21.3 ms block at 48 kHz / 1024) and a few hundred cheap wake-ups a
        second while idle.

        Parameters
        ----------
        min_samples : int
            0 <= min_samples <= capacity (more could never become available: ValueError).
        timeout : float or None
            Seconds to wait at most (>= 0); None waits without a limit.
        poll_interval : float, default 0.002
            Seconds between looks, > 0.

        Returns
        -------
        bool
            True if `min_samples` are available, False on timeout.
        """
        if (isinstance(min_samples, bool) or not isinstance(min_samples, (int, np.integer))
                or not 0 <= min_samples <= self.capacity):
            raise ValueError(
                f"min_samples must be an int in [0, {self.capacity}], got {min_samples!r}"
            )
        if timeout is not None and not timeout >= 0:  # also refuses NaN
            raise ValueError(f"timeout must be >= 0 seconds or None, got {timeout!r}")
        if not poll_interval > 0 or poll_interval == float("inf"):
            raise ValueError(f"poll_interval must be a finite number > 0, got {poll_interval!r}")
        deadline = None if timeout is None else time.monotonic() + timeout
        while self._written - self._read < min_samples:
            if deadline is None:
                time.sleep(poll_interval)
                continue
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            time.sleep(min(poll_interval, left))
        return True
