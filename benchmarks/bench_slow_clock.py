"""SlowClock speed: the cost of one input block against the input block budget, and of the
render loop's pure reads.

Run: .venv/bin/python -m pytest benchmarks/bench_slow_clock.py --benchmark-only

* ``SlowClock.push`` of 1024 samples at 48 kHz (analysis clock + CRNN step + particle filter +
  micro features + feature rings + one SlowState), p50/p99 over a real excerpt, against the
  block's own duration (21.3 ms: the budget for keeping up with the input), and against the
  bare ``BeatTracker.push`` of the same blocks, interleaved in the same run (SlowClock's own
  overhead).
* The render loop's reads: ``features_at(t)`` and ``feature_window(T, t)`` (T = 64).
"""

from __future__ import annotations

import itertools
import time
from pathlib import Path

import numpy as np

from fractalsync_dsp.resample import resample
from fractalsync_models import export_beatnet
from fractalsync_tracking.beat_tracker import BeatTracker
from fractalsync_tracking.slow_clock import SlowClock

SR, BLOCK = 48000, 1024
BUDGET_US = BLOCK / SR * 1e6  # 21 333 us
CLIP = Path(__file__).parent.parent / "tests" / "data" / "reference" / "vibe_ace" / "x22050.npy"


def stats(us: np.ndarray) -> tuple[float, float]:
    p50, p99 = np.percentile(us, [50, 99])
    return float(p50), float(p99)


def test_slow_clock_push(benchmark):
    export_beatnet(models=1)
    x = resample(np.load(CLIP), 22050, SR)
    blocks = [x[i:i + BLOCK] for i in range(0, len(x) - BLOCK, BLOCK)]
    clock, tracker = SlowClock(SR), BeatTracker()
    for b in blocks[:200]:  # warm-up
        clock.push(b)
        tracker.push(b, SR)
    clock.reset()
    tracker.reset()
    times = np.empty((2, len(blocks)))
    for i, b in enumerate(blocks):  # interleaved: both see the same machine load
        t0 = time.perf_counter_ns()
        clock.push(b)
        t1 = time.perf_counter_ns()
        tracker.push(b, SR)
        times[:, i] = (t1 - t0) / 1e3, (time.perf_counter_ns() - t1) / 1e3

    # 60 FPS ticks over the last 8 s (their 64-frame windows are inside the 10.24 s kept)
    ticks = np.arange(clock.stream_time - 8.0, clock.stream_time, 1 / 60)
    reads = np.empty((2, len(ticks)))
    for i, t in enumerate(ticks):
        t0 = time.perf_counter_ns()
        clock.features_at(t)
        t1 = time.perf_counter_ns()
        clock.feature_window(64, t)
        reads[:, i] = (t1 - t0) / 1e3, (time.perf_counter_ns() - t1) / 1e3

    clock.reset()
    it = itertools.cycle(blocks)
    benchmark(lambda: clock.push(next(it)))
    p50, p99 = stats(times[0])
    b50, b99 = stats(times[1])
    f50, f99 = stats(reads[0])
    w50, w99 = stats(reads[1])
    benchmark.extra_info.update(p50_us=p50, p99_us=p99, budget_share_p99=p99 / BUDGET_US,
                                tracker_p50_us=b50, tracker_p99_us=b99)
    print(
        f"\nSlowClock.push of {BLOCK} samples at {SR} Hz over {len(blocks)} blocks "
        f"({len(blocks) * BLOCK / SR:.0f} s): p50 {p50:.1f} us, p99 {p99:.1f} us = "
        f"{100 * p99 / BUDGET_US:.2f} % of the {BUDGET_US / 1000:.1f} ms block"
        f"\n  BeatTracker.push of the same blocks, interleaved: p50 {b50:.1f} us, p99 {b99:.1f} us"
        f" (SlowClock's own share at p50: {p50 - b50:.1f} us: micro features, rings, SlowState)"
        f"\n  render-loop reads over {reads.shape[1]} ticks at 60 FPS: features_at p50 {f50:.1f}"
        f" us, p99 {f99:.1f} us; feature_window(64, t) p50 {w50:.1f} us, p99 {w99:.1f} us"
    )

