"""fractalsync-serve: the analysis's cost per input block with no WebSocket client and with 50
(one of them stalled), the song paced in real time.

Run: .venv/bin/python -m pytest benchmarks/bench_serve.py --benchmark-only
(``FRACTALSYNC_BENCH_SERVE_S`` sets the seconds per configuration, default 20.)

As ``fractalsync-serve --audio FILE --ws PORT`` runs it: a ServeEngine on the demo song
(44.1 kHz, 1024-sample blocks, the structure model on) paced in real time, and the WebSocket
server in its child process (:mod:`fractalsync_serve.ws_process`, "server process"); for
comparison also with the server as a thread of the analysis process ("server thread", the
design it replaced). The clients run in another process (as other apps would): 49 that read
everything and one that never reads (dropped after a few seconds). Printed: per block, p50 and
p99 of ``SlowClock.push`` (the analysis chain), of the publication (serve clock, Publication,
hand-over to the outputs) and of both, for each configuration; the configurations alternate
(none, clients, none, clients) so that both see the same machine load.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time

import numpy as np

CLIENT_SCRIPT = r"""
import asyncio, socket, sys
from websockets.asyncio.client import connect
port, n, seconds = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3])
async def reader(url, counts, i):
    async with connect(url) as ws:
        async for _ in ws:
            counts[i] += 1
async def main():
    url = f"ws://127.0.0.1:{port}/"
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect(("127.0.0.1", port))
    stalled = await connect(url, sock=sock, max_queue=1)
    counts = [0] * (n - 1)
    tasks = [asyncio.ensure_future(reader(url, counts, i)) for i in range(n - 1)]
    await asyncio.sleep(seconds)
    print(min(counts), max(counts), flush=True)
    stalled.transport.abort()
    for t in tasks:
        t.cancel()
asyncio.run(main())
"""


def _run(audio, rate, seconds: float, clients: int, kind: str):
    from fractalsync_serve.engine import ServeEngine
    from fractalsync_serve.inputs import FileSource
    from fractalsync_serve.publisher import Publisher
    from fractalsync_serve.ws_process import WsProcess
    from fractalsync_serve.ws_server import WsServer
    from fractalsync_tracking.slow_clock import SlowClock
    from fractalsync_tracking.structure import StructureTracker

    publisher = Publisher()
    engine_box = []
    if kind == "process":
        ws = WsProcess("127.0.0.1", 0, lambda c, t: engine_box[0].submit(c, t), quiet=True)
    else:
        ws = WsServer("127.0.0.1", 0, lambda c, t: engine_box[0].submit(c, t))
    ws.start()
    publisher.add_sink("websocket", ws.sink)
    source = FileSource(audio, rate, "demo song", play=False)
    engine = ServeEngine(source, SlowClock(rate, structure=StructureTracker()), publisher)
    engine_box.append(engine)
    proc = None
    if clients:
        proc = subprocess.Popen([sys.executable, "-c", CLIENT_SCRIPT, str(ws.port),
                                 str(clients), str(seconds + 2)], stdout=subprocess.PIPE,
                                text=True)
        time.sleep(3.0)  # the clients connect
    stop = threading.Event()
    threading.Timer(seconds, stop.set).start()
    stats = engine.run(stop)
    received = proc.communicate(timeout=60)[0].strip() if proc else ""
    ws.stop()
    push, pub = (x * 1e3 for x in engine.timings())
    if kind == "process":
        assert ws.dropped == ws.backlog_dropped == 0  # the server process kept up
        return push, pub, ws.counters["clients_dropped"], stats.dropped_samples, received
    return push, pub, ws.clients_dropped, stats.dropped_samples, received


def test_serve_hop_cost_with_fifty_clients(benchmark):
    from fractalsync_models import export_beatnet
    from fractalsync_models.training.song_generator import generate_song

    export_beatnet(models=1)
    seconds = float(os.environ.get("FRACTALSYNC_BENCH_SERVE_S", "20"))
    song = generate_song(2026, sample_rate=44100)
    audio = song.audio[: int(44100 * (seconds + 5)), None].astype(np.float32)
    results = {(k, c): [] for k in ("process", "thread") for c in (0, 50)}

    def measure():
        for _ in range(2):
            for key in results:
                results[key].append(_run(audio, 44100, seconds / 2, key[1], key[0]))

    benchmark.pedantic(measure, rounds=1, iterations=1)
    print(f"\nfractalsync-serve per 1024-sample block at 44.1 kHz (23.2 ms), {seconds:g} s per "
          f"configuration, load {os.getloadavg()[0]:.1f}:")
    for (kind, clients), runs in results.items():
        push = np.concatenate([r[0] for r in runs])
        pub = np.concatenate([r[1] for r in runs])
        hop = push + pub
        dropped = sum(r[2] for r in runs)
        lost = sum(r[3] for r in runs)
        pct = {name: np.percentile(v, [50, 99]) for name, v in
               (("push", push), ("publish", pub), ("hop", hop))}
        line = f"  server {kind}, {clients:2d} clients: " + "; ".join(
            f"{name} p50 {p50:.3f} ms, p99 {p99:.3f} ms" for name, (p50, p99) in pct.items())
        line += f"; {len(push)} blocks, {lost} input samples dropped"
        if clients:
            line += (f"; clients dropped {dropped} (the stalled one per run); messages per "
                     f"reading client (min max): {', '.join(r[4] for r in runs)}")
        print(line)
        assert lost == 0
        if clients:
            assert dropped == len(runs)
