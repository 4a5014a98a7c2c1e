"""BeatClockState / BeatEvent: validation, immutability, JSON round-trip, contract field order."""

import dataclasses
import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fractalsync_models.contract import load_contract
from fractalsync_tracking.beat_state import BeatClockState, BeatEvent

finite = st.floats(allow_nan=False, allow_infinity=False, width=64)
unit = st.floats(0.0, 1.0)


@st.composite
def states(draw):
    bpb = draw(st.integers(1, 16))
    return BeatClockState(
        t_sec=draw(finite),
        spb=draw(st.floats(1e-6, 1e6)),
        phase=draw(st.floats(0.0, 1.0, exclude_max=True)),
        beat_count=draw(st.integers(0, 2**62)),
        conf=draw(unit),
        downbeat_prob=draw(unit),
        beat_in_bar=draw(st.integers(1, bpb)),
        beats_per_bar=bpb,
    )


@st.composite
def events(draw):
    bpb = draw(st.integers(1, 16))
    return BeatEvent(
        t_sec=draw(finite),
        beat_count=draw(st.integers(0, 2**62)),
        beat_in_bar=draw(st.integers(1, bpb)),
        beats_per_bar=bpb,
        is_downbeat=draw(st.booleans()),
        conf=draw(unit),
    )


@settings(deadline=None, max_examples=50)
@given(state=states())
def test_state_json_round_trip(state):
    text = state.to_json()
    assert json.loads(text) == state.to_dict()
    back = BeatClockState.from_json(text)
    assert back == state
    assert back.to_json() == text


@settings(deadline=None, max_examples=50)
@given(event=events())
def test_event_json_round_trip(event):
    assert BeatEvent.from_json(event.to_json()) == event


def test_fields_follow_the_contract():
    names = [f.name for f in dataclasses.fields(BeatClockState)]
    assert names == load_contract()["state_bus"]["BeatClockState"]


def good(**kw):
    base = dict(t_sec=1.0, spb=0.5, phase=0.25, beat_count=3, conf=0.9, downbeat_prob=0.1,
                beat_in_bar=2, beats_per_bar=4)
    base.update(kw)
    return base


def test_state_is_frozen_and_has_bpm():
    s = BeatClockState(**good())
    assert s.bpm == 120.0
    with pytest.raises(dataclasses.FrozenInstanceError):
        s.phase = 0.5


@pytest.mark.parametrize(
    "kw,exc,match",
    [
        (dict(phase=1.0), ValueError, "phase"),
        (dict(phase=-0.1), ValueError, "phase"),
        (dict(spb=0.0), ValueError, "spb"),
        (dict(spb=float("inf")), ValueError, "spb"),
        (dict(t_sec=float("nan")), ValueError, "t_sec"),
        (dict(conf=1.5), ValueError, "conf"),
        (dict(downbeat_prob=-0.01), ValueError, "downbeat_prob"),
        (dict(beat_count=-1), ValueError, "beat_count"),
        (dict(beat_count=1.0), TypeError, "beat_count"),
        (dict(beat_in_bar=5), ValueError, "beat_in_bar"),
        (dict(beat_in_bar=0), ValueError, "beat_in_bar"),
        (dict(beats_per_bar=0, beat_in_bar=1), ValueError, "beats_per_bar"),
        (dict(conf="0.5"), TypeError, "conf"),
        (dict(phase=True), TypeError, "phase"),
    ],
)
def test_state_validation(kw, exc, match):
    with pytest.raises(exc, match=match):
        BeatClockState(**good(**kw))


def test_event_validation():
    ok = dict(t_sec=2.0, beat_count=4, beat_in_bar=1, beats_per_bar=4, is_downbeat=True, conf=1.0)
    BeatEvent(**ok)
    with pytest.raises(TypeError, match="is_downbeat"):
        BeatEvent(**{**ok, "is_downbeat": 1})
    with pytest.raises(ValueError, match="beat_in_bar"):
        BeatEvent(**{**ok, "beat_in_bar": 5})
    with pytest.raises(ValueError, match="conf"):
        BeatEvent(**{**ok, "conf": -1.0})


@pytest.mark.parametrize(
    "text,match",
    [
        ("not json", "not a JSON document"),
        ("[1, 2]", "JSON object"),
        ('{"t_sec": 1.0}', "expected keys"),
    ],
)
def test_from_json_errors(text, match):
    with pytest.raises(ValueError, match=match):
        BeatClockState.from_json(text)


def test_from_json_rejects_extra_keys_and_bad_values():
    d = good()
    with pytest.raises(ValueError, match="expected keys"):
        BeatClockState.from_json(json.dumps({**d, "extra": 1}))
    with pytest.raises(ValueError, match="phase"):
        BeatClockState.from_json(json.dumps({**d, "phase": 2.0}))
