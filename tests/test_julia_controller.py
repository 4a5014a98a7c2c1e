"""The analytic Julia controller: pulses on beats, c inside/outside the Mandelbrot set by section,
tension before a boundary, bounded and smooth outputs on random (and broken) input sequences,
and an end-to-end sync check of its controls against an ideal beat clock."""

from __future__ import annotations

import cmath
import dataclasses
import json
import math
from pathlib import Path

import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

ROOT = Path(__file__).resolve().parents[1]

from examples.julia import controller as ctl  # noqa: E402
from examples.julia.controller import (  # noqa: E402
    CONTROL_NAMES,
    CONTROL_RANGES,
    SECTION_STYLES,
    SILENCE_MICRO,
    AnalyticController,
    ControlInputs,
    beat_pulse,
    critical_orbit_escapes,
    julia_connected,
    to_params,
)
from examples.julia.params import MAX_ITER_RANGE, VIEW_HALF_HEIGHT, JuliaParams  # noqa: E402
from examples.julia.sync_measure import detect_pulses, frame_change, pulse_sync  # noqa: E402
from fractalsync_tracking.beat_state import BeatClockState  # noqa: E402
from fractalsync_tracking.phase_predictor import PhasePredictor, PhaseQuery  # noqa: E402
from fractalsync_tracking.slow_state import SECTION_LABELS, SlowState, StructureState  # noqa: E402

FPS = 60.0
CONTRACT = json.loads((ROOT / "contracts" / "v1.json").read_text())
LO32 = np.array([CONTROL_RANGES[n][0] for n in CONTROL_NAMES], np.float32)
HI32 = np.array([CONTROL_RANGES[n][1] for n in CONTROL_NAMES], np.float32)
NEUTRAL = StructureState.neutral()
# |c_connected - c_disconnected| <= max of |lam/2 - lam**2/4| over |lam| <= LAMBDA_MAX
#                                   + |C_OUT| + R_OUT
C_SPAN = ctl.LAMBDA_MAX / 2 + ctl.LAMBDA_MAX**2 / 4 + abs(ctl.C_OUT) + ctl.R_OUT
MAX_DC = (ctl.LAMBDA_RATE * (1 + ctl.LAMBDA_MAX) / 2 + ctl.W_RATE * C_SPAN) / FPS
MAX_DLOGZOOM = ctl.LOG_ZOOM_RATE / FPS
MAX_DROT = ctl.ROTATION_SPEED_MAX / FPS
MUSIC = (-18.0, -22.0, -26.0, -42.0, 0.04, 1800.0, 0.5)  # steady micro features of loud music


def probs(label: str, p: float = 1.0) -> tuple[float, ...]:
    """Section probabilities with ``p`` on ``label`` and the rest spread evenly."""
    rest = (1.0 - p) / (len(SECTION_LABELS) - 1)
    return tuple(p if lab == label else rest for lab in SECTION_LABELS)


def beat_at(t: float, spb: float, bpb: int = 4) -> tuple[float, int]:
    """(phase, beat_in_bar) of an exact beat clock with beat 0 at t = 0."""
    pos = t / spb
    n = math.floor(pos + 1e-9)
    return max(pos - n, 0.0), n % bpb + 1


def run(controller, frames) -> np.ndarray:
    return np.array([controller.step(f) for f in frames])


def steady_frames(seconds, spb=0.5, conf=1.0, micro=SILENCE_MICRO, sections=None,
                  hazard=(0.0,) * 5, t0=0.0):
    sections = NEUTRAL.section_probs if sections is None else sections
    out = []
    for k in range(int(round(seconds * FPS))):
        t = t0 + k / FPS
        phase, bib = beat_at(t, spb)
        out.append(ControlInputs(t, phase, bib, 4, spb, conf, micro, sections, hazard))
    return out


def c_of(controls: np.ndarray) -> np.ndarray:
    return controls[:, 0].astype(np.float64) + 1j * controls[:, 1].astype(np.float64)


def wrapped(d: np.ndarray, period: float) -> np.ndarray:
    return (d + period / 2) % period - period / 2


# ---------------------------------------------------------------------------------------------
# contract, pulse shape, to_params


def test_names_follow_the_contract():
    assert list(CONTROL_NAMES) == CONTRACT["models"]["controller"]["control_names"]
    assert list(SECTION_STYLES) == CONTRACT["sections"]["labels"]
    assert len(SILENCE_MICRO) == CONTRACT["micro_features"]["dim"]
    assert len(ctl.HAZARD_WEIGHTS) == len(CONTRACT["hazard"]["horizons_beats"])
    assert math.isclose(sum(ctl.HAZARD_WEIGHTS), 1.0)
    assert all(0 <= s.lam_radius < ctl.LAMBDA_MAX for s in SECTION_STYLES.values())


def test_beat_pulse_by_hand():
    # spb 0.5: attack = min(0.03, 0.1) = 0.03 s, decay = min(0.25, 0.25) = 0.25 s
    assert beat_pulse(0.0, 0.5) == 1.0
    assert math.isclose(beat_pulse(0.1, 0.5), (1 - 0.05 / 0.25) ** 3)  # 0.512
    assert math.isclose(beat_pulse(0.99, 0.5), (1 - 0.005 / 0.03) ** 2)  # 0.6944
    assert beat_pulse(0.5, 0.5) == 0.0 and beat_pulse(0.94, 0.5) == 0.0
    # spb 0.1 (600 BPM): attack = 0.02 s, decay = 0.05 s (both capped to fractions of a beat)
    assert math.isclose(beat_pulse(0.25, 0.1), (1 - 0.025 / 0.05) ** 3)  # 0.125
    assert math.isclose(beat_pulse(0.9, 0.1), (1 - 0.01 / 0.02) ** 2)  # 0.25
    assert beat_pulse(0.5, 0.1) == 0.0
    for phase, spb in ((1.0, 0.5), (-0.1, 0.5), (math.nan, 0.5), (0.5, 0.0), (0.5, math.inf),
                       (0.5, math.nan)):
        with pytest.raises(ValueError, match="beat_pulse needs"):
            beat_pulse(phase, spb)


@settings(max_examples=200, deadline=None)
@given(phase=st.floats(0, 1, exclude_max=True), spb=st.floats(0.01, 10))
def test_beat_pulse_is_bounded_and_over_within_the_beat(phase, spb):
    p = beat_pulse(phase, spb)
    assert 0.0 <= p <= 1.0
    if 0.5 <= phase <= 0.8:  # decay <= half a beat, attack <= a fifth of a beat
        assert p == 0.0


def test_to_params_mapping_by_hand():
    p = to_params(np.array([0.1, -0.2, 2.0, 0.5, 0.25, 0.6, 1.2, 0.5], np.float32))
    assert isinstance(p, JuliaParams)
    assert math.isclose(p.c_re, 0.1, rel_tol=1e-6) and math.isclose(p.c_im, -0.2, rel_tol=1e-6)
    assert (p.zoom, p.rotation, p.hue) == (2.0, 0.5, 0.25)
    assert math.isclose(p.saturation, 0.6, rel_tol=1e-6)
    assert math.isclose(p.brightness, 1.2, rel_tol=1e-6)
    assert (p.center_re, p.center_im) == (0.0, 0.0)
    assert p.max_iter == 128  # round(32 * 16 ** 0.5)
    assert to_params([0, 0, 1, 0, 0, 1, 1, 0]).max_iter == 32
    assert to_params([0, 0, 1, 0, 0, 1, 1, 1]).max_iter == 512
    assert to_params([0, 0, 1, 0, 0, 1, 1, 1], iter_range=(8, 2048)).max_iter == 2048
    # clipped into the ranges; non-finite -> neutral
    q = to_params([5, -5, 10, 9, 3, -1, 7, 2])
    assert (q.c_re, q.c_im, q.zoom, q.rotation, q.hue, q.saturation, q.brightness, q.max_iter) \
        == (2.0, -2.0, 3.0, math.pi, 1.0, 0.0, 2.0, 512)
    n = to_params([math.nan, math.inf, -math.inf, math.nan, math.nan, math.nan, math.nan,
                   math.nan])
    assert (n.c_re, n.c_im, n.zoom, n.rotation, n.hue, n.saturation, n.brightness, n.max_iter) \
        == (0.0, 0.0, 1.0, 0.0, 0.0, 1.0, 1.0, 128)


def test_to_params_rejects_bad_shapes_and_ranges():
    with pytest.raises(ValueError, match="shape"):
        to_params(np.zeros(7))
    with pytest.raises(ValueError, match="shape"):
        to_params(np.zeros((1, 8)))
    with pytest.raises(ValueError, match="iter_range"):
        to_params(np.zeros(8), iter_range=(4, 100))
    with pytest.raises(ValueError, match="iter_range"):
        to_params(np.zeros(8), iter_range=(600, 500))
    with pytest.raises(TypeError, match="iter_range"):
        to_params(np.zeros(8), iter_range=(32.5, 500))


@settings(max_examples=100, deadline=None)
@given(st.lists(st.floats(allow_nan=True, allow_infinity=True), min_size=8, max_size=8),
       st.integers(MAX_ITER_RANGE[0], MAX_ITER_RANGE[1]),
       st.integers(MAX_ITER_RANGE[0], MAX_ITER_RANGE[1]))
def test_to_params_never_raises_on_any_vector(values, a, b):
    p = to_params(np.array(values), iter_range=(min(a, b), max(a, b)))
    assert min(a, b) <= p.max_iter <= max(a, b)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.floats(allow_nan=True, allow_infinity=True), min_size=8, max_size=8))
@example([1e308] * 8)
@example([0.0] * 8)
@example([math.nan, -1.0, math.inf, 0.0, 0.0, 0.0, 0.0, 0.0])
def test_section_probs_are_always_a_distribution(values):
    """Any 8 floats become a distribution: bad entries count 0, huge finite ones do not overflow
    the normalising sum (the peak-scaled sum of 8 values is at most 8), all-zero is uniform."""
    p = ctl._sanitise_probs(tuple(values))
    v = np.array(values)
    good = np.isfinite(v) & (v > 0)
    assert np.all(p >= 0) and abs(p.sum() - 1.0) < 1e-12
    if not good.any():
        np.testing.assert_array_equal(p, np.full(8, 1 / 8))
    else:
        assert np.all(p[~good] == 0)
        ref = v[good] / v[good].max()
        np.testing.assert_allclose(p[good], ref / ref.sum(), rtol=1e-12)


# ---------------------------------------------------------------------------------------------
# critical-orbit test


def naive_escapes(c: complex, max_iter: int) -> bool:
    z = 0j
    for _ in range(max_iter):
        z = z * z + c
        if abs(z) > 2.0:
            return True
    return False


def test_julia_connected_known_points():
    # in M: 0, the basilica -1, the tip -2 (0 -> -2 -> 2 -> 2 ...), i (0 -> i -> -1+i -> -i ...),
    # the cusp 1/4, the Douady rabbit
    for c in (0j, -1 + 0j, -2 + 0j, 1j, -0.75 + 0j, 0.25 + 0j, -0.123 + 0.745j):
        assert julia_connected(c.real, c.imag)
    # outside: right of the cusp 1/4, beyond -2, far away
    for c in (0.26, 0.5, -2.01, 0.42, 1 + 1j, 3j):
        assert not julia_connected(c.real, c.imag)
    assert list(critical_orbit_escapes([0.0, 0.5, -1.0])) == [False, True, False]
    assert critical_orbit_escapes(np.zeros((2, 3))).shape == (2, 3)
    assert critical_orbit_escapes(np.zeros(0)).shape == (0,)
    with pytest.raises(ValueError, match="finite"):
        julia_connected(math.nan, 0.0)
    with pytest.raises(ValueError, match="max_iter"):
        critical_orbit_escapes(0.0, 0)


@settings(max_examples=50, deadline=None)
@given(st.lists(st.tuples(st.floats(-2.5, 1.0), st.floats(-1.5, 1.5)), min_size=0, max_size=20),
       st.integers(1, 200))
def test_critical_orbit_escapes_matches_a_plain_loop(points, max_iter):
    c = np.array([complex(a, b) for a, b in points], np.complex128)
    got = critical_orbit_escapes(c, max_iter)
    assert list(got) == [naive_escapes(complex(v), max_iter) for v in c]


# ---------------------------------------------------------------------------------------------
# where c can be


def koebe_lower_bound(c: np.ndarray, max_iter: int = 5000, radius: float = 1e8) -> np.ndarray:
    """Lower bound of dist(c, M) for c outside M: ``sinh G / (2 e^G |G'|)`` (Koebe 1/4), with
    G(c) = lim ln|P^m(c)| / 2^m the Green function of M; 0 where c does not escape."""
    c = np.asarray(c, np.complex128).ravel()
    z, dz = np.zeros_like(c), np.zeros_like(c)
    out = np.zeros(c.size)
    live = np.ones(c.size, bool)
    for n in range(1, max_iter + 1):
        dz[live] = 2 * z[live] * dz[live] + 1  # d z_n / dc, z_n = P^(n-1)(c)
        z[live] = z[live] ** 2 + c[live]
        esc = live & (np.abs(z) > radius)
        if esc.any():
            az = np.abs(z[esc])
            g = np.log(az) / 2.0 ** (n - 1)
            g_prime = np.abs(dz[esc]) / (az * 2.0 ** (n - 1))
            out[esc] = np.sinh(g) / (2 * np.exp(g) * g_prime)
            live &= ~esc
        if not live.any():
            break
    return out


def test_the_disconnected_disc_is_outside_the_mandelbrot_set_with_a_margin():
    # grid of spacing h over the disc (plus one cell): every grid point's certified distance to
    # M exceeds the half-diagonal of its cell, so the cells, which cover the disc, miss M.
    h = 0.0025
    span = np.arange(-ctl.R_OUT - h, ctl.R_OUT + h + h / 2, h)
    grid = ctl.C_OUT + span[None, :] + 1j * span[:, None]
    grid = grid[np.abs(grid - ctl.C_OUT) <= ctl.R_OUT + h]
    bound = koebe_lower_bound(grid)
    assert bound.min() > h / math.sqrt(2)
    assert bound.min() > 0.01  # the disc stays at least 0.01 away from M
    assert critical_orbit_escapes(grid, 1000).all()


def test_the_connected_parametrisation_stays_in_the_set():
    # lam on a polar grid up to LAMBDA_MAX: the critical orbit of c = lam/2 - lam**2/4 stays
    # bounded (the multiplier of the attracting fixed point is lam)
    r = np.concatenate((np.linspace(0.0, ctl.LAMBDA_MAX, 25), [ctl.LAMBDA_MAX] * 3))
    lam = r[:, None] * np.exp(1j * np.linspace(-np.pi, np.pi, 721))[None, :]
    assert not critical_orbit_escapes(lam / 2 - lam**2 / 4, 3000).any()


@st.composite
def music_micro(draw, n):
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    m = np.tile(np.array(MUSIC), (n, 1))
    m[:, :4] += rng.uniform(-30, 15, (n, 4))
    m[:, 4] = rng.uniform(0, 0.3, n)
    m[:, 5] = rng.uniform(0, 11025, n)
    m[:, 6] = rng.uniform(0, 1, n)
    floor = rng.random(n) < draw(st.floats(0, 0.5))
    m[floor, :4] = -120.0
    return [tuple(row) for row in m]


@settings(max_examples=10, deadline=None)
@given(data=st.data(), spb=st.floats(0.25, 1.5), conf=st.floats(0, 1),
       p=st.floats(0.9, 1.0), start=st.sampled_from(["chorus", "verse", "bridge", "silence"]))
def test_chorus_c_is_outside_and_verse_c_inside_on_every_frame(data, spb, conf, p, start):
    """Every frame in a chorus (p_chorus >= 0.9), pulses included, has a disconnected Julia set
    once the glide from the previous section is over (2 beats); every verse frame a connected
    one."""
    n_settle, n = int(2 * spb * FPS) + 2, int(4 * spb * FPS)
    micro = data.draw(music_micro(n_settle + 2 * n))
    c = AnalyticController()
    t, frames = 0.0, []
    for k, sections in enumerate([probs(start, p)] * n_settle + [probs("chorus", p)] * n
                                 + [probs("verse", p)] * n):
        t = k / FPS
        phase, bib = beat_at(t, spb)
        frames.append(ControlInputs(t, phase, bib, 4, spb, conf, micro[k], sections))
    out = run(c, frames)
    cv = c_of(out)
    chorus = cv[2 * n_settle: n_settle + n]
    assert critical_orbit_escapes(chorus, 1000).all()
    assert np.all(np.abs(chorus - ctl.C_OUT) <= ctl.R_OUT + 1e-6)
    verse = cv[2 * n_settle + n:]
    assert not critical_orbit_escapes(verse, 3000).any()


def test_the_neutral_state_is_connected():
    out = run(AnalyticController(), steady_frames(4.0, 0.5, 1.0, MUSIC))
    check_outputs(out)
    assert not critical_orbit_escapes(c_of(out), 3000).any()


def test_a_section_change_glides_over_about_a_beat():
    spb = 0.5
    frames = steady_frames(2.0, spb, 1.0, MUSIC, probs("verse")) + steady_frames(
        2.0, spb, 1.0, MUSIC, probs("chorus"), t0=2.0)
    cv = c_of(run(AnalyticController(), frames))
    esc = critical_orbit_escapes(cv, 1000)
    assert not esc[:120].any()
    first_out = 120 + int(np.argmax(esc[120:]))
    assert esc[first_out:].all()
    # not a cut: c needs several frames to cross over, and is disconnected within ~1 beat
    assert 3 <= first_out - 120 <= 1.2 * spb * FPS
    assert np.abs(np.diff(cv)).max() <= MAX_DC + 1e-6


# ---------------------------------------------------------------------------------------------
# the beat pulse


@pytest.mark.parametrize("spb", [0.5, 60 / 123])
def test_pulses_peak_on_beats_larger_on_downbeats_and_scale_with_conf(spb):
    """Same inputs with conf 1, 0.5 and 0: the brightness differences are exactly the pulse
    ``PULSE_BRIGHTNESS * gain * mean(pulse gains) * beat_pulse(phase)`` (neutral sections:
    uniform weights; mean pulse gain (0.4+0.7+1+1+1+0.9+1+0.7)/8 = 0.8375; gain 1 on downbeats,
    0.8 on other beats); conf 0 leaves the picture without any pulse."""
    runs = {conf: run(AnalyticController(), steady_frames(4.0, spb, conf))
            for conf in (1.0, 0.5, 0.0)}
    base = runs[0.0]
    assert np.ptp(base[:, 6]) == 0.0  # silence, neutral, no beat: a constant brightness
    gain_mean = 0.8375
    assert math.isclose(np.mean([s.pulse_gain for s in SECTION_STYLES.values()]), gain_mean)
    flash = runs[1.0][:, 6] - base[:, 6]
    np.testing.assert_allclose(runs[0.5][:, 6] - base[:, 6], flash / 2, atol=2e-6)
    expected = []
    for k in range(len(base)):
        phase, bib = beat_at(k / FPS, spb)
        down = bib == 4 if phase >= 0.5 else bib == 1
        expected.append(0.4 * (1.0 if down else 0.8) * gain_mean * beat_pulse(phase, spb))
    np.testing.assert_allclose(flash, expected, atol=2e-6)
    # the biggest flash of each beat is on the frame nearest the beat; downbeats are larger
    for n in range(1, int(4.0 / spb) - 1):
        lo, hi = int((n - 0.5) * spb * FPS), int((n + 0.5) * spb * FPS)
        peak = lo + int(np.argmax(flash[lo:hi]))
        assert abs(peak - n * spb * FPS) <= 1.0
        assert flash[peak] >= (0.75 * 0.4 * gain_mean if n % 4 == 0 else 0.0)
        assert flash[peak] <= (0.4 * gain_mean if n % 4 == 0 else 0.4 * 0.8 * gain_mean) + 1e-6
    # the zoom kick: ln zoom rises by PULSE_LOG_ZOOM * amplitude on a downbeat frame (spb 0.5:
    # beats land on frames; the attack's steps stay below the log-zoom rate limit)
    if spb == 0.5:
        kick = np.log(runs[1.0][:, 2].astype(np.float64)) - np.log(base[:, 2].astype(np.float64))
        assert math.isclose(kick[120], 0.15 * gain_mean, rel_tol=1e-5)  # beat 4, a downbeat
        assert math.isclose(kick[150], 0.15 * 0.8 * gain_mean, rel_tol=1e-5)
        assert np.abs(c_of(runs[1.0])[120] - c_of(base)[120]) > 0.005  # c is kicked too


# ---------------------------------------------------------------------------------------------
# micro-reactivity


def test_silence_reads_as_zero_levels_by_hand():
    """Verse, -120 dB floors, no beat, no hazard: every level reads 0, so brightness is the
    verse's 1.0 * (0.5 + 0.5 * 0) = 0.5, zoom exp(ln 1.05) = 1.05, detail 0.5, saturation
    0.75."""
    out = run(AnalyticController(), steady_frames(2.0, conf=0.0, sections=probs("verse")))
    np.testing.assert_allclose(out[:, [2, 5, 6, 7]], [[1.05, 0.75, 0.5, 0.5]] * len(out),
                               rtol=1e-6)


def test_levels_and_onsets_move_the_picture_fast():
    """Steady music, then the bass 12 dB louder: ln zoom rises (bass breathes the zoom) and
    gets 90 % of the way within 12 frames (200 ms: a critically damped follower with the
    LEVEL_ATTACK_S = 0.05 s time constant reaches 90 % after 3.89 time constants); one strong
    onset frame brightens the next frames."""
    spb = 0.5
    loud = list(MUSIC)
    loud[1] += 12.0
    frames = steady_frames(3.0, spb, 0.0, MUSIC, probs("verse")) + steady_frames(
        1.0, spb, 0.0, tuple(loud), probs("verse"), t0=3.0)
    lz = np.log(run(AnalyticController(), frames)[:, 2].astype(np.float64))
    step = lz[-1] - lz[179]
    assert step > 0.015  # MICRO_LOG_ZOOM * (rise of the bass level, ~0.35)
    assert lz[180 + 12] - lz[179] >= 0.9 * step
    kick = list(MUSIC)
    kick[6] = 0.95
    frames = steady_frames(3.0, spb, 0.0, MUSIC, probs("verse"))
    frames[120] = ControlInputs(frames[120].t, frames[120].phase, frames[120].beat_in_bar, 4,
                                spb, 0.0, tuple(kick), probs("verse"))
    b = run(AnalyticController(), frames)[:, 6]
    assert b[121] - b[119] > 0.05 and b[130] - b[119] < b[121] - b[119]


@pytest.mark.parametrize("conf, offset_s, flashes", [
    (1.0, 0.05, False),   # an onset 50 ms after a tracked beat: left to the beat pulse
    (1.0, -0.05, False),  # 50 ms before it
    (1.0, 0.25, True),    # half a beat away (0.25 s >= ONSET_GUARD_S + ONSET_GUARD_RAMP_S)
    (0.0, 0.05, True),    # no beat (conf 0): every onset flashes
])
def test_onsets_near_a_beat_are_left_to_the_beat_pulse(conf, offset_s, flashes):
    """The same strong onset frame, at a given distance from a beat: it brightens the picture
    (against the same frames without it) unless it is within ONSET_GUARD_S of a tracked beat."""
    spb = 0.5
    kick = list(MUSIC)
    kick[6] = 0.95
    k = int(round((2.0 + offset_s) * FPS))  # beats at every 0.5 s; 2.0 s is one
    base = steady_frames(3.0, spb, conf, MUSIC, probs("verse"))
    with_onset = list(base)
    f = base[k]
    with_onset[k] = ControlInputs(f.t, f.phase, f.beat_in_bar, 4, spb, conf, tuple(kick),
                                  probs("verse"))
    d = run(AnalyticController(), with_onset)[:, 6] - run(AnalyticController(), base)[:, 6]
    assert np.all(d[:k] == 0)
    assert (d[k:k + 3].max() > 0.05) == flashes, d[k:k + 3]


# ---------------------------------------------------------------------------------------------
# tension before a boundary


def test_hazard_builds_tension_in_detail_rotation_and_saturation():
    """Verse, silence, no beat: detail is the verse's 0.5 plus TENSION_DETAIL * T, the rotation
    speed the verse's 0.08 rad/s times (1 + 2 T), saturation 0.75 + 0.25 T (T = 1 when every
    hazard is 1)."""
    calm = run(AnalyticController(), steady_frames(5.0, conf=0.0, sections=probs("verse")))
    tense = run(AnalyticController(), steady_frames(5.0, conf=0.0, sections=probs("verse"),
                                                    hazard=(1.0,) * 5))
    assert np.allclose(calm[-60:, 7], 0.5) and np.allclose(tense[-60:, 7], 0.85)
    assert np.allclose(calm[-60:, 5], 0.75) and np.allclose(tense[-60:, 5], 1.0)
    speed = lambda out: wrapped(np.diff(out[-60:, 3].astype(np.float64)), 2 * np.pi) * FPS  # noqa: E731
    np.testing.assert_allclose(speed(calm), 0.08, atol=1e-4)
    np.testing.assert_allclose(speed(tense), 0.24, atol=1e-4)
    # a rising hazard (far horizons first, as a boundary approaches) raises them monotonically
    frames = []
    for k, f in enumerate(steady_frames(8.0, conf=0.0, sections=probs("verse"))):
        near = k / (8.0 * FPS)  # 0 -> 1 over 8 s
        hz = tuple(min(1.0, max(0.0, 2 * near - (4 - i) * 0.2)) for i in range(5))
        frames.append(ControlInputs(f.t, f.phase, f.beat_in_bar, 4, f.spb, 0.0, f.micro,
                                    f.section_probs, hz))
    ramp = run(AnalyticController(), frames)
    assert np.all(np.diff(ramp[:, 7]) >= -1e-7) and ramp[-1, 7] > ramp[0, 7] + 0.3
    sp = wrapped(np.diff(ramp[:, 3].astype(np.float64)), 2 * np.pi) * FPS
    assert sp[-30:].mean() > 2.5 * sp[:30].mean()


# ---------------------------------------------------------------------------------------------
# random sequences: ranges, validity, smoothness, fallbacks

BAD = st.sampled_from([math.nan, math.inf, -math.inf, 1e300, -1e300])


def number(lo, hi):
    return st.one_of(st.floats(lo, hi), BAD)


MICRO_VALUE = [number(-200, 20)] * 4 + [number(0, 10), number(0, 30000), number(-0.5, 1.5)]
MICRO = st.one_of(st.just(SILENCE_MICRO), st.just(MUSIC), st.tuples(*MICRO_VALUE))
SECTIONS = st.one_of(
    st.just(NEUTRAL.section_probs),
    st.sampled_from(SECTION_LABELS).map(probs),
    st.lists(st.one_of(st.floats(0, 1), BAD, st.floats(-1, 0)), min_size=8, max_size=8),
)
HAZARD = st.one_of(st.just((0.0,) * 5), st.just((1.0,) * 5),
                   st.lists(number(-0.5, 1.5), min_size=5, max_size=5))


@st.composite
def input_sequences(draw, fixed_rate=True):
    """Per-frame inputs: held values that change at random frames (as slow states do), random
    tempo, phase jumps, confidence, micro features (floors, NaN/inf, huge), sections, hazards."""
    n = draw(st.integers(1, 90))
    t0 = draw(st.floats(-1e4, 1e4))
    seq, cur = [], None
    base = t0  # the latest ordinary time
    for k in range(n):
        if cur is None or draw(st.integers(0, 5)) == 0:
            bpb = draw(st.integers(1, 7))
            cur = dict(spb=draw(number(0.2, 2.5)), conf=draw(number(0, 1)),
                       micro=draw(MICRO), sections=draw(SECTIONS), hazard=draw(HAZARD), bpb=bpb,
                       phase=draw(st.one_of(st.floats(0, 1, exclude_max=True), BAD)),
                       bib=draw(st.integers(1, bpb)))
        if fixed_rate:
            t = t0 + k / FPS
        else:
            t = draw(st.one_of(st.just(base + 1 / FPS), st.floats(base - 1, base + 2), BAD))
            base = t if math.isfinite(t) and abs(t) < 1e6 else base
        if math.isfinite(cur["phase"]) and math.isfinite(cur["spb"]) and cur["spb"] > 0:
            cur["phase"] = (cur["phase"] + 1 / (FPS * cur["spb"])) % 1.0
        seq.append(ControlInputs(t, cur["phase"], cur["bib"], cur["bpb"], cur["spb"],
                                 cur["conf"], cur["micro"], cur["sections"], cur["hazard"]))
    return seq


def check_outputs(out: np.ndarray) -> None:
    assert out.dtype == np.float32 and out.shape[1:] == (8,)
    assert np.all(np.isfinite(out))
    assert np.all(out >= LO32) and np.all(out <= HI32)
    for row in out:
        to_params(row)


@settings(max_examples=60, deadline=None)
@given(seq=input_sequences())
def test_random_sequences_at_60_fps_stay_in_range_and_smooth(seq):
    out = run(AnalyticController(), seq)
    check_outputs(out)
    if len(out) > 1:
        assert np.abs(np.diff(c_of(out))).max() <= MAX_DC + 1e-6
        assert np.abs(np.diff(np.log(out[:, 2].astype(np.float64)))).max() <= MAX_DLOGZOOM + 1e-5
        drot = wrapped(np.diff(out[:, 3].astype(np.float64)), 2 * np.pi)
        assert np.abs(drot).max() <= MAX_DROT + 1e-6


# the hue's per-frame change: the slow turn plus the followed centroid tint, whose target spans
# [-MICRO_HUE, MICRO_HUE]; a critically damped follower's speed is at most omega * span / e
MAX_DHUE = (ctl.HUE_TURNS_PER_S + 2 * ctl.MICRO_HUE / (math.e * ctl.HUE_TINT_S)) / FPS


@settings(max_examples=60, deadline=None)
@given(micro=st.lists(st.one_of(st.just(SILENCE_MICRO), st.just(MUSIC),
                                st.tuples(*MICRO_VALUE)), min_size=2, max_size=60),
       hold=st.integers(1, 6))
def test_hue_turns_smoothly_whatever_the_micro_features(micro, hold):
    """Micro features (held for ``hold`` frames each, as 50 Hz states are) never turn the hue
    faster than the bound: a centroid step is followed, not copied."""
    frames = steady_frames(len(micro) * hold / FPS, micro=MUSIC)
    frames = [dataclasses.replace(f, micro=micro[k // hold]) for k, f in enumerate(frames)]
    out = run(AnalyticController(), frames)
    dhue = wrapped(np.diff(out[:, 4].astype(np.float64)), 1.0)
    assert np.abs(dhue).max() <= MAX_DHUE + 1e-6  # float32 outputs


def test_a_centroid_step_on_a_beat_is_followed_not_a_flash():
    """Seed 1004's chorus, by hand: the kick on each beat moves the centroid, whose analysis
    arrives 3-4 frames later; the tint then turned the palette by 0.065 turns in one frame, a
    flash larger than the beat pulse's. Now the tint glides to its new value."""
    dark, bright = MUSIC[:5] + (500.0, 0.5), MUSIC[:5] + (8000.0, 0.5)
    frames = steady_frames(3.0, micro=dark)
    frames = frames[:90] + [dataclasses.replace(f, micro=bright) for f in frames[90:]]
    hue = run(AnalyticController(), frames)[:, 4].astype(np.float64)
    dhue = wrapped(np.diff(hue), 1.0) - ctl.HUE_TURNS_PER_S / FPS
    span = ctl.MICRO_HUE * (math.tanh(math.log2(8000 / 2000)) - math.tanh(math.log2(500 / 2000)))
    assert span > 0.06
    assert np.abs(dhue).max() < span / 10  # no single-frame jump
    # ...but it follows: within 1.5 s (6 time constants) the tint has moved 98 % of the way
    assert math.isclose(dhue[89:].sum(), span, rel_tol=0.02)


@settings(max_examples=40, deadline=None)
@given(seq=input_sequences(fixed_rate=False))
def test_random_times_including_nan_and_going_back_stay_valid(seq):
    check_outputs(run(AnalyticController(), seq))


def test_nan_inputs_fall_back_as_documented():
    good = steady_frames(1.0, micro=MUSIC)

    def with_(f, **kw):
        d = dict(t=f.t, phase=f.phase, beat_in_bar=f.beat_in_bar, beats_per_bar=4, spb=f.spb,
                 conf=f.conf, micro=f.micro, section_probs=f.section_probs,
                 hazard_probs=f.hazard_probs)
        d.update(kw)
        return ControlInputs(**d)

    # non-finite micro features read as silence
    a = run(AnalyticController(), [with_(f, micro=(math.nan,) * 7) for f in good])
    b = run(AnalyticController(), [with_(f, micro=SILENCE_MICRO) for f in good])
    np.testing.assert_array_equal(a, b)
    # a non-finite phase or conf gives no pulse: as conf = 0
    a = run(AnalyticController(), [with_(f, phase=math.nan) for f in good])
    b = run(AnalyticController(), [with_(f, conf=math.inf) for f in good])
    z = run(AnalyticController(), [with_(f, conf=0.0) for f in good])
    np.testing.assert_array_equal(a, z)
    np.testing.assert_array_equal(b, z)
    # a phase outside [0, 1) is taken modulo 1 (-1e-20 % 1.0 is 1.0 in floating point)
    c = AnalyticController()
    for f, phase in zip(good[:4], (-1e-20, 5.25, -0.75, 1.0), strict=True):
        assert np.all(np.isfinite(c.step(with_(f, phase=phase))))
    # non-finite section probabilities: neutral; hazards: 0
    a = run(AnalyticController(), [with_(f, section_probs=(math.nan,) * 8,
                                         hazard_probs=(math.nan,) * 5) for f in good])
    np.testing.assert_array_equal(a, run(AnalyticController(), good))
    # a NaN spb holds the last valid tempo; a NaN time holds the time (no smoothing progress)
    a = run(AnalyticController(), good[:30] + [with_(f, spb=math.nan) for f in good[30:]])
    np.testing.assert_array_equal(a, run(AnalyticController(), good))
    c = AnalyticController()
    run(c, good[:30])
    held = c.step(with_(good[30], t=math.nan))
    again = c.step(with_(good[30], t=good[29].t))  # same time as the last finite one: dt = 0
    np.testing.assert_array_equal(held, again)
    # a seek back: that step has dt = 0, then the clock follows the new times (not frozen)
    c = AnalyticController()
    run(c, [with_(f, t=f.t + 100.0) for f in good[:10]])
    after = run(c, good[:10])
    turn = wrapped(np.diff(after[:, 3].astype(np.float64)), 2 * np.pi)
    assert np.all(turn > 0.5 * 0.066 / FPS)  # the neutral rotation speed: mean of the styles'


def test_deterministic_and_reset_forgets():
    seq = steady_frames(2.0, micro=MUSIC, sections=probs("bridge"), hazard=(0.2,) * 5)
    c = AnalyticController()
    first = run(c, seq)
    c.reset()
    np.testing.assert_array_equal(run(c, seq), first)
    np.testing.assert_array_equal(run(AnalyticController(), seq), first)


def test_control_inputs_builders_and_validation():
    beat = BeatClockState(t_sec=1.0, spb=0.5, phase=0.25, beat_count=2, conf=0.8,
                          downbeat_prob=0.1, beat_in_bar=3, beats_per_bar=4)
    s = StructureState(probs("verse"), (0.1, 0.2, 0.3, 0.4, 0.5))
    a = ControlInputs.from_beat(1.02, beat, s, MUSIC)
    assert (a.t, a.phase, a.beat_in_bar, a.beats_per_bar, a.spb, a.conf) == \
        (1.02, 0.25, 3, 4, 0.5, 0.8)
    assert a.micro == MUSIC and a.section_probs == s.section_probs
    assert a.hazard_probs == s.hazard_probs
    assert ControlInputs.from_beat(1.0, beat, s).micro == SILENCE_MICRO
    q = PhaseQuery(phase=0.5, beat_count=3, beat_in_bar=4, next_beat_t=1.3)
    b = ControlInputs.from_query(1.05, q, SlowState(beat, s, MUSIC))
    assert (b.phase, b.beat_in_bar, b.spb, b.conf, b.micro) == (0.5, 4, 0.5, 0.8, MUSIC)
    assert ControlInputs.from_query(1.05, q, SlowState(beat, s)).micro == SILENCE_MICRO
    assert ControlInputs(np.float32(1), np.float64(0.5), np.int64(2), 4, 0.5, 1).t == 1.0
    with pytest.raises(ValueError, match="micro must have 7"):
        ControlInputs(0.0, 0.0, 1, 4, 0.5, 1.0, micro=(0.0,) * 6)
    with pytest.raises(ValueError, match="section_probs must have 8"):
        ControlInputs(0.0, 0.0, 1, 4, 0.5, 1.0, section_probs=(0.125,) * 7)
    with pytest.raises(TypeError, match="hazard_probs"):
        ControlInputs(0.0, 0.0, 1, 4, 0.5, 1.0, hazard_probs=None)
    with pytest.raises(TypeError, match="phase"):
        ControlInputs(0.0, "0", 1, 4, 0.5, 1.0)
    with pytest.raises(TypeError, match="beat_in_bar"):
        ControlInputs(0.0, 0.0, 1.0, 4, 0.5, 1.0)
    with pytest.raises(TypeError, match="micro\\[2\\]"):
        ControlInputs(0.0, 0.0, 1, 4, 0.5, 1.0, micro=(0.0, 0.0, "x", 0, 0, 0, 0))
    with pytest.raises(TypeError, match="ControlInputs"):
        AnalyticController().step((0.0, 0.0))


# ---------------------------------------------------------------------------------------------
# end to end without renderers: ideal beat clock -> predictor -> controller -> proxy change


def proxy_change(controls: np.ndarray) -> np.ndarray:
    """A cheap stand-in for the picture's frame-to-frame change: changes of ln zoom (the whole
    picture scales), brightness (half weight) and c (the shape)."""
    x = controls.astype(np.float64)
    d = np.abs(np.diff(np.log(x[:, 2]))) + 0.5 * np.abs(np.diff(x[:, 6])) \
        + np.abs(np.diff(c_of(x)))
    return np.concatenate(([0.0], d))


@pytest.mark.parametrize("bpm", [120.0, 123.0, 97.0, 174.0])
def test_pulses_of_an_ideal_beat_clock_land_on_the_beats(bpm):
    """Exact beats (conf 1, 4/4) as 50 Hz beat states through the PhasePredictor, the fast clock
    at 60 FPS; music-like micro features updated at 50 Hz (levels with 1.5 dB noise, onsets at
    random times, ~2 per second) and a section plan verse -> pre-chorus -> chorus. At least 95 %
    of the beats after 5 s have a pulse within 2 frames, the median offset is within 1 frame,
    and the onsets between beats add fewer than one visible pulse per beat."""
    spb, seconds = 60.0 / bpm, 30.0
    rng = np.random.default_rng(7)
    predictor, c = PhasePredictor(), AnalyticController()
    controls, state_t, micro = [], 0.0, MUSIC
    for k in range(int(seconds * FPS)):
        t = k / FPS
        while state_t <= t + 1e-9:  # the slow clock: a beat state and micro features per 20 ms
            pos = state_t / spb
            n = math.floor(pos + 1e-9)
            predictor.update(BeatClockState(state_t, spb, max(pos - n, 0.0), n, 1.0,
                                            float(n % 4 == 0), n % 4 + 1, 4))
            m = np.array(MUSIC)
            m[:4] += rng.normal(0, 1.5, 4)
            m[6] = 0.9 if rng.random() < 0.04 else 0.45
            micro = tuple(float(v) for v in m)
            state_t += 0.02
        section = "verse" if t < 10 else "pre-chorus" if t < 15 else "chorus"
        slow = SlowState(predictor.state, StructureState(probs(section, 0.9), (0.3,) * 5), micro)
        controls.append(c.step(ControlInputs.from_query(t, predictor.query(t), slow)))
    controls = np.array(controls)
    pulses = detect_pulses(proxy_change(controls), FPS)
    beats = np.arange(0.0, seconds - 0.5, spb)
    res = pulse_sync(pulses, beats, FPS, tolerance_frames=2, skip_s=5.0)
    assert res["hit_fraction"] >= 0.95, res
    assert abs(res["median_offset_frames"]) <= 1.0, res
    assert res["pulses_per_beat"] <= 1.75, res


def tiny_render(p: JuliaParams, width: int = 48, height: int = 27) -> np.ndarray:
    """A crude grey escape-time picture of ``p`` (the geometry of ``params.py``; value
    ``brightness * (1 - exp(-smooth count / 8))``, interior black), independent of the
    project's renderers."""
    u = (2 * (np.arange(width) + 0.5) - width) / height
    v = (height - 2 * (np.arange(height) + 0.5)) / height
    z = (complex(p.center_re, p.center_im) + cmath.exp(1j * p.rotation)
         * (u[None, :] + 1j * v[:, None]) * VIEW_HALF_HEIGHT / p.zoom)
    mu = np.zeros(z.shape)
    live = np.ones(z.shape, bool)
    for n in range(p.max_iter):
        z[live] = z[live] ** 2 + complex(p.c_re, p.c_im)
        out = live & (np.abs(z) > 256.0)
        mu[out] = n + 1 - np.log2(np.log2(np.abs(z[out])) / 8.0)
        live &= ~out
    value = np.where(live, 0.0, p.brightness * (1 - np.exp(-np.maximum(mu, 0) / 8.0)))
    grey = np.clip(np.round(255 * value), 0, 255).astype(np.uint8)
    return np.repeat(grey[:, :, None], 3, axis=2)


def test_pulses_are_visible_in_rendered_pictures():
    """Controls of an exact 123 BPM clock (verse, then chorus; music-like micro features with
    level noise), drawn by a crude renderer: the frame-to-frame change of the pictures shows a
    pulse within 2 frames of every beat after 5 s."""
    spb, seconds = 60.0 / 123.0, 15.0
    rng = np.random.default_rng(11)
    c = AnalyticController()
    pictures = []
    for k in range(int(seconds * FPS)):
        t = k / FPS
        phase, bib = beat_at(t, spb)
        m = np.array(MUSIC)
        m[:4] += rng.normal(0, 1.5, 4)
        section = probs("verse" if t < 8 else "chorus", 0.9)
        out = c.step(ControlInputs(t, phase, bib, 4, spb, 1.0, tuple(m), section))
        pictures.append(tiny_render(to_params(out, iter_range=(8, 64))))
    pulses = detect_pulses(frame_change(pictures, downscale=1), FPS)
    res = pulse_sync(pulses, np.arange(0.0, seconds - 0.5, spb), FPS)
    assert res["hit_fraction"] >= 0.95, res
    assert abs(res["median_offset_frames"]) <= 1.0, res
