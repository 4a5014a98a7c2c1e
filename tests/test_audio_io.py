"""Tests for fractalsync_dsp.audio_io: load_audio, AudioReader (block-wise, with or without a
read-ahead thread) and AudioLoadError."""

from __future__ import annotations

import os
import struct
import threading
import warnings

import numpy as np
import pytest
import soundfile as sf

from fractalsync_dsp.audio_io import (
    BLOCK_FRAMES,
    AudioLoadError,
    AudioReader,
    TruncatedAudioWarning,
    load_audio,
)
from fractalsync_dsp.sample_format import NonFiniteAudioWarning

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


def _read_all(path, block_frames: int, read_ahead: int) -> np.ndarray:
    with AudioReader(path) as reader:
        return np.concatenate(list(reader.blocks(block_frames, read_ahead=read_ahead)))


def _reader_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("AudioReader(")]


def _expect_error(path, reason_part: str) -> AudioLoadError:
    """load_audio and the block reader (direct and read-ahead, default block size) fail with
    the same error."""
    with pytest.raises(AudioLoadError) as info:
        load_audio(path)
    err = info.value
    assert isinstance(err, ValueError)
    assert err.path == os.fspath(path)
    assert os.fspath(path) in str(err)
    assert reason_part in err.reason and err.reason in str(err)
    for read_ahead in (0, 2):
        with pytest.raises(AudioLoadError) as info:
            _read_all(path, BLOCK_FRAMES, read_ahead)
        assert (info.value.path, info.value.reason) == (err.path, err.reason)
    assert _reader_threads() == []
    return err


def test_file_name_that_is_not_utf8(tmp_path):
    """A name with an undecodable byte (0xff, a surrogate escape in Python) is read (found by
    tests/test_cli_fuzz.py: soundfile encoded the str name strictly and failed), and its errors
    are the usual ones."""
    audio = np.linspace(-0.5, 0.5, 800, dtype=np.float32)[:, None]
    path = tmp_path / os.fsdecode(b"song \xff.wav")
    sf.write(os.fsencode(path), audio, 8000, subtype="FLOAT")  # soundfile needs bytes here
    got, rate = load_audio(path)
    assert rate == 8000 and np.array_equal(got, audio)
    bad = tmp_path / os.fsdecode(b"bad \xff.wav")
    bad.write_bytes(b"RIFF")
    with pytest.raises(AudioLoadError, match=r"bad \\udcff\.wav': not readable as audio"):
        load_audio(bad)


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


def _load_with_warnings(path, block_frames: int = BLOCK_FRAMES, read_ahead: int = 0):
    """(samples, [(category, message), ...]) of reading the whole file block by block."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        x = _read_all(path, block_frames, read_ahead)
    return x, [(w.category, str(w.message)) for w in caught]


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf, 1e35])
def test_non_finite_float_wav_is_read_as_silence(tmp_path, bad):
    x = _sine(100, 2)
    x[37, 1] = bad
    path = tmp_path / "nan.wav"
    sf.write(path, x, SR, subtype="FLOAT")
    with pytest.warns(NonFiniteAudioWarning) as record:
        y, sr = load_audio(path)
    assert [str(w.message) for w in record] == [
        f"{path}: 1 NaN/inf samples (of 200) replaced by silence "
        "(magnitudes above 1e+30 count as inf)"
    ]
    x[37, 1] = 0.0
    np.testing.assert_array_equal(y, x)


@pytest.mark.parametrize("read_ahead", [0, 2])
def test_one_non_finite_warning_per_file_with_the_total(tmp_path, read_ahead):
    x = _sine(20000, 2)
    x[[5, 12345, 12346, 19999], [0, 0, 1, 1]] = [np.nan, np.inf, -np.inf, np.nan]
    path = tmp_path / "late_nan.wav"
    sf.write(path, x, SR, subtype="FLOAT")
    y, caught = _load_with_warnings(path, 4096, read_ahead)
    assert caught == [(NonFiniteAudioWarning, f"{path}: 4 NaN/inf samples (of 40000) replaced "
                                              "by silence (magnitudes above 1e+30 count as inf)")]
    x[[5, 12345, 12346, 19999], [0, 0, 1, 1]] = 0.0
    np.testing.assert_array_equal(y, x)
    with AudioReader(path) as reader, warnings.catch_warnings():
        warnings.simplefilter("error")
        next(reader.blocks(4096))  # an iteration stopped before the end warns about nothing


def test_path_type_checked():
    with pytest.raises(TypeError, match="path must be"):
        load_audio(123)  # type: ignore[arg-type]


# ---------------------------------------------------------------- block reader


@pytest.mark.parametrize("read_ahead", [0, 1, 3])
@pytest.mark.parametrize("block_frames", [100, 1153, 44100, BLOCK_FRAMES])
@pytest.mark.parametrize(
    ("ext", "fmt", "subtype", "channels"),
    [("wav", "WAV", "PCM_16", 2), ("flac", "FLAC", "PCM_24", 1), ("ogg", "OGG", "VORBIS", 2),
     ("mp3", "MP3", "MPEG_LAYER_III", 1)],
)
def test_blocks_equal_load_audio(tmp_path, ext, fmt, subtype, channels, block_frames, read_ahead):
    path = tmp_path / f"a.{ext}"
    sf.write(path, _sine(3 * SR, channels), SR, format=fmt, subtype=subtype)
    whole, sr = load_audio(path)
    with AudioReader(path) as reader:
        assert (reader.sample_rate, reader.channels) == (sr, channels)
        blocks = list(reader.blocks(block_frames, read_ahead=read_ahead))
    assert all(b.dtype == np.float32 and b.ndim == 2 and b.flags.c_contiguous for b in blocks)
    assert all(len(b) == block_frames for b in blocks[:-1]) and 1 <= len(blocks[-1]) <= block_frames
    np.testing.assert_array_equal(np.concatenate(blocks), whole)
    assert _reader_threads() == []


def test_second_blocks_call_continues(tmp_path):
    path = tmp_path / "a.wav"
    sf.write(path, _sine(1000, 1), SR, subtype="FLOAT")
    with AudioReader(path) as reader:
        head = next(reader.blocks(300))
        rest = np.concatenate(list(reader.blocks(300, read_ahead=2)))
        assert list(reader.blocks(300)) == []  # exhausted: no error, no blocks
    np.testing.assert_array_equal(np.concatenate([head, rest]), load_audio(path)[0])


def test_warnings_are_issued_once_per_reader(tmp_path):
    x = _sine(1000, 1)
    x[10] = np.nan
    path = tmp_path / "a.wav"
    sf.write(path, x, SR, subtype="FLOAT")
    with warnings.catch_warnings(record=True) as caught, AudioReader(path) as reader:
        warnings.simplefilter("always")
        head = next(reader.blocks(300))
        rest = list(reader.blocks(300, read_ahead=2))  # goes on to the end: warns here
        assert list(reader.blocks(300)) == []  # at the end again: no second warning
    assert len(head) + sum(map(len, rest)) == 1000
    assert [str(w.message).split(" replaced")[0] for w in caught] == [
        f"{path}: 1 NaN/inf samples (of 1000)"]


# ---------------------------------------------------------------- truncated files


def _cut(tmp_path, name: str, n_bytes: int, frames: int = SR, **write) -> str:
    path = tmp_path / name
    sf.write(path, _sine(frames, write.pop("channels", 1)), SR, **write)
    path.write_bytes(path.read_bytes()[:n_bytes])
    return os.fspath(path)


@pytest.mark.parametrize(
    ("name", "write", "header_bytes", "frame_bytes"),
    [
        ("pcm16.wav", dict(subtype="PCM_16"), 44, 2),
        ("float.wav", dict(subtype="FLOAT"), 80, 4),
        ("stereo24.wav", dict(subtype="PCM_24", channels=2), 44, 6),
        ("pcm16.aiff", dict(format="AIFF", subtype="PCM_16"), 54, 2),
        ("pcm16.au", dict(format="AU", subtype="PCM_16"), 24, 2),
    ],
)
@pytest.mark.parametrize("keep", [0.5, 0.25])
def test_data_chunk_cut_short_is_read_with_one_warning(tmp_path, name, write, header_bytes,
                                                       frame_bytes, keep):
    """libsndfile shortens the frame count of such a file silently; the reader says so."""
    present = int(SR * keep)
    path = _cut(tmp_path, name, header_bytes + present * frame_bytes + 1, **write)
    with AudioReader(path) as reader:
        assert (reader.frames, reader.declared_frames) == (present, SR)
    for read_ahead in (0, 2):
        y, caught = _load_with_warnings(path, 1000, read_ahead)
        assert len(y) == present
        assert caught == [(TruncatedAudioWarning,
                           f"{path}: truncated: header declares {SR} frames, read {present}")]


def test_60_byte_wavs(tmp_path):
    """16-bit PCM: the header (44 bytes) is whole, 8 frames follow: read, with the warning.
    Float: the header (80 bytes) is cut: the error names libsndfile's reason and the size."""
    pcm = _cut(tmp_path, "pcm.wav", 60, subtype="PCM_16")
    with pytest.warns(TruncatedAudioWarning, match=f"header declares {SR} frames, read 8$"):
        assert load_audio(pcm)[0].shape == (8, 1)
    err = _expect_error(_cut(tmp_path, "float.wav", 60, subtype="FLOAT"),
                        "not readable as audio (libsndfile: ")
    assert err.reason.endswith("; the file has 60 bytes)")


def test_mp3_shorter_than_its_header_warns(tmp_path):
    path = tmp_path / "cut.mp3"
    sf.write(path, _sine(10 * SR, 1), SR, format="MP3", subtype="MPEG_LAYER_III")
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    y, caught = _load_with_warnings(path)
    assert caught == [(TruncatedAudioWarning,
                       f"{path}: truncated: header declares {10 * SR} frames, read {len(y)}")]
    assert 0 < len(y) < 10 * SR


@pytest.mark.parametrize(
    ("ext", "write"),
    [("wav", dict(subtype="PCM_16")), ("wav", dict(subtype="FLOAT")), ("flac", {}),
     ("aiff", dict(format="AIFF")), ("ogg", dict(format="OGG", subtype="VORBIS")),
     ("mp3", dict(format="MP3", subtype="MPEG_LAYER_III"))],
)
def test_intact_files_read_without_warnings(tmp_path, ext, write):
    path = tmp_path / f"a.{ext}"
    sf.write(path, _sine(3 * SR, 2), SR, **write)
    y, caught = _load_with_warnings(path)
    assert caught == [] and len(y) == 3 * SR


def test_streamed_wav_of_unknown_length_does_not_warn(tmp_path):
    """Streaming writers put 0xFFFFFFFF in the size fields: libsndfile reads what is there."""
    path = tmp_path / "stream.wav"
    sf.write(path, _sine(SR, 1), SR, subtype="PCM_16")
    data = bytearray(path.read_bytes())
    data[4:8] = data[40:44] = struct.pack("<I", 0xFFFFFFFF)
    path.write_bytes(bytes(data))
    y, caught = _load_with_warnings(path)
    assert caught == [] and len(y) == SR


def _truncated_flac(tmp_path) -> tuple[str, np.ndarray]:
    x = _sine(3 * SR, 2)
    path = tmp_path / "cut.flac"
    sf.write(path, x, SR, subtype="PCM_16")
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * 0.9)])
    return os.fspath(path), x


def test_truncated_flac_fails_part_way(tmp_path):
    path, x = _truncated_flac(tmp_path)
    err = _expect_error(path, "decoding failed after frame")
    assert "libsndfile" in err.reason
    with AudioReader(path) as reader:
        got = []
        with pytest.raises(AudioLoadError) as info:
            for block in reader.blocks(8192, read_ahead=2):
                got.append(block)
    decoded = np.concatenate(got)
    assert info.value.reason.startswith(f"decoding failed after frame {len(decoded)} (libsndfile:")
    assert 0 < len(decoded) < len(x)
    np.testing.assert_allclose(decoded, x[: len(decoded)], atol=1.0 / 32768)


def _finishes(fn, timeout: float = 60.0):
    """Run fn on a thread; fail (instead of hanging the suite) if it does not return in time."""
    out: dict = {}

    def target():
        try:
            out["value"] = fn()
        except BaseException as exc:  # handed to the test thread
            out["error"] = exc

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(timeout)
    assert not thread.is_alive(), f"did not finish within {timeout} s"
    if "error" in out:
        raise out["error"]
    return out.get("value")


def test_consumer_stopping_early_ends_the_read_ahead_thread(tmp_path):
    path = tmp_path / "long.wav"
    sf.write(path, _sine(50000, 2), SR)

    def stop_after_one_block():
        with AudioReader(path) as reader:
            blocks = reader.blocks(100, read_ahead=2)
            next(blocks)
            assert len(_reader_threads()) == 1
            raise KeyError("consumer failed")  # the producer is blocked on a full queue

    with pytest.raises(KeyError, match="consumer failed"):
        _finishes(stop_after_one_block)
    assert _reader_threads() == []


def test_decoder_thread_exception_reaches_the_consumer(tmp_path, monkeypatch):
    path = tmp_path / "a.wav"
    sf.write(path, _sine(5000, 1), SR)
    calls = {"n": 0}
    real_read_into = AudioReader._read_into

    def failing_read_into(self, block):
        calls["n"] += 1
        if calls["n"] == 3:
            raise MemoryError(f"injected on {threading.current_thread().name}")
        return real_read_into(self, block)

    monkeypatch.setattr(AudioReader, "_read_into", failing_read_into)

    def consume():
        got = []
        with AudioReader(path) as reader:
            for block in reader.blocks(1000, read_ahead=4):
                got.append(block)
        return got

    with pytest.raises(MemoryError, match=r"injected on AudioReader\(a.wav\)"):
        _finishes(consume)
    assert calls["n"] == 3
    assert _reader_threads() == []


@pytest.mark.parametrize("read_ahead", [0, 2])
def test_transform_applied_in_order_on_the_decoding_thread(tmp_path, read_ahead):
    path = tmp_path / "a.wav"
    sf.write(path, _sine(10000, 2), SR, subtype="FLOAT")
    seen = []

    def transform(block):
        seen.append(threading.current_thread().name)
        return block[:, 1] - block[:, 0]

    with AudioReader(path) as reader:
        out = list(reader.blocks(3000, read_ahead=read_ahead, transform=transform))
    whole = load_audio(path)[0]
    np.testing.assert_array_equal(np.concatenate(out), whole[:, 1] - whole[:, 0])
    assert [len(o) for o in out] == [3000, 3000, 3000, 1000]
    main = threading.current_thread().name
    assert seen == ([main] * 4 if read_ahead == 0 else ["AudioReader(a.wav)"] * 4)


def test_transform_exception_reaches_the_consumer(tmp_path):
    path = tmp_path / "a.wav"
    sf.write(path, _sine(10000, 1), SR)

    def transform(block):
        if block[0, 0] != 0.0:  # every block but the first
            raise ArithmeticError("transform failed")
        return block

    def consume():
        with AudioReader(path) as reader:
            return list(reader.blocks(1000, read_ahead=3, transform=transform))

    with pytest.raises(ArithmeticError, match="transform failed"):
        _finishes(consume)
    assert _reader_threads() == []


def test_block_argument_errors(tmp_path):
    path = tmp_path / "a.wav"
    sf.write(path, _sine(100, 1), SR)
    with AudioReader(path) as reader:
        for bad in (0, -5, 2.5, True, None):
            with pytest.raises(ValueError, match="block_frames"):
                reader.blocks(bad)
        for bad in (-1, 1.0, False):
            with pytest.raises(ValueError, match="read_ahead"):
                reader.blocks(10, read_ahead=bad)
        with pytest.raises(TypeError, match="transform must be callable"):
            reader.blocks(10, transform=3)
        first = reader.blocks(10, read_ahead=1)
        next(first)
        second = reader.blocks(10, read_ahead=1)
        with pytest.raises(ValueError, match="already has a read-ahead"):
            next(second)
        assert len(next(first)) == 10  # the first one goes on
    assert _reader_threads() == []
    with pytest.raises(ValueError, match="is closed"):
        reader.blocks()


def test_reader_open_errors_match_load_audio(tmp_path):
    with pytest.raises(TypeError, match="path must be"):
        AudioReader(3.5)  # type: ignore[arg-type]
    with pytest.raises(AudioLoadError, match="is a directory"):
        AudioReader(tmp_path)
