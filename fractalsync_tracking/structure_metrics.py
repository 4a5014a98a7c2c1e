"""Evaluation metrics for the structure anticipator (numpy only).

* :func:`section_accuracy` — time-weighted frame accuracy over frames whose truth is not
  ``ignore`` (-1); ``merge={"pre-chorus": "verse"}`` gives the 7-label variant SongFormer
  reports; :func:`majority_label_accuracy` is the floor (always the most frequent true label).
* :func:`boundary_hit_rate` — precision, recall and F of estimated boundaries, one-to-one within
  ``±window_s`` as in MIREX / ``mir_eval.segment.detection`` (the tests cross-check it);
  :func:`median_detection_lag` — median ``est - ref`` of the matched pairs (positive = late).
* :func:`auroc` (rank-based, ties count half) and :func:`brier` for the hazard per horizon.
* :func:`phrase_prior_hazard` — the baseline the model must beat: the hazard implied by the bars
  elapsed since the last true boundary alone (:data:`HARMONIX_PHRASE_PRIOR`).

Conventions: times in seconds; label indices in the order of
:data:`~fractalsync_tracking.slow_state.SECTION_LABELS`, ``-1`` = ignore. A violation raises
``ValueError`` naming the argument.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType

import numpy as np

from fractalsync_models.training.targets import as_times, beat_position

from .slow_state import HORIZONS_BEATS, SECTION_LABELS

__all__ = [
    "HARMONIX_PHRASE_PRIOR",
    "PhrasePrior",
    "auroc",
    "boundary_hit_rate",
    "brier",
    "majority_label_accuracy",
    "median_detection_lag",
    "phrase_prior_hazard",
    "section_accuracy",
]


# --------------------------------------------------------------------------- input checks


def _labels(values: object, name: str) -> np.ndarray:
    arr = np.asarray(values)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be 1-D label indices, got shape {arr.shape}")
    if arr.size and not np.issubdtype(arr.dtype, np.integer):
        raise ValueError(f"{name} must hold integer label indices, got dtype {arr.dtype}")
    arr = arr.astype(np.int64)
    if np.any((arr < -1) | (arr >= len(SECTION_LABELS))):
        raise ValueError(f"{name} must hold indices in [-1, {len(SECTION_LABELS) - 1}]")
    return arr


def _weights(n: int, durations: object | None, times: object | None) -> np.ndarray:
    """Per-frame weights: ``durations``, or the steps of ``times`` (the last frame repeats the
    last step), or 1 per frame when neither is given."""
    if durations is not None and times is not None:
        raise ValueError("give durations or times, not both")
    if durations is not None:
        w = np.asarray(durations, dtype=np.float64)
        if w.shape != (n,):
            raise ValueError(f"durations must have shape ({n},), got {w.shape}")
        if not np.all(np.isfinite(w)) or np.any(w < 0):
            raise ValueError("durations must be finite and >= 0 (seconds)")
        return w
    if times is not None:
        t = as_times(times, "times", "increasing")
        if t.shape != (n,):
            raise ValueError(f"times must have shape ({n},), got {t.shape}")
        if n < 2:
            return np.ones(n)
        steps = np.diff(t)
        return np.append(steps, steps[-1])
    return np.ones(n)


def _merge_map(merge: Mapping[str, str] | None) -> np.ndarray:
    """Index map (with -1 at position -1 via index 8) applying ``merge`` label -> label."""
    mapping = np.arange(len(SECTION_LABELS) + 1, dtype=np.int64)
    mapping[-1] = -1
    for src, dst in (merge or {}).items():
        for name in (src, dst):
            if name not in SECTION_LABELS:
                raise ValueError(f"merge: {name!r} is not one of {SECTION_LABELS}")
        mapping[SECTION_LABELS.index(src)] = SECTION_LABELS.index(dst)
    return mapping


# --------------------------------------------------------------------------- sections


def section_accuracy(
    pred: object,
    truth: object,
    durations: object | None = None,
    *,
    times: object | None = None,
    merge: Mapping[str, str] | None = None,
) -> float:
    """Time-weighted section accuracy over the frames whose truth is not ignore.

    Parameters
    ----------
    pred, truth : (T,) int label indices in ``[-1, 8)``; a ``-1`` prediction is always wrong.
    durations : (T,) seconds each frame stands for; or ``times`` (T,) strictly increasing frame
        times (each frame lasts until the next; the last one as long as the step before it);
        neither: every frame weighs the same.
    merge : label renames applied to both sides before comparing, e.g.
        ``{"pre-chorus": "verse"}`` for SongFormer's 7-label accuracy.

    Returns ``sum(w * (pred == truth)) / sum(w)`` over frames with ``truth != -1``; NaN when
    there are none (or their weights sum to 0).
    """
    p = _labels(pred, "pred")
    y = _labels(truth, "truth")
    if p.shape != y.shape:
        raise ValueError(f"pred and truth must have the same shape, got {p.shape} and {y.shape}")
    w = _weights(y.size, durations, times)
    mapping = _merge_map(merge)
    p, y = mapping[p], mapping[y]
    valid = y >= 0
    total = w[valid].sum()
    if total <= 0:
        return float("nan")
    return float(w[valid & (p == y)].sum() / total)


def majority_label_accuracy(
    truth: object,
    durations: object | None = None,
    *,
    times: object | None = None,
    merge: Mapping[str, str] | None = None,
) -> float:
    """The accuracy floor: :func:`section_accuracy` of always predicting the label that covers
    the most (weighted) time of ``truth`` itself (ties: the lower index). Same parameters; NaN
    when ``truth`` has no non-ignore frame."""
    y = _merge_map(merge)[_labels(truth, "truth")]
    w = _weights(y.size, durations, times)
    valid = y >= 0
    if not valid.any():
        return float("nan")
    totals = np.bincount(y[valid], weights=w[valid], minlength=len(SECTION_LABELS))
    majority = np.full(y.size, int(np.argmax(totals)), dtype=np.int64)
    return section_accuracy(majority, y, w)


# --------------------------------------------------------------------------- boundaries


def _match(est: np.ndarray, ref: np.ndarray, window: float) -> tuple[np.ndarray, np.ndarray]:
    """Maximum one-to-one matching of sorted ``est`` and ``ref`` within ``window`` (hit when
    ``est - window <= ref <= est + window``, mir_eval's test). Greedy in time order: each
    reference takes the earliest unused estimate that can hit it; with equal windows the hit
    intervals are ordered at both ends, which makes this maximal. Returns index arrays."""
    ref_idx, est_idx = [], []
    j = 0
    for i, r in enumerate(ref):
        while j < est.size and r > est[j] + window:
            j += 1
        if j < est.size and r >= est[j] - window:
            ref_idx.append(i)
            est_idx.append(j)
            j += 1
    return np.array(ref_idx, dtype=np.int64), np.array(est_idx, dtype=np.int64)


def _check_window(window_s: float) -> float:
    w = float(window_s)
    if not np.isfinite(w) or w < 0:
        raise ValueError(f"window_s must be a finite number of seconds >= 0, got {window_s}")
    return w


def boundary_hit_rate(
    est_boundaries: object, ref_boundaries: object, window_s: float
) -> tuple[float, float, float]:
    """Boundary detection precision, recall and F-measure (HR.5F with 0.5, HR3F with 3.0).

    Parameters
    ----------
    est_boundaries, ref_boundaries : (n,), (m,) boundary times in seconds, non-decreasing.
    window_s : hit tolerance in seconds (``|est - ref| <= window_s``).

    Returns ``(precision, recall, F)`` of a maximum one-to-one matching, as
    ``mir_eval.segment.detection(..., trim=True)`` on the same boundaries; ``(0, 0, 0)`` when
    either side is empty (mir_eval's convention).
    """
    est = as_times(est_boundaries, "est_boundaries")
    ref = as_times(ref_boundaries, "ref_boundaries")
    window = _check_window(window_s)
    if est.size == 0 or ref.size == 0:
        return 0.0, 0.0, 0.0
    hits = _match(est, ref, window)[0].size
    precision, recall = hits / est.size, hits / ref.size
    f = 0.0 if hits == 0 else 2 * precision * recall / (precision + recall)
    return float(precision), float(recall), float(f)


def median_detection_lag(est_boundaries: object, ref_boundaries: object, window_s: float) -> float:
    """Median of ``est - ref`` (seconds) over the pairs :func:`boundary_hit_rate` matches within
    ``window_s``; positive means the estimate comes late. NaN when nothing matches."""
    est = as_times(est_boundaries, "est_boundaries")
    ref = as_times(ref_boundaries, "ref_boundaries")
    ref_idx, est_idx = _match(est, ref, _check_window(window_s))
    if ref_idx.size == 0:
        return float("nan")
    return float(np.median(est[est_idx] - ref[ref_idx]))


# --------------------------------------------------------------------------- hazard scores


def _binary(labels: object, n: int) -> np.ndarray:
    y = np.asarray(labels)
    if y.shape != (n,):
        raise ValueError(f"labels must have shape ({n},), got {y.shape}")
    yf = y.astype(np.float64)
    if not np.all((yf == 0) | (yf == 1)):
        raise ValueError("labels must be 0/1 (or bool)")
    return yf.astype(bool)


def _scores(values: object, name: str) -> np.ndarray:
    s = np.asarray(values, dtype=np.float64)
    if s.ndim != 1:
        raise ValueError(f"{name} must be 1-D, got shape {s.shape}")
    if not np.all(np.isfinite(s)):
        raise ValueError(f"{name} contains NaN or infinite values")
    return s


def auroc(scores: object, labels: object) -> float:
    """Area under the ROC curve from ranks (the Mann-Whitney statistic).

    Parameters
    ----------
    scores : (n,) finite scores (higher = more likely positive).
    labels : (n,) 0/1 or bool.

    Returns P(score of a random positive > score of a random negative), ties counting 1/2;
    NaN when either class is absent.
    """
    s = _scores(scores, "scores")
    y = _binary(labels, s.size)
    n_pos = int(y.sum())
    n_neg = y.size - n_pos
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    _, inverse, counts = np.unique(s, return_inverse=True, return_counts=True)
    upper = np.cumsum(counts)  # rank (1-based) of the last member of each tie group
    mean_rank = upper - (counts - 1) / 2.0
    rank_sum = mean_rank[inverse.reshape(-1)][y].sum()
    return float((rank_sum - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


def brier(probs: object, labels: object) -> float:
    """Brier score ``mean((probs - labels)**2)``: probs (n,) in [0, 1], labels (n,) 0/1 or bool.
    NaN for n = 0."""
    p = _scores(probs, "probs")
    if np.any((p < 0) | (p > 1)):
        raise ValueError("probs must lie in [0, 1]")
    y = _binary(labels, p.size)
    if p.size == 0:
        return float("nan")
    return float(np.mean((p - y) ** 2))


# --------------------------------------------------------------------------- phrase prior


@dataclass(frozen=True)
class PhrasePrior:
    """A discrete hazard over bars: ``hazard(k)`` = P(the next boundary comes exactly ``k``
    bars after the last one | none before), ``table[k]`` where listed, else ``other``."""

    table: Mapping[int, float]
    other: float

    def __post_init__(self) -> None:
        for k, h in self.table.items():
            if not isinstance(k, int) or k < 1 or not 0.0 <= h <= 1.0:
                raise ValueError(f"PhrasePrior table entries must be bars >= 1 -> [0, 1], got "
                                 f"{k!r}: {h!r}")
        if not 0.0 <= self.other <= 1.0:
            raise ValueError(f"PhrasePrior.other must be in [0, 1], got {self.other!r}")
        object.__setattr__(self, "table", MappingProxyType(dict(self.table)))

    def hazard(self, bars: np.ndarray) -> np.ndarray:
        """``hazard(k)`` for an int array of bar counts ``k >= 1``."""
        out = np.full(np.shape(bars), self.other, dtype=np.float64)
        for k, h in self.table.items():
            out[bars == k] = h
        return out


#: P(boundary after k bars | none yet) measured on 8,734 Harmonix Set boundaries (issue 10);
#: every other bar count, where the measurement gave <= 0.06, uses 0.03.
HARMONIX_PHRASE_PRIOR = PhrasePrior(
    {4: 0.117, 8: 0.478, 12: 0.152, 16: 0.484, 24: 0.308, 32: 0.383},
    other=0.03,
)


def phrase_prior_hazard(
    times: object,
    beat_times: object,
    downbeat_times: object,
    past_boundaries: object,
    horizons: Sequence[float] = HORIZONS_BEATS,
    table: PhrasePrior = HARMONIX_PHRASE_PRIOR,
) -> np.ndarray:
    """The phrase-prior baseline: P(a boundary within the next ``h`` beats) from bars alone.

    Parameters
    ----------
    times : (T,) seconds at which to evaluate, any order.
    beat_times : (B,) tracked beats (strictly increasing, ``B >= 2``) — the horizon's beats,
        counted as the targets count them
        (:func:`~fractalsync_models.training.targets.beat_position`).
    downbeat_times : (D,) tracked downbeats, strictly increasing: the bar lines.
    past_boundaries : (n,) the true boundaries, non-decreasing; at time ``t`` only those
        ``<= t`` are used (causal in the boundaries).
    horizons : (K,) horizons in beats, default (1, 2, 4, 8, 16).
    table : the bar hazard, default :data:`HARMONIX_PHRASE_PRIOR`.

    Returns (T, K) float64 in [0, 1], non-decreasing along K.

    Derivation. At ``t`` let ``b`` be the last boundary ``<= t`` and ``j0`` the tracked downbeat
    nearest to it (before any boundary: ``j0 = 0``, the first downbeat). Bar ``k`` after the
    boundary starts at downbeat ``D[j0 + k]``; the ``m`` of these ``<= t`` passed without a
    boundary. From the discrete hazard ``h``, P(next boundary at bar ``k`` | none through bar
    ``m``) = ``h(k) * prod_{m < i < k} (1 - h(i))`` for ``k > m``. The prior for horizon ``H`` sums
    it over the bars whose downbeat lies within the next ``H`` beats:
    ``0 < p(D[j0 + k]) - p(t) <= H``, ``p`` the interpolated beat position. Bars after the last
    tracked downbeat do not exist (the song has ended). Rows are NaN with fewer than 2 beats or
    no downbeat.
    """
    t = as_times(times, "times", "any")
    beats = as_times(beat_times, "beat_times", "increasing")
    downs = as_times(downbeat_times, "downbeat_times", "increasing")
    bounds = as_times(past_boundaries, "past_boundaries")
    h = np.asarray(horizons, dtype=np.float64)
    if h.ndim != 1 or h.size == 0 or not np.all(np.isfinite(h)) or np.any(h <= 0):
        raise ValueError(f"horizons must be a non-empty 1-D sequence of positive beats, got "
                         f"{horizons!r}")
    out = np.zeros((t.size, h.size), dtype=np.float64)
    if beats.size < 2 or downs.size == 0:
        out[:] = np.nan
        return out
    if t.size == 0:
        return out
    # the downbeat each time's bar count starts from
    last = np.searchsorted(bounds, t, side="right") - 1
    j0 = np.zeros(t.size, dtype=np.int64)
    has = last >= 0
    if has.any():
        b = bounds[last[has]]
        right = np.clip(np.searchsorted(downs, b), 0, downs.size - 1)
        left = np.clip(right - 1, 0, downs.size - 1)
        j0[has] = np.where(np.abs(b - downs[left]) <= np.abs(downs[right] - b), left, right)
    passed = np.maximum(np.searchsorted(downs, t, side="right") - 1 - j0, 0)  # m
    p_t = beat_position(t, beats)
    p_down = beat_position(downs, beats)
    survival = np.ones(t.size)
    k = passed + 1
    while True:
        j = j0 + k
        alive = j < downs.size
        if not alive.any():
            break
        delta = np.where(alive, p_down[np.minimum(j, downs.size - 1)] - p_t, np.inf)
        if not np.any(delta <= h.max()):
            break
        p_next = survival * table.hazard(k)
        out += np.where((delta[:, None] > 0) & (delta[:, None] <= h[None, :]),
                        p_next[:, None], 0.0)
        survival = survival * (1.0 - table.hazard(k))
        k = k + 1
    return np.clip(out, 0.0, 1.0)
