"""StructureState and SlowState (fractalsync_tracking.slow_state): validation with errors that
name the field, immutability, and the JSON round trip (hypothesis), against the contract."""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path

import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from fractalsync_tracking.beat_state import BeatClockState
from fractalsync_tracking.slow_state import (
    HORIZONS_BEATS,
    SECTION_LABELS,
    SlowState,
    StructureState,
)

CONTRACT = json.loads((Path(__file__).parent.parent / "contracts" / "v1.json").read_text())

unit = st.floats(0.0, 1.0, allow_nan=False)


@st.composite
def section_probs(draw):
    """8 probabilities summing to 1 (a normalised draw; all mass on one label sometimes)."""
    if draw(st.booleans()):
        k = draw(st.integers(0, 7))
        return [1.0 if i == k else 0.0 for i in range(8)]
    w = draw(st.lists(st.floats(1e-6, 1e6), min_size=8, max_size=8))
    return [x / math.fsum(w) for x in w]


beat_states = st.builds(
    lambda t, spb, ph, n, conf, db, bpb, pos: BeatClockState(
        t, spb, ph, n, conf, db, min(pos, bpb), bpb),
    st.floats(-1e6, 1e6), st.floats(1e-3, 10.0), st.floats(0.0, 1.0, exclude_max=True),
    st.integers(0, 10**9), unit, unit, st.integers(1, 16), st.integers(1, 16),
)
structures = st.builds(StructureState, section_probs(),
                       st.lists(unit, min_size=5, max_size=5))
features = st.none() | st.lists(st.floats(-1e30, 1e30), min_size=7, max_size=7)


def test_labels_and_horizons_are_the_contracts():
    assert list(SECTION_LABELS) == CONTRACT["sections"]["labels"]
    assert list(HORIZONS_BEATS) == CONTRACT["hazard"]["horizons_beats"]
    assert [f.name for f in dataclasses.fields(StructureState)] == \
        CONTRACT["state_bus"]["StructureState"]
    assert [f.name for f in dataclasses.fields(SlowState)] == CONTRACT["state_bus"]["SlowState"]


def test_neutral():
    s = StructureState.neutral()
    assert s.section_probs == (1 / 8,) * 8 and s.hazard_probs == (0.0,) * 5
    assert s.label == "silence"  # a tie: the first label in contract order
    assert StructureState.from_json(s.to_json()) == s


@settings(max_examples=60, deadline=None)
@given(sp=section_probs(), hp=st.lists(unit, min_size=5, max_size=5))
@example(sp=[1.0] + [0.0] * 7, hp=[0.0, 0.0, 0.0, 0.0, 1.0])
def test_structure_round_trip(sp, hp):
    s = StructureState(np.array(sp), hp)  # any sequence of numbers; stored as float tuples
    assert type(s.section_probs) is tuple and all(type(v) is float for v in s.section_probs)
    assert s.label == SECTION_LABELS[int(np.argmax(sp))]
    text = s.to_json()
    assert json.loads(text) == {"section_probs": list(s.section_probs),
                                "hazard_probs": list(s.hazard_probs)}
    back = StructureState.from_json(text)
    assert back == s and back.to_json() == text
    assert StructureState.from_dict(s.to_dict()) == s
    with pytest.raises(dataclasses.FrozenInstanceError):
        s.hazard_probs = (0.0,) * 5


@settings(max_examples=60, deadline=None)
@given(beat=beat_states, structure=structures, feats=features)
@example(beat=BeatClockState(0.0, 0.5, 0.0, 0, 0.0, 0.0, 1, 4),
         structure=StructureState.neutral(), feats=[-120.0] * 4 + [0.0] * 3)
def test_slow_state_round_trip(beat, structure, feats):
    s = SlowState(beat, structure, feats)
    text = s.to_json()
    data = json.loads(text)
    assert list(data) == ["beat", "structure", "features"]
    assert list(data["beat"]) == CONTRACT["state_bus"]["BeatClockState"]
    back = SlowState.from_json(text)
    assert back == s and back.to_json() == text
    assert back.t_sec == beat.t_sec
    if feats is not None:
        assert s.features == tuple(float(v) for v in feats)
    assert hash(back) == hash(s)  # immutable, usable as a key


@pytest.mark.parametrize(
    "sp, hp, exc, match",
    [
        ([0.125] * 7, [0.0] * 5, ValueError, "section_probs must have 8 values"),
        ([0.125] * 8, [0.0] * 6, ValueError, "hazard_probs must have 5 values"),
        ([0.2] * 8, [0.0] * 5, ValueError, "sum to 1"),
        ([float("nan")] + [0.125] * 7, [0.0] * 5, ValueError, r"section_probs\[0\]"),
        ([0.125] * 8, [0.0, 0.0, float("inf"), 0.0, 0.0], ValueError, r"hazard_probs\[2\]"),
        ([0.125] * 8, [0.0, 0.0, 0.0, 1.5, 0.0], ValueError, r"hazard_probs\[3\]"),
        ([1.125, -0.125] + [0.0] * 6, [0.0] * 5, ValueError, r"section_probs\[0\]"),
        ([True] + [0.0] * 7, [0.0] * 5, TypeError, r"section_probs\[0\] must be a number"),
        (["0.125"] * 8, [0.0] * 5, TypeError, "must be a number"),
        ("abcdefgh", [0.0] * 5, TypeError, "section_probs must be a sequence"),
        ([0.125] * 8, 0.0, TypeError, "hazard_probs must be a sequence"),
    ],
)
def test_structure_validation(sp, hp, exc, match):
    with pytest.raises(exc, match=match):
        StructureState(sp, hp)


def test_slow_state_validation():
    beat, structure = BeatClockState(1.0, 0.5, 0.0, 0, 0.5, 0.0, 1, 4), StructureState.neutral()
    with pytest.raises(TypeError, match="beat must be a BeatClockState"):
        SlowState(beat.to_dict(), structure)
    with pytest.raises(TypeError, match="structure must be a StructureState"):
        SlowState(beat, structure.to_dict())
    for bad in ([float("nan")] * 7, [0.0] * 6 + [float("inf")]):
        with pytest.raises(ValueError, match="features must be finite"):
            SlowState(beat, structure, bad)
    assert SlowState(beat, structure).features is None


@pytest.mark.parametrize(
    "text, match",
    [
        ("not json", "not a JSON document"),
        ("[1, 2]", "expected a JSON object"),
        ('{"beat": {}, "structure": {}}', "expected keys"),
        ('{"beat": 1, "structure": {}, "features": null}', "beat must be an object"),
        ('{"beat": {}, "structure": {}, "features": null, "x": 1}', "expected keys"),
    ],
)
def test_slow_state_from_json_errors(text, match):
    with pytest.raises(ValueError, match=match):
        SlowState.from_json(text)


@pytest.mark.parametrize(
    "text, match",
    [
        ("", "not a JSON document"),
        ('{"section_probs": [1, 0, 0, 0, 0, 0, 0, 0]}', "expected keys"),
        ('{"section_probs": [1, 0, 0, 0, 0, 0, 0, 0], "hazard_probs": [0, 0]}',
         "hazard_probs must have 5"),
    ],
)
def test_structure_from_json_errors(text, match):
    with pytest.raises(ValueError, match=match):
        StructureState.from_json(text)


def test_a_damaged_beat_in_a_slow_state_names_the_field():
    s = SlowState(BeatClockState(1.0, 0.5, 0.25, 3, 0.5, 0.1, 2, 4), StructureState.neutral())
    data = s.to_dict()
    data["beat"]["phase"] = 1.0
    with pytest.raises(ValueError, match="phase"):
        SlowState.from_dict(data)
    data["beat"]["phase"] = 0.25
    data["beat"].pop("spb")
    with pytest.raises(ValueError, match="expected keys"):
        SlowState.from_dict(data)
