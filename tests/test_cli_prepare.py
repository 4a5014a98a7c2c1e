"""``fractalsync-prepare`` as a subprocess: exit codes, summary, error lines, resume, usage errors,
foreign files, and the progress bar only on a terminal."""

from __future__ import annotations

import json
import os
import pty
import subprocess
import sys

import pytest
from test_prepare import GOOD, write_corpus

from fractalsync_tracking.cli_prepare import main
from fractalsync_tracking.prepare import MANIFEST

PROG = "fractalsync-prepare"


def _run(args, home, **kwargs):
    env = dict(os.environ, FRACTALSYNC_HOME=str(home))
    options = {"capture_output": True, "text": True, **kwargs}
    return subprocess.run([sys.executable, "-m", "fractalsync_tracking.cli_prepare",
                           *map(str, args)], env=env, timeout=300, **options)


def _on_terminal(args, home) -> tuple[int, str]:
    """Run with stderr on a pseudo-terminal; return the exit status and what it showed."""
    master, slave = pty.openpty()
    try:
        proc = _run(args, home, capture_output=False, stdout=subprocess.DEVNULL, stderr=slave)
    finally:
        os.close(slave)
    chunks = []
    try:
        while chunk := os.read(master, 4096):
            chunks.append(chunk)
    except OSError:  # EIO once the terminal's other side is closed and drained
        pass
    finally:
        os.close(master)
    return proc.returncode, b"".join(chunks).decode()


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return write_corpus(tmp_path_factory.mktemp("corpus"))


@pytest.fixture(scope="module")
def good_corpus(tmp_path_factory, corpus):
    """Only the good tracks of the corpus (hard links)."""
    root = tmp_path_factory.mktemp("good")
    for sub, src in zip(("audio", "labels"), corpus, strict=True):
        (root / sub).mkdir()
        for p in src.iterdir():
            if p.stem in GOOD:
                os.link(p, root / sub / p.name)
    return root / "audio", root / "labels"


def test_all_good_exit_0_then_up_to_date(good_corpus, tmp_path, fractalsync_home,
                                         beatnet_models_dir):
    audio, labels = good_corpus
    out = tmp_path / "out"
    proc = _run([audio, "--labels", labels, "--out", out, "--jobs", "2"], fractalsync_home)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == (f"{PROG}: 3 written, 0 up to date, 0 failed of 3 tracks; "
                           f"manifest {out / MANIFEST}\n")
    # stderr is a pipe: no progress bar; one warning (the NaN samples of one track)
    lines = proc.stderr.splitlines()
    assert "\r" not in proc.stderr and len(lines) == 1, proc.stderr
    assert lines[0].startswith(f"{PROG}: warning: waltz_141_nan: NonFiniteAudioWarning: ")
    assert sorted(p.name for p in out.iterdir()) == sorted([MANIFEST, *(f"{n}.npz" for n in GOOD)])
    assert json.loads((out / MANIFEST).read_text())["counts"]["written"] == 3
    again = _run([audio, "--labels", labels, "--out", out, "--quiet", "--jobs", "1"],
                 fractalsync_home)
    assert again.returncode == 0 and again.stderr == ""
    assert "0 written, 3 up to date, 0 failed of 3 tracks" in again.stdout


def test_failed_tracks_exit_1_and_are_listed(corpus, tmp_path, fractalsync_home,
                                             beatnet_models_dir):
    audio, labels = corpus
    out = tmp_path / "out"
    proc = _run([audio, "--labels", labels, "--out", out, "--jobs", "1", "--source", "auto",
                 "--snap-s", "0.15"], fractalsync_home)
    assert proc.returncode == 1
    assert "3 written, 0 up to date, 2 failed of 5 tracks" in proc.stdout
    err = proc.stderr.splitlines()
    assert f"{PROG}: error: broken: cannot load audio from '{audio / 'broken.wav'}': " \
           "not readable as audio" in proc.stderr
    assert any(line.startswith(f"{PROG}: error: bad_labels: {labels / 'bad_labels.csv'}:3: ")
               for line in err)
    assert f"{PROG}: warning: {audio / 'no_labels.wav'}: audio without labels" in proc.stderr
    assert f"{PROG}: warning: {labels / 'no_audio.txt'}: labels without audio" in proc.stderr
    assert err[-1] == f"{PROG}: failed: bad_labels, broken"
    assert "Traceback" not in proc.stderr
    assert json.loads((out / MANIFEST).read_text())["parameters"]["snap_s"] == 0.15


def test_usage_error_exit_2(corpus, tmp_path, fractalsync_home):
    audio, labels = corpus
    proc = _run([audio, "--labels", labels, "--out", tmp_path / "out", "--jobs", "0"],
                fractalsync_home)
    assert proc.returncode == 2
    assert proc.stderr.splitlines()[-1] == f"{PROG}: error: argument --jobs: must be >= 1, got 0"
    assert proc.stdout == "" and not (tmp_path / "out").exists()


@pytest.mark.parametrize("args, message", [
    ([], "the following arguments are required: --labels, --out"),
    (["--jobs", "two"], "argument --jobs: not an integer"),
    (["--snap-s", "nan"], "argument --snap-s: must be a finite number"),
    (["--snap-s", "-0.1"], "argument --snap-s: must be a finite number"),
    (["--source", "mp3"], "argument --source: invalid choice: 'mp3'"),
    (["--jobs", "2", "--scheduler", "tcp://127.0.0.1:1"], "not allowed with argument"),
    (["--scheduler", "tcp://127.0.0.1:1", "--track-timeout", "0"],
     "argument --track-timeout: must be > 0 seconds"),
    (["--scheduler", "tcp://127.0.0.1:1", "--track-timeout", "inf"],
     "argument --track-timeout: must be a finite number"),
    (["--track-timeout", "60"], "--track-timeout needs --scheduler"),
])
def test_more_usage_errors_exit_2(corpus, tmp_path, capsys, args, message):
    """In process (the same main as the console script; a subprocess costs seconds each)."""
    audio, labels = corpus
    base = [] if not args else ["--labels", str(labels), "--out", str(tmp_path / "out")]
    with pytest.raises(SystemExit) as exit_info:
        main([str(audio), *base, *args])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.splitlines()[-1].startswith(f"{PROG}: error: ") and message in err
    assert not (tmp_path / "out").exists()


def test_out_is_a_file_is_a_usage_error(corpus, tmp_path, capsys):
    (tmp_path / "out").write_text("mine")
    with pytest.raises(SystemExit) as exit_info:
        main([str(corpus[0]), "--labels", str(corpus[1]), "--out", str(tmp_path / "out")])
    assert exit_info.value.code == 2 and "is not a directory" in capsys.readouterr().err
    assert (tmp_path / "out").read_text() == "mine"


def test_command_errors_exit_1(corpus, tmp_path, capsys, beatnet_models_dir):
    """In process: a missing directory, a foreign manifest, nothing matched."""
    audio, labels = corpus
    missing = tmp_path / "missing"
    assert main([str(missing), "--labels", str(labels), "--out", str(tmp_path / "o1")]) == 1
    assert capsys.readouterr().err == f"{PROG}: error: {missing}: not a directory (audio)\n"
    out = tmp_path / "o2"
    out.mkdir()
    (out / MANIFEST).write_text("[]")
    assert main([str(audio), "--labels", str(labels), "--out", str(out)]) == 1
    assert capsys.readouterr().err == (
        f"{PROG}: error: {out / MANIFEST}: exists and is not a fractalsync-prepare manifest; "
        "not overwritten (choose another --out)\n")
    assert (out / MANIFEST).read_text() == "[]"
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main([str(empty), "--labels", str(labels), "--out", str(tmp_path / "o3")]) == 1
    err = capsys.readouterr().err
    assert f"{PROG}: error: no audio file in {empty} has a label file in {labels}" in err


def test_progress_bar_only_on_a_terminal(good_corpus, tmp_path, fractalsync_home,
                                         beatnet_models_dir):
    """stderr on a pseudo-terminal: ``\\r[i/n] track`` lines, then a newline; none with
    --quiet (the pipe case is in the tests above)."""
    audio, labels = good_corpus
    status, shown = _on_terminal([audio, "--labels", labels, "--out", tmp_path / "a",
                                  "--jobs", "1"], fractalsync_home)
    assert status == 0
    assert shown.startswith("\r[1/3] ") and "\r[3/3] " in shown
    for name in GOOD:
        assert f"] {name}" in shown
    status, shown = _on_terminal([audio, "--labels", labels, "--out", tmp_path / "b",
                                  "--jobs", "1", "--quiet"], fractalsync_home)
    assert status == 0
    assert "\r[" not in shown and "[1/3]" not in shown  # (the terminal shows \n as \r\n)
    assert shown.startswith(f"{PROG}: warning: waltz_141_nan: NonFiniteAudioWarning")


def test_help_lists_the_options(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--help"])
    assert exit_info.value.code == 0
    text = capsys.readouterr().out
    for option in ("--labels", "--out", "--jobs", "--scheduler", "--track-timeout", "--source",
                   "--snap-s", "--quiet", "--debug", "songformer-json"):
        assert option in text


def test_a_cluster_without_workers_ends_with_the_error_report(good_corpus, tmp_path,
                                                              fractalsync_home):
    """The batch ends (exit 1, one error line per track) instead of waiting for workers."""
    distributed = pytest.importorskip("distributed")
    audio, labels = good_corpus
    with distributed.LocalCluster(n_workers=0, dashboard_address=None) as cluster:
        proc = _run([audio, "--labels", labels, "--out", tmp_path / "out", "--scheduler",
                     cluster.scheduler_address, "--track-timeout", "2"], fractalsync_home)
    assert proc.returncode == 1
    assert "0 written, 0 up to date, 3 failed of 3 tracks" in proc.stdout
    for name in GOOD:
        assert (f"{PROG}: error: {name}: not started: no dask worker joined the scheduler "
                "within 2 s (--track-timeout)") in proc.stderr
    assert proc.stderr.splitlines()[-1] == f"{PROG}: failed: {', '.join(sorted(GOOD))}"
    assert "Traceback" not in proc.stderr
