"""Reading audio files into float32 arrays, whole (`load_audio`) or block by block (`AudioReader`).

Every way a file can fail to give audio (missing, a directory, unreadable, empty, corrupt,
unsupported format, not audio at all, a decoding error part-way through) raises the same
exception type, `AudioLoadError`, whose message names the path and the reason. `load_audio` is
`AudioReader.blocks` with the default block size concatenated, so both apply exactly the same
checks and give the same samples, errors and warnings.

Two defects are repaired or read around rather than refused, each with one warning per file,
issued when the end of the file is reached (on the thread that iterates the blocks):

- NaN, +-inf or huge samples (possible in float files) become silence (0.0), by the repair
  rule of :mod:`fractalsync_dsp.sample_format`; one `NonFiniteAudioWarning` gives the file's
  total count.
- A file that ends before its header says (a WAV/AIFF/AU data chunk cut short, an MP3 file
  shorter than its header's frame count) is read up to where its data ends; one
  `TruncatedAudioWarning` gives the declared and the read frame counts. A file cut inside its
  header cannot be opened (`AudioLoadError`, naming the file's size); a FLAC file cut short
  fails part-way (`AudioLoadError`). An OGG file cut short cannot be told from a short one
  (libsndfile counts its frames from the last page present) and is read without a warning.

All calls to libsndfile go through :mod:`fractalsync_dsp.sndfile_adapter`.
"""

from __future__ import annotations

import os
import queue
import threading
import warnings
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np

from fractalsync_dsp.sample_format import as_float32_repaired, warn_non_finite
from fractalsync_dsp.sndfile_adapter import SndFile, SndfileError

__all__ = ["BLOCK_FRAMES", "AudioLoadError", "AudioReader", "TruncatedAudioWarning", "load_audio"]

BLOCK_FRAMES = 65536
"""Default frames per block of `AudioReader.blocks`, also used by `load_audio` (1.5 s at 44.1
kHz): libsndfile then makes the same calls for both, so they agree to the bit (also in their
errors) for every format."""

_POLL_S = 0.05  # how often a blocked queue operation re-checks the other side


class AudioLoadError(ValueError):
    """A file could not be read as audio.

    Subclass of `ValueError` (the file's *content* is not valid input; this also covers
    missing files so that callers need exactly one ``except`` clause). The message is
    ``"cannot load audio from '<path>': <reason>"``; the parts are kept as attributes.

    Attributes
    ----------
    path : str
        The path that was given to `load_audio` / `AudioReader`.
    reason : str
        Why it failed, e.g. ``"No such file or directory"``, ``"is a directory"``,
        ``"file contains no audio frames"``,
        ``"not readable as audio (libsndfile: Format not recognised.; the file has 60 bytes)"``
        or ``"decoding failed after frame 65536 (libsndfile: ...)"``.
    """

    def __init__(self, path: str, reason: str) -> None:
        super().__init__(f"cannot load audio from {path!r}: {reason}")
        self.path = path
        self.reason = reason


class TruncatedAudioWarning(UserWarning):
    """A file ended before its header said; the frames present were read.

    Message: ``"<path>: truncated: header declares <n> frames, read <m>"``.
    """


class _End:
    """End-of-stream marker passed through the read-ahead queue."""


class AudioReader:
    """An open audio file, read as float32 blocks; a context manager.

    Opening checks that the path is a readable file that libsndfile can decode (else
    `AudioLoadError`); :meth:`blocks` checks and repairs every block as it is decoded and
    warns once when it reaches the end of the file (see the module docstring). Use it as
    ``with AudioReader(path) as reader: for block in reader.blocks(): ...``; leaving the
    ``with`` (also by an exception) stops a read-ahead thread and closes the file.

    Parameters
    ----------
    path : str or os.PathLike
        The file to read (any format the installed libsndfile reads; WAV, FLAC, OGG/Vorbis
        and MP3 are tested).

    Attributes
    ----------
    path : str
        The path as given (``os.fspath``).
    sample_rate : int
        The file's sample rate in Hz.
    channels : int
        Channels per frame.
    frames : int
        The frame count libsndfile reports when opening (for a WAV/AIFF/AU file cut short the
        frames present; an estimate for some MP3 files).
    declared_frames : int
        The frame count the file's header declares (see
        :attr:`fractalsync_dsp.sndfile_adapter.SndFile.declared_frames`); reading fewer
        frames than this issues a `TruncatedAudioWarning`.

    Raises
    ------
    TypeError
        If `path` is not a str or os.PathLike.
    AudioLoadError
        If the file is missing, a directory or unreadable, or libsndfile cannot open it
        (corrupt, unsupported, or not audio).
    """

    def __init__(self, path: str | os.PathLike) -> None:
        if not isinstance(path, (str, os.PathLike)):
            raise TypeError(f"path must be a str or os.PathLike, got {type(path).__name__}")
        self.path = os.fspath(path)
        if os.path.isdir(self.path):
            raise AudioLoadError(self.path, "is a directory")
        try:
            with open(self.path, "rb"):
                pass
        except OSError as exc:
            raise AudioLoadError(self.path, exc.strerror or type(exc).__name__) from exc
        try:
            self._file = SndFile(self.path)
        except SndfileError as exc:
            size = os.path.getsize(self.path)
            reason = f"not readable as audio (libsndfile: {exc}; the file has {size} bytes)"
            raise AudioLoadError(self.path, reason) from exc
        self.sample_rate = self._file.sample_rate
        self.channels = self._file.channels
        self.frames = self._file.frames
        self.declared_frames = self._file.declared_frames
        self._frames_read = 0
        self._replaced = 0  # NaN/inf samples replaced by 0.0 so far
        self._at_end = False
        self._reported = False
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def __enter__(self) -> AudioReader:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def close(self) -> None:
        """Stop a read-ahead thread (waiting for it to end), then close the file."""
        self._stop_thread()
        self._file.close()

    def blocks(
        self,
        block_frames: int = BLOCK_FRAMES,
        read_ahead: int = 0,
        transform: Callable[[np.ndarray], Any] | None = None,
    ) -> Iterator[Any]:
        """Decode the file as consecutive blocks (from the start; a second call goes on from
        where the first one stopped).

        Parameters
        ----------
        block_frames : int, > 0
            Frames per block; the last block may be shorter.
        read_ahead : int, >= 0
            0 decodes each block when the caller asks for it. ``k > 0`` decodes on a
            background thread (libsndfile runs without the GIL, so decoding overlaps the
            caller's work on another core) into a queue of at most ``k`` blocks; an error on
            that thread is raised to the caller at the position in the stream where it
            happened. One read-ahead at a time per reader (a second one raises ValueError
            when iterated); the thread starts with the iteration.
        transform : callable, optional
            Applied to each block, in order, before it is yielded; with ``read_ahead > 0`` on
            the background thread, so that its work overlaps the caller's too (e.g. a
            resampler's ``push``). Its exceptions reach the caller like decoding errors.

        Yields
        ------
        np.ndarray, float32, shape (n, channels), C-contiguous, n >= 1 (or ``transform`` of it)
            Integer PCM scaled to [-1, 1) by libsndfile (divided by 2**(bits-1)); float
            files as stored, cast to float32, with NaN/inf/huge samples replaced by 0.0. The
            samples do not depend on `block_frames` (tested for WAV, FLAC, OGG/Vorbis and MP3).

        Warns
        -----
        NonFiniteAudioWarning, TruncatedAudioWarning
            Once per file, when the iteration reaches the end of the file (see the module
            docstring); an iteration stopped early warns about nothing.

        Raises
        ------
        AudioLoadError
            If decoding fails part-way (e.g. a truncated FLAC file) or the file gives no frames.
        ValueError
            For a bad `block_frames` or `read_ahead`, a closed reader, or a second concurrent
            read-ahead.
        TypeError
            For a `transform` that is not callable.
        """
        if isinstance(block_frames, bool) or not isinstance(block_frames, int) or block_frames < 1:
            raise ValueError(f"block_frames must be an int >= 1, got {block_frames!r}")
        if isinstance(read_ahead, bool) or not isinstance(read_ahead, int) or read_ahead < 0:
            raise ValueError(f"read_ahead must be an int >= 0, got {read_ahead!r}")
        if transform is not None and not callable(transform):
            raise TypeError(f"transform must be callable, got {transform!r}")
        if self._file.closed:
            raise ValueError(f"AudioReader({self.path!r}) is closed")
        source = self._decode(block_frames)
        if transform is not None:
            source = map(transform, source)
        if read_ahead > 0:
            source = self._read_ahead(source, read_ahead)
        return self._warn_at_end(source)

    def _decode(self, block_frames: int) -> Iterator[np.ndarray]:
        """The next blocks of the file, each checked and repaired (the one copy of this)."""
        while True:
            block = np.empty((block_frames, self.channels), dtype=np.float32)
            n = self._read_into(block)
            if n == 0:
                if self._frames_read == 0:
                    raise AudioLoadError(self.path, "file contains no audio frames")
                self._at_end = True
                return
            block, replaced = as_float32_repaired(block[:n], self.path, warn=False)
            self._replaced += replaced
            yield block

    def _read_into(self, block: np.ndarray) -> int:
        """Decode into a C-contiguous (k, channels) float32 array (`SndFile.read_into`);
        a decoding error becomes `AudioLoadError` naming the frame it happened after."""
        try:
            n = self._file.read_into(block)
        except SndfileError as exc:
            raise AudioLoadError(
                self.path, f"decoding failed after frame {self._frames_read} (libsndfile: {exc})"
            ) from None
        self._frames_read += n
        return n

    def _warn_at_end(self, source: Iterator[Any]) -> Iterator[Any]:
        """``source``, then, once the end of the file has been reached, this file's warnings
        (once per reader, on the iterating thread)."""
        yield from source
        if not self._at_end or self._reported:
            return
        self._reported = True
        if self._frames_read < self.declared_frames:
            warnings.warn(
                f"{self.path}: truncated: header declares {self.declared_frames} frames, "
                f"read {self._frames_read}",
                TruncatedAudioWarning,
                stacklevel=2,
            )
        if self._replaced:
            warn_non_finite(self.path, self._replaced, self._frames_read * self.channels)

    def _read_ahead(self, source: Iterator[Any], depth: int) -> Iterator[Any]:
        """``source`` run on a background thread through a bounded queue (see :meth:`blocks`)."""
        if self._thread is not None:
            raise ValueError("this AudioReader already has a read-ahead thread")
        items: queue.Queue = queue.Queue(maxsize=depth)
        self._stop.clear()
        self._thread = threading.Thread(
            target=self._produce, args=(source, items),
            name=f"AudioReader({os.path.basename(self.path)})", daemon=True,
        )
        self._thread.start()
        try:
            while True:
                item = self._take(items)
                if item is _End:
                    return
                if isinstance(item, BaseException):
                    raise item
                yield item
        finally:
            self._stop_thread()

    def _produce(self, blocks: Iterator[Any], items: queue.Queue) -> None:
        """Thread body: put every block, then `_End` or the exception that stopped decoding."""
        try:
            for block in blocks:
                if not self._put(items, block):
                    return
            last: object = _End
        except BaseException as exc:  # every failure goes to the consumer
            last = exc
        self._put(items, last)

    def _put(self, items: queue.Queue, item) -> bool:
        """Put unless the consumer has stopped; False if it has."""
        while not self._stop.is_set():
            try:
                items.put(item, timeout=_POLL_S)
                return True
            except queue.Full:
                continue
        return False

    def _take(self, items: queue.Queue):
        """Next queued item; never waits forever on a thread that has ended."""
        while True:
            try:
                return items.get(timeout=_POLL_S)
            except queue.Empty:
                if self._thread is None or not self._thread.is_alive():
                    try:
                        return items.get_nowait()
                    except queue.Empty:
                        raise RuntimeError(
                            f"read-ahead thread for {self.path!r} ended without a result"
                        ) from None

    def _stop_thread(self) -> None:
        thread, self._thread = self._thread, None
        if thread is not None:
            self._stop.set()
            thread.join()


def load_audio(path: str | os.PathLike) -> tuple[np.ndarray, int]:
    """Read a whole audio file with libsndfile (via soundfile's binding).

    Any format the installed libsndfile reads is accepted; WAV, FLAC, OGG/Vorbis and MP3 are
    tested. Integer PCM is scaled to [-1, 1) by libsndfile (divided by 2**(bits-1)); float files
    are returned as stored, cast to float32, with NaN/inf/huge samples replaced by 0.0. This is
    the concatenation of ``AudioReader(path).blocks()`` (same checks, same samples, same errors
    and warnings).

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

    Warns
    -----
    NonFiniteAudioWarning
        Once, with the count, if NaN/inf/huge samples were replaced by 0.0.
    TruncatedAudioWarning
        Once if the file ends before its header says (see the module docstring).

    Raises
    ------
    TypeError
        If `path` is not a str or os.PathLike.
    AudioLoadError
        If the file is missing, a directory or unreadable; if libsndfile cannot open or
        decode it (corrupt, cut inside its header, a FLAC file cut short, unsupported, or not
        audio); or if it holds 0 frames.
    """
    with AudioReader(path) as reader:
        blocks = list(reader.blocks())
    x = blocks[0] if len(blocks) == 1 else np.concatenate(blocks)
    return np.ascontiguousarray(x), reader.sample_rate
