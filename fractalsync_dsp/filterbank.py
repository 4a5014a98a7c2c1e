"""Log-spaced triangular filterbank of the BeatNet front end, built from first principles.

The construction follows the definition in ``contracts/v1.json`` (``frontend``):

1. FFT bin ``k`` of the 705 kept bins has the frequency ``k * sr / (2 * 705)`` Hz (the frame is
   1411 samples, its top rfft bin is dropped, and bins are spaced as for an even frame of 1410).
2. Candidate centre frequencies are ``fref * 2 ** (j / bands_per_octave)`` (``fref`` = 440 Hz) for
   every integer ``j`` that puts them inside ``[fmin, fmax]``.
3. Each frequency maps to its nearest bin (ties go up); bins past the top bin clip to it.
   Duplicate bins are merged.
4. Every three consecutive bins ``(start, centre, stop)`` form one triangle: zero at ``start``,
   rising linearly to 1 at ``centre``, falling linearly to (but excluding) ``stop``. A triangle
   narrower than two bins collapses to the single bin ``start``.
5. Each filter is normalised to unit area (its weights sum to 1).

With the contract's parameters this gives 136 bands whose matrix equals madmom's (checked in the
tests against ``tests/data/reference/filterbank_705x136.npy``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["SparseFilterbank", "bin_frequencies", "log_filterbank"]


@dataclass(frozen=True)
class SparseFilterbank:
    """A filterbank stored band by band (CSR layout) for the numba kernels.

    Attributes:
        indptr: (n_bands + 1,) int64, band ``b`` owns entries ``indptr[b]:indptr[b+1]``.
        bins: (nnz,) int64 FFT bin index of each entry.
        weights: (nnz,) float32 weight of each entry.
        centre_hz: (n_bands,) float64 frequency of each band's peak bin, Hz.
        n_bins: number of FFT bins the filterbank reads.
    """

    indptr: np.ndarray
    bins: np.ndarray
    weights: np.ndarray
    centre_hz: np.ndarray
    n_bins: int

    @property
    def n_bands(self) -> int:
        """Number of bands."""
        return int(self.indptr.shape[0] - 1)

    def dense(self) -> np.ndarray:
        """The filterbank as a dense (n_bins, n_bands) float32 matrix."""
        out = np.zeros((self.n_bins, self.n_bands), dtype=np.float32)
        for b in range(self.n_bands):
            lo, hi = self.indptr[b], self.indptr[b + 1]
            out[self.bins[lo:hi], b] = self.weights[lo:hi]
        return out


def bin_frequencies(n_bins: int, sample_rate: float) -> np.ndarray:
    """Frequencies (Hz) of FFT bins ``0..n_bins-1``: ``k * sample_rate / (2 * n_bins)``.

    Returns:
        (n_bins,) float64.
    """
    return np.arange(n_bins, dtype=np.float64) * (sample_rate / (2.0 * n_bins))


def log_filterbank(
    n_bins: int = 705,
    sample_rate: float = 22050.0,
    bands_per_octave: int = 24,
    fmin: float = 30.0,
    fmax: float = 17000.0,
    fref: float = 440.0,
) -> SparseFilterbank:
    """Build the unit-area, log-spaced triangular filterbank (see the module docstring).

    Args:
        n_bins: number of FFT magnitude bins the filterbank reads (705 for BeatNet).
        sample_rate: audio sample rate in Hz.
        bands_per_octave: log spacing of the candidate centre frequencies.
        fmin, fmax: frequency range of the candidate centres, Hz.
        fref: reference frequency the log grid is anchored on, Hz.

    Returns:
        SparseFilterbank with 136 bands for the default (BeatNet) parameters.
    """
    if n_bins < 3 or sample_rate <= 0 or not 0 < fmin < fmax or bands_per_octave <= 0:
        raise ValueError(
            f"invalid filterbank parameters: n_bins={n_bins}, sample_rate={sample_rate}, "
            f"fmin={fmin}, fmax={fmax}, bands_per_octave={bands_per_octave}"
        )
    hz = bin_frequencies(n_bins, sample_rate)
    j = np.arange(
        np.floor(np.log2(fmin / fref) * bands_per_octave),
        np.ceil(np.log2(fmax / fref) * bands_per_octave) + 1,
    )
    freqs = fref * 2.0 ** (j / bands_per_octave)
    freqs = freqs[(freqs >= fmin) & (freqs <= fmax)]
    upper = np.searchsorted(hz, freqs).clip(1, n_bins - 1)
    nearer_lower = freqs - hz[upper - 1] < hz[upper] - freqs
    bins = np.unique(upper - nearer_lower)
    if bins.size < 3:
        raise ValueError("filterbank parameters leave fewer than 3 distinct bins")

    indptr = [0]
    entries: list[np.ndarray] = []
    weights: list[np.ndarray] = []
    centres = []
    for start, centre, stop in zip(bins[:-2], bins[1:-1], bins[2:], strict=True):
        if stop - start < 2:
            centre, stop = start, start + 1
        rise = np.arange(centre - start) / max(centre - start, 1)
        fall = 1.0 - np.arange(stop - centre) / (stop - centre)
        tri = np.concatenate([rise, fall])
        idx = np.arange(start, stop)
        keep = tri > 0
        entries.append(idx[keep])
        weights.append(tri[keep] / tri.sum())
        centres.append(hz[centre])
        indptr.append(indptr[-1] + int(keep.sum()))
    return SparseFilterbank(
        indptr=np.asarray(indptr, dtype=np.int64),
        bins=np.concatenate(entries).astype(np.int64),
        weights=np.concatenate(weights).astype(np.float32),
        centre_hz=np.asarray(centres, dtype=np.float64),
        n_bins=n_bins,
    )
