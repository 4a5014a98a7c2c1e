"""The BeatNet front end (madmom's features for the pretrained CRNN), batch and streaming.

Per frame (numbers from ``contracts/v1.json``): 1411 samples at 22050 Hz times a Hann window,
real FFT, magnitudes of bins 0..704, a 136-band log-spaced triangular filterbank
(:mod:`fractalsync_dsp.filterbank`), ``log10(1 + x)``, and the positive difference against the
previous frame (0 for the first frame). Output: ``[log_spec(136), pos_diff(136)]`` float32.

Framing:

* **Batch** (:meth:`BeatNetFrontEnd.features`) is madmom's centred framing: frame ``i`` covers
  samples ``i*441 - 705 .. i*441 + 705`` with zeros outside the signal, ``ceil(n / 441)`` frames.
  Frame ``i`` describes stream time ``i * 441 / 22050`` s.
* **Streaming** (:meth:`BeatNetFrontEnd.push`) is causal: frame ``i`` is emitted as soon as its
  last sample ``i*441 + 705`` has arrived, so it lags the centre of its audio by
  :data:`LAG_SAMPLES` = 705 samples (32 ms). The frames themselves are *identical* to the batch
  frames (bit for bit, whatever the block sizes): stream frame ``i`` equals batch frame ``i``.
  :meth:`BeatNetFrontEnd.flush` zero-pads the end to emit the frames batch mode would add.

Samples follow :mod:`fractalsync_dsp.sample_format`: float used as it is, int16 divided by
32767 as madmom does; NaN, inf and magnitudes above 1e30 are rejected with a ``ValueError``
naming the first bad sample, never silently zeroed.

Staging, the float32 FFT (rocket-fft's pocketfft, compiled into numba), the filterbank, log and
difference run in one private numba kernel; batch mode is a fresh stream pushed and flushed, so
batch and streaming agree bit for bit by construction.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from fractalsync_dsp.filterbank import SparseFilterbank, log_filterbank
from fractalsync_dsp.sample_format import as_float32

__all__ = ["BeatNetFrontEnd", "FRAME", "HOP", "LAG_SAMPLES", "N_BANDS", "N_BINS", "SAMPLE_RATE"]

SAMPLE_RATE = 22050
HOP = 441
FRAME = 1411
N_BINS = 705
N_BANDS = 136
DIM = 2 * N_BANDS
LAG_SAMPLES = FRAME // 2
_CHUNK = 1024  # frames per FFT call: bounds the working memory for long inputs


@njit(cache=True, inline="always")
def _magnitude(z):
    """|z| of a complex64 as float32, squared in float64 so that no finite input overflows."""
    re = np.float64(z.real)
    im = np.float64(z.imag)
    return np.float32(np.sqrt(re * re + im * im))


@njit(cache=True)
def _bands_log_diff(spec, indptr, bins, weights, prev, started, out, mags):
    """Filterbank + log10(1+x) + positive difference for a run of consecutive frames.

    spec: (N, >=705) complex64 rfft frames. indptr/bins/weights: CSR filterbank.
    prev: (n_bands,) float32 log spectrum of the frame before spec[0], updated in place.
    started: (1,) uint8, 0 until a first frame has been seen; set to 1 here.
    out: (N, 2*n_bands) float32 written in place.
    mags: (N, 705) float32 magnitudes written in place, or a (0, 0) array to skip them.
    """
    n_bands = indptr.shape[0] - 1
    row = np.empty(spec.shape[1], dtype=np.float32)
    for t in range(spec.shape[0]):
        for k in range(row.shape[0]):
            row[k] = _magnitude(spec[t, k])
        if mags.shape[0] > 0:
            mags[t, :] = row[: mags.shape[1]]
        for b in range(n_bands):
            acc = np.float32(0.0)
            for e in range(indptr[b], indptr[b + 1]):
                acc += weights[e] * row[bins[e]]
            value = np.float32(np.log10(np.float32(1.0) + acc))
            diff = value - prev[b] if started[0] else np.float32(0.0)
            out[t, b] = value
            out[t, n_bands + b] = diff if diff > 0 else np.float32(0.0)
            prev[b] = value
        started[0] = 1


@njit(cache=True)
def _stage_frames(buf, fill, block, window, frames, raws):
    """Append ``block`` to ``buf[:fill]``; window every complete frame into ``frames``.

    buf: (capacity,) float32 sample buffer; frame j starts at buf[j*HOP]. The caller makes sure
    capacity >= fill + len(block) and that ``frames`` (rows, FRAME) float32 has a row per frame.
    raws: (>= k, FRAME) float32 receiving each frame's raw (unwindowed) samples, or a (0, 0)
    array to skip them.
    Returns (k frames staged, new fill); the unused samples are moved to the front of ``buf``.
    """
    n = block.shape[0]
    for i in range(n):
        buf[fill + i] = block[i]
    fill += n
    k = (fill - FRAME) // HOP + 1 if fill >= FRAME else 0
    keep_raw = raws.shape[0] > 0
    for f in range(k):
        start = f * HOP
        for j in range(FRAME):
            frames[f, j] = buf[start + j] * window[j]
        if keep_raw:
            for j in range(FRAME):
                raws[f, j] = buf[start + j]
    used = k * HOP
    for i in range(fill - used):
        buf[i] = buf[used + i]
    return k, fill - used


@njit(cache=True)
def _push_block(buf, fill, block, window, frames, indptr, bins, weights, prev, started, out,
                mags, raws):
    """Run a whole block through staging, FFT and bands; returns the new ``fill``.

    The block is consumed in pieces of ``len(buf) - FRAME`` samples so that the buffers never
    overflow; ``out`` (and ``mags`` and ``raws`` unless they are (0, 0)) has at least one row
    per completed frame. The FFT is rocket-fft's pocketfft, compiled into this kernel, so a
    20 ms hop is one native call.
    """
    n = block.shape[0]
    step = buf.shape[0] - FRAME
    pos = 0
    row = 0
    while True:
        take = min(step, n - pos)
        raw_part = raws[row:] if raws.shape[0] > 0 else raws
        k, fill = _stage_frames(buf, fill, block[pos : pos + take], window, frames, raw_part)
        if k > 0:
            spec = np.fft.rfft(frames[:k], axis=1)
            part = mags[row : row + k] if mags.shape[0] > 0 else mags
            _bands_log_diff(spec, indptr, bins, weights, prev, started, out[row : row + k], part)
            row += k
        pos += take
        if pos >= n:
            return fill


def _as_samples(x) -> np.ndarray:
    """Validate a mono block (rules in :mod:`fractalsync_dsp.sample_format`) -> float32 (n,)."""
    arr = as_float32(x, "samples")
    if arr.ndim != 1:
        raise ValueError(f"expected mono samples of shape (n,), got shape {arr.shape}")
    return np.ascontiguousarray(arr)


class _FrameStream:
    """Causal framing state: preallocated sample buffer, staged frames, previous log spectrum."""

    def __init__(self, front_end: BeatNetFrontEnd) -> None:
        self.fe = front_end
        self.buf = np.zeros(FRAME + _CHUNK * HOP, dtype=np.float32)
        self.fill = LAG_SAMPLES  # frame 0 starts 705 samples before the signal: zero padding
        self.frames = np.empty((_CHUNK + 1, FRAME), dtype=np.float32)
        self.prev = np.zeros(N_BANDS, dtype=np.float32)
        self.started = np.zeros(1, dtype=np.uint8)
        self.frames_emitted = 0
        self.samples_pushed = 0

    def ready_after(self, n: int) -> int:
        """How many frames pushing n more samples completes."""
        total = self.fill + n
        return (total - FRAME) // HOP + 1 if total >= FRAME else 0

    def push(self, samples: np.ndarray, return_magnitudes: bool):
        k_total = self.ready_after(samples.shape[0])
        out = np.empty((k_total, DIM), dtype=np.float32)
        mags = np.empty((k_total, N_BINS), np.float32) if return_magnitudes else self.fe._no_mags
        self.push_into(samples, out, mags, self.fe._no_mags)
        return (out, mags) if return_magnitudes else out

    def push_into(self, samples: np.ndarray, out: np.ndarray, mags: np.ndarray,
                  raws: np.ndarray) -> int:
        """Trusted streaming path: no checks, no allocated outputs; returns the frame count k.

        samples: (n,) C-contiguous float32, already validated. out (>= k, 272), mags
        (>= k, 705) and raws (>= k, 1411) float32 receive the features, magnitudes and raw
        window samples of the k completed frames (``mags``/``raws`` may be (0, 0) to skip
        them); k = ``ready_after(n)``, which the caller sizes the buffers for.
        """
        k = self.ready_after(samples.shape[0])
        fb = self.fe.filterbank
        self.fill = _push_block(
            self.buf, self.fill, samples, self.fe.window, self.frames,
            fb.indptr, fb.bins, fb.weights, self.prev, self.started, out, mags, raws,
        )
        self.frames_emitted += k
        self.samples_pushed += samples.shape[0]
        return k

    def flush(self, return_magnitudes: bool):
        """Zero-pad so that every frame of the centred batch framing is emitted."""
        missing = -(-self.samples_pushed // HOP) - self.frames_emitted
        pad = (missing - 1) * HOP + FRAME - self.fill if missing > 0 else 0
        return self.push(np.zeros(pad, dtype=np.float32), return_magnitudes)


class BeatNetFrontEnd:
    """madmom-compatible BeatNet features at 22050 Hz, offline or one block at a time.

    Batch and streaming share one code path (:meth:`features` is a fresh stream pushed and
    flushed), so they agree bit for bit by construction.

    Example:
        >>> fe = BeatNetFrontEnd()
        >>> fe.features(np.zeros(22050, np.float32)).shape   # 1 s of audio -> 50 frames
        (50, 272)
    """

    def __init__(self) -> None:
        self.filterbank: SparseFilterbank = log_filterbank()
        self.window = np.hanning(FRAME).astype(np.float32)
        self._no_mags = np.zeros((0, 0), dtype=np.float32)
        self.reset()

    def reset(self) -> None:
        """Forget the stream: the next :meth:`push` starts a new signal at sample 0."""
        self._stream = _FrameStream(self)

    @property
    def frames_emitted(self) -> int:
        """Frames the current stream has emitted so far."""
        return self._stream.frames_emitted

    @property
    def samples_pushed(self) -> int:
        """Samples pushed into the current stream so far."""
        return self._stream.samples_pushed

    def frame_time(self, index) -> np.ndarray | float:
        """Stream time (s) described by frame ``index`` (the centre of its window)."""
        return np.asarray(index) * (HOP / SAMPLE_RATE)

    def features(self, x, return_magnitudes: bool = False):
        """Batch features with madmom's centred framing (does not touch the stream state).

        Args:
            x: (n,) mono samples at 22050 Hz (float, or int16 scaled by 1/32767).
            return_magnitudes: also return the (N, 705) float32 FFT magnitudes.

        Returns:
            (N, 272) float32 with N = ceil(n / 441); with ``return_magnitudes`` a tuple
            ``(features, magnitudes)``.
        """
        stream = _FrameStream(self)
        head = stream.push(_as_samples(x), return_magnitudes)
        rest = stream.flush(return_magnitudes)
        if return_magnitudes:
            return np.concatenate([head[0], rest[0]]), np.concatenate([head[1], rest[1]])
        return np.concatenate([head, rest])

    def push(self, block, return_magnitudes: bool = False):
        """Streaming features: feed the next block, get every frame it completes.

        Args:
            block: (n,) mono samples at 22050 Hz, any n >= 0.
            return_magnitudes: also return the frames' (k, 705) float32 FFT magnitudes.

        Returns:
            (k, 272) float32, the frames whose last sample arrived with this block, in order
            (row ``j`` is stream frame ``frames_emitted - k + j``). With ``return_magnitudes``
            a tuple ``(features, magnitudes)``. A rejected block leaves the stream unchanged.
        """
        return self._stream.push(_as_samples(block), return_magnitudes)

    def flush(self, return_magnitudes: bool = False):
        """End the stream: zero-pad and emit the frames batch mode has beyond the last push.

        After ``flush`` the stream has emitted exactly ``ceil(samples_pushed / 441)`` frames, all
        equal to :meth:`features` of the whole signal. Then the front end is :meth:`reset`.
        """
        result = self._stream.flush(return_magnitudes)
        self.reset()
        return result
