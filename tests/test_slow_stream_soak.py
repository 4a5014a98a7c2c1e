"""A 10-minute simulated live stream through SlowClock: 48 kHz audio in 1024-sample blocks
(28 125 pushes, as fast as the machine goes), a synthetic drum/bass item tiled end to end.

Checks: states keep describing stream time (the lag ``stream_time - latest.t_sec`` stays
inside the range it had in the first minute: no drift), every state sits on its analysis
frame's time, beat counts never go back, and memory is flat: the traced Python/numpy memory
(tracemalloc) and the process RSS after the tenth minute are within a small bound of their
values after the first minute.

Runtime on the 2-core dev machine: 37-39 s wall (16 s of CPU) with other jobs running (load
average ~9), most of it tracemalloc's overhead; without tracemalloc the 10 minutes take ~18 s.
Under 60 s, so it is not marked slow.
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
TRACED_BOUND = 64 * 1024  # bytes of traced growth from minute 1 to minute 10
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
    first_minute_end, last = int(np.ceil(MINUTE)), N_BLOCKS - 1
    memory = {}
    n_states, beat_count = 0, 0
    tracemalloc.start()
    try:
        for k in range(N_BLOCKS):
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
                memory[k] = (tracemalloc.get_traced_memory()[0], _rss())
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
    tail = lags[int(MINUTE * (MINUTES - 1)):]
    assert not np.isnan(first).any() and not np.isnan(tail).any()
    eps = 1e-9  # float rounding of times near 600 s
    assert first.min() - eps <= tail.min() and tail.max() <= first.max() + eps
    assert 0.0 < lags[~np.isnan(lags)].min() and lags[~np.isnan(lags)].max() < 0.2
    assert abs(tail.mean() - first.mean()) < 1e-3

    traced = memory[last][0] - memory[first_minute_end][0]
    rss = memory[last][1] - memory[first_minute_end][1]
    print(f"\n10-minute stream: lag first minute {first.min():.4f}..{first.max():.4f} s, "
          f"last minute {tail.min():.4f}..{tail.max():.4f} s; memory minute 1 -> 10: "
          f"traced {traced:+d} B, RSS {rss:+d} B")
    assert traced < TRACED_BOUND, f"traced memory grew by {traced} bytes over 9 minutes"
    assert rss < RSS_BOUND, f"RSS grew by {rss} bytes over 9 minutes"
