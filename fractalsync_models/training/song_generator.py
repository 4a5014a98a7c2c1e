"""Structured songs with exact beats, downbeats and sections, synthesised with numpy.

``generate_song(seed)`` draws a whole pop song: meter (4/4 or 3/4), tempo 70-180 BPM with an
occasional step or ramp, a form such as ``[silence] intro verse pre-chorus chorus verse
pre-chorus chorus bridge chorus outro [silence]``, a key and chord progressions, an arrangement
whose layers (drums, bass, pad, keys, lead, arpeggio) and drum patterns change per section,
and the cues that announce a change: in the last bar drum fills, drop-outs before a chorus and
a crash on every new section; two bars ahead (three in 3/4, so at least 8 beats) a "lift"
before about 80 % of the boundaries (ride or open hi-hats, a tom or snare pickup, the kick
dropping out, a bass pedal on the dominant, a drum crescendo; without drums a rising arpeggio
and pad swell), risers of 1-4 bars and a pre-chorus snare roll (:func:`.song_parts.add_cues`).
The same seed and sample rate give bit-identical audio. It is the training/evaluation corpus of
the structure model and the live demo's built-in song.

The plan (form, notes, annotations) comes from :mod:`.song_plan`, the sounds from
:mod:`.song_voices`; :mod:`.song_midi` renders the same plan through FluidSynth instead.
Speed on one core of the 2-core development machine (under load from other jobs): about
70-115x real time at 22050 Hz and 38-46x at 44100 Hz, over seeds 0-19 and 0-9 (full length).
"""

from __future__ import annotations

import csv
import io
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf

from ..atomic_write import write_atomic
from .labels import Segment
from .song_form import TempoMap
from .song_parts import VOICES
from .song_plan import SongPlan, plan_song
from .song_voices import draw_palette, render_voice, reverb

__all__ = ["PEAK", "Song", "check_sample_rate", "generate_song", "song_from_audio"]

#: Peak level of every song's audio (the music is normalised to it, noise floor included).
PEAK = 0.89
#: Standard deviation of the white-noise floor added everywhere (-60 dBFS).
NOISE_STD = 1e-3
#: Level of each voice in the mix (relative to the drums).
_VOICE_GAIN = {
    "drums": 1.0,
    "bass": 0.4,
    "pad": 0.2,
    "keys": 0.17,
    "lead": 0.32,
    "arp": 0.16,
    "fx": 0.3,
}
#: Reverb send per voice.
_REVERB_SEND = {
    "drums": 0.12,
    "bass": 0.0,
    "pad": 0.5,
    "keys": 0.35,
    "lead": 0.45,
    "arp": 0.5,
    "fx": 0.3,
}
#: Fade (s) at the end of the music, before a trailing silence.
_END_FADE_S = 0.15
_SAMPLE_RATES = (8000, 192000)


@dataclass(frozen=True, eq=False)
class Song:
    """A rendered song and its exact annotations.

    Attributes
    ----------
    audio : np.ndarray, shape (n,), float32
        Mono audio, peak <= 0.9; ``n = round(duration_s * sample_rate)``.
    sample_rate : int
        Hz.
    beats : np.ndarray, shape (B,), float64
        Beat times (s), increasing; every beat of the music (none in silence sections).
    downbeats : np.ndarray, shape (D,), float64
        ``beats[::beats_per_bar]``: the first beat of every bar (s).
    beats_per_bar : int
        3 or 4, fixed per song.
    tempo_bpm : float
        Initial tempo (BPM).
    tempo_map : TempoMap
        Tempo over musical time (beats from the first beat); beat k sounds at
        ``beats[0] + tempo_map.seconds_at(k)``.
    sections : tuple[Segment, ...]
        ``(start, end, label)`` in seconds, contiguous from 0 to the song's end, labels from
        the contract's 8. Sections start on downbeats, except silences (see
        :attr:`.song_plan.SongPlan.sections`).
    seed : int
        The seed the song was drawn from.
    plan : SongPlan
        Everything the song was made from (form, arrangement, notes, key).
    """

    audio: np.ndarray
    sample_rate: int
    beats: np.ndarray
    downbeats: np.ndarray
    beats_per_bar: int
    tempo_bpm: float
    tempo_map: TempoMap
    sections: tuple[Segment, ...]
    seed: int
    plan: SongPlan

    @property
    def duration(self) -> float:
        """Length of ``audio`` in seconds."""
        return self.audio.size / self.sample_rate

    @property
    def beat_positions(self) -> np.ndarray:
        """Position of each beat in its bar, 1..beats_per_bar, shape (B,), int64."""
        return np.arange(self.beats.size, dtype=np.int64) % self.beats_per_bar + 1

    def label_csv(self) -> str:
        """The sections as CSV text: a ``start,end,label`` header, one row per section, times
        in seconds written exactly (shortest round-trip float text)."""
        buf = io.StringIO()
        writer = csv.writer(buf, lineterminator="\n")
        writer.writerow(["start", "end", "label"])
        for s in self.sections:
            writer.writerow([repr(float(s.start)), repr(float(s.end)), s.label])
        return buf.getvalue()

    def to_label_csv(self, path: str | os.PathLike) -> Path:
        """Write :meth:`label_csv` to ``path`` (atomically); return the path."""
        path = Path(path)
        write_atomic(path, self.label_csv())
        return path

    def write(self, directory: str | os.PathLike, stem: str | None = None) -> tuple[Path, Path]:
        """Write ``<stem>.wav`` (float32 WAV) and ``<stem>.csv`` (labels) into ``directory``
        (created if missing); ``stem`` defaults to ``song_<seed>``. Returns both paths."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        stem = stem or f"song_{self.seed:06d}"
        wav = directory / f"{stem}.wav"
        buf = io.BytesIO()
        sf.write(buf, self.audio, self.sample_rate, format="WAV", subtype="FLOAT")
        write_atomic(wav, buf.getvalue())
        return wav, self.to_label_csv(directory / f"{stem}.csv")


def song_from_audio(plan: SongPlan, music: np.ndarray, sample_rate: int, seed_noise: int) -> Song:
    """Finish ``music`` (shape (round(plan.duration_s * sample_rate),)) into a :class:`Song`:
    silence sections are zeroed (the music fades out over 150 ms before a trailing silence),
    the result is normalised to :data:`PEAK` with a -60 dBFS noise floor (seeded by
    ``seed_noise``) added everywhere, and the plan's annotations are attached."""
    sr = int(sample_rate)
    n = music.size
    sections = tuple(plan.sections)
    music = music.copy()
    fade = int(round(_END_FADE_S * sr))
    for s in sections:
        if s.label == "silence":
            a, b = int(round(s.start * sr)), int(round(s.end * sr))
            music[a:b] = 0.0
            if a > 0:  # fade out the music ringing into a trailing silence
                f = min(fade, a)
                music[a - f : a] *= np.linspace(f / fade, 0.0, f, endpoint=False)
    _apply_fades_and_stops(music, plan, sr)
    noise = NOISE_STD * np.random.default_rng([seed_noise, 9]).standard_normal(n)
    peak = np.max(np.abs(music))
    if peak > 0:
        music *= (PEAK - 6 * NOISE_STD) / peak
    audio = np.clip(music + noise, -PEAK, PEAK).astype(np.float32)
    beats = plan.beats
    return Song(
        audio=audio,
        sample_rate=sr,
        beats=beats,
        downbeats=beats[:: plan.beats_per_bar].copy(),
        beats_per_bar=plan.beats_per_bar,
        tempo_bpm=float(plan.tempo.bpm[0]),
        tempo_map=plan.tempo,
        sections=sections,
        seed=plan.seed,
        plan=plan,
    )


#: Ramp (s) at each edge of a stop (no click).
_STOP_RAMP_S = 0.01


def _apply_fades_and_stops(music: np.ndarray, plan: SongPlan, sr: int) -> None:
    """In place: the plan's fade-in (linear, from the first beat), fade-out (linear, ending
    where the music ends, silent after it) and stops (zero, with 10 ms ramps). A plan without
    them (every plan drawn with ``variety=False``) leaves ``music`` untouched."""
    n = music.size
    if plan.fade_in_s > 0:
        a = int(round(plan.lead_in_s * sr))
        b = min(n, int(round((plan.lead_in_s + plan.fade_in_s) * sr)))
        music[a:b] *= np.linspace(0.0, 1.0, max(b - a, 0), endpoint=False)
    if plan.fade_out_s > 0:
        b = min(n, int(round(plan.music_end_s * sr)))
        a = max(0, int(round((plan.music_end_s - plan.fade_out_s) * sr)))
        music[a:b] *= np.linspace(1.0, 0.0, max(b - a, 0), endpoint=False)
        music[b:] = 0.0
    ramp = int(round(_STOP_RAMP_S * sr))
    for t0, t1 in plan.stops:
        a, b = int(round(t0 * sr)), min(n, int(round(t1 * sr)))
        envelope = np.zeros(max(b - a, 0))
        r = min(ramp, envelope.size // 2)
        if r:
            envelope[:r] = np.linspace(1.0, 0.0, r, endpoint=False)
            envelope[-r:] = np.linspace(0.0, 1.0, r, endpoint=False)
        music[a:b] *= envelope


def check_sample_rate(sample_rate: object) -> int:
    """``sample_rate`` as an int if it is an integer in 8000..192000 Hz, else ValueError."""
    lo, hi = _SAMPLE_RATES
    if (
        isinstance(sample_rate, bool)
        or not isinstance(sample_rate, (int, np.integer))
        or not (lo <= sample_rate <= hi)
    ):
        raise ValueError(f"sample_rate must be an integer in {lo}..{hi} Hz, got {sample_rate!r}")
    return int(sample_rate)


def generate_song(seed: int, *, sample_rate: int = 22050, duration_s: float | None = None,
                  variety: bool = False) -> Song:
    """Draw and synthesise song ``seed``.

    Parameters
    ----------
    seed : int
        >= 0. The same seed and sample rate give bit-identical audio.
    sample_rate : int
        8000..192000 Hz (22050 for the analysis clock, 44100 for playback).
    duration_s : float or None
        Length in seconds, 30..600; None draws 60..180 s from the seed.
    variety : bool
        The training variant of the plan (``plan_song(..., variety=True)``: long silences,
        fades, stops). False (default) gives the same audio as earlier versions.

    Returns
    -------
    Song
        Audio and exact annotations; ``Song.plan`` holds the form, arrangement and notes.
    """
    sr = check_sample_rate(sample_rate)
    plan = plan_song(seed, duration_s, variety=variety)
    n = int(round(plan.duration_s * sr))
    palette = draw_palette(np.random.default_rng([plan.seed, 5]), sr)
    fx_rng = np.random.default_rng([plan.seed, 6])
    dry = np.zeros(n)
    send = np.zeros(n)
    for voice in VOICES:
        audio = render_voice(voice, plan.notes[voice], plan.seconds, n, palette, fx_rng)
        dry += _VOICE_GAIN[voice] * audio
        if _REVERB_SEND[voice]:
            send += (_VOICE_GAIN[voice] * _REVERB_SEND[voice]) * audio
    dry += reverb(send, palette)
    return song_from_audio(plan, dry, sr, plan.seed)
