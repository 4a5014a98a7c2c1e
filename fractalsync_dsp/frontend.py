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

Samples: float input is used as it is (cast to float32); int16 is divided by 32767 as madmom
does; other dtypes raise ``TypeError``. NaN, inf and magnitudes above ``1e30`` (where the float32
FFT would overflow) raise ``ValueError`` naming the first bad sample: they are rejected, not
zeroed, so corrupt input is never silently analysed.

The spectra run through ``scipy.fft.rfft`` in float32; the filterbank, log and difference run in
one private numba kernel with a fixed summation order, which is what makes batch and streaming
agree exactly.
"""

from __future__ import annotations

import numpy as np
import scipy.fft
from numba import njit
from numpy.lib.stride_tricks import sliding_window_view

from fractalsync_dsp.filterbank import SparseFilterbank, log_filterbank

__all__ = ["BeatNetFrontEnd", "FRAME", "HOP", "LAG_SAMPLES", "N_BANDS", "N_BINS", "SAMPLE_RATE"]

SAMPLE_RATE = 22050
HOP = 441
FRAME = 1411
N_BINS = 705
N_BANDS = 136
DIM = 2 * N_BANDS
LAG_SAMPLES = FRAME // 2
MAX_ABS_SAMPLE = 1e30
_CHUNK = 2048  # frames per FFT batch in batch mode: bounds memory for long files


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
    keep_mags = mags.shape[0] > 0
    for t in range(spec.shape[0]):
        if keep_mags:
            for k in range(mags.shape[1]):
                z = spec[t, k]
                mags[t, k] = _magnitude(z)
        for b in range(n_bands):
            acc = np.float32(0.0)
            for e in range(indptr[b], indptr[b + 1]):
                z = spec[t, bins[e]]
                acc += weights[e] * _magnitude(z)
            value = np.float32(np.log10(np.float32(1.0) + acc))
            diff = value - prev[b] if started[0] else np.float32(0.0)
            out[t, b] = value
            out[t, n_bands + b] = diff if diff > 0 else np.float32(0.0)
            prev[b] = value
        started[0] = 1


def _as_samples(x) -> np.ndarray:
    """Validate a mono block and return it as contiguous float32 (n,)."""
    arr = np.asarray(x)
    if arr.ndim != 1:
        raise ValueError(f"expected mono samples of shape (n,), got shape {arr.shape}")
    if arr.dtype == np.int16:
        arr = arr.astype(np.float32) / np.float32(32767.0)
    elif np.issubdtype(arr.dtype, np.floating):
        arr = np.ascontiguousarray(arr, dtype=np.float32)
    else:
        raise TypeError(f"expected float or int16 samples, got dtype {arr.dtype}")
    bad = ~(np.abs(arr) <= MAX_ABS_SAMPLE)
    if bad.any():
        i = int(np.argmax(bad))
        raise ValueError(
            f"sample {i} is {arr[i]!r}: samples must be finite with magnitude <= {MAX_ABS_SAMPLE:g}"
        )
    return arr


def _complete_frames(buf: np.ndarray) -> np.ndarray:
    """(k, FRAME) read-only view of every complete frame starting at 0, HOP, 2*HOP, ... of buf."""
    if buf.shape[0] < FRAME:
        return buf[:0].reshape(0, FRAME)
    return sliding_window_view(buf, FRAME)[::HOP]


class BeatNetFrontEnd:
    """madmom-compatible BeatNet features at 22050 Hz, offline or one block at a time.

    Example:
        >>> fe = BeatNetFrontEnd()
        >>> fe.features(np.zeros(22050, np.float32)).shape   # 1 s of audio -> 50 frames
        (50, 272)
    """

    def __init__(self) -> None:
        self.filterbank: SparseFilterbank = log_filterbank()
        self.window = np.hanning(FRAME).astype(np.float32)
        self._empty_mags = np.zeros((0, 0), dtype=np.float32)
        self.reset()

    def reset(self) -> None:
        """Forget the stream: the next :meth:`push` starts a new signal at sample 0."""
        self._tail = np.zeros(LAG_SAMPLES, dtype=np.float32)  # left zero padding of frame 0
        self._prev = np.zeros(N_BANDS, dtype=np.float32)
        self._started = np.zeros(1, dtype=np.uint8)
        self.frames_emitted = 0
        self.samples_pushed = 0

    def frame_time(self, index) -> np.ndarray | float:
        """Stream time (s) described by frame ``index`` (the centre of its window)."""
        return np.asarray(index) * (HOP / SAMPLE_RATE)

    def _run(self, frames, prev, started, mags) -> np.ndarray:
        out = np.empty((frames.shape[0], DIM), dtype=np.float32)
        fb = self.filterbank
        for s in range(0, frames.shape[0], _CHUNK):
            spec = scipy.fft.rfft(frames[s : s + _CHUNK] * self.window, axis=1)
            part_mags = mags[s : s + _CHUNK] if mags.shape[0] else mags
            _bands_log_diff(
                spec, fb.indptr, fb.bins, fb.weights, prev, started, out[s : s + _CHUNK], part_mags
            )
        return out

    def features(self, x, return_magnitudes: bool = False):
        """Batch features with madmom's centred framing.

        Args:
            x: (n,) mono samples at 22050 Hz (float, or int16 scaled by 1/32767).
            return_magnitudes: also return the (N, 705) float32 FFT magnitudes.

        Returns:
            (N, 272) float32 with N = ceil(n / 441); with ``return_magnitudes`` a tuple
            ``(features, magnitudes)``.
        """
        samples = _as_samples(x)
        n_frames = -(-samples.shape[0] // HOP)
        padded = np.zeros((n_frames - 1) * HOP + FRAME if n_frames else 0, dtype=np.float32)
        padded[LAG_SAMPLES : LAG_SAMPLES + samples.shape[0]] = samples
        frames = _complete_frames(padded)
        mags = np.empty((n_frames, N_BINS), np.float32) if return_magnitudes else self._empty_mags
        prev = np.zeros(N_BANDS, dtype=np.float32)
        out = self._run(frames, prev, np.zeros(1, dtype=np.uint8), mags)
        return (out, mags) if return_magnitudes else out

    def push(self, block, return_magnitudes: bool = False):
        """Streaming features: feed the next block, get every frame it completes.

        Args:
            block: (n,) mono samples at 22050 Hz, any n >= 0.
            return_magnitudes: also return the frames' (k, 705) float32 FFT magnitudes.

        Returns:
            (k, 272) float32, the frames whose last sample arrived with this block, in order;
            frame ``frames_emitted - k + j`` of the stream is row ``j``. With
            ``return_magnitudes`` a tuple ``(features, magnitudes)``.
        """
        samples = _as_samples(block)
        self.samples_pushed += samples.shape[0]
        return self._emit(np.concatenate((self._tail, samples)), return_magnitudes)

    def flush(self, return_magnitudes: bool = False):
        """End the stream: zero-pad and emit the frames batch mode has beyond the last push.

        After ``flush`` the stream has emitted exactly ``ceil(samples_pushed / 441)`` frames, all
        equal to :meth:`features` of the whole signal. Then the front end is :meth:`reset`.
        """
        missing = -(-self.samples_pushed // HOP) - self.frames_emitted
        buf = np.zeros((missing - 1) * HOP + FRAME if missing > 0 else 0, dtype=np.float32)
        if missing > 0:
            buf[: self._tail.shape[0]] = self._tail
        result = self._emit(buf, return_magnitudes)
        self.reset()
        return result

    def _emit(self, buf: np.ndarray, return_magnitudes: bool):
        frames = _complete_frames(buf)
        n_frames = frames.shape[0]
        mags = np.empty((n_frames, N_BINS), np.float32) if return_magnitudes else self._empty_mags
        out = self._run(frames, self._prev, self._started, mags)
        self._tail = buf[n_frames * HOP :].copy()
        self.frames_emitted += n_frames
        return (out, mags) if return_magnitudes else out
