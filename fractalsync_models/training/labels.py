"""Section label files → segments on the contract's 8 section labels.

Six readers, one per source format, each ``read_<source>(path, *, strict=False)`` returning a
sorted, gap-free, non-overlapping ``list[Segment]`` (times in seconds), and a dispatcher
:func:`read_labels` that detects the format when ``source`` is None:

=================== ======================================================================
source              format
=================== ======================================================================
``songformer_json`` SongFormer JSON: a list of ``{"label", "start", "end"}`` (times as numbers
                    or numeric strings, as SongFormer's app writes them)
``songformer_msa``  SongFormer MSA txt: ``start label`` lines, then a final ``end_time end``
``allinone``        all-in-one JSON: an object whose ``segments`` list holds ``{"start", "end",
                    "label"}``; other keys (``bpm``, ``beats``, ``downbeats``...) are ignored
``harmonix``        Harmonix Set ``segments/*.txt``: ``time label`` lines (space or tab), last
                    line ``t end``
``salami``          SALAMI ``parsed/*_functions.txt``: ``time<TAB>label`` lines ending at the
                    ``End`` line
``csv``             plain ``start,end,label`` rows, optional header ``start,end,label``
=================== ======================================================================

Labels
------
A raw label is normalised by :func:`normalize_label` (lower case; a trailing parenthesised or
bracketed note, ``chorus (a)``; trailing variant numbers and letters, ``verse2``, ``Chorus_B``,
``verse 1a``, ``verse a'``; then all separators ``space _ - .`` removed: ``Pre-Chorus`` →
``prechorus``, ``no_function`` → ``nofunction``) and looked up in the source's table
(:data:`LABEL_TABLES`), which maps onto :data:`SECTION_LABELS` or ``"ignore"``. A label missing
from the table maps to ``"ignore"`` as well; those are counted and reported in one
:class:`UnknownLabelWarning` per file, or raise :class:`LabelError` with ``strict=True``.
The tables agree wherever their keys overlap (tested), so detecting the wrong one of two
sources that share a word never changes its mapping. ``docs/labels.md`` renders the tables
(:func:`render_label_tables`; a test keeps the two equal).

Errors and repairs
------------------
Every problem raises :class:`LabelError` whose message is ``<file>:<line>: <problem>`` (line
1-based; for JSON the line where the offending item starts), unless it has a documented repair:

* empty file, or nothing left after dropping zero-length segments: error;
* unparsable line, missing field, non-numeric, non-finite (NaN, inf) or negative time: error;
* unsorted times (a start before the previous start; in time-line formats a time before the
  previous line's): error;
* end before start: error;
* zero-length segments (equal consecutive times; ``start == end``): dropped silently;
* overlap with the previous segment: error if it exceeds :data:`JOIN_TOLERANCE_S` (1 ms);
  within it the previous segment is trimmed to end where the next starts (text round-off);
* gap after the previous segment: within :data:`JOIN_TOLERANCE_S` the previous segment is
  extended to close it; a longer gap is filled with an ``"ignore"`` segment;
* time-line formats (MSA, Harmonix, SALAMI): the line labelled ``end`` (``End``) closes the last
  segment and must exist (error naming the last line otherwise); lines after it must carry the
  same time (SALAMI files repeat ``Silence`` there) and are dropped, a later time is an error;
* unknown label: ``"ignore"``, counted in an :class:`UnknownLabelWarning`; error if ``strict``.

Frames and boundaries
---------------------
:func:`segments_to_frames` puts label indices (``-1`` for ``ignore`` and outside every segment)
on any time grid; :func:`boundaries` lists the label changes. Numpy only, no torch.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import re
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fractalsync_models.contract import load_contract

__all__ = [
    "IGNORE",
    "JOIN_TOLERANCE_S",
    "LABEL_TABLES",
    "SECTION_LABELS",
    "SOURCES",
    "LabelError",
    "Segment",
    "UnknownLabelWarning",
    "boundaries",
    "detect_source",
    "normalize_label",
    "read_allinone",
    "read_csv",
    "read_harmonix",
    "read_labels",
    "read_salami",
    "read_songformer_json",
    "read_songformer_msa",
    "render_label_tables",
    "segments_to_frames",
]

#: Section labels in contract order (``contracts/v1.json`` ``sections.labels``).
SECTION_LABELS: tuple[str, ...] = tuple(load_contract()["sections"]["labels"])
#: The class for what maps to no section label; it becomes index -1 on a frame grid.
IGNORE = "ignore"
#: Overlaps and gaps up to this many seconds are text round-off: joined, not errors or fills.
JOIN_TOLERANCE_S = 1e-3
#: Source names accepted by :func:`read_labels`.
SOURCES: tuple[str, ...] = (
    "songformer_json", "songformer_msa", "allinone", "harmonix", "salami", "csv",
)

# --------------------------------------------------------------------------- mapping tables
# Keys are normalised labels (see normalize_label); values are contract labels or IGNORE.

#: SongFormer's own 8 labels (``pre-chorus`` normalises to ``prechorus``) and its app's
#: ``instrumental`` spelling.
SONGFORMER_TABLE: dict[str, str] = {
    "silence": "silence",
    "intro": "intro",
    "verse": "verse",
    "prechorus": "pre-chorus",
    "chorus": "chorus",
    "bridge": "bridge",
    "inst": "inst",
    "instrumental": "inst",
    "outro": "outro",
}

#: all-in-one's 10 Harmonix-derived labels (``allin1.HARMONIX_LABELS``): ``start``/``end`` are
#: the silent lead-in and tail, ``break`` and ``solo`` are instrumental sections.
ALLINONE_TABLE: dict[str, str] = {
    "start": "silence",
    "end": "silence",
    "intro": "intro",
    "outro": "outro",
    "break": "inst",
    "bridge": "bridge",
    "inst": "inst",
    "solo": "inst",
    "verse": "verse",
    "chorus": "chorus",
}

#: Harmonix Set segment labels (lower case, numbered variants like ``verse2``, ``chorus_b``).
#: ``end`` is the closing line, not a label. A post-chorus continues the chorus; a build leads
#: into a chorus or drop like a pre-chorus; ``transition`` is too short and varied to call.
HARMONIX_TABLE: dict[str, str] = {
    "silence": "silence",
    "intro": "intro",
    "fadein": "intro",
    "verse": "verse",
    "prechorus": "pre-chorus",
    "build": "pre-chorus",
    "buildup": "pre-chorus",
    "chorus": "chorus",
    "postchorus": "chorus",
    "refrain": "chorus",
    "hook": "chorus",
    "bridge": "bridge",
    "inst": "inst",
    "instrumental": "inst",
    "solo": "inst",
    "break": "inst",
    "breakdown": "inst",
    "interlude": "inst",
    "outro": "outro",
    "fadeout": "outro",
    "coda": "outro",
    "transition": IGNORE,
}

#: SALAMI function labels (annotator's guide vocabulary; ``End`` is the closing line). ``Z``
#: and ``&pause`` are SALAMI's silence; a jazz head or a main theme plays the chorus role; the
#: classical form words and non-musical sounds (applause, crowd, stage, spoken voice) have no
#: section label; ``no_function`` is explicitly none.
SALAMI_TABLE: dict[str, str] = {
    "silence": "silence",
    "z": "silence",
    "&pause": "silence",
    "intro": "intro",
    "fadein": "intro",
    "verse": "verse",
    "preverse": "verse",
    "postverse": "verse",
    "prechorus": "pre-chorus",
    "build": "pre-chorus",
    "chorus": "chorus",
    "postchorus": "chorus",
    "refrain": "chorus",
    "head": "chorus",
    "maintheme": "chorus",
    "theme": "chorus",
    "bridge": "bridge",
    "instrumental": "inst",
    "solo": "inst",
    "interlude": "inst",
    "break": "inst",
    "outro": "outro",
    "coda": "outro",
    "fadeout": "outro",
    "transition": IGNORE,
    "nofunction": IGNORE,
    "secondarytheme": IGNORE,
    "exposition": IGNORE,
    "development": IGNORE,
    "recapitulation": IGNORE,
    "variation": IGNORE,
    "applause": IGNORE,
    "crowdsounds": IGNORE,
    "stagesounds": IGNORE,
    "spoken": IGNORE,
    "voice": IGNORE,
}

#: Plain CSV: the union of every other table (they agree on shared keys), so a CSV written by
#: hand or converted from any of those sources keeps its words.
CSV_TABLE: dict[str, str] = {
    **SONGFORMER_TABLE, **ALLINONE_TABLE, **HARMONIX_TABLE, **SALAMI_TABLE,
}

#: The table of each source, by source name.
LABEL_TABLES: dict[str, dict[str, str]] = {
    "songformer_json": SONGFORMER_TABLE,
    "songformer_msa": SONGFORMER_TABLE,
    "allinone": ALLINONE_TABLE,
    "harmonix": HARMONIX_TABLE,
    "salami": SALAMI_TABLE,
    "csv": CSV_TABLE,
}

_TABLE_TITLES = (
    ("songformer_json", "SongFormer (JSON and MSA txt)"),
    ("allinone", "all-in-one (JSON)"),
    ("harmonix", "Harmonix Set (segments/*.txt)"),
    ("salami", "SALAMI (parsed/*_functions.txt)"),
    ("csv", "plain CSV (the union of the tables above)"),
)

_PAREN = re.compile(r"\s*[(\[][^()\[\]]*[)\]]\s*$")
_VARIANT = re.compile(r"(?:[\s_\-.']*\d+[a-z]?|[\s_\-.]+[a-z]|[\s_\-.']+)$")
_SEPARATORS = re.compile(r"[\s_\-.]+")


def normalize_label(raw: str) -> str:
    """The table key of a raw label: lower case, without variant suffixes or separators.

    Repeats, until nothing changes: drop a trailing ``(note)``/``[note]``; drop trailing digits
    with an optional letter (``verse2``, ``verse 1a``), a single letter after a separator
    (``Chorus_B``, ``verse a``) or trailing separators/primes. Stops before the label would be
    empty. Then removes every separator (space ``_`` ``-`` ``.``). Examples: ``"Pre-Chorus"``
    → ``"prechorus"``, ``"chorus (a)"`` → ``"chorus"``, ``"no_function"`` → ``"nofunction"``.
    """
    key = raw.strip().lower()
    previous = None
    while key != previous:
        previous = key
        for pattern in (_PAREN, _VARIANT):
            shorter = pattern.sub("", key)
            if shorter:
                key = shorter
    return _SEPARATORS.sub("", key)


def render_label_tables() -> str:
    """The mapping tables as Markdown, one table per source (the body of ``docs/labels.md``)."""
    parts = []
    for source, title in _TABLE_TITLES:
        table = LABEL_TABLES[source]
        parts.append(f"### {title}\n\n| normalised label | maps to |\n|---|---|")
        parts.extend(f"| `{key}` | `{label}` |" for key, label in table.items())
        parts.append("")
    return "\n".join(parts)


# --------------------------------------------------------------------------- public types


@dataclass(frozen=True)
class Segment:
    """One labelled section: ``[start, end)`` in seconds.

    ``label`` is one of :data:`SECTION_LABELS` or ``"ignore"``. Raises ``ValueError`` unless
    ``0 <= start < end`` are finite.
    """

    start: float
    end: float
    label: str

    def __post_init__(self) -> None:
        start, end = float(self.start), float(self.end)
        if not (math.isfinite(start) and math.isfinite(end)) or not 0.0 <= start < end:
            raise ValueError(f"Segment needs finite 0 <= start < end, got {start!r}, {end!r}")
        if self.label != IGNORE and self.label not in SECTION_LABELS:
            raise ValueError(f"Segment label must be one of {SECTION_LABELS} or 'ignore', "
                             f"got {self.label!r}")
        object.__setattr__(self, "start", start)
        object.__setattr__(self, "end", end)


class LabelError(ValueError):
    """A label file is invalid. The message is ``<file>:<line>: <problem>`` (line 1-based)."""

    def __init__(self, path: str | os.PathLike, line: int | None, problem: str) -> None:
        self.path = str(path)
        self.line = line
        self.problem = problem
        where = self.path if line is None else f"{self.path}:{line}"
        super().__init__(f"{where}: {problem}")


class UnknownLabelWarning(UserWarning):
    """Labels missing from the source's table were mapped to ``"ignore"``.

    Attributes: ``path``, ``source``, ``count`` (segments affected) and ``labels`` (each raw
    label -> the 1-based lines where it occurs). The message says the same.
    """

    def __init__(self, path: str | os.PathLike, source: str, labels: dict[str, list[int]]):
        self.path = str(path)
        self.source = source
        self.labels = labels
        self.count = sum(len(lines) for lines in labels.values())
        listed = ", ".join(f"{raw!r} (line {lines[0]})" for raw, lines in labels.items())
        super().__init__(f"{self.path}: {self.count} segment(s) with labels unknown to the "
                         f"{source} table mapped to 'ignore': {listed}")


@dataclass
class _Row:
    """One parsed entry: an interval (``end`` None until a time-line format closes it)."""

    start: float
    end: float | None
    raw: str
    line: int
    gap: bool = False  # a filled gap: labelled ignore, not looked up


# --------------------------------------------------------------------------- value parsing


def _read_text(path: str | os.PathLike) -> str:
    try:
        return Path(path).read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as exc:
        raise LabelError(path, None, f"not UTF-8 text ({exc.reason} at byte {exc.start})") from None


def _time(value: object, path, line: int, what: str) -> float:
    """A time in seconds from a number or a numeric string; finite and >= 0."""
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise LabelError(path, line, f"{what} must be a number of seconds, got {value!r}")
    try:
        t = float(value.strip() if isinstance(value, str) else value)
    except (ValueError, OverflowError):
        raise LabelError(path, line, f"{what} is not a number: {value!r}") from None
    if not math.isfinite(t):
        raise LabelError(path, line, f"{what} is not finite: {value!r}")
    if t < 0:
        raise LabelError(path, line, f"{what} is negative: {value!r}")
    return t


# --------------------------------------------------------------------------- validation


def _timeline_to_rows(path, rows: list[_Row]) -> list[_Row]:
    """Close time-line rows (each line opens a segment) at the next line; the ``end`` line
    closes the last one. Lines after ``end`` must repeat its time and are dropped."""
    if not rows:
        raise LabelError(path, None, "no label lines (empty file)")
    for prev, row in zip(rows, rows[1:], strict=False):
        if row.start < prev.start:
            raise LabelError(path, row.line, f"time {row.start} is before the previous line's "
                                             f"{prev.start} (line {prev.line}): times unsorted")
    ends = [i for i, row in enumerate(rows) if normalize_label(row.raw) == "end"]
    if not ends:
        raise LabelError(path, rows[-1].line, "missing the final 'end' line (the time the last "
                                              "segment ends)")
    last = ends[0]
    for row in rows[last + 1:]:
        if row.start != rows[last].start:
            raise LabelError(path, row.line, f"line after the 'end' line (line {rows[last].line})"
                                             f" starts later ({row.start} > {rows[last].start})")
    closed = [_Row(row.start, nxt.start, row.raw, row.line)
              for row, nxt in zip(rows[:last], rows[1:last + 1], strict=True)]
    return closed


def _join_intervals(path, rows: list[_Row]) -> list[_Row]:
    """Check interval rows (sorted, no overlaps) and repair: drop zero-length, join round-off,
    fill gaps with ignore. Returns the rows to keep, contiguous from the first start."""
    if not rows:
        raise LabelError(path, None, "no segments (empty file)")
    kept: list[_Row] = []
    prev_row: _Row | None = None
    for row in rows:
        if row.end < row.start:
            raise LabelError(path, row.line, f"segment ends ({row.end}) before it starts "
                                             f"({row.start})")
        if prev_row is not None and row.start < prev_row.start:
            raise LabelError(path, row.line, f"start {row.start} is before the previous "
                                             f"segment's start {prev_row.start} (line "
                                             f"{prev_row.line}): segments unsorted")
        prev_row = row
        if row.end == row.start:
            continue
        if kept:
            last = kept[-1]
            if row.start < last.end - JOIN_TOLERANCE_S:
                raise LabelError(path, row.line, f"segment [{row.start}, {row.end}) overlaps the "
                                                 f"previous one [{last.start}, {last.end}) (line "
                                                 f"{last.line}) by {last.end - row.start:.6g} s")
            if row.start > last.end + JOIN_TOLERANCE_S:
                kept.append(_Row(last.end, row.start, IGNORE, row.line, gap=True))
            else:
                last.end = row.start
                if last.end <= last.start:
                    kept.pop()
        kept.append(_Row(row.start, row.end, row.raw, row.line))
    if not kept:
        raise LabelError(path, None, "no segment of positive length")
    return kept


def _map_labels(path, rows: list[_Row], source: str, strict: bool) -> list[Segment]:
    """Map raw labels through the source's table; gap fills are already IGNORE."""
    table = LABEL_TABLES[source]
    unknown: dict[str, list[int]] = {}
    segments = []
    for row in rows:
        if row.gap:
            label = IGNORE
        else:
            key = normalize_label(row.raw)
            if not key:
                raise LabelError(path, row.line, "missing label")
            label = table.get(key)
            if label is None:
                if strict:
                    raise LabelError(path, row.line, f"unknown {source} label {row.raw!r} "
                                                     f"(normalised {key!r}); strict=True")
                unknown.setdefault(row.raw, []).append(row.line)
                label = IGNORE
        segments.append(Segment(row.start, row.end, label))
    if unknown:
        warnings.warn(UnknownLabelWarning(path, source, unknown), stacklevel=4)
    return segments


# --------------------------------------------------------------------------- parsers


def _parse_timeline(path, text: str) -> list[_Row]:
    """``time label`` lines (any whitespace between; blank lines skipped)."""
    rows = []
    for n, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        fields = line.strip().split(None, 1)
        if len(fields) < 2:
            raise LabelError(path, n, f"expected 'time label', got {line.strip()!r}")
        rows.append(_Row(_time(fields[0], path, n, "time"), None, fields[1].strip(), n))
    return rows


def _skip_ws(text: str, i: int) -> int:
    while i < len(text) and text[i] in " \t\r\n":
        i += 1
    return i


def _json_item_lines(text: str, key: str | None) -> list[int]:
    """1-based line of each item of the top-level JSON array, or of the array under the
    top-level object's ``key`` (the last one, as ``json.loads`` keeps). ``text`` is valid JSON."""
    decoder = json.JSONDecoder()
    i = _skip_ws(text, 0)
    if key is not None:
        i += 1  # '{'
        found = None
        while True:
            i = _skip_ws(text, i)
            if text[i] == "}":
                break
            name, i = decoder.raw_decode(text, i)
            i = _skip_ws(text, _skip_ws(text, i) + 1)  # past ':'
            if name == key:
                found = i
            _, i = decoder.raw_decode(text, i)
            i = _skip_ws(text, i)
            if text[i] == ",":
                i += 1
        i = found
    lines = []
    line, counted = 1, 0  # line number at offset `counted`
    i = _skip_ws(text, i + 1)  # past '['
    while text[i] != "]":
        line += text.count("\n", counted, i)
        counted = i
        lines.append(line)
        _, i = decoder.raw_decode(text, i)
        i = _skip_ws(text, i)
        if text[i] == ",":
            i = _skip_ws(text, i + 1)
    return lines


def _load_json(path, text: str) -> object:
    if not text.strip():
        raise LabelError(path, None, "empty file")
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise LabelError(path, exc.lineno, f"not valid JSON: {exc.msg}") from None
    except RecursionError:
        raise LabelError(path, None, "not valid JSON: nested too deeply") from None


def _parse_json_segments(path, items: object, lines: list[int], what: str) -> list[_Row]:
    if not isinstance(items, list):
        raise LabelError(path, 1, f"expected {what} to be a list of {{start, end, label}}, "
                                  f"got {type(items).__name__}")
    rows = []
    for k, (item, line) in enumerate(zip(items, lines, strict=True)):
        if not isinstance(item, dict):
            raise LabelError(path, line, f"segment {k} must be an object with start, end, label;"
                                         f" got {type(item).__name__}")
        for field in ("start", "end", "label"):
            if field not in item:
                raise LabelError(path, line, f"segment {k} has no {field!r}")
        if not isinstance(item["label"], str):
            raise LabelError(path, line, f"segment {k}: label must be a string, got "
                                         f"{item['label']!r}")
        start = _time(item["start"], path, line, f"segment {k} start")
        end = _time(item["end"], path, line, f"segment {k} end")
        rows.append(_Row(start, end, item["label"], line))
    return rows


# --------------------------------------------------------------------------- readers


def read_songformer_json(path: str | os.PathLike, *, strict: bool = False) -> list[Segment]:
    """Read SongFormer's JSON output: a list of ``{"label", "start", "end"}`` (seconds, as
    numbers or numeric strings). Returns sorted, contiguous segments; raises
    :class:`LabelError`."""
    text = _read_text(path)
    data = _load_json(path, text)
    lines = _json_item_lines(text, None) if isinstance(data, list) else []
    rows = _parse_json_segments(path, data, lines, "the top level")
    return _map_labels(path, _join_intervals(path, rows), "songformer_json", strict)


def read_allinone(path: str | os.PathLike, *, strict: bool = False) -> list[Segment]:
    """Read an all-in-one (``allin1``) result JSON: the ``segments`` list of ``{"start", "end",
    "label"}``; every other key is ignored. Raises :class:`LabelError`."""
    text = _read_text(path)
    data = _load_json(path, text)
    if not isinstance(data, dict) or "segments" not in data:
        raise LabelError(path, 1, "expected an all-in-one JSON object with a 'segments' list")
    segments = data["segments"]
    lines = _json_item_lines(text, "segments") if isinstance(segments, list) else []
    rows = _parse_json_segments(path, segments, lines, "'segments'")
    return _map_labels(path, _join_intervals(path, rows), "allinone", strict)


def _read_timeline_source(path, source: str, strict: bool) -> list[Segment]:
    rows = _timeline_to_rows(path, _parse_timeline(path, _read_text(path)))
    return _map_labels(path, _join_intervals(path, rows), source, strict)


def read_songformer_msa(path: str | os.PathLike, *, strict: bool = False) -> list[Segment]:
    """Read SongFormer's MSA txt: ``start label`` lines, then ``end_time end``. Raises
    :class:`LabelError`."""
    return _read_timeline_source(path, "songformer_msa", strict)


def read_harmonix(path: str | os.PathLike, *, strict: bool = False) -> list[Segment]:
    """Read a Harmonix Set ``segments/*.txt``: ``time label`` lines (space or tab), the last one
    ``t end``. Raises :class:`LabelError`."""
    return _read_timeline_source(path, "harmonix", strict)


def read_salami(path: str | os.PathLike, *, strict: bool = False) -> list[Segment]:
    """Read a SALAMI ``parsed/*_functions.txt``: ``time<TAB>label`` lines closed by the ``End``
    line (later lines at the same time are dropped). Raises :class:`LabelError`."""
    return _read_timeline_source(path, "salami", strict)


def read_csv(path: str | os.PathLike, *, strict: bool = False) -> list[Segment]:
    """Read a ``start,end,label`` CSV (seconds; optional header row ``start,end,label``; labels
    may be quoted). Raises :class:`LabelError`."""
    text = _read_text(path)
    reader = csv.reader(io.StringIO(text, newline=""))
    rows = []
    first = True
    try:
        for fields in reader:
            line = reader.line_num
            if not fields or not "".join(fields).strip():
                continue
            if first and [f.strip().lower() for f in fields] == ["start", "end", "label"]:
                first = False
                continue
            first = False
            if len(fields) != 3:
                raise LabelError(path, line, f"expected 3 fields start,end,label, got "
                                             f"{len(fields)}: {','.join(fields)!r}")
            start = _time(fields[0], path, line, "start")
            end = _time(fields[1], path, line, "end")
            rows.append(_Row(start, end, fields[2].strip(), line))
    except csv.Error as exc:
        raise LabelError(path, reader.line_num, f"not valid CSV: {exc}") from None
    return _map_labels(path, _join_intervals(path, rows), "csv", strict)


_READERS: dict[str, Callable[..., list[Segment]]] = {
    "songformer_json": read_songformer_json,
    "songformer_msa": read_songformer_msa,
    "allinone": read_allinone,
    "harmonix": read_harmonix,
    "salami": read_salami,
    "csv": read_csv,
}


def detect_source(path: str | os.PathLike) -> str:
    """Guess the source format of a label file from its name and content.

    ``*_functions.txt`` → ``salami``; ``.csv`` → ``csv``; JSON (``.json``, or content starting
    with ``[``/``{``) → ``songformer_json`` for a list, ``allinone`` for an object with
    ``segments``; other text whose first line has a comma → ``csv``; ``time label`` lines →
    whichever of ``songformer_msa``, ``harmonix``, ``salami`` knows the most of its labels
    (ties in that order; the tables agree on shared words, so the choice never changes the
    mapping of a word both know). Raises :class:`LabelError` saying why when it cannot tell.
    """
    name = Path(path).name.lower()
    if name.endswith("_functions.txt"):
        return "salami"
    if name.endswith(".csv"):
        return "csv"
    text = _read_text(path)
    stripped = text.strip()
    if not stripped:
        raise LabelError(path, None, "empty file: cannot detect its label format")
    if name.endswith(".json") or stripped[0] in "[{":
        data = _load_json(path, text)
        if isinstance(data, list):
            return "songformer_json"
        if isinstance(data, dict) and "segments" in data:
            return "allinone"
        raise LabelError(path, None, "cannot detect the label format: JSON that is neither a "
                                     "list of segments (SongFormer) nor an object with "
                                     "'segments' (all-in-one); pass source=...")
    if "," in stripped.splitlines()[0]:
        return "csv"
    try:
        rows = _parse_timeline(path, text)
    except LabelError as exc:
        raise LabelError(path, exc.line, f"cannot detect the label format ({exc.problem}); "
                                         f"pass source= one of {', '.join(SOURCES)}") from None
    keys = [normalize_label(row.raw) for row in rows]
    unknown = {source: sum(key not in LABEL_TABLES[source] and key != "end" for key in keys)
               for source in ("songformer_msa", "harmonix", "salami")}
    return min(unknown, key=unknown.get)  # fewest unknown labels; ties: the order above


def read_labels(
    path: str | os.PathLike, source: str | None = None, *, strict: bool = False
) -> list[Segment]:
    """Read a section label file of any supported source.

    Parameters
    ----------
    path : the label file.
    source : one of :data:`SOURCES`, or None to detect it (:func:`detect_source`).
    strict : raise :class:`LabelError` on a label missing from the source's table instead of
        mapping it to ``"ignore"`` with an :class:`UnknownLabelWarning`.

    Returns sorted, contiguous ``Segment`` s (seconds) with labels from :data:`SECTION_LABELS`
    or ``"ignore"``. Raises :class:`LabelError` (``<file>:<line>: <problem>``), ``ValueError``
    for an unknown ``source``, ``OSError`` if the file cannot be read.
    """
    if source is None:
        source = detect_source(path)
    if source not in _READERS:
        raise ValueError(f"unknown label source {source!r}; expected one of {', '.join(SOURCES)}")
    return _READERS[source](path, strict=strict)


# --------------------------------------------------------------------------- frames, boundaries


def _segment_arrays(segments: Sequence[Segment]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(starts, ends, label indices with -1 for ignore), checked sorted and non-overlapping."""
    for k, seg in enumerate(segments):
        if not isinstance(seg, Segment):
            raise TypeError(f"segments[{k}] must be a Segment, got {type(seg).__name__}")
    starts = np.array([s.start for s in segments], dtype=np.float64)
    ends = np.array([s.end for s in segments], dtype=np.float64)
    index = {label: i for i, label in enumerate(SECTION_LABELS)}
    labels = np.array([index.get(s.label, -1) for s in segments], dtype=np.int64)
    if starts.size > 1 and np.any(starts[1:] < ends[:-1]):
        k = int(np.argmax(starts[1:] < ends[:-1])) + 1
        raise ValueError(f"segments must be sorted and non-overlapping: segments[{k}] starts at "
                         f"{starts[k]} before segments[{k - 1}] ends at {ends[k - 1]}")
    return starts, ends, labels


def segments_to_frames(segments: Sequence[Segment], times: object) -> np.ndarray:
    """Label index at each time of any grid.

    Parameters
    ----------
    segments : sorted, non-overlapping segments (as the readers return them).
    times : (T,) times in seconds, finite, any order.

    Returns (T,) int64: the index in :data:`SECTION_LABELS` of the segment whose half-open
    ``[start, end)`` holds each time; ``-1`` for ``ignore`` and for times outside every segment.
    """
    t = np.asarray(times, dtype=np.float64)
    if t.ndim != 1:
        raise ValueError(f"times must be 1-D (seconds), got shape {t.shape}")
    if not np.all(np.isfinite(t)):
        raise ValueError("times contain NaN or infinite values")
    starts, ends, labels = _segment_arrays(segments)
    out = np.full(t.shape, -1, dtype=np.int64)
    if starts.size == 0:
        return out
    k = np.searchsorted(starts, t, side="right") - 1
    inside = (k >= 0) & (t < ends[np.maximum(k, 0)])
    out[inside] = labels[k[inside]]
    return out


def boundaries(segments: Sequence[Segment], *, repeats: bool = False) -> np.ndarray:
    """Section boundary times in seconds, shape (n,), increasing.

    A boundary is the start of a segment (not the first) whose label differs from the previous
    segment's; ``ignore`` counts as a label, so changes into and out of ``ignore`` (an
    unlabelled part, a filled gap) are boundaries, because their times are edges the file
    marks. With ``repeats=True`` also the starts between two segments of the same label (a
    chorus repeated back to back) count. Neither the first start nor the last end is a
    boundary. A start after a gap (where the previous segment ended earlier) always counts.
    """
    starts, ends, _ = _segment_arrays(segments)
    raw = [s.label for s in segments]
    if starts.size < 2:
        return np.zeros(0, dtype=np.float64)
    changed = np.array([a != b for a, b in zip(raw[:-1], raw[1:], strict=True)])
    keep = changed | (starts[1:] > ends[:-1]) | repeats
    return starts[1:][keep]
