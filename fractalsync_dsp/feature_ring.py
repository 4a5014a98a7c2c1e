"""A fixed-capacity ring of feature frames: one producer, any number of non-consuming readers.

This is the roadmap's "decouple producer and consumers": the analysis clock appends one frame
per hop, and any reader (the CRNN, the anticipator at its decimated rate, the renderer) asks
for the last T frames whenever it likes. Reading never advances or changes anything, so how
often (or whether) a reader polls cannot change what any reader sees.
"""

from __future__ import annotations

import numpy as np

__all__ = ["FeatureRing"]


class FeatureRing:
    """Ring buffer of the last `capacity` frames of `dim` values each.

    Every frame is stored twice, at slot ``i % capacity`` and ``i % capacity + capacity`` of a
    ``(2 * capacity, dim)`` buffer, so the last T frames are always one contiguous slice and a
    read is a single copy.

    Allocation: `append` and `extend` copy into the preallocated buffer and allocate no array
    data when the input already has the ring's dtype (other dtypes are cast by numpy, which
    may use a temporary). ``last(T, out=buf)`` allocates no array data; ``last(T)`` allocates
    its result.

    Threads: one producer thread and reader threads may run concurrently; `last` re-copies if
    the producer began overwriting any frame it was copying meanwhile (a seqlock-style check of
    two counters), so a returned block is always T consecutive, completely written frames.

    Parameters
    ----------
    capacity : int
        Number of frames kept (>= 1). Reads of up to `capacity` frames are allowed.
    dim : int
        Values per frame (>= 1).
    dtype : numpy dtype, default float32
        Storage dtype.
    """

    def __init__(self, capacity: int, dim: int, dtype=np.float32) -> None:
        for name, value in (("capacity", capacity), ("dim", dim)):
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
                raise ValueError(f"{name} must be an int >= 1, got {value!r}")
        self.capacity = int(capacity)
        self.dim = int(dim)
        self.dtype = np.dtype(dtype)
        self._buf = np.zeros((2 * self.capacity, self.dim), self.dtype)
        self._written = 0  # frames completely stored
        self._started = 0  # frames whose storing has begun (> _written only during a write)

    @property
    def frames_written(self) -> int:
        """Total frames appended since construction or `clear` (keeps counting past capacity)."""
        return self._written

    @property
    def count(self) -> int:
        """Frames currently held: ``min(frames_written, capacity)``."""
        return min(self._written, self.capacity)

    def _checked(self, frames, name: str, shape: str) -> np.ndarray:
        """``frames`` as an array whose dtype casts to the ring's within its kind (TypeError
        otherwise: complex, object, strings ...), so that storing it cannot fail part-way."""
        frames = np.asarray(frames)
        if not np.can_cast(frames.dtype, self.dtype, casting="same_kind"):
            raise TypeError(f"{name} of dtype {frames.dtype} cannot be stored in a {self.dtype} "
                            f"ring (shape {shape})")
        return frames

    def append(self, frame) -> None:
        """Add one frame of shape ``(dim,)`` (single producer only)."""
        frame = self._checked(frame, "frame", f"({self.dim},)")
        if frame.shape != (self.dim,):
            raise ValueError(f"frame must have shape ({self.dim},), got {frame.shape}")
        slot = self._written % self.capacity
        self._started = self._written + 1
        self._buf[slot] = frame
        self._buf[slot + self.capacity] = frame
        self._written += 1

    def extend(self, frames) -> None:
        """Add frames of shape ``(k, dim)``, oldest first (k may be 0 or exceed capacity)."""
        frames = self._checked(frames, "frames", f"(k, {self.dim})")
        if frames.ndim != 2 or frames.shape[1] != self.dim:
            raise ValueError(f"frames must have shape (k, {self.dim}), got {frames.shape}")
        k = frames.shape[0]
        kept = frames[max(0, k - self.capacity) :]  # older ones would be overwritten anyway
        start = (self._written + k - kept.shape[0]) % self.capacity
        self._started = self._written + k
        first = min(kept.shape[0], self.capacity - start)
        for base in (0, self.capacity):
            self._buf[base + start : base + start + first] = kept[:first]
            self._buf[base : base + kept.shape[0] - first] = kept[first:]
        self._written += k

    def last(self, T: int, out: np.ndarray | None = None) -> np.ndarray:
        """The last T frames, oldest first, as an array of shape ``(T, dim)``.

        If fewer than T frames have been written, the first ``T - count`` rows are zeros and the
        written frames follow (use `count` to tell padding from data). Reading changes nothing.

        Parameters
        ----------
        T : int
            0 <= T <= capacity.
        out : np.ndarray, optional
            Destination of shape ``(T, dim)`` and the ring's dtype; filled and returned.

        Returns
        -------
        np.ndarray, shape (T, dim)
            `out` if given, else a new array (never a view of the ring).
        """
        cap = self.capacity
        if isinstance(T, bool) or not isinstance(T, (int, np.integer)) or not 0 <= T <= cap:
            raise ValueError(f"T must be an int in [0, {cap}], got {T!r}")
        if out is None:
            out = np.empty((T, self.dim), self.dtype)
        elif not isinstance(out, np.ndarray):
            raise TypeError(f"out must be a numpy array, got {type(out).__name__}")
        elif out.shape != (T, self.dim) or out.dtype != self.dtype:
            raise ValueError(
                f"out must have shape {(T, self.dim)} and dtype {self.dtype}, "
                f"got {out.shape} {out.dtype}"
            )
        while True:
            n = self._written
            if n >= T:
                start = (n - T) % self.capacity
                out[:] = self._buf[start : start + T]
            else:
                out[: T - n] = 0
                out[T - n :] = self._buf[:n]
            # Writing frame j overwrites frame j - capacity. The oldest frame copied is n - T, so
            # the copy is intact unless a frame >= n - T + capacity was begun meanwhile.
            if self._started - n <= cap - T:
                return out

    def on_frames(self, batch) -> None:
        """Consumer hook of the analysis clock (``fractalsync_tracking.analysis_clock``): store
        the batch's (k, 272) ``features`` (the ring's ``dim`` must be 272)."""
        self.extend(batch.features)

    def reset(self) -> None:
        """The analysis clock's reset hook: :meth:`clear`."""
        self.clear()

    def clear(self) -> None:
        """Forget all frames (zeros the buffer, `frames_written` back to 0). Producer only."""
        self._buf[:] = 0
        self._written = self._started = 0
