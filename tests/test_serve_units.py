"""fractalsync_serve's pure parts: command schema, rate limiter, levels, serve clock, publisher."""

from __future__ import annotations

import json
import math
import subprocess
import sys

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from fractalsync_serve.commands import (
    FLOOD_CLOSE,
    MAX_MESSAGE_BYTES,
    Command,
    CommandError,
    RateLimiter,
    parse_command,
)
from fractalsync_serve.levels import LEVEL_NAMES, levels
from fractalsync_serve.publisher import Publication, Publisher
from fractalsync_serve.serve_clock import MAX_LATENCY_S, MAX_NUDGE_S, ServeClock
from fractalsync_tracking.beat_state import BeatClockState, BeatEvent
from fractalsync_tracking.slow_state import SECTION_LABELS, SlowState, StructureState

# ---------------------------------------------------------------------------- commands


@pytest.mark.parametrize("text, cmd", [
    ('{"type": "tap"}', Command("tap")),
    ('{"type": "ping"}', Command("ping")),
    ('{"type": "subscribe", "every": 5}', Command("subscribe", 5)),
    ('{"type": "nudge", "ms": -10}', Command("nudge", -10.0)),
    ('{"type": "nudge", "ms": 2.5}', Command("nudge", 2.5)),
    ('{"type": "latency", "ms": 0}', Command("latency", 0.0)),
    ('{"type": "latency", "ms": 2000}', Command("latency", 2000.0)),
])
def test_valid_commands(text, cmd):
    assert parse_command(text) == cmd


@pytest.mark.parametrize("text, why", [
    ("not json", "not valid JSON"),
    ("", "not valid JSON"),
    ("[1, 2]", "must be a JSON object"),
    ('"tap"', "must be a JSON object"),
    ('{"type": "explode"}', "unknown command type"),
    ('{"cmd": "tap"}', "unknown command type"),
    ('{"type": 3}', "unknown command type"),
    ('{"type": "tap", "x": 1}', "unexpected field"),
    ('{"type": "nudge"}', "missing field"),
    ('{"type": "nudge", "ms": "5"}', "must be a number"),
    ('{"type": "nudge", "ms": true}', "must be a number"),
    ('{"type": "nudge", "ms": 101}', "must be in"),
    ('{"type": "nudge", "ms": NaN}', "not valid JSON"),
    ('{"type": "latency", "ms": Infinity}', "not valid JSON"),
    ('{"type": "latency", "ms": -1}', "must be in"),
    ('{"type": "latency", "ms": 1e400}', "must be in"),
    ('{"type": "subscribe", "every": 2.0}', "must be an integer"),
    ('{"type": "subscribe", "every": 0}', "must be in"),
    ('{"type": "subscribe", "every": 1001}', "must be in"),
    ("[" * 2000 + "]" * 2000, "not valid JSON"),
])
def test_invalid_commands_name_the_problem(text, why):
    with pytest.raises(CommandError, match=why):
        parse_command(text)


def test_binary_and_oversized_messages_are_refused():
    with pytest.raises(CommandError, match="binary"):
        parse_command(b'{"type": "tap"}')
    with pytest.raises(CommandError, match="longer than"):
        parse_command('{"type": "tap", "pad": "' + "x" * MAX_MESSAGE_BYTES + '"}')


@given(st.one_of(st.text(max_size=300), st.binary(max_size=50),
                 st.recursive(st.none() | st.booleans() | st.floats() | st.integers()
                              | st.text(max_size=10),
                              lambda c: st.lists(c, max_size=4)
                              | st.dictionaries(st.text(max_size=8), c, max_size=4),
                              max_leaves=12).map(json.dumps)))
@example('{"type": "subscribe", "every": 1e309}')
@example('{"type": "nudge", "ms": -0.0}')
def test_parse_command_only_ever_raises_command_error(text):
    try:
        cmd = parse_command(text)
    except CommandError:
        return
    assert cmd.type in ("subscribe", "tap", "nudge", "latency", "ping")


def test_rate_limiter_allows_the_rate_and_counts_a_flood():
    lim = RateLimiter(rate=10.0, burst=5.0)
    assert all(lim.allow(0.0) for _ in range(5))  # the burst
    assert not lim.allow(0.0) and lim.excess == 1
    assert lim.allow(0.1)  # one token back after 1/rate
    t, allowed = 1.0, 0
    for i in range(1000):  # 10 s at 100 messages/s: about 10 per second get through
        allowed += lim.allow(t + i * 0.01)
    assert 95 <= allowed <= 106
    assert lim.flooding  # 900 refused, forgiven at 10 per second
    lim.allow(1000.0)
    assert not lim.flooding and lim.excess == 0  # forgiven after a quiet spell
    for _ in range(4 + FLOOD_CLOSE - 1):  # the refilled burst, then one short of a flood
        lim.allow(1000.0)
    assert not lim.flooding
    lim.allow(1000.0)
    assert lim.flooding


# ---------------------------------------------------------------------------- levels


@given(st.lists(st.floats(-200, 50), min_size=4, max_size=4), st.floats(0, 1),
       st.floats(0, 0.999999), st.floats(0, 1))
def test_levels_are_in_unit_range(dbs, onset, phase, conf):
    feats = (*dbs, 0.1, 1000.0, onset)
    out = levels(feats, phase, conf)
    assert len(out) == len(LEVEL_NAMES)
    assert all(0.0 <= v <= 1.0 for v in out)


def test_levels_definition():
    out = dict(zip(LEVEL_NAMES, levels((-30.0, -60.0, 0.0, 10.0, 0.2, 500.0, 0.7), 0.125, 0.8),
                   strict=True))
    assert out == pytest.approx({"level": 0.5, "bass": 0.0, "mid": 1.0, "high": 1.0,
                                 "hits": 0.7, "on_beat": 0.4})
    assert levels(None, 0.0, 0.0) == (0.0,) * 6
    assert levels((-120.0,) * 4 + (0, 0, 0), 0.3, 1.0)[-1] == 0.0


# ---------------------------------------------------------------------------- serve clock


def test_nudge_is_clipped_and_latency_checked():
    clock = ServeClock()
    for _ in range(100):
        clock.nudge(0.1)
    assert clock.nudge_s == MAX_NUDGE_S
    for _ in range(100):
        clock.nudge(-0.1)
    assert clock.nudge_s == -MAX_NUDGE_S
    clock.set_latency(MAX_LATENCY_S)
    with pytest.raises(ValueError, match="latency"):
        clock.set_latency(MAX_LATENCY_S + 0.001)
    with pytest.raises(ValueError, match="latency"):
        ServeClock(math.nan)


# ---------------------------------------------------------------------------- publisher

_BEAT = BeatClockState(t_sec=1.0, spb=0.5, phase=0.0, beat_count=2, conf=0.9, downbeat_prob=0.1,
                       beat_in_bar=1, beats_per_bar=4)  # 120 BPM, on a beat at t = 1


def _publication(seq=0):
    state = SlowState(_BEAT, StructureState.neutral(), (-20.0,) * 4 + (0.1, 900.0, 0.5))
    events = (BeatEvent(t_sec=1.0, beat_count=2, beat_in_bar=3, beats_per_bar=4,
                        is_downbeat=False, conf=0.9),)
    clock = ServeClock()
    clock.update(state.beat)
    return Publication(seq, state, events, 1.1, 1.7e9, 0.0, clock.at(1.1))


def test_publication_message_carries_the_state_bus_fields():
    msg = _publication().to_message()
    json.dumps(msg, allow_nan=False)
    assert SlowState.from_dict({k: msg[k] for k in ("beat", "structure", "features")}) \
        == _publication().state
    assert msg["type"] == "state" and msg["section"] in SECTION_LABELS
    assert msg["events"][0]["beat_count"] == 2
    assert set(msg["clock"]) >= {"phase", "beat_count", "beat_in_bar", "bpm", "source"}


def test_publisher_removes_a_failing_sink_and_goes_on(caplog):
    got = []
    pub = Publisher()
    pub.add_sink("bad", lambda p: 1 / 0)
    pub.add_sink("good", got.append)
    with pytest.raises(ValueError, match="already"):
        pub.add_sink("good", got.append)
    pub.publish(_publication(0))
    pub.publish(_publication(1))
    assert [p.seq for p in got] == [0, 1]
    assert pub.sink_names == ("good",)
    assert "output bad failed" in caplog.text


def test_package_imports_without_the_serve_extra():
    code = ("import sys\n"
            "class Block:\n"
            "    def find_spec(self, name, path=None, target=None):\n"
            "        if name.split('.')[0] in ('pythonosc', 'websockets'):\n"
            "            raise ImportError('blocked ' + name)\n"
            "sys.meta_path.insert(0, Block())\n"
            "import fractalsync_serve, fractalsync_serve.cli, fractalsync_serve.engine\n"
            "import fractalsync_serve.inputs\n")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)
