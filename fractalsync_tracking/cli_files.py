"""The file-batch part of the analysis commands (``fractalsync-beats``, ``fractalsync-structure``).

:func:`run_batch` takes the parsed ``inputs``, ``--out``, ``--force``, ``--quiet`` and the
output format, expands directories to the audio files directly inside them, and analyses each
file in turn:

- one input and no ``--out``: the result goes to stdout; several inputs (or a directory) need
  ``--out DIR`` (a usage error otherwise);
- outputs in ``--out DIR`` are named ``<input stem>.<format>`` and written atomically
  (:func:`fractalsync_models.atomic_write.write_atomic`); an existing file is never replaced
  without ``--force``, and two inputs with one stem are refused;
- each bad input gets one ``PROG: error:`` line while the others go on; warnings met while
  analysing an input are ``PROG: warning:`` lines; a missing or invalid model
  (``ModelNotFoundError``, ``ContractError``) stops the command;
- progress lines ``[n/N] input -> output (seconds)`` on stderr for several inputs, unless
  ``--quiet``.

The exit status is 0 if every input succeeded, 1 otherwise (the
:mod:`fractalsync_models.cli_errors` convention).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path

from fractalsync_models.atomic_write import write_atomic
from fractalsync_models.cli_errors import EXIT_FAILED, EXIT_OK, describe, error_line, print_error
from fractalsync_models.contract import ContractError
from fractalsync_models.crnn import ModelNotFoundError

__all__ = ["AUDIO_SUFFIXES", "analysed_with_warnings", "expand_inputs", "run_batch"]

AUDIO_SUFFIXES = frozenset(
    {".wav", ".wave", ".flac", ".ogg", ".oga", ".opus", ".mp3", ".aif", ".aiff", ".au", ".caf"}
)


def analysed_with_warnings(prog: str, analyse: Callable[[Path], object], path: Path):
    """``analyse(path)``, with each warning it issues printed as one ``PROG: warning:`` line on
    stderr (prefixed by the path unless the message starts with it)."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            return analyse(path)
        finally:
            for w in caught:
                text = describe(w.message)
                where = "" if text.startswith(str(path)) else f"{path}: "
                print(f"{prog}: warning: {where}{text}", file=sys.stderr)


def expand_inputs(prog: str, inputs: Sequence[str]) -> tuple[list[Path], list[str], bool]:
    """Audio files named by ``inputs`` (directories expanded to the audio files directly in
    them), error lines for unusable inputs, and whether any input is a directory."""
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
            errors.append(error_line(prog, exc, p))
            continue
        if not found:
            errors.append(f"{prog}: error: {p}: directory contains no audio files "
                          f"({', '.join(sorted(AUDIO_SUFFIXES))})")
        files.extend(found)
    return files, errors, any_dir


def run_batch(prog: str, parser: argparse.ArgumentParser, args: argparse.Namespace,
              analyse: Callable[[Path], object], render: Callable[[object, str], str]) -> int:
    """Analyse every input of ``args`` (``inputs``, ``out``, ``force``, ``quiet``,
    ``format``) with ``analyse(path)`` and write ``render(result, args.format)`` (see the
    module docstring); returns the exit status."""
    files, errors, any_dir = expand_inputs(prog, args.inputs)
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
            print(f"{prog}: error: cannot create the output directory: {describe(exc)}",
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
            text = render(analysed_with_warnings(prog, analyse, path), args.format)
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
            print_error(prog, exc, path)
            continue
        if show_progress:
            print(f"[{n}/{len(files)}] {path} -> {target} "
                  f"({time.perf_counter() - started:.2f} s)", file=sys.stderr)
    return EXIT_FAILED if failed else EXIT_OK
