"""Latency of fractalsync-serve on loopback: from a beat in the audio to the OSC beat message
and to the WebSocket message that shows it.

Run: .venv/bin/python benchmarks/measure_serve_latency.py [--seconds 81] [--latency-ms 0]

A generated song with exact beats (the demo song, seed 2026, 121.5 BPM, 48 kHz) is written to
``fractalsync-serve --stdin-pcm 48000 --osc ... --ws 0`` (a subprocess) in 1024-sample blocks,
paced in real time like a sound card: block j is written when its last sample "has happened",
at ``t0 + (j + 1) * 1024 / 48000``. True beat b is thus heard at ``t0 + beat_b``. Received on
loopback in this process, each with its arrival time (``time.time()``):

* OSC ``/fractalsync/beat`` (a UDP socket; the bundle's time tag is kept too);
* WebSocket state messages: the first one whose published ``clock.beat_count`` is higher than
  the previous message's is that beat's message.

Each received beat is matched to the nearest true beat (within a third of a beat); beats of the
first ``--skip`` seconds (the tracker locking on) are left out. Printed: p50/p99 of arrival -
true beat time for OSC and WebSocket, of the OSC time tag - true beat time (the prediction's
error), of arrival - time tag (delivery), and the share of true beats matched. The published
beat is *predicted* (the serve clock extrapolates the tracker's phase), so a beat can arrive
before it is heard (a negative latency); ``--latency-ms`` moves the published clock that much
earlier.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time

import numpy as np

RATE, BLOCK = 48000, 1024


class OscBeats(threading.Thread):
    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.2)
        self.beats: list[tuple[float, int, float]] = []  # arrival, count, time tag
        self.stop = threading.Event()

    def run(self) -> None:
        from pythonosc.osc_bundle import OscBundle

        while not self.stop.is_set():
            try:
                dgram = self.sock.recv(65536)
            except TimeoutError:
                continue
            now = time.time()
            bundle = OscBundle(dgram)
            for msg in bundle:
                if msg.address == "/fractalsync/beat":
                    self.beats.append((now, msg.params[0], bundle.timestamp))


class WsBeats(threading.Thread):
    def __init__(self, port: int) -> None:
        super().__init__(daemon=True)
        self.port = port
        self.beats: list[tuple[float, int]] = []
        self.stop = threading.Event()

    def run(self) -> None:
        asyncio.run(self._main())

    async def _main(self) -> None:
        from websockets.asyncio.client import connect
        from websockets.exceptions import ConnectionClosed

        last = None
        async with connect(f"ws://127.0.0.1:{self.port}/") as ws:
            while not self.stop.is_set():
                try:
                    text = await asyncio.wait_for(ws.recv(), 0.5)
                except asyncio.TimeoutError:
                    continue
                except ConnectionClosed:  # the server stopped
                    return
                now = time.time()
                msg = json.loads(text)
                if msg.get("type") != "state" or msg["clock"]["source"] == "none":
                    continue
                count = msg["clock"]["beat_count"]
                if last is not None and count > last:
                    self.beats.append((now, count))
                last = count


def match(arrivals: np.ndarray, true_wall: np.ndarray, spb: float) -> np.ndarray:
    """arrival - nearest true beat, for the arrivals within spb/3 of one."""
    idx = np.clip(np.searchsorted(true_wall, arrivals), 1, len(true_wall) - 1)
    left, right = true_wall[idx - 1], true_wall[idx]
    nearest = np.where(arrivals - left < right - arrivals, left, right)
    d = arrivals - nearest
    return d[np.abs(d) <= spb / 3]


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--seconds", type=float, default=81.0, help="audio played (default: all)")
    p.add_argument("--skip", type=float, default=10.0, help="seconds left out at the start")
    p.add_argument("--latency-ms", type=float, default=0.0, help="passed to the server")
    p.add_argument("--seed", type=int, default=2026)
    args = p.parse_args(argv)

    from fractalsync_models.training.song_generator import generate_song

    song = generate_song(args.seed, sample_rate=RATE)
    audio = song.audio[: int(args.seconds * RATE)].astype("<f4")
    spb = 60.0 / song.tempo_bpm
    osc = OscBeats()
    osc.start()
    proc = subprocess.Popen(
        [sys.executable, "-m", "fractalsync_serve.cli", "--stdin-pcm", str(RATE), "--osc",
         f"127.0.0.1:{osc.sock.getsockname()[1]}", "--ws", "0", "--latency-ms",
         str(args.latency_ms), "--quiet"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
        text=False, env=dict(os.environ, PYTHONUNBUFFERED="1"))
    line = proc.stdout.readline().decode()
    port = int(re.search(r"ws://[^:]+:(\d+)/", line).group(1))
    ws = WsBeats(port)
    ws.start()
    time.sleep(1.0)  # the client connects
    t0 = time.time()
    n_blocks = -(-len(audio) // BLOCK)
    for j in range(n_blocks):
        delay = t0 + (j + 1) * BLOCK / RATE - time.time()
        if delay > 0:
            time.sleep(delay)
        proc.stdin.write(audio[j * BLOCK:(j + 1) * BLOCK].tobytes())
        proc.stdin.flush()
    time.sleep(1.0)
    proc.send_signal(signal.SIGINT)
    proc.stdin.close()
    tail = proc.stdout.read().decode().strip()
    proc.wait(30)
    osc.stop.set()
    ws.stop.set()
    osc.join()
    ws.join()

    beats = song.beats[(song.beats >= args.skip) & (song.beats < len(audio) / RATE)]
    true_wall = t0 + beats
    o = np.asarray([b for b in osc.beats if b[0] >= t0 + args.skip])
    w = np.asarray([b for b in ws.beats if b[0] >= t0 + args.skip])
    osc_lat = match(o[:, 0], true_wall, spb) * 1e3
    tag_err = match(o[:, 2], true_wall, spb) * 1e3
    ws_lat = match(w[:, 0], true_wall, spb) * 1e3
    print(f"measure_serve_latency: seed {args.seed} ({song.tempo_bpm:.1f} BPM), "
          f"{len(audio) / RATE:.0f} s via --stdin-pcm {RATE}, --latency-ms {args.latency_ms:g},"
          f" {len(beats)} true beats after {args.skip:g} s, load {os.getloadavg()[0]:.1f}")
    for name, lat in (("OSC /fractalsync/beat arrival", osc_lat),
                      ("OSC bundle time tag", tag_err),
                      ("WebSocket beat message arrival", ws_lat)):
        print(f"  {name} - true beat: p50 {np.percentile(lat, 50):+.1f} ms, p99 "
              f"{np.percentile(lat, 99):+.1f} ms, p1 {np.percentile(lat, 1):+.1f} ms "
              f"({len(lat)} beats matched, {len(lat) / len(beats):.0%})")
    delivery = (o[:, 0] - o[:, 2]) * 1e3
    print(f"  OSC arrival - its own time tag (delivery, prediction error excluded): p50 "
          f"{np.percentile(delivery, 50):+.1f} ms, p99 {np.percentile(delivery, 99):+.1f} ms")
    print(f"  server: {tail.splitlines()[-1] if tail else '(no summary)'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
