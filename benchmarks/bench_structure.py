"""StructureTracker speed: ``update`` per slow step against the 100 us target (issue 10).

Run: .venv/bin/python -m pytest benchmarks/bench_structure.py --benchmark-only

One round is one ``StructureTracker.update`` with exactly one slow step pending, as on the live
path with 1024-sample blocks at 48 kHz (a block is 21 ms, a slow step 80 ms): pairing the step's
inputs with the beat state (SlowStepInputs.take), ``Anticipator.step`` (the default engine, the
numba kernel), the display hysteresis (numba kernel), the StructureState and the history entry.
Between rounds (untimed) the beat tracker analyses the next blocks of 4 min of real music (the
reference excerpt, resampled to 48 kHz and repeated) until the next step completes. The frames'
accumulation (``on_frames``, 4 vector additions per step) runs inside the analysis clock's push,
outside the timed call. Target: p99 <= 100 us (0.125 % of the 80 ms step). The output gives the
p99 against that budget and the 1-minute load average before and after the run (the machine's
other work shows in the tail: quote the load with the figures). A second pass of as many steps
times each call again and counts the thread's involuntary context switches around it
(``getrusage(RUSAGE_THREAD).ru_nivcsw``, read outside the timed span): its p99 over the calls
that were not preempted is the code's own tail, apart from the machine's other work.
"""

from __future__ import annotations

import os
import resource
import time
from pathlib import Path

import numpy as np

from fractalsync_dsp.resample import resample
from fractalsync_models import export_beatnet
from fractalsync_tracking.analysis_clock import AnalysisClock
from fractalsync_tracking.beat_tracker import BeatTracker
from fractalsync_tracking.structure import StructureTracker

SR, BLOCK = 48000, 1024
PERIOD_US = 80_000.0
TARGET_US = 100.0
STEPS = 3000
CLIP = Path(__file__).parent.parent / "tests" / "data" / "reference" / "vibe_ace" / "x22050.npy"


def test_update_per_slow_step(benchmark):
    export_beatnet(models=1)
    x = np.tile(resample(np.load(CLIP), 22050, SR), 18)  # 540 s: 6750 slow steps, no reset
    clock = AnalysisClock()
    beats = BeatTracker(clock=clock)
    tracker = clock.add_consumer(StructureTracker(history_steps=64))
    assert tracker.anticipator.engine == "numba"  # the default engine
    position = 0

    def next_step():
        """Push blocks until a slow step is pending; its states are update's argument."""
        nonlocal position
        states = []
        while tracker.pending_steps == 0:
            if position + BLOCK > len(x):
                clock.reset()  # the tracker too (it is a clock consumer)
                position, states = 0, []
            states += beats.push(x[position:position + BLOCK], SR).states
            position += BLOCK
        return (states,), {}

    for _ in range(100):  # warm-up
        tracker.update(*next_step()[0])
    load_before = os.getloadavg()[0]
    before = tracker.steps
    benchmark.pedantic(tracker.update, setup=next_step, rounds=STEPS, iterations=1)
    assert tracker.steps - before == STEPS  # one slow step per timed call
    load = (load_before, os.getloadavg()[0])
    us = np.asarray(benchmark.stats.stats.data) * 1e6
    p50, p90, p99 = np.percentile(us, [50, 90, 99])
    wall = np.empty(STEPS)
    preempted = np.zeros(STEPS, bool)
    for i in range(STEPS):
        (states,), _ = next_step()
        switches = resource.getrusage(resource.RUSAGE_THREAD).ru_nivcsw
        t0 = time.perf_counter_ns()
        tracker.update(states)
        wall[i] = (time.perf_counter_ns() - t0) / 1e3
        preempted[i] = resource.getrusage(resource.RUSAGE_THREAD).ru_nivcsw != switches
    assert tracker.steps - before == 2 * STEPS
    alone = wall[~preempted]
    q50, q99 = np.percentile(alone, [50, 99])
    benchmark.extra_info.update(p50_us=float(p50), p99_us=float(p99), target_us=TARGET_US,
                                unpreempted_p50_us=float(q50), unpreempted_p99_us=float(q99),
                                preempted_calls=int(preempted.sum()), load_1min=load)
    print(
        f"\nStructureTracker.update with one slow step pending (anticipator engine "
        f"{tracker.anticipator.engine}), {STEPS} steps: "
        f"p50 {p50:.1f} us, p90 {p90:.1f} us, p99 {p99:.1f} us, max {us.max():.1f} us; "
        f"p99 = {100 * p99 / PERIOD_US:.3f} % of the 80 ms slow step; "
        f"p99 {p99:.1f} us against the {TARGET_US:.0f} us budget: "
        f"{'met' if p99 <= TARGET_US else 'MISSED'} "
        f"(load average {load[0]:.2f} before, {load[1]:.2f} after, {os.cpu_count()} CPUs)"
        f"\n  second pass, {STEPS} steps: {preempted.sum()} calls preempted (involuntary "
        f"context switch); the {alone.size} others: p50 {q50:.1f} us, p99 {q99:.1f} us, "
        f"max {alone.max():.1f} us"
    )
