"""Beat and downbeat evaluation metrics (F-measure, continuity, timing errors).

The definitions follow the MIREX beat-tracking conventions as implemented by ``mir_eval.beat``
(Davies, Degara & Plumbley, "Evaluation Methods for Musical Audio Beat Tracking Algorithms",
C4DM-TR-09-06, 2009); the tests cross-check every score against ``mir_eval`` to 1e-9.

Conventions
-----------
* Every time sequence is a 1-D array-like of times in **seconds**, non-decreasing, finite.
  A violation raises :class:`ValueError` naming the argument; non-numeric input raises
  :class:`TypeError`.
* Trimming is explicit: the metric functions score exactly the beats they are given. The
  MIREX/``mir_eval.beat.evaluate`` convention of ignoring beats before 5 s is applied by
  :func:`trim` and by :func:`evaluate` (``skip=5.0``), never silently inside a metric.
* Empty input: F-measures are 0.0 if either sequence is empty (also when both are). Continuity
  scores are all 0.0 if either sequence has fewer than 2 beats (intervals are undefined).
"""

from __future__ import annotations

import numpy as np

__all__ = [
    "beat_f_measure",
    "beat_time_errors",
    "lock_index",
    "continuity",
    "downbeat_f_measure",
    "evaluate",
    "trim",
]


def _as_times(times: object, name: str) -> np.ndarray:
    """Validate a time sequence and return it as a float64 array of shape (n,)."""
    try:
        arr = np.asarray(times, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"{name} must be a sequence of numbers (seconds): {exc}") from exc
    if arr.ndim != 1:
        raise ValueError(
            f"{name} must be 1-D (times in seconds), got shape {arr.shape}; "
            "for 'time beat_in_bar' rows pass column 0"
        )
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} contains NaN or infinite times")
    if arr.size > 1 and np.any(np.diff(arr) < 0):
        raise ValueError(f"{name} must be sorted in non-decreasing order")
    return arr


def _check_window(window: float) -> float:
    window = float(window)
    if not np.isfinite(window) or window < 0:
        raise ValueError(f"window must be a finite number of seconds >= 0, got {window}")
    return window


def trim(times: object, min_time: float = 5.0) -> np.ndarray:
    """Drop the times before ``min_time``.

    Beat evaluation conventionally ignores the first 5 s of a track (``mir_eval.beat.evaluate``
    does so by default), because listeners and trackers both need time to find the pulse.

    Parameters
    ----------
    times : array-like, shape (n,)
        Event times in seconds, non-decreasing.
    min_time : float
        Keep only times ``>= min_time`` (seconds). Default 5.0.

    Returns
    -------
    np.ndarray, shape (k,), float64
        The kept times, ``k <= n``.
    """
    arr = _as_times(times, "times")
    min_time = float(min_time)
    if not np.isfinite(min_time):
        raise ValueError(f"min_time must be a finite number of seconds, got {min_time}")
    return arr[arr >= min_time]


def _match(reference: np.ndarray, estimated: np.ndarray, window: float) -> np.ndarray:
    """Maximum one-to-one matching of sorted event times.

    A pair (i, j) is allowed when ``estimated[j] - window <= reference[i] <= estimated[j] +
    window``. Every estimate's allowed references form a contiguous index range whose ends move
    forward with j, so matching each estimate (in order) to the earliest still-unmatched allowed
    reference is a maximum matching.

    Returns an int64 array of shape (n_pairs, 2) with rows ``(ref_index, est_index)``.
    """
    pairs = []
    i = 0
    n_ref = reference.size
    for j, est in enumerate(estimated):
        lo = est - window
        hi = est + window
        while i < n_ref and reference[i] < lo:
            i += 1
        if i < n_ref and reference[i] <= hi:
            pairs.append((i, j))
            i += 1
    return np.asarray(pairs, dtype=np.int64).reshape(-1, 2)


def _matched_errors(reference: np.ndarray, estimated: np.ndarray, window: float) -> np.ndarray:
    pairs = _match(reference, estimated, window)
    return np.abs(estimated[pairs[:, 1]] - reference[pairs[:, 0]])


def _f_measure(reference: np.ndarray, estimated: np.ndarray, window: float) -> float:
    if reference.size == 0 or estimated.size == 0:
        return 0.0
    n_match = _match(reference, estimated, window).shape[0]
    if n_match == 0:
        return 0.0
    precision = n_match / estimated.size
    recall = n_match / reference.size
    return 2.0 * precision * recall / (precision + recall)


def beat_f_measure(reference: object, estimated: object, window: float = 0.07) -> float:
    """F-measure of estimated beats against reference beats, with one-to-one matching.

    An estimate is correct when it lies within ``window`` seconds of a reference beat not used
    by another estimate (maximum matching, as ``mir_eval.beat.f_measure``).

    Parameters
    ----------
    reference, estimated : array-like, shape (n,) and (m,)
        Beat times in seconds, non-decreasing. Not trimmed here: see :func:`trim`.
    window : float
        Tolerance in seconds (default 0.07, i.e. +-70 ms).

    Returns
    -------
    float
        F-measure in [0, 1]; 0.0 when either sequence is empty.
    """
    ref = _as_times(reference, "reference")
    est = _as_times(estimated, "estimated")
    return _f_measure(ref, est, _check_window(window))


def downbeat_f_measure(ref_downbeats: object, est_downbeats: object, window: float = 0.07) -> float:
    """F-measure of estimated downbeats against reference downbeats.

    Same matching as :func:`beat_f_measure`, applied to downbeat (bar start) times.

    Parameters
    ----------
    ref_downbeats, est_downbeats : array-like, shape (n,) and (m,)
        Downbeat times in seconds, non-decreasing.
    window : float
        Tolerance in seconds (default 0.07).

    Returns
    -------
    float
        F-measure in [0, 1]; 0.0 when either sequence is empty.
    """
    ref = _as_times(ref_downbeats, "ref_downbeats")
    est = _as_times(est_downbeats, "est_downbeats")
    return _f_measure(ref, est, _check_window(window))


def beat_time_errors(reference: object, estimated: object, window: float = 0.07) -> np.ndarray:
    """Absolute timing errors of the matched beat pairs.

    Uses the same maximum matching as :func:`beat_f_measure` (each estimate is paired with the
    earliest unused reference within ``window``), so unmatched beats contribute nothing.

    Parameters
    ----------
    reference, estimated : array-like, shape (n,) and (m,)
        Beat times in seconds, non-decreasing.
    window : float
        Tolerance in seconds (default 0.07).

    Returns
    -------
    np.ndarray, shape (n_pairs,), float64
        ``|estimated - reference|`` in seconds for each matched pair, in time order; each value
        is ``<= window`` up to rounding. Empty when nothing matches.
    """
    ref = _as_times(reference, "reference")
    est = _as_times(estimated, "estimated")
    return _matched_errors(ref, est, _check_window(window))


def lock_index(reference: object, estimated: object, start: float = 0.0, run: int = 8,
               window: float = 0.07) -> int | None:
    """Where a tracker locks: the first of ``run`` consecutive reference beats that each have an
    estimate within ``window``.

    A beat counts as hit when any estimate lies within ``window`` of it (no one-to-one
    matching: locking is about being on the beat, not about extra estimates).  Requiring a run
    means a lucky start that is lost again does not count as lock.

    Parameters
    ----------
    reference, estimated : array-like, shape (n,) and (m,)
        Beat times in seconds, non-decreasing.
    start : float
        Only reference beats at or after ``start`` seconds are considered (e.g. a tempo change).
    run : int
        Consecutive hits required (>= 1).
    window : float
        Tolerance in seconds (default 0.07).

    Returns
    -------
    int or None
        Index, among the reference beats ``>= start``, of the first beat of the run; None when
        the tracker never locks.
    """
    ref = _as_times(reference, "reference")
    est = _as_times(estimated, "estimated")
    win = _check_window(window)
    if isinstance(run, bool) or not isinstance(run, (int, np.integer)) or run < 1:
        raise ValueError(f"run must be an int >= 1, got {run!r}")
    ref = ref[ref >= start]
    if ref.size < run or est.size == 0:
        return None
    # distance from each reference beat to its nearest estimate (the neighbours in sorted order)
    j = np.searchsorted(est, ref)
    nearest = np.minimum(np.abs(est[np.maximum(j - 1, 0)] - ref),
                         np.abs(est[np.minimum(j, est.size - 1)] - ref))
    hit = nearest <= win
    # windows of `run` consecutive beats that are all hits
    full = np.flatnonzero(np.convolve(hit.astype(np.int64), np.ones(run, np.int64), "valid")
                          == run)
    return int(full[0]) if full.size else None


def _metrical_variations(reference: np.ndarray) -> tuple[np.ndarray, ...]:
    """Reference beats at the metrical levels accepted by the AML scores.

    Returns (original, off-beat, double tempo, half tempo on odd beats, half tempo on even
    beats). Midpoints are computed as ``a + 0.5 * (b - a)``.
    """
    mid = reference[:-1] + 0.5 * (reference[1:] - reference[:-1])
    double = np.empty(2 * reference.size - 1)
    double[0::2] = reference
    double[1::2] = mid
    return reference, mid, double, reference[0::2], reference[1::2]


def _continuity_one(
    reference: np.ndarray, estimated: np.ndarray, phase_threshold: float, period_threshold: float
) -> tuple[float, float]:
    """(continuous, total) accuracy of ``estimated`` against one reference variation.

    Each estimate is compared with its nearest reference beat (ties: the earlier one); it is
    correct when that reference is unused, the phase error ``|e - r| / reference interval`` is
    below ``phase_threshold`` and the period error ``|1 - estimated interval / reference
    interval|`` is below ``period_threshold``. The intervals are the preceding ones, except for
    the first estimate or the first reference, which use the following ones (falling back to
    the preceding one at the end of a sequence).
    """
    n_ref = reference.size
    n_est = estimated.size
    used = np.zeros(n_ref, dtype=bool)
    correct = np.zeros(n_est, dtype=bool)
    for m in range(n_est):
        distances = np.abs(estimated[m] - reference)
        k = int(np.argmin(distances))
        if used[k]:
            continue
        if m == 0 or k == 0:
            if n_ref == 1:
                ref_interval = 0.0
            elif k + 1 < n_ref:
                ref_interval = reference[k + 1] - reference[k]
            else:
                ref_interval = reference[k] - reference[k - 1]
            if m + 1 < n_est:
                est_interval = estimated[m + 1] - estimated[m]
            else:
                est_interval = estimated[m] - estimated[m - 1]
        else:
            ref_interval = reference[k] - reference[k - 1]
            est_interval = estimated[m] - estimated[m - 1]
        if ref_interval == 0:
            # Duplicate reference beats (mir_eval's convention): a zero-distance hit is a full
            # period off in phase, and only a zero estimated interval matches the period.
            phase = 1.0 if distances[k] == 0 else np.inf
            period = 0.0 if est_interval == 0 else np.inf
        else:
            with np.errstate(over="ignore"):  # tiny intervals: inf fails the test, as it should
                phase = distances[k] / ref_interval
                period = abs(1.0 - est_interval / ref_interval)
        if phase < phase_threshold and period < period_threshold:
            used[k] = True
            correct[m] = True
    denominator = float(max(n_ref, n_est))
    # Longest run of consecutive correct estimates.
    edges = np.diff(np.concatenate(([0], correct.astype(np.int8), [0])))
    starts = np.flatnonzero(edges == 1)
    ends = np.flatnonzero(edges == -1)
    longest = int(np.max(ends - starts)) if starts.size else 0
    return longest / denominator, int(np.count_nonzero(correct)) / denominator


def continuity(
    reference: object,
    estimated: object,
    phase_threshold: float = 0.175,
    period_threshold: float = 0.175,
) -> tuple[float, float, float, float]:
    """Continuity-based beat accuracies (CMLc, CMLt, AMLc, AMLt).

    CML ("correct metrical level") scores the estimates against the reference beats; AML ("any
    metrical level") takes the best score over the reference, its off-beat sequence, double
    tempo, and half tempo on either phase. ``*c`` is the longest run of consecutive correct
    beats, ``*t`` the total of correct beats, both divided by ``max(n_reference_variation,
    n_estimated)``. Matches ``mir_eval.beat.continuity``.

    Parameters
    ----------
    reference, estimated : array-like, shape (n,) and (m,)
        Beat times in seconds, non-decreasing. Not trimmed here: see :func:`trim`.
    phase_threshold : float
        Largest allowed ``|estimate - reference| / reference interval`` (exclusive), default
        0.175.
    period_threshold : float
        Largest allowed ``|1 - estimated interval / reference interval|`` (exclusive), default
        0.175.

    Returns
    -------
    tuple of 4 floats in [0, 1]
        ``(CMLc, CMLt, AMLc, AMLt)``; all 0.0 when either sequence has fewer than 2 beats.
    """
    ref = _as_times(reference, "reference")
    est = _as_times(estimated, "estimated")
    phase_threshold = float(phase_threshold)
    period_threshold = float(period_threshold)
    if ref.size < 2 or est.size < 2:
        return 0.0, 0.0, 0.0, 0.0
    scores = [
        _continuity_one(variation, est, phase_threshold, period_threshold)
        for variation in _metrical_variations(ref)
    ]
    continuous = [s[0] for s in scores]
    total = [s[1] for s in scores]
    return continuous[0], total[0], max(continuous), max(total)


def evaluate(
    ref_beats: object,
    est_beats: object,
    ref_downbeats: object | None = None,
    est_downbeats: object | None = None,
    skip: float | None = 5.0,
    window: float = 0.07,
) -> dict[str, float]:
    """Score a beat (and optionally downbeat) estimate against a reference.

    Parameters
    ----------
    ref_beats, est_beats : array-like, shape (n,) and (m,)
        Beat times in seconds, non-decreasing.
    ref_downbeats, est_downbeats : array-like or None
        Downbeat times in seconds. Give both or neither.
    skip : float or None
        Every sequence is passed through ``trim(times, skip)`` first (default 5.0 s, the
        ``mir_eval.beat.evaluate`` convention). ``None`` scores everything.
    window : float
        F-measure / timing-error tolerance in seconds (default 0.07).

    Returns
    -------
    dict[str, float]
        ``beat_f``, ``cmlc``, ``cmlt``, ``amlc``, ``amlt`` (in [0, 1]);
        ``error_median_s``, ``error_p95_s`` (absolute error of matched beats in seconds, NaN when
        nothing matches); ``n_ref_beats``, ``n_est_beats`` (counts after trimming); and, when
        downbeats are given, ``downbeat_f``, ``n_ref_downbeats``, ``n_est_downbeats``.
    """
    if (ref_downbeats is None) != (est_downbeats is None):
        raise ValueError("give both ref_downbeats and est_downbeats, or neither")
    window = _check_window(window)

    def prepare(times: object, name: str) -> np.ndarray:
        arr = _as_times(times, name)
        return arr if skip is None else trim(arr, skip)

    ref = prepare(ref_beats, "ref_beats")
    est = prepare(est_beats, "est_beats")
    cmlc, cmlt, amlc, amlt = continuity(ref, est)
    errors = _matched_errors(ref, est, window)
    result = {
        "beat_f": _f_measure(ref, est, window),
        "cmlc": cmlc,
        "cmlt": cmlt,
        "amlc": amlc,
        "amlt": amlt,
        "error_median_s": float(np.median(errors)) if errors.size else float("nan"),
        "error_p95_s": float(np.percentile(errors, 95)) if errors.size else float("nan"),
        "n_ref_beats": float(ref.size),
        "n_est_beats": float(est.size),
    }
    if ref_downbeats is not None:
        ref_db = prepare(ref_downbeats, "ref_downbeats")
        est_db = prepare(est_downbeats, "est_downbeats")
        result["downbeat_f"] = _f_measure(ref_db, est_db, window)
        result["n_ref_downbeats"] = float(ref_db.size)
        result["n_est_downbeats"] = float(est_db.size)
    return result
