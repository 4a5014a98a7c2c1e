"""WebSocket output: real websockets clients against WsServer fed with publications at the
input cadence (47 per second)."""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time
import urllib.error
import urllib.request

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from fractalsync_serve.commands import FLOOD_CLOSE, RATE_BURST, Command
from fractalsync_serve.publisher import Publication
from fractalsync_serve.serve_clock import ServeClock
from fractalsync_serve.ws_server import CLIENT_QUEUE, WsServer
from fractalsync_tracking.beat_state import BeatClockState
from fractalsync_tracking.slow_state import SlowState, StructureState

HOP = 1024 / 48000


def _publication(seq: int) -> Publication:
    s = (seq + 1) * HOP
    t = max(0.0, s - 0.13)
    n = int(t / 0.5)
    beat = BeatClockState(t_sec=t, spb=0.5, phase=(t / 0.5) % 1.0, beat_count=n, conf=0.9,
                          downbeat_prob=0.2, beat_in_bar=n % 4 + 1, beats_per_bar=4)
    clock = ServeClock()
    clock.update(beat)
    state = SlowState(beat, StructureState.neutral(), (-20.0,) * 4 + (0.1, 800.0, 0.5))
    return Publication(seq, state, (), s, 1.7e9 + s, 0.0, clock.at(s))


class Feeder:
    """A WsServer fed in real time from a thread, like the analysis loop does."""

    def __init__(self, page=None) -> None:
        self.commands: list[tuple[Command, float]] = []
        kwargs = {} if page is None else {"page": page}
        self.server = WsServer("127.0.0.1", 0, lambda c, t: self.commands.append((c, t)),
                               **kwargs)
        self.server.start()
        self.url = f"ws://127.0.0.1:{self.server.port}/"
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        seq, t0 = 0, time.monotonic()
        while not self._stop.is_set():
            self.server.sink(_publication(seq))
            seq += 1
            self._stop.wait(max(0.0, t0 + seq * HOP - time.monotonic()))

    def close(self) -> None:
        self._stop.set()
        self._thread.join()
        self.server.stop()


@pytest.fixture
def feeder():
    f = Feeder()
    yield f
    f.close()


def run(coro, timeout=60.0):
    return asyncio.run(asyncio.wait_for(coro, timeout))


async def _states(ws, n: int) -> list[dict]:
    out = []
    while len(out) < n:
        msg = json.loads(await ws.recv())
        if msg["type"] == "state":
            out.append(msg)
    return out


async def _reply(ws) -> dict:
    """The next message that is not a state message."""
    while True:
        msg = json.loads(await ws.recv())
        if msg["type"] != "state":
            return msg


def test_every_client_gets_every_state(feeder):
    async def main():
        async with connect(feeder.url) as a, connect(feeder.url) as b:
            sa, sb = await _states(a, 20), await _states(b, 20)
        for states in (sa, sb):
            seqs = [m["seq"] for m in states]
            assert seqs == list(range(seqs[0], seqs[0] + 20))  # none skipped
            m = states[0]
            assert {"beat", "structure", "features", "clock", "events", "stream_time",
                    "wall_time", "section", "latency_ms"} <= set(m)
            SlowState.from_dict({k: m[k] for k in ("beat", "structure", "features")})
    run(main())


def test_subscribe_decimates(feeder):
    async def main():
        async with connect(feeder.url) as ws:
            await ws.send(json.dumps({"type": "subscribe", "every": 5}))
            assert await _reply(ws) == {"type": "ok", "cmd": "subscribe"}
            await _states(ws, 2)  # states queued before the reply
            seqs = [m["seq"] for m in await _states(ws, 6)]
            assert [b - a for a, b in zip(seqs, seqs[1:], strict=False)] == [5] * 5
    run(main())


def test_commands_reach_the_engine_and_are_acknowledged(feeder):
    async def main():
        async with connect(feeder.url) as ws:
            for cmd in ({"type": "tap"}, {"type": "nudge", "ms": -20},
                        {"type": "latency", "ms": 35.5}):
                await ws.send(json.dumps(cmd))
                assert await _reply(ws) == {"type": "ok", "cmd": cmd["type"]}
            await ws.send('{"type": "ping"}')
            assert await _reply(ws) == {"type": "pong"}
    run(main())
    assert [c for c, _ in feeder.commands] == [Command("tap"), Command("nudge", -20.0),
                                               Command("latency", 35.5)]
    assert all(abs(t - time.time()) < 60 for _, t in feeder.commands)


@pytest.mark.parametrize("bad", [
    "not json", "{", "[1]", '{"type": "explode"}', '{"type": "tap", "extra": 1}',
    '{"type": "nudge", "ms": 1e9}', '{"type": "latency"}', b"\x00\x01binary",
])
def test_a_bad_message_gets_an_error_and_nothing_else(feeder, bad):
    async def main():
        async with connect(feeder.url) as ws:
            await ws.send(bad)
            reply = await _reply(ws)
            assert reply["type"] == "error" and reply["error"]
            await _states(ws, 3)  # still connected and served
            await ws.send('{"type": "ping"}')
            assert await _reply(ws) == {"type": "pong"}
    run(main())
    assert feeder.commands == []


def test_a_huge_frame_closes_the_connection_with_1009(feeder):
    async def main():
        async with connect(feeder.url, max_size=None) as ws:
            await ws.send('{"type": "tap", "x": "' + "x" * 100_000 + '"}')
            with pytest.raises(ConnectionClosed) as info:
                while True:
                    await ws.recv()
            assert info.value.rcvd.code == 1009
        async with connect(feeder.url) as ws:  # the server is unharmed
            await _states(ws, 3)
    run(main())
    assert feeder.commands == []


def test_a_flood_is_rate_limited_then_disconnected(feeder):
    async def main():
        async with connect(feeder.url) as ws:
            for _ in range(int(RATE_BURST) + FLOOD_CLOSE + 50):
                await ws.send('{"type": "tap"}')
            replies = []
            with pytest.raises(ConnectionClosed) as info:
                while True:
                    msg = json.loads(await ws.recv())
                    if msg["type"] != "state":
                        replies.append(msg)
            assert info.value.rcvd.code == 1008
            oks = sum(r["type"] == "ok" for r in replies)
            errors = [r for r in replies if r["type"] == "error"]
            assert oks <= RATE_BURST + 5 and len(errors) >= FLOOD_CLOSE - 5
            assert "rate limit" in errors[0]["error"]
        async with connect(feeder.url) as ws:  # another connection is served normally
            await _states(ws, 3)
    run(main())
    assert len(feeder.commands) <= RATE_BURST + 5


def test_a_client_that_reconnects_resumes(feeder):
    async def main():
        for _ in range(3):
            async with connect(feeder.url) as ws:
                first = (await _states(ws, 2))[-1]["seq"]
            await asyncio.sleep(0.2)
        return first
    assert run(main()) > 0
    assert feeder.server.connections == 3


def test_a_stalled_client_is_dropped_and_the_others_keep_receiving(feeder, caplog):
    async def main():
        # a client that never reads: tiny receive buffer, at most one message taken in
        stalled = await connect(feeder.url, max_queue=1,
                                sock=_small_rcvbuf_socket(feeder.server.port))
        async with connect(feeder.url) as ok:
            t0 = time.monotonic()
            received = 0
            while feeder.server.clients_dropped == 0:
                received += len(await _states(ok, 10))
                assert time.monotonic() - t0 < 40, "the stalled client was never dropped"
            more = await _states(ok, 47)  # one more second, at the input cadence
            seqs = [m["seq"] for m in more]
            assert seqs == list(range(seqs[0], seqs[0] + 47))
        with pytest.raises(ConnectionClosed):
            while True:
                await stalled.recv()
        await stalled.close()
    run(main())
    assert "dropped" in caplog.text and f"{CLIENT_QUEUE} messages queued" in caplog.text


def _small_rcvbuf_socket(port: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect(("127.0.0.1", port))
    return sock


def test_the_page_and_other_paths_over_plain_http(feeder, tmp_path):
    base = f"http://127.0.0.1:{feeder.server.port}"
    with urllib.request.urlopen(base + "/", timeout=10) as r:
        assert r.status == 200 and r.headers["Content-Type"].startswith("text/html")
        assert r.read() == feeder.server.page.read_bytes()
    with pytest.raises(urllib.error.HTTPError) as info:
        urllib.request.urlopen(base + "/secret.txt", timeout=10)
    assert info.value.code == 404
    missing = Feeder(page=tmp_path / "none.html")
    try:
        with pytest.raises(urllib.error.HTTPError) as info:
            urllib.request.urlopen(f"http://127.0.0.1:{missing.server.port}/", timeout=10)
        assert info.value.code == 404 and b"no page" in info.value.read()
    finally:
        missing.close()


def test_stop_closes_connections_and_the_port(tmp_path):
    f = Feeder()
    port = f.server.port

    async def main():
        async with connect(f.url) as ws:
            await _states(ws, 2)
            threading.Thread(target=f.close).start()
            with pytest.raises(ConnectionClosed) as info:
                while True:
                    await ws.recv()
            assert info.value.rcvd.code == 1001
    run(main())
    with socket.socket() as s:  # the port is free again
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("127.0.0.1", port))


def test_a_port_in_use_is_a_clear_error():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        server = WsServer("127.0.0.1", s.getsockname()[1], lambda c, t: None)
        with pytest.raises(OSError, match=f"cannot listen on 127.0.0.1:{s.getsockname()[1]}"):
            server.start()


# ---------------------------------------------------------------------------- in its own process


def test_the_server_process_relays_states_and_commands():
    from fractalsync_serve.ws_process import WsProcess

    got: list[tuple[Command, float]] = []
    proc = WsProcess("127.0.0.1", 0, lambda c, t: got.append((c, t)), quiet=True)
    proc.start()
    stop = threading.Event()

    def feed():  # the analysis thread's part: one sink call per publication
        seq, t0 = 0, time.monotonic()
        while not stop.is_set():
            proc.sink(_publication(seq))
            seq += 1
            stop.wait(max(0.0, t0 + seq * HOP - time.monotonic()))

    feeder = threading.Thread(target=feed, daemon=True)
    feeder.start()

    async def main():
        async with connect(f"ws://127.0.0.1:{proc.port}/") as ws:
            states = await _states(ws, 10)
            seqs = [m["seq"] for m in states]
            assert seqs == list(range(seqs[0], seqs[0] + 10))
            await ws.send('{"type": "nudge", "ms": 5}')
            assert await _reply(ws) == {"type": "ok", "cmd": "nudge"}
            await ws.send('{"type": "bogus"}')
            assert (await _reply(ws))["type"] == "error"
            await _states(ws, 5)  # the command is taken by the sink calls meanwhile
    try:
        run(main())
    finally:
        stop.set()
        feeder.join()
        proc.stop()
    assert [c for c, _ in got] == [Command("nudge", 5.0)]
    assert proc.dropped == proc.backlog_dropped == 0 and proc.counters["connections"] == 1


def test_the_server_process_reports_a_port_in_use():
    from fractalsync_serve.ws_process import WsProcess

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        with pytest.raises(OSError, match=f"cannot listen on 127.0.0.1:{port}: .*in use"):
            WsProcess("127.0.0.1", port, lambda c, t: None).start()
