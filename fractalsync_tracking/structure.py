"""The live structure tracker: the anticipator once per slow step, and the displayed section.

:class:`StructureTracker` is the structure seam of :class:`~fractalsync_tracking.slow_clock.
SlowClock` (see its "Structure seam"). It is an analysis-clock consumer (``on_frames``, handed to
its :class:`~fractalsync_tracking.structure_inputs.SlowStepInputs`), and in :meth:`update
<StructureTracker.update>` it pairs the slow steps completed by the push with the push's beat
states, runs one :meth:`Anticipator.step <fractalsync_models.anticipator.Anticipator.step>` per
step (12.5 Hz, the contract's decimation by 4) and returns the latest :class:`StructureState`.

Display hysteresis (:class:`Hysteresis`, :class:`LabelHysteresis`).  The label a user sees
(``displayed_label``) is not the argmax of each step's ``section_probs`` (that flickers between
close labels). Per slow step ``t``, with ``p_t`` the step's section probabilities:

1. smoothing: ``s_0 = p_0``, ``s_t = s_{t-1} + alpha * (p_t - s_{t-1})`` (an exponential moving
   average; ``alpha = 1`` is no smoothing);
2. the first step displays ``argmax s_0``;
3. afterwards the candidate is ``c = argmax s_t`` (ties: the first in contract order). The step
   *supports* ``c`` when ``c`` is not the displayed label ``d`` and ``s_t[c] - s_t[d] >=
   margin``. The display switches to ``c`` at the ``dwell_steps``-th consecutive step
   supporting the same candidate; a step that does not support it (or supports another
   label) starts the count again;
4. a step with a value outside [0, 1] (NaN and ±inf included: not probabilities) is skipped:
   the smoothing, the count and the display stay as they were (the anticipator never gives
   one: its inputs are sanitized and its outputs are a softmax).

So a displayed label is shown for at least ``dwell_steps`` steps (only the last run of a stream
may be shorter), and a switch comes ``dwell_steps - 1`` steps (plus the smoothing's lag) after
the smoothed probabilities first cross with the margin. ``Hysteresis(alpha=1, margin=0,
dwell_steps=1)`` displays the plain argmax. Defaults: :data:`DEFAULT_HYSTERESIS`.

:func:`structure_timeline` runs an audio array through the exact live path (a ``SlowClock``
with a ``StructureTracker``, blocks of ``block_samples`` at the audio's rate, nothing pushed
after the audio) and returns every slow step's output, the displayed labels and their segments
(:func:`display_segments`). ``fractalsync-structure`` and ``benchmarks/measure_structure.py``
both call it.

Times are stream times (seconds of input), corrected for the pipeline's delays as everywhere
in the project: a step at time ``t`` describes the audio at ``t`` (the analysis frame ending
the step). It is computed from the audio up to ``t`` plus the analysis frame's half window
(705 samples at 22050 Hz, 32 ms) and the resampler's delay, and is published by the first push
that gets that far. Outputs only depend on the audio before that point: pushing more audio
never changes an earlier output, and the block sizes do not matter (tests/test_structure.py).
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
from numba import njit

from fractalsync_dsp.frontend import HOP, SAMPLE_RATE
from fractalsync_models.anticipator import Anticipator
from fractalsync_models.beatnet import ONLINE_MODEL

from .beat_state import BeatClockState
from .particle_filter import FilterConfig
from .slow_clock import SlowClock
from .slow_state import HORIZONS_BEATS, SECTION_LABELS, StructureState
from .structure_inputs import DECIMATION, SlowStepInputs

__all__ = [
    "DEFAULT_HYSTERESIS", "RATE_HZ", "DisplaySegment", "Hysteresis", "LabelHysteresis",
    "StructureStep",
    "StructureTimeline", "StructureTracker", "display_segments", "structure_timeline",
]  # fmt: skip

#: Slow steps per second: analysis frames (50 Hz) decimated by 4 (``contracts/v1.json``).
RATE_HZ = SAMPLE_RATE / HOP / DECIMATION
_N_LABELS = len(SECTION_LABELS)
_N_HORIZONS = len(HORIZONS_BEATS)


# --------------------------------------------------------------------------- hysteresis


@dataclass(frozen=True)
class Hysteresis:
    """Parameters of the display hysteresis (module docstring).

    alpha : float in (0, 1]
        Weight of the newest step in the moving average of the section probabilities
        (1 = no smoothing; 0.5 averages over ~2 steps, 160 ms).
    margin : float in [0, 1)
        How much more smoothed probability the candidate needs than the displayed label.
    dwell_steps : int >= 1
        Consecutive supporting slow steps (80 ms each) before the display switches.
    """

    alpha: float = 0.5
    margin: float = 0.4
    dwell_steps: int = 2

    def __post_init__(self) -> None:
        for name, lo, hi, lo_open in (("alpha", 0.0, 1.0, True), ("margin", 0.0, 1.0, False)):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
                raise ValueError(f"Hysteresis.{name} must be a finite number, got {v!r}")
            ok = (lo < v <= hi) if lo_open else (lo <= v < hi)
            if not ok:
                interval = "(0, 1]" if lo_open else "[0, 1)"
                raise ValueError(f"Hysteresis.{name} must be in {interval}, got {v!r}")
        d = self.dwell_steps
        if isinstance(d, bool) or not isinstance(d, (int, np.integer)) or d < 1:
            raise ValueError(f"Hysteresis.dwell_steps must be an int >= 1, got {d!r}")


#: The defaults: alpha 0.5, margin 0.4, 2 steps (160 ms). A switch needs the smoothed probability
#: of the new label 0.4 above the shown one on 2 consecutive steps: ~0.2 s after the model's
#: probabilities cross (inside HR.5F's ±0.5 s window), and a blip of one step never shows.
#: Chosen on development songs (generator seeds 4000-4011, disjoint from the models' training
#: seeds 0..199 and from the evaluation's 5000..), maximising the mean of HR.5F and HR3F of the
#: displayed segments. With the model of sha256 3aa956fd, over alpha {1, 0.5, 0.35} x margin
#: {0.1, 0.2, 0.3} x dwell {2, 3, 4}, plus margin 0.4 at alpha {1, 0.5}: plain argmax (1, 0, 1)
#: gave HR.5F 0.54 / HR3F 0.54 (12.2 label changes per minute for 4.3 true boundaries), this
#: setting 0.78 / 0.84 (5.5 per minute) at a median lag of 0.23 s and accuracy 0.917 (argmax
#: 0.932), the former default (0.5, 0.2, 3) 0.76 / 0.81; margins 0.3-0.4 formed a plateau (mean
#: 0.80-0.81), alpha 0.35 or dwell 4 added lag (>= 0.37 s) that cost HR.5F; on the FluidSynth
#: renditions it was also the best of three settings tried (HR3F 0.51 against 0.47). With the
#: model that replaced it (sha256 8cd620d2), over alpha {1, 0.5} x margin {0.2, 0.3, 0.4} x
#: dwell {2, 3}: still the best, HR.5F 0.83 / HR3F 0.90 (5.3 per minute) at 0.24 s and accuracy
#: 0.967 (argmax 0.61 / 0.61 and 0.978; the former default 0.83 / 0.87). Re-tune a new model
#: with the grid (20-60 s per setting on 2 cores, depending on their load), then set the best
#: one here::
#:
#:     mkdir -p /tmp/tune && for a in 1 0.5 0.35; do for m in 0.1 0.2 0.3 0.4; do \
#:       for d in 2 3 4; do .venv/bin/python benchmarks/measure_structure.py --seeds 4000:4012 \
#:       --renditions numpy --no-demo --alpha $a --margin $m --dwell $d \
#:       --json /tmp/tune/a${a}_m${m}_d${d}.json > /dev/null; done; done; done
#:     .venv/bin/python -c "import glob, json; r = sorted(((s['hr05f_display'] + \
#:       s['hr3f_display']) / 2, f, s['acc8_display'], s['lag_display']) for f in \
#:       glob.glob('/tmp/tune/*.json') for s in [json.load(open(f))['numpy']]); \
#:       [print(f'{m:.3f} {f} acc8 {a:.3f} lag {g:.2f} s') for m, f, a, g in r[-8:]]"
DEFAULT_HYSTERESIS = Hysteresis()


@njit(cache=True, nogil=True)
def _hysteresis_step(probs, smoothed, state, alpha, margin, dwell_steps):
    """One step of the display rule (module docstring), in place.

    probs (L,) float64 the step's probabilities; smoothed (L,) float64 ``s_{t-1}``, becomes
    ``s_t``; state (3,) int64 ``[displayed (-1 before the first step), candidate (-1: none),
    consecutive supporting steps]``. A step with a value outside [0, 1] (NaN, ±inf included)
    is skipped: nothing changes. Returns the displayed label (``state[0]``).
    """
    n = probs.shape[0]
    for i in range(n):
        if not 0.0 <= probs[i] <= 1.0:
            return state[0]
    if state[0] < 0:
        smoothed[:] = probs
    else:
        for i in range(n):
            smoothed[i] += alpha * (probs[i] - smoothed[i])
    c = 0
    for i in range(1, n):
        if smoothed[i] > smoothed[c]:  # ties: the first
            c = i
    d = state[0]
    if d < 0:
        state[0] = c
    elif c != d and smoothed[c] - smoothed[d] >= margin:
        state[2] = state[2] + 1 if c == state[1] else 1
        state[1] = c
        if state[2] >= dwell_steps:
            state[0], state[1], state[2] = c, -1, 0
    else:
        state[1], state[2] = -1, 0
    return state[0]


class LabelHysteresis:
    """The displayed label of a stream of section distributions (the rule of the module
    docstring with the parameters of ``params``; a private numba kernel, compiled or loaded
    from numba's cache when the object is made, never on :meth:`update`).

    :meth:`update` takes one step's ``(8,)`` probabilities and returns the displayed label's
    index; ``displayed`` is that index (-1 before the first step); :meth:`reset` starts over.
    """

    def __init__(self, params: Hysteresis = DEFAULT_HYSTERESIS) -> None:
        if not isinstance(params, Hysteresis):
            raise TypeError(f"params must be a Hysteresis, got {type(params).__name__}")
        self.params = params
        self._args = (float(params.alpha), float(params.margin), int(params.dwell_steps))
        self._probs = np.zeros(_N_LABELS, np.float64)
        self._smoothed = np.zeros(_N_LABELS, np.float64)
        self._state = np.zeros(3, np.int64)
        self.reset()
        self.update(self._smoothed)  # compile or load the kernel now (all zeros: a valid step)
        self.reset()

    def reset(self) -> None:
        """Forget the stream: no label displayed, no smoothing history."""
        self._smoothed[:] = 0.0
        self._state[:] = (-1, -1, 0)

    @property
    def displayed(self) -> int:
        """Index of the displayed label (-1 before the first step)."""
        return int(self._state[0])

    @property
    def smoothed(self) -> np.ndarray:
        """Copy of the smoothed probabilities ``s_t`` (8,) float64 (zeros before any step)."""
        return self._smoothed.copy()

    def update(self, probs) -> int:
        """Advance one slow step with its section probabilities ``probs`` (8,) real numbers
        (the anticipator's softmax). A step with a value outside [0, 1], NaN or ±inf is skipped
        (module docstring). Returns the displayed label's index (-1 while no valid step came).

        Raises ValueError for another shape, TypeError for values that are not real numbers.
        """
        a = np.asarray(probs)
        if a.shape != (_N_LABELS,):
            raise ValueError(f"probs: expected shape ({_N_LABELS},), got {a.shape}")
        if a.dtype.kind not in "fiub":
            raise TypeError(f"probs: expected real numbers, got dtype {a.dtype}")
        np.copyto(self._probs, a, casting="unsafe")
        return int(_hysteresis_step(self._probs, self._smoothed, self._state, *self._args))


# --------------------------------------------------------------------------- tracker


class StructureStep(NamedTuple):
    """One slow step of a :class:`StructureTracker`: ``time`` (s, stream time),
    ``section_probs`` (8,) and ``hazard_probs`` (5,) float32 arrays, ``label`` the displayed
    label's index after the step (into :data:`SECTION_LABELS`)."""

    time: float
    section_probs: np.ndarray
    hazard_probs: np.ndarray
    label: int


class StructureTracker:
    """The anticipator on the slow clock (module docstring): pass it as ``SlowClock(...,
    structure=StructureTracker())``.

    Parameters
    ----------
    anticipator : Anticipator, optional
        The model (default: :class:`~fractalsync_models.anticipator.Anticipator` with the
        shipped ``anticipator_v1.onnx``). Its recurrent state belongs to this tracker from now
        on (reset with it).
    hysteresis : Hysteresis
        Display hysteresis parameters (default :data:`DEFAULT_HYSTERESIS`).
    history_steps : int >= 0 or None
        How many of the latest :class:`StructureStep` s :attr:`history` keeps (default 0: none;
        None: all, for offline use such as :func:`structure_timeline`).
    tracker_delay_frames : int
        The beat tracker's decision delay (``FilterConfig.decision_delay_frames``, default
        that of the default config); see :class:`SlowStepInputs`.

    Per slow step (``update`` with one step pending): one anticipator step (``step(audio,
    beat, copy=False)``: views of the model's output buffers, copied only into the history), the
    hysteresis kernel, and one immutable ``StructureState`` per ``update`` (of its newest step).
    ``benchmarks/bench_structure.py`` times it.
    """

    def __init__(self, anticipator: Anticipator | None = None,
                 hysteresis: Hysteresis = DEFAULT_HYSTERESIS, *,
                 history_steps: int | None = 0,
                 tracker_delay_frames: int = FilterConfig().decision_delay_frames) -> None:
        if anticipator is None:
            anticipator = Anticipator()
        for name in ("step", "reset"):
            if not callable(getattr(anticipator, name, None)):
                raise TypeError(f"anticipator needs a {name}() method, "
                                f"{type(anticipator).__name__} has none")
        if history_steps is not None and (isinstance(history_steps, bool)
                                          or not isinstance(history_steps, (int, np.integer))
                                          or history_steps < 0):
            raise ValueError(f"history_steps must be an int >= 0 or None, got {history_steps!r}")
        self.anticipator = anticipator
        self._hysteresis = LabelHysteresis(hysteresis)
        self._inputs = SlowStepInputs(tracker_delay_frames)
        self._history: deque[StructureStep] = deque(
            maxlen=None if history_steps is None else int(history_steps))
        self.reset()

    # ----------------------------------------------------------------- the seam

    def on_frames(self, batch) -> None:
        """Analysis-clock consumer: accumulate the frames' features into slow steps."""
        self._inputs.on_frames(batch)

    def reset(self) -> None:
        """Start a new stream: the step inputs, the anticipator's state, the hysteresis, the
        latest state and the history (the analysis clock calls this on its reset)."""
        self._inputs.reset()
        self.anticipator.reset()
        self._hysteresis.reset()
        self._history.clear()
        self._latest: StructureState | None = None
        self._latest_time = math.nan
        self._steps = 0

    def update(self, states: Sequence[BeatClockState]) -> StructureState | None:
        """Run the anticipator on every slow step completed since the last call.

        Parameters
        ----------
        states : sequence of BeatClockState
            Every beat state the tracker emitted since the previous call, in order (what
            ``SlowClock`` passes after each push).

        Returns
        -------
        StructureState or None
            The newest step's state (unchanged if no step completed), None before the first.

        Raises
        ------
        ValueError
            ``states`` are not the tracker's states of the frames pushed (see
            :meth:`SlowStepInputs.take`).
        """
        steps = self._inputs.take(states)
        n = steps.times.shape[0]
        if n == 0:
            return self._latest
        keep = self._history.maxlen != 0
        for i in range(n):
            sec, haz = self.anticipator.step(steps.audio_features[i], steps.beat_features[i],
                                             copy=False)
            label = self._hysteresis.update(sec)
            if keep:
                self._history.append(
                    StructureStep(float(steps.times[i]), sec.copy(), haz.copy(), label))
        self._latest = StructureState(tuple(sec.tolist()), tuple(haz.tolist()))
        self._latest_time = float(steps.times[n - 1])
        self._steps += n
        return self._latest

    # ----------------------------------------------------------------- reads

    @property
    def latest(self) -> StructureState | None:
        """The newest step's state (None before the first step)."""
        return self._latest

    @property
    def latest_time(self) -> float:
        """Stream time (s) of the newest step (NaN before the first)."""
        return self._latest_time

    @property
    def steps(self) -> int:
        """Slow steps run since the last reset."""
        return self._steps

    @property
    def pending_steps(self) -> int:
        """Slow steps the analysis clock completed that the next :meth:`update` will run."""
        return self._inputs.pending

    @property
    def displayed_index(self) -> int:
        """Index of the displayed label after hysteresis (-1 before the first step)."""
        return self._hysteresis.displayed

    @property
    def displayed_label(self) -> str | None:
        """The displayed section label after hysteresis (None before the first step)."""
        d = self._hysteresis.displayed
        return None if d < 0 else SECTION_LABELS[d]

    @property
    def history(self) -> tuple[StructureStep, ...]:
        """The latest ``history_steps`` steps, oldest first."""
        return tuple(self._history)


# --------------------------------------------------------------------------- timeline


class DisplaySegment(NamedTuple):
    """A run of one displayed label: from ``start`` to ``end`` (s, stream time), ``label``."""

    start: float
    end: float
    label: str


def display_segments(times: np.ndarray, labels: np.ndarray, end: float,
                     ) -> tuple[DisplaySegment, ...]:
    """The runs of the displayed label as a user sees them change.

    Parameters
    ----------
    times : (S,) strictly increasing stream times (s) of the slow steps.
    labels : (S,) int displayed label index after each step (into SECTION_LABELS).
    end : stream time (s) where the last run ends (the end of the audio), >= ``times[-1]``.

    Returns one segment per run: it starts at the time of the step that switched to its label
    (the first at ``times[0]``) and ends where the next starts (the last at ``end``); empty
    when ``S == 0``.
    """
    t = np.asarray(times, np.float64)
    lab = np.asarray(labels)
    if t.ndim != 1 or lab.shape != t.shape:
        raise ValueError(f"times and labels must be 1-D of the same length, got {t.shape} and "
                         f"{lab.shape}")
    if t.size == 0:
        return ()
    if not (np.all(np.isfinite(t)) and np.all(np.diff(t) > 0)):
        raise ValueError("times must be finite and strictly increasing")
    if not (math.isfinite(end) and end >= t[-1]):
        raise ValueError(f"end must be finite and >= the last time {t[-1]}, got {end!r}")
    if np.any((lab < 0) | (lab >= _N_LABELS)):
        raise ValueError(f"labels must be indices in [0, {_N_LABELS})")
    starts = np.flatnonzero(np.r_[True, lab[1:] != lab[:-1]])
    stops = [*t[starts[1:]], end]
    return tuple(DisplaySegment(float(t[i]), float(e), SECTION_LABELS[int(lab[i])])
                 for i, e in zip(starts, stops, strict=True))


@dataclass(frozen=True)
class StructureTimeline:
    """Everything the live path gave for one audio signal (:func:`structure_timeline`).

    times : (S,) f8, stream time (s) of each slow step (12.5 Hz: 0.06, 0.14, ... s).
    section_probs : (S, 8) f4, in :data:`SECTION_LABELS` order.
    hazard_probs : (S, 5) f4, for :data:`HORIZONS_BEATS`.
    labels : (S,) i8, displayed label index after each step (hysteresis).
    segments : the displayed label's runs (:func:`display_segments`, ending at ``duration``).
    beats, downbeats : (B,), (D,) f8, the beat tracker's beat events (s) during the audio.
    duration : seconds of audio pushed.
    """

    times: np.ndarray
    section_probs: np.ndarray
    hazard_probs: np.ndarray
    labels: np.ndarray
    segments: tuple[DisplaySegment, ...]
    beats: np.ndarray
    downbeats: np.ndarray
    duration: float

    @property
    def label_names(self) -> tuple[str, ...]:
        """The displayed label of each step, by name."""
        return tuple(SECTION_LABELS[i] for i in self.labels)


def structure_timeline(audio, sample_rate: float, block_samples: int = 1024, *,
                       anticipator: Anticipator | None = None,
                       hysteresis: Hysteresis = DEFAULT_HYSTERESIS,
                       model: int | str = ONLINE_MODEL, seed: int = 0, crnn=None,
                       ) -> StructureTimeline:
    """Run ``audio`` through the live path and return every slow step (module docstring).

    Parameters
    ----------
    audio : array (n,) or (n, channels)
        Samples at ``sample_rate`` (as ``SlowClock.push`` accepts them: float or int PCM;
        NaN/inf are analysed as silence with a warning).
    sample_rate : float
        Hz.
    block_samples : int >= 1
        Samples per push (1024: a typical audio-device block). The result does not depend on it.
    anticipator : Anticipator, optional
        Default: the shipped model (loaded per call: pass one to reuse it; its state is reset).
    hysteresis : Hysteresis
        Display hysteresis (default :data:`DEFAULT_HYSTERESIS`).
    model, seed, crnn
        The beat tracker's BeatNet weights (1, 2, 3, "ensemble"), particle-filter seed and an
        optional ready CRNN, as :class:`SlowClock` takes them (defaults: the live app's).

    Returns
    -------
    StructureTimeline
    """
    if isinstance(block_samples, bool) or not isinstance(block_samples, (int, np.integer)) \
            or block_samples < 1:
        raise ValueError(f"block_samples must be an int >= 1, got {block_samples!r}")
    x = np.asarray(audio)
    if x.ndim not in (1, 2):
        raise ValueError(f"audio must have shape (n,) or (n, channels), got {x.shape}")
    tracker = StructureTracker(anticipator, hysteresis, history_steps=None)
    clock = SlowClock(sample_rate, model=model, seed=seed, structure=tracker, crnn=crnn)
    beats: list[float] = []
    downbeats: list[float] = []
    n = x.shape[0]
    for start in range(0, max(n, 1), int(block_samples)):
        clock.push(x[start:start + int(block_samples)])
        for e in clock.beat_events_since_last_push:
            beats.append(e.t_sec)
            if e.is_downbeat:
                downbeats.append(e.t_sec)
    steps = tracker.history
    times = np.array([s.time for s in steps], np.float64)
    labels = np.array([s.label for s in steps], np.int64)
    sec = np.array([s.section_probs for s in steps], np.float32).reshape(-1, _N_LABELS)
    haz = np.array([s.hazard_probs for s in steps], np.float32).reshape(-1, _N_HORIZONS)
    duration = clock.stream_time
    return StructureTimeline(
        times=times, section_probs=sec, hazard_probs=haz, labels=labels,
        segments=display_segments(times, labels, duration),
        beats=np.array(beats, np.float64), downbeats=np.array(downbeats, np.float64),
        duration=duration,
    )

