"""BeatNet CRNN speed: ``step`` per 20 ms frame and ``run`` per frame over 3000 frames.

Run: .venv/bin/python -m pytest benchmarks/bench_crnn.py --benchmark-only -s
Targets (issue 3): step p99 <= 80 us per frame, run <= 15 us per frame. Each figure is
printed with its share of the 20 ms analysis hop and its speed-up over the plain numpy
reference (fractalsync_models.crnn_reference) measured in the same run. The models are
converted on first use (``export_beatnet`` is a no-op when they are up to date).
"""

import time
from pathlib import Path

import numpy as np
import pytest

from fractalsync_models import BeatNetCRNN, export_beatnet
from fractalsync_models.crnn_reference import reference_forward
from fractalsync_models.export_beatnet import fetch_wheel, read_weights

HOP_US = 20_000.0
REF = Path(__file__).parent.parent / "tests" / "data" / "reference"


@pytest.fixture(scope="module")
def features() -> np.ndarray:
    """3000 real frames (60 s): the two reference excerpts back to back."""
    clips = ("vibe_ace", "lets_go_fishin")
    return np.concatenate([np.load(REF / clip / "features.npy") for clip in clips])


@pytest.fixture(scope="module")
def crnn() -> BeatNetCRNN:
    (path,) = export_beatnet(models=1)
    return BeatNetCRNN(path=path)


@pytest.fixture(scope="module")
def reference_weights():
    return {k: v.astype(np.float64) for k, v in read_weights(fetch_wheel(), 1).items()}


def per_frame_us(step, frames: np.ndarray) -> np.ndarray:
    """Wall time of ``step(frame)`` for each frame, in microseconds."""
    out = np.empty(len(frames))
    for i, frame in enumerate(frames):
        t0 = time.perf_counter_ns()
        step(frame)
        out[i] = (time.perf_counter_ns() - t0) / 1e3
    return out


def reference_step_us(weights, frames: np.ndarray) -> np.ndarray:
    h = np.zeros((2, 1, 150))
    c = np.zeros((2, 1, 150))

    def step(frame):
        nonlocal h, c
        _, h, c = reference_forward(weights, frame[None, None], h, c)

    return per_frame_us(step, frames)


def test_step_per_frame(benchmark, crnn, features, reference_weights):
    out = np.empty(3, np.float32)
    crnn.reset()
    per_frame_us(crnn.step, features[:200])  # warm-up
    crnn.reset()
    times = per_frame_us(lambda f: crnn.step(f, out=out), features)
    ref = reference_step_us(reference_weights, features[:300])
    benchmark(crnn.step, features[0], out)
    p50, p99 = np.percentile(times, [50, 99])
    r50 = np.percentile(ref, 50)
    benchmark.extra_info.update(p50_us=p50, p99_us=p99, hop_share_p99=p99 / HOP_US)
    print(
        f"\nBeatNetCRNN.step (ONNX) per frame over {len(times)} frames: p50 {p50:.1f} us, "
        f"p99 {p99:.1f} us = {100 * p99 / HOP_US:.2f} % of the 20 ms hop (target p99 <= 80 us)"
        f"\nnumpy reference step: p50 {r50:.1f} us -> ONNX {r50 / p50:.1f}x faster at p50"
    )


def test_step_plain_run_alternative(benchmark, crnn, features):
    """The rejected alternative to IOBinding: ``session.run`` with feeds (outputs allocated).

    Same input checks as ``BeatNetCRNN.step``; the two are timed interleaved, frame by frame.
    """
    import onnxruntime as ort

    from fractalsync_models.crnn import _load_frame

    options = ort.SessionOptions()
    options.intra_op_num_threads = options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    sess = ort.InferenceSession(str(crnn.path), options, providers=["CPUExecutionProvider"])
    frame = np.zeros((1, 1, 272), np.float32)
    finite = np.zeros(272, bool)
    h = np.zeros((2, 1, 150), np.float32)
    c = np.zeros((2, 1, 150), np.float32)
    feeds = {"features": frame, "h0": h, "c0": c}

    def plain_step(f, out):
        _load_frame(f, frame[0, 0], finite)
        probs, h[...], c[...] = sess.run(["probs", "hN", "cN"], feeds)
        out[...] = probs[0, 0]

    out_a = np.empty(3, np.float32)
    out_b = np.empty(3, np.float32)
    crnn.reset()
    iob = np.empty(len(features))
    plain = np.empty(len(features))
    for i, f in enumerate(features):
        t0 = time.perf_counter_ns()
        crnn.step(f, out_a)
        t1 = time.perf_counter_ns()
        plain_step(f, out_b)
        iob[i], plain[i] = (t1 - t0) / 1e3, (time.perf_counter_ns() - t1) / 1e3
    assert np.abs(out_a - out_b).max() <= 1e-6
    benchmark(plain_step, features[0], out_b)
    print(
        f"\ninterleaved: BeatNetCRNN.step (IOBinding) p50 {np.percentile(iob, 50):.1f} us, "
        f"p99 {np.percentile(iob, 99):.1f} us | plain session.run step "
        f"p50 {np.percentile(plain, 50):.1f} us, p99 {np.percentile(plain, 99):.1f} us"
    )


def test_run_3000_frames(benchmark, crnn, features, reference_weights):
    crnn.run(features[:100])  # warm-up
    benchmark.pedantic(crnn.run, args=(features,), rounds=7, iterations=1)
    us = 1e6 * benchmark.stats.stats.median / len(features)
    z = np.zeros((2, 1, 150))
    t0 = time.perf_counter()
    reference_forward(reference_weights, features[None, :300], z, z)
    ref_us = 1e6 * (time.perf_counter() - t0) / 300
    benchmark.extra_info.update(us_per_frame=us, ratio_to_numpy=ref_us / us)
    print(
        f"\nBeatNetCRNN.run (ONNX) over {len(features)} frames: {us:.2f} us/frame (median of 7) "
        f"= {100 * us / HOP_US:.3f} % of the 20 ms hop, {HOP_US / us:,.0f}x real time "
        f"(target <= 15 us/frame)\nnumpy reference run: {ref_us:.1f} us/frame "
        f"-> ONNX {ref_us / us:.1f}x faster"
    )
