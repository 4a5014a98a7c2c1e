"""Front-end speed: streaming per 20 ms hop and batch frames/s, beside the numpy reference.

Run: .venv/bin/python -m pytest benchmarks/bench_frontend.py --benchmark-only -s
Targets (issue 2): streaming p99 <= 25 us per hop; batch >= 100 000 frames/s (madmom ~48 000).
"""

import time

import numpy as np
import pytest

from fractalsync_dsp.frontend import HOP, SAMPLE_RATE, BeatNetFrontEnd
from fractalsync_dsp.reference import NaiveStreamingFrontEnd, naive_features

HOP_US = 1e6 * HOP / SAMPLE_RATE


def per_hop_times_us(push, audio: np.ndarray) -> np.ndarray:
    """Wall time of each push of one 441-sample hop, in microseconds."""
    out = np.empty(len(audio) // HOP)
    for i in range(len(out)):
        block = audio[i * HOP : (i + 1) * HOP]
        t0 = time.perf_counter_ns()
        push(block)
        out[i] = (time.perf_counter_ns() - t0) / 1e3
    return out


@pytest.fixture(scope="module")
def audio():
    return (np.random.default_rng(0).standard_normal(SAMPLE_RATE * 60) * 0.3).astype(np.float32)


def test_streaming_per_hop(benchmark, audio):
    fe = BeatNetFrontEnd()
    fe.push(audio[:SAMPLE_RATE])  # warm-up
    fast = per_hop_times_us(fe.push, audio[: SAMPLE_RATE * 20])
    naive = per_hop_times_us(NaiveStreamingFrontEnd().push, audio[: SAMPLE_RATE * 5])
    block = audio[:HOP]
    benchmark(fe.push, block)
    p50, p99 = np.percentile(fast, [50, 99])
    n50, n99 = np.percentile(naive, [50, 99])
    benchmark.extra_info.update(p50_us=p50, p99_us=p99, hop_share_p99=p99 / HOP_US)
    print(
        f"\nstreaming front end per hop: p50 {p50:.1f} us, p99 {p99:.1f} us "
        f"({100 * p99 / HOP_US:.3f} % of the {HOP_US / 1e3:.0f} ms hop; target p99 <= 25 us)"
        f"\nnumpy reference per hop:     p50 {n50:.1f} us, p99 {n99:.1f} us "
        f"-> numba path {n50 / p50:.1f}x faster at p50"
    )


def test_batch_60s(benchmark, audio):
    fe = BeatNetFrontEnd()
    fe.features(audio[:SAMPLE_RATE])
    feats = benchmark.pedantic(fe.features, args=(audio,), rounds=5, iterations=1)
    fps = len(feats) / benchmark.stats.stats.min
    t0 = time.perf_counter()
    naive_features(audio[: SAMPLE_RATE * 10])
    naive_fps = 500 / (time.perf_counter() - t0)
    benchmark.extra_info.update(frames_per_s=fps, ratio_to_numpy=fps / naive_fps)
    print(
        f"\nbatch front end on 60 s: {fps:,.0f} frames/s ({fps / 50:,.0f}x real time; "
        f"target >= 100 000 frames/s, madmom ~48 000)"
        f"\nnumpy reference: {naive_fps:,.0f} frames/s -> numba path {fps / naive_fps:.1f}x faster"
    )
