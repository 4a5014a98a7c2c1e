"""``fractalsync-structure`` as a subprocess: the JSON document and CSV rows against the
library's structure_timeline of the same file, 12.5 Hz times, valid probabilities, segments;
batches with --out, no-clobber, bad files, usage errors, Ctrl-C."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import soundfile as sf

from fractalsync_dsp.audio_io import load_audio
from fractalsync_models.anticipator import Anticipator
from fractalsync_models.training.synth import make_item
from fractalsync_tracking.cli_structure import CSV_HEADER
from fractalsync_tracking.slow_state import HORIZONS_BEATS, SECTION_LABELS
from fractalsync_tracking.structure import structure_timeline

SR = 22050
KEYS = ["rate_hz", "labels", "horizons_beats", "times", "section_probs", "hazard_probs",
        "segments", "mode"]


def _cmd(args):
    return [sys.executable, "-m", "fractalsync_tracking.cli_structure", *map(str, args)]


def _run(args, home, cwd):
    env = dict(os.environ, FRACTALSYNC_HOME=str(home))
    return subprocess.run(_cmd(args), capture_output=True, text=True, env=env, cwd=cwd,
                          timeout=300)


@pytest.fixture(scope="module")
def audio_dir(beatnet_models_dir, tmp_path_factory):
    """Two short tracks (a 4/4 float WAV at 22050 Hz, a 3/4 16-bit stereo WAV at 44100 Hz)
    and a broken 'audio' file."""
    d = tmp_path_factory.mktemp("audio")
    a = make_item("a", 120.0, duration=6.0, sample_rate=SR, seed=3).audio
    sf.write(d / "a.wav", a, SR, subtype="FLOAT")
    b = make_item("b", 100.0, beats_per_bar=3, duration=5.0, sample_rate=44100, seed=4).audio
    sf.write(d / "b.wav", np.stack([b, 0.5 * b], axis=1), 44100, subtype="PCM_16")
    (d / "broken.wav").write_bytes(b"RIFF0000WAVEnot really audio")
    return d


@pytest.fixture(scope="module")
def library(audio_dir):
    """structure_timeline of each good file, as the library computes it."""
    model = Anticipator()
    out = {}
    for name in ("a", "b"):
        x, sr = load_audio(audio_dir / f"{name}.wav")
        out[name] = structure_timeline(x, sr, anticipator=model)
    return out


def test_json_document(fractalsync_home, audio_dir, library, tmp_path):
    res = _run([audio_dir / "a.wav"], fractalsync_home, tmp_path)
    assert res.returncode == 0, res.stderr
    assert res.stdout.count("\n") == 1  # one line
    doc = json.loads(res.stdout)
    assert list(doc) == KEYS
    assert doc["rate_hz"] == 12.5 and doc["mode"] == "online"
    assert doc["labels"] == list(SECTION_LABELS) and doc["horizons_beats"] == [1, 2, 4, 8, 16]
    tl = library["a"]
    times = np.array(doc["times"])
    sec, haz = np.array(doc["section_probs"]), np.array(doc["hazard_probs"])
    n = len(times)
    assert n == len(tl.times) > 60 and sec.shape == (n, 8) and haz.shape == (n, 5)
    np.testing.assert_allclose(np.diff(times), 0.08, atol=1e-9)  # 12.5 Hz
    assert times[0] == 0.06 and times[-1] + 0.032 <= 6.0  # each output from audio up to then
    np.testing.assert_allclose(times, tl.times, atol=5e-5)
    np.testing.assert_allclose(sec, tl.section_probs, atol=5e-5)
    np.testing.assert_allclose(haz, tl.hazard_probs, atol=5e-5)
    assert np.all((sec >= 0) & (sec <= 1)) and np.all((haz >= 0) & (haz <= 1))
    np.testing.assert_allclose(sec.sum(axis=1), 1.0, atol=5e-4)
    segs = doc["segments"]
    assert segs == [{"start": round(s.start, 4), "end": round(s.end, 4), "label": s.label}
                    for s in tl.segments]
    assert segs[0]["start"] == times[0] and segs[-1]["end"] == 6.0
    assert all(s["end"] == t["start"] for s, t in zip(segs, segs[1:], strict=False))
    assert all(s["label"] in SECTION_LABELS for s in segs)
    assert list(tmp_path.iterdir()) == []  # nothing written next to the caller


def test_csv_rows(fractalsync_home, audio_dir, library, tmp_path):
    res = _run([audio_dir / "b.wav", "--csv"], fractalsync_home, tmp_path)
    assert res.returncode == 0, res.stderr
    lines = res.stdout.splitlines()
    assert lines[0] == CSV_HEADER
    header = lines[0].split(",")
    assert header == ["time", *SECTION_LABELS, *[f"hazard_{h}" for h in HORIZONS_BEATS], "label"]
    rows = [line.split(",") for line in lines[1:]]
    tl = library["b"]
    assert len(rows) == len(tl.times) > 50 and all(len(r) == 15 for r in rows)
    numbers = np.array([[float(v) for v in r[:14]] for r in rows])
    np.testing.assert_allclose(numbers[:, 0], tl.times, atol=5e-5)
    np.testing.assert_allclose(numbers[:, 1:9], tl.section_probs, atol=5e-5)
    np.testing.assert_allclose(numbers[:, 9:], tl.hazard_probs, atol=5e-5)
    assert [r[14] for r in rows] == list(tl.label_names)


def test_directory_batch_no_clobber_and_a_bad_file(fractalsync_home, audio_dir, library,
                                                   tmp_path):
    out = tmp_path / "timelines"
    res = _run([audio_dir, "--out", out], fractalsync_home, tmp_path)
    assert res.returncode == 1
    errors = [line for line in res.stderr.splitlines() if "error" in line]
    assert len(errors) == 1 and errors[0].startswith("fractalsync-structure: error: ")
    assert "broken.wav" in errors[0]
    assert "[1/3]" in res.stderr and "[2/3]" in res.stderr  # progress (3/3 failed)
    assert sorted(p.name for p in out.iterdir()) == ["a.json", "b.json"]  # no temp files left
    doc = json.loads((out / "b.json").read_text())
    assert len(doc["times"]) == len(library["b"].times)
    (out / "a.csv").write_text("keep me\n")
    again = _run([audio_dir / "a.wav", "--csv", "--out", out], fractalsync_home, tmp_path)
    assert again.returncode == 1 and "exists" in again.stderr and "--force" in again.stderr
    assert (out / "a.csv").read_text() == "keep me\n"
    forced = _run([audio_dir / "a.wav", "--csv", "--out", out, "--force"], fractalsync_home,
                  tmp_path)
    assert forced.returncode == 0, forced.stderr
    assert (out / "a.csv").read_text().splitlines()[0] == CSV_HEADER


@pytest.mark.parametrize("args, code, message", [
    ([], 2, "required"),
    (["{a}", "{a}"], 2, "several inputs need --out"),
    (["{a}", "--out", "{a}"], 2, "is not a directory"),
    (["{missing}"], 1, "missing.wav"),
    (["{empty_dir}", "--out", "{out}"], 1, "no audio files"),
])
def test_bad_inputs(fractalsync_home, audio_dir, tmp_path, args, code, message):
    (tmp_path / "empty").mkdir()
    names = {"a": audio_dir / "a.wav", "missing": tmp_path / "missing.wav",
             "empty_dir": tmp_path / "empty", "out": tmp_path / "out"}
    res = _run([a.format(**names) for a in args], fractalsync_home, tmp_path)
    assert res.returncode == code, res.stderr
    assert res.stdout == ""
    lines = res.stderr.splitlines()
    assert lines[-1].startswith("fractalsync-structure: error: ") and message in lines[-1]
    assert "Traceback" not in res.stderr
    if code == 1:
        assert len(lines) == 1


def test_nan_samples_are_silence_with_one_warning(fractalsync_home, tmp_path):
    audio = make_item("nan", 120.0, duration=4.0, sample_rate=SR).audio.copy()
    audio[[100, 30000, 60000]] = [np.nan, np.inf, -np.inf]
    path = tmp_path / "nan.wav"
    sf.write(path, audio, SR, subtype="FLOAT")
    res = _run([path, "--csv"], fractalsync_home, tmp_path)
    assert res.returncode == 0, res.stderr
    lines = res.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("fractalsync-structure: warning: ")
    assert "nan.wav" in lines[0]
    assert len(res.stdout.splitlines()) > 40


def test_ctrl_c_during_the_analysis_is_one_line_and_exit_130(tmp_path):
    """A real SIGINT while the command analyses a long file: one line, exit 130, no output.
    The command's own main runs with structure_timeline wrapped to say when the analysis
    starts, so that the signal surely arrives during it (not during the imports)."""
    path = tmp_path / "long.wav"
    sf.write(path, make_item("long", 120.0, duration=120.0, sample_rate=SR).audio, SR)
    program = (
        "import sys\n"
        "from fractalsync_tracking import cli_structure\n"
        "real = cli_structure.structure_timeline\n"
        "def announced(*args, **kwargs):\n"
        "    print('running', flush=True)\n"
        "    return real(*args, **kwargs)\n"
        "cli_structure.structure_timeline = announced\n"
        f"sys.exit(cli_structure.main([{str(path)!r}]))\n"
    )
    # a shell running jobs in the background makes them ignore SIGINT: restore the default
    proc = subprocess.Popen([sys.executable, "-c", program], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, cwd=tmp_path,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        assert proc.stdout.readline() == "running\n"
        time.sleep(0.5)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert (proc.returncode, err, out) == (130, "fractalsync-structure: interrupted\n", "")
