"""Micro features for the fast (render) clock, computed once per analysis frame.

Input per frame, as the BeatNet front end has it at 22050 Hz:

- ``frame``: the 1411 raw (un-windowed) samples of the analysis frame;
- ``mag``: ``|rfft(np.hanning(1411) * frame)|`` bins 0..704 (bin k is k * 22050 / 1411 Hz).

Output: 7 float32 values in the order of ``contracts/v1.json`` ``micro_features.names``:

==============  =============================================================================
rms_db          ``10 log10(mean(frame**2))`` in dB re full scale (a full-scale sine: -3.01 dB).
bass, mid,      Band levels in dB: the mean-square power of the frame's content in the band,
treble          ``2 * sum(mag[k]**2 for bins k with lo <= f_k < hi) / (1411 * sum(hann**2))``
                (by Parseval these add up to ~rms**2), as ``10 log10``. Bands (contract):
                bass 20-250 Hz (bins 2..15), mid 250-4000 Hz (16..255), treble 4000-11025 Hz
                (256..704). DC and bin 1 (15.6 Hz) belong to no band: a DC offset raises
                rms_db only.
flux            Positive spectral flux of the log-compressed magnitude
                ``L = log10(1 + mag)`` over bins 2..704: ``mean(max(0, L_t - L_{t-1}))``.
                0 for the first frame after construction or `reset`.
centroid_hz     Magnitude-weighted mean frequency over bins 2..704, in Hz.
onset           Flux relative to its recent average, in [0, 1):
                ``flux / (flux + m + ONSET_EPS)`` with m the running mean of flux *before* this
                frame, ``m <- m + ONSET_ALPHA * (flux - m)`` (time constant ONSET_TAU_S = 1 s
                at 50 frames/s). 0.5 means "as much change as usual", values near 1 an onset
                much stronger than the recent average. As m starts at 0, the first onsets after
                construction or `reset` read high until m has built up (~1 s).
==============  =============================================================================

Edge cases (documented behaviour, tested):

- Floor: powers below 1e-12 (-120 dB) read as -120 dB, so silence gives rms_db = bass = mid =
  treble = -120. When the 20-11025 Hz power is below that floor the centroid is 0 Hz.
- NaN/inf: any non-finite sample of ``frame`` or bin of ``mag`` is treated as 0 (zeroed), so
  one bad value cannot poison the flux history. ``mag`` is used as ``abs(mag)``.
- Huge values: computed in float64; finite float32 input gives finite output.

The streaming `MicroFeatures` and the batch `micro_features` run the same compiled per-frame
kernel, so their outputs are identical. Reading (`latest`, `poll`) never computes anything:
the roadmap's bug of updating the previous spectrum on every read cannot happen.
"""

from __future__ import annotations

import math

import numpy as np
from numba import float32, float64, int64, njit, types

from fractalsync_dsp.frontend import FRAME as FRAME_SIZE
from fractalsync_dsp.frontend import HOP, N_BINS, SAMPLE_RATE

__all__ = [
    "BAND_EDGES_HZ",
    "MICRO_NAMES",
    "MicroFeatures",
    "ONSET_ALPHA",
    "ONSET_EPS",
    "ONSET_TAU_S",
    "micro_features",
]

MICRO_NAMES = ("rms_db", "bass", "mid", "treble", "flux", "centroid_hz", "onset")
BAND_EDGES_HZ = {"bass": (20.0, 250.0), "mid": (250.0, 4000.0), "treble": (4000.0, 11025.0)}
FLOOR_DB = -120.0
ONSET_TAU_S = 1.0
ONSET_ALPHA = 1.0 - math.exp(-1.0 / (ONSET_TAU_S * SAMPLE_RATE / HOP))
ONSET_EPS = 1e-3

_BIN_HZ = np.arange(N_BINS) * SAMPLE_RATE / FRAME_SIZE
# [first, stop) bin of each band: lo <= k * 22050 / 1411 < hi
_BAND_BINS = np.array(
    [[int(np.searchsorted(_BIN_HZ, lo)), int(np.searchsorted(_BIN_HZ, hi))]
     for lo, hi in BAND_EDGES_HZ.values()],
    dtype=np.int64,
)
_POWER_NORM = 2.0 / (FRAME_SIZE * float(np.sum(np.hanning(FRAME_SIZE) ** 2)))
# constants handed to the kernel: bin spacing (Hz), power normalisation, floor (linear power),
# onset running-mean rate, onset epsilon
_PARAMS = np.array(
    [SAMPLE_RATE / FRAME_SIZE, _POWER_NORM, 10.0 ** (FLOOR_DB / 10.0), ONSET_ALPHA, ONSET_EPS],
    dtype=np.float64,
)

_STEP_SIG = types.void(
    float32[::1], float32[::1], int64[:, ::1], float64[::1], float64[::1], float64[::1],
    float32[::1],
)


@njit(_STEP_SIG, cache=True)
def _micro_step(frame, mag, band_bins, params, prev_log, state, out):
    """One frame. prev_log (n_bins,) and state [has_prev, flux_mean] are updated in place."""
    bin_hz, power_norm, floor, alpha, eps = params[0], params[1], params[2], params[3], params[4]
    acc = 0.0
    for v in frame:
        if math.isfinite(v):
            acc += float64(v) * float64(v)
    out[0] = 10.0 * math.log10(max(acc / max(frame.size, 1), floor))

    lo_bin = band_bins[0, 0]
    hi_bin = band_bins[band_bins.shape[0] - 1, 1]
    total = 0.0
    for b in range(band_bins.shape[0]):
        p = 0.0
        for k in range(band_bins[b, 0], band_bins[b, 1]):
            m = abs(float64(mag[k])) if math.isfinite(mag[k]) else 0.0
            p += m * m
        p *= power_norm
        total += p
        out[1 + b] = 10.0 * math.log10(max(p, floor))

    has_prev = state[0] != 0.0
    flux = 0.0
    weighted = 0.0
    msum = 0.0
    for k in range(lo_bin, hi_bin):
        m = abs(float64(mag[k])) if math.isfinite(mag[k]) else 0.0
        cur = math.log10(1.0 + m)
        if has_prev and cur > prev_log[k]:
            flux += cur - prev_log[k]
        prev_log[k] = cur
        weighted += k * bin_hz * m
        msum += m
    flux /= max(hi_bin - lo_bin, 1)
    out[4] = flux
    out[5] = weighted / msum if total >= floor else 0.0
    mean = state[1]
    out[6] = flux / (flux + mean + eps)
    state[0] = 1.0
    state[1] = mean + alpha * (flux - mean)


@njit(
    types.void(
        float32[:, ::1], float32[:, ::1], int64[:, ::1], float64[::1], float64[::1],
        float64[::1], float32[:, ::1],
    ),
    cache=True,
)
def _micro_batch(frames, mags, band_bins, params, prev_log, state, out):
    for i in range(frames.shape[0]):
        _micro_step(frames[i], mags[i], band_bins, params, prev_log, state, out[i])


def _as_float32(x, name: str) -> np.ndarray:
    """`x` as a C-contiguous float32 array; only real floating input is accepted."""
    x = np.asarray(x)
    if x.dtype.kind == "c":
        raise TypeError(f"{name} must be real (pass np.abs of the spectrum), got {x.dtype}")
    if x.dtype.kind != "f":
        raise TypeError(f"{name} must be a float array, got dtype {x.dtype}")
    return np.ascontiguousarray(x, dtype=np.float32)


class MicroFeatures:
    """Streaming micro features: `update` once per analysis frame, read as often as you like.

    ``latest`` is a read-only (7,) float32 view that `update` overwrites in place (no
    allocation per frame); copy it (or use ``poll(out=...)``) to keep a value. Before the first
    update it holds the silence vector ``[-120, -120, -120, -120, 0, 0, 0]``.
    See the module docstring for the definitions.
    """

    def __init__(self) -> None:
        self._prev_log = np.zeros(N_BINS, np.float64)
        self._state = np.zeros(2, np.float64)
        self._out = np.zeros(len(MICRO_NAMES), np.float32)
        self._latest = self._out.view()
        self._latest.flags.writeable = False
        self.frames_seen = 0
        self.reset()

    @property
    def latest(self) -> np.ndarray:
        """The last computed vector, (7,) float32, read-only; nothing is computed."""
        return self._latest

    def poll(self, out: np.ndarray | None = None) -> np.ndarray:
        """A copy of `latest` (into `out`, shape (7,) float32, if given); nothing is computed."""
        if out is None:
            return self._out.copy()
        out[:] = self._out
        return out

    def update(self, frame, mag) -> np.ndarray:
        """Compute the features of one analysis frame.

        Parameters
        ----------
        frame : array, shape (1411,)
            The frame's raw samples at 22050 Hz, floating point (float32 avoids a conversion).
        mag : array, shape (705,)
            ``|rfft(hann * frame)|[:705]``.

        Returns
        -------
        np.ndarray, (7,) float32
            `latest` (read-only, overwritten by the next update).
        """
        frame, mag = _as_float32(frame, "frame"), _as_float32(mag, "mag")
        if frame.shape != (FRAME_SIZE,) or mag.shape != (N_BINS,):
            raise ValueError(
                f"frame and mag must have shapes ({FRAME_SIZE},) and ({N_BINS},), "
                f"got {frame.shape} and {mag.shape}"
            )
        _micro_step(frame, mag, _BAND_BINS, _PARAMS, self._prev_log, self._state, self._out)
        self.frames_seen += 1
        return self._latest

    def on_frames(self, batch) -> None:
        """Consumer hook of the analysis clock (``fractalsync_tracking.analysis_clock``): update
        from each frame of ``batch`` (its ``windows`` (k, 1411) and ``magnitudes`` (k, 705),
        float32, already checked by the clock), in order; `latest` is the last frame's."""
        windows, mags = batch.windows, batch.magnitudes
        for j in range(batch.count):
            _micro_step(windows[j], mags[j], _BAND_BINS, _PARAMS, self._prev_log, self._state,
                        self._out)
        self.frames_seen += batch.count

    def reset(self) -> None:
        """Forget the previous spectrum and the flux mean; `latest` back to the silence vector."""
        self._prev_log[:] = 0.0
        self._state[:] = 0.0
        self._out[:] = (FLOOR_DB, FLOOR_DB, FLOOR_DB, FLOOR_DB, 0.0, 0.0, 0.0)
        self.frames_seen = 0


def micro_features(frames, mags) -> np.ndarray:
    """Micro features of a sequence of frames, as a fresh `MicroFeatures` would give them.

    Parameters
    ----------
    frames : array, shape (N, 1411)
        Raw analysis frames at 22050 Hz, in time order (N may be 0).
    mags : array, shape (N, 705)
        ``|rfft(hann * frame)|[:, :705]``.

    Returns
    -------
    np.ndarray, shape (N, 7), float32
        Rows in `MICRO_NAMES` order; identical to updating a new `MicroFeatures` row by row.
    """
    frames, mags = _as_float32(frames, "frames"), _as_float32(mags, "mags")
    if (
        frames.ndim != 2
        or frames.shape[1:] != (FRAME_SIZE,)
        or mags.shape != (frames.shape[0], N_BINS)
    ):
        raise ValueError(
            f"frames and mags must have shapes (N, {FRAME_SIZE}) and (N, {N_BINS}), "
            f"got {frames.shape} and {mags.shape}"
        )
    out = np.empty((frames.shape[0], len(MICRO_NAMES)), np.float32)
    _micro_batch(frames, mags, _BAND_BINS, _PARAMS, np.zeros(N_BINS), np.zeros(2), out)
    return out
