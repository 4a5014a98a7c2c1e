"""Sample-format rules shared by every function that takes audio samples.

dtypes: float32/float64 are used as they are (cast to float32), int16 and int32 are scaled by
``1/iinfo.max`` (int16 by 1/32767, madmom's and BeatNet's scaling); any other dtype raises
TypeError naming it, everywhere.

Bad values (NaN, +-inf, and finite samples beyond +-`MAX_ABS`, which soxr's float32
internals turn into inf) are handled by one of two rules, depending on where the audio comes
from:

- strict, `as_float32`: ValueError naming the first bad index. Used by the library's array
  entry points (`resample`, `to_mono`, `StreamResampler.push`, `BeatNetFrontEnd.push` /
  ``features``, and so ``beat_grid`` of an array): an array handed over by code is a bug
  upstream when it holds NaN, and refusing it keeps that bug visible.
- repair, `as_float32_repaired`: every bad sample becomes 0.0 (silence) in a copy, and one
  `NonFiniteAudioWarning` gives their count. Used where the audio comes from outside the
  program and analysis must go on: audio files (`fractalsync_dsp.audio_io`: one warning per
  file with the file's total) and live streams (``BeatTracker.push``: one warning per block
  that had any), so that one corrupt sample or block never stops a file or a live loop.
"""

from __future__ import annotations

import warnings

import numpy as np
from numba import njit

__all__ = [
    "MAX_ABS",
    "NonFiniteAudioWarning",
    "as_float32",
    "as_float32_repaired",
    "warn_non_finite",
]

MAX_ABS = 1e30
"""Largest accepted sample magnitude: soxr's float32 internals overflow above ~1e35."""

_INT_DTYPES = (np.dtype(np.int16), np.dtype(np.int32))


class NonFiniteAudioWarning(UserWarning):
    """Audio samples that were NaN, +-inf or beyond +-`MAX_ABS` were replaced by 0.0.

    Issued by `as_float32_repaired` (and so by the file readers and the live tracker); the
    message is ``"<name>: <count> NaN/inf samples (of <total>) replaced by silence ..."``.
    """


@njit(cache=True, inline="always")
def _is_bad(v, limit):
    """The one bad-sample test: NaN fails every comparison, inf and huge values exceed limit."""
    return not abs(v) <= limit


@njit(cache=True)
def _first_bad_index(flat, limit):
    """Index of the first value of ``flat`` (1-D float32) that is NaN, inf or beyond +-limit."""
    for i in range(flat.shape[0]):
        if _is_bad(flat[i], limit):
            return i
    return -1


@njit(cache=True)
def _repair_into(src, dst, limit):
    """Copy 1-D float32 ``src`` into ``dst`` (same length; may be ``src`` itself) with every
    value that is NaN, inf or beyond +-limit replaced by 0.0; return how many were replaced."""
    count = 0
    for i in range(src.shape[0]):
        v = src[i]
        if _is_bad(v, limit):
            dst[i] = 0.0
            count += 1
        else:
            dst[i] = v
    return count


def _converted(x, name: str) -> tuple[np.ndarray, bool]:
    """`x` as float32 (dtype rules of the module docstring) and whether that made a new array."""
    arr = np.asarray(x)
    if arr.dtype in _INT_DTYPES:
        return arr.astype(np.float32) / np.float32(np.iinfo(arr.dtype).max), True
    if arr.dtype.kind == "f":
        with np.errstate(over="ignore"):  # float64 beyond float32 becomes inf: a bad sample
            out = arr.astype(np.float32, copy=False)
        return out, out is not arr
    raise TypeError(f"{name} must be float32/float64/int16/int32 audio, got dtype {arr.dtype}")


def as_float32(x, name: str) -> np.ndarray:
    """`x` as a float32 array of the same shape, validated by the strict rule.

    int16/int32 are divided by ``np.iinfo(dtype).max`` (int16: 32767, as madmom does),
    float32/float64 are used as they are (float32 input may be returned without a copy);
    other dtypes raise TypeError naming the dtype. NaN, inf or a magnitude above `MAX_ABS`
    (also a float64 value beyond the float32 range) raise ValueError naming the first bad
    index. `name` is the argument's name in the messages.
    """
    arr, _ = _converted(x, name)
    bad = _first_bad_index(arr.reshape(-1), np.float32(MAX_ABS)) if arr.size else -1
    if bad >= 0:
        where = np.unravel_index(bad, arr.shape)
        raise ValueError(
            f"{name} contains NaN or inf or a sample beyond +-{MAX_ABS:g} "
            f"(first at index {tuple(map(int, where))}: {arr[where]})"
        )
    return arr


def as_float32_repaired(x, name: str, *, warn: bool = True) -> tuple[np.ndarray, int]:
    """`x` as a float32 array of the same shape with bad samples replaced by silence.

    Same dtype rules as `as_float32` (TypeError for other dtypes). Every sample that is NaN,
    +-inf or beyond +-`MAX_ABS` (also a float64 value beyond the float32 range) is 0.0 in the
    result, all others are the converted samples; counting and replacing is one pass of a
    numba kernel. The caller's array is never modified: the result is always a new array.

    Parameters
    ----------
    x : array_like, any shape
        Audio samples (e.g. a block ``(n,)`` or ``(n, channels)``).
    name : str
        What `x` is, for the messages (an argument name, a file path).
    warn : bool
        If True and any sample was replaced, issue one `NonFiniteAudioWarning` (see
        `warn_non_finite`), attributed to the code that called the function calling this one
        (e.g. the caller of ``BeatTracker.push``). Callers that sum counts over several
        blocks pass False and warn once themselves.

    Returns
    -------
    samples : np.ndarray, float32, shape of `x`, C-contiguous
        The repaired samples.
    replaced : int
        How many samples were replaced by 0.0.
    """
    arr, fresh = _converted(x, name)
    out = arr if fresh and arr.flags.c_contiguous else np.empty(arr.shape, np.float32)
    if arr.size == 0:
        return out, 0
    src = np.ascontiguousarray(arr).reshape(-1)
    replaced = int(_repair_into(src, out.reshape(-1), np.float32(MAX_ABS)))
    if warn and replaced:
        warn_non_finite(name, replaced, arr.size, stacklevel=3)
    return out, replaced


def warn_non_finite(name: str, replaced: int, total: int, stacklevel: int = 2) -> None:
    """Issue the `NonFiniteAudioWarning` for `replaced` of `total` samples of `name`.

    Message: ``"<name>: <replaced> NaN/inf samples (of <total>) replaced by silence
    (magnitudes above 1e+30 count as inf)"``. `stacklevel` as for `warnings.warn`.
    """
    warnings.warn(
        f"{name}: {replaced} NaN/inf samples (of {total}) replaced by silence "
        f"(magnitudes above {MAX_ABS:g} count as inf)",
        NonFiniteAudioWarning,
        stacklevel=stacklevel + 1,
    )
