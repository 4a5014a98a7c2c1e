"""BeatNet CRNN speed: ``step`` per 20 ms frame and ``run`` per frame over 3000 frames.

Run: .venv/bin/python -m pytest benchmarks/bench_crnn.py --benchmark-only -s
Targets (issue 3): step p99 <= 80 us per frame, run <= 15 us per frame. Each figure is
printed with its share of the 20 ms analysis hop and its speed-up over the plain numpy
reference (fractalsync_models.crnn_reference) measured in the same run. ``step`` runs the
numba kernel (fractalsync_models.crnn_kernel) on the step graph's weights; it is timed
interleaved, frame by frame, against the step graph under onnxruntime with IOBinding (what
``step`` did before, :class:`OrtStepGraph`), checked and unchecked. The older choices are
timed against that graph too: the sequence graph (two ONNX ``LSTM`` nodes) run on one frame,
and a plain ``session.run`` instead of IOBinding. The models are converted on first use
(``export_beatnet`` is a no-op when they are up to date).
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
        f"\nBeatNetCRNN.step (numba kernel) per frame over {len(times)} frames: p50 {p50:.1f} us, "
        f"p99 {p99:.1f} us = {100 * p99 / HOP_US:.2f} % of the 20 ms hop (target p99 <= 80 us)"
        f"\nnumpy reference step: p50 {r50:.1f} us -> kernel {r50 / p50:.1f}x faster at p50"
    )


def interleaved_us(step_a, step_b, frames: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Wall times (us) of ``step_a(frame)`` and ``step_b(frame)``, alternating frame by frame."""
    a = np.empty(len(frames))
    b = np.empty(len(frames))
    for i, f in enumerate(frames):
        t0 = time.perf_counter_ns()
        step_a(f)
        t1 = time.perf_counter_ns()
        step_b(f)
        a[i], b[i] = (t1 - t0) / 1e3, (time.perf_counter_ns() - t1) / 1e3
    return a, b


class _BoundGraph:
    """A one-frame ONNX graph under onnxruntime with IOBinding on preallocated, double-buffered
    state; ``step`` with the same input checks as ``BeatNetCRNN.step``, ``bare`` with none (the
    counterpart of ``BeatNetCRNN._step_trusted``). Subclasses bind the state tensors."""

    state_shape: tuple

    def __init__(self, path):
        from onnxruntime import OrtValue

        from fractalsync_models.crnn import _open_session

        self.session = _open_session(path)
        self.frame = np.zeros((1, 1, 272), np.float32)
        self.finite = np.zeros(272, bool)
        self.probs = np.zeros((1, 1, 3), np.float32)
        self.state = np.zeros(self.state_shape, np.float32)
        self.cur = 0
        self.bindings = []
        for k in range(2):
            binding = self.session.io_binding()
            binding.bind_ortvalue_input("features", OrtValue.ortvalue_from_numpy(self.frame))
            binding.bind_ortvalue_output("probs", OrtValue.ortvalue_from_numpy(self.probs))
            self._bind_state(binding, k, OrtValue.ortvalue_from_numpy)
            self.bindings.append(binding)

    def reset(self):
        self.state.fill(0.0)

    def step(self, frame, out):
        from fractalsync_models.crnn import _load_frame

        _load_frame(frame, self.frame[0, 0], self.finite)
        # run_with_iobinding without a RunOptions object: passing one cost ~25 us per call
        self.session.run_with_iobinding(self.bindings[self.cur])
        self.cur = 1 - self.cur
        out[...] = self.probs[0, 0]
        return out

    def bare(self, frame, out):
        self.frame[0, 0] = frame
        self.session.run_with_iobinding(self.bindings[self.cur])
        self.cur = 1 - self.cur
        out[...] = self.probs[0, 0]


class OrtStepGraph(_BoundGraph):
    """``step`` as it was before the numba kernel: the one-frame step graph."""

    state_shape = (2, 2, 2, 1, 1, 150)  # [buffer, h/c, layer, 1, 1, unit]

    def _bind_state(self, binding, k, ov):
        from fractalsync_models.export_beatnet import STEP_STATE_INPUTS, STEP_STATE_OUTPUTS

        names = zip(STEP_STATE_INPUTS, STEP_STATE_OUTPUTS, strict=True)
        for j, (name_in, name_out) in enumerate(names):  # (h, c) of layer 0, then layer 1
            layer, kind = divmod(j, 2)
            binding.bind_ortvalue_input(name_in, ov(self.state[k, kind, layer]))
            binding.bind_ortvalue_output(name_out, ov(self.state[1 - k, kind, layer]))


def _report(name_a, a, name_b, b) -> str:
    (a50, a99), (b50, b99) = (np.percentile(t, [50, 99]) for t in (a, b))
    return (
        f"\n  {name_a:<40} p50 {a50:5.1f} us, p99 {a99:6.1f} us = {100 * a99 / HOP_US:.2f} % "
        f"of the 20 ms hop\n  {name_b:<40} p50 {b50:5.1f} us, p99 {b99:6.1f} us = "
        f"{100 * b99 / HOP_US:.2f} % of the 20 ms hop\n  ratio {name_a.split()[0]} / "
        f"{name_b.split()[0]}: p50 {a50 / b50:.2f}, p99 {a99 / b99:.2f}"
    )


def test_kernel_vs_step_graph(benchmark, crnn, features):
    """``BeatNetCRNN.step`` (numba kernel) against the step graph under onnxruntime, both with
    input checks, then the unchecked paths (``_step_trusted`` against the bare IOBinding
    call); interleaved frame by frame over the 3000 real frames."""
    graph = OrtStepGraph(crnn.step_path)
    out_k = np.empty(3, np.float32)
    out_g = np.empty(3, np.float32)
    crnn.reset()
    for f in features[:200]:  # warm-up (and the kernel's compilation), a sanity check
        assert np.abs(crnn.step(f, out_k) - graph.step(f, out_g)).max() <= 1e-4
    crnn.reset()
    graph.reset()
    kern_us, graph_us = interleaved_us(
        lambda f: crnn.step(f, out_k), lambda f: graph.step(f, out_g), features
    )
    crnn.reset()
    graph.reset()
    trusted_us, bare_us = interleaved_us(
        lambda f: crnn._step_trusted(f, out_k), lambda f: graph.bare(f, out_g), features
    )
    benchmark(crnn._step_trusted, features[0], out_k)
    (k50, k99), (g50, g99) = (np.percentile(t, [50, 99]) for t in (kern_us, graph_us))
    benchmark.extra_info.update(
        kernel_p50_us=k50, kernel_p99_us=k99, graph_p50_us=g50, graph_p99_us=g99
    )
    print(
        f"\ninterleaved over {len(features)} frames, per frame incl. input checks:"
        + _report("kernel (BeatNetCRNN.step)", kern_us, "graph (step graph, IOBinding)", graph_us)
        + "\nunchecked, interleaved:"
        + _report("kernel (_step_trusted)", trusted_us, "graph (bare run_with_iobinding)", bare_us)
    )


class SequenceGraphStep(_BoundGraph):
    """``step`` as it was before the step graph: the sequence graph (``LSTM`` nodes) on one
    frame, through IOBinding on preallocated double-buffered state, same input checks."""

    state_shape = (2, 2, 2, 1, 150)  # [buffer, h/c, layer, 1, unit]

    def _bind_state(self, binding, k, ov):
        binding.bind_ortvalue_input("h0", ov(self.state[k, 0]))
        binding.bind_ortvalue_input("c0", ov(self.state[k, 1]))
        binding.bind_ortvalue_output("hN", ov(self.state[1 - k, 0]))
        binding.bind_ortvalue_output("cN", ov(self.state[1 - k, 1]))


def test_step_graph_vs_sequence_graph(benchmark, crnn, features):
    """The step graph (:class:`OrtStepGraph`) against the sequence graph run on one frame."""
    graph = OrtStepGraph(crnn.step_path)
    old = SequenceGraphStep(crnn.path)
    out_new = np.empty(3, np.float32)
    out_old = np.empty(3, np.float32)
    for f in features[:200]:  # warm-up, and a check that both compute the same
        assert np.abs(graph.step(f, out_new) - old.step(f, out_old)).max() <= 1e-6
    new_us, old_us = interleaved_us(
        lambda f: graph.step(f, out_new), lambda f: old.step(f, out_old), features
    )
    benchmark(graph.step, features[0], out_new)
    (n50, n99), (o50, o99) = (np.percentile(t, [50, 99]) for t in (new_us, old_us))
    benchmark.extra_info.update(step_p50_us=n50, step_p99_us=n99, seq_p50_us=o50, seq_p99_us=o99)
    print(
        f"\ninterleaved over {len(features)} frames, per frame incl. input checks:"
        f"\n  step graph (OrtStepGraph.step):        p50 {n50:5.1f} us, p99 {n99:6.1f} us "
        f"= {100 * n99 / HOP_US:.2f} % of the 20 ms hop"
        f"\n  sequence graph (LSTM nodes), 1 frame:  p50 {o50:5.1f} us, p99 {o99:6.1f} us "
        f"= {100 * o99 / HOP_US:.2f} % of the 20 ms hop"
        f"\n  step graph / sequence graph: p50 {n50 / o50:.2f}, p99 {n99 / o99:.2f}"
    )


def test_step_plain_run_alternative(benchmark, crnn, features):
    """The rejected alternative to IOBinding: ``session.run`` with feeds (outputs allocated).

    Same step graph and input checks as :class:`OrtStepGraph`; the two are timed interleaved,
    frame by frame.
    """
    from fractalsync_models.crnn import _load_frame, _open_session
    from fractalsync_models.export_beatnet import STEP_STATE_INPUTS, STEP_STATE_OUTPUTS

    sess = _open_session(crnn.step_path)
    frame = np.zeros((1, 1, 272), np.float32)
    finite = np.zeros(272, bool)
    zeros = np.zeros((1, 1, 150), np.float32)
    feeds = {"features": frame, **{n: zeros for n in STEP_STATE_INPUTS}}
    names = ["probs", *STEP_STATE_OUTPUTS]

    def plain_step(f, out):
        _load_frame(f, frame[0, 0], finite)
        probs, *state = sess.run(names, feeds)
        feeds.update(zip(STEP_STATE_INPUTS, state, strict=True))
        out[...] = probs[0, 0]

    graph = OrtStepGraph(crnn.step_path)
    out_a = np.empty(3, np.float32)
    out_b = np.empty(3, np.float32)
    iob, plain = interleaved_us(
        lambda f: graph.step(f, out_a), lambda f: plain_step(f, out_b), features
    )
    assert np.abs(out_a - out_b).max() <= 1e-6
    benchmark(plain_step, features[0], out_b)
    print(
        f"\ninterleaved: step graph with IOBinding p50 {np.percentile(iob, 50):.1f} us, "
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
