"""The pre-visualizer main job: examples/beat_demo.py as a subprocess."""

import re
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
import soundfile as sf

from fractalsync_models.training.synth import make_item

DEMO = Path(__file__).resolve().parents[1] / "examples" / "beat_demo.py"


def read_png(path: Path) -> np.ndarray:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, idat, width, height = 8, b"", 0, 0
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        tag, body = data[pos + 4 : pos + 8], data[pos + 8 : pos + 8 + length]
        (crc,) = struct.unpack(">I", data[pos + 8 + length : pos + 12 + length])
        assert crc == zlib.crc32(tag + body)
        if tag == b"IHDR":
            width, height = struct.unpack(">II", body[:8])
        elif tag == b"IDAT":
            idat += body
        pos += 12 + length
    raw = np.frombuffer(zlib.decompress(idat), np.uint8).reshape(height, 1 + 3 * width)
    assert not raw[:, 0].any()  # filter type 0 on every row
    return raw[:, 1:].reshape(height, width, 3)


STRIP, GAP, BANDS, SCALE = 24, 6, 136, 3


def test_demo_tracks_a_groove_and_draws_its_beats(tmp_path, beatnet_models_dir):
    """A 15 s 4/4 groove at 120 BPM (stereo WAV): the live tracker finds 120 BPM and 4/4, agrees
    with the offline grid, its phase clock never runs backwards, and the PNG's live-beat strip
    has a tick at every annotated beat after the first 5 s (and none far from one)."""
    sr = 44100
    item = make_item("demo", 120, duration=15.0, sample_rate=sr)
    wav = tmp_path / "groove.wav"
    sf.write(wav, np.stack([item.audio, item.audio], 1), sr)
    out = tmp_path / "out" / "beats.png"
    run = subprocess.run(
        [sys.executable, str(DEMO), str(wav), "--out", str(out)], capture_output=True, text=True
    )
    assert run.returncode == 0, run.stderr
    frames = int(np.ceil(15.0 * 22050 / 441))
    assert f"-> {frames} frames" in run.stdout and "frames/s" in run.stdout
    bpm, meter = re.search(r"([\d.]+) BPM, (\d) beats per bar", run.stdout).groups()
    assert abs(float(bpm) - 120) < 2 and meter == "4"
    assert "never ran backwards" in run.stdout
    beat_f = float(re.search(r"model 1 vs offline: beat F ([\d.]+)", run.stdout).group(1))
    assert beat_f >= 0.9
    ens_f = float(re.search(r"ensemble vs offline: beat F ([\d.]+)", run.stdout).group(1))
    assert ens_f >= 0.9

    img = read_png(out)
    assert img.shape == (2 * STRIP + 3 * GAP + 2 * BANDS * SCALE, frames, 3)
    live = img[STRIP - 1]  # bottom row of the live strip: beats and downbeats both reach it
    ticks = np.flatnonzero(np.any(live != 40, axis=1))  # not the grey background
    downs = np.flatnonzero((img[0, :, 0] > 200) & (img[0, :, 1] < 100))  # red reaches the top
    assert np.all(np.min(np.abs(downs[downs > 5 * 50][:, None]
                                - item.downbeats[None, :] * 50), axis=1) <= 2)
    late = item.beats[item.beats > 5.0] * 50
    assert np.all(np.min(np.abs(ticks[None, :] - late[:, None]), axis=1) <= 2)
    assert np.all(np.min(np.abs(ticks[ticks > 5 * 50][:, None] - item.beats[None, :] * 50),
                         axis=1) <= 2)
    spectrogram = img[2 * STRIP + 3 * GAP:2 * STRIP + 3 * GAP + BANDS * SCALE]
    assert spectrogram.std() > 10  # not a blank panel


def test_demo_reports_bad_file(tmp_path):
    bad = tmp_path / "not_audio.mp3"
    bad.write_text("hello")
    run = subprocess.run([sys.executable, str(DEMO), str(bad)], capture_output=True, text=True)
    assert run.returncode == 2
    assert "not_audio.mp3" in run.stderr and "Traceback" not in run.stderr
