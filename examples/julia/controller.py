"""The analytic controller: beat, micro features and song structure -> Julia control vector.

:class:`AnalyticController` is a deterministic, stateful function of time, called once per
render frame with a :class:`ControlInputs` (the displayed beat, the latest micro features and
the latest :class:`~fractalsync_tracking.slow_state.StructureState`). It returns the contract's
control vector (``contracts/v1.json`` ``models.controller.control_names``), a float32 array of 8:

==========  ==================  ===========================================================
index/name  range               meaning (:func:`to_params` maps it to :class:`JuliaParams`)
==========  ==================  ===========================================================
0 dc_re     [-2, 2]             real part of the Julia parameter c (the contract's Δc,
                                taken from c = 0): ``JuliaParams.c_re``
1 dc_im     [-2, 2]             imaginary part of c: ``JuliaParams.c_im``
2 zoom      [0.5, 3]            magnification: ``JuliaParams.zoom``
3 rotation  [-pi, pi]           view rotation in radians, wrapped (the picture is periodic
                                in it): ``JuliaParams.rotation``
4 hue       [0, 1]              palette offset in turns, wrapped (1 = 0): ``JuliaParams.hue``
5 saturation [0, 1]             ``JuliaParams.saturation``
6 brightness [0, 2]             ``JuliaParams.brightness``
7 detail    [0, 1]              iteration cap, geometric between the ends of ``iter_range``:
                                ``max_iter = round(lo * (hi / lo) ** detail)``, default
                                ``DETAIL_ITER_RANGE`` = (32, 512)
==========  ==================  ===========================================================

The analytic controller's own outputs stay well inside these ranges (c within |c| < 0.75).

What moves the picture
----------------------
**On the beat.** :func:`beat_pulse` is an envelope of the beat phase that rises over the last
``ATTACK_S`` seconds before a beat (a square ramp), peaks at 1 exactly on the beat (phase 0) and
decays to 0 over ``DECAY_S`` seconds after it (a cubic fall), both capped to a fraction of a beat
so the pulse is over well within the beat. Its amplitude is
``conf * (DOWNBEAT_GAIN if the beat is a downbeat else BEAT_GAIN) * section pulse gain``
(a beat is a downbeat when its ``beat_in_bar`` is 1; while rising, the upcoming beat is a
downbeat when ``beat_in_bar >= beats_per_bar``). The pulse kicks the log-zoom
(``PULSE_LOG_ZOOM``), flashes the brightness (``PULSE_BRIGHTNESS``, added) and kicks c
(``PULSE_LAMBDA`` outwards in the connected parametrisation, ``PULSE_OFFSET`` away from the
Mandelbrot set in the disconnected one). ``conf = 0`` means no pulse at all.

**Between beats.** The levels ``rms_db, bass, mid, treble`` and the flux (as ``10 log10 flux``)
are normalised per channel against a slow reference (``LEVEL_REF_TAU_S``) that only learns
from frames above the gate, ``n = sigmoid((x - ref) / LEVEL_SLOPE_DB) * gate(x)`` with
``gate`` rising from 0 at ``GATE_DB[0]`` to 1 at ``GATE_DB[1]`` (the flux channel uses the rms
gate). So a -120 dB floor (silence) reads 0 and cannot blow anything up. These five levels are
followed by critically damped filters, fast (rate ``1 / LEVEL_ATTACK_S``) while rising and
slower (``1 / LEVEL_RELEASE_S``) while falling: the features change in steps at the analysis
rate (50 Hz), and a second-order follower turns the steps into smooth motion. The onset feature
(flux relative to its running mean, [0, 1)) reads ``max(0, 2 onset - 1)`` through an envelope
that jumps up at once and decays with time constant ``ONSET_RELEASE_S``, so an onset flashes on
its own frame. An onset's analysis arrives 30-60 ms after the sound (the 32 ms framing lag and
the frame period), so an onset on a beat would flash a few frames after the beat pulse, a
second, late pulse. Onsets within ``ONSET_GUARD_S`` of a beat are therefore left to the beat
pulse: the onset is scaled by ``1 - conf * (1 - g)``, ``g`` rising from 0 at ``ONSET_GUARD_S``
to 1 at ``ONSET_GUARD_S + ONSET_GUARD_RAMP_S`` from the nearest beat (without a beat,
``conf = 0``, every onset flashes). Bass breathes the zoom and pushes c
outwards, mid turns c, treble adds detail and saturation, flux speeds the rotation, onsets
brighten, the spectral centroid tints the hue, and the rms level sets the overall brightness.
The centroid's tint is followed by a critically damped filter (rate ``1 / HUE_TINT_S``): the
centroid steps at the analysis rate, and a kick on the beat moves it, so an unfiltered tint
turned the palette in one frame 3-4 frames after every drummed beat, a second, late flash
that the eye (and the pulse measure) took for the beat.

**By section.** Each label has a :class:`SectionStyle`; the styles are blended with the section
probabilities after a critically damped smoothing whose step response settles (95 %) in one
beat, so a change of section glides over about a beat. The roadmap's aesthetic rule for c:

* connected parametrisation: ``c = lam/2 - lam**2/4`` with ``|lam| <= LAMBDA_MAX < 1`` lies in
  the main cardioid, so the Julia set is connected. ``lam`` has the blended radius of the
  styles, turning slowly with time (``DRIFT_RAD_PER_S``) plus the blended angle offsets.
* disconnected region: the closed disc of radius ``R_OUT`` around ``C_OUT`` lies outside the
  Mandelbrot set with a margin (certified in ``tests/test_julia_controller.py`` by the Koebe
  distance bound on a covering grid), so every c there has a disconnected ("dust") Julia set.
* ``c = (1 - w) c_connected + w c_disconnected``, ``w = smoothstep`` of the smoothed chorus
  probability between ``CHORUS_BLEND`` = (0.3, 0.7). In a chorus (smoothed p >= 0.7) c lies in
  the disc, outside M, for every frame including pulses; in any section whose smoothed chorus
  probability is <= 0.3 (verses, the neutral state) c lies in the cardioid, inside M.

**Before a change.** Tension ``T = sum(HAZARD_WEIGHTS * hazard_probs)`` in [0, 1] (nearer
horizons weigh more), followed with time constant ``TENSION_TAU_BEATS`` beats, adds detail
(``TENSION_DETAIL``), saturation (``TENSION_SATURATION``), zoom (``TENSION_LOG_ZOOM``) and
multiplies the rotation speed by ``1 + TENSION_ROTATION * T``.

Limits and smoothness
---------------------
Every output is clipped into its range. The connected ``lam`` and the disconnected offset
``c - C_OUT`` are each moved toward their targets by at most ``LAMBDA_RATE * dt`` and
``OFFSET_RATE * dt`` (rate limits on convex sets, so the membership guarantees hold on every
frame), the blend ``w`` by ``W_RATE * dt``, the log-zoom by ``LOG_ZOOM_RATE * dt``, and the
rotation turns at most ``ROTATION_SPEED_MAX`` rad/s, its speed critically damped. So at 60 FPS
the per-frame change of c is at most ``(LAMBDA_RATE * (1 + LAMBDA_MAX) / 2 + W_RATE * 1.22) /
60`` (|dc/dlam| <= (1 + LAMBDA_MAX) / 2, |c_connected - c_disconnected| < 1.22), of the log-zoom
``LOG_ZOOM_RATE / 60`` and of the rotation ``ROTATION_SPEED_MAX / 60`` (modulo 2 pi). There are
no cuts: section changes glide. ``dt`` is the time since the previous step, clipped to
``[0, DT_MAX]``; the first step after construction or :meth:`AnalyticController.reset` starts
every smoothed value at its target.

Bad values (documented fallbacks; never NaN out): a non-finite ``t`` holds the time (dt = 0); a
``t`` earlier than the previous one gives dt = 0 and the clock follows it (a seek back does not
freeze the picture); a non-finite or non-positive ``spb`` holds the last valid one (initially
0.5 s), and ``spb`` is clipped to ``SPB_RANGE``; a non-finite ``phase`` or ``conf`` gives no
pulse, a finite phase outside [0, 1) is taken modulo 1 and ``conf`` is clipped to [0, 1]; a
non-finite micro feature reads as its silence value (``SILENCE_MICRO``), finite ones are clipped
(levels to [-120, 12] dB, flux to [0, 1e6], centroid to [0, 11025] Hz, onset to [0, 1]);
non-finite or negative section probabilities count as 0 and are renormalised (all zero:
uniform); non-finite hazards count as 0 and hazards are clipped to [0, 1].
"""

from __future__ import annotations

import math
import operator
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from examples.julia.params import MAX_ITER_RANGE, JuliaParams
from fractalsync_tracking.slow_state import HORIZONS_BEATS, SECTION_LABELS, StructureState

__all__ = [
    "CONTROL_NAMES", "CONTROL_RANGES", "C_OUT", "DETAIL_ITER_RANGE", "LAMBDA_MAX", "R_OUT",
    "SECTION_STYLES", "SILENCE_MICRO", "AnalyticController", "ControlInputs", "SectionStyle",
    "beat_pulse", "critical_orbit_escapes", "julia_connected", "to_params",
]

#: The control vector's names (``contracts/v1.json`` ``models.controller.control_names``).
CONTROL_NAMES = ("dc_re", "dc_im", "zoom", "rotation", "hue", "saturation", "brightness",
                 "detail")
#: Closed range of each control (what :func:`to_params` clips to).
CONTROL_RANGES = {
    "dc_re": (-2.0, 2.0), "dc_im": (-2.0, 2.0), "zoom": (0.5, 3.0),
    "rotation": (-math.pi, math.pi), "hue": (0.0, 1.0), "saturation": (0.0, 1.0),
    "brightness": (0.0, 2.0), "detail": (0.0, 1.0),
}
#: Default iteration caps at detail 0 and 1.
DETAIL_ITER_RANGE = (32, 512)
#: Micro features of silence (contract order: rms_db, bass, mid, treble, flux, centroid, onset).
SILENCE_MICRO = (-120.0, -120.0, -120.0, -120.0, 0.0, 0.0, 0.0)
_N_MICRO, _N_SECTIONS, _N_HAZARD = len(SILENCE_MICRO), len(SECTION_LABELS), len(HORIZONS_BEATS)
_CHORUS = SECTION_LABELS.index("chorus")

# --- c: connected cardioid parametrisation and the disconnected disc
LAMBDA_MAX = 0.97
C_OUT = complex(0.42, 0.0)
R_OUT = 0.05
CHORUS_BLEND = (0.3, 0.7)
#: Radius of the slow circle the disconnected c follows around C_OUT (turning at 2x drift).
OUT_DRIFT_RADIUS = 0.025
DRIFT_RAD_PER_S = 2.0 * math.pi / 90.0
HUE_TURNS_PER_S = 1.0 / 120.0
#: Time constant (s) of the critically damped follower of the centroid's hue tint.
HUE_TINT_S = 0.25

# --- time
SPB_RANGE = (0.25, 2.0)
DT_MAX = 0.1
_DEFAULT_SPB = 0.5
#: A critically damped step response reaches 95 % at omega * t = 4.744.
_SETTLE_95 = 4.744

# --- beat pulse
ATTACK_S, ATTACK_MAX_BEATS = 0.03, 0.2
DECAY_S, DECAY_MAX_BEATS = 0.25, 0.5
BEAT_GAIN, DOWNBEAT_GAIN = 0.8, 1.0
PULSE_LOG_ZOOM, PULSE_BRIGHTNESS, PULSE_LAMBDA, PULSE_OFFSET = 0.15, 0.4, 0.06, 0.02

# --- rate limits (per second)
LAMBDA_RATE, OFFSET_RATE, W_RATE, LOG_ZOOM_RATE = 4.0, 2.0, 3.0, 10.0
ROTATION_SPEED_MAX = 0.8
_ROTATION_OMEGA = 6.0  # rad/s, critically damped rotation speed

# --- hazard tension
HAZARD_WEIGHTS = (0.3, 0.25, 0.2, 0.15, 0.1)
TENSION_TAU_BEATS = 0.5
TENSION_DETAIL, TENSION_SATURATION, TENSION_LOG_ZOOM, TENSION_ROTATION = 0.35, 0.25, 0.1, 2.0

# --- micro features: normalisation and effects
LEVEL_SLOPE_DB = 6.0
LEVEL_REF_TAU_S = 3.0
GATE_DB = (-70.0, -50.0)
LEVEL_ATTACK_S, LEVEL_RELEASE_S = 0.05, 0.12
ONSET_RELEASE_S = 0.08
#: Onsets this close to a beat (s, either side) are left to the beat pulse; the gate opens
#: fully ONSET_GUARD_RAMP_S further out.
ONSET_GUARD_S, ONSET_GUARD_RAMP_S = 0.09, 0.04
#: Starting references (dB) of the channels rms, bass, mid, treble, flux.
_LEVEL_REF_INIT = (-20.0, -25.0, -25.0, -40.0, -20.0)
_DB_CLIP = (-120.0, 12.0)
_FLUX_MAX, _CENTROID_MAX = 1e6, 11025.0
MICRO_LAMBDA_R, MICRO_LAMBDA_ANGLE, MICRO_OFFSET = 0.03, 0.06, 0.012
MICRO_LOG_ZOOM, MICRO_DETAIL, MICRO_SATURATION = 0.08, 0.1, 0.1
MICRO_ONSET_BRIGHTNESS, MICRO_ROTATION, MICRO_HUE = 0.2, 0.1, 0.05


class SectionStyle(NamedTuple):
    """The character of one section label (blended by the smoothed section probabilities).

    lam_radius : |lam| in [0, LAMBDA_MAX) of the connected parametrisation (near 1: near the
        cardioid's boundary, intricate; small: a round blob).
    lam_angle : angle offset of lam in radians, added to the slow drift.
    zoom : base magnification.
    rotation_speed : base view rotation speed in rad/s.
    hue, saturation, brightness, detail : palette offset (turns), saturation, brightness gain at
        full loudness (half of it in silence) and base detail, before micro/tension terms.
    pulse_gain : scale of the beat pulse in [0, 1].
    """

    lam_radius: float
    lam_angle: float
    zoom: float
    rotation_speed: float
    hue: float
    saturation: float
    brightness: float
    detail: float
    pulse_gain: float


#: Style per label. Only the chorus is disconnected (through ``w``); its lam is the connected
#: end of its glide. Intro/outro/silence are calmer (smaller lam, slow turn, dimmer, smaller
#: pulse), pre-chorus sits near the cardioid's boundary, bridge and inst have their own regions
#: and palettes.
SECTION_STYLES: dict[str, SectionStyle] = {
    "silence": SectionStyle(0.30, 0.0, 0.9, 0.02, 0.62, 0.35, 0.55, 0.25, 0.4),
    "intro": SectionStyle(0.60, 0.5, 1.0, 0.05, 0.58, 0.55, 0.80, 0.35, 0.7),
    "verse": SectionStyle(0.88, 1.2, 1.05, 0.08, 0.55, 0.75, 1.00, 0.50, 1.0),
    "pre-chorus": SectionStyle(0.95, 2.1, 1.15, 0.14, 0.80, 0.85, 1.05, 0.60, 1.0),
    "chorus": SectionStyle(0.92, 0.3, 1.10, 0.18, 0.02, 0.95, 1.15, 0.65, 1.0),
    "bridge": SectionStyle(0.93, 2.9, 1.25, -0.10, 0.33, 0.70, 0.95, 0.55, 0.9),
    "inst": SectionStyle(0.90, -1.6, 1.0, 0.12, 0.15, 0.90, 1.05, 0.55, 1.0),
    "outro": SectionStyle(0.50, -0.6, 0.95, 0.04, 0.66, 0.45, 0.70, 0.30, 0.7),
}
# (8, 9) table in SECTION_LABELS order; zoom as log-zoom so that it blends geometrically
_STYLE_TABLE = np.array([SECTION_STYLES[label] for label in SECTION_LABELS], np.float64)
_STYLE_TABLE[:, SectionStyle._fields.index("zoom")] = np.log(
    _STYLE_TABLE[:, SectionStyle._fields.index("zoom")])
_S = {name: i for i, name in enumerate(SectionStyle._fields)}


def _number(owner: str, name: str, value) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise TypeError(f"{owner}.{name} must be a number, got {type(value).__name__}")
    return float(value)


def _integer(owner: str, name: str, value) -> int:
    if isinstance(value, bool):
        raise TypeError(f"{owner}.{name} must be an int, got bool")
    try:
        return operator.index(value)
    except TypeError:
        raise TypeError(f"{owner}.{name} must be an int, got {type(value).__name__}") from None


def _vector(owner: str, name: str, values, n: int) -> tuple[float, ...]:
    if isinstance(values, (str, bytes)) or not hasattr(values, "__len__"):
        raise TypeError(f"{owner}.{name} must be a sequence of {n} numbers, "
                        f"got {type(values).__name__}")
    if len(values) != n:
        raise ValueError(f"{owner}.{name} must have {n} values, got {len(values)}")
    return tuple(_number(owner, f"{name}[{i}]", v) for i, v in enumerate(values))


@dataclass(frozen=True)
class ControlInputs:
    """What the controller reads at one render frame.

    Attributes
    ----------
    t : stream time (s) of the frame being rendered; the controller's smoothing runs on it.
    phase : displayed beat phase in [0, 1); 0 is the beat.
    beat_in_bar : 1-based position of the current beat in its bar.
    beats_per_bar : the meter (the beat after ``beat_in_bar >= beats_per_bar`` is a downbeat).
    spb : seconds per beat.
    conf : beat confidence in [0, 1] (0: no pulse).
    micro : the 7 micro features (``rms_db, bass, mid, treble`` in dB with floor -120,
        ``flux`` >= 0, ``centroid_hz``, ``onset`` in [0, 1)); `SILENCE_MICRO` when none.
    section_probs : 8 section probabilities (``SECTION_LABELS`` order).
    hazard_probs : 5 boundary hazards for the horizons ``HORIZONS_BEATS`` (1..16 beats).

    Numbers may be non-finite (see the module docstring for the fallbacks); a wrong type or
    length raises TypeError / ValueError naming the field.
    """

    t: float
    phase: float
    beat_in_bar: int
    beats_per_bar: int
    spb: float
    conf: float
    micro: tuple[float, ...] = SILENCE_MICRO
    section_probs: tuple[float, ...] = StructureState.neutral().section_probs
    hazard_probs: tuple[float, ...] = StructureState.neutral().hazard_probs

    def __post_init__(self) -> None:
        owner = type(self).__name__
        for name in ("t", "phase", "spb", "conf"):
            object.__setattr__(self, name, _number(owner, name, getattr(self, name)))
        for name in ("beat_in_bar", "beats_per_bar"):
            object.__setattr__(self, name, _integer(owner, name, getattr(self, name)))
        for name, n in (("micro", _N_MICRO), ("section_probs", _N_SECTIONS),
                        ("hazard_probs", _N_HAZARD)):
            object.__setattr__(self, name, _vector(owner, name, getattr(self, name), n))

    @classmethod
    def from_beat(cls, t: float, beat, structure: StructureState,
                  micro=None) -> ControlInputs:
        """From any beat object with ``phase, beat_in_bar, beats_per_bar, spb, conf``
        attributes (a ``BeatClockState``, the fast clock's beat), a structure state and the
        micro features (None: silence)."""
        return cls(t, beat.phase, beat.beat_in_bar, beat.beats_per_bar, beat.spb, beat.conf,
                   SILENCE_MICRO if micro is None else micro, structure.section_probs,
                   structure.hazard_probs)

    @classmethod
    def from_query(cls, t: float, query, slow) -> ControlInputs:
        """From a ``PhasePredictor.query(t)`` answer (phase, beat_in_bar) and the held
        ``SlowState`` (tempo, confidence and meter of its beat, its structure and features)."""
        b = slow.beat
        return cls(t, query.phase, query.beat_in_bar, b.beats_per_bar, b.spb, b.conf,
                   SILENCE_MICRO if slow.features is None else slow.features,
                   slow.structure.section_probs, slow.structure.hazard_probs)


def beat_pulse(phase: float, spb: float) -> float:
    """Beat pulse envelope in [0, 1] at beat ``phase`` in [0, 1) for ``spb`` seconds per beat.

    With ``attack = min(ATTACK_S, ATTACK_MAX_BEATS * spb)`` and
    ``decay = min(DECAY_S, DECAY_MAX_BEATS * spb)`` (seconds): ``(1 - after / decay)**3`` for
    ``after = phase * spb < decay`` (after the beat), ``(1 - before / attack)**2`` for
    ``before = (1 - phase) * spb < attack`` (before the next beat), else 0. It is 1 at phase 0.
    ValueError unless ``0 <= phase < 1`` and ``spb`` is finite and > 0.
    """
    if not 0.0 <= phase < 1.0 or not 0.0 < spb < math.inf:
        raise ValueError(f"beat_pulse needs 0 <= phase < 1 and a finite spb > 0, got "
                         f"phase={phase!r}, spb={spb!r}")
    attack = min(ATTACK_S, ATTACK_MAX_BEATS * spb)
    decay = min(DECAY_S, DECAY_MAX_BEATS * spb)
    after, before = phase * spb, (1.0 - phase) * spb
    if after < decay:
        return (1.0 - after / decay) ** 3
    if before < attack:
        return (1.0 - before / attack) ** 2
    return 0.0


def _smoothstep(x: float, lo: float, hi: float) -> float:
    u = min(max((x - lo) / (hi - lo), 0.0), 1.0)
    return u * u * (3.0 - 2.0 * u)


def _toward(x, target, max_step: float):
    """``x`` moved toward ``target`` (real or complex) by at most ``max_step``."""
    d = target - x
    dist = abs(d)
    return target if dist <= max_step else x + d * (max_step / dist)


def _critically_damped(x, v, target, omega: float, dt: float):
    """Exact step of ``x'' = -2 omega x' - omega**2 (x - target)`` over ``dt``: (x, v)."""
    e = x - target
    decay = np.exp(-omega * dt)
    k = (v + omega * e) * dt
    return target + (e + k) * decay, (v - omega * k) * decay


def _sanitise_micro(micro: tuple[float, ...]) -> np.ndarray:
    m = np.array(micro, np.float64)
    bad = ~np.isfinite(m)
    m[bad] = np.array(SILENCE_MICRO)[bad]
    m[:4] = np.clip(m[:4], *_DB_CLIP)
    m[4] = min(max(m[4], 0.0), _FLUX_MAX)
    m[5] = min(max(m[5], 0.0), _CENTROID_MAX)
    m[6] = min(max(m[6], 0.0), 1.0)
    return m


def _nearest_is_downbeat(phase: float, beat_in_bar: int, beats_per_bar: int) -> bool:
    """Whether the beat nearest to ``phase`` in [0, 1) is a downbeat: the one just passed is
    beat 1 of its bar (``phase < 0.5``), or the coming one is (``beat_in_bar >= beats_per_bar``)."""
    return beat_in_bar >= beats_per_bar if phase >= 0.5 else beat_in_bar == 1


def _sanitise_hazards(values: tuple[float, ...]) -> np.ndarray:
    h = np.array(values, np.float64)
    return np.clip(np.where(np.isfinite(h), h, 0.0), 0.0, 1.0)


def _sanitise_probs(values: tuple[float, ...]) -> np.ndarray:
    """Section probabilities made a distribution: NaN, inf and negative entries count as 0, the
    rest is normalised to sum 1 (scaled by its peak first, so huge finite values cannot overflow
    the sum); all zero gives the uniform distribution."""
    p = np.array(values, np.float64)
    p[~np.isfinite(p) | (p < 0)] = 0.0
    peak = p.max(initial=0.0)
    if peak <= 0:
        return np.full(p.size, 1.0 / p.size)
    p /= peak
    return p / p.cumsum()[-1]  # summed left to right, as the contract converter's kernel does


class _LevelNormaliser:
    """Channels rms, bass, mid, treble, flux (dB) -> [0, 1] (see the module docstring)."""

    def __init__(self) -> None:
        self.ref = np.array(_LEVEL_REF_INIT)

    def update(self, db: np.ndarray, dt: float) -> np.ndarray:
        gate = np.clip((db - GATE_DB[0]) / (GATE_DB[1] - GATE_DB[0]), 0.0, 1.0)
        gate[4] = gate[0]  # flux is gated by the loudness
        learn = gate > 0
        alpha = 1.0 - math.exp(-dt / LEVEL_REF_TAU_S)
        self.ref[learn] += alpha * (db[learn] - self.ref[learn])
        return gate / (1.0 + np.exp(-(db - self.ref) / LEVEL_SLOPE_DB))


class _Follower:
    """Critically damped followers of values in [0, 1], rate ``1 / LEVEL_ATTACK_S`` while the
    target is above the value and ``1 / LEVEL_RELEASE_S`` otherwise; clipped to [0, 1]."""

    def __init__(self, n: int) -> None:
        self.value, self.velocity = None, np.zeros(n)

    def update(self, target: np.ndarray, dt: float) -> np.ndarray:
        if self.value is None:
            self.value = target
        else:
            omega = 1.0 / np.where(target > self.value, LEVEL_ATTACK_S, LEVEL_RELEASE_S)
            value, self.velocity = _critically_damped(self.value, self.velocity, target, omega,
                                                      dt)
            self.value = np.clip(value, 0.0, 1.0)
        return self.value


class AnalyticController:
    """Beat, micro features and structure -> control vector (see the module docstring).

    ``step(inputs)`` once per rendered frame; ``reset()`` forgets everything (the next step
    starts at the targets). Deterministic: the same sequence of inputs gives the same outputs.
    """

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        """Forget all state."""
        self._t: float | None = None
        self._spb = _DEFAULT_SPB
        self._q = self._qv = None  # smoothed section probabilities and their velocity
        self._tension = 0.0
        self._levels = _LevelNormaliser()
        self._micro = _Follower(5)  # rms, bass, mid, treble, flux levels
        self._onset = 0.0  # onset envelope
        self._drift = 0.0  # rad
        self._hue_phase = 0.0  # turns
        self._tint = self._tint_v = 0.0  # followed centroid tint (turns) and its velocity
        self._rotation = 0.0  # rad, wrapped
        self._rot_speed = self._rot_speed_v = 0.0
        self._lam = 0j
        self._offset = 0j
        self._w = 0.0
        self._log_zoom = 0.0

    def step(self, inputs: ControlInputs) -> np.ndarray:
        """Advance to ``inputs.t`` and return the control vector, float32 (8,) in
        ``CONTROL_NAMES`` order, each value within ``CONTROL_RANGES``."""
        if not isinstance(inputs, ControlInputs):
            raise TypeError(f"step() takes a ControlInputs, got {type(inputs).__name__}")
        first = self._t is None
        dt = 0.0
        if math.isfinite(inputs.t):
            if not first:
                dt = min(max(inputs.t - self._t, 0.0), DT_MAX)
            self._t = inputs.t
        elif first:
            self._t = 0.0
        if math.isfinite(inputs.spb) and inputs.spb > 0:
            self._spb = min(max(inputs.spb, SPB_RANGE[0]), SPB_RANGE[1])
        spb = self._spb

        # section probabilities, critically damped (95 % in one beat)
        probs = _sanitise_probs(inputs.section_probs)
        if first:
            self._q, self._qv = probs, np.zeros_like(probs)
        else:
            self._q, self._qv = _critically_damped(self._q, self._qv, probs, _SETTLE_95 / spb,
                                                   dt)
        q = np.clip(self._q, 0.0, None)
        q /= q.sum()
        style = q @ _STYLE_TABLE

        # tension from the hazards
        hazard = _sanitise_hazards(inputs.hazard_probs)
        t_target = float(np.dot(HAZARD_WEIGHTS, hazard))
        if first:
            self._tension = t_target
        else:
            a = 1.0 - math.exp(-dt / (TENSION_TAU_BEATS * spb))
            self._tension += a * (t_target - self._tension)
        tension = self._tension

        # micro features
        m = _sanitise_micro(inputs.micro)
        db = np.append(m[:4], 10.0 * math.log10(max(m[4], 1e-12)))
        rms_n, bass_n, mid_n, treble_n, flux_n = self._micro.update(
            self._levels.update(np.clip(db, *_DB_CLIP), dt), dt)
        mid_c = 2.0 * mid_n - 1.0

        # beat pulse
        pulse, amp, onset_gate = 0.0, 0.0, 1.0
        if math.isfinite(inputs.phase) and math.isfinite(inputs.conf):
            phase = min(inputs.phase % 1.0, math.nextafter(1.0, 0.0))  # -1e-20 % 1.0 == 1.0
            conf = min(max(inputs.conf, 0.0), 1.0)
            down = _nearest_is_downbeat(phase, inputs.beat_in_bar, inputs.beats_per_bar)
            amp = conf * (DOWNBEAT_GAIN if down else BEAT_GAIN) * style[_S["pulse_gain"]]
            pulse = amp * beat_pulse(phase, spb)
            near = min(phase, 1.0 - phase) * spb  # seconds to the nearest beat
            onset_gate = 1.0 - conf * (1.0 - _smoothstep(near, ONSET_GUARD_S,
                                                         ONSET_GUARD_S + ONSET_GUARD_RAMP_S))
        self._onset = max(onset_gate * (2.0 * m[6] - 1.0),
                          self._onset * math.exp(-dt / ONSET_RELEASE_S), 0.0)

        # c: connected lam, disconnected offset, blend weight
        self._drift = (self._drift + DRIFT_RAD_PER_S * dt) % (2.0 * math.pi)
        radius = min(style[_S["lam_radius"]] + MICRO_LAMBDA_R * bass_n + PULSE_LAMBDA * pulse,
                     LAMBDA_MAX)
        angle = self._drift + style[_S["lam_angle"]] + MICRO_LAMBDA_ANGLE * mid_c
        lam_target = radius * complex(math.cos(angle), math.sin(angle))
        offset_target = (OUT_DRIFT_RADIUS * complex(math.cos(2 * self._drift),
                                                    math.sin(2 * self._drift))
                         + MICRO_OFFSET * complex(bass_n, mid_c) + PULSE_OFFSET * pulse)
        if abs(offset_target) > R_OUT:
            offset_target *= R_OUT / abs(offset_target)
        w_target = _smoothstep(q[_CHORUS], *CHORUS_BLEND)
        log_zoom_target = (style[_S["zoom"]] + MICRO_LOG_ZOOM * bass_n
                           + TENSION_LOG_ZOOM * tension + PULSE_LOG_ZOOM * pulse)
        base_speed = style[_S["rotation_speed"]]
        speed_target = ((base_speed + math.copysign(MICRO_ROTATION * flux_n, base_speed))
                        * (1.0 + TENSION_ROTATION * tension))
        speed_target = min(max(speed_target, -ROTATION_SPEED_MAX), ROTATION_SPEED_MAX)
        if first:
            self._lam, self._offset, self._w = lam_target, offset_target, w_target
            self._log_zoom, self._rot_speed = log_zoom_target, speed_target
        else:
            self._lam = _toward(self._lam, lam_target, LAMBDA_RATE * dt)
            self._offset = _toward(self._offset, offset_target, OFFSET_RATE * dt)
            self._w = _toward(self._w, w_target, W_RATE * dt)
            self._log_zoom = _toward(self._log_zoom, log_zoom_target, LOG_ZOOM_RATE * dt)
            self._rot_speed, self._rot_speed_v = _critically_damped(
                self._rot_speed, self._rot_speed_v, speed_target, _ROTATION_OMEGA, dt)
            self._rot_speed = min(max(self._rot_speed, -ROTATION_SPEED_MAX), ROTATION_SPEED_MAX)
        self._rotation = (self._rotation + self._rot_speed * dt + math.pi) % (2 * math.pi) \
            - math.pi
        lam = self._lam
        c = (1.0 - self._w) * (lam / 2 - lam * lam / 4) + self._w * (C_OUT + self._offset)

        # palette
        tint_target = (MICRO_HUE * math.tanh(math.log2(max(m[5], 1.0) / 2000.0))
                       * min(max((db[0] - GATE_DB[0]) / (GATE_DB[1] - GATE_DB[0]), 0.0), 1.0))
        if first:
            self._tint = tint_target
        else:
            self._tint, self._tint_v = _critically_damped(self._tint, self._tint_v, tint_target,
                                                          1.0 / HUE_TINT_S, dt)
        self._hue_phase = (self._hue_phase + HUE_TURNS_PER_S * dt) % 1.0
        hue = (self._hue_phase + style[_S["hue"]] + self._tint) % 1.0
        saturation = (style[_S["saturation"]] + TENSION_SATURATION * tension
                      + MICRO_SATURATION * treble_n)
        brightness = (style[_S["brightness"]] * (0.5 + 0.5 * rms_n)
                      + MICRO_ONSET_BRIGHTNESS * self._onset + PULSE_BRIGHTNESS * pulse)
        detail = style[_S["detail"]] + TENSION_DETAIL * tension + MICRO_DETAIL * treble_n
        zoom = math.exp(self._log_zoom)
        out = np.array([c.real, c.imag, zoom, self._rotation, hue, saturation, brightness,
                        detail], np.float64)
        return _clip_controls(out).astype(np.float32)


_LO = np.array([CONTROL_RANGES[n][0] for n in CONTROL_NAMES])
_HI = np.array([CONTROL_RANGES[n][1] for n in CONTROL_NAMES])
#: Values :func:`to_params` uses for non-finite controls: c = 0, zoom 1, no rotation, hue 0,
#: full saturation, brightness 1, detail 0.5.
_NEUTRAL = np.array([0.0, 0.0, 1.0, 0.0, 0.0, 1.0, 1.0, 0.5])


def _clip_controls(control: np.ndarray) -> np.ndarray:
    return np.clip(np.where(np.isfinite(control), control, _NEUTRAL), _LO, _HI)


def to_params(control, iter_range: tuple[int, int] = DETAIL_ITER_RANGE) -> JuliaParams:
    """The :class:`JuliaParams` of a control vector (8,) in ``CONTROL_NAMES`` order.

    Never fails for an (8,) vector of numbers: values are clipped into ``CONTROL_RANGES`` and
    non-finite ones replaced by neutral values (c = 0, zoom 1, rotation 0, hue 0, saturation 1,
    brightness 1, detail 0.5), so the output of a trained controller is safe too. Mapping:
    ``c_re, c_im = dc_re, dc_im``; ``zoom, rotation, hue, saturation, brightness`` as they are;
    centre 0; ``max_iter = round(lo * (hi / lo) ** detail)`` for ``iter_range = (lo, hi)``
    (ints with ``MAX_ITER_RANGE[0] <= lo <= hi <= MAX_ITER_RANGE[1]``, else ValueError).
    A wrong shape is a ValueError.
    """
    arr = np.asarray(control, dtype=np.float64)
    if arr.shape != (len(CONTROL_NAMES),):
        raise ValueError(f"control must have shape ({len(CONTROL_NAMES)},), got {arr.shape}")
    lo, hi = (_integer("to_params", "iter_range", v) for v in iter_range)
    if not MAX_ITER_RANGE[0] <= lo <= hi <= MAX_ITER_RANGE[1]:
        raise ValueError(f"iter_range must satisfy {MAX_ITER_RANGE[0]} <= lo <= hi <= "
                         f"{MAX_ITER_RANGE[1]}, got {(lo, hi)}")
    dc_re, dc_im, zoom, rotation, hue, saturation, brightness, detail = (
        float(v) for v in _clip_controls(arr))
    max_iter = min(max(round(lo * (hi / lo) ** detail), lo), hi)
    return JuliaParams(c_re=dc_re, c_im=dc_im, zoom=zoom, rotation=rotation, hue=hue,
                       saturation=saturation, brightness=brightness, max_iter=int(max_iter))


def critical_orbit_escapes(c, max_iter: int = 1000) -> np.ndarray:
    """Critical-orbit test, vectorised: True where the orbit of 0 under ``z -> z**2 + c``
    leaves ``|z| <= 2`` within ``max_iter`` iterations, i.e. c is outside the Mandelbrot set
    and its Julia set is disconnected (dust). False means "not seen to escape": c in the set
    (connected Julia set) or closer to it than ``max_iter`` can resolve.

    ``c``: complex array-like of any shape (must be finite, else ValueError); returns a bool
    array of the same shape.
    """
    c = np.asarray(c, dtype=np.complex128)
    if not np.all(np.isfinite(c)):
        raise ValueError("critical_orbit_escapes: c must be finite")
    max_iter = _integer("critical_orbit_escapes", "max_iter", max_iter)
    if max_iter < 1:
        raise ValueError(f"max_iter must be >= 1, got {max_iter}")
    flat = c.ravel()
    z = np.zeros_like(flat)
    escaped = np.zeros(flat.shape, bool)
    live = np.arange(flat.size)
    for _ in range(max_iter):
        if live.size == 0:
            break
        z[live] = z[live] * z[live] + flat[live]
        out = z[live].real ** 2 + z[live].imag ** 2 > 4.0
        escaped[live[out]] = True
        live = live[~out]
    return escaped.reshape(c.shape)


def julia_connected(c_re: float, c_im: float, max_iter: int = 1000) -> bool:
    """True when the Julia set of ``c = c_re + i c_im`` is connected, by the critical-orbit
    test (:func:`critical_orbit_escapes`: the orbit of 0 stays in ``|z| <= 2`` for ``max_iter``
    iterations). Non-finite c is a ValueError."""
    return not bool(critical_orbit_escapes(complex(c_re, c_im), max_iter))
