"""OSC output: real UDP datagrams parsed by python-osc, address space, time tags, profiles."""

from __future__ import annotations

import socket
import threading
import time

import pytest
from pythonosc.osc_bundle import OscBundle

from fractalsync_serve.osc_out import QUEUE_SIZE, OscOut, parse_target
from fractalsync_serve.publisher import Publication
from fractalsync_serve.serve_clock import ServeClock
from fractalsync_tracking.beat_state import BeatClockState
from fractalsync_tracking.slow_state import SlowState, StructureState

SPB = 0.5  # 120 BPM
HOP = 1024 / 48000


def _publications(seconds: float, latency: float = 0.0, wall0: float = 1.7e9):
    """Publications of a steady 120 BPM, 4/4 clock, one per 1024-sample block at 48 kHz, the
    tracker's state lagging the stream by 0.13 s."""
    clock = ServeClock(latency)
    structure = StructureState((0.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0),
                               (0.1, 0.2, 0.3, 0.4, 0.5))
    out = []
    for seq in range(int(seconds / HOP)):
        s = (seq + 1) * HOP
        t = max(0.0, s - 0.13)
        n = int(t / SPB)
        beat = BeatClockState(t_sec=t, spb=SPB, phase=(t / SPB) % 1.0, beat_count=n, conf=0.9,
                              downbeat_prob=0.2, beat_in_bar=n % 4 + 1, beats_per_bar=4)
        clock.update(beat)
        state = SlowState(beat, structure, (-20.0, -10.0, -30.0, -50.0, 0.1, 800.0, 0.6))
        out.append(Publication(seq, state, (), s, wall0 + s, latency, clock.at(s)))
    return out


@pytest.fixture
def receiver():
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 21)
    sock.bind(("127.0.0.1", 0))
    sock.settimeout(5.0)
    yield sock
    sock.close()


def _receive(sock, idle: float = 0.5):
    """Every (timetag, address, args) until nothing arrived for `idle` seconds."""
    got = []
    sock.settimeout(idle)
    while True:
        try:
            dgram = sock.recv(65536)
        except TimeoutError:
            return got
        bundle = OscBundle(dgram)  # every datagram is a bundle (its raw time tag, not clipped)
        for msg in bundle:
            got.append((bundle.timestamp, msg.address, list(msg.params)))


def _send_all(osc: OscOut, pubs):
    for p in pubs:
        osc.sink(p)
        time.sleep(0.0005)  # let the sender keep up (its queue is bounded)
    osc.close()


def test_fractalsync_address_space_and_time_tags(receiver):
    pubs = _publications(4.0, latency=0.05)
    osc = OscOut([receiver.getsockname()], "fractalsync")
    _send_all(osc, pubs)
    got = _receive(receiver)
    assert osc.dropped == 0 and osc.send_errors == 0
    by_addr: dict[str, list] = {}
    for tag, addr, args in got:
        by_addr.setdefault(addr, []).append((tag, args))
    per_publication = ["phase", "bar_phase", "bpm", "confidence", "downbeat_prob", "section",
                       "section_probs", "hazard", "level", "bass", "mid", "high", "hits",
                       "on_beat"]
    for name in per_publication:
        assert len(by_addr[f"/fractalsync/{name}"]) == len(pubs), name
    # values
    tag, args = by_addr["/fractalsync/section"][0]
    assert args == [4, "chorus"]
    assert by_addr["/fractalsync/hazard"][0][1] == pytest.approx([0.1, 0.2, 0.3, 0.4, 0.5])
    assert by_addr["/fractalsync/bpm"][-1][1][0] == pytest.approx(120.0, rel=1e-3)
    assert by_addr["/fractalsync/level"][0][1][0] == pytest.approx(40 / 60, rel=1e-5)
    # time tags: the audio moment (wall time of the stream time) + latency, NTP resolution
    for (tag, _), p in zip(by_addr["/fractalsync/phase"], pubs, strict=True):
        assert tag == pytest.approx(p.wall_time + 0.05, abs=1e-6)
    # beats: 8 beats in 4 s (the first at beat count 1), bar positions cycling, downbeats
    beats = by_addr["/fractalsync/beat"]
    counts = [args[0] for _, args in beats]
    assert counts == list(range(counts[0], counts[0] + len(counts))) and len(counts) >= 7
    for tag, (count, bib, bar_phase, bpm) in beats:
        assert bar_phase == pytest.approx((bib - 1) / 4)
        assert bpm == pytest.approx(120.0, rel=1e-3)
        # timed at the beat: the published clock (stream + latency) crosses count * SPB,
        # the tracker's grid, so the tag is wall0 + count * SPB - latency + latency
        assert tag == pytest.approx(1.7e9 + count * SPB - 0.05 + 0.05, abs=2e-3)
    downs = [args[0] for _, args in by_addr["/fractalsync/downbeat"]]
    assert downs == [c for _, (c, bib, _, _) in beats if bib == 1] and downs


def test_resolume_profile(receiver):
    pubs = _publications(3.0)
    osc = OscOut([receiver.getsockname()], "resolume")
    _send_all(osc, pubs)
    got = _receive(receiver)
    addrs = {a for _, a, _ in got}
    assert addrs == {"/composition/tempocontroller/tempo", "/composition/tempocontroller/resync"}
    tempos = [args[0] for _, a, args in got if a.endswith("/tempo")]
    assert tempos[0] == pytest.approx((120.0 - 20.0) / 480.0, rel=1e-4)
    assert 1 <= len(tempos) <= 5  # on change or once a second, not every publication
    resyncs = [args for _, a, args in got if a.endswith("/resync")]
    assert resyncs and all(r == [1] for r in resyncs)


def test_several_targets_each_get_everything(receiver):
    other = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    other.bind(("127.0.0.1", 0))
    try:
        pubs = _publications(1.0)
        osc = OscOut([receiver.getsockname(), other.getsockname()])
        _send_all(osc, pubs)
        a, b = _receive(receiver), _receive(other)
        assert len(a) == len(b) > 0 and [x[1] for x in a] == [x[1] for x in b]
    finally:
        other.close()


def test_no_receiver_is_harmless():
    free = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    free.bind(("127.0.0.1", 0))
    port = free.getsockname()[1]
    free.close()  # nothing listens: the kernel answers with ICMP port unreachable
    osc = OscOut([("127.0.0.1", port)])
    _send_all(osc, _publications(0.5))
    assert osc.dropped == 0  # nothing waited; failed sends are counted, not raised


def test_a_stalled_sender_drops_publications_instead_of_waiting(caplog):
    osc = OscOut([("127.0.0.1", 9)])
    gate = threading.Event()
    osc._send = lambda dgram: gate.wait()  # the sender thread hangs on its first datagram
    pubs = _publications(5.0)
    for p in pubs:  # returns although nothing is sent: the queue fills, the rest is dropped
        osc.sink(p)
    assert osc.dropped >= len(pubs) - QUEUE_SIZE - 1
    assert "OSC sender is behind" in caplog.text
    gate.set()
    osc.close()


@pytest.mark.parametrize("text, why", [
    ("localhost", "HOST:PORT"), (":9000", "HOST:PORT"), ("h:x", "not a number"),
    ("h:0", "1..65535"), ("h:70000", "1..65535"),
])
def test_bad_targets(text, why):
    with pytest.raises(ValueError, match=why):
        parse_target(text)


def test_target_forms():
    assert parse_target("127.0.0.1:9000") == ("127.0.0.1", 9000)
    assert parse_target("[::1]:7000") == ("::1", 7000)
    with pytest.raises(OSError):
        OscOut([("no-such-host.invalid", 9000)])
    with pytest.raises(ValueError, match="profile"):
        OscOut([("127.0.0.1", 9000)], "touchdesigner")
