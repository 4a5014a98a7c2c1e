"""``fractalsync-beats``: beat grids for audio files, as JSON, CSV or text.

Usage::

    fractalsync-beats song.mp3                     # JSON grid on stdout (offline Viterbi)
    fractalsync-beats song.mp3 --txt               # "time beat_in_bar" lines on stdout
    fractalsync-beats a.wav b.flac music/ --out grids/ [--csv] [--force]
    fractalsync-beats song.mp3 --online            # causal particle-filter grid (issue 4)

Outputs in ``--out DIR`` are named ``<input stem>.<json|csv|txt>`` and written atomically
(:func:`fractalsync_models.atomic_write.write_atomic`: a temporary file in the same directory,
then a rename; mode 0666 & ~umask); an existing file is never replaced unless ``--force`` is
given. A directory input means the audio files directly inside it. Each bad input gets one
``error:`` line on stderr while the others are still processed; the exit status is 0 if every
input succeeded, 1 if any failed, 2 for a usage error, 130 on Ctrl-C. Errors that stop the
command (no models, an output directory that cannot be created, a bug) follow the convention
of :mod:`fractalsync_models.cli_errors`. Every warning met while analysing an input (e.g. NaN
samples read as silence, a truncated file) is one ``warning:`` line on stderr and does not fail
the input.
"""

from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Sequence
from pathlib import Path

from fractalsync_models.beatnet import MODEL_CHOICES, OFFLINE_MODEL, ONLINE_MODEL
from fractalsync_models.cli_errors import add_debug_flag, cli_entry

from .beat_grid import BeatGrid, beat_grid
from .cli_files import run_batch
from .online_grid import online_beat_grid
from .tempo import MAX_BPM, MIN_BPM

__all__ = ["main"]

FORMATS = ("json", "csv", "txt")
PROG = "fractalsync-beats"


def render(grid: BeatGrid, fmt: str) -> str:
    """The grid as text: ``json`` (the product-page document, one line), ``csv``
    (``time,beat_in_bar`` with a header) or ``txt`` (``time beat_in_bar`` lines)."""
    if fmt == "json":
        return grid.to_json() + "\n"
    rows = zip(grid.to_dict()["beats"], grid.beat_positions, strict=True)
    if fmt == "csv":
        return "time,beat_in_bar\n" + "".join(f"{t:.4f},{p}\n" for t, p in rows)
    if fmt == "txt":
        return "".join(f"{t:.4f} {p}\n" for t, p in rows)
    raise ValueError(f"unknown format {fmt!r}")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Beat grid (tempo, beats, downbeats, meter, confidence) of audio files.",
    )
    parser.add_argument("inputs", nargs="+", metavar="AUDIO",
                        help="audio file(s) or directories of audio files")
    fmt = parser.add_mutually_exclusive_group()
    for name, text in (("json", "JSON grid (default)"), ("csv", "time,beat_in_bar rows"),
                       ("txt", "'time beat_in_bar' lines")):
        fmt.add_argument(f"--{name}", dest="format", action="store_const", const=name,
                         help=text)
    parser.set_defaults(format="json")
    parser.add_argument("--out", metavar="DIR",
                        help="write <stem>.<format> files into DIR (required for several inputs)")
    parser.add_argument("--force", action="store_true", help="overwrite existing outputs")
    parser.add_argument("--model", choices=[str(m) for m in MODEL_CHOICES], default=None,
                        help="BeatNet weights: 1, 2, 3 or ensemble (offline default: ensemble; "
                             "online default: 1)")
    parser.add_argument("--online", action="store_true",
                        help="causal (particle filter) grid instead of the offline Viterbi grid")
    parser.add_argument("--tempo-window", type=float, metavar="BPM", default=None,
                        help="offline: decode only tempi within ± BPM of the dominant tempo")
    parser.add_argument("--min-bpm", type=float, default=MIN_BPM, help="offline: lowest tempo")
    parser.add_argument("--max-bpm", type=float, default=MAX_BPM, help="offline: highest tempo")
    parser.add_argument("--quiet", action="store_true", help="no progress lines on stderr")
    add_debug_flag(parser)
    return parser


@cli_entry(PROG)
def main(argv: Sequence[str] | None = None) -> int:
    """Console entry point; returns the exit status (0 ok, 1 some input or the command failed,
    2 usage, 130 interrupted)."""
    parser = _parser()
    args = parser.parse_args(argv)
    model = args.model if args.model is None or not args.model.isdigit() else int(args.model)

    if args.online:
        online_model = ONLINE_MODEL if model is None else model

        def analyse(path: Path) -> BeatGrid:
            return online_beat_grid(path, model=online_model)
    else:
        if not 0 < args.min_bpm <= args.max_bpm < math.inf:
            parser.error("need 0 < --min-bpm <= --max-bpm, both finite")
        if args.tempo_window is not None and not args.tempo_window > 0:
            parser.error("--tempo-window must be > 0 BPM")
        options = dict(min_bpm=args.min_bpm, max_bpm=args.max_bpm,
                       tempo_window=args.tempo_window)
        offline_model = OFFLINE_MODEL if model is None else model

        def analyse(path: Path) -> BeatGrid:
            return beat_grid(path, model=offline_model, **options)

    return run_batch(PROG, parser, args, analyse, render)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
