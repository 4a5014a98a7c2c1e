"""Ableton Link output: two Link sessions on loopback, the server's (LinkOut) and a test peer.

Link discovers peers by UDP multicast on every network interface, so each test runs in a
private network namespace (``unshare --net`` with only its loopback interface up): no packet
leaves the machine. Inside it one child Python steers a Link session with
:class:`~fractalsync_serve.link_out.LinkOut`, fed real-time publications of a known beat clock
(``P(m) = (m - m0) / spb`` beats at ``time.monotonic()`` reading ``m``), and a second child
process, a plain ``aalink`` peer that starts at another tempo, reports the session tempo and its
phase in the bar against the known clock. Link's clock is ``CLOCK_MONOTONIC`` on Linux, the
same ``time.monotonic()`` in both processes.

Skips (with the reason) when the optional ``aalink`` package is missing or the machine cannot
make a network namespace (not root, no ``unshare``): Link must not multicast on a real network
from a test.
"""

from __future__ import annotations

import json
import math
import shutil
import subprocess
import sys

import pytest

pytest.importorskip("aalink", reason="the optional [link] extra (aalink) is not installed")

from fractalsync_serve.link_out import LinkOut  # noqa: E402

#: The known clock, in both programs: ``spb1`` until monotonic ``m_switch``, then ``spb2``.
_CLOCK = r"""
def beats_at(m):
    if m < m_switch:
        return (m - m0) / spb1
    return (m_switch - m0) / spb1 + (m - m_switch) / spb2
"""

_PEER = r"""
import asyncio, json, sys, time
from aalink import Link

m0, m_switch, spb1, spb2 = map(float, sys.argv[1:5])
bpb, n_samples = int(sys.argv[5]), int(sys.argv[6])
exec(sys.argv[7])  # beats_at


async def main():
    link = Link(90.0)
    link.quantum = bpb
    link.enabled = True
    deadline = time.monotonic() + 15
    while link.num_peers < 1:
        if time.monotonic() > deadline:
            print(json.dumps({"error": "no Link peer found within 15 s"}))
            return
        await asyncio.sleep(0.05)
    await asyncio.sleep(1.0)  # the leader corrects tempo and phase at its next publications
    samples = []
    for _ in range(n_samples):
        a = time.monotonic()
        phase, tempo = link.phase, link.tempo
        m = 0.5 * (a + time.monotonic())
        expected = beats_at(m) % bpb
        samples.append([m - m_switch, tempo, (phase - expected + bpb / 2) % bpb - bpb / 2])
        await asyncio.sleep(0.05)
    print(json.dumps({"samples": samples, "quantum": link.quantum}))

asyncio.run(main())
"""

_LEADER = r"""
import json, subprocess, sys, time
from fractalsync_serve.link_out import LinkOut
from fractalsync_serve.publisher import Publication
from fractalsync_tracking.display_clock import BeatNow
from fractalsync_tracking.beat_state import BeatClockState
from fractalsync_tracking.slow_state import SlowState, StructureState

bpm1, bpm2, switch_after, latency = map(float, sys.argv[1:5])
bpb, n_samples, clock_code, peer_program = int(sys.argv[5]), sys.argv[6], sys.argv[7], sys.argv[8]
spb1, spb2 = 60.0 / bpm1, 60.0 / bpm2
m0 = time.monotonic() - 40 * spb1 - 0.123  # beat 0 of the known clock
m_switch = time.monotonic() + switch_after
exec(clock_code)  # beats_at
peer = subprocess.Popen([sys.executable, "-c", peer_program, repr(m0), repr(m_switch),
                         repr(spb1), repr(spb2), str(bpb), n_samples, clock_code],
                        stdout=subprocess.PIPE, text=True)
out = LinkOut(latency)
state = SlowState(BeatClockState(0.0, spb1, 0.0, 0, 0.5, 0.0, 1, bpb), StructureState.neutral())
start = time.monotonic()
seq = 0
while peer.poll() is None and time.monotonic() - start < 40:
    m, u = time.monotonic(), time.time()
    beats = beats_at(m)
    n = int(beats)
    spb = spb1 if m < m_switch else spb2
    clock = BeatNow(beats - n, n, n % bpb + 1, bpb, spb, 0.9, 0.0, "tracker")
    out.publish(Publication(seq, state, (), m - start, u, 0.0, clock))
    seq += 1
    time.sleep(0.02)
report = json.loads(peer.communicate(timeout=10)[0])
report["corrections"] = out.corrections
report["leader_quantum"] = out.link.quantum
out.close()
print(json.dumps(report))
"""


def _netns_reason() -> str | None:
    """Why a private network namespace cannot be made here (None: it can)."""
    if shutil.which("unshare") is None or shutil.which("ip") is None:
        return "unshare/ip (util-linux, iproute2) not found"
    r = subprocess.run(["unshare", "--net", "ip", "link", "set", "lo", "up"],
                       capture_output=True, text=True)
    if r.returncode != 0:
        return f"cannot make a network namespace: {r.stderr.strip() or r.returncode}"
    return None


@pytest.fixture(scope="module")
def netns():
    reason = _netns_reason()
    if reason is not None:
        pytest.skip(f"Link test needs a private network namespace (Link multicasts on every "
                    f"interface): {reason}")


def _run_pair(bpm1: float, bpm2: float, switch_after: float, latency_s: float, bpb: int,
              n_samples: int = 40) -> dict:
    """LinkOut (leader) and a peer in one private network namespace; the peer's report."""
    program = (f"ip link set lo up && exec {sys.executable} -c \"$0\" {bpm1} {bpm2} "
               f"{switch_after} {latency_s} {bpb} {n_samples} \"$1\" \"$2\"")
    r = subprocess.run(["unshare", "--net", "sh", "-c", program, _LEADER, _CLOCK, _PEER],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    report = json.loads(r.stdout.strip().splitlines()[-1])
    assert "error" not in report, report
    return report


#: Bar-phase tolerance in beats of the peer against the known clock: the peer samples the session
#: from its own thread, and on this shared 2-core VM a sample was once 0.0251 beat off (load 8)
#: with a 0.025 bound. 0.05 beat (25 ms at 120 BPM) still fails a latency not applied (0.16 beat
#: at 97.5 BPM and 100 ms) or a phase a beat off.
PHASE_TOL_BEATS = 0.05


@pytest.mark.parametrize(("bpm", "latency_s", "bpb"), [(128.0, 0.0, 4), (97.5, 0.1, 3)])
def test_link_peer_follows_tempo_and_bar_phase(netns, bpm, latency_s, bpb):
    report = _run_pair(bpm, bpm, math.inf, latency_s, bpb)
    spb = 60.0 / bpm
    assert report["leader_quantum"] == bpb and report["quantum"] == bpb
    assert report["corrections"] >= 1  # the peer's timeline was moved onto the tracked one
    for _, tempo, err in report["samples"]:
        assert tempo == pytest.approx(bpm, abs=0.02)  # the peer started at 90 BPM
        # the session's bar phase leads the known clock by the output latency
        assert err == pytest.approx(latency_s / spb, abs=PHASE_TOL_BEATS), report["samples"]


def test_link_tempo_change_keeps_the_phase(netns):
    """A step from 120 to 126 BPM: the session tempo glides there (smoothed over 1 s) while
    the bar phase stays on the known clock throughout."""
    report = _run_pair(120.0, 126.0, 3.5, 0.0, 4, n_samples=150)
    after = [(t, tempo) for t, tempo, _ in report["samples"] if t > 0]
    assert len(after) > 60, report["samples"]  # the peer saw the change
    for t, tempo, err in report["samples"]:
        assert abs(err) < PHASE_TOL_BEATS, (t, tempo, err)
        if t < 0:
            assert tempo == pytest.approx(120.0, abs=0.02)
        elif t > 5.0:
            assert tempo == pytest.approx(126.0, abs=0.1)
        assert 119.98 <= tempo <= 126.02


def test_bad_arguments_are_refused():
    with pytest.raises(ValueError, match="output latency"):
        LinkOut(-0.1)
    with pytest.raises(ValueError, match="phase_tolerance"):
        LinkOut(0.0, phase_tolerance=0.7)


def test_without_aalink_the_error_says_how_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "aalink", None)  # import aalink raises ImportError
    with pytest.raises(OSError, match=r"fractalsync-dsp\[link\]"):
        LinkOut()


_SERVER_AND_PEER = r"""
import asyncio, json, subprocess, sys, time
import numpy as np
from websockets.sync.client import connect
from aalink import Link

wav, beats_file, port = sys.argv[1], sys.argv[2], int(sys.argv[3])
beats = np.load(beats_file)
server = subprocess.Popen([sys.executable, "-m", "fractalsync_serve.cli", "--audio", wav,
                           "--link", "--ws", str(port), "--structure", "none", "--quiet"],
                          stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def song_phase(s):
    # (beat phase in [0, 1) of the song at stream time s, local seconds per beat)
    k = int(np.searchsorted(beats, s, side="right")) - 1
    k = min(max(k, 0), beats.size - 2)
    return ((s - beats[k]) / (beats[k + 1] - beats[k])) % 1.0, beats[k + 1] - beats[k]


async def main():
    deadline = time.monotonic() + 60
    while True:
        try:
            ws = connect(f"ws://127.0.0.1:{port}/", open_timeout=2)
            break
        except OSError:
            if server.poll() is not None or time.monotonic() > deadline:
                return {"error": "server did not start: " + server.stderr.read()}
            await asyncio.sleep(0.1)
    link = Link(90.0)
    link.quantum = 4
    link.enabled = True
    with ws:
        while True:  # until 10 s of audio: the tracker has locked, the peer has followed
            msg = json.loads(ws.recv(timeout=10))
            if msg.get("type") == "state" and msg["stream_time"] >= 10.0:
                break
        samples = []
        for _ in range(30):
            msg = json.loads(ws.recv(timeout=10))
            if msg.get("type") != "state":
                continue
            mono, unix = time.monotonic(), time.time()
            phase, tempo = link.phase % 1.0, link.tempo
            # the stream time heard now, from the server's own stream-time -> wall-time mapping
            s = msg["stream_time"] + (unix - msg["wall_time"])
            expected, spb = song_phase(s)
            samples.append([tempo, 60.0 / spb, (phase - expected + 0.5) % 1.0 - 0.5,
                            link.num_peers])
            await asyncio.sleep(0.05)
    return {"samples": samples}

try:
    report = asyncio.run(main())
finally:
    server.terminate()
    server.wait(20)
print(json.dumps(report))
"""


def test_fractalsync_serve_link_peer_follows_the_song(netns, tmp_path):
    """The real ``fractalsync-serve --audio --link`` and a Link peer (both in one private
    network namespace): the peer's tempo and beat phase follow the song's exact beats."""
    import numpy as np

    from fractalsync_models.training.song_generator import generate_song

    song = generate_song(2026, duration_s=30.0)  # the demo song: 121.5 BPM, 4/4
    wav, _ = song.write(tmp_path)
    np.save(tmp_path / "beats.npy", song.beats)
    program = f"ip link set lo up && exec {sys.executable} -c \"$0\" \"$1\" \"$2\" 8765"
    r = subprocess.run(["unshare", "--net", "sh", "-c", program, _SERVER_AND_PEER, str(wav),
                        str(tmp_path / "beats.npy")], capture_output=True, text=True,
                       timeout=120, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    report = json.loads(r.stdout.strip().splitlines()[-1])
    assert "error" not in report, report
    samples = np.array(report["samples"])
    assert len(samples) >= 20 and np.all(samples[:, 3] >= 1), samples  # the server is a peer
    tempo, song_tempo, err = samples[:, 0], samples[:, 1], samples[:, 2]
    assert np.all(np.abs(tempo / song_tempo - 1) < 0.03), samples  # the peer started at 90
    assert np.all(np.abs(err) < 0.15), samples  # beat phase within 0.15 beat (74 ms)
