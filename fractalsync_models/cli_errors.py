"""The one error convention of every FractalSync command (console scripts, examples, servers).

A command's ``main(argv) -> int`` is wrapped with :func:`cli_entry` (or called through
:func:`run_cli`); the wrapper turns what escapes ``main`` into an exit status and at most one
line on stderr:

- exit 0: success; exit 2: usage error (argparse's own ``PROG: error: ...`` and exit 2 pass
  through unchanged, as does any other ``SystemExit``);
- exit 1, one line ``PROG: error: <what>``: an expected failure, i.e. :data:`EXPECTED_ERRORS`
  (OSError: bad paths, permissions, missing devices, network; ValueError/TypeError: invalid
  input, which covers AudioLoadError, ContractError and TorchZipError; ModelNotFoundError is
  a FileNotFoundError) plus the command's own classes passed as ``expected`` (e.g.
  ExportError). OSError messages read ``<file>: <problem>``;
- exit 1, one line ``PROG: error: unexpected <Type>: <message> (... saved to <report>)``: any
  other exception, a bug. Its traceback goes to a report file under
  ``$FRACTALSYNC_HOME/crash/`` (or the temporary directory if that cannot be written);
- exit 130, one line ``PROG: interrupted``: KeyboardInterrupt (Ctrl-C), no traceback.

A warning that reaches Python's default display while ``main`` runs is printed as one line
``PROG: warning: <Category>: <message>`` (commands may catch and word their own, as
fractalsync-beats does for each input file).

With ``--debug`` anywhere before a ``--`` in the arguments, nothing is caught: an exception
propagates with its full traceback (commands declare the flag with :func:`add_debug_flag` so
that argparse accepts it and ``--help`` lists it).

This module lives in fractalsync_models, which imports no other FractalSync package, so that
every package may use it.
"""

from __future__ import annotations

import argparse
import functools
import os
import platform
import sys
import tempfile
import time
import traceback
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path

from .atomic_write import write_atomic
from .paths import fractalsync_home

__all__ = [
    "DEBUG_FLAG", "EXIT_FAILED", "EXIT_INTERRUPTED", "EXIT_OK", "EXIT_USAGE", "EXPECTED_ERRORS",
    "add_debug_flag", "cli_entry", "describe", "error_line", "print_error", "run_cli",
    "write_crash_report",
]  # fmt: skip

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130
EXPECTED_ERRORS: tuple[type[BaseException], ...] = (OSError, ValueError, TypeError)
DEBUG_FLAG = "--debug"

MainFn = Callable[[Sequence[str] | None], "int | None"]


def describe(exc: BaseException) -> str:
    """``exc`` as one line naming the file and the problem.

    An OSError with a file name reads ``<file>: <strerror>`` (``<file> -> <file2>: ...`` for
    two), without Python's ``[Errno N]``; anything else is ``str(exc)``, or the class name if
    that is empty. Line breaks inside the message become ``"; "`` (a space after a line that
    ends with ``:``).
    """
    if isinstance(exc, OSError) and exc.strerror and exc.filename is not None:
        where = os.fsdecode(exc.filename)
        if exc.filename2 is not None:
            where += f" -> {os.fsdecode(exc.filename2)}"
        text = f"{where}: {exc.strerror}"
    else:
        text = str(exc) or type(exc).__name__
    line = ""
    for part in filter(None, (part.strip() for part in text.splitlines())):
        line += part if not line else f" {part}" if line.endswith(":") else f"; {part}"
    return line


def error_line(prog: str, exc: BaseException, context: object = None) -> str:
    """``PROG: error: [context: ]<describe(exc)>``; the context (e.g. the input file) is left
    out when the message already starts with it."""
    text = describe(exc)
    if context is not None and not text.startswith(str(context)):
        text = f"{context}: {text}"
    return f"{prog}: error: {text}"


def print_error(prog: str, exc: BaseException, context: object = None) -> None:
    """Print :func:`error_line` to stderr (for errors a command reports and survives, e.g. one
    bad file of a batch)."""
    print(error_line(prog, exc, context), file=sys.stderr)


def _warning_printer(prog: str):
    """A ``warnings.showwarning`` replacement printing one ``PROG: warning:`` line."""
    def show(message, category, filename, lineno, file=None, line=None) -> None:
        print(f"{prog}: warning: {category.__name__}: {describe(message)}",
              file=file or sys.stderr)
    return show


def add_debug_flag(parser: argparse.ArgumentParser) -> None:
    """Declare ``--debug`` on a command's parser (the wrapper reads it from the arguments)."""
    parser.add_argument(DEBUG_FLAG, action="store_true",
                        help="let errors propagate with their full Python traceback")


def _debug_requested(argv: Sequence[str]) -> bool:
    options = argv[: argv.index("--")] if "--" in argv else argv
    return DEBUG_FLAG in options


def write_crash_report(prog: str, argv: Sequence[str], exc: BaseException) -> Path:
    """Save the traceback of ``exc`` with the command line; return the report's path.

    The report is ``<prog>-<YYYYmmdd-HHMMSS>-<pid>.txt`` in ``$FRACTALSYNC_HOME/crash/``, or in
    the temporary directory (``tempfile.gettempdir()``) if that cannot be written. Raises
    OSError if neither can.
    """
    lines = [
        f"command: {prog} {' '.join(argv)}",
        f"time: {time.strftime('%Y-%m-%d %H:%M:%S %z')}",
        f"python: {sys.version.split()[0]} ({platform.platform()})",
        f"cwd: {os.getcwd()}",
        "",
        *traceback.format_exception(exc),
    ]
    data = "\n".join(line.rstrip("\n") for line in lines).encode("utf-8", "backslashreplace")
    name = f"{prog}-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}.txt"
    first_error: OSError | None = None
    for directory in (fractalsync_home() / "crash", Path(tempfile.gettempdir())):
        try:
            directory.mkdir(parents=True, exist_ok=True)
            write_atomic(directory / name, data, overwrite=False)
            return directory / name
        except OSError as exc_write:
            first_error = first_error or exc_write
    raise first_error


def run_cli(prog: str, main: MainFn, argv: Sequence[str] | None = None,
            expected: tuple[type[BaseException], ...] = ()) -> int:
    """Run ``main(argv)`` under the convention of this module; return the exit status.

    Parameters
    ----------
    prog : the command's name, the prefix of every line it prints (``fractalsync-beats``).
    main : the command body; returns its exit status (None counts as 0) and may raise.
    argv : the arguments without the program name; None means ``sys.argv[1:]`` (passed on to
        ``main`` as None, so that argparse reads ``sys.argv`` itself).
    expected : the command's own exception classes that are expected failures besides
        :data:`EXPECTED_ERRORS`.
    """
    args = list(sys.argv[1:] if argv is None else argv)
    if _debug_requested(args):
        status = main(argv)
        return EXIT_OK if status is None else status
    try:
        with warnings.catch_warnings():
            warnings.showwarning = _warning_printer(prog)
            status = main(argv)
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except (*EXPECTED_ERRORS, *expected) as exc:
        print_error(prog, exc)
        return EXIT_FAILED
    except Exception as exc:
        try:
            report = write_crash_report(prog, args, exc)
        except OSError as why:
            traceback.print_exception(exc)
            print(f"{prog}: error: unexpected {type(exc).__name__} (a bug; could not save a "
                  f"report: {describe(why)}; the traceback is above)", file=sys.stderr)
        else:
            print(f"{prog}: error: unexpected {type(exc).__name__}: {describe(exc)} (a bug, "
                  f"please report it; traceback saved to {report}; rerun with {DEBUG_FLAG} "
                  "to print it)", file=sys.stderr)
        return EXIT_FAILED
    return EXIT_OK if status is None else status


def cli_entry(prog: str, expected: tuple[type[BaseException], ...] = ()):
    """Decorator: ``main(argv=None) -> int`` becomes a console entry point that follows this
    module's convention (see :func:`run_cli`; ``expected`` as there)::

        @cli_entry("fractalsync-beats")
        def main(argv=None) -> int: ...
    """
    def wrap(main: MainFn) -> Callable[[Sequence[str] | None], int]:
        @functools.wraps(main)
        def entry(argv: Sequence[str] | None = None) -> int:
            return run_cli(prog, main, argv, expected)
        return entry
    return wrap
