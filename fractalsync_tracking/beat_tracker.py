"""Live beat tracking: audio blocks in, :class:`BeatClockState` per 20 ms frame and beats out.

:class:`BeatTracker` composes the slow (analysis) clock of the live path::

    block (any rate, mono or (n, channels))
      -> StreamResampler (soxr HQ, to 22050 Hz mono; bypassed at 22050 Hz)
      -> BeatNetFrontEnd.push (causal 272-dim frames, 50 per second)
      -> BeatNetCRNN.step ([beat, downbeat, no-beat] per frame; or the 3-model ensemble)
      -> ParticleFilter.step (tempo, phase, meter, beats)

Timing.  Every time is stream time: seconds of input consumed, ``samples / sample_rate``.
* The resampler's output sample ``m`` is the input at ``m / 22050`` s (soxr removes its filter
  delay, ``delay_samples`` is added anyway), so stream time is kept through resampling.
* Streaming frame ``i`` equals the batch frame centred on 22050-Hz sample ``i * 441``: it
  describes time ``i / 50`` s.  It is only complete 705 samples (32 ms, the half-window framing
  lag) after that time; that lag is latency, already accounted for by the frame numbering.
* The filter decides a beat ``decision_delay_frames`` after it and publishes the state of the
  frame that many frames back (:class:`~fractalsync_tracking.particle_filter.ParticleFilter`).
So a state with ``t_sec = t`` describes the audio at ``t`` and a beat event at ``t`` is the
audio's beat at ``t``; they arrive ``latency`` later (32 ms framing + soxr's buffering + the
decision delay).  Use :class:`~fractalsync_tracking.phase_predictor.PhasePredictor` to get the
phase at the current time.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from fractalsync_dsp.frontend import HOP, SAMPLE_RATE, BeatNetFrontEnd
from fractalsync_dsp.resample import StreamResampler, check_rate, to_mono

from .beat_state import BeatClockState, BeatEvent
from .particle_filter import FilterConfig, FilterFrame, ParticleFilter

__all__ = ["BeatTracker", "EnsembleCRNN", "TrackerOutput", "load_crnn"]


class TrackerOutput(NamedTuple):
    """What one :meth:`BeatTracker.push` produced: one state per completed analysis frame (in
    time order) and the beats decided meanwhile."""

    states: list[BeatClockState]
    events: list[BeatEvent]


class EnsembleCRNN:
    """Several CRNNs stepped together; their probabilities are averaged (a mixture of experts).

    The offline grid combines the models as a product of experts (geometric mean,
    :func:`~fractalsync_tracking.beat_grid.combine_ensemble`); online, without hindsight, that
    sharpening hurts: where the models disagree the geometric mean is near zero and the filter
    reads a missing beat (on the whole Vibe Ace it then tracks 104 instead of 130 BPM).  The
    arithmetic mean keeps every model's beats as evidence.
    """

    def __init__(self, members) -> None:
        self.members = list(members)
        if not self.members:
            raise ValueError("EnsembleCRNN needs at least one member")
        self._probs = np.zeros((len(self.members), 3), np.float32)

    def reset(self) -> None:
        for m in self.members:
            m.reset()

    def step(self, frame, out: np.ndarray) -> np.ndarray:
        for m, row in zip(self.members, self._probs, strict=True):
            m.step(frame, row)
        np.mean(self._probs, axis=0, out=out)
        return out


def load_crnn(model: int | str):
    """``BeatNetCRNN(variant=model)`` for 1, 2, 3; an :class:`EnsembleCRNN` for "ensemble"."""
    from fractalsync_models.crnn import BeatNetCRNN

    if model == "ensemble":
        return EnsembleCRNN(BeatNetCRNN(variant=v) for v in (1, 2, 3))
    if model not in (1, 2, 3):
        raise ValueError(f"model must be 1, 2, 3 or 'ensemble', got {model!r}")
    return BeatNetCRNN(variant=model)


class BeatTracker:
    """Online beat, downbeat and meter tracker for a live stream (see the module docstring).

    Parameters
    ----------
    model : 1, 2, 3 or "ensemble"
        BeatNet weight set (``$FRACTALSYNC_HOME/models/beatnet_m{model}.onnx``, made by
        ``fractalsync-export-beatnet``), or the three combined (:class:`EnsembleCRNN`: more
        accurate — on the synthetic set it avoids model 1's half-tempo readings at 150–174 BPM
        and its 3/4 downbeat errors — at three times the CRNN cost); ignored when ``crnn`` is
        given.
    filter_config : FilterConfig, optional
        Particle-filter parameters (the frame rate must be 50).
    seed : int
        Seed of the particle filter.
    crnn : object with ``step(frame, out) -> (3,)`` and ``reset()``, optional
        A ready CRNN (e.g. a shared ``BeatNetCRNN``) instead of loading ``model``.
    quality : soxr quality of the resampler ("HQ" matches the offline path).
    """

    def __init__(self, model: int = 1, filter_config: FilterConfig | None = None, seed: int = 0,
                 crnn=None, quality: str = "HQ") -> None:
        self._crnn = load_crnn(model) if crnn is None else crnn
        cfg = FilterConfig() if filter_config is None else filter_config
        if not isinstance(cfg, FilterConfig):
            raise TypeError(f"filter_config must be a FilterConfig, got {type(cfg).__name__}")
        fps = SAMPLE_RATE / HOP
        if cfg.fps != fps:
            raise ValueError(f"filter_config.fps must be {fps} (the BeatNet frame rate), "
                             f"got {cfg.fps}")
        self._filter = ParticleFilter(cfg, seed)
        self._front_end = BeatNetFrontEnd()
        self._quality = quality
        self._probs = np.zeros(3, np.float32)
        self.reset()

    def reset(self) -> None:
        """Start a new stream at time 0 (the next push may use any sample rate)."""
        self._crnn.reset()
        self._filter.reset()
        self._front_end.reset()
        self._resampler: StreamResampler | None = None
        self._sample_rate: float | None = None
        self._samples_in = 0

    @property
    def sample_rate(self) -> float | None:
        """Input rate of the current stream (Hz), None before the first push."""
        return self._sample_rate

    @property
    def stream_time(self) -> float:
        """Seconds of input consumed since the last reset."""
        return self._samples_in / self._sample_rate if self._sample_rate else 0.0

    @property
    def frame_period(self) -> float:
        """Seconds between consecutive states (0.02)."""
        return HOP / SAMPLE_RATE

    def push(self, block, sample_rate: float) -> TrackerOutput:
        """Feed the next block of the stream; return the states and beats it completed.

        Parameters
        ----------
        block : array, shape (n,) or (n, channels), n >= 0
            Audio at ``sample_rate``: float32/float64 as is, int16/int32 scaled to [-1, 1].
            Frames first, 1 <= channels <= ``resample.MAX_CHANNELS`` (64): a channels-first
            ``(2, n)`` block raises ValueError (pass ``block.T``).
        sample_rate : float
            Input rate in Hz (finite, > 0), the same for every push of a stream.

        Raises
        ------
        TypeError
            Unsupported dtype or a non-numeric rate.
        ValueError
            NaN/inf samples, a bad shape, a rate <= 0, or a rate differing from the stream's
            (call :meth:`reset` first).  A rejected block leaves the tracker unchanged.
        """
        sr = check_rate(sample_rate, "sample_rate")
        resampler = self._resampler
        if self._sample_rate is None:
            if sr != SAMPLE_RATE:
                resampler = StreamResampler(sr, SAMPLE_RATE, self._quality)
        elif sr != self._sample_rate:
            raise ValueError(f"sample_rate changed from {self._sample_rate} to {sr} Hz within "
                             "a stream; call reset() to start a new stream")
        x = to_mono(block) if resampler is None else resampler.push(block)
        self._resampler = resampler
        self._sample_rate = sr
        self._samples_in += int(np.shape(block)[0])
        return self._run(self._front_end.push(x))

    def _run(self, frames: np.ndarray) -> TrackerOutput:
        states: list[BeatClockState] = []
        events: list[BeatEvent] = []
        for frame in frames:
            p = self._crnn.step(frame, self._probs)
            f = self._filter.step(float(p[0]), float(min(p[1], 1.0 - p[0])))
            if f.ref_frame >= 0:
                states.append(self._state(f))
            if f.emitted:
                events.append(self._event(f))
        return TrackerOutput(states, events)

    def _time(self, frame: float) -> float:
        """Stream time (s) of a (fractional) analysis frame index."""
        delay = self._resampler.delay_samples if self._resampler is not None else 0.0
        return (frame * HOP + delay) / SAMPLE_RATE

    def _state(self, f: FilterFrame) -> BeatClockState:
        return BeatClockState(
            t_sec=self._time(f.ref_frame),
            spb=f.period * HOP / SAMPLE_RATE,
            phase=f.phase,
            beat_count=f.beat_count,
            conf=f.conf,
            downbeat_prob=f.downbeat_prob,
            beat_in_bar=f.beat_in_bar,
            beats_per_bar=f.beats_per_bar,
        )

    def _event(self, f: FilterFrame) -> BeatEvent:
        return BeatEvent(
            t_sec=self._time(f.beat_frame),
            beat_count=f.beat_count,
            beat_in_bar=f.beat_in_bar,
            beats_per_bar=f.beats_per_bar,
            is_downbeat=f.is_downbeat,
            conf=f.conf,
        )
