"""Beat grid of a file computed causally, exactly as the live path (``fractalsync-beats --online``).

The file is pushed through :class:`~fractalsync_tracking.beat_tracker.BeatTracker` in blocks of
:data:`BLOCK` samples at its own rate, as a live input would arrive, followed by
:data:`TAIL_S` seconds of silence so that beats in the last ~0.2 s (framing lag, resampler
buffering, decision delay) are decided; beats after the end of the file are dropped.  The grid
holds the beats the tracker reported, with the bar positions it decided when it reported them.
``tempo``, ``bpm_alt`` and ``confidence`` summarise them like the offline grid
(:mod:`fractalsync_tracking.beat_grid`), from the same CRNN activations the tracker saw.
"""

from __future__ import annotations

import os
from collections import Counter

import numpy as np

from fractalsync_dsp.audio_io import AudioReader
from fractalsync_models.beatnet import ONLINE_MODEL, ONLINE_RULE, check_model, load_beatnet

from .beat_grid import FPS, BeatGrid, assemble_grid, empty_grid
from .beat_tracker import BeatTracker
from .tempo import dominant_tempo

__all__ = ["BLOCK", "TAIL_S", "online_beat_grid", "online_grid_from_audio"]

#: Samples per push (a typical audio-device block).
BLOCK = 1024
#: Seconds of silence pushed after the file.
TAIL_S = 0.25


class _RecordingCRNN:
    """Wraps a CRNN and keeps a copy of every output row (the activations the tracker sees)."""

    def __init__(self, crnn) -> None:
        self.crnn = crnn
        self.rows: list[np.ndarray] = []
        self._inner_trusted = getattr(crnn, "_step_trusted", None)
        if self._inner_trusted is not None:
            self._step_trusted = self._record_trusted

    def reset(self) -> None:
        self.crnn.reset()
        self.rows.clear()

    def step(self, frame, out=None):
        probs = self.crnn.step(frame, out)
        self.rows.append(np.array(probs, dtype=np.float64))
        return probs

    def _record_trusted(self, frame, out):
        """The tracker's unchecked path (``_step_trusted``), offered when the CRNN has one."""
        self._inner_trusted(frame, out)
        self.rows.append(np.array(out, dtype=np.float64))


def online_grid_from_audio(x: np.ndarray, sample_rate: float, model: int | str = ONLINE_MODEL,
                           seed: int = 0, crnn=None) -> BeatGrid:
    """Causal beat grid of audio samples.

    Parameters
    ----------
    x : array, shape (n,) or (n, channels)
        Audio, frames first (dtype and channel rules of :meth:`BeatTracker.push`).
    sample_rate : float
        Rate of ``x`` in Hz.
    model : 1, 2, 3 or "ensemble"
        BeatNet weights (ignored when ``crnn`` is given).
    seed : int
        Particle-filter seed.
    crnn : optional ready CRNN (see :class:`BeatTracker`).

    Returns
    -------
    BeatGrid with ``mode="online"``; empty (no beats, tempo None, confidence 0) when the tracker
    reported fewer than 2 beats.
    """
    return _grid_from_blocks([np.asarray(x)], sample_rate, model, seed, crnn)


def _grid_from_blocks(blocks, sample_rate: float, model, seed: int, crnn) -> BeatGrid:
    """Push each block of ``blocks`` ((n,) or (n, channels) arrays) in :data:`BLOCK`-sample
    pieces, then :data:`TAIL_S` of silence, and summarise the beats."""
    recorder = _RecordingCRNN(load_beatnet(model, ONLINE_RULE) if crnn is None else crnn)
    tracker = BeatTracker(seed=seed, crnn=recorder)
    events = []
    shape = (0,)
    for x in blocks:
        shape = x.shape
        for start in range(0, x.shape[0], BLOCK):
            events += tracker.push(x[start:start + BLOCK], sample_rate).events
    duration = tracker.stream_time
    tail = np.zeros((int(round(TAIL_S * sample_rate)),) + shape[1:], np.float32)
    for start in range(0, tail.shape[0], BLOCK):
        events += tracker.push(tail[start:start + BLOCK], sample_rate).events
    events = [e for e in events if 0.0 <= e.t_sec < duration]
    if len(events) < 2:
        return empty_grid("online")
    times = np.array([e.t_sec for e in events])
    act = np.array(recorder.rows)[:, :2]
    beat_act = np.minimum(act.sum(axis=1), 1.0)
    frames = np.minimum(np.round(times * FPS).astype(np.int64), len(beat_act) - 1)
    meter = Counter(e.beats_per_bar for e in events).most_common(1)[0][0]
    return assemble_grid(times, np.array([e.beat_in_bar for e in events]), meter, beat_act,
                         frames, dominant_tempo(beat_act, FPS).bpm, "online")


def online_beat_grid(path: str | os.PathLike, model: int | str = ONLINE_MODEL,
                     seed: int = 0) -> BeatGrid:
    """Causal beat grid of an audio file (see the module docstring).

    The file is decoded block by block on a background thread (:class:`AudioReader` read-ahead)
    while the tracker runs, so memory stays bounded on long files and decoding overlaps
    tracking; the result equals :func:`online_grid_from_audio` of the whole decoded file.

    ``model``: 1, 2, 3 or "ensemble" (see :class:`BeatTracker`).  Raises
    :class:`fractalsync_dsp.audio_io.AudioLoadError` for an unreadable file, ValueError for a bad
    ``model``.
    """
    check_model(model)
    with AudioReader(path) as reader:
        return _grid_from_blocks(reader.blocks(read_ahead=4), reader.sample_rate, model, seed,
                                 None)
