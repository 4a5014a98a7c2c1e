"""Tests for fractalsync_dsp.audio_io.load_audio and AudioLoadError."""

from __future__ import annotations

import os

import numpy as np
import pytest
import soundfile as sf

from fractalsync_dsp.audio_io import AudioLoadError, load_audio

SR = 44100


def _sine(n: int, channels: int, freq: float = 440.0, sr: int = SR) -> np.ndarray:
    t = np.arange(n) / sr
    cols = [0.5 * np.sin(2 * np.pi * freq * (c + 1) * t) for c in range(channels)]
    return np.stack(cols, axis=1).astype(np.float32)


def _dominant_hz(x: np.ndarray, sr: int) -> float:
    spec = np.abs(np.fft.rfft(x * np.hanning(len(x))))
    return float(np.argmax(spec) * sr / len(x))


@pytest.mark.parametrize("channels", [1, 2])
@pytest.mark.parametrize(
    ("ext", "fmt", "subtype", "atol"),
    [
        ("wav", "WAV", "PCM_16", 1.0 / 32768),
        ("wav", "WAV", "FLOAT", 0.0),
        ("flac", "FLAC", "PCM_24", 1.0 / 2**23),
    ],
)
def test_lossless_roundtrip(tmp_path, ext, fmt, subtype, atol, channels):
    x = _sine(4410, channels)
    path = tmp_path / f"a.{ext}"
    sf.write(path, x, SR, format=fmt, subtype=subtype)
    y, sr = load_audio(path)
    assert sr == SR and isinstance(sr, int)
    assert y.dtype == np.float32 and y.shape == (4410, channels) and y.flags.c_contiguous
    np.testing.assert_allclose(y, x, rtol=0, atol=atol)


@pytest.mark.parametrize("channels", [1, 2])
@pytest.mark.parametrize(
    ("ext", "fmt", "subtype"), [("ogg", "OGG", "VORBIS"), ("mp3", "MP3", "MPEG_LAYER_III")]
)
def test_lossy_roundtrip(tmp_path, ext, fmt, subtype, channels):
    # The installed libsndfile (>= 1.1) writes MP3 through LAME, so MP3 reading is tested on
    # real MP3 files. Lossy codecs change samples, so check length, rate and pitch instead.
    assert fmt in sf.available_formats()
    n = SR  # 1 s
    x = _sine(n, channels, freq=1000.0)
    path = tmp_path / f"a.{ext}"
    sf.write(path, x, SR, format=fmt, subtype=subtype)
    y, sr = load_audio(str(path))
    assert sr == SR
    assert y.dtype == np.float32 and y.ndim == 2 and y.shape[1] == channels
    assert abs(y.shape[0] - n) <= 2048
    for c in range(channels):
        assert abs(_dominant_hz(y[:, c], sr) - 1000.0 * (c + 1)) < 3.0
        assert 0.3 < np.sqrt(np.mean(y[SR // 4 : 3 * SR // 4, c] ** 2)) / np.sqrt(0.125) < 1.5


def _expect_error(path, reason_part: str) -> AudioLoadError:
    with pytest.raises(AudioLoadError) as info:
        load_audio(path)
    err = info.value
    assert isinstance(err, ValueError)
    assert err.path == os.fspath(path)
    assert os.fspath(path) in str(err)
    assert reason_part in err.reason and err.reason in str(err)
    return err


def test_missing_file(tmp_path):
    _expect_error(tmp_path / "nope.wav", "No such file")


def test_directory(tmp_path):
    _expect_error(tmp_path, "is a directory")


def test_text_file(tmp_path):
    path = tmp_path / "notes.wav"
    path.write_text("this is not audio\n" * 20)
    _expect_error(path, "not readable as audio")


def test_zero_byte_file(tmp_path):
    path = tmp_path / "zero.flac"
    path.write_bytes(b"")
    _expect_error(path, "not readable as audio")


def test_zero_frame_wav(tmp_path):
    path = tmp_path / "empty.wav"
    sf.write(path, np.zeros((0, 2), np.float32), SR)
    _expect_error(path, "no audio frames")


def test_truncated_header(tmp_path):
    path = tmp_path / "cut.wav"
    sf.write(path, _sine(1000, 1), SR)
    path.write_bytes(path.read_bytes()[:30])
    _expect_error(path, "not readable as audio")


def test_random_bytes_named_mp3(tmp_path):
    path = tmp_path / "noise.mp3"
    path.write_bytes(np.random.default_rng(0).integers(0, 256, 5000, dtype=np.uint8).tobytes())
    _expect_error(path, "not readable as audio")


def test_png_is_unsupported(tmp_path):
    path = tmp_path / "image.png"
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(200))
    _expect_error(path, "not readable as audio")


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_float_wav(tmp_path, bad):
    x = _sine(100, 2)
    x[37, 1] = bad
    path = tmp_path / "nan.wav"
    sf.write(path, x, SR, subtype="FLOAT")
    _expect_error(path, "frame 37")


def test_path_type_checked():
    with pytest.raises(TypeError, match="path must be"):
        load_audio(123)  # type: ignore[arg-type]
