"""``fractalsync-structure``: the causal section and boundary-hazard timeline of audio files.

Usage::

    fractalsync-structure song.mp3                  # JSON timeline on stdout (same as --json)
    fractalsync-structure song.mp3 --csv            # one CSV row per slow step
    fractalsync-structure a.wav b.flac music/ --out timelines/ [--csv] [--force]

Each file is decoded and run through the live path (:func:`~fractalsync_tracking.structure.
structure_timeline`: blocks of 1024 samples at the file's rate through the slow clock's beat
tracker and the structure tracker with the shipped anticipator), so the output is exactly what
the live app shows, step by step, at 12.5 Hz.

JSON (one line)::

    {"rate_hz": 12.5, "labels": [8 labels], "horizons_beats": [1, 2, 4, 8, 16],
     "times": [t0, t1, ...], "section_probs": [[8 floats], ...], "hazard_probs": [[5 floats], ...],
     "segments": [{"start": s, "end": e, "label": "verse"}, ...], "mode": "online"}

``times`` are the stream times (s) the slow steps describe; each output uses only the audio up
to its time plus the analysis frame's half window (32 ms). ``segments`` are the runs of the
displayed label after the display hysteresis, as the live label changes (the last one ends at
the end of the file). CSV: a header ``time,<8 labels>,hazard_1,hazard_2,hazard_4,hazard_8,
hazard_16,label`` and one row per slow step (``label``: the displayed label after that step).
Numbers are rounded to 4 decimals (probabilities to 1e-4, so a row of section probabilities
sums to 1 within 5e-4).

Files, errors and exit status as ``fractalsync-beats``: outputs in ``--out DIR`` are named
``<input stem>.<json|csv>`` and written atomically, never replacing a file without
``--force``; a directory input means the audio files directly inside it; several inputs need
``--out``. Each bad input gets one ``error:`` line on stderr while the others go on; exit 0 if
every input succeeded, 1 if any failed (or a model is missing or invalid: the command stops),
2 for a usage error, 130 on Ctrl-C (:mod:`fractalsync_models.cli_errors`). Warnings met while
analysing an input (NaN samples read as silence, a truncated file) are ``warning:`` lines.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from fractalsync_dsp.audio_io import load_audio
from fractalsync_models.anticipator import Anticipator
from fractalsync_models.beatnet import MODEL_CHOICES, ONLINE_MODEL
from fractalsync_models.cli_errors import add_debug_flag, cli_entry

from .cli_files import run_batch
from .slow_state import HORIZONS_BEATS, SECTION_LABELS
from .structure import RATE_HZ, StructureTimeline, structure_timeline

__all__ = ["CSV_HEADER", "DECIMALS", "main", "render", "timeline_document"]

PROG = "fractalsync-structure"
FORMATS = ("json", "csv")
#: Decimals of every number in the output.
DECIMALS = 4
#: The CSV header.
CSV_HEADER = ",".join(["time", *SECTION_LABELS, *(f"hazard_{h}" for h in HORIZONS_BEATS),
                       "label"])


def _rounded(values) -> list[float]:
    return [round(float(v), DECIMALS) for v in values]


def timeline_document(tl: StructureTimeline) -> dict:
    """The JSON document of a timeline (module docstring), numbers rounded to :data:`DECIMALS`."""
    return {
        "rate_hz": RATE_HZ,
        "labels": list(SECTION_LABELS),
        "horizons_beats": list(HORIZONS_BEATS),
        "times": _rounded(tl.times),
        "section_probs": [_rounded(row) for row in tl.section_probs],
        "hazard_probs": [_rounded(row) for row in tl.hazard_probs],
        "segments": [{"start": round(s.start, DECIMALS), "end": round(s.end, DECIMALS),
                      "label": s.label} for s in tl.segments],
        "mode": "online",
    }


def render(tl: StructureTimeline, fmt: str) -> str:
    """The timeline as text: ``json`` (:func:`timeline_document`, one line) or ``csv``
    (:data:`CSV_HEADER`, one row per slow step)."""
    if fmt == "json":
        return json.dumps(timeline_document(tl), separators=(",", ":")) + "\n"
    if fmt == "csv":
        rows = [CSV_HEADER]
        for t, sec, haz, label in zip(tl.times, tl.section_probs, tl.hazard_probs,
                                      tl.label_names, strict=True):
            numbers = _rounded([t, *sec, *haz])
            rows.append(",".join([*(repr(v) for v in numbers), label]))
        return "\n".join(rows) + "\n"
    raise ValueError(f"unknown format {fmt!r}")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Causal section probabilities, boundary hazard and displayed sections of "
                    "audio files, as the live app computes them (12.5 Hz).",
    )
    parser.add_argument("inputs", nargs="+", metavar="AUDIO",
                        help="audio file(s) or directories of audio files")
    fmt = parser.add_mutually_exclusive_group()
    fmt.add_argument("--json", dest="format", action="store_const", const="json",
                     help="JSON timeline (default)")
    fmt.add_argument("--csv", dest="format", action="store_const", const="csv",
                     help="one row per slow step: time, 8 section probs, 5 hazards, label")
    parser.set_defaults(format="json")
    parser.add_argument("--out", metavar="DIR",
                        help="write <stem>.<format> files into DIR (required for several inputs)")
    parser.add_argument("--force", action="store_true", help="overwrite existing outputs")
    parser.add_argument("--model", choices=[str(m) for m in MODEL_CHOICES],
                        default=str(ONLINE_MODEL),
                        help=f"BeatNet weights of the beat tracker (default {ONLINE_MODEL})")
    parser.add_argument("--quiet", action="store_true", help="no progress lines on stderr")
    add_debug_flag(parser)
    return parser


@cli_entry(PROG)
def main(argv: Sequence[str] | None = None) -> int:
    """Console entry point; returns the exit status (0 ok, 1 some input or the command failed,
    2 usage, 130 interrupted)."""
    parser = _parser()
    args = parser.parse_args(argv)
    model = int(args.model) if args.model.isdigit() else args.model
    anticipator: Anticipator | None = None

    def analyse(path: Path) -> StructureTimeline:
        nonlocal anticipator
        if anticipator is None:  # a missing/invalid model stops the command (run_batch)
            anticipator = Anticipator()
        audio, sample_rate = load_audio(path)
        return structure_timeline(audio, sample_rate, anticipator=anticipator, model=model)

    return run_batch(PROG, parser, args, analyse, render)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
