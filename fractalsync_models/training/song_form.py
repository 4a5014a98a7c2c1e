"""Song form for the structured-song generator: the tempo map and the section plan.

Everything here is pure and cheap (no audio): a song's musical time line is decided by
:func:`plan_form` and :func:`fit_form` (labels and bar counts) and :func:`draw_tempo_change` /
:func:`tempo_map_for` (a :class:`TempoMap`), from a seeded ``numpy.random.Generator``.

Musical time is counted in beats from the song's first beat (beat 0 = the first downbeat of the
first non-silent section). A beat is a quarter note in both meters (4/4 and 3/4).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

__all__ = [
    "MAX_BPM",
    "MIN_BPM",
    "FormSection",
    "TempoMap",
    "TempoChange",
    "draw_tempo_change",
    "fit_form",
    "plan_form",
    "tempo_map_for",
]

#: Tempo range of every generated song, initial tempo and after any change (BPM).
MIN_BPM, MAX_BPM = 70.0, 180.0


class FormSection(NamedTuple):
    """One section of the form in musical time: ``label`` and its length in whole ``bars``."""

    label: str
    bars: int


# --- tempo map ----------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class TempoMap:
    """Tempo as a function of musical time (beats), piecewise linear between breakpoints.

    Attributes
    ----------
    beat : np.ndarray, shape (k,), float64
        Breakpoint positions in beats, non-decreasing, ``beat[0] == 0``. Two breakpoints at the
        same beat make a tempo step there (the later one holds from that beat on).
    bpm : np.ndarray, shape (k,), float64
        Tempo at each breakpoint (beats per minute, > 0). Between breakpoints the tempo is linear
        *in beats* (so a ramp over a section changes the tempo by equal steps per beat); it is
        constant after the last breakpoint and before the first.
    """

    beat: np.ndarray
    bpm: np.ndarray

    def __post_init__(self) -> None:
        beat = np.asarray(self.beat, dtype=np.float64).reshape(-1)
        bpm = np.asarray(self.bpm, dtype=np.float64).reshape(-1)
        if beat.size == 0 or beat.size != bpm.size:
            raise ValueError("tempo map needs as many breakpoint beats as tempi, at least one")
        if not (np.all(np.isfinite(beat)) and np.all(np.isfinite(bpm))):
            raise ValueError("tempo map contains NaN or infinite values")
        if beat[0] != 0.0 or np.any(np.diff(beat) < 0):
            raise ValueError("tempo map beats must start at 0 and be non-decreasing")
        if np.any(bpm <= 0):
            raise ValueError("tempo map tempi must be > 0 BPM")
        object.__setattr__(self, "beat", beat)
        object.__setattr__(self, "bpm", bpm)

    @classmethod
    def constant(cls, bpm: float) -> TempoMap:
        """A constant tempo of ``bpm`` beats per minute."""
        return cls(np.array([0.0]), np.array([float(bpm)]))

    def _segments(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Per breakpoint i: start tempo, slope (BPM per beat) of the segment from it, and the
        time (s) at which it is reached, each shape (k,)."""
        db = np.diff(self.beat)
        slope = np.zeros_like(self.bpm)
        with np.errstate(divide="ignore", invalid="ignore"):
            slope[:-1] = np.where(db > 0, np.diff(self.bpm) / np.where(db > 0, db, 1.0), 0.0)
        seconds = np.zeros_like(self.bpm)
        seconds[1:] = np.cumsum(_segment_seconds(self.bpm[:-1], slope[:-1], db))
        return self.bpm, slope, seconds

    def seconds_at(self, beats: object) -> np.ndarray:
        """Seconds from beat 0 to each position in ``beats`` (beats, any shape, finite).

        The exact integral of ``60 / bpm(b) db``: within a segment starting at tempo ``a``
        with slope ``s`` BPM per beat, ``x`` beats take ``60 log(1 + s x / a) / s`` seconds
        (``60 x / a`` when ``s == 0``). Positions before 0 use the first tempo (negative
        seconds).
        """
        b = np.asarray(beats, dtype=np.float64)
        if not np.all(np.isfinite(b)):
            raise ValueError("beat positions must be finite")
        a, slope, seconds = self._segments()
        i = np.clip(np.searchsorted(self.beat, b, side="right") - 1, 0, None)
        out = seconds[i] + _segment_seconds(a[i], np.where(b < 0, 0.0, slope[i]), b - self.beat[i])
        return out.reshape(b.shape)

    def bpm_at(self, beats: object) -> np.ndarray:
        """Tempo (BPM) at each position in ``beats`` (any shape); at a step, the later tempo."""
        b = np.asarray(beats, dtype=np.float64)
        a, slope, _ = self._segments()
        i = np.clip(np.searchsorted(self.beat, b, side="right") - 1, 0, None)
        return a[i] + slope[i] * np.maximum(b - self.beat[i], 0.0)


def _segment_seconds(a: np.ndarray, slope: np.ndarray, x: np.ndarray) -> np.ndarray:
    """Seconds taken by ``x`` beats from a point of tempo ``a`` BPM rising ``slope`` BPM/beat;
    arrays of one shape in, 1-d out."""
    a, slope, x = np.broadcast_arrays(*np.atleast_1d(a, slope, x))
    out = 60.0 * x / a
    ramp = slope != 0
    if np.any(ramp):
        out = out.copy()
        out[ramp] = 60.0 * np.log1p(slope[ramp] * x[ramp] / a[ramp]) / slope[ramp]
    return out


# --- form -------------------------------------------------------------------------------------


def plan_form(rng: np.random.Generator) -> list[FormSection]:
    """A full-length pop form (before fitting to a duration), drawn from ``rng``.

    The shape is ``intro, (verse, [pre-chorus], chorus) x2, [bridge | inst | both], [break],
    chorus, [outro]`` with variations: some songs open on a chorus hook, not every song has a
    pre-chorus, bridge or inst, the second verse may be shorter, a 2-bar ``inst`` break (a
    drop-out) may precede the last chorus. Lengths are mostly 4/8/16 bars, sometimes 2, 6 or 12.
    Adjacent sections never share a label. Silence is not part of the form.
    """
    verse = int(rng.choice([8, 16, 8, 12], p=[0.5, 0.3, 0.1, 0.1]))
    chorus = int(rng.choice([8, 16, 4], p=[0.65, 0.25, 0.1]))
    has_pre = rng.random() < 0.65
    pre = int(rng.choice([4, 8, 2, 6], p=[0.55, 0.25, 0.1, 0.1]))
    form: list[FormSection] = []
    if rng.random() < 0.15:  # open on the hook
        form.append(FormSection("chorus", chorus))
    else:
        form.append(FormSection("intro", int(rng.choice([4, 8, 2, 6], p=[0.5, 0.3, 0.1, 0.1]))))
    for repeat in range(2):
        v = verse if repeat == 0 or rng.random() < 0.6 else max(4, verse // 2)
        form.append(FormSection("verse", v))
        if has_pre:
            form.append(FormSection("pre-chorus", pre))
        form.append(FormSection("chorus", chorus))
    middle = rng.random()
    if middle < 0.35:
        form.append(FormSection("bridge", int(rng.choice([8, 4, 6], p=[0.6, 0.25, 0.15]))))
    elif middle < 0.65:
        form.append(FormSection("inst", int(rng.choice([8, 4, 16], p=[0.6, 0.25, 0.15]))))
    elif middle < 0.8:
        form.append(FormSection("bridge", 8))
        form.append(FormSection("inst", int(rng.choice([4, 8]))))
    if rng.random() < 0.25 and form[-1].label != "inst":
        form.append(FormSection("inst", 2))  # the break before the drop
    form.append(FormSection("chorus", chorus if rng.random() < 0.6 else 2 * chorus))
    if rng.random() < 0.85:
        form.append(FormSection("outro", int(rng.choice([4, 8, 2, 6], p=[0.5, 0.3, 0.1, 0.1]))))
    return form


#: Shortest length a section is cut to by :func:`fit_form` (bars).
_MIN_BARS = 2


def fit_form(
    form: list[FormSection], bar_seconds: float, budget_s: float, rng: np.random.Generator
) -> list[FormSection]:
    """Shorten or lengthen ``form`` so it lasts at most ``budget_s`` seconds and less than one
    bar short of it, assuming ``bar_seconds`` per bar.

    Too long, step by step until it fits: halve sections longer than 8 bars; drop middle
    bridge/inst sections; drop middle verse/pre-chorus sections (those after the
    first chorus first); halve 8-bar sections; drop
    any middle section; cut bars one by one (never below 2 per section). The first and last
    sections stay. Too short: add blocks after the last chorus (verse, [pre-chorus], chorus;
    or inst, chorus), or a 4-bar inst before it, while they fit, then grow the last section
    (or the first, if the last is not a chorus or outro) by the remaining whole bars, which
    gives irregular lengths now and then (e.g. a 7-bar outro). Adjacent sections with one
    label are merged. Raises ValueError if even three 2-bar sections do not fit.
    """
    max_bars = int(np.floor(budget_s / bar_seconds + 1e-9))
    if max_bars < 3 * _MIN_BARS:
        raise ValueError(
            f"a song needs at least {3 * _MIN_BARS} bars ({3 * _MIN_BARS * bar_seconds:.1f} s "
            f"at this tempo), the duration leaves room for {max_bars}"
        )
    form = _merge_repeats(list(form))
    while sum(s.bars for s in form) > max_bars:
        form = _merge_repeats(_shorten_once(form))
    for _ in range(50):
        room = max_bars - sum(s.bars for s in form)
        blocks = [_extension_block(form, rng), [FormSection("inst", 4)]]
        block = next((b for b in blocks if sum(s.bars for s in b) <= room), None)
        if block is None:
            break
        choruses = [i for i, s in enumerate(form) if s.label == "chorus"]
        at = choruses[-1] + 1 if choruses else len(form)
        if block[-1].label != "chorus" and choruses and choruses[-1] > 0:
            at -= 1  # an instrumental filler goes before the last chorus: the ending stays
        form = _merge_repeats(form[:at] + block + form[at:])
    spare = max_bars - sum(s.bars for s in form)
    if spare > 0:
        grow = len(form) - 1 if form[-1].label in ("outro", "chorus") else 0
        form[grow] = FormSection(form[grow].label, form[grow].bars + spare)
    return form


def _shorten_once(form: list[FormSection]) -> list[FormSection]:
    """``form`` after the first applicable shortening step of :func:`fit_form`."""
    form = list(form)
    middle = range(1, len(form) - 1)
    for i in sorted(range(len(form)), key=lambda i: -form[i].bars):
        if form[i].bars > 8:
            form[i] = FormSection(form[i].label, form[i].bars // 2)
            return form
    first_chorus = next((i for i, s in enumerate(form) if s.label == "chorus"), 0)
    for labels in (("bridge", "inst"), ("verse", "pre-chorus")):
        drop = [i for i in middle if form[i].label in labels]
        if drop and len(form) > 3:
            later = [i for i in drop if i > first_chorus]  # the second verse goes first
            del form[drop[-1] if labels[0] == "bridge" else (later or drop)[0]]
            return form
    for i in sorted(range(len(form)), key=lambda i: -form[i].bars):
        if form[i].bars > 4:
            form[i] = FormSection(form[i].label, form[i].bars // 2)
            return form
    if len(form) > 3:
        del form[1]
        return form
    i = max(range(len(form)), key=lambda i: form[i].bars)
    if form[i].bars <= _MIN_BARS:
        raise AssertionError("unreachable: three sections of 2 bars fit")
    form[i] = FormSection(form[i].label, form[i].bars - 1)
    return form


def _extension_block(form: list[FormSection], rng: np.random.Generator) -> list[FormSection]:
    """Sections to add after the last chorus when a form is too short: verse, [pre-chorus],
    chorus with the form's lengths, or (30 %) an 8-bar inst and a chorus."""
    verse = next((s.bars for s in form if s.label == "verse"), 8)
    chorus = next((s.bars for s in form if s.label == "chorus"), 8)
    pre = next((s.bars for s in form if s.label == "pre-chorus"), 0)
    if rng.random() < 0.3:
        return [FormSection("inst", 8), FormSection("chorus", chorus)]
    block = [FormSection("verse", verse)]
    if pre:
        block.append(FormSection("pre-chorus", pre))
    return [*block, FormSection("chorus", chorus)]


def _merge_repeats(form: list[FormSection]) -> list[FormSection]:
    """Join adjacent sections with the same label into one."""
    out: list[FormSection] = []
    for s in form:
        if out and out[-1].label == s.label:
            out[-1] = FormSection(s.label, out[-1].bars + s.bars)
        else:
            out.append(s)
    return out


# --- tempo plan -------------------------------------------------------------------------------


class TempoChange(NamedTuple):
    """A song's one tempo change, drawn before the form is fitted (see :func:`draw_tempo_change`).

    ``kind`` is ``"none"``, ``"step"`` (at the start of a section: the last chorus if ``late``,
    else the first bridge or second chorus), ``"accelerando"`` (a ramp over the last
    pre-chorus, the new tempo held afterwards) or ``"ritardando"`` (a ramp over the outro);
    ``bpm`` is the tempo after the change.
    """

    kind: str
    bpm: float
    late: bool


def draw_tempo_change(rng: np.random.Generator, bpm: float) -> TempoChange:
    """No change for about two thirds of the songs, otherwise a step (6-15 % up or down), an
    accelerando (6-15 % up) or a ritardando (6-15 % down), kept within [MIN_BPM, MAX_BPM]."""
    kind = str(rng.choice(["none", "step", "accelerando", "ritardando"], p=[0.64, 0.16, 0.1, 0.1]))
    change = float(rng.uniform(0.06, 0.15))
    late = bool(rng.random() < 0.6)
    if kind == "step":
        sign = 1.0 if rng.random() < 0.6 else -1.0
    else:
        sign = 1.0 if kind == "accelerando" else -1.0
    target = float(np.clip(bpm * (1.0 + sign * change), MIN_BPM, MAX_BPM))
    if kind == "none" or abs(target - bpm) < 1.0:
        return TempoChange("none", bpm, late)
    return TempoChange(kind, target, late)


def tempo_map_for(
    form: list[FormSection], beats_per_bar: int, bpm: float, change: TempoChange
) -> TempoMap:
    """The tempo map of ``form`` at initial tempo ``bpm`` with ``change`` applied; constant
    when the form has no section the change applies to (e.g. no outro for a ritardando)."""
    starts = np.cumsum([0] + [s.bars for s in form]) * float(beats_per_bar)
    labels = [s.label for s in form]
    if change.kind == "step":
        at = [i for i, lab in enumerate(labels) if i > 0 and lab in ("bridge", "chorus")]
        if len(at) > 1:
            b = starts[at[-1] if change.late else at[1 if labels[at[0]] == "chorus" else 0]]
            return TempoMap(np.array([0.0, b, b]), np.array([bpm, bpm, change.bpm]))
    elif change.kind == "accelerando":
        pre = [i for i, lab in enumerate(labels) if lab == "pre-chorus"]
        if pre:
            i = pre[-1]
            return TempoMap(starts[[0, i, i + 1]], np.array([bpm, bpm, change.bpm]))
    elif change.kind == "ritardando" and labels[-1] == "outro" and len(form) > 1:
        return TempoMap(starts[[0, -2, -1]], np.array([bpm, bpm, change.bpm]))
    return TempoMap.constant(bpm)
