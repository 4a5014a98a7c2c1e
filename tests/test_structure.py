"""StructureTracker and structure_timeline: the anticipator fed exactly the slow-step inputs,
one step per 80 ms, the SlowClock seam; display hysteresis against a plain reference and its
no-flicker guarantees; display segments; block partitions do not matter; appending audio never
changes earlier outputs; reset; errors."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from fractalsync_models.anticipator import Anticipator
from fractalsync_models.training.synth import make_item
from fractalsync_tracking.analysis_clock import AnalysisClock
from fractalsync_tracking.beat_tracker import BeatTracker
from fractalsync_tracking.slow_clock import SlowClock
from fractalsync_tracking.slow_state import SECTION_LABELS, StructureState
from fractalsync_tracking.structure import (
    RATE_HZ,
    DisplaySegment,
    Hysteresis,
    LabelHysteresis,
    StructureTracker,
    _hysteresis_step,
    display_segments,
    structure_timeline,
)
from fractalsync_tracking.structure_inputs import SlowStepInputs

SR = 48000


@pytest.fixture(scope="module")
def audio(beatnet_models_dir):  # the fixture makes sure the BeatNet ONNX models exist
    return make_item("structure_test", 126.0, duration=3.0, sample_rate=SR, seed=11).audio


@pytest.fixture(scope="module")
def model():
    return Anticipator()


@pytest.fixture(scope="module")
def reference(audio, model):
    """The 1024-block timeline of the clip."""
    return structure_timeline(audio, SR, anticipator=model)


# ------------------------------------------------------------------ hysteresis


def reference_display(rows, alpha: float, margin: float, dwell: int):
    """Plain-python restatement of the documented rule, step by step on lists of floats.

    Returns the displayed label after each step (-1 before the first valid step) and the
    smoothed probabilities after each step (None before the first valid step)."""
    shown, smoothed = [], []
    s, d, candidate, count = None, -1, -1, 0
    for row in rows:
        p = [float(v) for v in row]
        if all(0.0 <= v <= 1.0 for v in p):  # NaN compares False: skipped with +-inf, < 0, > 1
            if s is None:
                s = p
                d = max(range(len(s)), key=s.__getitem__)  # the first of equal maxima
            else:
                s = [si + alpha * (pi - si) for si, pi in zip(s, p, strict=True)]
                c = max(range(len(s)), key=s.__getitem__)
                if c != d and s[c] - s[d] >= margin:
                    count = count + 1 if c == candidate else 1
                    candidate = c
                    if count >= dwell:
                        d, candidate, count = c, -1, 0
                else:
                    candidate, count = -1, 0
        shown.append(d)
        smoothed.append(None if s is None else list(s))
    return shown, smoothed


_BAD_VALUES = [float("nan"), float("inf"), -float("inf"), -1e-9, 1.0 + 1e-9, 1e300, -1e300]
_values = st.one_of(st.floats(0.0, 1.0), st.sampled_from([0.0, 0.125, 0.25, 0.5, 1.0]))


@st.composite
def _row(draw):
    """8 values in [0, 1] (ties likely: a few repeated values), sometimes with a bad value."""
    row = draw(st.lists(_values, min_size=8, max_size=8))
    if draw(st.integers(0, 9)) == 0:
        row[draw(st.integers(0, 7))] = draw(st.sampled_from(_BAD_VALUES))
    return row


#: Sequences as runs of repeated rows (long runs: a lasting section), 0 to ~400 steps.
sequences = st.lists(st.tuples(_row(), st.integers(1, 40)), max_size=10).map(
    lambda runs: [row for row, n in runs for _ in range(n)])
params = st.builds(Hysteresis, alpha=st.one_of(st.floats(0.01, 1.0), st.just(1.0)),
                   margin=st.one_of(st.floats(0.0, 0.9), st.just(0.0)),
                   dwell_steps=st.integers(1, 20))
NAN = float("nan")


@settings(max_examples=200, deadline=None)
@given(rows=sequences, p=params)
@example(rows=[], p=Hysteresis())  # nothing: nothing displayed
@example(rows=[[0.1] * 7 + [0.3]], p=Hysteresis())  # one step
@example(rows=[[0.0] * 8] * 5, p=Hysteresis())  # silence (all zero): the first label
@example(rows=[[1 / 8] * 8] * 5, p=Hysteresis())  # ties: the first label, never a switch
@example(rows=(np.eye(8)[[0, 1, 1, 1, 1, 2, 1]] * 0.93 + 0.01).tolist(),
         p=Hysteresis(1.0, 0.0, 1))  # plain argmax
@example(rows=[[NAN] * 8, [0.0, 1.0] + [0.0] * 6, [float("inf")] * 8, [1.0] + [0.0] * 7],
         p=Hysteresis(1.0, 0.0, 1))  # non-finite first: nothing displayed until a valid step
@example(rows=[[1.0] + [0.0] * 7] * 3 + [[0.0, 1.0] + [0.0] * 6, [NAN] * 8] * 4,
         p=Hysteresis(1.0, 0.5, 3))  # skipped steps neither count nor break the dwell
@example(rows=[[0.5, 0.5] + [0.0] * 6, [0.0, 1.0] + [0.0] * 6, [1e300] * 8] * 3,
         p=Hysteresis(0.5, 0.0, 2))
def test_hysteresis_matches_the_documented_rule(rows, p):
    h = LabelHysteresis(p)
    shown = [h.update(np.array(row, np.float64)) for row in rows]
    want, smoothed = reference_display(rows, p.alpha, p.margin, p.dwell_steps)
    assert shown == want
    assert h.displayed == (want[-1] if rows else -1)
    if rows and smoothed[-1] is not None:
        assert h.smoothed.tolist() == smoothed[-1]  # the same float64 operations: exact
    # no flicker: every run of a label but the first and the last lasts >= dwell_steps steps
    changes = [t for t in range(1, len(shown)) if shown[t] != shown[t - 1]]
    runs = np.diff(changes)
    assert np.all(runs >= p.dwell_steps)
    # a switch between labels needs the margin in the smoothed probabilities
    for t in changes:
        if shown[t - 1] >= 0:
            assert smoothed[t][shown[t]] - smoothed[t][shown[t - 1]] >= p.margin
    if p == Hysteresis(1.0, 0.0, 1):  # plain argmax of the valid steps
        valid = [r for r in rows if all(0.0 <= v <= 1.0 for v in r)]
        assert [x for x, r in zip(shown, rows, strict=True) if r in valid] == [
            int(np.argmax(r)) for r in valid]


@settings(max_examples=100, deadline=None)
@given(rows=sequences, alpha=st.floats(0.01, 1.0), margin=st.floats(0.0, 0.9),
       dwell=st.integers(0, 3))
@example(rows=[[1.0] + [0.0] * 7, [0.0, 1.0] + [0.0] * 6, [0.0, 1.0] + [0.0] * 6], alpha=1.0,
         margin=0.0, dwell=0)
def test_hysteresis_kernel_with_dwell_0_and_1(rows, alpha, margin, dwell):
    """The kernel itself (Hysteresis refuses dwell 0): dwell 0 switches like dwell 1, at the
    first supporting step."""
    smoothed, state = np.zeros(8), np.array([-1, -1, 0])
    shown = [_hysteresis_step(np.array(r, np.float64), smoothed, state, alpha, margin, dwell)
             for r in rows]
    want, _ = reference_display(rows, alpha, margin, dwell)
    assert shown == want == reference_display(rows, alpha, margin, max(dwell, 1))[0]


def test_hysteresis_input_errors():
    h = LabelHysteresis()
    with pytest.raises(ValueError, match=r"probs: expected shape \(8,\)"):
        h.update(np.zeros(7))
    with pytest.raises(TypeError, match="probs: expected real numbers"):
        h.update(np.array(["a"] * 8))
    assert h.displayed == -1 and h.update(np.eye(8, dtype=np.float32)[3]) == 3


def test_hysteresis_kernel_compiles_when_made_not_on_update():
    """A fresh interpreter: making the tracker compiles (or loads from numba's cache) the
    hysteresis and model kernels; updates then add no compiled signature."""
    code = (
        "from fractalsync_models import anticipator as a\n"
        "from fractalsync_tracking import structure as s\n"
        "import numpy as np\n"
        "t = s.StructureTracker()\n"
        "kernels = (s._hysteresis_step, a._sanitized_step)\n"
        "made = [len(k.signatures) for k in kernels]\n"
        "assert all(n == 1 for n in made), made\n"
        "h = s.LabelHysteresis(s.Hysteresis(0.3, 0.1, 2))\n"
        "for row in [*np.eye(8, dtype=np.float32), np.full(8, 0.125), np.full(8, np.nan)]:\n"
        "    h.update(row)\n"
        "    t.anticipator.step(np.zeros(272, np.float32), np.zeros(5, np.float32), copy=False)\n"
        "t.anticipator.step(np.zeros(272), np.full(5, np.inf))\n"
        "assert [len(k.signatures) for k in kernels] == made\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=300)


def test_hysteresis_holds_through_a_short_blip_and_follows_a_lasting_change():
    verse, chorus = np.eye(8)[2] * 0.9 + 0.0125, np.eye(8)[4] * 0.9 + 0.0125
    h = LabelHysteresis(Hysteresis(alpha=0.5, margin=0.1, dwell_steps=3))
    seq = [verse] * 5 + [chorus] * 2 + [verse] * 5 + [chorus] * 8
    shown = [h.update(p) for p in seq]
    assert shown[:12] == [2] * 12  # two chorus steps: not enough
    first = shown.index(4)
    assert first == 12 + 3  # one step for the average to cross by the margin, then 3 of dwell
    assert shown[first:] == [4] * (len(seq) - first)
    h.reset()
    assert h.displayed == -1 and h.update(chorus) == 4


@pytest.mark.parametrize("kwargs, match", [
    ({"alpha": 0.0}, "alpha"), ({"alpha": 1.5}, "alpha"), ({"alpha": float("nan")}, "alpha"),
    ({"margin": -0.1}, "margin"), ({"margin": 1.0}, "margin"), ({"margin": True}, "margin"),
    ({"dwell_steps": 0}, "dwell_steps"), ({"dwell_steps": 2.0}, "dwell_steps"),
])
def test_bad_hysteresis_parameters(kwargs, match):
    with pytest.raises(ValueError, match=match):
        Hysteresis(**kwargs)
    with pytest.raises(TypeError, match="Hysteresis"):
        LabelHysteresis({"alpha": 0.5})


# ------------------------------------------------------------------ segments


def test_display_segments():
    times = np.array([0.06, 0.14, 0.22, 0.30, 0.38])
    segs = display_segments(times, np.array([2, 2, 4, 4, 2]), 0.5)
    assert segs == (DisplaySegment(0.06, 0.22, "verse"), DisplaySegment(0.22, 0.38, "chorus"),
                    DisplaySegment(0.38, 0.5, "verse"))
    assert display_segments(times[:1], np.array([0]), 0.06) == (
        DisplaySegment(0.06, 0.06, "silence"),)
    assert display_segments(np.zeros(0), np.zeros(0, np.int64), 0.0) == ()
    with pytest.raises(ValueError, match="end"):
        display_segments(times, np.zeros(5, np.int64), 0.3)
    with pytest.raises(ValueError, match="increasing"):
        display_segments(times[::-1], np.zeros(5, np.int64), 1.0)
    with pytest.raises(ValueError, match="indices"):
        display_segments(times, np.full(5, 8), 1.0)
    with pytest.raises(ValueError, match="same length"):
        display_segments(times, np.zeros(4, np.int64), 1.0)


# ------------------------------------------------------------------ tracker on the slow clock


def test_tracker_feeds_the_model_the_slow_step_inputs(audio, model, reference):
    """The tracker's outputs are Anticipator.run on the SlowStepInputs of the same stream, one
    per 4 analysis frames, at 12.5 Hz."""
    clock = AnalysisClock()
    beats = BeatTracker(clock=clock)
    inputs = clock.add_consumer(SlowStepInputs())
    times, feats, beat = [], [], []
    for i in range(0, len(audio), 1024):
        steps = inputs.take(beats.push(audio[i:i + 1024], SR).states)
        times.append(steps.times.copy())
        feats.append(steps.audio_features.copy())
        beat.append(steps.beat_features.copy())
    sec, haz, _ = model.run(np.concatenate(feats), np.concatenate(beat))
    np.testing.assert_array_equal(reference.times, np.concatenate(times))
    assert len(reference.times) == clock.frames_emitted // 4 > 30
    np.testing.assert_allclose(np.diff(reference.times), 1 / RATE_HZ, atol=1e-9)
    np.testing.assert_allclose(reference.section_probs, sec, atol=1e-5)
    np.testing.assert_allclose(reference.hazard_probs, haz, atol=1e-5)
    assert reference.section_probs.dtype == np.float32 and reference.labels.dtype == np.int64
    assert np.all(np.diff(reference.beats) > 0) and set(reference.downbeats) <= set(
        reference.beats)
    assert reference.segments[0].start == reference.times[0]
    assert reference.segments[-1].end == reference.duration == len(audio) / SR
    assert [s.label for s in reference.segments] == [
        SECTION_LABELS[k] for i, k in enumerate(reference.labels)
        if i == 0 or k != reference.labels[i - 1]]


def test_seam_publishes_each_steps_state(audio, model, reference):
    tracker = StructureTracker(model, history_steps=4)
    clock = SlowClock(SR, structure=tracker)
    published = []
    for i in range(0, len(audio), 1024):
        before = tracker.steps
        state = clock.push(audio[i:i + 1024])
        if tracker.steps == 0:
            assert tracker.latest is None and tracker.displayed_label is None
            assert state.structure == StructureState.neutral()
            continue
        assert state.structure is tracker.latest
        if tracker.steps > before:
            published.append((tracker.latest_time, tracker.latest, tracker.displayed_label))
    assert tracker.steps == len(reference.times)
    last = reference.times.size - 1
    assert published[-1][0] == reference.times[last]
    assert published[-1][1].section_probs == tuple(reference.section_probs[last].tolist())
    assert published[-1][1].hazard_probs == tuple(reference.hazard_probs[last].tolist())
    assert published[-1][2] == reference.label_names[last]
    hist = tracker.history
    assert len(hist) == 4  # bounded
    assert [h.time for h in hist] == list(reference.times[-4:])
    np.testing.assert_array_equal(np.array([h.section_probs for h in hist]),
                                  reference.section_probs[-4:])
    clock.reset()  # the analysis clock resets its consumers, the tracker included
    assert (tracker.steps, tracker.latest, tracker.history) == (0, None, ())
    for i in range(0, len(audio), 1024):
        clock.push(audio[i:i + 1024])
    assert tracker.latest.section_probs == published[-1][1].section_probs  # a fresh stream


@settings(max_examples=6, deadline=None)
@given(sizes=st.lists(st.sampled_from([1, 7, 100, 441, 1000, 1764, 4096, 30001]), min_size=1,
                      max_size=3))
@example(sizes=[10**7])  # the whole clip in one push
@example(sizes=[1])
def test_block_partitions_do_not_matter(audio, model, reference, sizes):
    """Any partition of the clip into pushes gives the 1024-block timeline (small blocks run on
    the first 0.6 s only, to keep the number of pushes down)."""
    small = sum(sizes) / len(sizes) < 400
    x = audio[: int(0.6 * SR)] if small else audio
    tracker = StructureTracker(model, history_steps=None)
    clock = SlowClock(SR, structure=tracker)
    i = j = 0
    while i < len(x):
        clock.push(x[i:i + sizes[j % len(sizes)]])
        i += sizes[j % len(sizes)]
        j += 1
    hist = tracker.history
    n = len(hist)
    assert n == (len(reference.times) if not small else n) and n > 0
    np.testing.assert_array_equal([h.time for h in hist], reference.times[:n])
    np.testing.assert_array_equal([h.section_probs for h in hist], reference.section_probs[:n])
    np.testing.assert_array_equal([h.hazard_probs for h in hist], reference.hazard_probs[:n])
    np.testing.assert_array_equal([h.label for h in hist], reference.labels[:n])


@settings(max_examples=5, deadline=None)
@given(cut=st.floats(0.0, 1.0), block=st.sampled_from([256, 1024, 3000]))
@example(cut=0.0, block=1024)
def test_appending_audio_never_changes_earlier_outputs(audio, model, reference, cut, block):
    n = int(cut * len(audio))
    part = structure_timeline(audio[:n], SR, block, anticipator=model)
    k = len(part.times)
    assert k <= len(reference.times)
    np.testing.assert_array_equal(part.times, reference.times[:k])
    np.testing.assert_array_equal(part.section_probs, reference.section_probs[:k])
    np.testing.assert_array_equal(part.hazard_probs, reference.hazard_probs[:k])
    np.testing.assert_array_equal(part.labels, reference.labels[:k])
    assert set(part.beats) <= set(reference.beats)
    if k:  # a step is published once the audio reaches 32 ms (half window) past its time
        assert part.times[-1] + 0.032 <= n / SR
        assert part.segments[-1].end == n / SR
    else:
        assert part.segments == ()


def test_timeline_equals_the_training_data_path(audio, model, reference, tmp_path):
    """fractalsync-prepare's live inputs of the same file (the training data), run through the
    model, give the timeline's outputs: the runtime sees what the model was trained on. (The
    preparation also pushes 0.25 s of silence after the file; the last steps, whose frames
    reach past the end, differ.)"""
    import soundfile as sf

    from fractalsync_tracking.prepare import live_inputs

    path = tmp_path / "clip.wav"
    sf.write(path, audio, SR, subtype="FLOAT")
    live = live_inputs(path)
    sec, haz, _ = model.run(live.audio_features, live.beat_features)
    n = np.searchsorted(reference.times, reference.duration - 0.2)
    assert n > 30 and len(live.times) >= n
    np.testing.assert_array_equal(live.times[:n], reference.times[:n])
    np.testing.assert_allclose(sec[:n], reference.section_probs[:n], atol=1e-5)
    np.testing.assert_allclose(haz[:n], reference.hazard_probs[:n], atol=1e-5)
    np.testing.assert_array_equal(live.beats[live.beats < reference.duration - 0.3],
                                  reference.beats[reference.beats < reference.duration - 0.3])


def test_timeline_of_stereo_int_pcm_and_nothing(audio, model, reference):
    pcm = np.round(np.clip(audio, -1, 1) * 32767).astype(np.int16)
    stereo = structure_timeline(np.stack([pcm, pcm], axis=1), SR, anticipator=model)
    assert len(stereo.times) == len(reference.times)
    empty = structure_timeline(np.zeros(0, np.float32), SR, anticipator=model)
    assert empty.times.shape == (0,) and empty.section_probs.shape == (0, 8)
    assert empty.hazard_probs.shape == (0, 5) and empty.segments == () and empty.duration == 0


def test_errors(audio, model):
    with pytest.raises(TypeError, match="step"):
        StructureTracker(object())
    for bad in (-1, 2.5, True):
        with pytest.raises(ValueError, match="history_steps"):
            StructureTracker(model, history_steps=bad)
    for bad in (0, -5, 1.5):
        with pytest.raises(ValueError, match="block_samples"):
            structure_timeline(audio, SR, bad, anticipator=model)
    with pytest.raises(ValueError, match="shape"):
        structure_timeline(np.zeros((2, 2, 2)), SR, anticipator=model)
    tracker = StructureTracker(model)
    clock = AnalysisClock()
    beats = BeatTracker(clock=clock)
    clock.add_consumer(tracker)
    states = beats.push(audio[:SR // 2], SR).states
    assert tracker.pending_steps == clock.frames_emitted // 4 > 0
    with pytest.raises(ValueError, match="states"):
        tracker.update(states[:-1])  # a state missing
    assert tracker.pending_steps == clock.frames_emitted // 4  # nothing consumed
    assert tracker.update(states) is tracker.latest is not None
    assert tracker.pending_steps == 0 and tracker.steps == clock.frames_emitted // 4


# ------------------------------------------------------------------ the evaluation script


@pytest.fixture(scope="module")
def measure():
    """benchmarks/measure_structure.py as a module."""
    import importlib.util
    import sys
    from pathlib import Path

    path = Path(__file__).parent.parent / "benchmarks" / "measure_structure.py"
    spec = importlib.util.spec_from_file_location("measure_structure", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up
    spec.loader.exec_module(module)
    yield module
    del sys.modules[spec.name]


def synthetic_timeline(sections, shown, hazard_fn, duration):
    """A timeline on the 12.5 Hz grid with one-hot-ish probabilities of ``shown(t)``, hazard
    ``hazard_fn(times)``, beats every 0.5 s and a downbeat every 4 beats."""
    from fractalsync_tracking.structure import StructureTimeline

    times = np.arange(0.06, duration - 0.04, 0.08)
    labels = np.array([shown(t) for t in times], np.int64)
    probs = np.full((times.size, 8), 0.01, np.float32)
    probs[np.arange(times.size), labels] = 0.93
    beats = np.arange(0.25, duration, 0.5)
    return StructureTimeline(times, probs, hazard_fn(times).astype(np.float32), labels,
                             display_segments(times, labels, duration), beats, beats[::4],
                             duration)


def test_evaluation_scores_known_answers(measure):
    from fractalsync_models.training.labels import Segment as Section
    from fractalsync_models.training.targets import beats_to_next_boundary, hazard_targets

    sections = [Section(0.0, 8.25, "intro"), Section(8.25, 24.25, "verse"),
                Section(24.25, 40.25, "chorus"), Section(40.25, 48.0, "outro")]
    segs = measure.song_segments(sections)
    truth_at = lambda t: SECTION_LABELS.index(next(s.label for s in sections if t < s.end))  # noqa: E731
    ref = np.array([8.25, 24.25, 40.25])
    beats = np.arange(0.25, 48.0, 0.5)
    perfect_hazard = lambda t: hazard_targets(beats_to_next_boundary(t, beats, ref))  # noqa: E731
    good = measure.evaluate_song("good", synthetic_timeline(
        sections, truth_at, perfect_hazard, 48.0), segs)
    np.testing.assert_array_equal(good.ref, ref)
    s = measure.summarize([good])
    assert s["acc8_display"] == s["acc8_argmax"] == s["acc7_display"] == 1.0
    assert s["acc8_majority"] == pytest.approx(16 / 48, abs=0.01)  # verse or chorus: 16 s
    assert s["hr05f_display"] == s["hr3f_display"] == s["hr3f_argmax"] == 1.0
    assert 0.0 <= s["lag_display"] <= 0.08  # the first step at or after each boundary
    assert all(s[f"auroc_{h}"] == 1.0 and s[f"brier_{h}"] == 0.0 for h in (1, 2, 4, 8, 16))
    assert all(0.0 <= s[f"auroc_prior_{h}"] < 1.0 for h in (1, 2, 4, 8, 16))
    assert s["true_changes_per_min"] == pytest.approx(3 / 0.8, rel=0.01)
    assert all(measure.targets_met(s).values())
    conf = measure.confusion([good])
    assert np.allclose(conf, np.diag(np.diag(conf))) and conf.sum() == pytest.approx(
        good.truth.size * 0.08)

    def late_shown(t):  # 2 s late, and pre-chorus for verse
        k = truth_at(max(t - 2.0, 0.0))
        return 3 if k == 2 else k

    late = measure.evaluate_song("late", synthetic_timeline(
        sections, late_shown, lambda t: np.full((t.size, 5), 0.5), 48.0), segs)
    s2 = measure.summarize([late])
    assert s2["hr05f_display"] == 0.0 and s2["hr3f_display"] == 1.0
    assert s2["lag_display"] == pytest.approx(2.0, abs=0.08)
    assert s2["acc7_display"] > s2["acc8_display"]  # pre-chorus counts as verse in 7 labels
    assert all(s2[f"auroc_{h}"] == 0.5 for h in (1, 2, 4, 8, 16))  # a constant hazard
    met = measure.targets_met(s2)
    assert met["HR3F >= 0.7"] and not met["AUROC >= 0.85 at 4 and 8 beats"]
    import dataclasses

    beatless = dataclasses.replace(synthetic_timeline(sections, truth_at, perfect_hazard, 48.0),
                                   beats=np.zeros(0), downbeats=np.zeros(0))
    none = measure.evaluate_song("beatless", beatless, segs)
    assert none.valid.size == none.truth.size and not none.valid.any()
    s3 = measure.summarize([none])
    assert np.isnan(s3["auroc_4"]) and np.isnan(s3["brier_prior_4"]) and s3["acc8_display"] == 1
    text = measure.format_tables({"good": s, "late": s2})
    assert "| HR3F, displayed segments | 1.000 | 1.000 |" in text
    assert "| section accuracy (8 labels), displayed | 1.000 |" in text
    assert "| chorus | 0 | 0 | 0 | 0 | 100 |" in measure.format_confusion(conf)


def test_evaluation_quick_run(measure, beatnet_models_dir, capsys):
    assert measure.main(["--quick", "--jobs", "1"]) == 0
    out = capsys.readouterr().out
    assert "| metric | numpy | midi |" in out and "| AUROC 8 beats (phrase prior) |" in out
    assert out.count("targets, ") == 2 and "Displayed label vs truth, midi" in out
