"""``fractalsync-beats`` as a subprocess: output shapes, batches, no-clobber, bad files."""

import errno
import json
import os
import signal
import stat
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from fractalsync_models.training.synth import make_item
from fractalsync_tracking.cli_beats import render

SR = 22050


def _run(args, home, cwd, umask=None):
    env = dict(os.environ, FRACTALSYNC_HOME=str(home))
    return subprocess.run(
        [sys.executable, "-m", "fractalsync_tracking.cli_beats", *map(str, args)],
        capture_output=True, text=True, env=env, cwd=cwd, timeout=300,
        preexec_fn=None if umask is None else (lambda: os.umask(umask)),
    )


@pytest.fixture(scope="module")
def audio_dir(tmp_path_factory):
    """Two short synthetic tracks (120 BPM 4/4, 100 BPM 3/4) and a broken 'audio' file."""
    d = tmp_path_factory.mktemp("audio")
    for name, bpm, meter in (("a", 120.0, 4), ("b", 100.0, 3)):
        item = make_item(name, bpm, beats_per_bar=meter, duration=10.0, sample_rate=SR)
        sf.write(d / f"{name}.wav", item.audio, SR)
    (d / "broken.wav").write_bytes(b"RIFF0000WAVEnot really audio")
    (d / "notes.md").write_text("not audio, not an audio suffix: ignored")
    return d


@pytest.fixture(scope="module")
def good_dir(audio_dir, tmp_path_factory):
    d = tmp_path_factory.mktemp("good")
    for name in ("a.wav", "b.wav"):
        (d / name).write_bytes((audio_dir / name).read_bytes())
    return d


def test_single_file_json_to_stdout(beatnet_models_dir, fractalsync_home, audio_dir, tmp_path):
    res = _run([audio_dir / "a.wav"], fractalsync_home, tmp_path)
    assert res.returncode == 0, res.stderr
    grid = json.loads(res.stdout)
    assert list(grid) == ["tempo", "downbeat", "beats", "downbeats", "confidence", "bpm_alt",
                          "beat_positions", "meter", "mode"]
    assert grid["mode"] == "offline" and grid["meter"] == 4
    assert grid["tempo"] == pytest.approx(120.0, rel=0.02)
    assert len(grid["beats"]) == len(grid["beat_positions"]) >= 15
    assert list(tmp_path.iterdir()) == []  # nothing written next to the caller


def test_txt_and_csv(beatnet_models_dir, fractalsync_home, audio_dir, tmp_path):
    txt = _run([audio_dir / "b.wav", "--txt"], fractalsync_home, tmp_path)
    assert txt.returncode == 0, txt.stderr
    rows = np.loadtxt(txt.stdout.splitlines(), ndmin=2)
    assert rows.shape[1] == 2 and np.all(np.diff(rows[:, 0]) > 0)
    assert set(rows[:, 1].astype(int)) == {1, 2, 3}
    csv = _run([audio_dir / "b.wav", "--csv", "--model", "1"], fractalsync_home, tmp_path)
    assert csv.returncode == 0, csv.stderr
    lines = csv.stdout.splitlines()
    assert lines[0] == "time,beat_in_bar" and len(lines) > 10  # ~16 beats at 100 BPM
    assert all(len(line.split(",")) == 2 for line in lines[1:])


def test_directory_batch_with_bad_file(beatnet_models_dir, fractalsync_home, audio_dir,
                                       tmp_path):
    out = tmp_path / "grids"
    res = _run([audio_dir, "--out", out], fractalsync_home, tmp_path)
    assert res.returncode == 1
    assert "broken.wav" in res.stderr and "error" in res.stderr
    assert sorted(p.name for p in out.iterdir()) == ["a.json", "b.json"]  # no temp files left
    assert json.loads((out / "b.json").read_text())["meter"] == 3
    assert "[2/3]" in res.stderr or "[3/3]" in res.stderr  # progress lines


def test_no_overwrite_without_force(beatnet_models_dir, fractalsync_home, good_dir, tmp_path):
    out = tmp_path / "grids"
    first = _run([good_dir / "a.wav", good_dir / "b.wav", "--out", out, "--txt"],
                 fractalsync_home, tmp_path)
    assert first.returncode == 0, first.stderr
    (out / "a.txt").write_text("keep me\n")
    again = _run([good_dir, "--out", out, "--txt"], fractalsync_home, tmp_path)
    assert again.returncode == 1
    assert "exists" in again.stderr and "--force" in again.stderr
    assert (out / "a.txt").read_text() == "keep me\n"
    forced = _run([good_dir, "--out", out, "--txt", "--force"], fractalsync_home, tmp_path)
    assert forced.returncode == 0, forced.stderr
    assert (out / "a.txt").read_text().split("\n")[0].count(" ") == 1


@pytest.mark.parametrize("mask", [0o022, 0o077])
def test_outputs_get_the_mode_of_a_normal_file(beatnet_models_dir, fractalsync_home, good_dir,
                                               tmp_path, mask):
    out = tmp_path / "grids"
    res = _run([good_dir / "a.wav", "--out", out, "--txt"], fractalsync_home, tmp_path, mask)
    assert res.returncode == 0, res.stderr
    assert stat.S_IMODE((out / "a.txt").stat().st_mode) == 0o666 & ~mask


@pytest.mark.parametrize("mode", [[], ["--online"]])
def test_nan_samples_are_silence_with_one_warning(beatnet_models_dir, fractalsync_home,
                                                  tmp_path, mode):
    item = make_item("nan", 120.0, duration=10.0, sample_rate=SR)
    audio = item.audio.copy()
    audio[[100, 70000, 150000]] = [np.nan, np.inf, -np.inf]
    path = tmp_path / "nan.wav"
    sf.write(path, audio, SR, subtype="FLOAT")
    out = tmp_path / "grids"
    res = _run([path, "--out", out, *mode], fractalsync_home, tmp_path)
    assert res.returncode == 0, res.stderr
    assert res.stderr.splitlines() == [
        f"fractalsync-beats: warning: {path}: 3 NaN/inf samples (of {len(audio)}) replaced by "
        "silence (magnitudes above 1e+30 count as inf)"]
    grid = json.loads((out / "nan.json").read_text())
    assert grid["tempo"] == pytest.approx(120.0, rel=0.02) and len(grid["beats"]) >= 15


def test_truncated_wavs(beatnet_models_dir, fractalsync_home, tmp_path):
    """Cut inside the data: read with a warning; cut inside the header: an error."""
    item = make_item("cut", 120.0, duration=10.0, sample_rate=SR)
    src = tmp_path / "src"
    src.mkdir()
    sf.write(src / "pcm.wav", item.audio, SR, subtype="PCM_16")  # 44-byte header
    sf.write(src / "float.wav", item.audio, SR, subtype="FLOAT")  # 80-byte header
    pcm, flt = (src / "pcm.wav").read_bytes(), (src / "float.wav").read_bytes()
    d = tmp_path / "cut"
    d.mkdir()
    (d / "half.wav").write_bytes(pcm[: 44 + 2 * 5 * SR])
    (d / "tiny.wav").write_bytes(pcm[:60])
    (d / "tiny_float.wav").write_bytes(flt[:60])
    out = tmp_path / "grids"
    res = _run([d, "--out", out, "--quiet"], fractalsync_home, tmp_path)
    assert res.returncode == 1
    frames = 10 * SR
    assert res.stderr.splitlines() == [
        f"fractalsync-beats: warning: {d / 'half.wav'}: truncated: header declares {frames} "
        f"frames, read {5 * SR}",
        f"fractalsync-beats: warning: {d / 'tiny.wav'}: truncated: header declares {frames} "
        "frames, read 8",
        f"fractalsync-beats: error: {d / 'tiny_float.wav'}: cannot load audio from "
        f"'{d / 'tiny_float.wav'}': not readable as audio (libsndfile: Error in WAV file. No "
        "'data' chunk marker.; the file has 60 bytes)",
    ]
    assert sorted(p.name for p in out.iterdir()) == ["half.json", "tiny.json"]
    assert json.loads((out / "half.json").read_text())["tempo"] == pytest.approx(120, rel=0.02)


def test_usage_errors(fractalsync_home, good_dir, tmp_path):
    several = _run([good_dir / "a.wav", good_dir / "b.wav"], fractalsync_home, tmp_path)
    assert several.returncode == 2 and "--out" in several.stderr
    bad_range = _run([good_dir / "a.wav", "--min-bpm", "200", "--max-bpm", "100"],
                     fractalsync_home, tmp_path)
    assert bad_range.returncode == 2 and "--min-bpm" in bad_range.stderr
    infinite = _run([good_dir / "a.wav", "--min-bpm=inf", "--max-bpm=inf"], fractalsync_home,
                    tmp_path)  # was exit 0 with an empty grid
    assert infinite.returncode == 2 and "finite" in infinite.stderr
    missing = _run([tmp_path / "nope.wav"], fractalsync_home, tmp_path)
    assert missing.returncode == 1 and "nope.wav" in missing.stderr


@pytest.mark.parametrize("model", [[], ["--model", "ensemble"]])
def test_online_grid(beatnet_models_dir, fractalsync_home, good_dir, tmp_path, model):
    res = _run([good_dir / "a.wav", "--online", *model], fractalsync_home, tmp_path)
    assert res.returncode == 0, res.stderr
    grid = json.loads(res.stdout)
    assert grid["mode"] == "online"
    assert set(grid) >= {"tempo", "downbeat", "beats", "downbeats", "beat_positions", "meter",
                         "confidence", "bpm_alt"}


def test_missing_models_stop_with_the_export_command(good_dir, tmp_path):
    res = _run([good_dir, "--out", tmp_path / "o"], tmp_path / "empty_home", tmp_path)
    assert res.returncode == 1
    assert "fractalsync-export-beatnet" in res.stderr
    assert res.stderr.count("error") == 1


# ---------------------------------------------------------------- in-process helpers


def test_render_formats():
    from fractalsync_tracking.beat_grid import BeatGrid

    grid = BeatGrid(120.0, 0.5, (0.5, 1.0, 1.5), (0.5,), 0.9, None, (1, 2, 3), 3)
    assert render(grid, "txt") == "0.5000 1\n1.0000 2\n1.5000 3\n"
    assert render(grid, "csv") == "time,beat_in_bar\n0.5000,1\n1.0000,2\n1.5000,3\n"
    assert json.loads(render(grid, "json"))["beats"] == [0.5, 1.0, 1.5]
    with pytest.raises(ValueError):
        render(grid, "xml")


def test_entry_point_is_installed():
    exe = Path(sys.executable).parent / "fractalsync-beats"
    assert exe.exists()


# ------------------------------------------------- the error convention (cli_errors)


def test_output_directory_that_cannot_be_created(fractalsync_home, good_dir, tmp_path):
    """One error line and exit 1, no traceback (the mkdir of --out was outside the error
    handling). A file on the way is tested as a subprocess; so is /sys, where even root may not
    create a directory (EPERM). Root ignores a read-only mode bit, so EROFS is tested in process
    (test_read_only_output_directory)."""
    (tmp_path / "n").mkdir()
    (tmp_path / "n" / "file").write_text("")
    res = _run([good_dir / "a.wav", "--out", "n/file/sub"], fractalsync_home, tmp_path)
    assert (res.returncode, res.stderr.splitlines()) == (1, [
        "fractalsync-beats: error: cannot create the output directory: n/file/sub: "
        "Not a directory"])
    if Path("/sys/kernel").is_dir():
        res = _run([good_dir / "a.wav", "--out", "/sys/fractalsync_test/sub"], fractalsync_home,
                   tmp_path)
        assert res.returncode == 1 and "Traceback" not in res.stderr
        assert res.stderr.startswith("fractalsync-beats: error: cannot create the output "
                                     "directory: /sys/fractalsync_test: ")
        assert len(res.stderr.splitlines()) == 1


def test_read_only_output_directory(good_dir, tmp_path, monkeypatch, capsys):
    from fractalsync_tracking import cli_beats

    def read_only(self, *args, **kwargs):
        raise OSError(errno.EROFS, "Read-only file system", str(self))

    monkeypatch.setattr(Path, "mkdir", read_only)
    assert cli_beats.main([str(good_dir / "a.wav"), "--out", str(tmp_path / "ro" / "sub")]) == 1
    assert capsys.readouterr().err.splitlines() == [
        f"fractalsync-beats: error: cannot create the output directory: {tmp_path}/ro/sub: "
        "Read-only file system"]


def test_ctrl_c_is_one_line_and_exit_130():
    """A real SIGINT to a command running under the convention: one line, exit 130.

    The command body reports that it runs, then waits (an interruptible wait, so the signal
    is seen at once). An earlier version interrupted fractalsync-beats reading a FIFO; it was
    not deterministic: the signal is only seen when libsndfile's read returns, and whether the
    read's error or the interrupt reaches the convention first depends on timing."""
    program = (
        "import sys, threading\n"
        "from fractalsync_models.cli_errors import cli_entry\n"
        "@cli_entry('fractalsync-beats')\n"
        "def main(argv=None):\n"
        "    print('running', flush=True)\n"
        "    threading.Event().wait()\n"
        "sys.exit(main([]))\n"
    )
    # a shell that runs a job in the background (as CI may) makes the job ignore SIGINT, and
    # Python then installs no KeyboardInterrupt handler: give the command the default
    # disposition, as an interactive shell does
    proc = subprocess.Popen([sys.executable, "-c", program], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        assert proc.stdout.readline() == "running\n"
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert (proc.returncode, err) == (130, "fractalsync-beats: interrupted\n")
