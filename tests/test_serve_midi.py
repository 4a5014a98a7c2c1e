"""MIDI clock output and the beat follower it shares with the Link output.

* :class:`BeatFollower`: exact positions from publications of a known clock, the output latency,
  the stream-time mapping through ``wall_time``, never backwards, "no beat yet" skipped.
* :class:`ClockTicks` (pure logic) against a plain-python reference on random position
  sequences (hypothesis), and the tick schedule in time: follower + ticks stepped through
  simulated monotonic times put every tick within one step of its exact time, and ``start``
  right before a downbeat's tick.
* :class:`MidiClockOut`'s real sender thread with a port object that records what it is sent
  (real mido messages): clocks, one start before a downbeat tick, stop at close.
* A real virtual port (python-rtmidi on the ALSA sequencer) when ``/dev/snd/seq`` exists;
  otherwise that test skips saying so, and the error a user gets is checked instead.
"""

from __future__ import annotations

import math
import os
import sys
import threading
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fractalsync_serve.beat_follower import BeatFollower, BeatPosition, SyncOutputError
from fractalsync_serve.midi_clock import PPQN, ClockTicks, MidiClockOut, open_midi_output
from fractalsync_serve.publisher import Publication
from fractalsync_tracking.beat_state import BeatClockState
from fractalsync_tracking.display_clock import NO_BEAT, BeatNow
from fractalsync_tracking.slow_state import SlowState, StructureState

mido = pytest.importorskip("mido", reason="the optional [midi] extra (mido) is not installed")
pytest.importorskip("rtmidi", reason="the optional [midi] extra (python-rtmidi) is not installed")

_STATE = SlowState(BeatClockState(0.0, 0.5, 0.0, 0, 0.5, 0.0, 1, 4), StructureState.neutral())
HAS_SEQ = os.path.exists("/dev/snd/seq")


def _position(beats: float, spb: float, bpb: int) -> BeatPosition:
    n = math.floor(beats)
    return BeatPosition(beats, beats - n, n, n % bpb + 1, bpb, spb)


def _pub(seq, stream_time, wall_time, beats, spb, bpb=4, latency_s=0.0):
    """A publication whose clock is at ``beats`` (bar position ``beats mod bpb``)."""
    n = math.floor(beats)
    clock = BeatNow(beats - n, n, n % bpb + 1, bpb, spb, 0.9, 0.0, "tracker")
    return Publication(seq, _STATE, (), stream_time, wall_time, latency_s, clock)


# ---------------------------------------------------------------------------- BeatFollower

def test_follower_positions_latency_and_mapping():
    spb, unix0, mono0 = 0.5, 1.7e9, 500.0  # stream time 0 heard at unix0 = monotonic mono0
    f0, f1 = BeatFollower(), BeatFollower(0.1)
    assert f0.at(mono0) is None
    f0.update(Publication(0, _STATE, (), 0.0, unix0, 0.0, NO_BEAT), unix0, mono0)
    assert f0.at(mono0) is None  # "no beat yet" is not a beat
    for k in range(50):  # a publication every 20 ms of a clock at 3 + t / spb beats
        t = 0.02 * k
        for f in (f0, f1):
            # the server's own latency is 0.05 s: its clock describes stream time t + 0.05
            f.update(_pub(k, t, unix0 + t, 3 + (t + 0.05) / spb, spb, latency_s=0.05),
                     unix0 + t + 0.003, mono0 + t + 0.003)  # read 3 ms after the capture
        # (the first state's stream time is 0.05: a predictor starts there)
        for m in (mono0 + t + 0.05, mono0 + t + 0.063):  # (unix times near 1.7e9 s: 0.2 us)
            assert f0.at(m).beats == pytest.approx(3 + (m - mono0) / spb, abs=1e-6)
            # the follower's own latency replaces the server's
            assert f1.at(m).beats == pytest.approx(3 + (m - mono0 + 0.1) / spb, abs=1e-6)
    pos = f0.at(mono0 + 1.0)
    assert (pos.beat_count, pos.beat_in_bar, pos.beats_per_bar, pos.spb) == (5, 2, 4, spb)
    assert f0.at(mono0 + 0.5) == f0.at(mono0 + 1.0)  # never backwards


@pytest.mark.parametrize("bad", [-0.001, 2.5, math.nan, math.inf, True, "0.1", None])
def test_follower_refuses_bad_latency(bad):
    with pytest.raises(ValueError, match="output latency"):
        BeatFollower(bad)


# ---------------------------------------------------------------------------- ClockTicks

def _reference(positions: list[float], bpb: int) -> tuple[list[str], int]:
    """Plain-python statement of the rule: messages and skipped ticks."""
    out, skipped, started = [], 0, False
    nxt = math.floor(positions[0] * PPQN) + 1
    for b in positions[1:]:
        last = math.floor(b * PPQN)
        if last - nxt >= PPQN:
            skipped += last - nxt
            nxt = last
        while nxt <= last:
            if not started and nxt % PPQN == 0 and (nxt // PPQN) % bpb == 0:
                out.append("start")
                started = True
            out.append("clock")
            nxt += 1
    return out, skipped


@settings(max_examples=200, deadline=None)
@given(start=st.floats(0, 1000), bpb=st.integers(1, 7),
       steps=st.lists(st.one_of(st.floats(0, 0.2), st.floats(0, 3)), max_size=200))
def test_ticks_match_the_reference(start, bpb, steps):
    positions = [start]
    for s in steps:
        positions.append(positions[-1] + s)
    ticks = ClockTicks()
    got = []
    for b in positions:
        got += ticks.advance(_position(b, 0.5, bpb))
    expected, skipped = _reference(positions, bpb)
    assert got == expected
    assert ticks.skipped == skipped and ticks.ticks == got.count("clock")
    assert ticks.stop() == (["stop"] if "start" in got else [])
    assert ticks.stop() == []


def test_no_position_no_ticks():
    ticks = ClockTicks()
    assert ticks.advance(_position(7.99, 0.5, 4)) == []  # the first position only sets the grid
    assert ticks.advance(_position(7.99, 0.5, 4)) == []  # nothing new
    assert ticks.advance(_position(8.0, 0.5, 4)) == ["start", "clock"]  # beat 8: a downbeat


@pytest.mark.parametrize(("bpm", "latency_s"), [(120.0, 0.0), (137.0, 0.25)])
def test_tick_schedule_in_time(bpm, latency_s):
    """Every tick falls within one simulated step of its exact time."""
    spb, bpb, step = 60.0 / bpm, 4, 0.0005
    follower, ticks = BeatFollower(latency_s), ClockTicks()
    beats0 = 2.3  # the clock: beats0 + t / spb at stream time t, heard at monotonic t
    times, kinds = [], []
    k = 0
    for i in range(int(6.0 / step)):
        t = i * step
        if i % 40 == 0:  # a publication every 20 ms
            follower.update(_pub(k, t, t, beats0 + t / spb, spb, bpb), t, t)
            k += 1
        for kind in ticks.advance(follower.at(t)):
            times.append(t)
            kinds.append(kind)
    clocks = [t for t, kind in zip(times, kinds, strict=True) if kind == "clock"]
    first = math.floor((beats0 + latency_s / spb) * PPQN) + 1
    for j, t in enumerate(clocks):
        exact = ((first + j) / PPQN - beats0) * spb - latency_s
        assert exact - 1e-9 <= t < exact + step + 1e-9, (j, t, exact)
    # start right before the clock of the first downbeat after the first tick
    s = kinds.index("start")
    assert kinds[s + 1] == "clock"
    tick = first + kinds[:s].count("clock")
    assert tick % PPQN == 0 and (tick // PPQN) % bpb == 0
    assert tick - first < PPQN * bpb


# ---------------------------------------------------------------------------- MidiClockOut

class RecordingPort:
    """A port object: records (monotonic time, message type) of what it is sent."""

    def __init__(self) -> None:
        self.sent: list[tuple[float, str]] = []

    def send(self, msg) -> None:
        assert isinstance(msg, mido.Message)
        self.sent.append((time.monotonic(), msg.type))


def test_sender_thread_sends_clock_start_and_stop():
    spb, bpb = 0.25, 4  # 240 BPM: a bar a second
    port = RecordingPort()
    out = MidiClockOut(port, latency_s=0.05)
    start_mono, start_unix = time.monotonic(), time.time()
    stop = threading.Event()

    def publish():
        k = 0
        while not stop.is_set():
            t = time.monotonic() - start_mono
            out.publish(_pub(k, t, start_unix + t, 1.5 + t / spb, spb, bpb))
            k += 1
            stop.wait(0.02)

    feeder = threading.Thread(target=publish)
    feeder.start()
    try:
        deadline = time.monotonic() + 30
        while sum(kind == "clock" for _, kind in port.sent) < 3 * bpb * PPQN:  # 3 bars
            assert time.monotonic() < deadline, port.sent[-5:]
            time.sleep(0.05)
    finally:
        stop.set()
        feeder.join()
        out.close()
    kinds = [kind for _, kind in port.sent]
    assert set(kinds) == {"clock", "start", "stop"}
    assert kinds.count("start") == 1 and kinds[-1] == "stop" and kinds.count("stop") == 1
    s = kinds.index("start")
    assert kinds[s + 1] == "clock" and s < bpb * PPQN  # within the first bar of clocks
    out.close()  # idempotent
    assert [kind for _, kind in port.sent].count("stop") == 1


@pytest.mark.skipif(not HAS_SEQ, reason="no ALSA sequencer: /dev/snd/seq does not exist on this "
                                        "machine (kernel module snd-seq not available), so no "
                                        "MIDI port can be opened; the tick schedule is tested "
                                        "as pure logic above")
def test_virtual_port_receives_the_clock():
    name = f"fractalsync-test-{os.getpid()}"
    out = MidiClockOut(name)
    received = []
    try:
        inputs = [n for n in mido.get_input_names() if n.startswith(name)]
        assert inputs, mido.get_input_names()
        with mido.open_input(inputs[0]) as inp:
            spb, t0, u0 = 0.25, time.monotonic(), time.time()
            deadline = t0 + 20
            k = 0
            while "start" not in received or received.count("clock") < 2 * PPQN:
                assert time.monotonic() < deadline, received[-5:]
                t = time.monotonic() - t0
                out.publish(_pub(k, t, u0 + t, t / spb, spb))
                k += 1
                time.sleep(0.02)
                received += [m.type for m in inp.iter_pending()]
    finally:
        out.close()
    assert received.count("start") == 1


@pytest.mark.skipif(HAS_SEQ, reason="this machine has an ALSA sequencer")
def test_without_a_sequencer_the_error_says_why():
    with pytest.raises(SyncOutputError, match="/dev/snd/seq does not exist"):
        open_midi_output("fractalsync-test")
    with pytest.raises(OSError, match="cannot open MIDI output 'x'"):
        MidiClockOut("x")


def test_bad_port_names_are_refused():
    with pytest.raises(ValueError, match="non-empty string"):
        open_midi_output("  ")


@pytest.mark.parametrize("module", ["mido", "rtmidi"])
def test_without_the_midi_extra_the_error_says_how_to_install(monkeypatch, module):
    monkeypatch.setitem(sys.modules, module, None)  # importing it raises ImportError
    with pytest.raises(SyncOutputError, match=r"fractalsync-dsp\[midi\]"):
        MidiClockOut(RecordingPort())


@pytest.mark.skipif(HAS_SEQ, reason="this machine has an ALSA sequencer")
def test_cli_without_a_sequencer_exits_with_one_error_line(tmp_path):
    """``fractalsync-serve --midi-clock`` as a subprocess: exit 1 and one line saying why."""
    import subprocess

    import numpy as np
    import soundfile as sf

    wav = tmp_path / "tone.wav"
    sf.write(wav, np.zeros(22050, np.float32), 22050)
    r = subprocess.run([sys.executable, "-m", "fractalsync_serve.cli", "--audio", str(wav),
                        "--midi-clock", "FractalSync", "--structure", "none"],
                       capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert r.returncode == 1, r
    errors = [line for line in r.stderr.splitlines() if "error:" in line]
    assert len(errors) == 1 and "/dev/snd/seq does not exist" in errors[0], r.stderr
