"""Viterbi decoding of a bar-pointer HMM: joint beat, downbeat, tempo and meter.

The hidden state is ``(meter m, tempo k, position p)``: ``m`` indexes the modelled
beats-per-bar values (e.g. 2, 3, 4), ``k`` one of the integer beat periods
``intervals[k]`` (frames per beat) and ``p`` the position inside the bar in frames,
``0 <= p < beats_per_bar * intervals[k]``.  From frame to frame the pointer moves one
position forward.  At the end of every beat it may change its tempo: the last position
of a beat with period ``i`` moves to the first position of the next beat with period
``j`` with probability ``T[i, j]`` (an exponential distribution in the period ratio, see
:func:`tempo_transition_matrix`).  The meter never changes inside a decode; the decoder
runs all meters at once and keeps the most likely one (uniform prior over meters,
uniform over the states of each meter at frame 0).

Observations follow the usual bar-pointer design: the first ``ceil(I / observation_lambda)``
positions of each beat are "beat" states (observed with the beat activation), those of the
first beat of a bar are "downbeat" states (observed with the downbeat activation), all other
states are "no-beat" states observed with ``(1 - beat - downbeat) / (observation_lambda - 1)``.

Memory: the decoder keeps one float64 score per state (a ring buffer per (meter, tempo) block,
so the forward step moves no data) and stores back-pointers only where the path has a choice,
i.e. at beat starts: one ``uint8`` per (frame, beat-in-bar over all meters, tempo).  With the
defaults (55–215 BPM at 50 fps: 42 tempi; meters 2, 3, 4: 9 beat slots) that is 378 bytes per
frame, 68 MB for a 1-hour file (180 000 frames), plus 12.5 k scores.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numba import njit

from .tempo import MAX_BPM, MIN_BPM

__all__ = [
    "BarPointerModel",
    "ViterbiPath",
    "observation_log_densities",
    "tempo_transition_matrix",
    "viterbi_decode",
]

#: Floor applied to probabilities before taking logs (keeps an all-zero activation finite).
PROB_FLOOR = 1e-12
#: Default floor below which tempo transitions are dropped (sparse transitions): e^-20, i.e. a
#: one-beat tempo jump of more than 20 % at transition_lambda=100. Larger jumps stay reachable
#: over several beats at about the same total cost (the penalty is linear in the ratio). On the
#: reference excerpts the path equals the one with no floor (tested); at an abrupt tempo splice
#: it can differ locally. The decoder is ~30 % faster than with madmom's floor (2.2e-16).
TRANSITION_FLOOR = float(np.exp(-20.0))
_MAX_TEMPI = 256  # back-pointers are stored as uint8 tempo indices
_MAX_OBSERVATION_LAMBDA = 1 << 31  # larger values overflow float64 in the observation model
#: Largest state space accepted (one float64 score per state: 128 MB); the defaults need 13 k.
MAX_STATES = 1 << 24


def tempo_transition_matrix(
    intervals: np.ndarray, transition_lambda: float, floor: float = TRANSITION_FLOOR
) -> np.ndarray:
    """Log probabilities of tempo changes at a beat boundary.

    Parameters
    ----------
    intervals : (K,) int array, beat periods in frames.
    transition_lambda : float > 0. ``P(i -> j) ∝ exp(-lambda * |I_j / I_i - 1|)``; larger values
        make tempo changes less likely (``inf`` forbids them).
    floor : unnormalised probabilities ``exp(-lambda * |I_j / I_i - 1|)`` below this are dropped
        (0 keeps every transition); see :data:`TRANSITION_FLOOR`.

    Returns
    -------
    (K, K) float64 ``log P(next period j | period i)``, each row normalised; dropped
    transitions are ``-inf`` (not stored by the decoder).
    """
    if not transition_lambda > 0:
        raise ValueError(f"transition_lambda must be > 0, got {transition_lambda!r}")
    if not 0.0 <= floor < 1.0:
        raise ValueError(f"transition floor must be in [0, 1), got {floor!r}")
    iv = np.asarray(intervals, dtype=np.float64)
    if np.isinf(transition_lambda):
        prob = np.eye(iv.size)
    else:
        ratio = iv[np.newaxis, :] / iv[:, np.newaxis]
        prob = np.exp(-transition_lambda * np.abs(ratio - 1.0))
        prob[prob < floor] = 0.0
        prob /= prob.sum(axis=1, keepdims=True)
    with np.errstate(divide="ignore"):
        return np.log(prob)


@dataclass(frozen=True, eq=False)
class BarPointerModel:
    """State space and transition model of the bar-pointer HMM.

    Attributes
    ----------
    intervals : (K,) int64, beat periods in frames (strictly increasing).
    meters : tuple of beats-per-bar values, e.g. ``(2, 3, 4)``.
    log_transitions : (K, K) float64 tempo transition log probabilities (see
        :func:`tempo_transition_matrix`).
    beat_widths : (K,) int64, number of "beat" positions at the start of each beat.
    fps : frames per second of the activations.
    """

    intervals: np.ndarray
    meters: tuple[int, ...]
    log_transitions: np.ndarray
    beat_widths: np.ndarray
    fps: float

    def __post_init__(self) -> None:
        iv = np.asarray(self.intervals)
        if iv.ndim != 1 or iv.size == 0 or iv.size > _MAX_TEMPI:
            raise ValueError(f"need 1..{_MAX_TEMPI} tempo intervals, got shape {iv.shape}")
        if np.any(iv < 1) or np.any(np.diff(iv) <= 0):
            raise ValueError("intervals must be positive and strictly increasing")
        if not self.meters or not all(
            isinstance(m, (int, np.integer)) and not isinstance(m, bool) and m >= 1
            for m in self.meters
        ):
            raise ValueError(f"meters must be a non-empty tuple of ints >= 1, got {self.meters}")
        if self.num_states > MAX_STATES:
            raise ValueError(f"{self.num_states} states (meters {self.meters}, periods "
                             f"{iv[0]}..{iv[-1]} frames) exceed MAX_STATES = {MAX_STATES}")
        if self.log_transitions.shape != (iv.size, iv.size):
            raise ValueError("log_transitions must have shape (K, K)")
        w = np.asarray(self.beat_widths)
        if w.shape != iv.shape or np.any(w < 1) or np.any(w > iv):
            raise ValueError("beat_widths must have shape (K,) with 1 <= width <= interval")

    @classmethod
    def from_bpm(
        cls,
        fps: float = 50.0,
        min_bpm: float = MIN_BPM,
        max_bpm: float = MAX_BPM,
        meters: tuple[int, ...] = (2, 3, 4),
        transition_lambda: float = 100.0,
        observation_lambda: int = 16,
        transition_floor: float = TRANSITION_FLOOR,
    ) -> BarPointerModel:
        """Model with every integer beat period between ``max_bpm`` and ``min_bpm``.

        ``fps`` in frames/s, BPMs in beats/min; ``observation_lambda`` splits a beat into that
        many parts, the first being "beat" states; ``transition_lambda`` and
        ``transition_floor`` as in :func:`tempo_transition_matrix`.
        """
        if not (fps > 0 and 0 < min_bpm <= max_bpm):
            raise ValueError(f"need fps > 0 and 0 < min_bpm <= max_bpm, got {fps}, "
                             f"{min_bpm}, {max_bpm}")
        observation_lambda = _check_observation_lambda(observation_lambda)
        lo = max(1, int(round(60.0 * fps / max_bpm)))
        hi = max(lo, int(round(60.0 * fps / min_bpm)))
        if hi - lo + 1 > _MAX_TEMPI:
            raise ValueError(f"{min_bpm}..{max_bpm} BPM at {fps} fps spans {hi - lo + 1} beat "
                             f"periods ({lo}..{hi} frames); at most {_MAX_TEMPI} are supported")
        intervals = np.arange(lo, hi + 1, dtype=np.int64)
        widths = np.ceil(intervals / observation_lambda).astype(np.int64)
        return cls(
            intervals=intervals,
            meters=tuple(meters),
            log_transitions=tempo_transition_matrix(intervals, transition_lambda,
                                                    transition_floor),
            beat_widths=widths,
            fps=float(fps),
        )

    @property
    def bpms(self) -> np.ndarray:
        """(K,) tempo of each period in BPM."""
        return 60.0 * self.fps / np.asarray(self.intervals, dtype=np.float64)

    @property
    def num_states(self) -> int:
        """Total number of hidden states over all meters."""
        return int(sum(self.meters) * np.sum(self.intervals))

    def backpointer_bytes(self, num_frames: int) -> int:
        """Bytes of back-pointer storage needed to decode ``num_frames`` frames."""
        return int(num_frames) * sum(self.meters) * len(self.intervals)

    def restricted(self, min_bpm: float, max_bpm: float) -> BarPointerModel:
        """The same model restricted to periods whose tempo lies in ``[min_bpm, max_bpm]``.

        If no period falls in the window, the single period closest to its centre is kept.
        Transition rows are renormalised over the kept periods.
        """
        bpm = self.bpms
        keep = np.nonzero((bpm >= min_bpm) & (bpm <= max_bpm))[0]
        if keep.size == 0:
            keep = np.array([int(np.argmin(np.abs(bpm - 0.5 * (min_bpm + max_bpm))))])
        sub = self.log_transitions[np.ix_(keep, keep)]
        with np.errstate(invalid="ignore"):
            norm = np.logaddexp.reduce(sub, axis=1, keepdims=True)
        sub = np.where(np.isfinite(norm), sub - norm, -np.inf)
        # a row whose only targets were removed keeps its own tempo
        dead = ~np.isfinite(norm[:, 0])
        sub[dead, :] = -np.inf
        sub[dead, dead] = 0.0
        return BarPointerModel(
            intervals=np.asarray(self.intervals)[keep],
            meters=self.meters,
            log_transitions=sub,
            beat_widths=np.asarray(self.beat_widths)[keep],
            fps=self.fps,
        )


def observation_log_densities(
    activations: np.ndarray, observation_lambda: int = 16
) -> np.ndarray:
    """Per-frame log densities of the three observation classes.

    Parameters
    ----------
    activations : (N, 2) or (N, 3) array of probabilities; column 0 is the beat probability,
        column 1 the downbeat probability (BeatNet order; a third "no-beat" column is ignored).
    observation_lambda : int in [2, 2**31], see the module docstring.

    Returns
    -------
    (N, 3) float64: ``log`` of ``[(1 - beat - downbeat) / (lambda - 1), beat, downbeat]``,
    with every probability floored at :data:`PROB_FLOOR`.

    Raises
    ------
    ValueError if the array has the wrong shape or contains NaN/inf, or ``observation_lambda``
    is outside [2, 2**31]; TypeError for non-real activations or a non-integer
    ``observation_lambda``.
    """
    act = np.asarray(activations)
    if act.ndim != 2 or act.shape[1] not in (2, 3):
        raise ValueError(f"activations must have shape (N, 2) or (N, 3), got {act.shape}")
    if act.dtype.kind not in "fiu":
        raise TypeError(f"activations must be real numbers, got dtype {act.dtype}")
    act = act[:, :2].astype(np.float64)
    if not np.all(np.isfinite(act)):
        raise ValueError("activations contain NaN or inf")
    observation_lambda = _check_observation_lambda(observation_lambda)
    beat = np.clip(act[:, 0], 0.0, 1.0)
    down = np.clip(act[:, 1], 0.0, 1.0)
    nobeat = (1.0 - beat - down) / (observation_lambda - 1)
    probs = np.stack([nobeat, beat, down], axis=1)
    return np.log(np.maximum(probs, PROB_FLOOR))


def _check_observation_lambda(value) -> int:
    """``value`` as an int in ``[2, 2**31]`` (the number of parts a beat is split into).

    Raises TypeError unless ``value`` is an int or numpy integer (a float such as 2.5 would be
    truncated; a bool is not a count) and ValueError outside ``[2, 2**31]`` (any value beyond
    the longest beat period already gives one "beat" state per beat; far larger ones overflow
    float64).
    """
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"observation_lambda must be an int >= 2, got {value!r}")
    if not 2 <= value <= _MAX_OBSERVATION_LAMBDA:
        raise ValueError(f"observation_lambda must be in [2, 2**31], got {value!r}")
    return int(value)


@dataclass(frozen=True, eq=False)
class ViterbiPath:
    """Most likely state sequence of a :class:`BarPointerModel`.

    Attributes
    ----------
    meter : beats per bar of the winning meter (0 if there were no frames).
    tempo_index : (N,) int64, index into ``model.intervals`` per frame.
    position : (N,) int64, position inside the bar in frames per frame.
    log_prob : log probability of the path (-inf if there were no frames).
    meter_log_probs : (M,) float64, best path log probability for each modelled meter.
    """

    meter: int
    tempo_index: np.ndarray
    position: np.ndarray
    log_prob: float
    meter_log_probs: np.ndarray


@njit(cache=True)
def _viterbi_bar_pointer(log_obs, intervals, widths, meters, log_init,
                         src_ptr, src_idx, src_logp):
    """Bar-pointer Viterbi. See :func:`viterbi_decode` for the meaning of the arguments.

    log_obs float64 (T, 3) with T >= 1; intervals/widths int64 (K,); meters int64 (M,);
    log_init float64 (M,) per-state initial log prob per meter; tempo transitions in CSR form
    by *target* tempo: sources of j are src_idx[src_ptr[j]:src_ptr[j+1]] with log probs
    src_logp[...]. Returns (meter_best float64 (M,), best meter index, tempo path, position path).
    """
    n_frames = log_obs.shape[0]
    n_tempi = intervals.shape[0]
    n_meters = meters.shape[0]
    # block offsets into the score buffer and back-pointer beat-slot offsets per meter
    block_off = np.empty((n_meters, n_tempi), np.int64)
    slot_off = np.empty(n_meters, np.int64)
    total = 0
    slots = 0
    for mi in range(n_meters):
        slot_off[mi] = slots
        slots += meters[mi]
        for k in range(n_tempi):
            block_off[mi, k] = total
            total += meters[mi] * intervals[k]
    score = np.empty(total, np.float64)
    bp = np.zeros((n_frames, slots, n_tempi), np.uint8)
    end_val = np.empty(n_tempi, np.float64)

    # frame 0: uniform initial distribution + observation (scores are kept relative to the
    # cumulative "no-beat" log density, which every state receives)
    d_beat = log_obs[0, 1] - log_obs[0, 0]
    d_down = log_obs[0, 2] - log_obs[0, 0]
    for mi in range(n_meters):
        for k in range(n_tempi):
            iv = intervals[k]
            off = block_off[mi, k]
            for p in range(meters[mi] * iv):
                v = log_init[mi]
                q = p % iv
                if q < widths[k]:
                    v += d_down if p < iv else d_beat
                score[off + p] = v

    # ring-buffer heads: logical position p of block (m, k) at frame t is stored at
    # block_off + (p - t) mod L; head holds t mod L, so no division is needed per state
    head = np.zeros((n_meters, n_tempi), np.int64)
    for t in range(1, n_frames):
        d_beat = log_obs[t, 1] - log_obs[t, 0]
        d_down = log_obs[t, 2] - log_obs[t, 0]
        for mi in range(n_meters):
            bpb = meters[mi]
            for b in range(bpb):
                # scores of the last position of beat b (frame t-1), all tempi
                for i in range(n_tempi):
                    s = (b + 1) * intervals[i] - 1 - head[mi, i]
                    if s < 0:
                        s += bpb * intervals[i]
                    end_val[i] = score[block_off[mi, i] + s]
                nb = (b + 1) % bpb
                for j in range(n_tempi):
                    best = -np.inf
                    arg = 0
                    for e in range(src_ptr[j], src_ptr[j + 1]):
                        v = end_val[src_idx[e]] + src_logp[e]
                        if v > best:
                            best = v
                            arg = src_idx[e]
                    # frame t: head is one further; the slot written is the one just read
                    # for beat b of tempo j (the end of beat b moves to the start of beat nb)
                    s = nb * intervals[j] - 1 - head[mi, j]
                    if s < 0:
                        s += bpb * intervals[j]
                    score[block_off[mi, j] + s] = best
                    bp[t, slot_off[mi] + nb, j] = arg
            # advance the heads to frame t, then observe the beat states (all other states
            # got the no-beat density, which is kept out of the scores)
            for k in range(n_tempi):
                iv = intervals[k]
                length = bpb * iv
                h = head[mi, k] + 1
                if h == length:
                    h = 0
                head[mi, k] = h
                off = block_off[mi, k]
                for b in range(bpb):
                    d = d_down if b == 0 else d_beat
                    for q in range(widths[k]):
                        s = b * iv + q - h
                        if s < 0:
                            s += length
                        score[off + s] += d

    # best final state per meter
    t_last = n_frames - 1
    meter_best = np.full(n_meters, -np.inf)
    best_m = 0
    best_k = 0
    best_p = 0
    best_all = -np.inf
    for mi in range(n_meters):
        for k in range(n_tempi):
            iv = intervals[k]
            length = meters[mi] * iv
            off = block_off[mi, k]
            for p in range(length):
                v = score[off + (p - t_last) % length]
                if v > meter_best[mi]:
                    meter_best[mi] = v
                if v > best_all:
                    best_all = v
                    best_m = mi
                    best_k = k
                    best_p = p
    # back-tracking: within a beat the predecessor is deterministic
    tempo_path = np.empty(n_frames, np.int64)
    pos_path = np.empty(n_frames, np.int64)
    bpb = meters[best_m]
    k = best_k
    p = best_p
    for t in range(t_last, -1, -1):
        tempo_path[t] = k
        pos_path[t] = p
        if t == 0:
            break
        iv = intervals[k]
        if p % iv != 0:
            p -= 1
        else:
            b = p // iv
            k = np.int64(bp[t, slot_off[best_m] + b, k])
            pb = (b - 1) % bpb
            p = (pb + 1) * intervals[k] - 1
    return meter_best, best_m, tempo_path, pos_path


def _csr_by_target(log_transitions: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Finite entries of a (K, K) source->target log matrix as CSR lists per target."""
    lt = np.asarray(log_transitions, dtype=np.float64)
    finite = np.isfinite(lt)
    if np.any(np.isnan(lt)) or np.any(lt == np.inf):
        raise ValueError("log_transitions must not contain NaN or +inf")
    if not np.all(finite.any(axis=0)):
        raise ValueError("every tempo must be reachable (a column of log_transitions is all -inf)")
    targets, sources = np.nonzero(finite.T)  # row-major: grouped by target, sources ascending
    ptr = np.zeros(lt.shape[0] + 1, dtype=np.int64)
    np.add.at(ptr, targets + 1, 1)
    ptr = np.cumsum(ptr)
    return ptr, sources.astype(np.int64), lt[sources, targets]


def viterbi_decode(model: BarPointerModel, log_obs: np.ndarray) -> ViterbiPath:
    """Most likely bar-pointer state sequence for per-frame observation log densities.

    Parameters
    ----------
    model : the state space / transition model.
    log_obs : (N, 3) float array of log densities ``[no-beat, beat, downbeat]`` per frame,
        e.g. from :func:`observation_log_densities`; all values must be finite.

    Returns
    -------
    :class:`ViterbiPath`. With N == 0 the path is empty, ``meter`` is 0 and ``log_prob`` -inf.

    Raises
    ------
    ValueError for a wrong shape or non-finite observations.
    """
    obs = np.asarray(log_obs)
    if obs.ndim != 2 or obs.shape[1] != 3:
        raise ValueError(f"log_obs must have shape (N, 3), got {obs.shape}")
    obs = np.ascontiguousarray(obs, dtype=np.float64)
    if not np.all(np.isfinite(obs)):
        raise ValueError("log_obs contains NaN or inf")
    meters = np.asarray(model.meters, dtype=np.int64)
    if obs.shape[0] == 0:
        empty = np.empty(0, dtype=np.int64)
        return ViterbiPath(0, empty, empty.copy(), float("-inf"),
                           np.full(meters.size, -np.inf))
    intervals = np.ascontiguousarray(model.intervals, dtype=np.int64)
    widths = np.ascontiguousarray(model.beat_widths, dtype=np.int64)
    ptr, src, logp = _csr_by_target(model.log_transitions)
    states_per_meter = meters * np.sum(intervals)
    log_init = -np.log(float(meters.size)) - np.log(states_per_meter.astype(np.float64))
    meter_best, best_m, tempo_path, pos_path = _viterbi_bar_pointer(
        obs, intervals, widths, meters, log_init, ptr, src, logp)
    base = float(np.sum(obs[:, 0]))
    meter_lp = meter_best + base
    return ViterbiPath(
        meter=int(meters[best_m]),
        tempo_index=tempo_path,
        position=pos_path,
        log_prob=float(meter_lp[best_m]),
        meter_log_probs=meter_lp,
    )
