"""Reading audio files into float32 arrays.

`load_audio` is the only entry point. Every way a file can fail to give audio (missing, a
directory, unreadable, empty, corrupt, unsupported format, not audio at all, non-finite samples)
raises the same exception type, `AudioLoadError`, whose message names the path and the reason.
"""

from __future__ import annotations

import math
import os

import numpy as np
import soundfile as sf

__all__ = ["AudioLoadError", "load_audio"]


class AudioLoadError(ValueError):
    """A file could not be read as audio.

    Subclass of `ValueError` (the file's *content* is not valid input; this also covers
    missing files so that callers need exactly one ``except`` clause). The message is
    ``"cannot load audio from '<path>': <reason>"``; the parts are kept as attributes.

    Attributes
    ----------
    path : str
        The path that was given to `load_audio`.
    reason : str
        Why it failed, e.g. ``"No such file or directory"``, ``"is a directory"``,
        ``"file contains no audio frames"``, or
        ``"not readable as audio (libsndfile: Format not recognised.)"``.
    """

    def __init__(self, path: str, reason: str) -> None:
        super().__init__(f"cannot load audio from {path!r}: {reason}")
        self.path = path
        self.reason = reason


def load_audio(path: str | os.PathLike) -> tuple[np.ndarray, int]:
    """Read an audio file with libsndfile (via soundfile).

    Any format the installed libsndfile reads is accepted; WAV, FLAC, OGG/Vorbis and MP3 are
    tested. Integer PCM is scaled to [-1, 1) by soundfile (divided by 2**(bits-1)); float files
    are returned as stored, cast to float32.

    Parameters
    ----------
    path : str or os.PathLike
        The file to read.

    Returns
    -------
    x : np.ndarray, float32, shape (frames, channels)
        The samples, always 2-D (a mono file gives shape (frames, 1)), C-contiguous.
    sample_rate : int
        The file's sample rate in Hz.

    Raises
    ------
    TypeError
        If `path` is not a str or os.PathLike.
    AudioLoadError
        If the file is missing, a directory or unreadable; if libsndfile cannot open or
        decode it (corrupt, unsupported, or not audio); if it holds 0 frames; or if it holds
        NaN/inf samples (possible in float WAV files).
    """
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"path must be a str or os.PathLike, got {type(path).__name__}")
    name = os.fspath(path)
    if os.path.isdir(name):
        raise AudioLoadError(name, "is a directory")
    try:
        with open(name, "rb"):
            pass
    except OSError as exc:
        raise AudioLoadError(name, exc.strerror or type(exc).__name__) from exc
    try:
        x, sample_rate = sf.read(name, dtype="float32", always_2d=True)
    except (sf.SoundFileError, RuntimeError) as exc:
        raise AudioLoadError(name, _libsndfile_reason(exc, name)) from exc
    if x.shape[0] == 0:
        raise AudioLoadError(name, "file contains no audio frames")
    if not math.isfinite(float(np.sum(x, dtype=np.float64))):
        first = int(np.argmin(np.isfinite(x).all(axis=1)))
        raise AudioLoadError(name, f"non-finite sample (NaN or inf) at frame {first}")
    return np.ascontiguousarray(x), int(sample_rate)


def _libsndfile_reason(exc: Exception, name: str) -> str:
    """libsndfile's diagnosis without soundfile's "Error opening '<path>': " prefix."""
    text = str(exc)
    prefix = f"Error opening {name!r}: "
    text = text[len(prefix):] if text.startswith(prefix) else text
    return f"not readable as audio (libsndfile: {text})"
