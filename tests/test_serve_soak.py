"""Soak: a long stream through fractalsync-serve's engine as fast as it runs (the ``--fast``
path: SlowClock with the structure model, serve clock, publisher and a sink checking every
publication).

One hour of audio (the demo song tiled, 48 kHz, 1024-sample blocks; 46 s here at load 0.7, up
to 4 min on a busy machine); ``FRACTALSYNC_SOAK_MINUTES=N`` runs N minutes instead. Checked:
the tracker's and the published beat counts never go back; the stream time of every
publication is exactly the samples consumed / rate; the lag of the beat state behind the stream
time and the beat accuracy against the true grid are the same in the last minute as in the
first (no drift); memory (RSS) grows by less than 16 MiB from minute 1 to the end.
"""

from __future__ import annotations

import os
import time

import numpy as np
import pytest

from fractalsync_serve.engine import ServeEngine
from fractalsync_serve.publisher import Publisher
from fractalsync_serve.serve_clock import ServeClock
from fractalsync_tracking.slow_clock import SlowClock
from fractalsync_tracking.structure import StructureTracker

pytestmark = pytest.mark.usefixtures("beatnet_models_dir")

RATE = 48000
MINUTES = float(os.environ.get("FRACTALSYNC_SOAK_MINUTES", "60"))


def rss_mib() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


class TiledSource:
    """The song repeated up to ``total`` samples, read as fast as asked (like --fast)."""

    def __init__(self, audio: np.ndarray, total: int) -> None:
        self.audio, self.total = audio, total
        self.sample_rate, self.channels = RATE, 1
        self.pos = 0
        self.dropped_samples = 0

    def start(self) -> None:
        pass

    def close(self) -> None:
        pass

    def wall_time(self, t: float) -> float:
        return time.time()

    def read(self, out: np.ndarray) -> int | None:
        n = min(len(out), self.total - self.pos)
        if n <= 0:
            return None
        k, length = 0, len(self.audio)
        while k < n:
            i = (self.pos + k) % length
            m = min(n - k, length - i)
            out[k:k + m, 0] = self.audio[i:i + m]
            k += m
        self.pos += n
        return n


class Checker:
    """A sink that checks each publication and keeps per-minute figures (small, bounded)."""

    def __init__(self, source: TiledSource) -> None:
        self.source = source
        self.last = (-1, -1)
        self.lags: dict[int, list[float]] = {}
        self.events: dict[int, list[float]] = {}
        self.rss: dict[int, float] = {}
        self.count = 0

    def __call__(self, pub) -> None:
        assert pub.stream_time == self.source.pos / RATE  # exactly the samples consumed
        counts = (pub.state.beat.beat_count, pub.clock.beat_count)
        assert counts[0] >= self.last[0] and counts[1] >= self.last[1], (counts, self.last)
        self.last = counts
        minute = int(pub.stream_time // 60)
        if pub.state.beat.conf > 0:
            self.lags.setdefault(minute, []).append(pub.stream_time - pub.state.t_sec)
        self.events.setdefault(minute, []).extend(e.t_sec for e in pub.events)
        if minute not in self.rss:
            self.rss[minute] = rss_mib()
        self.count += 1


def hit_rate(events, true_beats, tol=0.07) -> float:
    """Share of the reported beats within ``tol`` s of a true beat."""
    ev = np.asarray(events)
    idx = np.clip(np.searchsorted(true_beats, ev), 1, len(true_beats) - 1)
    near = np.minimum(np.abs(ev - true_beats[idx - 1]), np.abs(ev - true_beats[idx]))
    return float(np.mean(near <= tol))


def test_soak_fast_stream():
    from fractalsync_models.training.song_generator import generate_song

    song = generate_song(2026, sample_rate=RATE)
    audio = song.audio.astype(np.float32)
    total = int(MINUTES * 60 * RATE)
    source = TiledSource(audio, total)
    checker = Checker(source)
    publisher = Publisher()
    publisher.add_sink("check", checker)
    engine = ServeEngine(source, SlowClock(RATE, structure=StructureTracker()), publisher,
                         ServeClock())
    t0 = time.monotonic()
    stats = engine.run()
    wall = time.monotonic() - t0
    assert publisher.sink_names == ("check",)  # the checker never raised
    assert checker.count == stats.publications == -(-total // 1024)
    assert stats.stream_seconds == total / RATE
    # true beats of the tiled song
    length = len(audio) / RATE
    reps = int(np.ceil(total / len(audio)))
    truth = np.concatenate([song.beats + k * length for k in range(reps)])
    last = int(MINUTES) - 1  # the last full minute
    first_lag, last_lag = np.asarray(checker.lags[1]), np.asarray(checker.lags[last])
    for lag in (first_lag, last_lag):
        assert 0.09 <= lag.min() and lag.max() <= 0.2  # the measured 117-169 ms band
    assert abs(np.median(last_lag) - np.median(first_lag)) < 0.01
    first_hits, last_hits = hit_rate(checker.events[1], truth), \
        hit_rate(checker.events[last], truth)
    assert first_hits >= 0.8 and last_hits >= first_hits - 0.1
    growth = rss_mib() - checker.rss[1]
    print(f"\nsoak: {stats.stream_seconds / 60:.0f} min of audio in {wall:.0f} s "
          f"(load {os.getloadavg()[0]:.1f}); lag minute 1 {first_lag.min():.3f}-"
          f"{first_lag.max():.3f} s, minute {last} {last_lag.min():.3f}-{last_lag.max():.3f} s;"
          f" beats within 70 ms of the truth {first_hits:.3f} -> {last_hits:.3f}; RSS "
          f"{checker.rss[1]:.0f} MiB at minute 1, +{growth:.1f} MiB at the end; "
          f"{stats.line()}")
    assert growth < 16.0
