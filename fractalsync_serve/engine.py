"""The analysis loop of ``fractalsync-serve``: source -> SlowClock -> ServeClock -> Publisher.

:class:`ServeEngine` runs on one thread (the CLI's main thread). Each iteration reads one block
(``block_samples``, 1024 by default: 21.3 ms at 48 kHz) from the source, pushes it into the
:class:`~fractalsync_tracking.slow_clock.SlowClock`, applies the clients' queued commands to the
:class:`~fractalsync_serve.serve_clock.ServeClock`, feeds it the new beat states, and publishes
one :class:`~fractalsync_serve.publisher.Publication` (the input cadence). The outputs' sinks
never wait (see :mod:`fractalsync_serve.publisher`), so the loop's cost per block is the slow
clock's push plus the hand-over calls; both are recorded for the last ``TIMING_WINDOW`` blocks
(:meth:`ServeEngine.timings`, preallocated arrays: memory stays flat on long runs).

Commands arrive from other threads through :meth:`submit` (a ``deque.append``: no lock, never
waits) and are applied between two pushes. A tap's arrival time (Unix) is converted to stream
time with the source's clock: ``t = S + (arrival - wall_time(S))``, ``S`` the stream time
analysed so far.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from dataclasses import dataclass

import numpy as np

from .commands import Command
from .publisher import Publication, Publisher
from .serve_clock import ServeClock

__all__ = ["TIMING_WINDOW", "EngineStats", "ServeEngine"]

TIMING_WINDOW = 1 << 17  # blocks (50 min at 1024 samples and 44.1 kHz)


@dataclass(frozen=True)
class EngineStats:
    """What one :meth:`ServeEngine.run` did: publications, stream seconds analysed, wall
    seconds, input samples dropped by the source's ring, per-block cost p50/p99 (ms) of the
    push and of the publication hand-over."""

    publications: int
    stream_seconds: float
    wall_seconds: float
    dropped_samples: int
    push_ms: tuple[float, float]
    publish_ms: tuple[float, float]

    def line(self) -> str:
        return (f"{self.publications} publications, {self.stream_seconds:.1f} s of audio in "
                f"{self.wall_seconds:.1f} s; per block: push p50 {self.push_ms[0]:.2f} ms, "
                f"p99 {self.push_ms[1]:.2f} ms, publish p50 {self.publish_ms[0]:.3f} ms, p99 "
                f"{self.publish_ms[1]:.3f} ms; {self.dropped_samples} input samples dropped")


def _p50_p99(seconds: np.ndarray) -> tuple[float, float]:
    if seconds.size == 0:
        return (0.0, 0.0)
    return (float(np.percentile(seconds, 50) * 1e3), float(np.percentile(seconds, 99) * 1e3))


class ServeEngine:
    """Source -> slow clock -> serve clock -> publisher (see the module docstring).

    Parameters
    ----------
    source : one of :mod:`fractalsync_serve.inputs`' sources (not started yet)
    slow_clock : SlowClock at ``source.sample_rate``
    publisher : Publisher
    clock : ServeClock (default: latency 0)
    block_samples : int
        Samples per push (>= 1).
    """

    def __init__(self, source, slow_clock, publisher: Publisher,
                 clock: ServeClock | None = None, block_samples: int = 1024) -> None:
        if isinstance(block_samples, bool) or not isinstance(block_samples, int) \
                or block_samples < 1:
            raise ValueError(f"block_samples must be an int >= 1, got {block_samples!r}")
        if slow_clock.sample_rate != source.sample_rate:
            raise ValueError(f"the slow clock runs at {slow_clock.sample_rate} Hz, the source "
                             f"at {source.sample_rate} Hz")
        self.source, self.slow_clock, self.publisher = source, slow_clock, publisher
        self.clock = clock if clock is not None else ServeClock()
        self._block = np.zeros((block_samples, source.channels), np.float32)
        self._commands: deque[tuple[Command, float]] = deque(maxlen=1024)
        self._timings = np.zeros((2, TIMING_WINDOW))  # push, publish seconds per block
        self.command_errors = 0
        self._seq = 0

    def submit(self, cmd: Command, arrival: float) -> None:
        """Queue a tap/nudge/latency command (any thread; ``arrival`` = ``time.time()``)."""
        self._commands.append((cmd, arrival))

    def _apply_commands(self, stream_time: float) -> None:
        while self._commands:
            cmd, arrival = self._commands.popleft()
            if cmd.type == "tap":
                self.clock.tap(stream_time + arrival - self.source.wall_time(stream_time))
            elif cmd.type == "nudge":
                self.clock.nudge(cmd.value / 1e3)
            elif cmd.type == "latency":
                self.clock.set_latency(cmd.value / 1e3)

    def step(self, n: int) -> Publication:
        """Analyse the first ``n`` samples of the block buffer and publish (one iteration)."""
        t0 = time.perf_counter()
        slow = self.slow_clock
        state = slow.push(self._block[:n])
        t1 = time.perf_counter()
        s = slow.stream_time
        self._apply_commands(s)
        for beat in slow.beat_states_since_last_push:
            self.clock.update(beat)
        pub = Publication(seq=self._seq, state=state, events=slow.beat_events_since_last_push,
                          stream_time=s, wall_time=self.source.wall_time(s),
                          latency_s=self.clock.latency_s, clock=self.clock.at(s))
        self.publisher.publish(pub)
        i = self._seq % TIMING_WINDOW
        self._timings[0, i] = t1 - t0
        self._timings[1, i] = time.perf_counter() - t1
        self._seq += 1
        return pub

    def timings(self) -> tuple[np.ndarray, np.ndarray]:
        """(push, publish) seconds of the last ``min(blocks, TIMING_WINDOW)`` blocks (copies,
        in no particular order)."""
        n = min(self._seq, TIMING_WINDOW)
        return self._timings[0, :n].copy(), self._timings[1, :n].copy()

    def run(self, stop: threading.Event | None = None,
            max_stream_seconds: float | None = None) -> EngineStats:
        """Start the source and analyse until it ends, ``stop`` is set, or
        ``max_stream_seconds`` of audio were analysed; close the source; return the stats."""
        stop = stop if stop is not None else threading.Event()
        w0 = time.monotonic()
        self.source.start()
        try:
            while not stop.is_set():
                n = self.source.read(self._block)
                if n is None:
                    break
                if n:
                    self.step(n)
                    if max_stream_seconds is not None and \
                            self.slow_clock.stream_time >= max_stream_seconds:
                        break
        finally:
            self.source.close()
        return EngineStats(publications=self._seq, stream_seconds=self.slow_clock.stream_time,
                           wall_seconds=time.monotonic() - w0,
                           dropped_samples=int(getattr(self.source, "dropped_samples", 0)),
                           push_ms=_p50_p99(self.timings()[0]),
                           publish_ms=_p50_p99(self.timings()[1]))
