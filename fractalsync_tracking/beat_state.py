"""The beat clock on the state bus: :class:`BeatClockState` per analysis frame, :class:`BeatEvent`.

Both are immutable and round-trip through JSON.  All times are **stream times** in seconds
(samples consumed divided by the input rate), already corrected for the pipeline's delays, so a
state at ``t_sec`` describes the audio at ``t_sec`` and a beat at ``t_sec`` is the audio's beat
at ``t_sec``.  The field order of :class:`BeatClockState` is ``state_bus.BeatClockState`` of
``contracts/v1.json``.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, fields

__all__ = ["BeatClockState", "BeatEvent"]


def _check_float(name: str, value, lo: float | None = None, hi: float | None = None,
                 hi_open: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a number, got {type(value).__name__}")
    v = float(value)
    if not math.isfinite(v):
        raise ValueError(f"{name} must be finite, got {value!r}")
    if lo is not None and v < lo:
        raise ValueError(f"{name} must be >= {lo}, got {value!r}")
    if hi is not None and (v >= hi if hi_open else v > hi):
        raise ValueError(f"{name} must be {'<' if hi_open else '<='} {hi}, got {value!r}")
    return v


def _check_int(name: str, value, lo: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    if value < lo:
        raise ValueError(f"{name} must be >= {lo}, got {value}")
    return value


class _JsonFields:
    """JSON round trip of a frozen dataclass whose fields are JSON types."""

    def to_dict(self) -> dict:
        """Plain dict of the fields (JSON types)."""
        return asdict(self)

    def to_json(self) -> str:
        """JSON object with exactly the fields; :meth:`from_json` restores an equal object."""
        return json.dumps(self.to_dict())

    @classmethod
    def from_json(cls, text: str):
        """Parse :meth:`to_json` output; ValueError/TypeError name a bad or missing field."""
        try:
            data = json.loads(text)
        except (TypeError, json.JSONDecodeError) as exc:
            raise ValueError(f"{cls.__name__}.from_json: not a JSON document: {exc}") from None
        if not isinstance(data, dict):
            raise ValueError(f"{cls.__name__}.from_json: expected a JSON object")
        names = [f.name for f in fields(cls)]
        if sorted(data) != sorted(names):
            raise ValueError(f"{cls.__name__}.from_json: expected keys {names}, "
                             f"got {sorted(data)}")
        return cls(**data)


@dataclass(frozen=True)
class BeatClockState(_JsonFields):
    """The beat clock at one analysis frame.

    Attributes
    ----------
    t_sec : stream time (s) this state describes.
    spb : seconds per beat (> 0); tempo in BPM is ``60 / spb``.
    phase : position inside the current beat, in [0, 1); 0 is the beat.
    beat_count : beats counted since the stream started (the current beat's index, >= 0).
    conf : confidence in [0, 1] that the clock follows a real beat.
    downbeat_prob : probability in [0, 1] that the current beat is the first of its bar.
    beat_in_bar : position of the current beat in its bar, 1..beats_per_bar.
    beats_per_bar : the meter (>= 1).
    """

    t_sec: float
    spb: float
    phase: float
    beat_count: int
    conf: float
    downbeat_prob: float
    beat_in_bar: int
    beats_per_bar: int

    def __post_init__(self) -> None:
        _check_float("t_sec", self.t_sec)
        if _check_float("spb", self.spb) <= 0:
            raise ValueError(f"spb must be > 0 seconds, got {self.spb!r}")
        _check_float("phase", self.phase, 0.0, 1.0, hi_open=True)
        _check_int("beat_count", self.beat_count, 0)
        _check_float("conf", self.conf, 0.0, 1.0)
        _check_float("downbeat_prob", self.downbeat_prob, 0.0, 1.0)
        _check_int("beats_per_bar", self.beats_per_bar, 1)
        if not 1 <= _check_int("beat_in_bar", self.beat_in_bar, 1) <= self.beats_per_bar:
            raise ValueError(f"beat_in_bar must be in 1..beats_per_bar={self.beats_per_bar}, "
                             f"got {self.beat_in_bar}")

    @property
    def bpm(self) -> float:
        """Tempo in beats per minute."""
        return 60.0 / self.spb


@dataclass(frozen=True)
class BeatEvent(_JsonFields):
    """One beat reported by the tracker.

    Attributes
    ----------
    t_sec : stream time (s) of the beat.
    beat_count : index of this beat (the ``beat_count`` of states inside it).
    beat_in_bar : its position in the bar, 1..beats_per_bar.
    beats_per_bar : the meter when it was decided.
    is_downbeat : True for the first beat of a bar.
    conf : the tracker's confidence when it decided, in [0, 1].
    """

    t_sec: float
    beat_count: int
    beat_in_bar: int
    beats_per_bar: int
    is_downbeat: bool
    conf: float

    def __post_init__(self) -> None:
        _check_float("t_sec", self.t_sec)
        _check_int("beat_count", self.beat_count, 0)
        _check_int("beats_per_bar", self.beats_per_bar, 1)
        if not 1 <= _check_int("beat_in_bar", self.beat_in_bar, 1) <= self.beats_per_bar:
            raise ValueError(f"beat_in_bar must be in 1..beats_per_bar={self.beats_per_bar}, "
                             f"got {self.beat_in_bar}")
        if not isinstance(self.is_downbeat, bool):
            raise TypeError(f"is_downbeat must be a bool, got {type(self.is_downbeat).__name__}")
        _check_float("conf", self.conf, 0.0, 1.0)
