"""Tests for the structured-song generator (fractalsync_models.training.song_*): the tempo map
against a numerical integral, form-planner invariants, annotations, determinism, and the
rendered audio: sections sound different, cues are there, silences are silent."""

from __future__ import annotations

import csv
import dataclasses

import numpy as np
import pytest
import soundfile as sf
from hypothesis import example, given, settings
from hypothesis import strategies as st
from scipy.integrate import quad
from scipy.ndimage import maximum_filter1d, uniform_filter1d

from fractalsync_models.training.labels import SECTION_LABELS, read_csv
from fractalsync_models.training.song_form import (
    MAX_BPM,
    MIN_BPM,
    FormSection,
    TempoMap,
    fit_form,
    plan_form,
)
from fractalsync_models.training.song_generator import PEAK, Song, generate_song
from fractalsync_models.training.song_midi import _fluidsynth, _render, midi_tempo_map, smf_bytes
from fractalsync_models.training.song_parts import (
    DRUM_KEYS,
    LIFT_PARTS,
    VOICES,
    Notes,
    arrange,
    write_notes,
)
from fractalsync_models.training.song_plan import SongPlan, plan_song
from fractalsync_models.training.song_voices import draw_palette, render_voice

SR = 22050


@pytest.fixture(scope="module")
def songs() -> list[Song]:
    """Six 60 s songs (both meters, with and without pre-chorus, hook starts...)."""
    return [generate_song(seed, duration_s=60.0) for seed in range(6)]


# --- independent measurements on the audio ----------------------------------------------------


def _rms_db(x: np.ndarray) -> float:
    return float(10 * np.log10(np.mean(np.asarray(x, dtype=np.float64) ** 2) + 1e-20))


def _onset_times(song: Song) -> np.ndarray:
    """Onsets (s): peaks of the mean positive log-spectral difference (1024-sample frames, hop
    256) that are local maxima over +-3 frames and above the mean + 0.5 std of a 2 s window."""
    x = song.audio.astype(np.float64)
    hop, n = 256, 1024
    frames = np.lib.stride_tricks.sliding_window_view(x, n)[::hop] * np.hanning(n)
    spec = np.log1p(np.abs(np.fft.rfft(frames, axis=1)) / 0.01)
    flux = np.maximum(np.diff(spec, axis=0), 0.0).mean(axis=1)
    w = 2 * int(song.sample_rate / hop) + 1
    mean = uniform_filter1d(flux, w)
    std = np.sqrt(np.maximum(uniform_filter1d(flux**2, w) - mean**2, 0.0))
    peaks = (flux == maximum_filter1d(flux, 7)) & (flux > mean + 0.5 * std)
    return ((np.arange(flux.size) + 1) * hop + n / 2)[peaks] / song.sample_rate


def _numeric_seconds(tm: TempoMap, b: float) -> float:
    """Seconds to beat ``b``: adaptive quadrature of 60 / bpm_at over each stretch between
    breakpoints (the integrand is smooth there)."""
    points = np.unique(np.concatenate([[0.0, b], tm.beat[(tm.beat > 0) & (tm.beat < b)]]))
    return sum(
        quad(lambda x: 60.0 / float(tm.bpm_at(x)), p0, p1, epsabs=1e-12, epsrel=1e-12)[0]
        for p0, p1 in zip(points[:-1], points[1:], strict=True)
    )


# --- contract and tempo map ---------------------------------------------------------------------


@st.composite
def tempo_maps(draw):
    k = draw(st.integers(1, 5))
    gaps = draw(
        st.lists(st.sampled_from([0.0, 0.25, 1.0, 3.0, 16.0, 64.0]), min_size=k - 1, max_size=k - 1)
    )
    beats = np.concatenate([[0.0], np.cumsum(gaps)])
    bpms = draw(st.lists(st.floats(20.0, 400.0), min_size=k, max_size=k))
    return TempoMap(beats, np.array(bpms))


@settings(max_examples=60, deadline=None)
@given(tm=tempo_maps(), b=st.floats(0.0, 120.0))
@example(tm=TempoMap(np.array([0.0]), np.array([120.0])), b=0.0)
@example(tm=TempoMap(np.array([0.0, 4.0, 4.0]), np.array([100.0, 100.0, 150.0])), b=4.0)
@example(tm=TempoMap(np.array([0.0, 8.0]), np.array([100.0, 100.0 + 1e-9])), b=7.5)
def test_seconds_at_matches_numerical_integral(tm, b):
    got = float(tm.seconds_at(b))
    # before beat 0 the first tempo holds
    assert float(tm.seconds_at(-b)) == pytest.approx(-b * 60.0 / tm.bpm[0], rel=1e-12)
    assert got == pytest.approx(_numeric_seconds(tm, b), rel=1e-9, abs=1e-12)
    # monotonic, and vectorised evaluation agrees with scalar calls
    grid = np.linspace(0.0, b, 7)
    times = tm.seconds_at(grid)
    assert np.all(np.diff(times) >= 0)
    assert times[-1] == got
    assert tm.seconds_at(np.zeros((2, 3))).shape == (2, 3)


def test_tempo_map_rejects_bad_breakpoints():
    with pytest.raises(ValueError, match="non-decreasing"):
        TempoMap(np.array([0.0, 2.0, 1.0]), np.array([100.0, 100.0, 100.0]))
    with pytest.raises(ValueError, match="start at 0"):
        TempoMap(np.array([1.0]), np.array([100.0]))
    with pytest.raises(ValueError, match="> 0 BPM"):
        TempoMap(np.array([0.0]), np.array([-5.0]))
    with pytest.raises(ValueError, match="NaN"):
        TempoMap(np.array([0.0]), np.array([np.nan]))
    with pytest.raises(ValueError, match="at least one"):
        TempoMap(np.array([]), np.array([]))
    with pytest.raises(ValueError, match="finite"):
        TempoMap.constant(120.0).seconds_at([np.inf])


# --- the form planner ---------------------------------------------------------------------------


def _check_plan(plan: SongPlan) -> None:
    """Invariants every plan must satisfy."""
    bpb = plan.beats_per_bar
    assert bpb in (3, 4)
    assert np.all((plan.tempo.bpm >= MIN_BPM) & (plan.tempo.bpm <= MAX_BPM))
    sections = plan.sections
    assert sections[0].start == 0.0 and sections[-1].end == plan.duration_s
    for a, b in zip(sections[:-1], sections[1:], strict=True):
        assert a.end == b.start and a.label != b.label
    assert all(s.label in SECTION_LABELS and s.end > s.start for s in sections)
    beats = plan.beats
    assert np.all(np.diff(beats) > 0) and beats[0] == plan.lead_in_s
    downbeats = plan.downbeats
    np.testing.assert_array_equal(downbeats, beats[::bpb])
    music = [s for s in sections if s.label != "silence"]
    assert all(s.label == "silence" for s in sections if s not in music)
    # non-silent sections start on downbeats, contiguous from bar 0
    np.testing.assert_allclose(
        [s.start for s in music], downbeats[[a.first_bar for a in plan.arrangement]], atol=0
    )
    assert all(a.bars >= 2 for a in plan.arrangement)
    # the music fills the duration to within one bar and a 0.5 s tail (it may end a float
    # rounding, ~1e-13 s, after a duration such as 599.9999999999999)
    last_bar = 60.0 * bpb / plan.tempo.bpm.min()
    assert -1e-9 <= plan.duration_s - plan.music_end_s <= last_bar + 0.5 + 1e-9
    for notes in plan.notes.values():
        assert np.all(np.diff(notes.beat) >= 0) and np.all(notes.length > 0)
        assert np.all((notes.beat >= 0) & (notes.beat + notes.length <= plan.n_beats + 1e-9))
        # every onset on the sixteenth-note grid
        np.testing.assert_array_equal(notes.beat * 4, np.round(notes.beat * 4))


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), duration=st.one_of(st.none(), st.floats(30.0, 600.0)))
@example(seed=0, duration=30.0)
@example(seed=4, duration=None)
@example(seed=20314, duration=599.9999999999999)
def test_plan_invariants(seed, duration):
    plan = plan_song(seed, duration)
    _check_plan(plan)
    if duration is None:
        assert 60.0 <= plan.duration_s <= 180.0
    else:
        assert plan.duration_s == duration


def test_forms_vary_and_follow_pop_conventions():
    plans = [plan_song(seed) for seed in range(40)]
    meters = {p.beats_per_bar for p in plans}
    assert meters == {3, 4}
    assert sum(p.tempo.bpm.size > 1 for p in plans) >= 5  # some tempo changes
    assert any(p.tempo.bpm.size == 3 and p.tempo.beat[1] == p.tempo.beat[2] for p in plans)
    assert any(p.tempo.bpm.size == 3 and p.tempo.beat[1] < p.tempo.beat[2] for p in plans)
    labels = [[a.label for a in p.arrangement] for p in plans]
    assert all("chorus" in seq for seq in labels)
    assert any("pre-chorus" not in seq for seq in labels)
    assert any("pre-chorus" in seq for seq in labels)
    assert any("bridge" in seq for seq in labels) and any("inst" in seq for seq in labels)
    assert any(seq[0] == "chorus" for seq in labels) and any(seq[0] == "intro" for seq in labels)
    assert any(seq.count("chorus") >= 3 for seq in labels)
    lengths = np.array([a.bars for p in plans for a in p.arrangement])
    assert np.mean(np.isin(lengths, (4, 8, 16))) > 0.6
    assert np.any(~np.isin(lengths, (4, 8, 16)))
    assert any(s.label == "silence" for p in plans for s in p.sections)
    assert len({p.harmony for p in plans}) > 20  # keys and progressions vary


@settings(max_examples=80, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), bar_s=st.floats(1.0, 3.5), bars=st.integers(6, 300))
@example(seed=0, bar_s=3.4, bars=6)
def test_fit_form_fills_the_budget_exactly(seed, bar_s, bars):
    rng = np.random.default_rng(seed)
    form = plan_form(rng)
    fitted = fit_form(form, bar_s, bars * bar_s, rng)
    assert sum(s.bars for s in fitted) == bars
    assert all(s.bars >= 2 for s in fitted)
    assert all(a.label != b.label for a, b in zip(fitted[:-1], fitted[1:], strict=True))
    assert fitted[0].label == form[0].label and fitted[-1].label == form[-1].label


def test_fit_form_refuses_too_short_and_keeps_ends():
    form = [
        FormSection("intro", 8),
        FormSection("verse", 16),
        FormSection("chorus", 8),
        FormSection("outro", 8),
    ]
    with pytest.raises(ValueError, match="at least 6 bars"):
        fit_form(form, bar_seconds=2.0, budget_s=10.0, rng=np.random.default_rng(0))
    short = fit_form(form, bar_seconds=2.0, budget_s=20.0, rng=np.random.default_rng(0))
    assert sum(s.bars for s in short) == 10
    assert short[0].label == "intro" and short[-1].label == "outro"


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(seed=-1), "seed"),
        (dict(seed=1.5), "seed"),
        (dict(seed=True), "seed"),
        (dict(seed=1, duration_s=10.0), "duration_s"),
        (dict(seed=1, duration_s=float("nan")), "duration_s"),
        (dict(seed=1, sample_rate=100), "sample_rate"),
        (dict(seed=1, sample_rate=22050.5), "sample_rate"),
    ],
)
def test_bad_arguments_are_named(kwargs, match):
    seed = kwargs.pop("seed")
    with pytest.raises(ValueError, match=match):
        generate_song(seed, **kwargs)


# --- rendering ----------------------------------------------------------------------------------


def test_same_seed_same_audio_other_seed_differs():
    a = generate_song(7, duration_s=30.0)
    b = generate_song(7, duration_s=30.0)
    c = generate_song(8, duration_s=30.0)
    np.testing.assert_array_equal(a.audio, b.audio)
    np.testing.assert_array_equal(a.beats, b.beats)
    assert a.sections == b.sections
    assert a.audio.size != c.audio.size or not np.array_equal(a.audio, c.audio)


def test_many_seeds_render_in_range():
    """40 seeds at 30 s (8 kHz to keep it quick): length, level, meter, tempo, annotations."""
    for seed in range(40):
        song = generate_song(seed, sample_rate=8000, duration_s=30.0)
        assert song.audio.dtype == np.float32 and song.audio.shape == (240000,)
        assert np.all(np.isfinite(song.audio))
        peak = float(np.max(np.abs(song.audio)))
        assert 0.5 < peak <= PEAK <= 0.9
        assert song.beats_per_bar in (3, 4) and MIN_BPM <= song.tempo_bpm <= MAX_BPM
        np.testing.assert_array_equal(song.downbeats, song.beats[:: song.beats_per_bar])
        np.testing.assert_array_equal(song.beat_positions[:: song.beats_per_bar], 1)
        _check_plan(song.plan)


def test_every_note_starts_at_its_sample():
    """Rendered alone, a note's sound starts exactly at round(t * sr) of its annotated time (the
    attack's first sample may be 0, so the next one counts) and is silent before it: the
    first, the last and three random notes of every voice."""
    plan = plan_song(11, 40.0)
    palette = draw_palette(np.random.default_rng(0), SR)
    n = int(plan.duration_s * SR)
    pick = np.random.default_rng(2)
    for voice in VOICES:
        notes = plan.notes[voice]
        assert len(notes) > 0, voice
        chosen = {0, len(notes) - 1, *pick.integers(0, len(notes), 3).tolist()}
        for i in sorted(chosen):
            one = Notes(
                *(
                    np.atleast_1d(getattr(notes, f)[i])
                    for f in ("beat", "length", "pitch", "velocity")
                )
            )
            start = int(np.rint(plan.seconds(one.beat[0]) * SR))
            audio = render_voice(voice, one, plan.seconds, n, palette, np.random.default_rng(1))
            assert np.all(audio[:start] == 0), (voice, i)
            if voice == "fx":  # the riser fades in from zero
                assert np.any(audio[start : start + SR // 4] != 0)
            else:
                assert np.any(audio[start : start + 2] != 0), (voice, i)


def test_first_kick_on_first_beat(songs):
    """Songs whose drums start on the first beat (3 of the 6): the audio's first onset (20x the
    noise floor) is within 3 ms of the first annotated beat. In all: kicks fall on beats."""
    checked = 0
    for song in songs:
        drums = song.plan.notes["drums"]
        kicks = drums.beat[drums.pitch == DRUM_KEYS["kick"]]
        on_beats = kicks[kicks == np.round(kicks)].astype(np.int64)
        np.testing.assert_allclose(song.plan.seconds(on_beats), song.beats[on_beats], atol=1e-12)
        if kicks[0] == drums.beat[0] == 0:
            checked += 1
            first = int(np.argmax(np.abs(song.audio) > 0.02))
            assert abs(first / song.sample_rate - song.beats[0]) < 0.003
    assert checked >= 3


def test_silence_is_silent_and_music_is_not(songs):
    seen = 0
    for song in songs:
        sr = song.sample_rate
        for s in song.sections:
            seg = song.audio[int(round(s.start * sr)) : int(round(s.end * sr))]
            if s.label == "silence":
                seen += 1
                assert _rms_db(seg) < -58.0 and np.max(np.abs(seg)) < 0.01
            else:
                assert _rms_db(seg) > -40.0
    assert seen >= 3


def test_chorus_is_louder_and_fuller_than_verse(songs):
    """Measured on the audio: chorus RMS > verse RMS + 3 dB (means per song). In the plan:
    the chorus has drums, bass, pad and lead, the verse never both pad and arpeggio."""
    compared = 0
    for song in songs + [generate_song(s, duration_s=90.0) for s in (20, 21)]:
        sr = song.sample_rate
        by_label: dict[str, list[float]] = {}
        for s in song.sections:
            seg = song.audio[int(s.start * sr) : int(s.end * sr)]
            by_label.setdefault(s.label, []).append(_rms_db(seg))
        if "verse" in by_label and "chorus" in by_label:
            compared += 1
            assert np.mean(by_label["chorus"]) > np.mean(by_label["verse"]) + 3.0
        for a in song.plan.arrangement:
            if a.label == "chorus":
                assert {"drums", "bass", "pad", "lead"} <= a.layers
            if a.label == "verse":
                assert "pad" not in a.layers or "arp" not in a.layers
    assert compared >= 4


def test_fill_adds_onsets_in_the_bar_before_a_boundary(songs):
    """Per boundary with a fill: more drum notes (cymbals aside: a lift may swap hi-hat
    sixteenths for ride eighths) in the last bar than in either of the two bars before the
    section's lift (the two before the last bar when it has none) (plan). On the audio, over
    all such boundaries: more detected onsets in the last bar than the mean of those two bars."""
    counts = []
    cymbals = [DRUM_KEYS[k] for k in ("hat", "open_hat", "ride", "crash")]
    for song in songs:
        plan = song.plan
        bpb, drums = plan.beats_per_bar, plan.notes["drums"]
        drums = Notes(*(x[~np.isin(drums.pitch, cymbals)] for x in
                        (drums.beat, drums.length, drums.pitch, drums.velocity)))
        onsets = _onset_times(song)
        down = song.downbeats
        for a in plan.arrangement[:-1]:
            before = max(a.lift_bars, 1)  # the reference bars end where the lift starts
            if not a.fill_beats or a.break_beats or a.bars < before + 2:
                continue
            end_bar = a.first_bar + a.bars
            bars = (end_bar - before - 2, end_bar - before - 1, end_bar - 1)
            per_bar = [
                np.sum((drums.beat >= b * bpb) & (drums.beat < (b + 1) * bpb)) for b in bars
            ]
            assert per_bar[2] > max(per_bar[:2]), (song.seed, a.label)
            counts.append([np.sum((onsets >= down[b]) & (onsets < down[b + 1])) for b in bars])
    counts = np.array(counts)
    assert len(counts) >= 6
    assert counts[:, 2].mean() > 1.05 * counts[:, :2].mean()


def test_cues_crash_riser_build_and_break(songs):
    n_riser = n_build = n_break = 0
    for song in songs:
        plan, sr, bpb = song.plan, song.sample_rate, song.beats_per_bar
        drums = plan.notes["drums"]
        crash = drums.beat[drums.pitch == DRUM_KEYS["crash"]]
        for a in plan.arrangement[1:]:  # a crash on the first downbeat of every new section
            assert a.first_bar * bpb in crash
        for a in plan.arrangement:
            end = (a.first_bar + a.bars) * bpb
            if a.riser_bars:
                n_riser += 1
                fx = plan.notes["fx"]
                assert np.any((fx.beat + fx.length == end) & (fx.length == a.riser_bars * bpb))
            if a.build:  # rising snare density (per beat played) over the last two bars
                n_build += 1
                snare = drums.beat[drums.pitch == DRUM_KEYS["snare"]]
                played = bpb - a.break_beats
                last = np.sum((snare >= end - bpb) & (snare < end - a.break_beats)) / played
                before = np.sum((snare >= end - 2 * bpb) & (snare < end - bpb)) / bpb
                assert last > before >= 2
            if a.break_beats:  # a drop-out: no note but the riser starts inside, audio drops
                n_break += 1
                b0 = end - a.break_beats
                for voice in VOICES[:-1]:
                    beat = plan.notes[voice].beat
                    assert not np.any((beat >= b0) & (beat < end)), voice
                t0, t1 = (float(x) for x in plan.seconds([b0, end]))
                hole = song.audio[int(t0 * sr + 0.15 * sr) : int(t1 * sr)]
                after = song.audio[int(t1 * sr) : int((2 * t1 - t0) * sr)]
                assert _rms_db(hole) < _rms_db(after) - 6.0
    assert n_riser >= 3 and n_build >= 1 and n_break >= 1


def test_riser_rises():
    plan = plan_song(3, 60.0)
    fx = plan.notes["fx"]
    assert len(fx) > 0
    palette = draw_palette(np.random.default_rng(0), SR)
    n = int(plan.duration_s * SR)
    audio = render_voice("fx", fx, plan.seconds, n, palette, np.random.default_rng(0))
    t0, t1 = (float(x) for x in plan.seconds([fx.beat[0], fx.beat[0] + fx.length[0]]))
    riser = audio[int(t0 * SR) : int(t1 * SR)]
    quarter = riser.size // 4
    assert _rms_db(riser[-quarter:]) > _rms_db(riser[:quarter]) + 10.0


def test_write_wav_and_label_csv(tmp_path):
    song = generate_song(2, duration_s=30.0, sample_rate=16000)
    wav, labels = song.write(tmp_path / "out")
    audio, sr = sf.read(wav, dtype="float32")
    assert sr == 16000
    np.testing.assert_array_equal(audio, song.audio)
    with open(labels, newline="") as fh:
        rows = list(csv.reader(fh))
    assert rows[0] == ["start", "end", "label"]
    assert [r[2] for r in rows[1:]] == [s.label for s in song.sections]
    assert [float(r[0]) for r in rows[1:]] == [s.start for s in song.sections]
    assert float(rows[-1][1]) == 30.0
    assert read_csv(labels) == list(song.sections)  # the project's label reader agrees


# --- early boundary cues (add_cues, issue 10) -------------------------------------------------


def _without_cues(plan: SongPlan) -> SongPlan:
    """``plan`` as it was before the early cues: the arrangement straight from :func:`arrange`
    (same form, same random stream) and its notes from :func:`write_notes`."""
    form = [FormSection(a.label, a.bars) for a in plan.arrangement]
    n = plan.beats_per_bar
    old = arrange(form, plan.harmony, n, np.random.default_rng([plan.seed, 3]))
    notes = write_notes(old, plan.harmony, n, np.random.default_rng([plan.seed, 4]))
    return dataclasses.replace(plan, arrangement=old, notes=notes)


def _lift_windows(plan: SongPlan) -> list[tuple[float, float]]:
    """``[start, end)`` beats of every lift of ``plan``."""
    n = plan.beats_per_bar
    return [((a.first_bar + a.bars - a.lift_bars) * n, (a.first_bar + a.bars) * n)
            for a in plan.arrangement if a.lift_bars]


def _outside(notes: Notes, windows: list[tuple[float, float]]) -> np.ndarray:
    keep = np.ones(len(notes), dtype=bool)
    for b0, b1 in windows:
        keep &= ~((notes.beat >= b0) & (notes.beat < b1))
    return np.stack([notes.beat, notes.length, notes.pitch, notes.velocity])[:, keep]


@pytest.mark.parametrize("variety", [False, True])
def test_cues_keep_the_form_beats_and_every_other_note(variety):
    """The cues come from a stream of their own: against the plan without them, the same
    sections, beats and key, the same arrangement but for the cue fields, risers only
    lengthened or added (ending where they did), and every note outside the lift windows
    identical (velocities included)."""
    changed = 0
    for seed in range(40):
        plan = plan_song(seed, variety=variety)
        old = _without_cues(plan)
        assert plan.sections == old.sections and plan.harmony == old.harmony
        np.testing.assert_array_equal(plan.beats, old.beats)
        for a, b in zip(plan.arrangement, old.arrangement, strict=True):
            assert dataclasses.replace(a, riser_bars=b.riser_bars, lift_bars=0, lift=()) == b
            assert a.riser_bars >= b.riser_bars
        windows = _lift_windows(plan)
        for voice in VOICES[:-1]:
            np.testing.assert_array_equal(_outside(plan.notes[voice], windows),
                                          _outside(old.notes[voice], windows), err_msg=voice)
            changed += not np.array_equal(_outside(plan.notes[voice], []),
                                          _outside(old.notes[voice], []))
        new_fx, old_fx = plan.notes["fx"], old.notes["fx"]
        assert set(old_fx.beat + old_fx.length) <= set(new_fx.beat + new_fx.length)
    assert changed >= 40  # and the cues did change notes


def test_cued_plans_are_deterministic():
    for seed in (0, 3, 17):
        a, b = plan_song(seed), plan_song(seed)
        assert a.arrangement == b.arrangement
        for voice in VOICES:
            np.testing.assert_array_equal(_outside(a.notes[voice], []),
                                          _outside(b.notes[voice], []))


def test_most_boundaries_get_an_early_cue():
    """Over 200 plans: a lift of 2 bars (4/4) or 3 bars (3/4), i.e. starting 8-9 beats ahead,
    or a riser at least that long, before 75-90 % of the boundaries; 10-25 % without either;
    lifts only in sections longer than the lift; drumless lifts swell; risers before other
    boundaries than into a chorus too."""
    boundaries = early = 0
    riser_kinds = set()
    for seed in range(200):
        plan = plan_song(seed)
        n = plan.beats_per_bar
        length = 2 if n == 4 else 3
        arr = plan.arrangement
        assert not arr[-1].lift_bars
        for a, nxt in zip(arr[:-1], arr[1:], strict=True):
            boundaries += 1
            assert a.lift_bars in (0, length)
            assert (a.lift_bars == 0) == (a.lift == ())
            assert set(a.lift) <= set(LIFT_PARTS)
            if a.lift_bars:
                assert a.bars > a.lift_bars and a.lift_bars * n >= 8
                assert (a.lift == ("swell",)) == ("drums" not in a.layers)
            if a.riser_bars >= length:
                riser_kinds.add((a.label, nxt.label))
            early += bool(a.lift_bars or a.riser_bars >= length)
    assert 0.75 <= early / boundaries <= 0.9, early / boundaries
    assert {("intro", "verse"), ("chorus", "bridge")} <= riser_kinds
    assert any(k[1] == "chorus" for k in riser_kinds)


def test_lift_notes_are_where_planned():
    """Per lift (60 plans): each planned part's notes are in its window, ride and open hi-hat
    eighths replace the hi-hats, the pickup and the pedal are there, the kick is gone from the
    first half when thinned, the drums (or, in a swell, the arpeggio) get louder over it; and
    ride notes occur in ride lifts only."""
    seen = set()
    for seed in range(60):
        plan = plan_song(seed)
        n = plan.beats_per_bar
        d = plan.notes["drums"]
        rides = d.beat[d.pitch == DRUM_KEYS["ride"]]
        in_ride_lift = np.zeros(rides.size, dtype=bool)
        for a in plan.arrangement:
            if not a.lift_bars:
                continue
            b1 = (a.first_bar + a.bars) * n
            b0 = b1 - a.lift_bars * n
            cue_end = b1 - a.break_beats
            win = (d.beat >= b0) & (d.beat < cue_end)
            keys = {k: win & (d.pitch == DRUM_KEYS[k]) for k in DRUM_KEYS}
            eighths = np.arange(b0, cue_end, 0.5)
            seen.update(a.lift)
            if "ride" in a.lift:
                in_ride_lift |= (rides >= b0) & (rides < b1)
                np.testing.assert_array_equal(d.beat[keys["ride"]], eighths)
                assert not keys["hat"].any() and not keys["open_hat"].any()
            if "open_hat" in a.lift:
                assert set(eighths) <= set(d.beat[keys["open_hat"]])
                assert not keys["hat"].any()
            if "toms" in a.lift or "snare" in a.lift:  # from the lift's first beat on
                key = DRUM_KEYS["tom_low" if "toms" in a.lift else "snare"]
                assert b0 in d.beat[win & (d.pitch == key)]
                pickup = keys["tom_low"] | keys["tom_mid"] | keys["tom_high"] | keys["snare"]
                assert np.sum(pickup & (d.beat < b0 + n)) >= 2
            if "thin" in a.lift:
                assert not np.any(keys["kick"] & (d.beat < (b0 + cue_end) / 2))
            if "pedal" in a.lift:
                bass = plan.notes["bass"]
                inside = (bass.beat >= b0) & (bass.beat < cue_end)
                dominant = plan.harmony.pitch(4, 36)
                dominant -= 12 if dominant > 47 else 0
                assert np.all(bass.pitch[inside] == dominant)
                np.testing.assert_array_equal(bass.beat[inside], eighths)
            loud = plan.notes["arp"] if a.lift == ("swell",) else d
            lw = (loud.beat >= b0) & (loud.beat < cue_end)
            first_beat = lw & (loud.beat < b0 + 1)
            last_bar = lw & (loud.beat >= cue_end - n)
            assert loud.velocity[last_bar].mean() > loud.velocity[first_beat].mean()
        assert in_ride_lift.all()
    assert seen == set(LIFT_PARTS)


def _render_voices(plan: SongPlan, voices=VOICES) -> np.ndarray:
    palette = draw_palette(np.random.default_rng([plan.seed, 5]), SR)
    n = int(round(plan.duration_s * SR))
    return sum(render_voice(v, plan.notes[v], plan.seconds, n, palette,
                            np.random.default_rng([plan.seed, 6])) for v in voices)


def _smf_audio(plan: SongPlan) -> np.ndarray:
    exe, sf2 = _fluidsynth(None, None)
    plan = dataclasses.replace(plan, tempo=midi_tempo_map(plan))
    return _render(smf_bytes(plan), SR, exe, sf2)


@pytest.mark.parametrize("renderer", ["numpy", "fluidsynth"])
def test_both_renderers_play_the_lifts(renderer):
    """The plan with and without its cues (risers aside), rendered: identical before the first
    lift, and inside every lift the difference is at least -20 dB of the cued audio."""
    plan = plan_song(3, 60.0)
    old = _without_cues(plan)
    plan = dataclasses.replace(plan, notes={**plan.notes, "fx": old.notes["fx"]})
    assert _lift_windows(plan)
    if renderer == "numpy":
        a, b = _render_voices(plan, VOICES[:-1]), _render_voices(old, VOICES[:-1])
        offset = 0
    else:
        a, b = _smf_audio(plan), _smf_audio(old)
        offset = -int(round(plan.lead_in_s * SR))  # the SMF starts at the first beat
    m = min(a.size, b.size)
    a, b = a[:m], b[:m]
    windows = [(int(plan.seconds(b0) * SR) + offset, int(plan.seconds(b1) * SR) + offset)
               for b0, b1 in _lift_windows(plan)]
    first = windows[0][0]
    assert np.max(np.abs(a[:first] - b[:first])) <= 1e-6 * np.max(np.abs(a))
    for s0, s1 in windows:
        assert _rms_db(a[s0:s1] - b[s0:s1]) > _rms_db(a[s0:s1]) - 20.0, (s0 / SR, s1 / SR)
