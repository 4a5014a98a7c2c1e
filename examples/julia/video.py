"""Video output: rendered frames and the audio of the same span, muxed by ffmpeg through a pipe.

:class:`VideoWriter` starts one ``ffmpeg`` process that reads raw RGB frames (``rgb24``,
top row first) from its stdin and the audio span from a temporary WAV file, and encodes H.264
(``yuv420p``) + AAC into an MP4. Frame ``k`` is shown at ``k / fps`` seconds of the video and
the audio's first sample at 0 s, so a frame rendered for stream time ``start + k / fps`` plays
with the audio heard at that stream time.

The binary is the system ``ffmpeg`` (Debian package) or, when that is missing, the one the
``imageio-ffmpeg`` package ships. The output is written to a temporary file beside the target
and renamed over it only when ffmpeg succeeded, so a failed run leaves no half-written video
(and an existing file is replaced only when the caller allowed it).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np
import soundfile as sf

__all__ = ["VideoError", "VideoWriter", "find_ffmpeg"]

#: How much of ffmpeg's stderr an error message quotes (characters, from the end).
_STDERR_TAIL = 1500


class VideoError(RuntimeError):
    """ffmpeg is missing, or failed; the message quotes its own error output."""


def find_ffmpeg() -> str:
    """Path of an ffmpeg binary: ``$FRACTALSYNC_FFMPEG``, the system one, or imageio-ffmpeg's.

    Raises
    ------
    VideoError
        When none is available (the message says how to install one).
    """
    override = os.environ.get("FRACTALSYNC_FFMPEG", "").strip()
    if override:
        if shutil.which(override) is None and not os.access(override, os.X_OK):
            raise VideoError(f"FRACTALSYNC_FFMPEG={override!r} is not an executable")
        return override
    found = shutil.which("ffmpeg")
    if found:
        return found
    try:
        import imageio_ffmpeg
    except ImportError:
        raise VideoError("ffmpeg not found: install it (Debian: 'apt-get install ffmpeg', or "
                         "'pip install imageio-ffmpeg')") from None
    return imageio_ffmpeg.get_ffmpeg_exe()


class VideoWriter:
    """Encode frames and an audio span into an MP4 with ffmpeg.

    Parameters
    ----------
    path : str or Path
        The ``.mp4`` to write (its directory is created).
    width, height : int
        Frame size in pixels (even numbers: H.264 with yuv420p needs them).
    fps : float
        Frames per second.
    audio : array (n,) or (n, channels), float, or None
        The audio heard during the video (its first sample at video time 0), at
        ``sample_rate`` Hz; None for a silent video.
    sample_rate : int
        Rate of ``audio`` in Hz.
    overwrite : bool
        Replace an existing ``path``; without it an existing file is an error (nothing the user
        has is overwritten without asking).

    Use as a context manager; :meth:`write` takes (height, width, 3) uint8 frames. On a clean
    exit the video is finished and moved into place; on an exception ffmpeg is stopped and no
    file is left behind.
    """

    def __init__(self, path, width: int, height: int, fps: float, audio=None,
                 sample_rate: int = 44100, overwrite: bool = False) -> None:
        self.path = Path(path)
        if width < 2 or height < 2 or width % 2 or height % 2:
            raise ValueError(f"video size must be even and >= 2, got {width}x{height}")
        if not fps > 0:
            raise ValueError(f"fps must be > 0, got {fps!r}")
        if self.path.exists() and not overwrite:
            raise FileExistsError(f"{self.path} exists; choose another --out or pass "
                                  "--overwrite")
        self.width, self.height, self.fps = int(width), int(height), float(fps)
        self.frames_written = 0
        self._ffmpeg = find_ffmpeg()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._tmpdir = tempfile.TemporaryDirectory(prefix=".live_julia_", dir=self.path.parent)
        self._tmp_out = Path(self._tmpdir.name) / ("video" + (self.path.suffix or ".mp4"))
        self._stderr = open(Path(self._tmpdir.name) / "ffmpeg.log", "w+b")  # noqa: SIM115
        cmd = [self._ffmpeg, "-hide_banner", "-loglevel", "error", "-nostdin", "-y",
               "-f", "rawvideo", "-pix_fmt", "rgb24", "-s", f"{self.width}x{self.height}",
               "-r", repr(self.fps), "-i", "pipe:0"]
        if audio is not None:
            wav = Path(self._tmpdir.name) / "audio.wav"
            sf.write(wav, np.asarray(audio, dtype=np.float32), int(sample_rate),
                     subtype="FLOAT")
            cmd += ["-i", str(wav), "-c:a", "aac", "-b:a", "192k"]
        cmd += ["-c:v", "libx264", "-preset", "veryfast", "-crf", "20", "-pix_fmt", "yuv420p",
                "-movflags", "+faststart", str(self._tmp_out)]
        try:
            self._proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                                          stderr=self._stderr)
        except OSError as exc:
            self._cleanup()
            raise VideoError(f"cannot start ffmpeg ({self._ffmpeg}): {exc}") from None

    def __enter__(self) -> VideoWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()

    def write(self, frame: np.ndarray) -> None:
        """Append one frame: (height, width, 3) uint8, top row first."""
        if frame.shape != (self.height, self.width, 3) or frame.dtype != np.uint8:
            raise ValueError(f"frame must be ({self.height}, {self.width}, 3) uint8, got "
                             f"{frame.shape} {frame.dtype}")
        try:
            self._proc.stdin.write(np.ascontiguousarray(frame).data)
        except (BrokenPipeError, OSError):
            self._proc.wait()
            raise self._failure("ffmpeg stopped reading frames") from None
        self.frames_written += 1

    def close(self) -> Path:
        """Finish encoding and move the video into place; returns its path."""
        try:
            self._proc.stdin.close()
        except (BrokenPipeError, OSError):
            pass
        code = self._proc.wait()
        if code != 0:
            err = self._failure(f"ffmpeg exited with status {code}")
            self._cleanup()
            raise err
        os.replace(self._tmp_out, self.path)
        self._cleanup()
        return self.path

    def abort(self) -> None:
        """Stop ffmpeg and leave no output behind."""
        if self._proc.poll() is None:
            self._proc.kill()
        try:
            self._proc.stdin.close()
        except (BrokenPipeError, OSError):
            pass
        self._proc.wait()
        self._cleanup()

    def _failure(self, what: str) -> VideoError:
        self._stderr.flush()
        self._stderr.seek(0)
        tail = self._stderr.read().decode("utf-8", "replace").strip()[-_STDERR_TAIL:]
        return VideoError(f"{what} while writing {self.path}" + (f": {tail}" if tail else ""))

    def _cleanup(self) -> None:
        if not self._stderr.closed:
            self._stderr.close()
        self._tmpdir.cleanup()
