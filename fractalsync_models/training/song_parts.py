"""The notes of a generated song: one :class:`Notes` list per instrument, in musical time.

:func:`arrange` decides, per section of the form, which layers play and how (energy, drum
pattern, register, cues); :func:`write_notes` turns that into notes. Both the numpy renderer
(:mod:`.song_voices`) and the MIDI renderer (:mod:`.song_midi`) play exactly these notes, so
their annotations agree.

:func:`add_cues` then plans the early cues that announce most boundaries two bars ahead (three
in 3/4), from a random stream of its own, so the form, harmony and every other note of a seed
stay what :func:`arrange` and :func:`write_notes` made before the cues existed.

Positions are in beats from the song's first beat (a beat is a quarter note), on a
sixteenth-note grid. Drum notes use General MIDI percussion keys (:data:`DRUM_KEYS`); the
``fx`` voice holds risers (one note per riser, its length the riser's).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np

from .song_form import FormSection

__all__ = [
    "DRUM_KEYS",
    "VOICES",
    "Arrangement",
    "Harmony",
    "Notes",
    "add_cues",
    "arrange",
    "draw_harmony",
    "write_notes",
]

#: The instruments (voices) of every song, in mixing order.
VOICES: tuple[str, ...] = ("drums", "bass", "pad", "keys", "lead", "arp", "fx")
#: General MIDI percussion keys used by the drum voice.
DRUM_KEYS = {
    "kick": 36,
    "stick": 37,
    "snare": 38,
    "clap": 39,
    "hat": 42,
    "open_hat": 46,
    "crash": 49,
    "ride": 51,
    "tom_low": 45,
    "tom_mid": 47,
    "tom_high": 50,
}
_MAJOR = (0, 2, 4, 5, 7, 9, 11)
_MINOR = (0, 2, 3, 5, 7, 8, 10)
#: Chord progressions as scale degrees (0 = tonic), one chord per bar.
_PROGRESSIONS = {
    False: ((0, 4, 5, 3), (5, 3, 0, 4), (0, 5, 3, 4), (0, 3, 5, 4), (3, 0, 4, 5), (0, 3, 0, 4)),
    True: ((0, 5, 2, 6), (0, 3, 5, 4), (0, 6, 5, 6), (0, 3, 6, 2), (5, 6, 0, 0), (0, 5, 3, 4)),
}
_PRE_PROGRESSIONS = ((3, 4, 3, 4), (3, 4, 5, 4), (5, 3, 4, 4), (1, 3, 4, 4))
_BRIDGE_PROGRESSIONS = ((5, 3, 0, 4), (3, 5, 3, 4), (5, 4, 3, 3), (1, 4, 0, 5))


@dataclass(frozen=True, eq=False)
class Notes:
    """Notes of one voice, sorted by onset.

    Attributes
    ----------
    beat : np.ndarray, shape (n,), float64
        Onsets in beats from the song's first beat.
    length : np.ndarray, shape (n,), float64
        Durations in beats (> 0).
    pitch : np.ndarray, shape (n,), int64
        MIDI note numbers (GM percussion keys for the drum voice).
    velocity : np.ndarray, shape (n,), float64
        Loudness in (0, 1].
    """

    beat: np.ndarray
    length: np.ndarray
    pitch: np.ndarray
    velocity: np.ndarray

    def __len__(self) -> int:
        return int(self.beat.size)


class _NoteBuffer:
    """Collects notes as Python lists; :meth:`notes` freezes them into sorted :class:`Notes`."""

    def __init__(self) -> None:
        self.rows: list[tuple[float, float, int, float]] = []

    def add(self, beat: float, length: float, pitch: int, velocity: float) -> None:
        self.rows.append(
            (float(beat), float(length), int(pitch), min(max(float(velocity), 0.05), 1.0))
        )

    def remove(self, b0: float, b1: float, pitches: Sequence[int] | None = None) -> None:
        """Drop the notes starting in ``[b0, b1)`` (only those of ``pitches`` if given)."""
        self.rows = [
            r for r in self.rows
            if not (b0 <= r[0] < b1 and (pitches is None or r[2] in pitches))
        ]

    def ramp(self, b0: float, b1: float, v0: float, v1: float) -> None:
        """Scale the velocity of the notes starting in ``[b0, b1)`` by a factor going linearly
        from ``v0`` at ``b0`` to ``v1`` at ``b1`` (clipped to the buffer's range)."""
        self.rows = [
            (b, n, p, min(max(v * (v0 + (v1 - v0) * (b - b0) / (b1 - b0)), 0.05), 1.0))
            if b0 <= b < b1 else (b, n, p, v)
            for b, n, p, v in self.rows
        ]

    def notes(self, mute: Sequence[tuple[float, float]] = ()) -> Notes:
        """The notes, without those starting inside a ``mute`` window ``[b0, b1)`` and with
        notes ringing into a window cut at its start."""
        rows = self.rows
        for b0, b1 in mute:
            rows = [
                (b, min(n, b0 - b) if b < b0 else n, p, v)
                for b, n, p, v in rows
                if not b0 <= b < b1
            ]
        rows = sorted(r for r in rows if r[1] > 0)
        arr = np.array(rows, dtype=np.float64).reshape(-1, 4)
        return Notes(
            arr[:, 0].copy(), arr[:, 1].copy(), arr[:, 2].astype(np.int64), arr[:, 3].copy()
        )


@dataclass(frozen=True)
class Harmony:
    """A song's key and chord progressions.

    ``root`` is the tonic's pitch class (0 = C), ``minor`` the mode; each progression is a tuple
    of scale degrees (0 = tonic), one chord per bar, cycled over a section.
    """

    root: int
    minor: bool
    verse: tuple[int, ...]
    chorus: tuple[int, ...]
    pre: tuple[int, ...]
    bridge: tuple[int, ...]

    def pitch(self, degree: int, base: int) -> int:
        """MIDI pitch of scale ``degree`` (any integer; 7 is the tonic an octave up, -1 the
        leading tone below) counted from the tonic at MIDI note ``base + root``."""
        steps = _MINOR if self.minor else _MAJOR
        return base + self.root + steps[degree % 7] + 12 * (degree // 7)

    @property
    def name(self) -> str:
        """E.g. ``"F# minor"``."""
        names = ("C", "C#", "D", "Eb", "E", "F", "F#", "G", "Ab", "A", "Bb", "B")
        return f"{names[self.root]} {'minor' if self.minor else 'major'}"


def draw_harmony(rng: np.random.Generator) -> Harmony:
    """Key, mode and the verse/chorus/pre-chorus/bridge progressions of one song."""
    minor = bool(rng.random() < 0.4)
    pool = _PROGRESSIONS[minor]
    verse = pool[int(rng.integers(len(pool)))]
    chorus = verse if rng.random() < 0.3 else pool[int(rng.integers(len(pool)))]
    bridge = [p for p in _BRIDGE_PROGRESSIONS if p != chorus]
    return Harmony(
        root=int(rng.integers(12)),
        minor=minor,
        verse=verse,
        chorus=chorus,
        pre=_PRE_PROGRESSIONS[int(rng.integers(len(_PRE_PROGRESSIONS)))],
        bridge=bridge[int(rng.integers(len(bridge)))],
    )


@dataclass(frozen=True)
class Arrangement:
    """How one section is played.

    Attributes
    ----------
    label : str
        Section label (one of the contract's, never ``"silence"``).
    first_bar, bars : int
        Position (bars from the song's first beat) and length in bars.
    energy : float
        0..1; scales velocities and selects densities.
    layers : frozenset[str]
        Voices that play (subset of :data:`VOICES` without ``"fx"``).
    drums : str
        Pattern: ``"four"`` (four on the floor), ``"rock"``, ``"basic"`` (backbeat),
        ``"half"`` (half-time), ``"sparse"``.
    progression : tuple[int, ...]
        Scale degrees, one chord per bar, cycled.
    motif : str
        Which melody the lead plays: ``"verse"``, ``"chorus"``, ``"bridge"`` or ``"inst"``.
    lead_base : int
        MIDI note of the lead's tonic octave (48, 60 or 72): its register.
    fill_beats : int
        Drum fill length (beats) at the end of the section (before any drop-out), 0 for none.
    build : bool
        Snare roll with rising density over the last two bars (pre-chorus build).
    riser_bars : int
        Riser (noise sweep) over this many last bars, into the next section.
    break_beats : int
        Drop-out: every voice but the riser is silent in this many last beats.
    lift_bars : int
        Early cue ("lift") over this many last bars, into the next section: 2 in 4/4, 3 in 3/4
        (so it starts at least 8 beats before the boundary), 0 for none (:func:`add_cues`).
    lift : tuple[str, ...]
        What the lift does, a subset of :data:`LIFT_PARTS` (empty when ``lift_bars`` is 0).
        With drums the lift always has a drum crescendo besides its parts.
    """

    label: str
    first_bar: int
    bars: int
    energy: float
    layers: frozenset[str]
    drums: str
    progression: tuple[int, ...]
    motif: str
    lead_base: int
    fill_beats: int
    build: bool
    riser_bars: int
    break_beats: int
    lift_bars: int = 0
    lift: tuple[str, ...] = ()


#: The parts a lift (early cue) can have: ``"ride"`` (hi-hats give way to ride-cymbal eighths),
#: ``"open_hat"`` (open hi-hat eighths, then sixteenths in the last bar), ``"toms"`` (a tom
#: pickup building from quarters to eighths, low to high), ``"snare"`` (a snare pickup building
#: from eighths to sixteenths), ``"thin"`` (no kick in the lift's first half, up to any
#: drop-out), ``"pedal"`` (the bass pedals eighths on the dominant), ``"swell"`` (without drums:
#: a rising arpeggio, eighths then sixteenths, and a pad crescendo).
LIFT_PARTS = ("ride", "open_hat", "toms", "snare", "thin", "pedal", "swell")
#: Share of boundaries left without an early cue (the old last-bar cues stay).
UNANNOUNCED = 0.15


def add_cues(
    arrangement: Sequence[Arrangement], beats_per_bar: int, rng: np.random.Generator
) -> tuple[Arrangement, ...]:
    """``arrangement`` with early cues planned before its boundaries (a copy; the last section,
    which ends the music, gets none).

    Every boundary except a share of :data:`UNANNOUNCED` (about 15 %) gets a lift over the last
    ``L`` bars of the section before it (``L`` = 2 in 4/4, 3 in 3/4: at least 8 beats ahead)
    when the section has more than ``L`` bars:

    * with drums, a crescendo and, drawn per boundary, a cymbal change (ride 40 %, open hi-hat
      35 %, none) and a pickup (toms 40 %, snare 30 %, none; never neither; a pre-chorus
      build's section gets no pickup, its snare roll is one), no kick in the lift's first half
      (50 %) and a bass pedal on the dominant (40 % when the bass plays);
    * without drums (pad intros, quiet bridges and outros), a swell (rising arpeggio, pad
      crescendo).

    Risers (``riser_bars``) are lengthened or added, 2-4 bars in 4/4 (3-4 in 3/4) but at most
    the section's length: into a chorus (60 %), from a chorus into a bridge, inst or outro
    (50 %), from an intro into a verse (50 %), and before 60 % of the drumless lifts. An
    unannounced boundary keeps the cues :func:`arrange` gave it.

    Deterministic for a given ``rng`` state; draws only from ``rng``.
    """
    n = beats_per_bar
    lift_len = 2 if n == 4 else 3
    out = []
    last = len(arrangement) - 1
    for i, sec in enumerate(arrangement):
        # draw the same number of values per section, whatever is used, so a change in one
        # section's options never shifts the draws of the next
        u = rng.random(6)
        riser_len = int(rng.integers(lift_len, 5))
        if i == last or u[0] < UNANNOUNCED:
            out.append(sec)
            continue
        nxt = arrangement[i + 1].label
        lift: list[str] = []
        lift_bars = lift_len if sec.bars > lift_len else 0
        drums = "drums" in sec.layers
        if lift_bars and drums:
            cymbal = "ride" if u[1] < 0.4 else "open_hat" if u[1] < 0.75 else ""
            pickup = "" if sec.build else "toms" if u[2] < 0.4 else "snare" if u[2] < 0.7 else ""
            if not (cymbal or pickup or sec.build):
                pickup = "toms"
            lift = [p for p in (cymbal, pickup) if p]
            if u[5] < 0.5:
                lift.append("thin")
            if "bass" in sec.layers and u[3] < 0.4:
                lift.append("pedal")
        elif lift_bars:
            lift = ["swell"]
        riser_p = (
            0.6 if nxt == "chorus"
            else 0.5 if sec.label == "chorus" and nxt in ("bridge", "inst", "outro")
            else 0.5 if sec.label == "intro" and nxt == "verse"
            else 0.6 if lift == ["swell"]
            else 0.0
        )
        riser = sec.riser_bars
        if u[4] < riser_p:
            riser = max(riser, min(riser_len, sec.bars))
        out.append(replace(sec, riser_bars=riser, lift_bars=lift_bars if lift else 0,
                           lift=tuple(lift)))
    return tuple(out)


def arrange(
    form: list[FormSection], harmony: Harmony, beats_per_bar: int, rng: np.random.Generator
) -> tuple[Arrangement, ...]:
    """The arrangement of every section of ``form`` (see :class:`Arrangement`).

    Per song: the verse and chorus drum patterns, whether the arpeggio joins the chorus, the
    intro and lead registers. Per section: layers and energy by label (chorus full, verse with
    a sparser groove, bridge without drums or with a sparse pattern, a two-bar ``inst`` as a
    break), a drum fill into most boundaries, a build, a riser and sometimes a drop-out before
    a chorus. These are the last-bar cues (the build and a pre-chorus riser span two bars);
    :func:`add_cues` adds the earlier ones (``lift_bars``, ``lift``, longer risers).
    """
    verse_drums = str(rng.choice(["half", "basic", "sparse"], p=[0.4, 0.4, 0.2]))
    chorus_drums = str(rng.choice(["four", "rock"], p=[0.5, 0.5]))
    chorus_arp = rng.random() < 0.6
    chorus_lead = 72 if rng.random() < 0.7 else 60
    intro_style = str(rng.choice(["pad", "keys", "groove", "hook"], p=[0.3, 0.3, 0.2, 0.2]))
    out: list[Arrangement] = []
    for i, (label, bars) in enumerate(form):
        nxt = form[i + 1].label if i + 1 < len(form) else None
        progression, motif, lead_base = harmony.verse, "verse", 60
        drums = verse_drums
        if label == "intro":
            layers = {
                "pad": {"pad", "arp"},
                "keys": {"keys", "pad"},
                "groove": {"drums", "bass", "keys"},
                "hook": {"keys", "lead", "pad"},
            }[intro_style]
            progression, motif, energy, drums = harmony.chorus, "chorus", 0.45, "sparse"
        elif label == "verse":
            layers = {"drums", "bass", "keys", "lead"} | ({"pad"} if rng.random() < 0.4 else set())
            energy = 0.55
        elif label == "pre-chorus":
            layers = {"drums", "bass", "pad", "arp"} | ({"lead"} if rng.random() < 0.5 else set())
            progression, energy, drums = harmony.pre, 0.7, "basic"
        elif label == "chorus":
            layers = {"drums", "bass", "pad", "keys", "lead"} | ({"arp"} if chorus_arp else set())
            progression, motif, energy, drums = harmony.chorus, "chorus", 1.0, chorus_drums
            lead_base = chorus_lead
        elif label == "bridge":
            layers = {"pad", "bass", "lead"} | ({"drums"} if rng.random() < 0.5 else set())
            progression, motif, energy, drums = harmony.bridge, "bridge", 0.45, "sparse"
            lead_base = 60 if chorus_lead == 72 else 72
        elif label == "inst" and bars <= 2:  # a break: drums and pad only, then the drop
            layers, energy, drums = {"drums", "pad"}, 0.3, "half"
            progression = harmony.chorus
        elif label == "inst":
            layers = {"drums", "bass", "keys", "arp", "lead"}
            progression, motif, energy, drums = harmony.chorus, "inst", 0.85, chorus_drums
            lead_base = 72
        else:  # outro
            layers = {"pad", "keys", "bass"} | ({"drums"} if rng.random() < 0.5 else set())
            progression, energy, drums = harmony.chorus, 0.4, "sparse"
        has_drums = "drums" in layers
        into_chorus = nxt == "chorus"
        build = label == "pre-chorus" and has_drums
        fill = 0
        if nxt is not None and has_drums and not build and rng.random() < 0.9:
            fill = int(rng.choice([1, 2, beats_per_bar], p=[0.25, 0.45, 0.3]))
        riser = 0
        if into_chorus and rng.random() < 0.85:
            riser = min(bars, 2 if label == "pre-chorus" else 1)
        drop = 0
        if into_chorus and label != "inst" and rng.random() < 0.5:
            drop = int(rng.integers(1, 3)) if beats_per_bar == 4 else 1
        out.append(
            Arrangement(
                label=label,
                first_bar=sum(s.bars for s in form[:i]),
                bars=bars,
                energy=float(np.clip(energy + rng.uniform(-0.05, 0.05), 0.0, 1.0)),
                layers=frozenset(layers),
                drums=drums,
                progression=progression,
                motif=motif,
                lead_base=lead_base,
                fill_beats=fill,
                build=build,
                riser_bars=riser,
                break_beats=drop,
            )
        )
    return tuple(out)


# --- notes ------------------------------------------------------------------------------------


def _drum_pattern(name: str, beats_per_bar: int) -> dict[str, tuple[float, ...]]:
    """Drum key -> onsets (beats within the bar) of one bar of pattern ``name``."""
    n = beats_per_bar
    eighths = tuple(k / 2 for k in range(2 * n))
    offbeats = tuple(k + 0.5 for k in range(n))
    backbeats = (1.0, 3.0) if n == 4 else (1.0, 2.0)
    if name == "four":
        return {
            "kick": tuple(float(k) for k in range(n)),
            "clap": backbeats,
            "open_hat": offbeats,
            "hat": tuple(k / 4 for k in range(4 * n)),
        }
    if name == "rock":
        return {
            "kick": (0.0, 1.5, 2.0, 2.5) if n == 4 else (0.0, 1.5),
            "snare": backbeats,
            "hat": eighths,
        }
    if name == "basic":
        return {"kick": (0.0, 2.0) if n == 4 else (0.0,), "snare": backbeats, "hat": eighths}
    if name == "half":
        return {"kick": (0.0, 1.75) if n == 4 else (0.0,), "snare": (2.0,), "hat": eighths}
    return {
        "kick": (0.0,),
        "stick": (2.0,) if n == 4 else (1.0,),
        "hat": tuple(map(float, range(n))),
    }


#: Pattern keys that keep playing through fills and snare rolls.
_CYMBALS = ("hat", "open_hat", "ride")
#: Relative loudness of each drum key in a pattern.
_DRUM_VELOCITY = {
    "kick": 0.95,
    "snare": 0.85,
    "clap": 0.8,
    "stick": 0.6,
    "hat": 0.45,
    "open_hat": 0.5,
    "ride": 0.5,
}


def _motifs(
    rng: np.random.Generator, beats_per_bar: int
) -> dict[str, list[tuple[float, float, int]]]:
    """A two-bar melody per motif name: ``(onset_beats, length_beats, scale_step)`` with the
    step relative to the current chord's root degree."""
    out = {}
    for name, density in (("verse", 0.45), ("chorus", 0.6), ("bridge", 0.3), ("inst", 0.75)):
        grid = np.arange(0, 2 * beats_per_bar, 0.5)
        hits = grid[(rng.random(grid.size) < density) | (grid == 0)]
        steps, step = [], int(rng.choice([0, 2, 4]))
        for _ in hits:
            steps.append(step)
            step = int(np.clip(step + rng.choice([-2, -1, 1, 2, 0]), -3, 7))
        ends = np.append(hits[1:], 2 * beats_per_bar)
        lengths = np.minimum(ends - hits, 2.0) * 0.9
        out[name] = [(float(b), float(n), s) for b, n, s in zip(hits, lengths, steps, strict=True)]
    return out


def write_notes(
    arrangement: Sequence[Arrangement],
    harmony: Harmony,
    beats_per_bar: int,
    rng: np.random.Generator,
) -> dict[str, Notes]:
    """All notes of the song, one :class:`Notes` per voice of :data:`VOICES`.

    Per section: drums from its pattern with a crash on its first downbeat (every section
    after the first), a fill of ``fill_beats`` beats of sixteenths over the snare and toms at
    its end (before any drop-out; the hi-hats keep playing) or a snare roll (eighths then
    sixteenths, crescendo) over its last two bars when ``build``;
    bass, pad, keys and arpeggio from the chord of each bar; the lead plays its motif over the
    chords (the second half of every four bars varied); risers cover the last ``riser_bars``;
    ``break_beats`` silence everything but the riser. A lift (``lift_bars``, ``lift``; see
    :data:`LIFT_PARTS`) changes the notes of its last bars: the hi-hats become ride or open
    hi-hats, a tom or snare pickup builds up to the fill, the kick drops out for the first half,
    the bass pedals on the dominant, the
    drums crescendo (velocity x 0.45 rising to x 1.1); without drums a rising arpeggio and a pad
    crescendo. The lift only rewrites its window: every other note is the same with or without
    it, and ``rng`` draws the same values. The last section ends on one held chord with a
    crash.
    """
    n = beats_per_bar
    buf = {v: _NoteBuffer() for v in VOICES}
    motifs = _motifs(rng, n)
    keys_rhythm = (
        (0.5, 1.5, 2.5, 3.5) if n == 4 else (1.0, 2.0),
        (0.0, 1.0, 2.0, 3.0) if n == 4 else (0.0, 1.0, 2.0),
        (0.0, 0.75, 1.5, 2.5, 3.25) if n == 4 else (0.0, 0.75, 1.5),
    )[int(rng.integers(3))]
    arp_up = rng.random() < 0.6
    mutes: list[tuple[float, float]] = []
    last = len(arrangement) - 1
    for si, sec in enumerate(arrangement):
        e = sec.energy
        gain = 0.35 + 0.65 * e
        start = sec.first_bar * n
        end = start + sec.bars * n
        cue_end = end - sec.break_beats  # fills and rolls lead into the drop-out
        fill_from = cue_end - sec.fill_beats
        roll_from = end - 2 * n if sec.build else end
        if si == last:
            fill_from = roll_from = cue_end = end - n  # the final bar: one held chord
        if si > 0:
            buf["drums"].add(start, 1.0, DRUM_KEYS["crash"], 0.6 + 0.4 * e)
        if sec.break_beats:
            mutes.append((end - sec.break_beats, end))
        if sec.riser_bars:
            buf["fx"].add(end - sec.riser_bars * n, sec.riser_bars * n, 60, 0.5 + 0.5 * e)
        for bar in range(sec.bars):
            b0 = start + bar * n
            degree = sec.progression[bar % len(sec.progression)]
            triad = [degree, degree + 2, degree + 4]
            final = si == last and bar == sec.bars - 1
            if "drums" in sec.layers:
                for key, onsets in _drum_pattern(sec.drums, n).items():
                    # cymbals keep time through fills and rolls, drums give way to them
                    until = cue_end if key in _CYMBALS else min(fill_from, roll_from)
                    for o in onsets:
                        if b0 + o < until:
                            accent = 1.0 if o == int(o) else 0.8
                            vel = _DRUM_VELOCITY[key] * accent * gain * rng.uniform(0.9, 1.0)
                            buf["drums"].add(b0 + o, 0.25, DRUM_KEYS[key], vel)
            if "bass" in sec.layers:
                root = harmony.pitch(degree, 36)
                root -= 12 if root > 47 else 0
                if final or e < 0.5:
                    buf["bass"].add(b0, n - 0.1, root, 0.8 * gain)
                elif e >= 0.9:
                    for k in range(2 * n):
                        oct_up = 12 if k % 4 == 3 else 0
                        buf["bass"].add(
                            b0 + k / 2, 0.45, root + oct_up, (0.9 if k % 2 else 1.0) * gain
                        )
                else:
                    fifth = harmony.pitch(degree + 4, 36)
                    fifth -= 12 if fifth - root > 12 or fifth > 52 else 0
                    buf["bass"].add(b0, 1.4, root, gain)
                    buf["bass"].add(b0 + 1.5, 0.9, fifth if n == 4 else root, 0.85 * gain)
                    if n == 4:
                        buf["bass"].add(b0 + 2.5, 1.3, root, 0.9 * gain)
            if "pad" in sec.layers:
                voicing = [_into(harmony.pitch(d, 48), 55) for d in triad]
                if e >= 0.9:
                    voicing.append(_into(harmony.pitch(degree, 60), 67))
                for p in voicing:
                    buf["pad"].add(b0, n - 0.05, p, 0.75 * gain)
            if "keys" in sec.layers:
                voicing = [_into(harmony.pitch(d, 60), 60) for d in triad]
                for o in (0.0,) if final else keys_rhythm:
                    length = n - 0.1 if final else 0.4
                    for p in voicing:
                        buf["keys"].add(b0 + o, length, p, (0.7 if o == int(o) else 0.6) * gain)
            if "arp" in sec.layers and not final:
                tones = [_into(harmony.pitch(d, 60), 67) for d in triad]
                tones = sorted(tones) + [min(tones) + 12]
                if not arp_up:
                    tones = tones[::-1]
                step = 0.25 if e >= 0.6 else 0.5
                for k in range(int(n / step)):
                    vel = (0.7 if k % 2 == 0 else 0.5) * gain
                    buf["arp"].add(b0 + k * step, step * 0.8, tones[k % len(tones)], vel)
            if "lead" in sec.layers and not final and bar % 2 == 0:
                # the two-bar motif from every even bar; its second bar is varied every other
                # time, and dropped when the section (or the song, before its final bar) ends
                no_second = bar + 1 >= sec.bars or (si == last and bar + 2 == sec.bars)
                for onset, length, step in motifs[sec.motif]:
                    if onset >= n and no_second:
                        continue
                    if bar % 4 == 2 and onset >= n:
                        step = step - 1 if step > 0 else step + 2
                    d = sec.progression[(bar + int(onset // n)) % len(sec.progression)]
                    pitch = _fold(harmony.pitch(d + step, sec.lead_base), sec.lead_base)
                    buf["lead"].add(b0 + onset, length, pitch, 0.75 * gain)
        if "drums" in sec.layers:
            _fill(buf["drums"], fill_from, cue_end, gain)
            if sec.build:
                _snare_roll(buf["drums"], roll_from, cue_end, n)
        if sec.lift_bars:
            _lift(buf, sec, harmony, n, end - sec.lift_bars * n, cue_end,
                  min(fill_from, roll_from), gain)
        if si == last:
            buf["drums"].add(fill_from, 1.0, DRUM_KEYS["crash"], 0.8)
            buf["drums"].add(fill_from, 0.5, DRUM_KEYS["kick"], 0.9)
    return {v: b.notes(() if v == "fx" else mutes) for v, b in buf.items()}


def _fold(pitch: int, base: int) -> int:
    """``pitch`` moved by octaves into ``[base - 7, base + 19]`` (a singable lead range)."""
    while pitch > base + 19:
        pitch -= 12
    while pitch < base - 7:
        pitch += 12
    return pitch


def _into(pitch: int, low: int) -> int:
    """``pitch`` moved by octaves into ``[low, low + 12)``."""
    return low + (pitch - low) % 12


def _fill(drums: _NoteBuffer, b0: float, b1: float, gain: float) -> None:
    """Sixteenth-note fill from ``b0`` to ``b1`` beats: snare, then toms high to low, crescendo."""
    count = int(round((b1 - b0) * 4))
    keys = ("snare", "tom_high", "tom_mid", "tom_low")
    for k in range(count):
        key = keys[min(3, k * 4 // max(count, 1))]
        drums.add(b0 + k / 4, 0.25, DRUM_KEYS[key], (0.55 + 0.45 * k / max(count - 1, 1)) * gain)
    if count:
        drums.add(b0, 0.25, DRUM_KEYS["kick"], 0.8 * gain)


def _lift(
    buf: dict[str, _NoteBuffer],
    sec: Arrangement,
    harmony: Harmony,
    beats_per_bar: int,
    b0: float,
    b1: float,
    pickup_until: float,
    gain: float,
) -> None:
    """Rewrite the notes of ``sec``'s lift, from ``b0`` to ``b1`` beats (the drop-out, if any,
    after ``b1``): its :data:`LIFT_PARTS` and, with drums, the crescendo. A pickup plays until
    ``pickup_until`` (where the fill or roll starts)."""
    n = beats_per_bar
    parts = sec.lift
    if "drums" in sec.layers:
        drums = buf["drums"]
        if "ride" in parts or "open_hat" in parts:
            drums.remove(b0, b1, (DRUM_KEYS["hat"], DRUM_KEYS["open_hat"]))
            ride = "ride" in parts
            t = b0
            while t < b1 - 1e-9:
                step = 0.25 if not ride and t >= b1 - n else 0.5
                on_beat = t == int(t)
                if ride:
                    drums.add(t, 0.5, DRUM_KEYS["ride"], (0.6 if on_beat else 0.45) * gain)
                else:
                    drums.add(t, step, DRUM_KEYS["open_hat"], (0.75 if on_beat else 0.6) * gain)
                t += step
        if "thin" in parts:
            drums.remove(b0, b0 + (b1 - b0) / 2, (DRUM_KEYS["kick"],))
        if "toms" in parts or "snare" in parts:
            toms = "toms" in parts
            keys = ("tom_low", "tom_mid", "tom_high") if toms else ("snare",)
            span = pickup_until - b0
            t = b0
            while t < pickup_until - 1e-9:
                x = (t - b0) / span
                key = keys[min(len(keys) - 1, int(x * len(keys)))]
                drums.add(t, 0.25, DRUM_KEYS[key], (0.5 + 0.4 * x) * gain)
                t += (1.0 if x < 0.5 else 0.5) if toms else (0.5 if x < 0.5 else 0.25)
        drums.ramp(b0, b1, 0.45, 1.1)
    if "pedal" in parts:
        buf["bass"].remove(b0, b1)
        dominant = harmony.pitch(4, 36)
        dominant -= 12 if dominant > 47 else 0
        for k in range(int(round((b1 - b0) * 2))):
            buf["bass"].add(b0 + k / 2, 0.45, dominant, (1.0 if k % 2 == 0 else 0.8) * gain)
    if "swell" in parts:
        buf["pad"].ramp(b0, b1, 0.6, 1.2)
        t = b0
        while t < b1 - 1e-9:
            bar = int((t - sec.first_bar * n) // n)
            degree = sec.progression[bar % len(sec.progression)]
            step = 0.25 if t >= b1 - n else 0.5
            k = int(round((t - (sec.first_bar + bar) * n) / step))  # note within its bar
            tone = degree + (0, 2, 4)[k % 3] + 7 * (k // 3)
            x = (t - b0) / (b1 - b0)
            buf["arp"].add(t, step * 0.8, _fold(harmony.pitch(tone, 60), 72),
                           (0.35 + 0.5 * x) * gain)
            t += step


def _snare_roll(drums: _NoteBuffer, b0: float, b1: float, beats_per_bar: int) -> None:
    """Pre-chorus build from ``b0`` to ``b1``: snare eighths, then sixteenths in the last bar,
    velocity rising from 0.3 to 1, a kick on every beat."""
    t = b0
    while t < b1 - 1e-9:
        step = 0.25 if t >= b1 - beats_per_bar else 0.5
        drums.add(t, step, DRUM_KEYS["snare"], 0.3 + 0.7 * (t - b0) / (b1 - b0))
        if t == int(t):
            drums.add(t, 0.25, DRUM_KEYS["kick"], 0.8)
        t += step
