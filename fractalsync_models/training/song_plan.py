"""The complete, renderer-independent plan of one generated song: :func:`plan_song`.

A :class:`SongPlan` fixes everything but the sound: duration, meter, tempo map, form and
arrangement, key and the notes of every voice, plus the exact annotations (beats, downbeats,
sections) derived from them. The numpy renderer (:mod:`.song_generator`) and the MIDI renderer
(:mod:`.song_midi`) both play a plan, so their annotations are identical.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from .labels import Segment
from .song_form import (
    FormSection,
    TempoMap,
    draw_tempo_change,
    fit_form,
    plan_form,
    tempo_map_for,
)
from .song_parts import (
    Arrangement,
    Harmony,
    Notes,
    add_cues,
    arrange,
    draw_harmony,
    write_notes,
)

__all__ = ["MAX_DURATION_S", "MIN_DURATION_S", "Silences", "SongPlan", "draw_silences", "plan_song"]

#: Accepted range of ``duration_s`` (seconds); drawn durations lie in 60..180 s.
MIN_DURATION_S, MAX_DURATION_S = 30.0, 600.0
#: A gap between the music's end and the song's end shorter than this joins the last section.
_MIN_TAIL_SILENCE_S = 0.25


@dataclass(frozen=True, eq=False)
class SongPlan:
    """Everything about a song except its audio.

    Attributes
    ----------
    seed : int
        The seed it was drawn from.
    duration_s : float
        Length of the song in seconds.
    lead_in_s : float
        Time of the first beat (s); before it, a silence section when > 0.
    beats_per_bar : int
        3 or 4 (a beat is a quarter note).
    tempo : TempoMap
        Tempo over musical time; beat ``b`` sounds at ``lead_in_s + tempo.seconds_at(b)``.
    harmony : Harmony
        Key, mode and chord progressions.
    arrangement : tuple[Arrangement, ...]
        The non-silent sections in order, contiguous from bar 0.
    notes : dict[str, Notes]
        Per voice (``song_parts.VOICES``), the notes in beats.
    fade_in_s, fade_out_s : float
        Length (s) of a linear fade-in from the first beat and of a fade-out that ends where
        the music ends (0: none; only plans drawn with ``variety=True`` have them).
    stops : tuple of (start, end) seconds
        Spans inside sections where the whole band stops (digital silence, labelled as the
        section they are in; only with ``variety=True``).
    """

    seed: int
    duration_s: float
    lead_in_s: float
    beats_per_bar: int
    tempo: TempoMap
    harmony: Harmony
    arrangement: tuple[Arrangement, ...]
    notes: dict[str, Notes]
    fade_in_s: float = 0.0
    fade_out_s: float = 0.0
    stops: tuple[tuple[float, float], ...] = ()

    @property
    def n_beats(self) -> int:
        """Number of annotated beats (every beat of every non-silent section)."""
        return sum(a.bars for a in self.arrangement) * self.beats_per_bar

    def seconds(self, beats: object) -> np.ndarray:
        """Song time (s) of musical positions ``beats`` (beats, any shape)."""
        return self.lead_in_s + self.tempo.seconds_at(beats)

    @property
    def beats(self) -> np.ndarray:
        """Beat times (s), shape (n_beats,), increasing."""
        return self.seconds(np.arange(self.n_beats, dtype=np.float64))

    @property
    def downbeats(self) -> np.ndarray:
        """Downbeat times (s): every ``beats_per_bar``-th beat from the first."""
        return self.beats[:: self.beats_per_bar]

    @property
    def music_end_s(self) -> float:
        """Time (s) where the last bar of music ends (the would-be next downbeat)."""
        return float(self.seconds(float(self.n_beats)))

    @property
    def sections(self) -> list[Segment]:
        """Annotated sections (:class:`.labels.Segment`) covering ``[0, duration_s]``
        contiguously.

        Every non-silent section starts on a downbeat. The exceptions: a leading silence
        starts at 0 s; a trailing silence starts where the last bar ends (the time the next
        downbeat would fall, not an annotated beat); when the gap after the last bar is under
        0.25 s there is no trailing silence and the last section ends at ``duration_s``.
        """
        out: list[Segment] = []
        if self.lead_in_s > 0:
            out.append(Segment(0.0, self.lead_in_s, "silence"))
        starts = self.seconds([a.first_bar * self.beats_per_bar for a in self.arrangement])
        ends = [*starts[1:], self.music_end_s]
        for a, s, e in zip(self.arrangement, starts, ends, strict=True):
            out.append(Segment(float(s), float(e), a.label))
        if self.duration_s - self.music_end_s >= _MIN_TAIL_SILENCE_S:
            out.append(Segment(self.music_end_s, self.duration_s, "silence"))
        else:
            out[-1] = dataclasses.replace(out[-1], end=self.duration_s)
        return out


def plan_song(seed: int, duration_s: float | None = None, *, variety: bool = False) -> SongPlan:
    """Draw the plan of song ``seed`` (see :class:`SongPlan`); the same seed gives the same plan.

    Parameters
    ----------
    seed : int
        Any integer >= 0.
    duration_s : float or None
        Song length in seconds, 30..600; None draws 60..180 s from the seed. Other choices
        (meter, tempo, key, form shape) do not depend on it, but the form is cut or extended
        to fit it.

    variety : bool
        The training variant (:func:`draw_silences`): also draws long lead-in and trailing
        silences, fades and stops, from a separate random stream. False (the default) gives
        exactly the plans of earlier versions (the demo song, the measurements and the tests
        rely on it).

    Draws: meter 4/4 (75 %) or 3/4; tempo 70..180 BPM; a tempo change for about a third of
    the songs; a lead-in silence of 0.5-2 s for 60 % of them; a trailing silence of at least
    0.5 s for 60 %; the form (:func:`.song_form.plan_form`), fitted so the music fills the
    duration to within one bar; key, progressions, arrangement, early cues
    (:func:`.song_parts.add_cues`) and notes.
    """
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be an integer >= 0, got {seed!r}")
    base = np.random.default_rng([int(seed), 0])
    drawn = float(base.uniform(60.0, 180.0))
    if duration_s is None:
        duration_s = drawn
    if not (isinstance(duration_s, (int, float)) and math.isfinite(duration_s)) or not (
        MIN_DURATION_S <= duration_s <= MAX_DURATION_S
    ):
        raise ValueError(
            f"duration_s must be a number in {MIN_DURATION_S:g}..{MAX_DURATION_S:g} s, "
            f"got {duration_s!r}"
        )
    duration_s = float(duration_s)
    beats_per_bar = 3 if base.random() < 0.25 else 4
    bpm = float(np.round(base.uniform(70.0, 180.0) * 2.0) / 2.0)
    lead_in = float(np.round(base.uniform(0.5, 2.0), 3)) if base.random() < 0.6 else 0.0
    tail = 0.5 if base.random() < 0.6 else 0.0
    change = draw_tempo_change(base, bpm)
    silences = draw_silences(np.random.default_rng([int(seed), 8]), duration_s) if variety \
        else None
    if silences is not None:
        lead_in = silences.lead_in_s if silences.lead_in_s is not None else lead_in
        tail = silences.tail_s if silences.tail_s is not None else tail

    form_rng = np.random.default_rng([int(seed), 1])
    budget = duration_s - lead_in - tail
    slowest = min(bpm, change.bpm)
    form = fit_form(plan_form(form_rng), 60.0 * beats_per_bar / slowest, budget, form_rng)
    tempo = tempo_map_for(form, beats_per_bar, bpm, change)
    # The fit assumed the slowest tempo throughout: add the bars a faster part leaves room for.
    while True:
        longer = [*form[:-1], FormSection(form[-1].label, form[-1].bars + 1)]
        longer_tempo = tempo_map_for(longer, beats_per_bar, bpm, change)
        if float(longer_tempo.seconds_at(sum(s.bars for s in longer) * beats_per_bar)) > budget:
            break
        form, tempo = longer, longer_tempo

    harmony = draw_harmony(np.random.default_rng([int(seed), 2]))
    arrangement = arrange(form, harmony, beats_per_bar, np.random.default_rng([int(seed), 3]))
    # the early cues from a stream of their own: the form, harmony and notes outside the cues
    # stay those of the versions before the cues
    arrangement = add_cues(arrangement, beats_per_bar, np.random.default_rng([int(seed), 10]))
    notes = write_notes(arrangement, harmony, beats_per_bar, np.random.default_rng([int(seed), 4]))
    plan = SongPlan(
        seed=int(seed),
        duration_s=duration_s,
        lead_in_s=lead_in,
        beats_per_bar=beats_per_bar,
        tempo=tempo,
        harmony=harmony,
        arrangement=arrangement,
        notes=notes,
    )
    return plan if silences is None else _with_fades_and_stops(plan, silences)


class Silences(NamedTuple):
    """The training variant's silence draws (:func:`draw_silences`); None = keep the base draw.

    lead_in_s, tail_s : seconds of silence before the first beat / after the music, or None;
    fade_in_bars, fade_out_bars : bars of fade-in from the first beat / fade-out to the end of
    the music (0: none); stops : number of mid-section stops (0-2); stop_rng : the stream the
    stops' places and lengths are drawn from.
    """

    lead_in_s: float | None
    tail_s: float | None
    fade_in_bars: int
    fade_out_bars: int
    stops: int
    stop_rng: np.random.Generator


def draw_silences(rng: np.random.Generator, duration_s: float) -> Silences:
    """Silences of the training variant, so that silence does not always mean "a boundary
    comes": a long lead-in silence of 3-12 s (35 %), a long trailing silence of 2-12 s
    (45 %; at most a quarter of the song together with the lead-in), a fade-in over the first
    2-4 bars (25 %), a fade-out over the last 2-8 bars (40 %), and 1-2 stops of the whole band
    inside sections (30 %: 0.5-2 bars each, never in a section's first or last 2 bars)."""
    cap = 0.25 * duration_s
    lead = float(np.round(rng.uniform(3.0, 12.0), 3)) if rng.random() < 0.35 else None
    tail = float(np.round(rng.uniform(2.0, 12.0), 3)) if rng.random() < 0.45 else None
    if lead is not None and tail is not None and lead + tail > cap:
        tail = None
    if lead is not None and lead > cap:
        lead = None
    if tail is not None and tail > cap:
        tail = None
    fade_in = int(rng.integers(2, 5)) if rng.random() < 0.25 else 0
    fade_out = int(rng.integers(2, 9)) if rng.random() < 0.4 else 0
    stops = int(rng.integers(1, 3)) if rng.random() < 0.3 else 0
    return Silences(lead, tail, fade_in, fade_out, stops, rng)


def _with_fades_and_stops(plan: SongPlan, silences: Silences) -> SongPlan:
    """``plan`` with the fades and stops of ``silences`` placed on its bars."""
    bpb = plan.beats_per_bar
    arr = plan.arrangement
    fade_in_bars = min(silences.fade_in_bars, arr[0].bars)
    fade_out_bars = min(silences.fade_out_bars, arr[-1].bars)
    fade_in = float(plan.seconds(fade_in_bars * bpb) - plan.lead_in_s) if fade_in_bars else 0.0
    end = plan.n_beats
    fade_out = (plan.music_end_s - float(plan.seconds(end - fade_out_bars * bpb))
                if fade_out_bars else 0.0)
    stops = []
    rng = silences.stop_rng
    inner = [a for a in arr if a.bars >= 6]
    for _ in range(silences.stops if inner else 0):
        a = inner[int(rng.integers(len(inner)))]
        half_bars = int(rng.integers(1, 5))  # 0.5..2 bars
        first = a.first_bar + 2
        last = a.first_bar + a.bars - 2 - half_bars / 2
        at = float(rng.integers(first, int(np.floor(last)) + 1))
        t0, t1 = plan.seconds([at * bpb, (at + half_bars / 2) * bpb])
        if all(t1 <= s0 or t0 >= s1 for s0, s1 in stops):
            stops.append((float(t0), float(t1)))
    return dataclasses.replace(plan, fade_in_s=fade_in, fade_out_s=fade_out,
                               stops=tuple(sorted(stops)))
