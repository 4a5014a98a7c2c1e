"""Plain numpy reference implementation of the BeatNet front end (slow; for tests and benchmarks).

It follows the definition in :mod:`fractalsync_dsp.frontend` literally, in float64, with numpy's
FFT and a dense filterbank matrix, so that the fast numba path can be checked against it and
timed beside it.
"""

from __future__ import annotations

import numpy as np

from fractalsync_dsp.filterbank import log_filterbank
from fractalsync_dsp.frontend import FRAME, HOP, LAG_SAMPLES, N_BANDS, N_BINS

__all__ = ["NaiveStreamingFrontEnd", "naive_features"]


class _NaiveFrames:
    """Per-frame log spectrum and positive difference, carrying the previous frame."""

    def __init__(self) -> None:
        self.window = np.hanning(FRAME)
        self.fb = log_filterbank().dense().astype(np.float64)
        self.prev: np.ndarray | None = None

    def frame(self, samples: np.ndarray) -> np.ndarray:
        mag = np.abs(np.fft.rfft(samples * self.window))[:N_BINS]
        spec = np.log10(1.0 + mag @ self.fb)
        diff = np.zeros(N_BANDS) if self.prev is None else np.maximum(spec - self.prev, 0.0)
        self.prev = spec
        return np.concatenate([spec, diff])


def naive_features(x: np.ndarray) -> np.ndarray:
    """Centred-framing features of (n,) float samples at 22050 Hz -> (ceil(n/441), 272) float64."""
    x = np.asarray(x, dtype=np.float64)
    n_frames = -(-len(x) // HOP)
    padded = np.concatenate([np.zeros(LAG_SAMPLES), x, np.zeros(FRAME)])
    frames = _NaiveFrames()
    out = np.zeros((n_frames, 2 * N_BANDS))
    for i in range(n_frames):
        out[i] = frames.frame(padded[i * HOP : i * HOP + FRAME])
    return out


class NaiveStreamingFrontEnd:
    """Causal streaming counterpart of :func:`naive_features`: push blocks, get finished frames."""

    def __init__(self) -> None:
        self._frames = _NaiveFrames()
        self._buf = np.zeros(LAG_SAMPLES)

    def push(self, block: np.ndarray) -> np.ndarray:
        """(n,) samples -> (k, 272) float64 frames completed by this block."""
        self._buf = np.concatenate([self._buf, np.asarray(block, dtype=np.float64)])
        out = []
        while len(self._buf) >= FRAME:
            out.append(self._frames.frame(self._buf[:FRAME]))
            self._buf = self._buf[HOP:]
        return np.array(out).reshape(-1, 2 * N_BANDS)
