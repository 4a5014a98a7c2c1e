"""Sample-format rules shared by every function that takes audio samples.

Accepted: float32/float64 (used as they are), int16 and int32 (scaled by ``1/iinfo.max``;
int16 by 1/32767, madmom's and BeatNet's scaling). Rejected with an error naming the problem:
any other dtype (TypeError), and NaN, inf or samples beyond +-`MAX_ABS` (ValueError, naming the
first bad index): corrupt input is never silently analysed.
"""

from __future__ import annotations

import numpy as np
from numba import njit

__all__ = ["MAX_ABS", "as_float32"]

MAX_ABS = 1e30
"""Largest accepted sample magnitude: soxr's float32 internals overflow above ~1e35."""

_INT_DTYPES = (np.dtype(np.int16), np.dtype(np.int32))


@njit(cache=True)
def _first_bad_index(flat, limit):
    """Index of the first value of ``flat`` (1-D float32) that is NaN, inf or beyond +-limit."""
    for i in range(flat.shape[0]):
        if not abs(flat[i]) <= limit:
            return i
    return -1


def as_float32(x, name: str) -> np.ndarray:
    """`x` as a float32 array of any shape, validated.

    int16/int32 are divided by ``np.iinfo(dtype).max`` (int16: 32767, as madmom does),
    float32/float64 are used as they are; other dtypes raise TypeError naming the dtype.
    NaN, inf or a magnitude above `MAX_ABS` raise ValueError naming the first bad index.
    """
    x = np.asarray(x)
    if x.dtype in _INT_DTYPES:
        x = x.astype(np.float32) / np.float32(np.iinfo(x.dtype).max)
    elif x.dtype.kind == "f":
        with np.errstate(over="ignore"):  # float64 beyond float32 becomes inf, refused below
            x = x.astype(np.float32, copy=False)
    else:
        raise TypeError(f"{name} must be float32/float64/int16/int32 audio, got dtype {x.dtype}")
    bad = _first_bad_index(x.reshape(-1), np.float32(MAX_ABS)) if x.size else -1
    if bad >= 0:
        where = np.unravel_index(bad, x.shape)
        raise ValueError(
            f"{name} contains NaN or inf or a sample beyond +-{MAX_ABS:g} "
            f"(first at index {tuple(map(int, where))}: {x[where]})"
        )
    return x
