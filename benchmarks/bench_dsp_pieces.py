"""Speed of the small DSP pieces, each beside a plain reference measured in the same run.

Run: .venv/bin/python -m pytest benchmarks/bench_dsp_pieces.py --benchmark-only -s

- StreamResampler: per 1024-sample push at 48 kHz -> 22050 Hz (budget: the 21.3 ms block),
  beside a bare soxr.ResampleStream (the wrapper's own cost is the difference).
- FeatureRing: append one 272-value frame, read the last 1 / 128 frames into `out=`
  (budget: the 20 ms analysis hop), beside a deque-based reference.
- MicroFeatures: per analysis frame (budget: the 20 ms hop), beside the numpy reference of
  tests/test_micro.py.
"""

from __future__ import annotations

import importlib.util
import time
from collections import deque
from pathlib import Path

import numpy as np
import pytest
import soxr

from fractalsync_dsp.feature_ring import FeatureRing
from fractalsync_dsp.micro import MicroFeatures, micro_features
from fractalsync_dsp.resample import StreamResampler

BLOCK_US = 1e6 * 1024 / 48000
HOP_US = 1e6 * 441 / 22050
RNG = np.random.default_rng(0)


def _load_micro_reference():
    path = Path(__file__).resolve().parents[1] / "tests" / "test_micro.py"
    spec = importlib.util.spec_from_file_location("_micro_reference", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.ref_micro


def _times_us(fn, args_list) -> np.ndarray:
    out = np.empty(len(args_list))
    for i, args in enumerate(args_list):
        t0 = time.perf_counter_ns()
        fn(*args)
        out[i] = (time.perf_counter_ns() - t0) / 1e3
    return out


def _report(label: str, fast: np.ndarray, ref: np.ndarray, budget_us: float, what: str) -> str:
    p50, p99 = np.percentile(fast, [50, 99])
    r50, r99 = np.percentile(ref, [50, 99])
    return (
        f"\n{label}: p50 {p50:.2f} us, p99 {p99:.2f} us ({100 * p99 / budget_us:.3f} % of the "
        f"{budget_us / 1e3:.1f} ms {what} at p99); reference p50 {r50:.2f} us, p99 {r99:.2f} us"
        f" -> ratio {r50 / p50:.2f}x at p50"
    )


def test_stream_resampler_per_block(benchmark):
    audio = (0.3 * RNG.standard_normal((48000 * 20, 2))).astype(np.float32)
    blocks = [(audio[i : i + 1024],) for i in range(0, len(audio), 1024)]
    mono = [(np.ascontiguousarray(b[0].mean(axis=1)),) for b in blocks]
    rs = StreamResampler(48000)  # default quality
    rs.push(audio[:48000])
    fast = _times_us(rs.push, blocks)
    bare = soxr.ResampleStream(48000, 22050, 1, dtype="float32", quality=rs.quality)
    ref = _times_us(bare.resample_chunk, mono)
    benchmark(rs.push, blocks[0][0])
    print(_report(f"StreamResampler {rs.quality} stereo 1024 @48k", fast, ref, BLOCK_US, "block")
          + " (reference: bare soxr stream on pre-mixed mono)")


@pytest.mark.parametrize("T", [1, 128])
def test_feature_ring(benchmark, T):
    dim, n = 272, 20000
    frames = RNG.standard_normal((n, dim)).astype(np.float32)
    ring, out = FeatureRing(512, dim), np.empty((T, dim), np.float32)
    dq: deque = deque(maxlen=512)

    def ring_step(frame):
        ring.append(frame)
        ring.last(T, out=out)

    def deque_step(frame):
        dq.append(frame.copy())
        np.array(list(dq)[-T:])

    fast = _times_us(ring_step, [(f,) for f in frames])
    ref = _times_us(deque_step, [(f,) for f in frames])
    benchmark(ring_step, frames[0])
    print(_report(f"FeatureRing append + last({T}, out=) dim {dim}", fast, ref, HOP_US, "hop")
          + " (reference: deque + np.array)")


def test_micro_features(benchmark):
    ref_micro = _load_micro_reference()
    x = (0.3 * RNG.standard_normal(441 * 3000 + 1411)).astype(np.float32)
    frames = np.stack([x[i * 441 : i * 441 + 1411] for i in range(3000)])
    mags = np.abs(np.fft.rfft(np.hanning(1411) * frames, axis=1))[:, :705].astype(np.float32)
    micro = MicroFeatures()
    micro.update(frames[0], mags[0])
    fast = _times_us(micro.update, list(zip(frames, mags, strict=True)))
    # the numpy reference per frame: the previous frame is needed for flux
    ref = _times_us(ref_micro, [(frames[i - 1 : i + 1], mags[i - 1 : i + 1])
                                for i in range(1, 1000)])
    benchmark(micro.update, frames[1], mags[1])
    t0 = time.perf_counter()
    micro_features(frames, mags)
    batch_fps = len(frames) / (time.perf_counter() - t0)
    t0 = time.perf_counter()
    ref_micro(frames, mags)
    ref_fps = len(frames) / (time.perf_counter() - t0)
    print(_report("MicroFeatures.update per frame", fast, ref, HOP_US, "hop")
          + f"\nmicro_features batch: {batch_fps:,.0f} frames/s; numpy reference batch "
          f"{ref_fps:,.0f} frames/s -> ratio {batch_fps / ref_fps:.2f}x")
