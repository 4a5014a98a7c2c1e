"""Beat-relative training targets for the anticipator (numpy only, no torch).

The roadmap's definition, counted on the project's own tracked beats:

* :func:`beat_position` — the continuous beat position ``p(t)`` below;
* :func:`beats_to_next_boundary` — for each time ``t``, how many beats lie between ``t`` and the
  next section boundary ``b > t``, as a real number;
* :func:`hazard_targets` — ``y[t, k] = 1 if 0 < btnb[t] <= horizons[k] else 0``;
* :func:`section_targets` — the label index of each slow step (``-1`` = ignore);
* :func:`snap_boundaries` — optionally moves boundaries onto nearby tracked downbeats.

Beat position
-------------
The tracked beats ``beat_times`` (strictly increasing, at least 2) define a continuous beat
position ``p(x)``: ``p(beat_times[i]) = i``, linear in between, and extended before the first
and after the last beat with the first and last inter-beat interval. Then

    ``beats_to_next_boundary(t) = p(b) - p(t)``, ``b`` = the first boundary strictly after ``t``,

which is the number of beat times in ``(t, b]`` when ``t`` and ``b`` are both on beats, and in
general that count with fractional ends interpolated on the beat grid. It is ``+inf`` when no
boundary follows ``t``, and NaN (for every ``t`` that has a next boundary) when there are fewer
than 2 beats, since no beat length is known; ``hazard_targets`` turns NaN into 0, so a caller
that wants to tell "unknown" from "no boundary soon" masks ``np.isnan(btnb)``. A ``t`` exactly
on a boundary counts to the following boundary: the boundary at ``t`` is now, not ahead.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from fractalsync_models.contract import load_contract

from .labels import Segment, segments_to_frames

__all__ = [
    "HORIZONS_BEATS",
    "as_times",
    "beat_position",
    "beats_to_next_boundary",
    "hazard_targets",
    "section_targets",
    "snap_boundaries",
]

#: Hazard horizons in beats (``contracts/v1.json`` ``hazard.horizons_beats``).
HORIZONS_BEATS: tuple[int, ...] = tuple(load_contract()["hazard"]["horizons_beats"])


def as_times(values: object, name: str, order: str = "sorted") -> np.ndarray:
    """``values`` as a finite 1-D float64 array of times in seconds, checked; ``order`` is "any",
    "sorted" (non-decreasing, the default) or "increasing" (strictly). TypeError/ValueError name
    ``name`` and the problem."""
    try:
        arr = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"{name} must be a sequence of times in seconds: {exc}") from None
    if arr.ndim != 1:
        raise ValueError(f"{name} must be 1-D (seconds), got shape {arr.shape}")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} contains NaN or infinite times")
    if order == "sorted" and np.any(np.diff(arr) < 0):
        raise ValueError(f"{name} must be sorted in non-decreasing order")
    if order == "increasing" and np.any(np.diff(arr) <= 0):
        raise ValueError(f"{name} must be strictly increasing (no repeated times)")
    return arr


def _intervals(x: np.ndarray, beats: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(k, ibi): the beat interval ``[beats[k], beats[k+1]]`` of each time, clipped to the first
    interval before the grid and the last after it (which extend them), and all intervals."""
    k = np.clip(np.searchsorted(beats, x, side="right") - 1, 0, beats.size - 2)
    return k, np.diff(beats)


def beat_position(times: object, beat_times: object) -> np.ndarray:
    """Continuous beat position ``p(t)`` on a tracked beat grid (module docstring).

    Parameters
    ----------
    times : (T,) seconds, finite, any order.
    beat_times : (B,) beat times in seconds, strictly increasing, ``B >= 2``.

    Returns (T,) float64: ``p(beat_times[i]) = i``, linear between beats, extended before the
    first and after the last beat with the first and last inter-beat interval.
    """
    t = as_times(times, "times", "any")
    beats = as_times(beat_times, "beat_times", "increasing")
    if beats.size < 2:
        raise ValueError(f"beat_position needs at least 2 beats, got {beats.size}")
    k, ibi = _intervals(t, beats)
    return k + (t - beats[k]) / ibi[k]


def _beats_between(t: np.ndarray, b: np.ndarray, beats: np.ndarray) -> np.ndarray:
    """``p(b) - p(t)`` for ``t < b`` elementwise on the grid ``beats`` (>= 2 beats).

    Sums the part of ``t``'s interval after ``t``, the whole intervals between and the part of
    ``b``'s interval before ``b``: every term is >= 0, so no cancellation turns a tiny
    ``b - t`` into 0.
    """
    kt, ibi = _intervals(t, beats)
    kb, _ = _intervals(b, beats)
    after_t = (beats[kt + 1] - t) / ibi[kt]
    before_b = (b - beats[kb]) / ibi[kb]
    return np.where(kt == kb, (b - t) / ibi[kt], after_t + (kb - kt - 1) + before_b)


def beats_to_next_boundary(times: object, beat_times: object, boundaries: object) -> np.ndarray:
    """Beats from each time to the next section boundary after it.

    Parameters
    ----------
    times : (T,) seconds, finite, any order (typically the slow grid).
    beat_times : (B,) tracked beat times in seconds, strictly increasing.
    boundaries : (n,) boundary times in seconds, non-decreasing.

    Returns (T,) float64: ``p(b) - p(t)`` with ``p`` the interpolated beat position and ``b``
    the first boundary strictly after ``t`` (see the module docstring); ``+inf`` where no
    boundary follows, NaN where one does but fewer than 2 beats are given. Always > 0 otherwise.
    """
    t = as_times(times, "times", "any")
    beats = as_times(beat_times, "beat_times", "increasing")
    bounds = as_times(boundaries, "boundaries", "sorted")
    out = np.full(t.shape, np.inf)
    nxt = np.searchsorted(bounds, t, side="right")
    has = nxt < bounds.size
    if beats.size < 2:
        out[has] = np.nan
        return out
    out[has] = _beats_between(t[has], bounds[nxt[has]], beats)
    return out


def hazard_targets(btnb: object, horizons: Sequence[float] = HORIZONS_BEATS) -> np.ndarray:
    """Boundary-within-horizon targets.

    Parameters
    ----------
    btnb : (T,) beats to the next boundary (:func:`beats_to_next_boundary`); ``inf`` = none.
    horizons : (K,) horizons in beats, positive; default the contract's (1, 2, 4, 8, 16).

    Returns (T, K) float32: ``1`` where ``0 < btnb[t] <= horizons[k]``, else ``0`` (NaN gives 0).
    """
    b = np.asarray(btnb, dtype=np.float64)
    if b.ndim != 1:
        raise ValueError(f"btnb must be 1-D, got shape {b.shape}")
    h = np.asarray(horizons, dtype=np.float64)
    if h.ndim != 1 or h.size == 0 or not np.all(np.isfinite(h)) or np.any(h <= 0):
        raise ValueError(f"horizons must be a non-empty 1-D sequence of positive beats, got "
                         f"{horizons!r}")
    with np.errstate(invalid="ignore"):
        y = (b[:, None] > 0) & (b[:, None] <= h[None, :])
    return y.astype(np.float32)


def snap_boundaries(
    boundaries: object, downbeat_times: object, tolerance_s: float | None
) -> np.ndarray:
    """Move each boundary onto the nearest tracked downbeat within ``tolerance_s``.

    Parameters
    ----------
    boundaries : (n,) seconds, non-decreasing.
    downbeat_times : (D,) tracked downbeats in seconds, non-decreasing.
    tolerance_s : the largest move in seconds (``|boundary - downbeat| <= tolerance_s``);
        ``None`` or 0 returns the boundaries unchanged.

    Returns (m,) float64, sorted, with ``m <= n``: boundaries that snap onto the same downbeat
    become one. A boundary with no downbeat within the tolerance stays where it is; ties go to
    the earlier downbeat.

    Recommended: off (``None``) for exact labels such as the generator's, so the targets keep
    the true times; ``0.15`` s for teacher labels (SongFormer works at 8.3 frames/s, so its
    boundaries are quantised to 0.12 s): it covers that quantisation and the tracker's downbeat
    jitter while staying under half a beat up to 200 BPM, so a boundary cannot jump a beat.
    """
    bounds = as_times(boundaries, "boundaries", "sorted")
    downs = as_times(downbeat_times, "downbeat_times", "sorted")
    if tolerance_s is None or tolerance_s == 0 or downs.size == 0 or bounds.size == 0:
        return bounds.copy()
    tol = float(tolerance_s)
    if not np.isfinite(tol) or tol < 0:
        raise ValueError(f"tolerance_s must be a finite number of seconds >= 0, got {tolerance_s}")
    right = np.clip(np.searchsorted(downs, bounds), 0, downs.size - 1)
    left = np.clip(right - 1, 0, downs.size - 1)
    use_left = np.abs(bounds - downs[left]) <= np.abs(downs[right] - bounds)
    nearest = np.where(use_left, downs[left], downs[right])
    snapped = np.where(np.abs(nearest - bounds) <= tol, nearest, bounds)
    return np.unique(snapped)


def section_targets(segments: Sequence[Segment], times: object) -> np.ndarray:
    """Section label index per slow step.

    Parameters
    ----------
    segments : the track's segments (``labels.read_labels``).
    times : (T,) stream times in seconds of the slow steps (12.5 Hz grid).

    Returns (T,) int64 indices into the contract's section labels; ``-1`` for ``ignore`` and
    outside the labelled span (mask these out of the loss). Same as
    :func:`~fractalsync_models.training.labels.segments_to_frames`.
    """
    return segments_to_frames(segments, times)
