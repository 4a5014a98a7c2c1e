"""Online beat, downbeat and meter tracking with a two-stage particle filter (numba).

Input: the BeatNet CRNN's softmax per analysis frame (50 frames/s), ``[beat, downbeat, no-beat]``.
Output per frame: tempo, beat phase, beat count, meter, position in bar, a confidence, and beat
events with sub-frame times.

The model
---------
**Stage 1 – tempo and beat phase (sampled).**  Each of ``N`` particles carries a beat phase
``phi in [0, 1)`` and a beat period ``tau`` in frames (continuous, ``fps*60/max_bpm <= tau <=
fps*60/min_bpm``).  Per frame the phase advances by ``1/tau``.  When a particle's phase wraps
(it passes a beat) its period changes by a Laplace-distributed ratio,
``tau' = tau * (1 + e)``, ``p(e) ∝ exp(-tempo_lambda * |e|)`` (madmom's exponential tempo
transition, made continuous), and with probability ``tempo_jump_prob`` it instead jumps to a
period drawn log-uniformly from the whole range (the music may change tempo abruptly).  The time
since the beat is kept across a period change; the tempo changes are also what lets the phase
follow timing deviations.

The observation model follows from Bayes' rule applied to the network's posterior: the CRNN
estimates ``P(beat frame | audio)``, so ``p(audio | beat frame) ∝ (a_beat + a_down) / P(beat)``
and ``p(audio | no-beat frame) ∝ a_nobeat / P(no beat)``.  A particle whose nearest beat is
``d`` frames away is a beat frame with probability ``g(d)``, a Gaussian of standard deviation
``sigma = beat_width_frames`` (the label jitter of the training targets) shifted down by its
value at ``4 sigma`` and rescaled, so that it is exactly 0 from ``4 sigma`` on; this gives
``l = g * (a_beat + a_down) + (1 - g) * nonbeat_weight * a_nobeat`` with ``nonbeat_weight =
P(beat)/P(no beat)``.  Consecutive 20 ms frames are far from independent, so the likelihood is
tempered, ``l ** obs_exponent``.  Weights are multiplied by the likelihood, normalised, and the
particles are resampled (systematic resampling) when the effective sample size
``1 / sum(w^2)`` falls below ``ess_fraction * N``.  Only the ratio to the no-beat likelihood,
``(l / l_nobeat) ** obs_exponent``, matters; every particle reads it from a per-frame table of
``TABLE_SIZE`` points in ``d`` (``0 .. 4 sigma``; exactly 1 beyond): the model's ratio is, by
definition, the piecewise-linear interpolant of that table (it differs from the smooth formula
by less than 0.5 % of the peak ratio).  A frame costs ``O(N)`` branch-free operations plus a
few random numbers for the particles that pass a beat.

**Point estimate.**  The posterior is often multi-modal (tempo octaves, off-beat phase), so the
filter reports its mode, not its mean: the heaviest tempo bin of a weighted histogram of the
periods (``TEMPO_BINS`` bins, log-spaced, smoothed ``[1, 2, 1]``), then within that tempo
cluster the heaviest phase bin (``PHASE_BINS`` circular bins, smoothed), refined by the weighted
mean over the particles of the cluster.  ``conf`` multiplies the weight of that cluster by the
rhythm probability below.

**Rhythm present or not.**  A two-state switching model ("the published beat clock is real" /
"no beats", switching probability ``rhythm_switch_prob`` per frame) compares, every frame, the
likelihood of the clock's prediction (the previous estimate advanced by one frame, through the
same tempered likelihood ratio) with the "no beats" model in which every frame is a no-beat
frame.  The posterior ``P(rhythm | data)`` gates beat events: in silence, or on audio whose
beats the clock does not predict, it falls towards 0 and no beats are reported.  The same model
says where a rhythm (re)starts: the tracked state is then new, drawn from the prior.  So before
each frame a fraction ``rho = P(absent, t-1) * s / P(present, t)`` of the particles (the
probability that the rhythm has just started) is redrawn from the prior: a lost or silent
tracker re-seeds itself quickly, a confident one almost never.

**Decisions and the decision delay.**  At frame ``k`` the estimate's last beat crossed at
``c = k - phi * tau`` (sub-frame).  A crossing is registered once it is ``decision_delay_frames``
old, so the filter has seen the activations around it; the state published at frame ``k``
describes the reference frame ``k - decision_delay_frames`` (its phase is the estimate
extrapolated back), so every reported time is exact stream time, not the time of the decision.
A crossing within half a period of the previous one is the same beat and is not counted twice.

**Stage 2 – meter and position in bar (exact).**  The bar state ``(meter m, position b)``,
``m`` in ``beats_per_bar`` (2, 3, 4 by default), ``0 <= b < m``, is discrete and small (9 states),
so it is filtered exactly (the limit of infinitely many particles) and advanced once per
registered beat: ``b -> b + 1 mod m`` with probability ``1 - meter_switch_prob``, otherwise to
any state of another meter.  The observation is the beat's activation mass around the crossing
``c``, ``D = sum_j g_j a_down[j]`` and ``B = sum_j g_j a_beat[j]`` over the frames ``j`` within
``2 sigma`` of ``c``, ``g_j = exp(-(j - c)^2 / (2 sigma^2))``, with
likelihood ``D ** db_exponent`` for the downbeat position and ``B ** db_exponent`` for the other
positions.  The rhythm-restart model applies here too: if the rhythm (re)started since the
previous registered beat (probability ``1 - prod(1 - rho)`` over the frames in between, ``rho``
as above), the bar state is new as well, so that share of the predicted mass is replaced by the
prior (uniform over meters, then over positions).  After a silent gap the bar position is
therefore found again from the new evidence instead of being carried through the silence (within
one meter the position only ever advances, so otherwise only the rare meter switches could
correct it).  The beat's
position is the maximum a posteriori state; ``downbeat_prob`` is the posterior probability of
position 0.

**Compared with BeatNet's filter** (FACTS.md section 3): no information gate (a fixed 0.4
threshold there) — weak activations simply carry little weight, and the rhythm/no-rhythm model
decides when to stop reporting; no particle injection — new hypotheses enter through the tempo
jump and rhythm-restart components of the transition model; resampling only when the
effective sample size drops; the meter filtered exactly instead of with 250 particles; and the
reported beat times are sub-frame and delay-corrected.

**Randomness.**  Each filter owns a xoshiro256+ generator seeded with ``seed`` (splitmix64
expansion), so the same activations and seed give bit-identical output, independently of any
other filter or of numpy's global state.

All arrays are allocated once in :class:`ParticleFilter`; :meth:`ParticleFilter.step` allocates
nothing but its small result tuple.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
from numba import njit

from .tempo import MAX_BPM, MIN_BPM

__all__ = [
    "FilterConfig",
    "FilterFrame",
    "ParticleFilter",
    "TrackedBeats",
    "track_activations",
]

#: Number of log-spaced tempo bins of the mode estimate.
TEMPO_BINS = 48
#: Number of circular phase bins of the mode estimate.
PHASE_BINS = 32
#: Points of the per-frame likelihood table (distance to the nearest beat, 0..4 sigma).
TABLE_SIZE = 65
#: Activations kept for the stage-2 evidence (frames); bounds ``decision_delay_frames``.
RING = 16
_EPS = 1e-6
#: exp(-8): the beat kernel's value at 4 sigma, subtracted so that it reaches 0 there.
_G_FLOOR = math.exp(-8.0)

# indices into the float64 parameter vector
(_P_TAU_MIN, _P_TAU_MAX, _P_LT_MIN, _P_LT_MAX, _P_TEMPO_SCALE, _P_JUMP, _P_SIGMA, _P_KAPPA,
 _P_BETA, _P_METER_SWITCH, _P_DB_BETA, _P_RHYTHM_SWITCH, _P_DELAY, _P_ESS) = range(14)
_N_PARAMS = 14
# indices into the float64 scalar-state vector
(_S_FRAME, _S_LAST_CROSS, _S_BEATS, _S_RHYTHM, _S_BAR_STATE, _S_DOWNBEAT_PROB, _S_EST_PHASE,
 _S_EST_PERIOD, _S_RESTART) = range(9)
_N_SCALARS = 9
# indices into the float64 output vector
(_O_REF_FRAME, _O_PHASE, _O_PERIOD, _O_BEATS, _O_CONF, _O_DOWNBEAT_PROB, _O_BEAT_IN_BAR,
 _O_BEATS_PER_BAR, _O_BEAT, _O_BEAT_FRAME, _O_EMIT, _O_DOWNBEAT, _O_RHYTHM) = range(13)
_N_OUT = 13


def _is_real(v) -> bool:
    """True for Python and numpy real numbers; False for bools (True would silently mean 1),
    strings and everything else."""
    return (isinstance(v, (int, float, np.integer, np.floating))
            and not isinstance(v, (bool, np.bool_)))


def _is_int(v) -> bool:
    """True for Python and numpy integers, False for bools."""
    return isinstance(v, (int, np.integer)) and not isinstance(v, bool)


@dataclass(frozen=True)
class FilterConfig:
    """Parameters of :class:`ParticleFilter` (see the module docstring for the model).

    Attributes
    ----------
    fps : frames per second of the activations (BeatNet: 50).
    min_bpm, max_bpm : tempo range in beats per minute.
    n_particles : stage-1 particles.
    beats_per_bar : meters tracked by stage 2.
    tempo_lambda : sharpness of the per-beat tempo change (larger = steadier tempo).
    tempo_jump_prob : probability per beat of jumping to an arbitrary tempo.
    beat_width_frames : standard deviation of a beat's extent in frames.
    nonbeat_weight : prior odds ``P(beat frame) / P(no-beat frame)``.
    obs_exponent : tempering exponent of the frame likelihood (0 < x <= 1).
    meter_switch_prob : probability per beat of leaving the current meter.
    db_exponent : tempering exponent of the stage-2 (downbeat) likelihood.
    rhythm_switch_prob : per-frame probability of the music starting or stopping.
    decision_delay_frames : frames between a beat and its decision (0..RING-4).
    ess_fraction : resample when the effective sample size drops below this fraction of N.
    """

    fps: float = 50.0
    min_bpm: float = MIN_BPM
    max_bpm: float = MAX_BPM
    n_particles: int = 1500
    beats_per_bar: tuple[int, ...] = (2, 3, 4)
    tempo_lambda: float = 100.0
    tempo_jump_prob: float = 0.01
    beat_width_frames: float = 1.0
    nonbeat_weight: float = 0.5
    obs_exponent: float = 0.5
    meter_switch_prob: float = 0.002
    db_exponent: float = 1.0
    rhythm_switch_prob: float = 0.002
    decision_delay_frames: int = 4
    ess_fraction: float = 0.5

    def __post_init__(self) -> None:
        def bad(msg: str) -> None:
            raise ValueError(f"FilterConfig: {msg}")

        for name in ("fps", "min_bpm", "max_bpm", "tempo_lambda", "beat_width_frames",
                     "nonbeat_weight", "obs_exponent", "db_exponent"):
            v = getattr(self, name)
            if not (_is_real(v) and math.isfinite(v) and v > 0):
                bad(f"{name} must be a finite number > 0, got {v!r}")
        if self.max_bpm <= self.min_bpm:
            bad(f"max_bpm ({self.max_bpm}) must exceed min_bpm ({self.min_bpm})")
        if self.fps * 60.0 / self.max_bpm < 2.0:
            bad(f"max_bpm {self.max_bpm} is too fast for {self.fps} fps (< 2 frames per beat)")
        for name in ("tempo_jump_prob", "meter_switch_prob", "rhythm_switch_prob"):
            v = getattr(self, name)
            if not (_is_real(v) and 0.0 <= v < 1.0):
                bad(f"{name} must be a probability in [0, 1), got {v!r}")
        if not (_is_real(self.ess_fraction) and 0.0 < self.ess_fraction <= 1.0):
            bad(f"ess_fraction must be in (0, 1], got {self.ess_fraction!r}")
        if not (_is_int(self.n_particles) and self.n_particles >= 1):
            bad(f"n_particles must be an int >= 1, got {self.n_particles!r}")
        if not (_is_int(self.decision_delay_frames)
                and 0 <= self.decision_delay_frames <= RING - 4):
            bad(f"decision_delay_frames must be an int in [0, {RING - 4}], "
                f"got {self.decision_delay_frames!r}")
        meters = self.beats_per_bar
        if (not isinstance(meters, tuple) or not meters
                or not all(_is_int(m) and 1 <= m <= 16 for m in meters)
                or len(set(meters)) != len(meters)):
            bad("beats_per_bar must be a non-empty tuple of distinct ints in 1..16, "
                f"got {meters!r}")

    @property
    def min_period(self) -> float:
        """Shortest beat period in frames."""
        return self.fps * 60.0 / self.max_bpm

    @property
    def max_period(self) -> float:
        """Longest beat period in frames."""
        return self.fps * 60.0 / self.min_bpm


class FilterFrame(NamedTuple):
    """The filter's estimate after one frame.

    ``ref_frame`` is the frame the estimate describes (the current frame minus the decision
    delay; negative during the first frames).  ``phase`` in [0, 1) and ``period`` (frames per
    beat) describe the beat clock at ``ref_frame``.  ``beat_count`` counts registered beats.
    ``beat`` is true when a beat was registered at this step, at the fractional frame
    ``beat_frame`` (``<= ref_frame``); ``emitted`` is true when that beat is also reported (the
    rhythm probability is above 1/2), and ``is_downbeat`` when stage 2 places it first in its bar.
    """

    ref_frame: int
    phase: float
    period: float
    beat_count: int
    conf: float
    downbeat_prob: float
    beat_in_bar: int
    beats_per_bar: int
    beat: bool
    beat_frame: float
    emitted: bool
    is_downbeat: bool
    rhythm_prob: float


# ----------------------------------------------------------------------------------------------
# random numbers: xoshiro256+ (Blackman & Vigna), state = 4 x uint64
# ----------------------------------------------------------------------------------------------

@njit(cache=True)
def _splitmix64_seed(seed, rng):
    x = np.uint64(seed)
    for j in range(4):
        x = x + np.uint64(0x9E3779B97F4A7C15)
        z = x
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        rng[j] = z ^ (z >> np.uint64(31))


@njit(cache=True, inline="always")
def _uniform(rng):
    """A float64 in the open interval (0, 1)."""
    s0, s1, s2, s3 = rng[0], rng[1], rng[2], rng[3]
    result = s0 + s3
    t = s1 << np.uint64(17)
    s2 ^= s0
    s3 ^= s1
    s1 ^= s2
    s0 ^= s3
    s2 ^= t
    s3 = (s3 << np.uint64(45)) | (s3 >> np.uint64(19))
    rng[0], rng[1], rng[2], rng[3] = s0, s1, s2, s3
    return ((result >> np.uint64(11)) + 0.5) * (1.0 / 9007199254740992.0)


@njit(cache=True, inline="always")
def _laplace(rng, scale):
    """A Laplace(0, scale) variate."""
    u = _uniform(rng) - 0.5
    if u < 0.0:
        return scale * math.log(1.0 + 2.0 * u)
    return -scale * math.log(1.0 - 2.0 * u)


# ----------------------------------------------------------------------------------------------
# the filter kernels
# ----------------------------------------------------------------------------------------------

@njit(cache=True, inline="always")
def _tempo_bin(tau, pr, n_bins):
    b = int((math.log(tau) - pr[_P_LT_MIN]) / (pr[_P_LT_MAX] - pr[_P_LT_MIN]) * n_bins)
    return min(max(b, 0), n_bins - 1)


@njit(cache=True, inline="always")
def _draw_prior(i, phi, tau, inv_tau, tbin, rng, pr):
    """Draw particle ``i`` from the prior: uniform phase, log-uniform period."""
    phi[i] = _uniform(rng)
    t = math.exp(pr[_P_LT_MIN] + (pr[_P_LT_MAX] - pr[_P_LT_MIN]) * _uniform(rng))
    tau[i] = t
    inv_tau[i] = 1.0 / t
    tbin[i] = _tempo_bin(t, pr, TEMPO_BINS)


@njit(cache=True)
def _pf_init(phi, tau, inv_tau, tbin, w, rng, pr, seed):
    """Seed the generator and draw every particle from the prior with equal weights."""
    _splitmix64_seed(seed, rng)
    n = phi.size
    for i in range(n):
        _draw_prior(i, phi, tau, inv_tau, tbin, rng, pr)
        w[i] = 1.0 / n


@njit(cache=True)
def _restart(phi, tau, inv_tau, tbin, rng, pr, rho):
    """Redraw about ``rho * N`` randomly chosen particles from the prior (rhythm restarts).

    The count is ``floor(rho * N + u)`` (unbiased), the particles are picked uniformly with
    replacement; their weights are kept (they are samples of the mixture transition).
    """
    n = phi.size
    m = int(rho * n + _uniform(rng))
    for _ in range(min(m, n)):
        _draw_prior(min(int(_uniform(rng) * n), n - 1), phi, tau, inv_tau, tbin, rng, pr)


@njit(cache=True)
def _new_period(tau_old, rng, pr):
    """Tempo transition at a beat: Laplace ratio change, or a jump; reflected into range."""
    if _uniform(rng) < pr[_P_JUMP]:
        return math.exp(pr[_P_LT_MIN] + (pr[_P_LT_MAX] - pr[_P_LT_MIN]) * _uniform(rng))
    t = tau_old * (1.0 + _laplace(rng, pr[_P_TEMPO_SCALE]))
    lo, hi = pr[_P_TAU_MIN], pr[_P_TAU_MAX]
    if t < lo:
        t = min(2.0 * lo - t, hi)
    elif t > hi:
        t = max(2.0 * hi - t, lo)
    return t


@njit(cache=True)
def _likelihood_table(pr, a_beat, a_down, table):
    """Tempered likelihood ratio ``(l(d) / l_nobeat) ** beta`` at ``d = j * reach / (T - 1)``.

    ``d`` is the distance in frames to a particle's nearest beat, ``reach = 4 sigma`` and ``T =
    table.size``; beyond ``reach`` the ratio is 1 (a no-beat frame).
    """
    sigma = pr[_P_SIGMA]
    reach = 4.0 * sigma
    ratio = max(a_beat + a_down, _EPS) / max(pr[_P_KAPPA] * (1.0 - a_beat - a_down), _EPS)
    beta = pr[_P_BETA]
    last = table.size - 1
    for j in range(table.size):
        d = j * reach / last
        g = max((math.exp(-0.5 * d * d / (sigma * sigma)) - _G_FLOOR) / (1.0 - _G_FLOOR), 0.0)
        x = g * ratio + (1.0 - g)
        table[j] = math.sqrt(x) if beta == 0.5 else x ** beta  # sqrt: 10x cheaper than pow
    table[last] = 1.0  # g(4 sigma) = 0, without rounding


@njit(cache=True, inline="always")
def _table_at(table, x):
    """The likelihood ratio at fractional table index ``x = d * (TABLE_SIZE - 1) / (4 sigma)``
    (linear interpolation; 1 beyond the table, where ``d >= 4 sigma``)."""
    last = table.size - 1
    if x >= last:
        return 1.0
    j = int(x)
    return table[j] + (x - j) * (table[j + 1] - table[j])


@njit(cache=True)
def _propagate_weight(phi, tau, inv_tau, tbin, w, rng, pr, table, hist_t):
    """Move every particle one frame and multiply its weight by the frame's likelihood.

    ``table`` comes from :func:`_likelihood_table` (linear interpolation in ``d``).  Fills
    ``hist_t`` with the new weight per tempo bin.  Returns ``(sum w, sum w^2)``.
    """
    n = phi.size
    last_j = table.size - 2
    last = table.size - 1.0
    scale = last / (4.0 * pr[_P_SIGMA])
    hist_t[:] = 0.0
    wsum = 0.0
    wsq = 0.0
    for i in range(n):
        p = phi[i] + inv_tau[i]
        if p >= 1.0:
            p -= 1.0
            t_old = tau[i]
            t_new = _new_period(t_old, rng, pr)
            p = p * t_old / t_new
            tau[i] = t_new
            inv_tau[i] = 1.0 / t_new
            tbin[i] = _tempo_bin(t_new, pr, TEMPO_BINS)
        phi[i] = p
        # branch-free (a mispredicted branch per particle costs more than the lookup): beyond
        # the table x is clamped to its last point, whose ratio is exactly 1
        x = min(min(p, 1.0 - p) * tau[i] * scale, last)
        j = min(int(x), last_j)
        wi = w[i] * (table[j] + (x - j) * (table[j + 1] - table[j]))
        w[i] = wi
        wsum += wi
        wsq += wi * wi
        hist_t[tbin[i]] += wi
    return wsum, wsq


@njit(cache=True)
def _normalise(w, wsum):
    """Divide the weights by their sum ``wsum`` (as one multiplication by ``1 / wsum``).

    The one place the weights are normalised: every later decision (the mode's argmax
    included) reads these exact values, so a reference that orchestrates the kernels must call
    this too rather than normalise with its own arithmetic (a division rounds differently and
    flips near-ties of the argmax).
    """
    inv = 1.0 / wsum
    for i in range(w.size):
        w[i] *= inv


@njit(cache=True)
def _resample_systematic(phi, tau, inv_tau, tbin, w, buf_f, buf_i, rng):
    """Systematic resampling of normalised weights ``w`` (in place); weights become 1/N.

    Output ``i`` copies the first particle ``j`` with ``n * cumsum(w)[j] - U >= i`` (one
    uniform ``U``).  Branch-free: particle ``j``'s first output slot is
    ``K[j-1] = floor(n * cumsum(w)[j-1] - U) + 1`` (clipped to [0, n]); every particle writes
    its index there in order, so the last writer of a slot is the one that owns it, and a running
    maximum fills the slots after it.  ``buf_i`` needs ``n + 1`` entries.
    """
    n = phi.size
    u = _uniform(rng)
    buf_i[:] = 0
    cum = 0.0
    first = 0
    for j in range(n):
        buf_i[first] = j
        cum += w[j]
        first = min(max(int(math.floor(cum * n - u)) + 1, 0), n)
    buf_i[first] = n - 1  # slots left over by rounding go to the last particle
    for i in range(1, n):
        buf_i[i] = max(buf_i[i], buf_i[i - 1])
    for i in range(n):
        buf_f[i] = phi[buf_i[i]]
    phi[:] = buf_f[:n]
    for i in range(n):
        buf_f[i] = tau[buf_i[i]]
    tau[:] = buf_f[:n]
    for i in range(n):
        buf_f[i] = inv_tau[buf_i[i]]
    inv_tau[:] = buf_f[:n]
    for i in range(n):
        buf_f[i] = tbin[buf_i[i]]
    step = 1.0 / n
    for i in range(n):
        tbin[i] = int(buf_f[i])
        w[i] = step


@njit(cache=True, inline="always")
def _smoothed_argmax(hist, circular):
    """Index of the maximum of ``hist`` smoothed with ``[1, 2, 1]`` (first one on ties)."""
    nb = hist.size
    best = -1.0
    arg = 0
    for b in range(nb):
        s = 2.0 * hist[b]
        if circular:
            s += hist[(b - 1) % nb] + hist[(b + 1) % nb]
        else:
            if b > 0:
                s += hist[b - 1]
            if b < nb - 1:
                s += hist[b + 1]
        if s > best:
            best = s
            arg = b
    return arg


@njit(cache=True)
def _mode_estimate(phi, tau, tbin, w, hist_t, hist_p, hist_d, hist_tau):
    """Mode of the weighted particles: ``(phase, period in frames, weight of the mode cluster)``.

    ``hist_t`` holds the weight per tempo bin before normalisation, exactly as
    :func:`_propagate_weight` accumulated it (only its argmax is used, which is scale-free: not
    rescaling it keeps the tempo decision free of the normalisation's rounding).  The tempo
    cluster is the smoothed-heaviest tempo bin and its two neighbours; inside it the phase mode
    is the smoothed-heaviest of ``hist_p.size`` circular bins, refined by the weighted mean
    phase and period of the particles within 2.5 bins of that bin's centre.  ``w`` must sum to 1
    (:func:`_normalise`).
    """
    n = phi.size
    npb = hist_p.size
    bt = _smoothed_argmax(hist_t, False)
    hist_p[:] = 0.0
    hist_d[:] = 0.0
    hist_tau[:] = 0.0
    for i in range(n):
        if abs(tbin[i] - bt) <= 1:
            x = phi[i] * npb
            b = min(int(x), npb - 1)
            wi = w[i]
            hist_p[b] += wi
            hist_d[b] += wi * (x - b - 0.5)
            hist_tau[b] += wi * tau[i]
    bp = _smoothed_argmax(hist_p, True)
    sw = 0.0
    sd = 0.0
    st = 0.0
    for off in range(-2, 3):
        b = (bp + off) % npb
        sw += hist_p[b]
        sd += hist_d[b] + off * hist_p[b]
        st += hist_tau[b]
    if sw <= 0.0:
        return (bp + 0.5) / npb, tau[0], 0.0
    ph = (bp + 0.5 + sd / sw) / npb
    ph -= math.floor(ph)
    if ph >= 1.0:  # -1e-17 - floor(-1e-17) rounds to 1.0
        ph = 0.0
    return ph, st / sw, sw


@njit(cache=True)
def _bar_update(bar_p, bar_tmp, st_meter, st_pos, st_next, meter_size, pr, ev_down, ev_beat,
                restart):
    """One beat of the exact meter/position filter; returns the MAP state index.

    ``restart`` is the probability that the rhythm restarted since the previous beat: that
    share of the predicted mass is replaced by the prior (uniform over meters, then over
    positions)."""
    s_count = bar_p.size
    n_meters = meter_size.size
    sw = pr[_P_METER_SWITCH] if n_meters > 1 else 0.0
    bar_tmp[:] = 0.0
    # mass per meter, for the switch term
    for s in range(s_count):
        bar_tmp[st_next[s]] += bar_p[s] * (1.0 - sw)
    if sw > 0.0:
        total = 0.0
        for s in range(s_count):
            total += bar_p[s]
        for s in range(s_count):
            own = 0.0
            for r in range(s_count):
                if st_meter[r] == st_meter[s]:
                    own += bar_p[r]
            # mass arriving from the other meters, spread uniformly over this meter's states
            bar_tmp[s] += sw * (total - own) / (n_meters - 1) / meter_size[st_meter[s]]
    for s in range(s_count):
        bar_tmp[s] = (1.0 - restart) * bar_tmp[s] + restart / (n_meters * meter_size[st_meter[s]])
    beta = pr[_P_DB_BETA]
    l_down = (ev_down + _EPS) ** beta
    l_beat = (ev_beat + _EPS) ** beta
    norm = 0.0
    for s in range(s_count):
        v = bar_tmp[s] * (l_down if st_pos[s] == 0 else l_beat)
        bar_p[s] = v
        norm += v
    best = 0
    for s in range(s_count):
        bar_p[s] /= norm
        if bar_p[s] > bar_p[best]:
            best = s
    return best


@njit(cache=True)
def _pf_step(a_beat, a_down, phi, tau, inv_tau, tbin, w, buf_f, buf_i, rng, pr, table, hist_t,
             hist_p, hist_d, hist_tau, bar_p, bar_tmp, st_meter, st_pos, st_next, meter_size,
             meter_value, ring_b, ring_d, sc, out):
    """Advance the filter by one frame of activations; write the estimate into ``out``."""
    n = phi.size
    k = int(sc[_S_FRAME])
    ring_b[k % RING] = a_beat
    ring_d[k % RING] = a_down

    s_r = pr[_P_RHYTHM_SWITCH]
    r_prev = sc[_S_RHYTHM]
    r = r_prev * (1.0 - s_r) + (1.0 - r_prev) * s_r
    rho = (1.0 - r_prev) * s_r / r
    _restart(phi, tau, inv_tau, tbin, rng, pr, rho)
    sc[_S_RESTART] = 1.0 - (1.0 - sc[_S_RESTART]) * (1.0 - rho)
    _likelihood_table(pr, a_beat, a_down, table)
    bayes = 1.0
    if k > 0:  # the published clock's prediction for this frame against "no beats"
        p_clock = sc[_S_EST_PHASE] + 1.0 / sc[_S_EST_PERIOD]
        p_clock -= math.floor(p_clock)
        bayes = _table_at(table, min(p_clock, 1.0 - p_clock) * sc[_S_EST_PERIOD]
                          * (table.size - 1) / (4.0 * pr[_P_SIGMA]))
    # wsum > 0: the largest weight is >= 1/N and every table entry is >= (1e-6 / max(1,
    # nonbeat_weight)) ** obs_exponent > 0
    wsum, wsq = _propagate_weight(phi, tau, inv_tau, tbin, w, rng, pr, table, hist_t)
    _normalise(w, wsum)
    ph, period, mass = _mode_estimate(phi, tau, tbin, w, hist_t, hist_p, hist_d, hist_tau)
    if wsum * wsum / wsq < pr[_P_ESS] * n:
        _resample_systematic(phi, tau, inv_tau, tbin, w, buf_f, buf_i, rng)

    r = r * bayes / (r * bayes + (1.0 - r))
    r = min(max(r, 1e-9), 1.0 - 1e-9)
    sc[_S_RHYTHM] = r

    sc[_S_EST_PHASE] = ph
    sc[_S_EST_PERIOD] = period
    delay = pr[_P_DELAY]
    ref = k - delay
    cross = k - ph * period
    beat = False
    emit = False
    down = False
    beat_frame = 0.0
    if cross <= ref + 1e-9 and cross > sc[_S_LAST_CROSS] + 0.5 * period:
        sc[_S_LAST_CROSS] = cross
        if cross >= k - RING + 3:
            beat = True
            beat_frame = cross
            sc[_S_BEATS] += 1.0
            sigma = pr[_P_SIGMA]
            ev_d = 0.0
            ev_b = 0.0
            j0 = max(int(math.floor(cross - 2.0 * sigma)), k - RING + 1, 0)
            j1 = min(int(math.ceil(cross + 2.0 * sigma)), k)
            for j in range(j0, j1 + 1):
                dj = j - cross
                g = math.exp(-0.5 * dj * dj / (sigma * sigma))
                ev_d += g * ring_d[j % RING]
                ev_b += g * ring_b[j % RING]
            s_map = _bar_update(bar_p, bar_tmp, st_meter, st_pos, st_next, meter_size, pr,
                                ev_d, ev_b, sc[_S_RESTART])
            sc[_S_RESTART] = 0.0
            sc[_S_BAR_STATE] = s_map
            dp = 0.0
            for s in range(bar_p.size):
                if st_pos[s] == 0:
                    dp += bar_p[s]
            sc[_S_DOWNBEAT_PROB] = dp
            emit = r > 0.5
            down = st_pos[s_map] == 0
    last = cross if cross <= ref + 1e-9 else cross - period
    phase = (ref - last) / period
    phase = min(max(phase, 0.0), 1.0 - 1e-12)
    s_map = int(sc[_S_BAR_STATE])
    out[_O_REF_FRAME] = ref
    out[_O_PHASE] = phase
    out[_O_PERIOD] = period
    out[_O_BEATS] = sc[_S_BEATS]
    out[_O_CONF] = min(max(mass * r, 0.0), 1.0)
    out[_O_DOWNBEAT_PROB] = sc[_S_DOWNBEAT_PROB]
    out[_O_BEAT_IN_BAR] = st_pos[s_map] + 1
    out[_O_BEATS_PER_BAR] = meter_value[st_meter[s_map]]
    out[_O_BEAT] = 1.0 if beat else 0.0
    out[_O_BEAT_FRAME] = beat_frame
    out[_O_EMIT] = 1.0 if emit else 0.0
    out[_O_DOWNBEAT] = 1.0 if down else 0.0
    out[_O_RHYTHM] = r
    sc[_S_FRAME] = k + 1


# ----------------------------------------------------------------------------------------------
# public API
# ----------------------------------------------------------------------------------------------

class ParticleFilter:
    """Online two-stage beat/downbeat/meter particle filter (see the module docstring).

    Parameters
    ----------
    config : FilterConfig, optional
        Model parameters; defaults to ``FilterConfig()``.
    seed : int
        Seed of the filter's own random generator (0 <= seed < 2**63).

    Use :meth:`step` once per analysis frame with the frame's beat and downbeat activations,
    :meth:`reset` to start a new stream.
    """

    def __init__(self, config: FilterConfig | None = None, seed: int = 0) -> None:
        self.config = FilterConfig() if config is None else config
        if not isinstance(self.config, FilterConfig):
            raise TypeError(f"config must be a FilterConfig, got {type(config).__name__}")
        cfg = self.config
        n = cfg.n_particles
        self._phi = np.empty(n, np.float64)
        self._tau = np.empty(n, np.float64)
        self._inv_tau = np.empty(n, np.float64)
        self._tbin = np.empty(n, np.int64)
        self._w = np.empty(n, np.float64)
        self._buf_f = np.empty(n, np.float64)
        self._buf_i = np.empty(n + 1, np.int64)
        self._rng = np.zeros(4, np.uint64)
        self._hist_t = np.zeros(TEMPO_BINS, np.float64)
        self._hist_p = np.zeros(PHASE_BINS, np.float64)
        self._hist_d = np.zeros(PHASE_BINS, np.float64)
        self._hist_tau = np.zeros(PHASE_BINS, np.float64)
        self._table = np.zeros(TABLE_SIZE, np.float64)
        meters = cfg.beats_per_bar
        self._meter_value = np.array(meters, np.int64)
        self._meter_size = np.array(meters, np.float64)
        st_meter, st_pos, st_next = [], [], []
        for mi, m in enumerate(meters):
            base = len(st_meter)
            for b in range(m):
                st_meter.append(mi)
                st_pos.append(b)
                st_next.append(base + (b + 1) % m)
        self._st_meter = np.array(st_meter, np.int64)
        self._st_pos = np.array(st_pos, np.int64)
        self._st_next = np.array(st_next, np.int64)
        self._bar_p = np.empty(len(st_meter), np.float64)
        self._bar_tmp = np.empty(len(st_meter), np.float64)
        self._ring_b = np.zeros(RING, np.float64)
        self._ring_d = np.zeros(RING, np.float64)
        self._sc = np.zeros(_N_SCALARS, np.float64)
        self._out = np.zeros(_N_OUT, np.float64)
        pr = np.zeros(_N_PARAMS, np.float64)
        pr[_P_TAU_MIN] = cfg.min_period
        pr[_P_TAU_MAX] = cfg.max_period
        pr[_P_LT_MIN] = math.log(cfg.min_period)
        pr[_P_LT_MAX] = math.log(cfg.max_period)
        pr[_P_TEMPO_SCALE] = 1.0 / cfg.tempo_lambda
        pr[_P_JUMP] = cfg.tempo_jump_prob
        pr[_P_SIGMA] = cfg.beat_width_frames
        pr[_P_KAPPA] = cfg.nonbeat_weight
        pr[_P_BETA] = cfg.obs_exponent
        pr[_P_METER_SWITCH] = cfg.meter_switch_prob
        pr[_P_DB_BETA] = cfg.db_exponent
        pr[_P_RHYTHM_SWITCH] = cfg.rhythm_switch_prob
        pr[_P_DELAY] = cfg.decision_delay_frames
        pr[_P_ESS] = cfg.ess_fraction
        self._pr = pr
        self.reset(seed)

    def reset(self, seed: int | None = None) -> None:
        """Forget the stream: redraw the prior (with ``seed``, or the previous seed)."""
        if seed is not None:
            if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
                raise TypeError(f"seed must be an int, got {type(seed).__name__}")
            if not 0 <= int(seed) < 2**63:
                raise ValueError(f"seed must be in [0, 2**63), got {seed}")
            self.seed = int(seed)
        _pf_init(self._phi, self._tau, self._inv_tau, self._tbin, self._w, self._rng, self._pr,
                 self.seed)
        self._bar_p[:] = 1.0 / (len(self.config.beats_per_bar) * self._meter_size[self._st_meter])
        self._ring_b[:] = 0.0
        self._ring_d[:] = 0.0
        self._sc[:] = 0.0
        self._sc[_S_LAST_CROSS] = -1e18
        self._sc[_S_RHYTHM] = 0.5
        self._sc[_S_DOWNBEAT_PROB] = float(np.sum(self._bar_p[self._st_pos == 0]))
        self._sc[_S_BAR_STATE] = float(np.argmax(self._bar_p))

    @property
    def frames_seen(self) -> int:
        """Number of frames processed since the last reset."""
        return int(self._sc[_S_FRAME])

    def step(self, beat: float, downbeat: float) -> FilterFrame:
        """Process one analysis frame.

        Parameters
        ----------
        beat, downbeat : float
            The CRNN's beat and downbeat probabilities for the frame (columns 0 and 1 of its
            softmax), each in [0, 1] with ``beat + downbeat <= 1`` (up to 1e-6 rounding).

        Returns
        -------
        FilterFrame
            The estimate for frame ``ref_frame = frames_seen_before - decision_delay_frames``.
        """
        if not (_is_real(beat) and _is_real(downbeat)):
            raise TypeError("activations must be real numbers, got "
                            f"beat={beat!r:.40}, downbeat={downbeat!r:.40}")
        b = float(beat)
        d = float(downbeat)
        if not (0.0 <= b <= 1.0 and 0.0 <= d <= 1.0 and b + d <= 1.0 + 1e-6):
            raise ValueError(
                "activations must be finite probabilities with beat + downbeat <= 1, "
                f"got beat={beat!r}, downbeat={downbeat!r}")
        return self._step_trusted(b, d)

    def _step_trusted(self, b: float, d: float) -> FilterFrame:
        """:meth:`step` without checks, for activations the pipeline made itself (Python
        floats, valid probabilities)."""
        _pf_step(b, d, self._phi, self._tau, self._inv_tau, self._tbin, self._w, self._buf_f,
                 self._buf_i, self._rng, self._pr, self._table, self._hist_t, self._hist_p,
                 self._hist_d, self._hist_tau, self._bar_p,
                 self._bar_tmp, self._st_meter, self._st_pos, self._st_next, self._meter_size,
                 self._meter_value, self._ring_b, self._ring_d, self._sc, self._out)
        o = self._out
        return FilterFrame(
            int(o[_O_REF_FRAME]), float(o[_O_PHASE]), float(o[_O_PERIOD]), int(o[_O_BEATS]),
            float(o[_O_CONF]), float(o[_O_DOWNBEAT_PROB]), int(o[_O_BEAT_IN_BAR]),
            int(o[_O_BEATS_PER_BAR]), bool(o[_O_BEAT]), float(o[_O_BEAT_FRAME]),
            bool(o[_O_EMIT]), bool(o[_O_DOWNBEAT]), float(o[_O_RHYTHM]))


class TrackedBeats(NamedTuple):
    """Beats reported by the online filter over a whole activation matrix.

    ``times`` (s, shape (n,)), ``beat_in_bar`` (1-based, shape (n,)) and ``is_downbeat`` (bool,
    shape (n,)) describe the emitted beats; ``frames`` holds the per-frame estimates.
    """

    times: np.ndarray
    beat_in_bar: np.ndarray
    is_downbeat: np.ndarray
    frames: list


def track_activations(activations: np.ndarray, config: FilterConfig | None = None,
                      seed: int = 0) -> TrackedBeats:
    """Run a fresh :class:`ParticleFilter` causally over an activation matrix.

    Parameters
    ----------
    activations : array, shape (frames, 2) or (frames, 3)
        CRNN output per frame, columns ``[beat, downbeat(, no-beat)]``.
    config, seed : as for :class:`ParticleFilter`.

    Returns
    -------
    TrackedBeats
        Beat times are frame indices divided by ``config.fps`` (frame ``i`` is centred on
        ``i / fps`` seconds, as in the batch front end).
    """
    act = np.asarray(activations)
    if act.ndim != 2 or act.shape[1] not in (2, 3):
        raise ValueError(f"activations must have shape (frames, 2 or 3), got {act.shape}")
    if not np.issubdtype(act.dtype, np.floating):
        raise TypeError(f"activations must be floating point, got {act.dtype}")
    pf = ParticleFilter(config, seed)
    frames = [pf.step(b, d) for b, d in act[:, :2].astype(np.float64)]
    beats = [f for f in frames if f.emitted]
    fps = pf.config.fps
    return TrackedBeats(
        np.array([f.beat_frame / fps for f in beats], np.float64),
        np.array([f.beat_in_bar for f in beats], np.int64),
        np.array([f.is_downbeat for f in beats], bool),
        frames,
    )
