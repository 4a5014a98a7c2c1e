"""The structure state and the combined slow state on the state bus.

:class:`StructureState` is what the structure tracker (the anticipator) publishes every 4th
analysis frame (12.5 Hz): ``section_probs`` over the contract's 8 labels and ``hazard_probs``,
P(a section boundary within the next 1, 2, 4, 8, 16 beats). :meth:`StructureState.neutral` is
the state before any structure model has spoken (uniform sections, zero hazard): consumers such
as the controller treat it as "no structure information".

:class:`SlowState` is one publication of the slow clock: the latest beat clock, the latest
structure state and, optionally, the latest micro features (``features``, the 7 values of
``contracts/v1.json`` ``micro_features.names``). The fast clock holds the last one it received.

All three are immutable (frozen dataclasses holding tuples) and round-trip through JSON with the
field names of ``state_bus`` in ``contracts/v1.json``.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass

from .beat_state import BeatClockState

__all__ = ["HORIZONS_BEATS", "SECTION_LABELS", "SlowState", "StructureState"]

#: Section labels in contract order (``contracts/v1.json`` ``sections.labels``).
SECTION_LABELS: tuple[str, ...] = (
    "silence", "intro", "verse", "pre-chorus", "chorus", "bridge", "inst", "outro",
)
#: Hazard horizons in beats (``contracts/v1.json`` ``hazard.horizons_beats``).
HORIZONS_BEATS: tuple[int, ...] = (1, 2, 4, 8, 16)

_PROB_SUM_TOL = 1e-3


def _prob_tuple(name: str, values, n: int) -> tuple[float, ...]:
    if (type(values) is tuple and len(values) == n
            and all(type(v) is float and 0.0 <= v <= 1.0 for v in values)):
        return values  # already what the checks below would build (the structure step's case)
    if isinstance(values, (str, bytes)) or not hasattr(values, "__len__"):
        raise TypeError(f"{name} must be a sequence of {n} numbers, got {type(values).__name__}")
    if len(values) != n:
        raise ValueError(f"{name} must have {n} values, got {len(values)}")
    out = []
    for i, v in enumerate(values):
        if isinstance(v, bool) or not isinstance(v, (int, float)) and not hasattr(v, "__float__"):
            raise TypeError(f"{name}[{i}] must be a number, got {type(v).__name__}")
        f = float(v)
        if not math.isfinite(f) or not 0.0 <= f <= 1.0:
            raise ValueError(f"{name}[{i}] must be a probability in [0, 1], got {v!r}")
        out.append(f)
    return tuple(out)


@dataclass(frozen=True)
class StructureState:
    """Section and boundary-hazard probabilities at one slow step.

    Attributes
    ----------
    section_probs : tuple of 8 floats in [0, 1], summing to 1 (within 1e-3), in the order of
        `SECTION_LABELS`.
    hazard_probs : tuple of 5 floats in [0, 1]: ``hazard_probs[k]`` = P(a section boundary
        within the next ``HORIZONS_BEATS[k]`` beats).
    """

    section_probs: tuple[float, ...]
    hazard_probs: tuple[float, ...]

    def __post_init__(self) -> None:
        sp = _prob_tuple("section_probs", self.section_probs, len(SECTION_LABELS))
        hp = _prob_tuple("hazard_probs", self.hazard_probs, len(HORIZONS_BEATS))
        if abs(sum(sp) - 1.0) > _PROB_SUM_TOL:
            raise ValueError(f"section_probs must sum to 1, got {sum(sp)!r}")
        object.__setattr__(self, "section_probs", sp)
        object.__setattr__(self, "hazard_probs", hp)

    @classmethod
    def neutral(cls) -> StructureState:
        """No structure information: uniform section probabilities, zero hazard."""
        n = len(SECTION_LABELS)
        return cls((1.0 / n,) * n, (0.0,) * len(HORIZONS_BEATS))

    @property
    def label(self) -> str:
        """The most probable section label (ties: the first in contract order)."""
        sp = self.section_probs
        return SECTION_LABELS[max(range(len(sp)), key=sp.__getitem__)]

    def to_dict(self) -> dict:
        """Plain dict with lists of floats (JSON types)."""
        return {"section_probs": list(self.section_probs), "hazard_probs": list(self.hazard_probs)}

    @classmethod
    def from_dict(cls, data) -> StructureState:
        """Inverse of :meth:`to_dict`; ValueError names a missing or extra key."""
        _check_keys(cls.__name__, data, ("section_probs", "hazard_probs"))
        return cls(data["section_probs"], data["hazard_probs"])

    def to_json(self) -> str:
        return json.dumps(self.to_dict())

    @classmethod
    def from_json(cls, text: str) -> StructureState:
        return cls.from_dict(_parse(cls.__name__, text))


@dataclass(frozen=True)
class SlowState:
    """One publication of the slow clock (``state_bus.SlowState`` of the contract).

    Attributes
    ----------
    beat : BeatClockState
        The latest beat clock (its ``t_sec`` is the stream time this state describes).
    structure : StructureState
        The latest structure state (`StructureState.neutral` until a structure model runs).
    features : tuple of 7 floats, or None
        The latest micro features (``rms_db, bass, mid, treble, flux, centroid_hz, onset``).
    """

    beat: BeatClockState
    structure: StructureState
    features: tuple[float, ...] | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.beat, BeatClockState):
            raise TypeError(f"beat must be a BeatClockState, got {type(self.beat).__name__}")
        if not isinstance(self.structure, StructureState):
            raise TypeError("structure must be a StructureState, got "
                            f"{type(self.structure).__name__}")
        if self.features is not None:
            feats = tuple(float(v) for v in self.features)
            if not all(math.isfinite(v) for v in feats):
                raise ValueError("features must be finite")
            object.__setattr__(self, "features", feats)

    @property
    def t_sec(self) -> float:
        """Stream time (s) this state describes (the beat clock's)."""
        return self.beat.t_sec

    def to_dict(self) -> dict:
        """Nested plain dict: ``{"beat": {...}, "structure": {...}, "features": [...] | None}``."""
        return {
            "beat": self.beat.to_dict(),
            "structure": self.structure.to_dict(),
            "features": None if self.features is None else list(self.features),
        }

    @classmethod
    def from_dict(cls, data) -> SlowState:
        """Inverse of :meth:`to_dict`; ValueError/TypeError name what is wrong."""
        _check_keys(cls.__name__, data, ("beat", "structure", "features"))
        beat = data["beat"]
        if not isinstance(beat, dict):
            raise ValueError(f"{cls.__name__}: beat must be an object")
        return cls(BeatClockState.from_json(json.dumps(beat)),
                   StructureState.from_dict(data["structure"]), data["features"])

    def to_json(self) -> str:
        """JSON object; :meth:`from_json` restores an equal state."""
        return json.dumps(self.to_dict())

    @classmethod
    def from_json(cls, text: str) -> SlowState:
        return cls.from_dict(_parse(cls.__name__, text))


def _parse(owner: str, text: str):
    try:
        return json.loads(text)
    except (TypeError, json.JSONDecodeError) as exc:
        raise ValueError(f"{owner}.from_json: not a JSON document: {exc}") from None


def _check_keys(owner: str, data, keys: tuple[str, ...]) -> None:
    if not isinstance(data, dict):
        raise ValueError(f"{owner}: expected a JSON object, got {type(data).__name__}")
    if sorted(data) != sorted(keys):
        raise ValueError(f"{owner}: expected keys {list(keys)}, got {sorted(data)}")
