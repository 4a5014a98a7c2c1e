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
import os
import sys
import time
import warnings
from collections.abc import Sequence
from pathlib import Path

from fractalsync_models.atomic_write import write_atomic
from fractalsync_models.beatnet import MODEL_CHOICES, OFFLINE_MODEL, ONLINE_MODEL
from fractalsync_models.cli_errors import (
    EXIT_FAILED,
    EXIT_OK,
    add_debug_flag,
    cli_entry,
    describe,
    error_line,
    print_error,
)
from fractalsync_models.contract import ContractError
from fractalsync_models.crnn import ModelNotFoundError

from .beat_grid import BeatGrid, beat_grid
from .online_grid import online_beat_grid
from .tempo import MAX_BPM, MIN_BPM

__all__ = ["main"]

AUDIO_SUFFIXES = frozenset(
    {".wav", ".wave", ".flac", ".ogg", ".oga", ".opus", ".mp3", ".aif", ".aiff", ".au", ".caf"}
)
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


def _analysed_with_warnings(analyse, path: Path):
    """``analyse(path)``, with each warning it issues printed as one ``warning:`` line on
    stderr (prefixed by the path unless the message starts with it)."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            return analyse(path)
        finally:
            for w in caught:
                text = str(w.message)
                where = "" if text.startswith(str(path)) else f"{path}: "
                print(f"{PROG}: warning: {where}{text}", file=sys.stderr)


def _expand(inputs: Sequence[str]) -> tuple[list[Path], list[str], bool]:
    """Audio files named by ``inputs`` (directories expanded), error lines for unusable
    inputs, and whether any input is a directory."""
    files: list[Path] = []
    errors: list[str] = []
    any_dir = False
    for name in inputs:
        p = Path(name)
        try:
            if not p.is_dir():
                files.append(p)  # missing/unreadable files are reported by the loader
                continue
            any_dir = True
            found = sorted(q for q in p.iterdir()
                           if q.is_file() and q.suffix.lower() in AUDIO_SUFFIXES)
        except OSError as exc:  # e.g. a name too long, a directory that cannot be listed
            errors.append(error_line(PROG, exc, p))
            continue
        if not found:
            errors.append(f"{PROG}: error: {p}: directory contains no audio files "
                          f"({', '.join(sorted(AUDIO_SUFFIXES))})")
        files.extend(found)
    return files, errors, any_dir


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

    files, errors, any_dir = _expand(args.inputs)
    for line in errors:
        print(line, file=sys.stderr)
    to_stdout = args.out is None
    if to_stdout and (len(args.inputs) > 1 or len(files) > 1 or any_dir):
        parser.error("several inputs need --out DIR")
    out_dir = None if to_stdout else Path(args.out)
    if out_dir is not None:
        if out_dir.exists() and not out_dir.is_dir():
            parser.error(f"--out {out_dir} is not a directory")
        try:
            out_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:  # read-only, a file on the way, no permission, ...
            print(f"{PROG}: error: cannot create the output directory: {describe(exc)}",
                  file=sys.stderr)
            return EXIT_FAILED

    failed = len(errors)
    claimed: dict[Path, Path] = {}
    show_progress = not args.quiet and len(files) > 1
    for n, path in enumerate(files, 1):
        started = time.perf_counter()
        try:
            target = None
            if out_dir is not None:
                target = out_dir / f"{path.stem}.{args.format}"
                if target in claimed:
                    raise FileExistsError(f"output {target} is also the output of "
                                          f"{claimed[target]}; rename one input")
                claimed[target] = path
                if target.exists() and not args.force:
                    raise FileExistsError(f"{target} exists (use --force to overwrite)")
            text = render(_analysed_with_warnings(analyse, path), args.format)
            if target is None:
                try:
                    sys.stdout.write(text)
                    sys.stdout.flush()
                except BrokenPipeError:  # reader went away (e.g. `| head`): stop quietly
                    os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
                    return EXIT_FAILED
            else:
                write_atomic(target, text, overwrite=args.force)
        except (ModelNotFoundError, ContractError):
            raise  # every other input would fail the same way: the command stops
        except (OSError, ValueError, TypeError) as exc:
            failed += 1
            print_error(PROG, exc, path)
            continue
        if show_progress:
            print(f"[{n}/{len(files)}] {path} -> {target} "
                  f"({time.perf_counter() - started:.2f} s)", file=sys.stderr)
    return EXIT_FAILED if failed else EXIT_OK


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
