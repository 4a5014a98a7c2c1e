"""Sync/feel measurement functions on synthetic signals with known answers: frame change, pulse
detection, pulse-to-beat sync (which must fail for a picture pulsing off the beat), RMS jerk and
the disconnected fraction."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from examples.julia.controller import CONTROL_NAMES  # noqa: E402
from examples.julia.sync_measure import (  # noqa: E402
    detect_pulses,
    disconnected_fraction,
    frame_change,
    normalised_controls,
    pulse_sync,
    rms_jerk,
    section_contrast,
)

FPS = 60.0


def grey(value: int, h: int = 8, w: int = 12) -> np.ndarray:
    return np.full((h, w, 3), value, np.uint8)


# ---------------------------------------------------------------------------------------------
# frame_change


def naive_change(frames: list[np.ndarray], downscale: int) -> np.ndarray:
    """Per-pixel loops: luma, block means, mean absolute difference / 255."""
    out, prev = [], None
    for f in frames:
        h, w = f.shape[0] // downscale, f.shape[1] // downscale
        blocks = np.zeros((h, w))
        for i in range(h):
            for j in range(w):
                acc = 0.0
                for y in range(i * downscale, (i + 1) * downscale):
                    for x in range(j * downscale, (j + 1) * downscale):
                        r, g, b = (float(v) for v in f[y, x])
                        acc += 0.2126 * r + 0.7152 * g + 0.0722 * b
                blocks[i, j] = acc / downscale**2
        out.append(0.0 if prev is None else float(np.mean(np.abs(blocks - prev))) / 255.0)
        prev = blocks
    return np.array(out)


def test_frame_change_by_hand():
    # grey frames: luma = the grey value (the weights add up to 1)
    got = frame_change([grey(10), grey(10), grey(61), grey(10)])
    np.testing.assert_allclose(got, [0.0, 0.0, 51 / 255, 51 / 255], atol=1e-6)
    # a one-pixel checkerboard and its inverse: every pixel changes by 255, every 2x2 block by 0
    check = (np.indices((8, 12)).sum(axis=0) % 2 * 255).astype(np.uint8)
    a = np.repeat(check[:, :, None], 3, axis=2)
    b = 255 - a
    np.testing.assert_allclose(frame_change([a, b], downscale=1), [0.0, 1.0], atol=1e-6)
    np.testing.assert_allclose(frame_change([a, b], downscale=2), [0.0, 0.0], atol=1e-6)
    # pure green vs black: luma weight of G
    g = np.zeros((4, 4, 3), np.uint8)
    g[..., 1] = 255
    np.testing.assert_allclose(frame_change([np.zeros_like(g), g]), [0.0, 0.7152], atol=1e-6)
    # edges that do not fill a block are dropped: a change only in the last row/column is unseen
    e = grey(0, 9, 13)
    e[8, :] = 255
    e[:, 12] = 255
    assert frame_change([grey(0, 9, 13), e])[1] == 0.0
    assert frame_change([]).shape == (0,)
    assert frame_change([grey(5)]).tolist() == [0.0]
    assert frame_change(grey(v) for v in (0, 255)).tolist()[1] == pytest.approx(1.0)


@settings(max_examples=40, deadline=None)
@given(st.integers(0, 2**32 - 1), st.integers(0, 4), st.integers(1, 9), st.integers(1, 9),
       st.integers(1, 3))
def test_frame_change_matches_a_per_pixel_reference(seed, n, h, w, downscale):
    rng = np.random.default_rng(seed)
    h, w = h * downscale + rng.integers(0, downscale), w * downscale + rng.integers(0, downscale)
    frames = [rng.integers(0, 256, (h, w, 3), dtype=np.uint8) for _ in range(n)]
    np.testing.assert_allclose(frame_change(frames, downscale), naive_change(frames, downscale),
                               atol=1e-6)


def test_frame_change_names_bad_frames():
    with pytest.raises(ValueError, match="frame 1 must be an \\(H, W, 3\\) uint8"):
        frame_change([grey(0), grey(0).astype(np.float32)])
    with pytest.raises(ValueError, match="frame 0 must be"):
        frame_change([np.zeros((4, 4), np.uint8)])
    with pytest.raises(ValueError, match="frame 0 must be"):
        frame_change(["not a frame"])
    with pytest.raises(ValueError, match="frame 2 has shape"):
        frame_change([grey(0), grey(0), grey(0, 9, 12)])
    with pytest.raises(ValueError, match="smaller than downscale"):
        frame_change([grey(0, 2, 2)], downscale=4)
    with pytest.raises(ValueError, match="downscale"):
        frame_change([grey(0)], downscale=0)


# ---------------------------------------------------------------------------------------------
# detect_pulses


def test_detect_pulses_finds_spikes_at_known_frames():
    rng = np.random.default_rng(1)
    x = 0.01 + rng.uniform(-0.001, 0.001, 300)  # background: sd 0.00058
    spikes = [0, 30, 61, 95, 150, 299]
    x[spikes] = 0.05
    x[96] = 0.03  # a decay tail after a spike is not a second pulse
    assert detect_pulses(x, FPS).tolist() == spikes


def test_detect_pulses_rule_by_hand():
    # flat background 0.01 (median 0.01, mad 0): a peak needs change > 0.01 + floor
    x = np.full(31, 0.01)
    x[15] = 0.01 + 0.9e-4
    assert detect_pulses(x, FPS, floor=1e-4).tolist() == []
    x[15] = 0.01 + 1.1e-4
    assert detect_pulses(x, FPS, floor=1e-4).tolist() == [15]
    # background 0.01, 0.02, 0.03 repeating; the 31-frame window around frame 30 (a 0.01
    # replaced by the peak) holds ten of each plus the peak: median 0.02, deviations ten 0 and
    # twenty 0.01 (and the peak's): mad 0.01
    y = np.tile([0.01, 0.02, 0.03], 20)
    y[30] = 0.02 + 4 * 1.4826 * 0.01 + 1e-4 - 1e-6  # just below the threshold
    assert 30 not in detect_pulses(y, FPS, z=4.0, floor=1e-4)
    y[30] = 0.02 + 4 * 1.4826 * 0.01 + 1e-4 + 1e-6  # just above
    assert 30 in detect_pulses(y, FPS, z=4.0, floor=1e-4)
    # plateau: the first of two equal frames
    p = np.full(40, 0.01)
    p[[10, 11]] = 0.1
    assert detect_pulses(p, FPS).tolist() == [10]
    assert detect_pulses(np.zeros(0), FPS).tolist() == []
    assert detect_pulses(np.zeros(50), FPS).tolist() == []
    assert detect_pulses([0.5], FPS).tolist() == []  # nothing to stand out of


def test_detect_pulses_keeps_the_largest_of_close_candidates():
    x = np.full(100, 0.01)
    x[[20, 23]] = [0.05, 0.08]  # 3 frames apart (< round(0.1 * 60) = 6): the larger
    x[[50, 53]] = [0.08, 0.08]  # a tie: the earlier
    x[[70, 76]] = [0.05, 0.08]  # 6 frames apart: both
    assert detect_pulses(x, FPS).tolist() == [23, 50, 70, 76]
    assert detect_pulses(x, FPS, min_gap_s=0).tolist() == [20, 23, 50, 53, 70, 76]
    # a chain 20 -> 24 -> 28 (each 4 apart): greedy from the largest keeps 24 only
    y = np.full(60, 0.01)
    y[[20, 24, 28]] = [0.05, 0.09, 0.06]
    assert detect_pulses(y, FPS).tolist() == [24]


def test_detect_pulses_rejects_bad_input():
    for bad in ([0.1, math.nan], [0.1, -0.1], np.zeros((2, 2))):
        with pytest.raises(ValueError, match="change"):
            detect_pulses(bad, FPS)
    with pytest.raises(ValueError, match="fps"):
        detect_pulses([0.1], 0)
    with pytest.raises(ValueError, match="window_s"):
        detect_pulses([0.1], FPS, window_s=-1)
    with pytest.raises(ValueError, match="z must"):
        detect_pulses([0.1], FPS, z=math.nan)
    with pytest.raises(ValueError, match="floor must"):
        detect_pulses([0.1], FPS, floor=-1)
    with pytest.raises(ValueError, match="min_gap_s must"):
        detect_pulses([0.1], FPS, min_gap_s=math.inf)


# ---------------------------------------------------------------------------------------------
# pulse_sync

BEATS = np.arange(0.0, 20.0, 0.5)  # 120 BPM: beat j at frame 30 j; 30 beats from 5 s on


def test_pulse_sync_on_exact_and_shifted_pulses():
    frames = np.round(BEATS * FPS).astype(int)
    res = pulse_sync(frames, BEATS, FPS)
    assert res == {"hit_fraction": 1.0, "median_offset_frames": 0.0, "n_beats": 30,
                   "n_hits": 30, "n_pulses": 30, "pulses_per_beat": 1.0}
    assert pulse_sync(frames + 1, BEATS, FPS)["median_offset_frames"] == 1.0  # picture late
    assert pulse_sync(frames - 1, BEATS, FPS)["median_offset_frames"] == -1.0  # early
    # offsets +1, -1, 0 repeating over the 30 beats after 5 s (beats 10..39): j % 3 = 1, 2, 0
    # -> ten of each; median 0. With +1 twice as often as -1: median +1.
    mixed = frames + np.array([0, 1, -1])[np.arange(frames.size) % 3]
    assert pulse_sync(mixed, BEATS, FPS)["median_offset_frames"] == 0.0
    late = frames + np.array([1, 1, -1])[np.arange(frames.size) % 3]
    assert pulse_sync(late, BEATS, FPS)["median_offset_frames"] == 1.0
    # 3 frames late is outside the +-2 tolerance
    res = pulse_sync(frames + 3, BEATS, FPS)
    assert res["hit_fraction"] == 0.0 and math.isnan(res["median_offset_frames"])
    assert pulse_sync(frames + 3, BEATS, FPS, tolerance_frames=3)["hit_fraction"] == 1.0
    # every other beat missing
    assert pulse_sync(frames[::2], BEATS, FPS)["hit_fraction"] == 0.5


def test_pulse_sync_fails_for_a_picture_pulsing_off_the_beat():
    frames = np.round(BEATS * FPS).astype(int)
    res = pulse_sync(frames + 15, BEATS, FPS)  # on the off-beats (half a beat late)
    assert res["hit_fraction"] == 0.0 and math.isnan(res["median_offset_frames"])
    # pulsing at a slightly wrong tempo (drifting off): most beats missed
    drift = np.round(np.arange(0, 20, 0.52) * FPS).astype(int)
    assert pulse_sync(drift, BEATS, FPS)["hit_fraction"] < 0.3
    # a picture that flickers on every frame hits everything but shows it in pulses_per_beat
    res = pulse_sync(np.arange(1200), BEATS, FPS)
    assert res["hit_fraction"] == 1.0 and res["pulses_per_beat"] > 29


def test_pulse_sync_details():
    # nearest pulse, ties to the earlier: beat at frame 30, pulses at 28 and 32
    res = pulse_sync([28, 32], [0.5], FPS, skip_s=0.0)
    assert res["median_offset_frames"] == -2.0 and res["n_hits"] == 1
    # skip_s: beats before it do not count; pulses from 2 frames before it count
    res = pulse_sync([290, 299, 300, 330], [4.5, 5.0, 5.5], FPS)
    assert (res["n_beats"], res["n_hits"], res["n_pulses"]) == (2, 2, 3)
    assert pulse_sync([], BEATS, FPS)["hit_fraction"] == 0.0
    with pytest.raises(ValueError, match="no beat at or after skip_s"):
        pulse_sync([10], [1.0, 2.0], FPS)
    with pytest.raises(ValueError, match="beat_times must be finite"):
        pulse_sync([10], [6.0, math.nan], FPS)
    with pytest.raises(ValueError, match="tolerance_frames"):
        pulse_sync([10], [6.0], FPS, tolerance_frames=-1)
    with pytest.raises(ValueError, match="fps"):
        pulse_sync([10], [6.0], math.inf)


def test_detected_pulses_of_a_synthetic_change_signal_sync():
    """Spikes 1 frame late on 120 BPM beats over a noisy background, through detect_pulses and
    pulse_sync: all hit, median offset +1."""
    rng = np.random.default_rng(3)
    x = rng.uniform(0.005, 0.015, 1200)
    x[np.round(BEATS * FPS).astype(int) + 1] += 0.1
    res = pulse_sync(detect_pulses(x, FPS), BEATS, FPS)
    assert res["hit_fraction"] == 1.0 and res["median_offset_frames"] == 1.0
    assert res["pulses_per_beat"] <= 1.2


# ---------------------------------------------------------------------------------------------
# rms_jerk and disconnected_fraction


def test_rms_jerk_by_hand():
    t = np.arange(120) / FPS
    controls = np.zeros((120, 8))
    controls[:, 0] = 2.0 * t**3  # jerk 12
    controls[:, 1] = 5 + 3 * t - t**2  # jerk 0
    controls[:, 2] = np.exp(0.5 * t**3)  # ln zoom has jerk 3
    controls[:, 3] = (4.0 * t + np.pi) % (2 * np.pi) - np.pi  # wrapped linear rotation: 0
    controls[:, 4] = (0.7 * t) % 1.0  # wrapped linear hue: 0
    controls[:, 6] = np.where(np.arange(120) == 60, 1.0, 0.0)  # one spike of 1
    out = rms_jerk(controls, FPS)
    assert set(out) == set(CONTROL_NAMES) | {"log_zoom"}
    assert out["dc_re"] == pytest.approx(12.0, rel=1e-6)
    assert out["dc_im"] == pytest.approx(0.0, abs=1e-6)
    assert out["log_zoom"] == pytest.approx(3.0, rel=1e-6)
    assert out["rotation"] == pytest.approx(0.0, abs=1e-6)
    assert out["hue"] == pytest.approx(0.0, abs=1e-6)
    assert out["saturation"] == 0.0
    # third differences of a unit spike: 1, -3, 3, -1 (times fps**3) over 117 differences
    assert out["brightness"] == pytest.approx(math.sqrt(20 / 117) * FPS**3)
    with pytest.raises(ValueError, match="at least 4"):
        rms_jerk(controls[:3], FPS)
    with pytest.raises(ValueError, match="shape"):
        rms_jerk(controls[:, :7], FPS)
    bad = controls.copy()
    bad[5, 3] = math.nan
    with pytest.raises(ValueError, match="finite"):
        rms_jerk(bad, FPS)
    bad = controls.copy()
    bad[5, 2] = 0.0
    with pytest.raises(ValueError, match="zoom"):
        rms_jerk(bad, FPS)


def test_disconnected_fraction_by_hand():
    # outside M: 0.5, 0.42, -2.1; inside: 0, -1
    c = np.array([0.0, -1.0, 0.5, 0.42, -2.1], np.complex128)
    assert disconnected_fraction(c) == pytest.approx(3 / 5)
    assert disconnected_fraction(c, np.array([True, True, False, False, False])) == 0.0
    assert disconnected_fraction(c, np.array([False, True, True, True, False])) \
        == pytest.approx(2 / 3)
    pairs = np.stack([c.real, c.imag], axis=1).astype(np.float32)
    assert disconnected_fraction(pairs) == pytest.approx(3 / 5)
    with pytest.raises(ValueError, match="selects no frame"):
        disconnected_fraction(c, np.zeros(5, bool))
    with pytest.raises(ValueError, match="mask"):
        disconnected_fraction(c, np.ones(4, bool))
    with pytest.raises(ValueError, match="c_values"):
        disconnected_fraction(np.zeros((5, 3)))
    with pytest.raises(ValueError, match="finite"):
        disconnected_fraction([math.nan + 0j])


# ---------------------------------------------------------------------------------------------
# section_contrast


def control(dc_re=0.0, dc_im=0.0, zoom=0.5, rotation=0.0, hue=0.0, saturation=0.0,
            brightness=0.0, detail=0.0) -> list[float]:
    return [dc_re, dc_im, zoom, rotation, hue, saturation, brightness, detail]


def test_section_contrast_by_hand():
    # a: two frames whose mean is dc_re 0.5 (normalised), dc_im 1, the rest at 0, rotation and
    # hue at angle 0 -> (0.5, 0) each.
    # b: dc_re 0.5, dc_im 1, rotation pi and hue 0.5 (angle pi) -> (-0.5, 0) each: |a - b| =
    #    sqrt(1 + 1).
    # c: as a but zoom 3 (normalised 1): |a - c| = 1, |b - c| = sqrt(3).
    rows = [control(-2, 2), control(2, 2), control(0, 2, rotation=math.pi, hue=0.5),
            control(0, 2, zoom=3.0), control(9, 9, 9, 9, 9, 9, 9, 9)]
    labels = ["a", "a", "b", "c", None]  # the last frame is outside every section
    got = section_contrast(rows, labels)
    assert got["n_sections"] == 3
    assert got["contrast"] == pytest.approx((math.sqrt(2) + 1 + math.sqrt(3)) / 3, abs=1e-12)
    np.testing.assert_allclose(got["means"]["a"], [0.5, 1, 0, 0, 0, 0, 0.5, 0, 0.5, 0],
                               atol=1e-12)
    # the periodic controls wrap: rotation -pi is pi, hue 1 is hue 0
    wrapped = section_contrast([control(rotation=-math.pi, hue=1.0), control(rotation=math.pi)],
                               ["x", "y"])
    assert wrapped["contrast"] == pytest.approx(0.0, abs=1e-12)
    # sections that look alike on average have no contrast, whatever moves inside them
    alike = section_contrast([control(-1), control(1), control(1), control(-1)],
                             ["x", "x", "y", "y"])
    assert alike["contrast"] == pytest.approx(0.0, abs=1e-12)


def test_normalised_controls_by_hand():
    u = normalised_controls([[2.0, -2.0, 3.0, math.pi / 2, 0.25, 1.0, 2.0, 1.0]])
    np.testing.assert_allclose(u, [[1, 0, 1, 1, 1, 1, 0, 0.5, 0, 0.5]], atol=1e-12)
    assert normalised_controls(np.zeros((0, 8))).shape == (0, 10)


@pytest.mark.parametrize("controls, labels, message", [
    ([control()] * 2, ["a", "a"], "at least two"),
    ([control()] * 2, [None, None], "at least two"),
    ([control()] * 2, ["a"], "labels must have shape"),
    ([[0.0] * 7] * 2, ["a", "b"], "shape"),
    ([control(dc_re=math.nan), control()], ["a", "b"], "finite"),
])
def test_section_contrast_bad_input(controls, labels, message):
    with pytest.raises(ValueError, match=message):
        section_contrast(controls, labels)


# ---------------------------------------------------------------------------------------------
# benchmarks/measure_julia_sync.py --controller both, as a subprocess


def test_measure_script_prints_the_side_by_side_table(tmp_path):
    import subprocess
    import sys
    from pathlib import Path

    from onnx_controllers import random_controller

    root = Path(__file__).resolve().parents[1]
    model = random_controller(tmp_path / "random.onnx", seed=5)
    r = subprocess.run([sys.executable, str(root / "benchmarks" / "measure_julia_sync.py"),
                        "--seeds", "1001", "--seconds", "8", "--size", "64x36",
                        "--structure", "none", "--controller", "both",
                        "--controller-model", str(model)],
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    table = lines[lines.index("| song | " + " | ".join(
        f"{h} (analytic / onnx)" for h in (
            "pulses within +-2 frames", "pulses per beat", "RMS jerk c", "RMS jerk ln zoom",
            "RMS jerk rotation",
            "chorus frames disconnected", "verse frames connected", "section contrast",
            "controller p99 CPU (us)", "controller p99 wall (us)")) + " |"):]
    assert table[2].startswith("| seed 1001 | ") and table[3].startswith("| all songs")
    assert table[4].startswith("| better (onnx vs analytic) | ")
    for row in table[2:5]:
        assert len(row.strip("|").split(" | ")) == 11, row
    # every cell pairs the two controllers' figures; the per-song and all-songs rows agree
    song_cells = table[2].strip("| ").split(" | ")[1:]
    assert all(len(c.split(" / ")) == 2 for c in song_cells)
    assert song_cells[:8] == table[3].strip("| ").split(" | ")[1:9]
    # the contrast is over the song's true sections (the first 8 s hold at least two): a number
    # for both controllers
    assert all(v != "-" for v in song_cells[7].split(" / "))
    assert table[4].split(" | ")[2] == "(no direction)"  # pulses per beat
    assert "-- analytic controller" in r.stdout and "-- onnx controller" in r.stdout
