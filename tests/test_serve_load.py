"""50 real WebSocket clients on a real-time ``fractalsync-serve``, one of them stalled (it never
reads): the stalled one is dropped and logged, the 49 others receive every state at the input
cadence, the analysis keeps up (no input dropped), and a client that restarts is served again.
The analysis's per-block cost with and without the clients is measured in
benchmarks/bench_serve.py (a figure, not an assert here)."""

from __future__ import annotations

import asyncio
import re
import socket
import time

import pytest
import serve_process
from websockets.asyncio.client import connect

pytestmark = pytest.mark.usefixtures("beatnet_models_dir")

CLIENTS = 50
RATE = 44100 / 1024  # publications per second of the 44.1 kHz song


@pytest.fixture(scope="module")
def song(tmp_path_factory):
    return serve_process.song_file(tmp_path_factory.mktemp("serve_load"))


async def _reader(url: str, log: list, stop: asyncio.Event) -> None:
    async with connect(url) as ws:
        while not stop.is_set():
            try:
                text = await asyncio.wait_for(ws.recv(), 1.0)
            except asyncio.TimeoutError:
                continue
            log.append((time.monotonic(), _seq(text)))


def _seq(text: str) -> int:
    """The ``seq`` of a state message, without parsing all of it (49 readers share this
    process's CPU with the rest of the machine)."""
    i = text.index('"seq": ') + 7
    return int(text[i:text.index(",", i)])


def test_fifty_clients_one_stalled(song):
    path, _ = song
    served = serve_process.start(["--audio", str(path), "--ws", "0"])
    url = f"ws://127.0.0.1:{served.ws_port}/"

    async def main():
        stop = asyncio.Event()
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.connect(("127.0.0.1", served.ws_port))
        stalled = await connect(url, sock=sock, max_queue=1)  # never reads
        logs = [[] for _ in range(CLIENTS - 1)]
        tasks = [asyncio.ensure_future(_reader(url, log, stop)) for log in logs]
        await asyncio.sleep(25.0)
        # a client that restarts is served again, without a server restart
        restarted: list = []
        await _reader_for(url, restarted, 2.0)
        stop.set()
        await asyncio.gather(*tasks)
        stalled.transport.abort()
        return logs, restarted, sock.getsockname()[1]

    try:
        logs, restarted, stalled_port = asyncio.run(asyncio.wait_for(main(), 120))
    finally:
        status, out, err = served.stop()
    assert status == 0, err
    # the stalled client was dropped, and logged, once
    drops = [line for line in err.splitlines() if "dropped" in line]
    assert len(drops) == 1 and f":{stalled_port} dropped" in drops[0], err
    # the 49 others got every state of their last 15 s, at the input cadence
    for log in logs:
        t_end = log[-1][0]
        last = [seq for t, seq in log if t >= t_end - 15.0]
        assert last == list(range(last[0], last[0] + len(last))), "a state was skipped"
        assert len(last) >= 0.9 * 15.0 * RATE
    assert len(restarted) >= 0.8 * 2.0 * RATE
    # the analysis kept up: no input dropped; the per-block figures are printed for the record
    m = re.search(r"stopped: .*?(\d+) input samples dropped", out)
    assert m and int(m.group(1)) == 0, out
    print(out.strip().splitlines()[-1])


async def _reader_for(url: str, log: list, seconds: float) -> None:
    stop = asyncio.Event()
    task = asyncio.ensure_future(_reader(url, log, stop))
    await asyncio.sleep(seconds)
    stop.set()
    await task
