"""``fractalsync-prepare``: training corpus for the anticipator, one ``.npz`` per track.

Usage::

    fractalsync-prepare AUDIO_DIR --labels LABEL_DIR --out DIR [--jobs N]
    fractalsync-prepare AUDIO_DIR --labels LABEL_DIR --out DIR --scheduler tcp://HOST:PORT
        [--track-timeout S]
        [--source auto|songformer-json|songformer-msa|allinone|harmonix|salami|csv]
        [--snap-s S] [--quiet]

The work is :func:`fractalsync_tracking.prepare.prepare_corpus` (see there for the matching by
stem, the ``.npz`` layout, resuming and scheduling). Progress (``[i/n] track``) goes to stderr
when it is a terminal and ``--quiet`` is not given; each failed track gets one ``error:`` line,
each unmatched file and each warning one ``warning:`` line on stderr, and a summary line goes to
stdout. Exit status: 0 if every matched track is written or up to date, 1 if any track failed
(or none matched, or the command could not run: a missing directory, a foreign
``manifest.json`` in ``--out``, an unreachable scheduler, dask not installed), 2 for a usage
error, 130 on Ctrl-C (:mod:`fractalsync_models.cli_errors`).

On a dask cluster the batch always ends: ``--track-timeout S`` (default
:data:`~fractalsync_tracking.prepare.DEFAULT_TRACK_TIMEOUT_S`, 1800 s) is how long a track may
run on a worker, and how long the batch waits while no track runs (no worker, workers that died
or cannot run the tracks), before those tracks fail like any bad track ("Never a hang" in
:mod:`fractalsync_tracking.prepare`).
"""

from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Sequence
from pathlib import Path

from fractalsync_models.cli_errors import EXIT_FAILED, EXIT_OK, add_debug_flag, cli_entry
from fractalsync_models.training.labels import SOURCES

from .prepare import (
    DEFAULT_SNAP_S,
    DEFAULT_TRACK_TIMEOUT_S,
    LABEL_SUFFIXES,
    ClusterExtraMissing,
    prepare_corpus,
)

__all__ = ["main"]

PROG = "fractalsync-prepare"
SOURCE_CHOICES = ("auto", *(s.replace("_", "-") for s in SOURCES))


def _jobs(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not (math.isfinite(value) and value >= 0):
        raise argparse.ArgumentTypeError(f"must be a finite number of seconds >= 0, got {text}")
    return value


def _timeout(text: str) -> float:
    value = _seconds(text)
    if value == 0:
        raise argparse.ArgumentTypeError("must be > 0 seconds, got 0")
    return value


def _source(text: str) -> str:
    name = text.replace("_", "-")
    if name not in SOURCE_CHOICES:
        raise argparse.ArgumentTypeError(f"invalid choice: {text!r} (choose from "
                                         f"{', '.join(SOURCE_CHOICES)})")
    return name


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Run the live beat tracker over audio files and write the anticipator's "
                    "inputs and section/hazard targets on the 12.5 Hz slow grid, one .npz per "
                    "track, plus manifest.json.",
    )
    parser.add_argument("audio_dir", metavar="AUDIO_DIR", help="directory of audio files")
    parser.add_argument("--labels", required=True, metavar="LABEL_DIR",
                        help="directory of label files, matched to audio by stem "
                             f"(song.wav <-> song{'/'.join(LABEL_SUFFIXES)})")
    parser.add_argument("--out", required=True, metavar="DIR",
                        help="output directory (<stem>.npz and manifest.json)")
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--jobs", type=_jobs, metavar="N", default=None,
                       help="local worker processes (default: the number of CPUs)")
    where.add_argument("--scheduler", metavar="tcp://HOST:PORT",
                       help="run on this dask.distributed scheduler (the [cluster] extra)")
    parser.add_argument("--track-timeout", type=_timeout, default=None, metavar="S",
                        help="with --scheduler: fail a track that runs longer than S seconds on "
                             "a worker, and the waiting tracks when none has run for S seconds "
                             f"(default {DEFAULT_TRACK_TIMEOUT_S:g})")
    parser.add_argument("--source", type=_source, default="auto", metavar="FORMAT",
                        help=f"label format: {', '.join(SOURCE_CHOICES)} (default: auto, "
                             "detected per file)")
    parser.add_argument("--snap-s", type=_seconds, default=DEFAULT_SNAP_S, metavar="S",
                        help="snap section boundaries to the nearest tracked downbeat within S "
                             f"seconds (default {DEFAULT_SNAP_S:g}: off, for exact labels; "
                             "0.15 suits SongFormer labels)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    add_debug_flag(parser)
    return parser


@cli_entry(PROG, expected=(ClusterExtraMissing,))
def main(argv: Sequence[str] | None = None) -> int:
    """Console entry point; returns the exit status (0 ok, 1 a track or the command failed,
    2 usage, 130 interrupted)."""
    parser = _parser()
    args = parser.parse_args(argv)
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        parser.error(f"--out {out} is not a directory")
    if args.track_timeout is not None and args.scheduler is None:
        parser.error("--track-timeout needs --scheduler (local workers have no timeout)")
    timeout = DEFAULT_TRACK_TIMEOUT_S if args.track_timeout is None else args.track_timeout
    report = prepare_corpus(args.audio_dir, args.labels, out, jobs=args.jobs,
                            scheduler=args.scheduler, progress=not args.quiet,
                            source=args.source, snap_s=args.snap_s, track_timeout_s=timeout)
    for path in report.audio_without_labels:
        print(f"{PROG}: warning: {path}: audio without labels (no "
              f"{'/'.join(LABEL_SUFFIXES)} of that stem in {args.labels})", file=sys.stderr)
    for path in report.labels_without_audio:
        print(f"{PROG}: warning: {path}: labels without audio (no audio file of that stem in "
              f"{args.audio_dir})", file=sys.stderr)
    for track in report.tracks:
        for text in track.warnings:
            print(f"{PROG}: warning: {track.name}: {text}", file=sys.stderr)
        if track.status == "failed":
            print(f"{PROG}: error: {track.name}: {track.error}", file=sys.stderr)
    print(f"{PROG}: {len(report.written)} written, {len(report.skipped)} up to date, "
          f"{len(report.failed)} failed of {len(report.tracks)} tracks; "
          f"manifest {report.manifest}")
    if report.failed:
        print(f"{PROG}: failed: {', '.join(t.name for t in report.failed)}", file=sys.stderr)
        return EXIT_FAILED
    if not report.tracks:
        print(f"{PROG}: error: no audio file in {args.audio_dir} has a label file in "
              f"{args.labels} (matched by stem)", file=sys.stderr)
        return EXIT_FAILED
    return EXIT_OK


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
