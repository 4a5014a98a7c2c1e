"""A 10-minute simulated live stream through SlowClock: 48 kHz audio in 1024-sample blocks
(28 125 pushes, as fast as the machine goes), a synthetic drum/bass item tiled end to end.

Checks: states keep describing stream time (the lag ``stream_time - latest.t_sec`` stays
inside the range it had in the first minute: no drift), every state sits on its analysis
frame's time, beat counts never go back, and memory is flat: the process RSS after the tenth
minute is within 8 MiB of its value after the first (measured: +0.6 to +2.6 MiB, allocator
arenas), and the Python/numpy memory allocated during the tenth minute and still alive at its
end (tracemalloc, run for the last minute only: tracing all ten doubles the runtime) is under
64 KiB (measured: ~2.4 KB, the states it holds). A leak of 24 bytes per push would exceed it.

Runtime on the 2-core dev machine: 17.5 s for the test plus 2.8 s for the item (9 s of CPU),
measured with other jobs running (load average ~11). Under 60 s, so it is not marked slow.
"""

from __future__ import annotations

import gc
import os
import tracemalloc

import numpy as np
import pytest

from fractalsync_models.training.synth import make_item
from fractalsync_tracking.slow_clock import INITIAL_BEAT, SlowClock

SR, BLOCK = 48000, 1024
MINUTES = 10
N_BLOCKS = MINUTES * 60 * SR // BLOCK  # 28125
MINUTE = 60 * SR / BLOCK  # 2812.5 blocks
LOOP_BLOCKS = 1400  # the tiled item: 29.87 s
TRACED_BOUND = 64 * 1024  # bytes allocated in the last minute and still alive at its end
RSS_BOUND = 8 * 1024 * 1024  # bytes of RSS growth (allocator arenas, onnxruntime scratch)


def _rss() -> int:
    """Resident set size of this process in bytes (Linux /proc)."""
    with open(f"/proc/{os.getpid()}/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


@pytest.fixture(scope="module")
def loop(beatnet_models_dir):  # the fixture makes sure the ONNX models exist
    item = make_item("soak_loop", 124.0, duration=30.0, sample_rate=SR, seed=11)
    return np.ascontiguousarray(item.audio[: LOOP_BLOCKS * BLOCK])


def test_ten_minutes_no_drift_flat_memory(loop):
    clock = SlowClock(SR)
    lags = np.full(N_BLOCKS, np.nan)
    first_minute_end, last_minute, last = int(np.ceil(MINUTE)), int(MINUTE * 9), N_BLOCKS - 1
    rss = {}
    n_states, beat_count = 0, 0
    try:
        for k in range(N_BLOCKS):
            if k == last_minute:  # trace what the last minute allocates and keeps
                gc.collect()
                tracemalloc.start()
            j = (k % LOOP_BLOCKS) * BLOCK
            state = clock.push(loop[j:j + BLOCK])
            for s in clock.beat_states_since_last_push:
                assert s.beat_count >= beat_count
                beat_count = s.beat_count
                n_states += 1
            if state.beat is not INITIAL_BEAT:
                lags[k] = clock.stream_time - state.t_sec
            if k in (first_minute_end, last):
                gc.collect()
                rss[k] = _rss()
        kept = tracemalloc.get_traced_memory()[0]
    finally:
        tracemalloc.stop()

    assert clock.samples_consumed == N_BLOCKS * BLOCK
    assert clock.stream_time == MINUTES * 60.0
    assert n_states == clock.frames_analysed - 4
    assert clock.latest.t_sec == clock.frame_time(n_states - 1)  # frame times, not a sum of dt
    assert beat_count > 124 * MINUTES * 0.9  # the beat was followed all along

    # no drift: the lag in the last minute stays inside the first minute's range (after the
    # first states), and is bounded by the pipeline's delay
    first = lags[int(MINUTE * 0.1):first_minute_end]
    tail = lags[last_minute:]
    assert not np.isnan(first).any() and not np.isnan(tail).any()
    eps = 1e-9  # float rounding of times near 600 s
    assert first.min() - eps <= tail.min() and tail.max() <= first.max() + eps
    assert 0.0 < lags[~np.isnan(lags)].min() and lags[~np.isnan(lags)].max() < 0.2
    assert abs(tail.mean() - first.mean()) < 1e-3

    grown = rss[last] - rss[first_minute_end]
    print(f"\n10-minute stream: lag first minute {first.min():.4f}..{first.max():.4f} s, "
          f"last minute {tail.min():.4f}..{tail.max():.4f} s; memory: the last minute kept "
          f"{kept} B (tracemalloc), RSS minute 1 -> 10 {grown:+d} B")
    assert kept < TRACED_BOUND, f"the last minute's pushes kept {kept} bytes"
    assert grown < RSS_BOUND, f"RSS grew by {grown} bytes over 9 minutes"
