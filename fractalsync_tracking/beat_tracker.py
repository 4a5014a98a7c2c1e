"""Live beat tracking: audio blocks in, :class:`BeatClockState` per 20 ms frame and beats out.

:class:`BeatTracker` is a consumer of the analysis clock
(:class:`~fractalsync_tracking.analysis_clock.AnalysisClock`, which owns the resampler and the
streaming front end)::

    block (any rate, mono or (n, channels))
      -> AnalysisClock (checks once; soxr HQ to 22050 Hz; causal 272-dim frames, 50 per second)
      -> BeatNetModel.step ([beat, downbeat, no-beat] per frame: one weight set or the ensemble,
         from the registry fractalsync_models.beatnet)
      -> ParticleFilter.step (tempo, phase, meter, beats)

The tracker makes its own clock, or joins one shared with other consumers (micro features, the
structure model, a feature ring), which then run on the very same frames.

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

from fractalsync_dsp.frontend import HOP, SAMPLE_RATE
from fractalsync_models.beatnet import ONLINE_MODEL, ONLINE_RULE, load_beatnet

from .analysis_clock import AnalysisClock
from .beat_state import BeatClockState, BeatEvent
from .particle_filter import FilterConfig, FilterFrame, ParticleFilter

__all__ = ["BeatTracker", "TrackerOutput"]


class TrackerOutput(NamedTuple):
    """What one :meth:`BeatTracker.push` produced: one state per completed analysis frame (in
    time order) and the beats decided meanwhile."""

    states: list[BeatClockState]
    events: list[BeatEvent]


class _Consumer(NamedTuple):
    """A consumer of the analysis clock made of two callables."""

    on_frames: object
    reset: object


class BeatTracker:
    """Online beat, downbeat and meter tracker for a live stream (see the module docstring).

    Parameters
    ----------
    model : 1, 2, 3 or "ensemble"
        BeatNet weight set, or the three combined (``fractalsync_models.beatnet``; default
        ``ONLINE_MODEL``); the files are made by ``fractalsync-export-beatnet``. Ignored when
        ``crnn`` is given.
    filter_config : FilterConfig, optional
        Particle-filter parameters (the frame rate must be 50).
    seed : int
        Seed of the particle filter.
    crnn : object with ``step(frame, out) -> (3,)`` and ``reset()``, optional
        A ready CRNN (e.g. a shared ``BeatNetModel``) instead of loading ``model``.
    quality : soxr quality of the resampler of the tracker's own clock ("HQ" matches the
        offline path); ignored when ``clock`` is given.
    clock : AnalysisClock, optional
        A clock shared with other consumers; the tracker registers itself on it. Default: a
        clock of its own.
    """

    def __init__(self, model: int | str = ONLINE_MODEL,
                 filter_config: FilterConfig | None = None, seed: int = 0, crnn=None,
                 quality: str = "HQ", clock: AnalysisClock | None = None) -> None:
        cfg = FilterConfig() if filter_config is None else filter_config
        if not isinstance(cfg, FilterConfig):
            raise TypeError(f"filter_config must be a FilterConfig, got {type(cfg).__name__}")
        fps = SAMPLE_RATE / HOP
        if cfg.fps != fps:
            raise ValueError(f"filter_config.fps must be {fps} (the BeatNet frame rate), "
                             f"got {cfg.fps}")
        if clock is not None and not isinstance(clock, AnalysisClock):
            raise TypeError(f"clock must be an AnalysisClock, got {type(clock).__name__}")
        self._crnn = load_beatnet(model, ONLINE_RULE) if crnn is None else crnn
        # our own models step on the clock's float32 frames unchecked (``_step_trusted``); any
        # other CRNN through its public ``step``
        self._crnn_step = getattr(self._crnn, "_step_trusted", self._crnn.step)
        self._filter = ParticleFilter(cfg, seed)
        self._probs = np.zeros(3, np.float32)
        self._states: list[BeatClockState] = []
        self._events: list[BeatEvent] = []
        self.clock = AnalysisClock(quality) if clock is None else clock
        self._reset_state()
        self.clock.add_consumer(_Consumer(self._on_frames, self._reset_state))

    def reset(self) -> None:
        """Start a new stream at time 0: resets the clock, and with it every consumer of a
        shared clock, this tracker's CRNN state and filter included."""
        self.clock.reset()

    def _reset_state(self) -> None:
        """The tracker's part of a clock reset."""
        self._crnn.reset()
        self._filter.reset()
        self._states = []
        self._events = []

    @property
    def sample_rate(self) -> float | None:
        """Input rate of the current stream (Hz), None before the first push."""
        return self.clock.sample_rate

    @property
    def stream_time(self) -> float:
        """Seconds of input consumed since the last reset."""
        return self.clock.stream_time

    @property
    def frame_period(self) -> float:
        """Seconds between consecutive states (0.02)."""
        return self.clock.frame_period

    def push(self, block, sample_rate: float) -> TrackerOutput:
        """Feed the next block of the stream to the clock; return the states and beats decided
        since the previous :meth:`push` or :meth:`collect`.

        ``block`` ((n,) or (n, channels) audio, any n) and ``sample_rate`` (Hz, fixed within a
        stream) follow :meth:`AnalysisClock.push
        <fractalsync_tracking.analysis_clock.AnalysisClock.push>`, which checks them once and
        raises TypeError/ValueError for bad ones (a rejected block leaves the tracker
        unchanged); NaN and ±inf samples are analysed as silence, with one
        :class:`~fractalsync_dsp.sample_format.NonFiniteAudioWarning` per block giving their
        count.
        """
        self.clock.push(block, sample_rate)
        return self.collect()

    def collect(self) -> TrackerOutput:
        """The states and beats decided since the last call (use it when the shared clock is
        pushed by someone else)."""
        out = TrackerOutput(self._states, self._events)
        self._states = []
        self._events = []
        return out

    def _on_frames(self, batch) -> None:
        """The tracker's work on each batch of the clock: CRNN step and filter step per frame."""
        probs = self._probs
        step = self._crnn_step
        pf = self._filter
        for frame in batch.features:
            step(frame, probs)
            b = float(probs[0])
            f = pf._step_trusted(b, float(min(probs[1], 1.0 - b)))
            if f.ref_frame >= 0:
                self._states.append(self._state(f))
            if f.emitted:
                self._events.append(self._event(f))

    def _state(self, f: FilterFrame) -> BeatClockState:
        return BeatClockState(
            t_sec=self.clock.frame_time(f.ref_frame),
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
            t_sec=self.clock.frame_time(f.beat_frame),
            beat_count=f.beat_count,
            beat_in_bar=f.beat_in_bar,
            beats_per_bar=f.beats_per_bar,
            is_downbeat=f.is_downbeat,
            conf=f.conf,
        )
