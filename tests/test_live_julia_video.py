"""examples/live_julia.py without a display: a real video through ffmpeg, decoded back.

The CLI runs as a subprocess (DISPLAY unset); ffprobe/ffmpeg read the MP4 back: frame count,
rate, duration, an audio stream, and that audio matching the input span. Causality is checked
in-process: frames up to a time T do not change when the audio after T does.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from fractalsync_models.training.synth import make_item

ROOT = Path(__file__).resolve().parents[1]
APP = ROOT / "examples" / "live_julia.py"
FFMPEG = shutil.which("ffmpeg")
FFPROBE = shutil.which("ffprobe")
pytestmark = pytest.mark.skipif(FFMPEG is None or FFPROBE is None,
                                reason="ffmpeg is a system dependency (scripts/sysdeps.sh)")
RATE = 44100


def run_app(*args, cwd=None, env_extra=None, timeout=240):
    env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY")}
    env.update(env_extra or {})
    return subprocess.run([sys.executable, str(APP), *map(str, args)], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def song(tmp_path_factory):
    item = make_item("video_120bpm", 120.0, duration=8.0, sample_rate=RATE)
    path = tmp_path_factory.mktemp("song") / "song.wav"
    sf.write(path, item.audio, RATE, subtype="FLOAT")
    return path, item


def probe(path: Path) -> dict:
    out = subprocess.run([FFPROBE, "-v", "error", "-count_frames", "-show_entries",
                          "stream=codec_type,nb_read_frames,r_frame_rate,width,height,"
                          "sample_rate:format=duration", "-of", "json", str(path)],
                         capture_output=True, text=True, check=True).stdout
    return json.loads(out)


def decoded_audio(path: Path, tmp: Path) -> np.ndarray:
    wav = tmp / "decoded.wav"
    subprocess.run([FFMPEG, "-v", "error", "-y", "-i", str(path), "-vn", "-ac", "1",
                    "-c:a", "pcm_f32le", str(wav)], check=True)
    audio, rate = sf.read(wav, dtype="float32")
    assert rate == RATE
    return audio


def test_video_has_frames_rate_duration_and_the_spans_audio(song, tmp_path):
    path, item = song
    out = tmp_path / "clip.mp4"
    r = run_app("--audio", path, "--out", out, "--seconds", 3, "--start", 2, "--size", "160x96",
                "--fps", 30, "--structure", "none")
    assert r.returncode == 0, r.stderr
    assert "90 frames (3.0 s at 30 fps)" in r.stdout and "p99" in r.stdout
    info = probe(out)
    video = [s for s in info["streams"] if s["codec_type"] == "video"]
    audio = [s for s in info["streams"] if s["codec_type"] == "audio"]
    assert len(video) == 1 and len(audio) == 1
    assert int(video[0]["nb_read_frames"]) == 90
    assert video[0]["r_frame_rate"] == "30/1"
    assert (video[0]["width"], video[0]["height"]) == (160, 96)
    assert abs(float(info["format"]["duration"]) - 3.0) < 0.05
    # The audio is the input's span [2 s, 5 s): AAC is lossy, so compare by correlation and
    # find the alignment (it must be within 2 ms of zero lag).
    got = decoded_audio(out, tmp_path)
    want = item.audio[2 * RATE:5 * RATE]
    assert abs(len(got) - len(want)) < RATE * 0.05
    n = min(len(got), len(want)) - 2000
    seg = want[1000:1000 + n - 2000]
    lags = np.arange(-200, 201)
    corr = [np.dot(got[1000 + lag:1000 + lag + len(seg)], seg) for lag in lags]
    best = int(lags[int(np.argmax(corr))])
    assert abs(best) <= RATE * 0.002, f"audio offset {best} samples"
    g = got[1000 + best:1000 + best + len(seg)]
    rho = np.dot(g, seg) / np.sqrt(np.dot(g, g) * np.dot(seg, seg))
    assert rho > 0.95, rho
    # A different span really gives different audio (the check above can fail).
    other = item.audio[3 * RATE:3 * RATE + len(seg)]
    assert abs(np.dot(g, other) / np.sqrt(np.dot(g, g) * np.dot(other, other))) < 0.9


def test_default_output_without_display_is_the_demo_song_video(tmp_path):
    r = run_app("--seconds", 1, "--size", "64x36", "--fps", 24, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    out = tmp_path / "demo_output" / "live_julia.mp4"
    assert out.is_file() and "demo song" in r.stdout and "24 frames" in r.stdout
    assert [s["codec_type"] for s in probe(out)["streams"]] == ["video", "audio"]


def test_an_existing_out_file_is_not_overwritten_without_asking(song, tmp_path):
    out = tmp_path / "mine.mp4"
    out.write_bytes(b"precious")
    r = run_app("--audio", song[0], "--out", out, "--seconds", 1, "--size", "64x36")
    assert r.returncode == 1 and "exists" in r.stderr and "--overwrite" in r.stderr
    assert out.read_bytes() == b"precious"
    r = run_app("--audio", song[0], "--out", out, "--seconds", 1, "--size", "64x36",
                "--overwrite")
    assert r.returncode == 0, r.stderr
    assert out.read_bytes()[4:8] == b"ftyp"


@pytest.mark.parametrize("args, env, message", [
    (["--audio", "{missing}"], None, "missing.wav"),
    (["--audio", "{junk}"], None, "junk.wav"),
    (["--mic"], None, "no display"),
    (["--start", "99"], "song", "outside the audio"),
    (["--out", "{tmp}/x.avi"], "song", ".mp4"),
    ([], "ffmpeg", "ffmpeg"),
    (["--size", "15x9"], "song", "size"),
])
def test_bad_input_gets_a_clear_message_and_a_non_zero_exit(song, tmp_path, args, env, message):
    junk = tmp_path / "junk.wav"
    junk.write_bytes(b"RIFF\x00\x00not audio at all")
    subs = {"missing": tmp_path / "missing.wav", "junk": junk, "tmp": tmp_path}
    argv = [a.format(**subs) for a in args]
    env_extra = None
    if env in ("song", "ffmpeg"):
        argv = ["--audio", str(song[0]), "--seconds", "1", "--size", "64x36"] + argv
        if "--out" not in argv:
            argv += ["--out", str(tmp_path / "o.mp4")]
    if env == "ffmpeg":
        env_extra = {"FRACTALSYNC_FFMPEG": "/bin/false"}
    r = run_app(*argv, env_extra=env_extra, timeout=120)
    assert r.returncode in (1, 2), (r.returncode, r.stderr)
    assert message in r.stderr, r.stderr
    assert "Traceback" not in r.stderr
    assert not (tmp_path / "o.mp4").exists()


def test_frames_do_not_look_ahead(song, tmp_path):
    """Frame k uses audio up to its time only: replacing the audio after T by noise leaves every
    frame with t_k <= T unchanged, and changes later ones."""
    from examples.julia.video_render import render_video

    _, item = song
    audio = item.audio[:, None].astype(np.float32)
    T = 3.0
    other = audio.copy()
    other[int(T * RATE):] = np.random.default_rng(0).normal(0, 0.3, (len(audio) - int(T * RATE),
                                                                     1)).astype(np.float32)
    runs = []
    for i, a in enumerate((audio, other)):
        frames = {}
        render_video(a, RATE, tmp_path / f"run{i}.mp4", fps=20,
                     size=(64, 36), renderer="gl", seconds=4.5, start=1.0,
                     on_frame=lambda k, t, img, frames=frames: frames.__setitem__(t, img.copy()))
        runs.append(frames)
    times = sorted(runs[0])
    before = [t for t in times if t <= T]
    after = [t for t in times if t > T + 0.2]
    assert before and after
    for t in before:
        assert np.array_equal(runs[0][t], runs[1][t]), t
    assert any(not np.array_equal(runs[0][t], runs[1][t]) for t in after)


def decoded_frames(path: Path, width: int, height: int) -> np.ndarray:
    raw = subprocess.run([FFMPEG, "-v", "error", "-i", str(path), "-f", "rawvideo", "-pix_fmt",
                          "rgb24", "pipe:1"], capture_output=True, check=True).stdout
    return np.frombuffer(raw, np.uint8).reshape(-1, height, width, 3)


@pytest.fixture(scope="module")
def random_model(tmp_path_factory):
    from onnx_controllers import random_controller
    return random_controller(tmp_path_factory.mktemp("model") / "random.onnx", seed=3)


def test_controller_onnx_renders_with_the_model_given(song, tmp_path, random_model):
    """--controller onnx runs the model: the video differs from the analytic one's, and from
    another model's; the frames, size and audio stream are there."""
    outs = {}
    for name, extra in (("analytic", ["--controller", "analytic"]),
                        ("onnx", ["--controller", "onnx", "--controller-model", random_model])):
        out = tmp_path / f"{name}.mp4"
        r = run_app("--audio", song[0], "--out", out, "--seconds", 2, "--size", "96x64",
                    "--fps", 30, "--structure", "none", *extra)
        assert r.returncode == 0, r.stderr
        assert f"{name} controller" in r.stdout and "controller p99" in r.stdout, r.stdout
        info = probe(out)
        video = [s for s in info["streams"] if s["codec_type"] == "video"]
        assert int(video[0]["nb_read_frames"]) == 60
        assert (video[0]["width"], video[0]["height"]) == (96, 64)
        assert [s["codec_type"] for s in info["streams"]].count("audio") == 1
        outs[name] = decoded_frames(out, 96, 64).astype(np.int16)
    assert outs["analytic"].shape == outs["onnx"].shape == (60, 64, 96, 3)
    assert np.abs(outs["analytic"] - outs["onnx"]).mean() > 5.0


def test_the_default_controller_is_the_shipped_onnx_model(song, tmp_path):
    """No --controller flag: the trained controller (the default, it measures better) runs from
    the shipped controller_v1.onnx."""
    out = tmp_path / "shipped.mp4"
    r = run_app("--audio", song[0], "--out", out, "--seconds", 2, "--size", "96x64", "--fps",
                30)
    assert r.returncode == 0, r.stderr
    assert "onnx controller" in r.stdout
    assert decoded_frames(out, 96, 64).shape == (60, 64, 96, 3)


@pytest.mark.parametrize("args, message", [
    (["--controller", "onnx", "--controller-model", "{tmp}/missing.onnx"], "missing.onnx"),
    (["--controller", "onnx", "--controller-model", "{junk}"], "junk.onnx"),
    (["--controller", "analytic", "--controller-model", "{junk}"], "--controller onnx"),
    (["--controller", "torch"], "invalid choice"),
])
def test_a_bad_controller_model_is_a_clear_error_before_rendering(song, tmp_path, args, message):
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"\x08\x07 not an onnx model" * 20)
    argv = [a.format(tmp=tmp_path, junk=junk) for a in args]
    out = tmp_path / "o.mp4"
    r = run_app("--audio", song[0], "--out", out, "--seconds", 1, "--size", "64x36", *argv,
                timeout=120)
    assert r.returncode in (1, 2), (r.returncode, r.stderr)
    assert message in r.stderr, r.stderr
    assert "Traceback" not in r.stderr and "rendering" not in r.stdout
    assert not out.exists()


SIDE_BY_SIDE = ROOT / "benchmarks" / "render_controller_side_by_side.py"


def test_side_by_side_script_renders_both_controllers_with_the_audio(song, tmp_path,
                                                                      random_model):
    out = tmp_path / "both.mp4"
    env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY")}
    r = subprocess.run([sys.executable, str(SIDE_BY_SIDE), "--audio", str(song[0]), "--out",
                        str(out), "--seconds", "2", "--size", "96x64", "--fps", "30",
                        "--structure", "none", "--controller-model", str(random_model)],
                       env=env, capture_output=True, text=True, timeout=240)
    assert r.returncode == 0, r.stderr
    assert "analytic: controller p99" in r.stdout and "onnx: random: controller p99" in r.stdout
    info = probe(out)
    video = [s for s in info["streams"] if s["codec_type"] == "video"]
    assert [s["codec_type"] for s in info["streams"]].count("audio") == 1
    assert (video[0]["width"], video[0]["height"]) == (192, 64)
    assert int(video[0]["nb_read_frames"]) == 60
    frames = decoded_frames(out, 192, 64).astype(np.int16)
    assert frames.shape == (60, 64, 192, 3)
    left, right = frames[:, 24:, :96], frames[:, 24:, 96:]  # below the labels
    assert np.abs(left - right).mean() > 5.0  # two different pictures


def test_side_by_side_panels_are_the_single_renders_plus_a_label(song, tmp_path, random_model):
    """Each panel of the composite equals, pixel for pixel, render_video with that controller
    alone, except in its label box at the top left (which is drawn: it differs there)."""
    from examples.julia.controller import AnalyticController
    from examples.julia.controller_onnx import OnnxController
    from examples.julia.video_render import render_side_by_side, render_video

    audio = song[1].audio[:, None].astype(np.float32)
    kw = dict(fps=20, size=(96, 64), renderer="gl", seconds=1.5, start=1.0)

    def grab(store):
        return lambda k, t, img: store.append(img.copy())

    both, single = [], {}
    stats = render_side_by_side(audio, RATE, tmp_path / "both.mp4",
                                [("analytic", AnalyticController()),
                                 ("onnx", OnnxController(random_model))],
                                on_frame=grab(both), **kw)
    for name, ctl in (("analytic", AnalyticController()), ("onnx", OnnxController(random_model))):
        single[name] = []
        one = render_video(audio, RATE, tmp_path / f"{name}.mp4", controller=ctl,
                           on_frame=grab(single[name]), **kw)
        np.testing.assert_array_equal(one.controls,
                                      stats[0 if name == "analytic" else 1].controls)
    assert len(both) == 30 and both[0].shape == (64, 192, 3)
    for i, name in enumerate(("analytic", "onnx")):
        panel = np.array([f[:, 96 * i:96 * (i + 1)] for f in both])
        diff = np.any(panel != np.array(single[name]), axis=(0, 3))  # (64, 96) pixels touched
        rows, cols = np.nonzero(diff)
        assert rows.size > 50, "the label was not drawn"
        assert rows.max() < 32 and cols.max() < 80, (rows.max(), cols.max())
        assert stats[i].controller_us.shape == (30,) and np.all(stats[i].controller_us > 0)
