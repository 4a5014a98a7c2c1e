"""Dominant tempo and half/double-tempo ambiguity from a beat activation function.

* :func:`dominant_tempo` — the tempo before decoding: autocorrelation of the beat activation,
  weighted by a broad log-normal tempo prior (centre 120 BPM, one octave standard deviation, the
  usual way to pick between equally periodic octaves) and refined by parabolic interpolation.
  Used as the optional tempo prior of the beat grid (decoding restricted to ± a window).
* :func:`grid_tempo` — the tempo of a decoded beat grid: 60 / the median over the grid of the
  mean inter-beat interval of 8-beat spans (robust to single bad beats and to the 1-frame
  quantisation of beat times).
* :func:`alternative_tempo` — ``bpm_alt``: half or double of the grid tempo when that reading is
  also plausible: (1) the activation's dominant tempo is within 4 % of it (both octaves show
  strong periodicity), or (2) the off-beats (midpoints between grid beats) carry at least
  ``ratio`` of the on-beat activation (double), or every other beat carries at most
  ``1 - ratio`` of its neighbours' activation (half: weak and strong beats alternate).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

#: The tempo range every tracker of the package searches by default (BPM): BeatNet's (FACTS.md).
MIN_BPM = 55.0
MAX_BPM = 215.0

__all__ = [
    "TempoEstimate",
    "alternative_tempo",
    "beat_autocorrelation",
    "dominant_tempo",
    "grid_tempo",
    "onbeat_offbeat_activation",
]

PRIOR_CENTRE_BPM = 120.0
PRIOR_OCTAVES = 1.0
_GRID_SPAN = 8  # beats per span in grid_tempo
_OCTAVE_TOLERANCE = 0.04  # relative distance of the dominant tempo to half/double


@dataclass(frozen=True)
class TempoEstimate:
    """A tempo read from an activation function.

    Attributes
    ----------
    bpm : tempo in beats per minute (NaN when the activation has no periodicity).
    strength : normalised autocorrelation at the tempo's lag, in [0, 1] (0: none).
    """

    bpm: float
    strength: float


def _as_activation(beat_act: object) -> np.ndarray:
    act = np.asarray(beat_act, dtype=np.float64)
    if act.ndim != 1:
        raise ValueError(f"beat activation must be 1-D (frames,), got shape {act.shape}")
    if not np.all(np.isfinite(act)):
        raise ValueError("beat activation contains NaN or inf")
    return act


def beat_autocorrelation(beat_act: object, max_lag: int) -> np.ndarray:
    """Normalised autocorrelation of a beat activation.

    Parameters
    ----------
    beat_act : (N,) activation (probability of a beat per frame).
    max_lag : largest lag in frames.

    Returns
    -------
    (max_lag + 1,) float64, ``r[L] = sum_t x[t] x[t+L] / sum_t x[t]^2`` of the mean-removed
    activation (biased estimate, ``r[0] = 1``); all zeros when the activation is constant.
    Lags ``>= N`` are 0.
    """
    x = _as_activation(beat_act)
    max_lag = int(max_lag)
    if max_lag < 0:
        raise ValueError("max_lag must be >= 0")
    out = np.zeros(max_lag + 1)
    x = x - x.mean() if x.size else x
    energy = float(np.dot(x, x))
    if energy <= 1e-12 * max(x.size, 1):
        return out
    n_fft = 1 << int(np.ceil(np.log2(2 * x.size)))
    spec = np.fft.rfft(x, n_fft)
    acf = np.fft.irfft(spec * np.conj(spec), n_fft)[: min(max_lag + 1, x.size)]
    out[: acf.size] = acf / energy
    return out


def dominant_tempo(
    beat_act: object, fps: float = 50.0, min_bpm: float = MIN_BPM, max_bpm: float = MAX_BPM
) -> TempoEstimate:
    """Dominant tempo of a beat activation by prior-weighted autocorrelation.

    Parameters
    ----------
    beat_act : (N,) per-frame beat probability (e.g. beat + downbeat columns of the CRNN).
    fps : frames per second.
    min_bpm, max_bpm : tempo search range in BPM.

    Returns
    -------
    :class:`TempoEstimate`; ``bpm`` is NaN (strength 0) if no lag in range has a positive
    autocorrelation (silence, constant input, or fewer frames than one period).
    """
    if not (fps > 0 and 0 < min_bpm <= max_bpm):
        raise ValueError("need fps > 0 and 0 < min_bpm <= max_bpm")
    lo = max(1, int(np.floor(60.0 * fps / max_bpm)))
    hi = max(lo, int(np.ceil(60.0 * fps / min_bpm)))
    acf = beat_autocorrelation(beat_act, hi + 1)
    lags = np.arange(lo, hi + 1)
    bpms = 60.0 * fps / lags
    prior = np.exp(-0.5 * (np.log2(bpms / PRIOR_CENTRE_BPM) / PRIOR_OCTAVES) ** 2)
    score = acf[lags] * prior
    best = int(np.argmax(score))
    if score[best] <= 0.0:
        return TempoEstimate(float("nan"), 0.0)
    lag = float(lags[best])
    # parabolic refinement of the raw autocorrelation peak
    left, mid, right = acf[lags[best] - 1], acf[lags[best]], acf[lags[best] + 1]
    curvature = left - 2.0 * mid + right
    if curvature < 0.0:
        lag += float(np.clip(0.5 * (left - right) / curvature, -0.5, 0.5))
    bpm = float(np.clip(60.0 * fps / lag, min_bpm, max_bpm))
    return TempoEstimate(bpm, float(np.clip(mid, 0.0, 1.0)))


def grid_tempo(beat_times: object) -> float:
    """Tempo of a beat grid in BPM (NaN with fewer than 2 beats).

    ``beat_times`` are seconds, increasing. The tempo is 60 divided by the median of the mean
    inter-beat intervals over all spans of ``min(8, n - 1)`` consecutive intervals.
    """
    t = np.asarray(beat_times, dtype=np.float64)
    if t.ndim != 1:
        raise ValueError("beat_times must be 1-D")
    if t.size < 2:
        return float("nan")
    span = min(_GRID_SPAN, t.size - 1)
    periods = (t[span:] - t[:-span]) / span
    period = float(np.median(periods))
    if not period > 0:
        raise ValueError("beat_times must be increasing")
    return 60.0 / period


def onbeat_offbeat_activation(beat_act: object, beat_frames: object):
    """Activation on a grid's beats and halfway between them.

    Parameters
    ----------
    beat_act : (N,) per-frame beat probability.
    beat_frames : (B,) int frame indices of the beats, increasing, in ``[0, N)``.

    Returns
    -------
    on : (B,) float64, max activation within ±1 frame of each beat.
    off : (B - 1,) float64, max activation within ±2 frames of each midpoint between
        consecutive beats.
    """
    act = _as_activation(beat_act)
    frames = np.asarray(beat_frames, dtype=np.int64)
    if frames.ndim != 1:
        raise ValueError("beat_frames must be 1-D")
    if frames.size and (frames.min() < 0 or frames.max() >= act.size):
        raise ValueError("beat_frames out of range of the activation")
    on = np.array([act[max(f - 1, 0): f + 2].max() for f in frames], dtype=np.float64)
    mids = (frames[:-1] + frames[1:]) // 2
    off = np.array([act[max(m - 2, 0): m + 3].max() for m in mids], dtype=np.float64)
    return on, off


def alternative_tempo(
    beat_act: object,
    beat_frames: object,
    tempo: float,
    dominant_bpm: float | None = None,
    ratio: float = 0.5,
    min_bpm: float = MIN_BPM,
    max_bpm: float = MAX_BPM,
) -> float | None:
    """Half or double of ``tempo`` if the activation makes it a plausible reading, else None.

    Parameters
    ----------
    beat_act : (N,) per-frame beat probability.
    beat_frames : (B,) int frame indices of the grid's beats, increasing.
    tempo : the grid tempo in BPM.
    dominant_bpm : the activation's dominant tempo (:func:`dominant_tempo`), if known.
    ratio : in (0, 1); ambiguity threshold (see the module docstring).
    min_bpm, max_bpm : an alternative outside this range is never proposed.

    Returns
    -------
    ``2 * tempo``, ``tempo / 2`` or None. Rule (1) of the module docstring wins; between the
    two activation rules the one with the more extreme evidence wins. Rules (2) need at least
    4 beats.
    """
    act = _as_activation(beat_act)
    frames = np.asarray(beat_frames, dtype=np.int64)
    if not 0.0 < ratio < 1.0:
        raise ValueError("ratio must be in (0, 1)")
    if not np.isfinite(tempo):
        return None
    double_in_range = 2.0 * tempo <= max_bpm
    half_in_range = 0.5 * tempo >= min_bpm
    if dominant_bpm is not None and np.isfinite(dominant_bpm):
        if double_in_range and abs(dominant_bpm / (2.0 * tempo) - 1.0) <= _OCTAVE_TOLERANCE:
            return 2.0 * tempo
        if half_in_range and abs(dominant_bpm / (0.5 * tempo) - 1.0) <= _OCTAVE_TOLERANCE:
            return 0.5 * tempo
    if frames.size < 4:
        return None
    on, off = onbeat_offbeat_activation(act, frames)
    on_mean = float(on.mean())
    if on_mean <= 0.0:
        return None
    double_evidence = float(off.mean()) / on_mean  # high: off-beats look like beats
    even, odd = float(on[0::2].mean()), float(on[1::2].mean())
    half_evidence = min(even, odd) / max(even, odd)  # low: strong and weak beats alternate
    double_ok = double_evidence >= ratio and double_in_range
    half_ok = half_evidence <= 1.0 - ratio and half_in_range
    if double_ok and (not half_ok or double_evidence >= 1.0 - half_evidence):
        return 2.0 * tempo
    if half_ok:
        return 0.5 * tempo
    return None
