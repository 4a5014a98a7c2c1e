"""The analysis (slow) clock: audio blocks in, one 20 ms analysis frame at a time out, fanned out.

:class:`AnalysisClock` owns the live input's resampler and the streaming BeatNet front end. It
is the one producer of analysis frames; every consumer reads the same frames from it, so
nothing is computed twice::

    block (any rate, mono or (n, channels), any size)
      -> checked once here (dtype, layout, rate; NaN/inf samples become silence, with a warning)
      -> StreamResampler (soxr HQ, to 22050 Hz mono; bypassed at 22050 Hz)
      -> BeatNetFrontEnd (causal frames, 50 per second)
      -> every registered consumer, in registration order: ``consumer.on_frames(batch)``

A consumer is any object with ``on_frames(batch: FrameBatch)`` and ``reset()``: the beat
tracker (CRNN + particle filter), :class:`~fractalsync_dsp.micro.MicroFeatures`,
:class:`~fractalsync_dsp.feature_ring.FeatureRing`, the structure model. Consumers registered
later (:meth:`AnalysisClock.add_consumer`) plug in without touching the others.

Each batch holds the frames one push completed (possibly none, in which case consumers are
not called), in order. For frame ``j`` of a batch:

* ``batch.index(j)``: the frame index since the last reset; ``batch.time(j)``: the stream
  time it describes, in seconds of input (the centre of its window, corrected for the
  resampler's alignment delay, see :meth:`AnalysisClock.frame_time`);
* ``batch.features[j]``: the 272 BeatNet features (float32);
* ``batch.magnitudes[j]``: the 705 FFT magnitudes of the Hann-windowed frame (float32);
* ``batch.windows[j]``: the raw 1411 samples at 22050 Hz (float32, before the window).

The arrays are views of the clock's preallocated buffers, valid only during the call: copy
what you keep. Pushing allocates no array data beyond what soxr returns, whatever the block
size (long blocks are fed in pieces of at most :data:`MAX_BATCH` frames).

Validation happens once, in :meth:`AnalysisClock.push`; the stages after it pass their own
arrays to each other on private, unchecked paths.
"""

from __future__ import annotations

import numpy as np

from fractalsync_dsp.frontend import DIM, FRAME, HOP, N_BINS, SAMPLE_RATE, BeatNetFrontEnd
from fractalsync_dsp.resample import (
    StreamResampler,
    _check_layout,
    _check_quality,
    _mono,
    check_rate,
)
from fractalsync_dsp.sample_format import as_float32_repaired

__all__ = ["MAX_BATCH", "AnalysisClock", "FrameBatch"]

MAX_BATCH = 64
"""Most frames handed to the consumers in one batch (1.28 s of audio)."""


class FrameBatch:
    """The analysis frames completed by one push (see the module docstring).

    Attributes
    ----------
    start : int
        Index of the first frame of the batch (frames counted since the clock's reset).
    count : int
        Number of frames, >= 1.
    features : (count, 272) float32 view
    magnitudes : (count, 705) float32 view
    windows : (count, 1411) float32 view
    """

    __slots__ = ("_clock", "count", "features", "magnitudes", "start", "windows")

    def __init__(self, clock: AnalysisClock, start: int, count: int) -> None:
        self._clock = clock
        self.start = start
        self.count = count
        self.features = clock._features[:count]
        self.magnitudes = clock._magnitudes[:count]
        self.windows = clock._windows[:count]

    def index(self, j: int) -> int:
        """Frame index of row ``j``."""
        return self.start + j

    def time(self, j: int) -> float:
        """Stream time (s) that row ``j`` describes."""
        return self._clock.frame_time(self.start + j)


class AnalysisClock:
    """The live analysis clock: resampler + streaming front end + consumers.

    Parameters
    ----------
    quality : soxr quality of the resampler (default "HQ", which matches the offline path).

    Use :meth:`add_consumer` to register consumers, :meth:`push` for each input block, and
    :meth:`reset` to start a new stream (it resets every consumer too). Not thread-safe: push
    from one thread.
    """

    def __init__(self, quality: str = "HQ") -> None:
        self._quality = _check_quality(quality)
        self._front_end = BeatNetFrontEnd()
        self._consumers: list = []
        self._features = np.zeros((MAX_BATCH, DIM), np.float32)
        self._magnitudes = np.zeros((MAX_BATCH, N_BINS), np.float32)
        self._windows = np.zeros((MAX_BATCH, FRAME), np.float32)
        self._new_stream()

    def _new_stream(self) -> None:
        self._front_end.reset()
        self._resampler: StreamResampler | None = None
        self._sample_rate: float | None = None
        self._samples_in = 0

    # ------------------------------------------------------------------------- consumers

    def add_consumer(self, consumer):
        """Register ``consumer`` (an object with ``on_frames(batch)`` and ``reset()``); it gets
        every frame completed from now on. Returns ``consumer``."""
        for name in ("on_frames", "reset"):
            if not callable(getattr(consumer, name, None)):
                raise TypeError(f"a consumer needs an {name}() method, "
                                f"{type(consumer).__name__} has none")
        if any(c is consumer for c in self._consumers):
            raise ValueError(f"{type(consumer).__name__} is already registered")
        self._consumers.append(consumer)
        return consumer

    def remove_consumer(self, consumer) -> None:
        """Stop feeding ``consumer`` (ValueError if it is not registered)."""
        for i, c in enumerate(self._consumers):
            if c is consumer:
                del self._consumers[i]
                return
        raise ValueError(f"{type(consumer).__name__} is not registered")

    @property
    def consumers(self) -> tuple:
        """The registered consumers, in the order they are fed."""
        return tuple(self._consumers)

    # ------------------------------------------------------------------------- stream

    def reset(self) -> None:
        """Start a new stream at time 0 (the next push may use any rate); resets every
        consumer."""
        self._new_stream()
        for c in self._consumers:
            c.reset()

    @property
    def sample_rate(self) -> float | None:
        """Input rate of the current stream (Hz), None before the first push."""
        return self._sample_rate

    @property
    def stream_time(self) -> float:
        """Seconds of input consumed since the last reset."""
        return self._samples_in / self._sample_rate if self._sample_rate else 0.0

    @property
    def frames_emitted(self) -> int:
        """Analysis frames handed to the consumers since the last reset."""
        return self._front_end.frames_emitted

    @property
    def frame_period(self) -> float:
        """Seconds between consecutive analysis frames (0.02)."""
        return HOP / SAMPLE_RATE

    def frame_time(self, frame: float) -> float:
        """Stream time (s) described by a (fractional) analysis frame index.

        Frame ``i`` is centred on 22050-Hz sample ``i * 441`` (``i / 50`` s of the resampled
        signal); the resampler's alignment delay (0 for soxr, which trims it) is removed. The
        frame is complete only 705 samples (32 ms) later: that is latency, not an offset.
        """
        delay = self._resampler.delay_samples if self._resampler is not None else 0.0
        return (frame * HOP + delay) / SAMPLE_RATE

    def push(self, block, sample_rate: float) -> int:
        """Feed the next input block; every consumer gets the frames it completes.

        Parameters
        ----------
        block : array, shape (n,) or (n, channels), n >= 0
            Audio at ``sample_rate``: float32/float64 as is, int16/int32 scaled to [-1, 1].
            Frames first, 1 <= channels <= 64. NaN, ±inf and samples beyond ±1e30 are treated
            as silence, and a :class:`~fractalsync_dsp.sample_format.NonFiniteAudioWarning`
            gives their count (one per block that had any).
        sample_rate : float
            Input rate in Hz (finite, > 0), the same for every push of a stream.

        Returns
        -------
        int
            The number of analysis frames this block completed.

        Raises
        ------
        TypeError
            Unsupported dtype or a non-numeric rate.
        ValueError
            A bad shape, a rate <= 0, or a rate differing from the stream's (call
            :meth:`reset` first). A rejected block leaves the clock and its consumers unchanged.
        """
        sr = check_rate(sample_rate, "sample_rate")
        if self._sample_rate is not None and sr != self._sample_rate:
            raise ValueError(f"sample_rate changed from {self._sample_rate} to {sr} Hz within "
                             "a stream; call reset() to start a new stream")
        x = _check_layout(np.asarray(block), "block")
        x, _ = as_float32_repaired(x, "block")
        x = np.ascontiguousarray(_mono(x, "block"))
        if self._sample_rate is None:
            if sr != SAMPLE_RATE:  # raises for a rate ratio soxr cannot handle
                self._resampler = StreamResampler(sr, SAMPLE_RATE, self._quality)
            self._sample_rate = sr
        self._samples_in += x.shape[0]
        if self._resampler is not None:
            x = self._resampler._push_mono(x)
        return self._analyse(x)

    def _analyse(self, x: np.ndarray) -> int:
        """Run validated float32 samples at 22050 Hz through the front end, batch by batch."""
        stream = self._front_end._stream
        total = 0
        pos = 0
        n = x.shape[0]
        while pos < n:
            # the longest piece that completes at most MAX_BATCH frames
            take = min(n - pos, MAX_BATCH * HOP + FRAME - 1 - stream.fill)
            start = stream.frames_emitted
            k = stream.push_into(x[pos:pos + take], self._features, self._magnitudes,
                                 self._windows)
            pos += take
            if k:
                batch = FrameBatch(self, start, k)
                for c in self._consumers:
                    c.on_frames(batch)
                total += k
        return total
