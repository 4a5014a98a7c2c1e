"""The pre-visualizer main job: examples/frontend_demo.py as a subprocess."""

import struct
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
import soundfile as sf

DEMO = Path(__file__).resolve().parents[1] / "examples" / "frontend_demo.py"


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


def test_demo_writes_spectrogram_png(tmp_path):
    sr = 44100
    t = np.arange(sr * 3) / sr
    clicks = (np.sin(2 * np.pi * 2 * t) > 0.99).astype(np.float32)  # two clicks per second
    audio = 0.3 * np.sin(2 * np.pi * 220 * t) + clicks
    wav = tmp_path / "song.wav"
    sf.write(wav, np.stack([audio, audio], 1), sr)
    out = tmp_path / "out" / "spec.png"
    run = subprocess.run(
        [sys.executable, str(DEMO), str(wav), "--out", str(out)], capture_output=True, text=True
    )
    assert run.returncode == 0, run.stderr
    assert "frames/s" in run.stdout and "150 frames" in run.stdout
    img = read_png(out)
    assert img.shape == (2 * 136 * 3 + 6, 150, 3)
    top = img[: 136 * 3].astype(int).sum(axis=2)
    # The 220 Hz tone lights one low band steadily; high bands stay darker.
    assert top[-60:].mean() > top[:60].mean()


def test_demo_reports_bad_file(tmp_path):
    bad = tmp_path / "not_audio.mp3"
    bad.write_text("hello")
    run = subprocess.run([sys.executable, str(DEMO), str(bad)], capture_output=True, text=True)
    assert run.returncode == 2
    assert "not_audio.mp3" in run.stderr and "Traceback" not in run.stderr
