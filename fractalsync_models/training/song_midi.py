"""A held-out rendition of the generated songs: the song plan as a Standard MIDI File, played by
FluidSynth with the FluidR3 General MIDI soundfont.

The numpy generator (:mod:`.song_generator`) trains the structure model; this renderer plays
the *same* plan (form, beats, sections, notes) with entirely different sounds (sampled GM
instruments, FluidSynth's own reverb), so an evaluation on it checks that the model learned
the structure rather than the generator's timbres.

* :func:`smf_bytes` writes the plan as an SMF (format 1, 480 ticks per quarter note): a
  conductor track (time signature and tempo), one track per instrument with a GM program
  (chosen per seed), drums on channel 10.
* The SMF tempo is piecewise constant in whole microseconds per quarter note, so the returned
  annotations are computed from the tempo events actually written (:func:`midi_tempo_map`):
  within a plan's ramp there is one tempo event per sixteenth note, and the annotated beats
  differ from the numpy song's by well under a millisecond.
* :func:`render_midi_song` runs ``fluidsynth -ni -q -F out.wav -T wav -r RATE SF2 song.mid``
  and removes FluidSynth's output offset: :func:`fluidsynth_offset_s` renders a click track
  (a GM kick on four known beats) once per sample rate and soundfont and measures where the
  kicks start; the song's audio is advanced by that much. Measured here (FluidSynth 2.3.1,
  FluidR3_GM, ``fluidsynth_offset_s``): 153 samples (6.9 ms) at 22050 Hz, 209 samples (4.7 ms)
  at 44100 Hz. The four kicks of the click track start 128..175 samples late at 22050 Hz:
  FluidSynth starts events at its 64-sample block boundaries, so single notes keep a jitter
  of about +-1.5 ms around the corrected time.
"""

from __future__ import annotations

import dataclasses
import functools
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np
import soundfile as sf

from .song_form import TempoMap
from .song_generator import Song, check_sample_rate, song_from_audio
from .song_parts import DRUM_KEYS, VOICES
from .song_plan import SongPlan, plan_song

__all__ = [
    "DEFAULT_SOUNDFONT",
    "TIMGM6MB_SOUNDFONT",
    "TICKS_PER_BEAT",
    "FluidSynthMissing",
    "GmMix",
    "default_mix",
    "fluidsynth_offset_s",
    "midi_tempo_map",
    "render_midi_song",
    "smf_bytes",
]

#: Debian's fluid-soundfont-gm.
DEFAULT_SOUNDFONT = "/usr/share/sounds/sf2/FluidR3_GM.sf2"
#: Debian's timgm6mb-soundfont: a second, smaller GM set, never used in training (the third,
#: held-out rendition of ``benchmarks/measure_structure.py``).
TIMGM6MB_SOUNDFONT = "/usr/share/sounds/sf2/TimGM6mb.sf2"
#: SMF time division (ticks per quarter note; a beat is a quarter note).
TICKS_PER_BEAT = 480
#: GM programs (0-based) each voice may get; one is drawn per song.
_PROGRAMS = {
    "bass": (33, 34, 38, 39),  # finger/pick bass, synth bass 1/2
    "pad": (88, 89, 90, 48),  # new age, warm, polysynth pads, strings
    "keys": (0, 4, 5, 16),  # piano, electric pianos, organ
    "lead": (80, 81, 56, 65),  # square/saw lead, trumpet, alto sax
    "arp": (46, 11, 8, 108),  # harp, vibraphone, celesta, kalimba
    "fx": (119,),  # reverse cymbal: the riser
}
_DRUM_CHANNEL = 9  # channel 10 in 1-based numbering
#: Mix level (CC 7) per voice.
_VOLUME = {"drums": 110, "bass": 100, "pad": 70, "keys": 80, "lead": 95, "arp": 70, "fx": 90}
#: Length of the rendered click track's beats (s) and the kicks' search window (s).
_CLICK_SPB = 0.5
_CLICK_BEATS = 4


class FluidSynthMissing(RuntimeError):
    """The ``fluidsynth`` program or the soundfont is not installed (the message says which)."""


# --- SMF writing ------------------------------------------------------------------------------


def _vlq(value: int) -> bytes:
    """MIDI variable-length quantity (7 bits per byte, high bit = more bytes follow)."""
    if value < 0:
        raise ValueError(f"delta time must be >= 0, got {value}")
    out = [value & 0x7F]
    value >>= 7
    while value:
        out.append(0x80 | (value & 0x7F))
        value >>= 7
    return bytes(reversed(out))


def _track(events: list[tuple[int, int, bytes]]) -> bytes:
    """An ``MTrk`` chunk from ``(tick, order, event_bytes)``; sorted by tick then order, with
    delta times, closed by an end-of-track meta event."""
    body = bytearray()
    now = 0
    for tick, _, data in sorted(events, key=lambda e: (e[0], e[1])):
        body += _vlq(tick - now) + data
        now = tick
    body += b"\x00\xff\x2f\x00"
    return b"MTrk" + len(body).to_bytes(4, "big") + bytes(body)


def _meta(kind: int, data: bytes) -> bytes:
    return bytes([0xFF, kind]) + _vlq(len(data)) + data


def _tempo_events(plan: SongPlan) -> list[tuple[int, int]]:
    """``(tick, microseconds per quarter note)`` of the SMF tempo track for ``plan.tempo``.

    Constant stretches get one event; a ramp gets one per sixteenth note, whose value makes that
    sixteenth last as long as in the plan (rounded to 1 us per quarter)."""
    tm = plan.tempo
    end = float(plan.n_beats)
    events: list[tuple[int, int]] = []
    bounds = sorted({0.0, *tm.beat.tolist(), end})
    for b0, b1 in zip(bounds[:-1], bounds[1:], strict=True):
        if b1 <= b0:
            continue
        a, z = tm.bpm_at([b0, np.nextafter(b1, b0)])
        grid = np.array([b0, b1]) if a == z else np.arange(b0, b1 + 1e-9, 0.25)
        seconds = tm.seconds_at(grid)
        for g0, g1, s0, s1 in zip(grid[:-1], grid[1:], seconds[:-1], seconds[1:], strict=True):
            usec = int(round(1e6 * (s1 - s0) / (g1 - g0)))
            tick = int(round(g0 * TICKS_PER_BEAT))
            if not events or events[-1][1] != usec:
                events.append((tick, usec))
    return events or [(0, int(round(60e6 / tm.bpm[0])))]


def midi_tempo_map(plan: SongPlan) -> TempoMap:
    """The tempo of the SMF written for ``plan``, exactly (piecewise constant in beats)."""
    events = _tempo_events(plan)
    beats, bpms = [0.0], [60e6 / events[0][1]]
    for tick, usec in events[1:]:
        b = tick / TICKS_PER_BEAT
        beats += [b, b]
        bpms += [bpms[-1], 60e6 / usec]
    return TempoMap(np.array(beats), np.array(bpms))


def _programs(seed: int) -> dict[str, int]:
    rng = np.random.default_rng([int(seed), 7])
    return {v: int(p[int(rng.integers(len(p)))]) for v, p in _PROGRAMS.items()}


@dataclasses.dataclass(frozen=True)
class GmMix:
    """How the SMF's instruments are set up: per voice a GM program (0-127; drums have none),
    a volume (CC 7, 0-127) and a reverb send (CC 91, 0-127; None: no CC 91, FluidSynth's
    default). :func:`default_mix` is the held-out rendition's; training corpora draw others
    (:func:`.timbre.random_gm_mix`)."""

    programs: dict[str, int]
    volumes: dict[str, int]
    reverb: dict[str, int] | None = None

    def __post_init__(self) -> None:
        for what, table in (("programs", self.programs), ("volumes", self.volumes),
                            ("reverb", self.reverb or {})):
            for voice, value in table.items():
                if isinstance(value, bool) or not isinstance(value, (int, np.integer)) \
                        or not 0 <= value <= 127:
                    raise ValueError(f"GmMix {what}[{voice!r}] must be an int 0..127, "
                                     f"got {value!r}")


def default_mix(seed: int) -> GmMix:
    """The mix of :func:`render_midi_song` without ``mix``: programs drawn per seed from a few
    per voice, fixed volumes, no reverb-send events."""
    return GmMix(_programs(seed), dict(_VOLUME))


def smf_bytes(plan: SongPlan, mix: GmMix | None = None) -> bytes:
    """The plan as a Standard MIDI File (format 1), bytes.

    Track 0: track name, time signature (``beats_per_bar``/4) and tempo events. Then one track
    per voice of :data:`.song_parts.VOICES` that has notes: name, program change (GM, drawn
    per seed; none for drums), volume (CC 7), and note on/off pairs at the notes' ticks
    (velocity ``1 + round(126 v)``). Drums play on channel 10; the others on channels 1-6.
    A note-off sorts before a note-on at the same tick. ``mix`` (default
    :func:`default_mix`) sets the programs, volumes and reverb sends (CC 91).

    The ``fx`` voice's notes are risers. GM has no riser, and its effect sounds are short
    (FluidR3's reverse cymbal peaks 1.3 s after its note-on and is silent after 1.5 s), so
    each riser note is written as :func:`_riser_events`: one note-on per bar, velocities
    rising, under an expression (CC 11) swell.
    """
    conductor = [
        (0, 0, _meta(0x03, b"FractalSync song")),
        (0, 1, _meta(0x58, bytes([plan.beats_per_bar, 2, 24, 8]))),
    ]
    conductor += [(t, 2, _meta(0x51, u.to_bytes(3, "big"))) for t, u in _tempo_events(plan)]
    tracks = [_track(conductor)]
    mix = default_mix(plan.seed) if mix is None else mix
    channel = 0
    for voice in VOICES:
        notes = plan.notes[voice]
        if len(notes) == 0:
            continue
        ch = _DRUM_CHANNEL if voice == "drums" else channel
        if voice != "drums":
            channel += 1
        events = [(0, 0, _meta(0x03, voice.encode()))]
        if voice != "drums":
            events.append((0, 1, bytes([0xC0 | ch, mix.programs[voice]])))
        events.append((0, 2, bytes([0xB0 | ch, 7, mix.volumes[voice]])))
        if mix.reverb is not None:
            events.append((0, 2, bytes([0xB0 | ch, 91, mix.reverb[voice]])))
        if voice == "fx":
            for b, n, p, v in zip(notes.beat, notes.length, notes.pitch, notes.velocity,
                                  strict=True):
                events += _riser_events(ch, float(b), float(n), int(p), float(v),
                                        plan.beats_per_bar)
            tracks.append(_track(events))
            continue
        on = np.rint(notes.beat * TICKS_PER_BEAT).astype(np.int64)
        off = np.maximum(
            np.rint((notes.beat + notes.length) * TICKS_PER_BEAT).astype(np.int64), on + 1
        )
        vel = 1 + np.rint(126 * notes.velocity).astype(np.int64)
        for a, b, p, v in zip(on, off, notes.pitch, vel, strict=True):
            events.append((int(a), 4, bytes([0x90 | ch, int(p), int(v)])))
            events.append((int(b), 3, bytes([0x80 | ch, int(p), 64])))
        tracks.append(_track(events))
    header = b"MThd" + (6).to_bytes(4, "big") + (1).to_bytes(2, "big")
    header += len(tracks).to_bytes(2, "big") + TICKS_PER_BEAT.to_bytes(2, "big")
    return header + b"".join(tracks)


def _riser_events(ch: int, beat: float, length: float, pitch: int, velocity: float,
                  beats_per_bar: int) -> list[tuple[int, int, bytes]]:
    """SMF events ``(tick, order, bytes)`` of one riser on channel ``ch``: from ``beat`` for
    ``length`` beats, a note-on of ``pitch`` at every bar of it (the last ones shorter if the
    length is not whole bars), velocity rising from 40 % to 100 % of ``velocity`` (0..1) over
    the bars, each held to the next; expression (CC 11) every sixteenth rising as
    ``127 (0.3 + 0.7 x^2)`` (``x`` 0..1 over the riser), back to 127 at its end."""
    t0 = int(round(beat * TICKS_PER_BEAT))
    t1 = max(int(round((beat + length) * TICKS_PER_BEAT)), t0 + 1)
    bar = beats_per_bar * TICKS_PER_BEAT
    starts = list(range(t0, t1, bar))
    events: list[tuple[int, int, bytes]] = []
    for k, a in enumerate(starts):
        b = min(a + bar, t1)
        v = 1 + int(round(126 * velocity * (0.4 + 0.6 * (k + 1) / len(starts))))
        events.append((a, 4, bytes([0x90 | ch, pitch, v])))
        events.append((b, 3, bytes([0x80 | ch, pitch, 64])))
    step = TICKS_PER_BEAT // 4
    for t in range(t0, t1, step):
        x = (t - t0) / (t1 - t0)
        events.append((t, 2, bytes([0xB0 | ch, 11, int(round(127 * (0.3 + 0.7 * x * x)))])))
    events.append((t1, 1, bytes([0xB0 | ch, 11, 127])))
    return events


# --- FluidSynth ---------------------------------------------------------------------------------


def _fluidsynth(fluidsynth: str | None, soundfont: str | os.PathLike | None) -> tuple[str, str]:
    exe = shutil.which(fluidsynth or "fluidsynth")
    if exe is None:
        raise FluidSynthMissing(
            f"{fluidsynth or 'fluidsynth'!r} not found on PATH: install FluidSynth "
            "(Debian: apt-get install fluidsynth)"
        )
    sf2 = Path(soundfont or DEFAULT_SOUNDFONT)
    if not sf2.is_file():
        raise FluidSynthMissing(
            f"soundfont {str(sf2)!r} not found: install a GM soundfont "
            "(Debian: apt-get install fluid-soundfont-gm) or pass soundfont="
        )
    return exe, str(sf2)


def _render(midi: bytes, sample_rate: int, exe: str, sf2: str) -> np.ndarray:
    """FluidSynth's rendering of ``midi``: mono float64 (channel mean), from sample 0."""
    with tempfile.TemporaryDirectory(prefix="fractalsync_midi_") as tmp:
        mid, wav = Path(tmp) / "song.mid", Path(tmp) / "song.wav"
        mid.write_bytes(midi)
        cmd = [exe, "-ni", "-q", "-F", str(wav), "-T", "wav", "-r", str(sample_rate), sf2, str(mid)]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600, check=False)
        if proc.returncode != 0 or not wav.is_file():
            raise RuntimeError(
                f"fluidsynth failed (exit {proc.returncode}): {proc.stderr.strip()[-500:]}"
            )
        audio, rate = sf.read(str(wav), dtype="float64", always_2d=True)
    if rate != sample_rate:
        raise RuntimeError(f"fluidsynth wrote {rate} Hz instead of the requested {sample_rate} Hz")
    return audio.mean(axis=1)


def _click_midi() -> bytes:
    """SMF with a GM kick on each of ``_CLICK_BEATS`` beats from beat 1, at 120 BPM."""
    usec = int(round(_CLICK_SPB * 1e6))
    conductor = [(0, 0, _meta(0x51, usec.to_bytes(3, "big")))]
    kick = DRUM_KEYS["kick"]
    drums = [(0, 0, bytes([0xB0 | _DRUM_CHANNEL, 7, 127]))]
    for k in range(1, _CLICK_BEATS + 1):
        drums.append((k * TICKS_PER_BEAT, 2, bytes([0x90 | _DRUM_CHANNEL, kick, 120])))
        drums.append((k * TICKS_PER_BEAT + 120, 1, bytes([0x80 | _DRUM_CHANNEL, kick, 64])))
    header = b"MThd" + (6).to_bytes(4, "big") + (1).to_bytes(2, "big") + (2).to_bytes(2, "big")
    return header + TICKS_PER_BEAT.to_bytes(2, "big") + _track(conductor) + _track(drums)


def _first_onset(x: np.ndarray, start: int, stop: int, fraction: float = 0.1) -> int:
    """Index of the first sample in ``x[start:stop]`` whose magnitude reaches ``fraction`` of
    that window's peak magnitude (the onset of the loudest sound in it)."""
    seg = np.abs(x[start:stop])
    return start + int(np.argmax(seg >= fraction * seg.max()))


@functools.lru_cache(maxsize=8)
def _offset_samples(sample_rate: int, exe: str, sf2: str) -> int:
    audio = _render(_click_midi(), sample_rate, exe, sf2)
    half = int(0.5 * _CLICK_SPB * sample_rate)
    lags = []
    for k in range(1, _CLICK_BEATS + 1):
        t = int(round(k * _CLICK_SPB * sample_rate))
        lags.append(_first_onset(audio, t - half, t + half) - t)
    return int(np.median(lags))


def fluidsynth_offset_s(
    sample_rate: int = 22050,
    *,
    soundfont: str | os.PathLike | None = None,
    fluidsynth: str | None = None,
) -> float:
    """FluidSynth's output offset (s): how late a GM kick's onset (first sample at 10 % of its
    peak) comes after its MIDI event time, the median over a 4-kick click track. Measured once
    per rate, program and soundfont, then cached. Raises :class:`FluidSynthMissing`."""
    exe, sf2 = _fluidsynth(fluidsynth, soundfont)
    return _offset_samples(check_sample_rate(sample_rate), exe, sf2) / sample_rate


def render_midi_song(
    seed: int,
    *,
    sample_rate: int = 22050,
    duration_s: float | None = None,
    soundfont: str | os.PathLike | None = None,
    fluidsynth: str | None = None,
    variety: bool = False,
    mix: GmMix | None = None,
) -> Song:
    """Song ``seed`` (the plan of :func:`.song_generator.generate_song` with the same seed and
    duration) played by FluidSynth from a Standard MIDI File.

    The rendering is advanced by :func:`fluidsynth_offset_s`, the lead-in silence prepended,
    then it is finished like the numpy songs (silences zeroed, peak 0.89, -60 dBFS noise floor).
    The annotations follow the SMF's tempo events (:func:`midi_tempo_map`). ``variety``
    draws the training variant of the plan (``plan_song(..., variety=True)``); ``mix`` sets
    the instruments (default :func:`default_mix`, the held-out rendition).

    Raises
    ------
    FluidSynthMissing
        ``fluidsynth`` is not on PATH or the soundfont (default :data:`DEFAULT_SOUNDFONT`)
        does not exist.
    RuntimeError
        FluidSynth failed (its error output is quoted).
    """
    sr = check_sample_rate(sample_rate)
    exe, sf2 = _fluidsynth(fluidsynth, soundfont)
    plan = plan_song(seed, duration_s, variety=variety)
    plan = dataclasses.replace(plan, tempo=midi_tempo_map(plan))
    rendered = _render(smf_bytes(plan, mix), sr, exe, sf2)[_offset_samples(sr, exe, sf2) :]
    n = int(round(plan.duration_s * sr))
    music = np.zeros(n)
    lead = int(round(plan.lead_in_s * sr))
    m = max(0, min(rendered.size, n - lead))
    music[lead : lead + m] = rendered[:m]
    return song_from_audio(plan, music, sr, plan.seed)
