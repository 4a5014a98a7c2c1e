"""Audio sources of ``fractalsync-serve``: microphone, file (real time or as fast as possible),
raw float32 PCM on stdin.

Every source has the same small interface, used by one thread (the analysis loop):

* ``sample_rate`` (Hz) and ``channels``;
* ``start()`` / ``close()``;
* ``read(out) -> int | None``: copy up to ``len(out)`` samples (rows of ``out``, shape
  ``(n, channels)`` float32) and return how many; 0 when nothing arrived within about 50 ms
  (the caller checks its stop flag and calls again); None at the end of the stream;
* ``wall_time(t) -> float``: the Unix time at which the audio at stream time ``t`` (seconds
  since the source started) was captured or is heard.

Sources and their clocks:

* :class:`MicSource` (``--mic``): PortAudio capture into a
  :class:`~fractalsync_dsp.block_ring.BlockRing` (:class:`~fractalsync_dsp.live_audio.MicInput`).
  ``wall_time``: the earliest ``arrival - samples / rate - input latency`` seen, i.e. the
  capture time of stream time 0 (block arrivals can only be late, never early), slewing up by
  1/1000 of a later estimate per block to follow clock drift.
* :class:`FileSource` (``--audio FILE``): :class:`~fractalsync_dsp.live_audio.FilePlayback`
  paces the file in real time into the ring, playing it on the speakers with ``--play`` (one
  sample clock for both). ``wall_time``: from ``playback_time()``, the stream time being heard.
* :class:`StdinSource` (``--stdin-pcm RATE``): raw float32 little-endian mono samples from a
  pipe, analysed as they arrive (the writer sets the pace); ``wall_time`` as for the mic.
* :class:`FastFileSource` (``--audio FILE --fast``): the file as fast as the analysis runs, no
  real-time pacing (tests, soak runs, batch use); ``wall_time`` is the time of the call.
"""

from __future__ import annotations

import os
import select
import time

import numpy as np

from fractalsync_dsp.block_ring import BlockRing

__all__ = ["FastFileSource", "FileSource", "MicSource", "StdinSource", "load_file"]

_WAIT_S = 0.05
RING_SECONDS = 4.0


def load_file(path: str) -> tuple[np.ndarray, int]:
    """Decode ``path``: (audio (n, channels) float32, rate Hz). ValueError for an empty file."""
    from fractalsync_dsp.audio_io import load_audio

    audio, rate = load_audio(path)
    audio = np.ascontiguousarray(audio, np.float32)
    if audio.ndim == 1:
        audio = audio[:, None]
    if audio.shape[0] == 0:
        raise ValueError(f"{path}: no audio samples")
    return audio, int(rate)


class _ArrivalClock:
    """Unix time of stream time 0 estimated from arrivals (see the module docstring)."""

    def __init__(self) -> None:
        self.origin: float | None = None

    def observe(self, samples_total: int, rate: float, latency: float = 0.0) -> None:
        estimate = time.time() - samples_total / rate - latency
        if self.origin is None or estimate < self.origin:
            self.origin = estimate
        else:
            self.origin += 1e-3 * (estimate - self.origin)

    def wall_time(self, t: float) -> float:
        return (time.time() - t if self.origin is None else self.origin) + t


class _RingReader:
    """Shared read() of the ring-fed sources."""

    ring: BlockRing

    def _read_ring(self, out: np.ndarray, ended: bool) -> int | None:
        n = len(out)
        if self.ring.wait_readable(n, _WAIT_S):
            return self.ring.read(out)
        if ended:
            return self.ring.read(out) if self.ring.available else None
        return 0


class MicSource(_RingReader):
    """``--mic [--device N]``: mono capture at the device's default rate."""

    def __init__(self, device: int | None = None, sample_rate: int | None = None) -> None:
        from fractalsync_dsp.live_audio import MicInput

        self.channels = 1
        self.ring = BlockRing(int(RING_SECONDS * 192000), 1)
        self._mic = MicInput(self.ring, device=device, sample_rate=sample_rate, channels=1)
        self.sample_rate = self._mic.sample_rate
        self._clock = _ArrivalClock()
        self.description = f"microphone (device {device if device is not None else 'default'}," \
                           f" {self.sample_rate} Hz)"

    def start(self) -> None:
        self._mic.start()

    def read(self, out: np.ndarray) -> int | None:
        n = self._read_ring(out, ended=False)
        if n:
            self._clock.observe(self._mic.samples_delivered, self.sample_rate, self._mic.latency)
        return n

    def wall_time(self, t: float) -> float:
        return self._clock.wall_time(t)

    @property
    def dropped_samples(self) -> int:
        return self.ring.dropped_samples

    def close(self) -> None:
        self._mic.close()


class FileSource(_RingReader):
    """``--audio FILE`` in real time; ``play=True`` also plays it (``--play``, ``--device``)."""

    def __init__(self, audio: np.ndarray, rate: int, name: str, play: bool = False,
                 device: int | None = None) -> None:
        from fractalsync_dsp.live_audio import FilePlayback

        self.channels = audio.shape[1]
        self.sample_rate = rate
        self.ring = BlockRing(int(RING_SECONDS * rate), self.channels)
        self._playback = FilePlayback(audio, rate, self.ring, device=device, play=play)
        self.description = f"{name} ({rate} Hz, real time{', playing' if play else ''})"

    def start(self) -> None:
        self._playback.start()

    def read(self, out: np.ndarray) -> int | None:
        return self._read_ring(out, ended=self._playback.finished)

    def wall_time(self, t: float) -> float:
        now_mono, now = time.monotonic(), time.time()
        return now + t - self._playback.playback_time(now_mono)

    @property
    def dropped_samples(self) -> int:
        return self.ring.dropped_samples

    def close(self) -> None:
        self._playback.close()


class FastFileSource:
    """``--audio FILE --fast``: the decoded samples as fast as they are read."""

    def __init__(self, audio: np.ndarray, rate: int, name: str) -> None:
        self._audio = audio
        self.channels = audio.shape[1]
        self.sample_rate = rate
        self._pos = 0
        self.description = f"{name} ({rate} Hz, as fast as possible)"
        self.dropped_samples = 0

    def start(self) -> None:
        pass

    def read(self, out: np.ndarray) -> int | None:
        n = min(len(out), self._audio.shape[0] - self._pos)
        if n <= 0:
            return None
        out[:n] = self._audio[self._pos:self._pos + n]
        self._pos += n
        return n

    def wall_time(self, t: float) -> float:
        return time.time()

    def close(self) -> None:
        pass


class StdinSource:
    """``--stdin-pcm RATE``: raw float32 little-endian mono from a file descriptor (stdin)."""

    def __init__(self, rate: int, fd: int = 0) -> None:
        self.channels = 1
        self.sample_rate = int(rate)
        self._fd = fd
        self._buf = bytearray()
        self._clock = _ArrivalClock()
        self._received = 0  # bytes received
        self._eof = False
        self.description = f"float32 PCM on stdin ({self.sample_rate} Hz, mono)"
        self.dropped_samples = 0

    def start(self) -> None:
        pass

    def read(self, out: np.ndarray) -> int | None:
        """Whole blocks of ``len(out)`` samples as they complete; the rest at the end."""
        want = 4 * len(out)
        if not self._eof and len(self._buf) < want:
            ready, _, _ = select.select([self._fd], [], [], _WAIT_S)
            if ready:
                data = os.read(self._fd, max(want - len(self._buf), 65536))
                if data:
                    self._buf += data
                    self._received += len(data)
                    self._clock.observe(self._received // 4, self.sample_rate)
                else:
                    self._eof = True
        if len(self._buf) < want and not self._eof:
            return 0
        n = min(len(out), len(self._buf) // 4)  # at the end: an incomplete sample is discarded
        if n == 0:
            return None
        out[:n, 0] = np.frombuffer(bytes(self._buf[:4 * n]), dtype="<f4")
        del self._buf[:4 * n]
        return n

    def wall_time(self, t: float) -> float:
        return self._clock.wall_time(t)

    def close(self) -> None:
        pass
