"""Tests for fractalsync_models.training.song_midi: the SMF writer read back by a small
independent reader, and the FluidSynth rendition aligned with its annotations."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from fractalsync_models.training.song_generator import PEAK, generate_song
from fractalsync_models.training.song_midi import (
    DEFAULT_SOUNDFONT,
    TICKS_PER_BEAT,
    FluidSynthMissing,
    _vlq,
    fluidsynth_offset_s,
    midi_tempo_map,
    render_midi_song,
    smf_bytes,
)
from fractalsync_models.training.song_parts import DRUM_KEYS, VOICES
from fractalsync_models.training.song_plan import plan_song

# --- a minimal SMF reader (written from the SMF 1.0 specification) ----------------------------


def _read_vlq(data: bytes, i: int) -> tuple[int, int]:
    value = 0
    while True:
        byte = data[i]
        i += 1
        value = (value << 7) | (byte & 0x7F)
        if not byte & 0x80:
            return value, i


def _read_smf(data: bytes) -> tuple[dict, list[list[tuple]]]:
    """Header fields and, per track, ``(abs_tick, kind, payload)`` events; kind is "meta:<n>",
    "on", "off", "program" or "cc". Running status is supported."""
    assert data[:4] == b"MThd" and int.from_bytes(data[4:8], "big") == 6
    header = {
        "format": int.from_bytes(data[8:10], "big"),
        "ntracks": int.from_bytes(data[10:12], "big"),
        "division": int.from_bytes(data[12:14], "big"),
    }
    i, tracks = 14, []
    while i < len(data):
        assert data[i : i + 4] == b"MTrk"
        length = int.from_bytes(data[i + 4 : i + 8], "big")
        j, end, tick, status, events = i + 8, i + 8 + length, 0, None, []
        while j < end:
            delta, j = _read_vlq(data, j)
            tick += delta
            if data[j] == 0xFF:
                kind = data[j + 1]
                size, j = _read_vlq(data, j + 2)
                events.append((tick, f"meta:{kind}", data[j : j + size]))
                j += size
                continue
            if data[j] & 0x80:
                status = data[j]
                j += 1
            hi, ch = status & 0xF0, status & 0x0F
            if hi == 0xC0:
                events.append((tick, "program", (ch, data[j])))
                j += 1
            else:
                a, b = data[j], data[j + 1]
                j += 2
                kind = {0x90: "on" if b else "off", 0x80: "off", 0xB0: "cc"}[hi]
                events.append((tick, kind, (ch, a, b)))
        assert j == end and events[-1][1] == "meta:47"  # end of track
        tracks.append(events)
        i = end
    assert len(tracks) == header["ntracks"]
    return header, tracks


def _tempo_seconds(conductor: list[tuple], ticks: np.ndarray, division: int) -> np.ndarray:
    """Seconds of ``ticks`` under the conductor track's tempo events (default 120 BPM)."""
    changes = [(t, int.from_bytes(p, "big")) for t, k, p in conductor if k == "meta:81"]
    if not changes or changes[0][0] != 0:
        changes.insert(0, (0, 500000))
    out = np.zeros(ticks.shape)
    for n, tick in enumerate(ticks):
        sec, prev_tick, prev_usec = 0.0, 0, changes[0][1]
        for t, usec in changes[1:]:
            if t >= tick:
                break
            sec += (t - prev_tick) * prev_usec / division / 1e6
            prev_tick, prev_usec = t, usec
        out[n] = sec + (tick - prev_tick) * prev_usec / division / 1e6
    return out


# --- SMF ----------------------------------------------------------------------------------------


@settings(max_examples=100, deadline=None)
@given(value=st.integers(0, 0x0FFFFFFF))
@example(value=0)
@example(value=127)
@example(value=128)
@example(value=0x3FFF)
@example(value=0x4000)
@example(value=0x0FFFFFFF)
def test_vlq_round_trip(value):
    data = _vlq(value)
    assert _read_vlq(data + b"\x00", 0) == (value, len(data))
    assert len(data) <= 4 and all(b & 0x80 for b in data[:-1]) and not data[-1] & 0x80


def test_vlq_rejects_negative():
    with pytest.raises(ValueError, match="delta time"):
        _vlq(-1)


def _ramp_seed() -> int:
    """The first seed whose (60 s) plan has a tempo ramp."""
    for seed in range(200):
        tm = plan_song(seed, 60.0).tempo
        if tm.beat.size == 3 and tm.beat[1] < tm.beat[2]:
            return seed
    raise AssertionError("no seed with a ramp in 0..199")


@pytest.mark.parametrize("seed", [0, 3, "ramp"])
def test_smf_reads_back_as_the_plan(seed):
    seed = _ramp_seed() if seed == "ramp" else seed
    plan = plan_song(seed, 60.0)
    header, tracks = _read_smf(smf_bytes(plan))
    assert header["format"] == 1 and header["division"] == TICKS_PER_BEAT
    conductor = tracks[0]
    (sig,) = [p for _, k, p in conductor if k == "meta:88"]
    assert sig[0] == plan.beats_per_bar and sig[1] == 2  # n/4
    # beat times from the written tempo events: the plan's within 0.2 ms, and exactly what the
    # renderer annotates (midi_tempo_map)
    ticks = np.arange(plan.n_beats) * TICKS_PER_BEAT
    seconds = plan.lead_in_s + _tempo_seconds(conductor, ticks, TICKS_PER_BEAT)
    np.testing.assert_allclose(seconds, plan.beats, atol=2e-4)
    np.testing.assert_allclose(
        seconds,
        plan.lead_in_s + midi_tempo_map(plan).seconds_at(np.arange(plan.n_beats)),
        atol=1e-9,
    )
    voiced = [v for v in VOICES if len(plan.notes[v])]
    assert len(tracks) == 1 + len(voiced)
    for voice, events in zip(voiced, tracks[1:], strict=True):
        notes = plan.notes[voice]
        assert [p for _, k, p in events if k == "meta:3"] == [voice.encode()]
        on = [(t, p) for t, k, p in events if k == "on"]
        off = [(t, p) for t, k, p in events if k == "off"]
        channels = {p[0] for _, p in on}
        if voice == "fx":
            _check_risers(plan, notes, on, off, [(t, p) for t, k, p in events if k == "cc"])
            continue
        assert len(on) == len(off) == len(notes)
        programs = [p for _, k, p in events if k == "program"]
        if voice == "drums":
            assert channels == {9} and not programs
            assert {p[1] for _, p in on} <= set(DRUM_KEYS.values())
        else:
            assert 9 not in channels and len(programs) == 1 and 0 <= programs[0][1] < 128
        np.testing.assert_array_equal(
            sorted(t for t, _ in on), np.sort(np.rint(notes.beat * TICKS_PER_BEAT))
        )
        np.testing.assert_array_equal(sorted(p[1] for _, p in on), np.sort(notes.pitch))
        assert all(1 <= p[2] <= 127 for _, p in on)


def _check_risers(plan, notes, on, off, cc) -> None:
    """The fx track: per riser note, one note-on per bar from its start (velocities rising to
    the note's), each ended before the next starts, and an expression (CC 11) swell over it
    rising from 38 to at least 120, back to 127 at its end."""
    bar = plan.beats_per_bar * TICKS_PER_BEAT
    assert len(on) == len(off)
    expression = [(t, p[2]) for t, p in cc if p[1] == 11]
    for b, n, v in zip(notes.beat, notes.length, notes.velocity, strict=True):
        t0, t1 = round(b * TICKS_PER_BEAT), round((b + n) * TICKS_PER_BEAT)
        ons = [(t, p) for t, p in on if t0 <= t < t1]
        assert [t for t, _ in ons] == list(range(t0, t1, bar))
        vel = [p[2] for _, p in ons]
        assert vel == sorted(vel) and vel[-1] == 1 + round(126 * v)
        assert sorted(t for t, _ in off if t0 < t <= t1) == [min(t + bar, t1) for t, _ in ons]
        swell = [x for t, x in expression if t0 <= t < t1]
        assert swell == sorted(swell) and swell[0] == 38 and swell[-1] >= 120
        assert (t1, 127) in expression


def test_tempo_ramp_is_written_per_sixteenth():
    plan = plan_song(_ramp_seed(), 60.0)
    _, tracks = _read_smf(smf_bytes(plan))
    tempos = [t for t, k, _ in tracks[0] if k == "meta:81"]
    ramp_beats = plan.tempo.beat[2] - plan.tempo.beat[1]
    assert len(tempos) >= 4 * ramp_beats * 0.9
    assert np.all(np.diff(tempos) > 0)


# --- FluidSynth ----------------------------------------------------------------------------------


def test_missing_fluidsynth_or_soundfont_is_named(tmp_path):
    with pytest.raises(FluidSynthMissing, match="no-such-fluidsynth"):
        render_midi_song(0, duration_s=30.0, fluidsynth="no-such-fluidsynth")
    missing = tmp_path / "none.sf2"
    with pytest.raises(FluidSynthMissing, match="none.sf2"):
        render_midi_song(0, duration_s=30.0, soundfont=missing)


def _drum_start_seed() -> int:
    """The first seed whose 30 s song starts with a kick on beat 0."""
    for seed in range(100):
        drums = plan_song(seed, 30.0).notes["drums"]
        if drums.beat[0] == 0 and drums.pitch[0] == DRUM_KEYS["kick"]:
            return seed
    raise AssertionError("no seed in 0..99 starts with a kick")


@pytest.fixture(scope="module")
def midi_song():
    assert shutil.which("fluidsynth"), "FluidSynth is a system dependency of the test suite"
    return render_midi_song(_drum_start_seed(), duration_s=30.0)


def test_fluidsynth_offset_is_small_and_cached():
    offset = fluidsynth_offset_s(22050, soundfont=DEFAULT_SOUNDFONT)
    assert 0.0 <= offset < 0.02
    assert fluidsynth_offset_s(22050) == offset


def test_midi_song_has_the_numpy_songs_annotations(midi_song):
    ref = generate_song(midi_song.seed, duration_s=30.0)
    assert midi_song.sample_rate == ref.sample_rate and midi_song.audio.size == ref.audio.size
    assert [s.label for s in midi_song.sections] == [s.label for s in ref.sections]
    np.testing.assert_allclose(
        [s.start for s in midi_song.sections], [s.start for s in ref.sections], atol=2e-4
    )
    np.testing.assert_allclose(midi_song.beats, ref.beats, atol=2e-4)
    np.testing.assert_array_equal(midi_song.downbeats, midi_song.beats[:: ref.beats_per_bar])
    assert not np.array_equal(midi_song.audio, ref.audio)


def test_midi_song_first_kick_on_first_beat(midi_song):
    """After the offset correction the first sound (10 % of the peak of the first 100 ms after
    the first beat) starts within 4 ms of the first beat."""
    sr, t0 = midi_song.sample_rate, midi_song.beats[0]
    a, b = max(0, int(round((t0 - 0.05) * sr))), int(round((t0 + 0.1) * sr))
    seg = np.abs(midi_song.audio[a:b])
    onset = (a + int(np.argmax(seg >= 0.1 * seg.max()))) / sr
    assert abs(onset - t0) < 0.004


def test_midi_song_level_and_silences(midi_song):
    assert midi_song.audio.dtype == np.float32
    assert 0.5 < np.max(np.abs(midi_song.audio)) <= PEAK
    sr = midi_song.sample_rate
    for s in midi_song.sections:
        seg = midi_song.audio[int(round(s.start * sr)) : int(round(s.end * sr))].astype(float)
        level = 10 * np.log10(np.mean(seg**2))
        assert level < -58.0 if s.label == "silence" else level > -45.0
