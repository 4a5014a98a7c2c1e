"""fractalsync_tracking: beat/meter tracking (online and offline), state bus, metrics and CLIs.

May use fractalsync_dsp and fractalsync_models.

Offline grid of a file (Viterbi decoding of the BeatNet activations)::

    >>> from fractalsync_tracking import beat_grid
    >>> grid = beat_grid("song.ogg")          # BeatGrid: tempo, beats, downbeats, meter, ...
    >>> grid.to_json()

Live tracking (particle filter), one audio block at a time::

    >>> from fractalsync_tracking import BeatTracker, PhasePredictor
    >>> tracker, clock = BeatTracker(), PhasePredictor()
    >>> out = tracker.push(block, 48000)      # states (BeatClockState per 20 ms) and beat events
    >>> for state in out.states:
    ...     clock.update(state)
    >>> clock.query(now)                      # phase, beat_count, beat_in_bar, next_beat_t

Note: ``fractalsync_tracking.beat_grid`` is the function; the module of the same name is
``importlib.import_module("fractalsync_tracking.beat_grid")``.
"""

from .analysis_thread import AnalysisThread
from .beat_grid import BeatGrid, beat_grid, grid_from_activations
from .beat_state import BeatClockState, BeatEvent
from .beat_tracker import BeatTracker, TrackerOutput
from .display_clock import BeatNow, DisplayClock
from .metrics import (
    beat_f_measure,
    beat_time_errors,
    continuity,
    downbeat_f_measure,
    evaluate,
    trim,
)
from .online_grid import online_beat_grid
from .particle_filter import FilterConfig, ParticleFilter, track_activations
from .phase_predictor import PhasePredictor, PhaseQuery
from .slow_clock import INITIAL_BEAT, SlowClock, StructureSource
from .slow_state import HORIZONS_BEATS, SECTION_LABELS, SlowState, StructureState
from .structure import Hysteresis, StructureTracker, structure_timeline

__all__ = [
    "AnalysisThread",
    "INITIAL_BEAT",
    "SlowClock",
    "StructureSource",
    "Hysteresis",
    "StructureTracker",
    "structure_timeline",
    "HORIZONS_BEATS",
    "SECTION_LABELS",
    "SlowState",
    "StructureState",
    "BeatClockState",
    "BeatEvent",
    "BeatGrid",
    "BeatNow",
    "DisplayClock",
    "BeatTracker",
    "FilterConfig",
    "ParticleFilter",
    "PhasePredictor",
    "PhaseQuery",
    "TrackerOutput",
    "beat_f_measure",
    "beat_grid",
    "beat_time_errors",
    "continuity",
    "downbeat_f_measure",
    "evaluate",
    "grid_from_activations",
    "online_beat_grid",
    "track_activations",
    "trim",
]
