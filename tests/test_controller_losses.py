"""The controller's six training losses, each against a hand-computed case
(examples/julia/controller_training/losses.py)."""

import math

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="the controller losses are training code ([train])")

from examples.julia.controller_training import losses as L  # noqa: E402
from fractalsync_tracking.slow_state import SECTION_LABELS  # noqa: E402


def series(t, **over):
    """A control series dict (batch 1, t frames): all zero unless given."""
    base = {k: torch.zeros(1, t) for k in ("log_zoom", "rotation", "hue", "saturation",
                                              "brightness", "detail")}
    base["c"] = torch.zeros(1, t, 2)
    for k, v in over.items():
        base[k] = torch.as_tensor(v, dtype=torch.float32)
    return base


def test_section_indices_are_the_contracts():
    assert SECTION_LABELS[L._CHORUS] == "chorus" and SECTION_LABELS[L._VERSE] == "verse"


def test_visual_change_weights_each_difference():
    w = dict.fromkeys(L.CHANGE_WEIGHTS, 0.0)
    w.update(brightness=2.0, c=3.0)
    out = series(3, brightness=[[0.0, 0.5, 0.5]], c=[[[0, 0], [0, 0], [0.3, 0.4]]])
    v = L.visual_change(out, w)[0]
    # frame 0: 0; frame 1: 2 * 0.5 (+ the sqrt eps of the 6 others); frame 2: 3 * |0.3+0.4i|
    assert v.tolist() == pytest.approx([0.0, 1.0, 1.5], abs=1e-3)


def test_pulse_loss_hand_case():
    tau = 0.03
    t = 16
    amp = torch.zeros(1, t)
    amp[0, 2], amp[0, 13] = 1.0, 0.8
    v = torch.zeros(1, t)
    v[0, 3] = 0.02  # peak within a frame of the downbeat at 2: short of tau * 1 by 0.01
    v[0, 13] = 0.03  # the beat at 13 is reached (0.03 >= 0.8 * tau)
    v[0, 7] = 0.006  # off-beat frames: 6..9 (farther than 3 frames from 2 and 13)
    mask = torch.ones(1, t, dtype=torch.bool)
    got = L.pulse_loss(v, amp, mask, tau=tau)
    on = (0.01 + 0.0) / (tau * 2)
    off = (0.006 / 4) / tau
    assert float(got) == pytest.approx(on + L.OFF_WEIGHT * off, rel=1e-5)


def test_pulse_loss_larger_target_on_downbeats():
    t, tau = 16, 0.03
    mask = torch.ones(1, t, dtype=torch.bool)
    v = torch.zeros(1, t)
    v[0, 8] = 0.025
    down, beat = torch.zeros(1, t), torch.zeros(1, t)
    down[0, 8], beat[0, 8] = 1.0, 0.8
    # 0.025 reaches 0.8 tau = 0.024 but not tau = 0.03
    assert float(L.pulse_loss(v, beat, mask, tau)) == pytest.approx(0.0, abs=1e-7)
    assert float(L.pulse_loss(v, down, mask, tau)) == pytest.approx(0.005 / tau, rel=1e-5)


def test_smoothness_loss_cubic_and_jump_mask():
    t = 10
    k = torch.arange(t, dtype=torch.float32)
    out = series(t, c=torch.stack([k ** 3, torch.zeros(t)], -1)[None],
                 rotation=(0.5 * k ** 3)[None])
    mask = torch.ones(1, t, dtype=torch.bool)
    no_jump = torch.zeros(1, t, dtype=torch.bool)
    # third difference of k^3 is 6 everywhere; fps = 1
    want = (6 / L.JERK_REF["c"]) ** 2 + (3 / L.JERK_REF["rotation"]) ** 2
    assert float(L.smoothness_loss(out, no_jump, mask, fps=1.0)) == pytest.approx(want, rel=1e-5)
    # a jerk only where a jump is allowed does not count
    step = series(t, rotation=torch.tensor([[0, 0, 0, 0, 0, 1, 1, 1, 1, 1.0]]))
    jump = torch.zeros(1, t, dtype=torch.bool)
    jump[0, 5] = True
    assert float(L.smoothness_loss(step, jump, mask, fps=1.0)) == 0.0
    # without the jump mask: third differences 0, 0, 1, -2, 1, 0, 0 over 7 windows
    got = float(L.smoothness_loss(step, no_jump, mask, fps=1.0))
    assert got == pytest.approx(6.0 / 7.0 / L.JERK_REF["rotation"] ** 2, rel=1e-5)


def test_orbit_reach_hand_cases():
    c = torch.tensor([[-1.0, 0.0], [2.0, 0.0], [0.0, 0.0]])
    # c = -1: 0 -> -1 -> 0 -> -1 ...: max |z|^2 = 1
    # c = 2: 2, 6, 38 (clamped to 10), 102 (clamped), ...: max |z|^2 = 102^2
    # c = 0: stays 0: the floor log(1e-4)
    assert L.orbit_reach(c).tolist() == pytest.approx(
        [0.0, math.log(102.0 ** 2), math.log(1e-4)], abs=1e-4)


def test_cardioid_radius_hand_cases():
    # c = lam/2 - lam^2/4 has |1 - sqrt(1 - 4c)| = |lam| for |lam| < 1 (1 - 4c = (1 - lam)^2)
    lams = [0.0, 0.5, complex(0, 0.9), complex(-0.6, 0.3)]
    cs = [lam / 2 - lam * lam / 4 for lam in lams]
    c = torch.tensor([[z.real, z.imag] for z in cs])
    # (within 2e-4: the square roots carry 1e-8 so that their gradients stay finite)
    assert L.cardioid_radius(c).tolist() == pytest.approx([abs(lam) for lam in lams], abs=2e-4)
    # c = 2: 1 - 4c = -7, sqrt = i sqrt 7: |1 - i sqrt 7| = sqrt 8
    assert float(L.cardioid_radius(torch.tensor([2.0, 0.0]))) == pytest.approx(math.sqrt(8),
                                                                               abs=2e-4)


def test_bulb_radius_hand_cases():
    # |4 (c + 1)|: 0 at the period-2 bulb's centre, 1 on its boundary, 4 at c = 0
    c = torch.tensor([[-1.0, 0.0], [-1.25, 0.0], [-1.0, 0.25], [0.0, 0.0]])
    assert L.bulb_radius(c).tolist() == pytest.approx([0.0, 1.0, 1.0, 4.0], abs=1e-3)


def test_penalties_hand_cases():
    c = torch.tensor([[-1.0, 0.0], [2.0, 0.0], [0.0, 0.0], [0.125, 0.0]])
    # |lam|: c = -1: |1 - sqrt 5| = 1.2361; c = 2: sqrt 8; c = 0: 0; c = 1/8: |1 - sqrt .5|
    lam = [math.sqrt(5) - 1, math.sqrt(8), 0.0, 1 - math.sqrt(0.5)]
    # |4 (c + 1)|: 0 (the period-2 bulb's centre), 12, 4, 4.5
    bulb = [0.0, 12.0, 4.0, 4.5]
    # c = 1/8: the orbit converges to the fixed point 1 - sqrt(.5)... / 2 = 0.1464
    u = [0.0, math.log(102.0 ** 2), math.log(1e-4), math.log((0.5 - 0.5 * math.sqrt(0.5)) ** 2)]
    log16 = math.log(16.0)
    want_conn = [max(log16 - ui, 0) / log16 + max(L.LAM_OUT - li, 0) + max(L.BULB_OUT - b, 0)
                 for ui, li, b in zip(u, lam, bulb, strict=True)]
    want_disc = [max(li - L.LAM_IN, 0) / (1 - L.LAM_IN) for li in lam]
    assert L.penalty_connected(c).tolist() == pytest.approx(want_conn, abs=2e-3)
    assert L.penalty_disconnected(c).tolist() == pytest.approx(want_disc, abs=2e-3)
    assert want_conn[1] == 0.0 and want_disc[2] == want_disc[3] == 0.0
    assert want_conn[0] == pytest.approx(1.0 + L.BULB_OUT)  # no escape, in the bulb


def test_penalty_connected_margin_is_escape_within_escape_iters():
    # c = 0.42 (the analytic controller's chorus centre) reaches |z| >= 4 at iteration 7:
    # no penalty. c = 0.3 escapes too (|z| > 2 at iteration 12 of the measure's test), but
    # only reaches |z| = 0.93 within ESCAPE_ITERS = 10 iterations: penalised, a margin (and
    # |lam| = |1 - i sqrt 0.2| = sqrt 1.2 is just below LAM_OUT)
    assert L.ESCAPE_ITERS == 10
    z, reach = 0.0, []
    for _ in range(L.ESCAPE_ITERS):
        z = z * z + 0.3
        reach.append(z * z)
    want = ((math.log(16.0) - math.log(max(reach))) / math.log(16.0)
            + L.LAM_OUT - math.sqrt(1.2))
    got = L.penalty_connected(torch.tensor([[0.42, 0.0], [0.3, 0.0]])).tolist()
    assert got == pytest.approx([0.0, want], abs=3e-4)  # |lam| carries 1e-8 in its roots
    assert want > 0.9


def test_section_loss_weights_by_probabilities():
    c = torch.tensor([[[-1.0, 0.0], [2.0, 0.0], [0.0, 0.0]]])
    sect = torch.zeros(1, 3, 8)
    sect[0, 0, L._CHORUS] = 1.0  # chorus with a connected c (the period-2 bulb)
    sect[0, 1, L._VERSE] = 1.0  # verse with an escaping c
    sect[0, 2, L._CHORUS] = sect[0, 2, L._VERSE] = 0.5  # c = 0: connected, cardioid centre
    mask = torch.ones(1, 3, dtype=torch.bool)
    log16 = math.log(16.0)
    # orbit reach 0: (log 16 - 0) / log 16; |lam| = 1.236 > LAM_OUT; the bulb's centre
    pen_chorus = 1.0 + 0.0 + L.BULB_OUT
    pen_verse = (math.sqrt(8) - L.LAM_IN) / (1 - L.LAM_IN)  # weight 1 - p_chorus = 1
    conn_zero = (log16 - math.log(1e-4)) / log16 + L.LAM_OUT  # c = 0: |4 (c + 1)| = 4
    pen_zero = 0.5 * conn_zero + 0.5 * 0.0
    want = (pen_chorus + pen_verse + pen_zero) / 3
    assert float(L.section_loss(c, sect, mask)) == pytest.approx(want, abs=1e-3)
    # a non-chorus section that is not a verse (bridge) also wants a connected set
    sect[0, 1, L._VERSE] = 0.0
    sect[0, 1, SECTION_LABELS.index("bridge")] = 1.0
    assert float(L.section_loss(c, sect, mask)) == pytest.approx(want, abs=1e-3)
    # padding frames do not count
    mask[0, 1] = False
    assert float(L.section_loss(c, sect, mask)) == pytest.approx((pen_chorus + pen_zero) / 2,
                                                                 abs=1e-3)


def test_section_switch_frames_marks_both_sides_of_each_chorus_switch():
    sect = torch.zeros(2, 40, 8)
    sect[0, 5:20, L._CHORUS] = 1.0  # chorus switches at frames 5, 20 and 30
    sect[0, 30:, L._CHORUS] = 1.0
    sect[0, 20:30, L._VERSE] = sect[0, :5, L._VERSE] = 1.0
    sect[1, :, L._CHORUS] = 1.0  # under way at the first frame, never switching: none
    got = L.section_switch_frames(sect, frames=3)
    want = np.zeros((2, 40), bool)
    want[0, 2:8] = want[0, 17:23] = want[0, 27:33] = True  # s - 3 <= t < s + 3
    assert np.array_equal(got.numpy(), want)
    got = L.section_switch_frames(sect, frames=1)  # the frames either side of each switch
    want = np.zeros((2, 40), bool)
    want[0, [4, 5, 19, 20, 29, 30]] = True
    assert np.array_equal(got.numpy(), want)
    assert not L.section_switch_frames(torch.zeros(1, 0, 8)).any()
    assert not L.section_switch_frames(torch.zeros(1, 1, 8)).any()


def test_section_loss_weights_the_frames_near_a_switch():
    # 150 verse frames then 150 chorus frames (a switch at 150); c = 0 (connected) everywhere
    # but after the chorus's first 10 frames (c = 2: escaped), so only those 10 are penalised
    T, s0, n = 300, 150, L.SWITCH_FRAMES
    c = torch.zeros(1, T, 2)
    c[0, s0 + 10:, 0] = 2.0
    sect = torch.zeros(1, T, 8)
    sect[0, :s0, L._VERSE] = 1.0
    sect[0, s0:, L._CHORUS] = 1.0
    mask = torch.ones(1, T, dtype=torch.bool)
    p1 = float(L.penalty_connected(torch.zeros(1, 1, 2)))
    assert p1 > 1.0 and float(L.penalty_connected(torch.tensor([[[2.0, 0.0]]]))) == 0.0
    assert float(L.penalty_disconnected(torch.zeros(1, 1, 2))) == 0.0
    plain = float(L.section_loss(c, sect, mask))
    assert plain == pytest.approx(10 * p1 / T, rel=1e-6)
    weighted = float(L.section_loss(c, sect, mask, switch_weight=3.0))
    near = 2 * n  # frames s0 - n .. s0 + n - 1 weigh 4, the other T - 2n weigh 1
    assert weighted == pytest.approx(4 * 10 * p1 / (4 * near + (T - near)), rel=1e-6)
    assert weighted > plain


def test_anticipation_loss_hand_case():
    out = series(3, detail=[[0.5, 1.0, 1.5]], saturation=[[0.5, 1.0, 1.5]])
    haz = torch.tensor([0.0, 0.5, 1.0])[None, :, None].repeat(1, 1, 5)  # level = h
    segments = torch.ones(1, 3, 1)
    # build-up 1, 2, 3 (mean 2); hazard 0, .5, 1 (mean .5); error (b - 2) - 0.5 (h - .5)
    errs = [(-1 + 0.25) ** 2, 0.0, (1 - 0.25) ** 2]
    assert float(L.anticipation_loss(out, haz, segments)) == pytest.approx(sum(errs) / 3,
                                                                           rel=1e-5)
    # build-up exactly proportional to the hazard: no loss
    out = series(3, detail=[[0.0, 0.25, 0.5]])
    assert float(L.anticipation_loss(out, haz, segments)) == pytest.approx(0.0, abs=1e-7)


def test_variety_loss_hand_case():
    n = L.MIN_SEGMENT
    c = torch.zeros(1, 2 * n, 2)
    c[0, n:, 0] = 0.2  # two sections with constant c, means 0.2 apart
    out = series(2 * n, c=c)
    segments = torch.zeros(1, 2 * n, 2)
    segments[0, :n, 0] = segments[0, n:, 1] = 1.0
    labels = torch.tensor([[L._VERSE, L._CHORUS]])
    # within: variance 0 -> 1 per segment; between: relu(1 - 0.2 / DIST_MIN_C) + relu(1 -
    # 0.05 / DIST_MIN) (dc_re's range is 4 wide, so 0.2 is 0.05 of it; the other means are equal)
    between = (1 - 0.2 / L.DIST_MIN_C) + (1 - 0.05 / L.DIST_MIN)
    assert float(L.variety_loss(out, segments, labels)) == pytest.approx((1 + between) / 3,
                                                                         abs=1e-4)
    # c alternating +-0.1 within each section (variance 0.01 >= VAR_MIN), means far apart
    c = torch.zeros(1, 2 * n, 2)
    c[0, :, 1] = torch.tensor([0.1, -0.1]).repeat(n)
    c[0, n:, 0] = max(L.DIST_MIN_C, 4.0 * L.DIST_MIN)
    assert float(L.variety_loss(series(2 * n, c=c), segments, labels)) == pytest.approx(
        0.0, abs=1e-6)
    # one label only: no pair to compare
    same = torch.tensor([[L._VERSE, L._VERSE]])
    assert float(L.variety_loss(series(2 * n, c=c), segments, same)) == pytest.approx(
        0.0, abs=1e-6)


def test_look_loss_hand_case():
    n, fps = L.MIN_SEGMENT, 60.0
    t = torch.arange(2 * n, dtype=torch.float32)
    # a verse then a chorus; the rotation turns at 0.05 rad/s, then 0.2 rad/s
    rot = torch.where(t < n, 0.05 * t / fps, 0.05 * (n - 1) / fps + 0.2 * (t - n + 1) / fps)
    sat = torch.where(t < n, 0.3, 0.9)  # verse: 1 - 0.3 / 0.6 = 0.5
    bright = torch.where(t < n, 1.0, 0.4)  # chorus: 1 - 0.4 / 0.8 = 0.5
    detail = torch.where(t < n, 0.35, 0.7)  # both at or above DETAIL_MIN: 0
    c = torch.zeros(1, 2 * n, 2)
    c[0, n:, 0] = 2.0  # verse: c = 0, |lam| = 0: shape hinge 1; chorus: not counted
    hue = torch.where(t < n, 0.0, 0.1)
    out = series(2 * n, rotation=rot[None], saturation=sat[None], brightness=bright[None],
                 detail=detail[None], c=c, hue=hue[None])
    segments = torch.zeros(1, 2 * n, 2)
    segments[0, :n, 0] = segments[0, n:, 1] = 1.0
    labels = torch.tensor([[L._VERSE, L._CHORUS]])
    assert (L.SAT_MIN, L.BRIGHT_MIN, L.DETAIL_MIN, L.SPIN_MIN, L.HUE_DIST) == (
        0.6, 0.8, 0.35, 0.1, 0.5)
    within_verse = 0.5 + 0.0 + 0.0 + (1 - 0.05 / 0.1) + 1.0  # saturation, spin, shape
    within_chorus = 0.0 + 0.5 + 0.0 + 0.0  # brightness; spin 0.2 > 0.1
    # hues 0 and 0.1 turns: points (cos, sin) / 2, 2 * 0.5 * sin(0.1 pi) apart
    between = 1 - math.sin(0.1 * math.pi) / 0.5
    want = (within_verse + within_chorus) / 2 + between
    assert float(L.look_loss(out, segments, labels, fps)) == pytest.approx(want, abs=1e-4)
    # everything above its floor, |lam| = 0.85 in the verse, opposite hues: no loss
    lam = 0.85
    c = torch.zeros(1, 2 * n, 2)
    c[0, :n, 0] = lam / 2 - lam * lam / 4
    c[0, n:, 0] = 0.42
    good = series(2 * n, rotation=(0.2 * t / fps)[None], saturation=torch.full((1, 2 * n), 0.7),
                  brightness=torch.ones(1, 2 * n), detail=torch.full((1, 2 * n), 0.5), c=c,
                  hue=torch.where(t < n, 0.0, 0.5)[None])
    assert float(L.look_loss(good, segments, labels, fps)) == pytest.approx(0.0, abs=1e-5)
    # a segment shorter than MIN_SEGMENT and a single label: nothing to compare, no loss
    short = torch.zeros(1, 2 * n, 2)
    short[0, :n - 1, 0] = 1.0
    short[0, n - 1:, 1] = 1.0
    only = torch.tensor([[L._VERSE, L._VERSE]])
    bad = series(2 * n)
    # the long segment (n + 1 frames, c = 0, all zero): 1 + 1 + 1 + 1 (spin 0) + 1 (shape),
    # less the spin's sqrt(eps) = 1e-4 rad/s (1e-3 of SPIN_MIN)
    assert float(L.look_loss(bad, short, only, fps)) == pytest.approx(5.0 - 1e-3, abs=2e-4)


def test_normalised_controls_mirror_the_measured_contrast():
    from examples.julia.controller import CONTROL_NAMES
    from examples.julia.sync_measure import normalised_controls

    g = torch.Generator().manual_seed(3)
    t = 50
    out = {"c": torch.rand(1, t, 2, generator=g) * 1.6 - 0.8,
           "log_zoom": torch.rand(1, t, generator=g) * 1.5 - 0.5,
           "rotation": torch.rand(1, t, generator=g) * 6.0 - 3.0,
           "hue": torch.rand(1, t, generator=g),
           "saturation": torch.rand(1, t, generator=g),
           "brightness": torch.rand(1, t, generator=g) * 2.0,
           "detail": torch.rand(1, t, generator=g)}
    controls = torch.stack([out["c"][0, :, 0], out["c"][0, :, 1], torch.exp(out["log_zoom"][0]),
                            out["rotation"][0], out["hue"][0], out["saturation"][0],
                            out["brightness"][0], out["detail"][0]], -1).double().numpy()
    assert list(CONTROL_NAMES) == ["dc_re", "dc_im", "zoom", "rotation", "hue",
                                          "saturation", "brightness", "detail"]
    expected = normalised_controls(controls)
    np.testing.assert_allclose(L.normalised_controls(out)[0].double().numpy(), expected,
                               atol=1e-5)
