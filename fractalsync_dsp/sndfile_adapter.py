"""libsndfile, through soundfile's binding: the one module that calls soundfile.

`SndFile` opens a file for reading float32 frames and reads them straight into caller-owned
buffers. It uses soundfile's private cffi handles (``soundfile._snd``, ``soundfile._ffi``,
``SoundFile._file``) and reads libsndfile's header log (``SoundFile.extra_info``), which is
why pyproject.toml bounds soundfile to the tested minor versions (``>=0.12,<0.15``; the
installed one is 0.14.0). Any change of soundfile's internals only touches this module.
"""

from __future__ import annotations

import math
import os
import re

import numpy as np
import soundfile as sf
from soundfile import _ffi, _snd

__all__ = ["SndFile", "SndfileError"]

_SAMPLE_BYTES = {"PCM_S8": 1, "PCM_U8": 1, "PCM_16": 2, "PCM_24": 3, "PCM_32": 4,
                 "FLOAT": 4, "DOUBLE": 8, "ULAW": 1, "ALAW": 1}
"""Bytes per sample of the uncompressed subtypes (others: compressed, no fixed size)."""

_DATA_CHUNK = re.compile(r"^\s*(?:data|SSND|Data Size)\s*:\s*(\d+) \(should be (\d+)\)", re.M)
"""libsndfile's log line for a sample-data chunk whose declared size (group 1) differs from
what the file holds (group 2): WAV/WAVEX ``data``, AIFF ``SSND``, AU ``Data Size``."""

_UNKNOWN_SIZE = 0xFFFFFFFF
"""Chunk size written by streaming encoders that do not know the length: not a truncation."""


class SndfileError(Exception):
    """libsndfile could not open or decode a file; the message is libsndfile's diagnosis."""


class SndFile:
    """A file opened by libsndfile for reading float32 frames.

    Parameters
    ----------
    path : str
        The file to open.

    Attributes
    ----------
    sample_rate : int
        Hz.
    channels : int
        Channels per frame.
    frames : int
        libsndfile's frame count at opening: for a WAV/AIFF/AU file whose sample data is cut
        short, the frames actually present; for MP3 an estimate for some files.
    declared_frames : int
        The frame count the header declares: `frames`, or more when libsndfile's log shows a
        sample-data chunk (WAV/WAVEX ``data``, AIFF ``SSND``, AU ``Data Size``) declared
        longer than the file holds. Exact for uncompressed subtypes (the missing bytes over
        the frame size); estimated in proportion to the bytes for compressed ones (ADPCM,
        GSM, ...). A chunk size of 0xFFFFFFFF (length unknown to a streaming writer) counts
        as no declaration.

    Raises
    ------
    SndfileError
        If libsndfile cannot open the file (message without soundfile's path prefix).
    """

    def __init__(self, path: str) -> None:
        raw = os.fsencode(path)  # soundfile encodes a str strictly: a name that is not valid
        try:  # UTF-8 (an undecodable byte, held as a surrogate escape) would fail
            self._file = sf.SoundFile(raw)
        except (sf.SoundFileError, RuntimeError) as exc:
            text = str(exc)
            prefix = f"Error opening {raw!r}: "
            raise SndfileError(text[len(prefix):] if text.startswith(prefix) else text) from exc
        self.sample_rate = int(self._file.samplerate)
        self.channels = int(self._file.channels)
        self.frames = int(self._file.frames)
        self.declared_frames = _declared_frames(
            self._file.extra_info, self.frames, self.channels, self._file.subtype
        )

    @property
    def closed(self) -> bool:
        return bool(self._file.closed)

    def close(self) -> None:
        self._file.close()

    def read_into(self, block: np.ndarray) -> int:
        """Decode the next ``len(block)`` frames into ``block`` and return how many were read
        (fewer only at the end of the file; 0 there).

        ``block``: C-contiguous float32 ``(k, channels)``. Integer PCM is scaled to [-1, 1)
        (divided by 2**(bits-1)), float data is as stored. This is libsndfile's
        ``sf_readf_float`` called directly rather than through ``SoundFile.read``, which seeks
        after every call: libsndfile's MP3 decoder restarts on each seek, so MP3 blocks read
        that way differ from a whole-file read (by up to 0.5 in a test signal), while these
        reads give the same samples for any block size. cffi releases the GIL for the call.

        Raises SndfileError with libsndfile's message if decoding fails.
        """
        handle = self._file._file
        n = int(_snd.sf_readf_float(handle, _ffi.from_buffer("float[]", block), block.shape[0]))
        if _snd.sf_error(handle):
            raise SndfileError(_ffi.string(_snd.sf_strerror(handle)).decode("utf-8", "replace"))
        return n


def _declared_frames(log: str, frames: int, channels: int, subtype: str) -> int:
    """`SndFile.declared_frames` from libsndfile's header log (see there)."""
    match = _DATA_CHUNK.search(log)
    if match is None:
        return frames
    declared, present = int(match[1]), int(match[2])
    if declared <= present or declared == _UNKNOWN_SIZE:
        return frames
    frame_bytes = _SAMPLE_BYTES.get(subtype, 0) * channels
    if frame_bytes:  # a partly present last frame is counted once, by the ceiling
        return frames + math.ceil((declared - present) / frame_bytes)
    return max(frames, round(frames * declared / present)) if present else frames
