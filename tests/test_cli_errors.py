"""The shared error convention of the commands (fractalsync_models.cli_errors), in process."""

from __future__ import annotations

import errno

import pytest

from fractalsync_models.cli_errors import (
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    EXIT_OK,
    cli_entry,
    describe,
    error_line,
    run_cli,
)

PROG = "fractalsync-test"


class OwnError(RuntimeError):
    """Stands for a command's own error class (such as ExportError, a RuntimeError)."""


def _raising(exc: BaseException):
    def main(argv=None):
        raise exc
    return main


def test_describe_one_line_naming_the_file():
    assert describe(FileNotFoundError(errno.ENOENT, "No such file or directory", "a b.wav")) \
        == "a b.wav: No such file or directory"
    assert describe(OSError(errno.EXDEV, "Invalid cross-device link", "a", None, "b")) \
        == "a -> b: Invalid cross-device link"
    assert describe(OSError(errno.EROFS, "Read-only file system", b"ro/x")) \
        == "ro/x: Read-only file system"
    assert describe(FileExistsError("x.json exists")) == "x.json exists"
    assert describe(ValueError()) == "ValueError"
    assert describe(ValueError("could not download (pip exited with 1):\nERROR: a\n\nERROR: b\n"
                               "Pass --wheel PATH.")) \
        == "could not download (pip exited with 1): ERROR: a; ERROR: b; Pass --wheel PATH."
    assert error_line(PROG, ValueError("x.wav: bad"), "x.wav") == f"{PROG}: error: x.wav: bad"
    assert error_line(PROG, ValueError("bad"), "x.wav") == f"{PROG}: error: x.wav: bad"


@pytest.mark.parametrize("exc", [
    FileNotFoundError(errno.ENOENT, "No such file or directory", "in.wav"),
    PermissionError(errno.EACCES, "Permission denied", "out/a.json"),
    ValueError("in.wav: not audio"),
    TypeError("path must be a str"),
    OwnError("wheel x.whl: no such file"),
])
def test_expected_errors_are_one_line_and_exit_1(exc, capsys):
    assert run_cli(PROG, _raising(exc), [], expected=(OwnError,)) == EXIT_FAILED
    out, err = capsys.readouterr()
    assert out == "" and err == error_line(PROG, exc) + "\n"


def test_unexpected_error_saves_a_report(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("FRACTALSYNC_HOME", str(tmp_path / "home"))
    argv = ["song.wav", "--out", "grids"]
    assert run_cli(PROG, _raising(ZeroDivisionError("division by zero")), argv) == EXIT_FAILED
    err = capsys.readouterr().err
    (report,) = (tmp_path / "home" / "crash").iterdir()
    assert err.splitlines() == [
        f"{PROG}: error: unexpected ZeroDivisionError: division by zero (a bug, please report "
        f"it; traceback saved to {report}; rerun with --debug to print it)"]
    text = report.read_text()
    assert report.name.startswith(f"{PROG}-") and report.suffix == ".txt"
    assert f"command: {PROG} song.wav --out grids" in text
    assert "Traceback (most recent call last)" in text and "ZeroDivisionError" in text
    # an error the command declares is expected; the same class undeclared is a bug
    assert run_cli(PROG, _raising(OwnError("boom")), []) == EXIT_FAILED
    assert "unexpected OwnError: boom" in capsys.readouterr().err


def test_report_falls_back_to_the_temp_dir(tmp_path, monkeypatch, capsys):
    home = tmp_path / "home_is_a_file"
    home.write_text("")
    monkeypatch.setenv("FRACTALSYNC_HOME", str(home))
    monkeypatch.setattr("tempfile.tempdir", str(tmp_path / "tmp"))
    assert run_cli(PROG, _raising(KeyError("k")), []) == EXIT_FAILED
    (report,) = (tmp_path / "tmp").iterdir()
    assert f"saved to {report}" in capsys.readouterr().err


def test_no_report_possible_prints_the_traceback(tmp_path, monkeypatch, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("")
    monkeypatch.setenv("FRACTALSYNC_HOME", str(blocker))
    monkeypatch.setattr("tempfile.tempdir", str(blocker / "tmp"))
    assert run_cli(PROG, _raising(KeyError("k")), []) == EXIT_FAILED
    err = capsys.readouterr().err
    assert "Traceback" in err and "could not save a report" in err


def test_debug_lets_errors_propagate(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("FRACTALSYNC_HOME", str(tmp_path))
    with pytest.raises(ZeroDivisionError):
        run_cli(PROG, _raising(ZeroDivisionError()), ["x", "--debug"])
    with pytest.raises(ValueError):
        run_cli(PROG, _raising(ValueError()), ["--debug"])
    # after "--" it is a file name, not the flag
    assert run_cli(PROG, _raising(ValueError("bad")), ["--", "--debug"]) == EXIT_FAILED
    assert not (tmp_path / "crash").exists()


def test_interrupt_exit_usage_and_status(capsys):
    assert run_cli(PROG, _raising(KeyboardInterrupt()), []) == EXIT_INTERRUPTED
    assert capsys.readouterr().err == f"{PROG}: interrupted\n"
    with pytest.raises(SystemExit) as exit_info:  # argparse's usage errors pass through
        run_cli(PROG, _raising(SystemExit(2)), [])
    assert exit_info.value.code == 2
    assert run_cli(PROG, lambda argv: None, []) == EXIT_OK
    assert run_cli(PROG, lambda argv: 1, []) == EXIT_FAILED


def test_cli_entry_keeps_the_signature_and_passes_argv():
    seen = []

    @cli_entry(PROG, expected=(OwnError,))
    def main(argv=None):
        """Doc."""
        seen.append(argv)
        raise OwnError("x")

    assert main(["a"]) == EXIT_FAILED and seen == [["a"]]
    assert main.__doc__ == "Doc." and main.__name__ == "main"


def test_warnings_are_one_line(capsys):
    import warnings

    def main(argv=None):
        warnings.warn_explicit("converting x.whl\nwith another hash", UserWarning, "x.whl", 0)
        return 0

    assert run_cli(PROG, main, []) == EXIT_OK
    assert capsys.readouterr().err == (f"{PROG}: warning: UserWarning: converting x.whl; "
                                       "with another hash\n")
