"""Controller cost per render frame: the trained ONNX controller against the analytic one.

Run: .venv/bin/python -m pytest benchmarks/bench_controller.py --benchmark-only
Target (issue 12): the trained controller's inference p99 <= 50 us per render frame; the hop
budget is one 60 Hz frame, 16 667 us (renderer and controller together).

The inputs are logged from the live path: a held-out generated song (seed 1001, first 30 s,
1800 frames at 60 fps) streamed causally through the slow clock with the structure model and
the fast clock's beat (``CausalStream``, what ``live_julia.py --out`` feeds the controller).
Over that sequence, interleaved frame by frame, it times:

* ``AnalyticController.step``;
* ``OnnxController.step`` (the whole step: ``ContractInputs`` conversion, the onnxruntime
  call through its IO bindings, the non-finite check, wrap and clip);
* and, of the ONNX step, the conversion alone and the onnxruntime call alone (the inference).

Printed: p50/p99 of each, against the frame budget, and the ratio onnx / analytic. The ONNX
model is the shipped ``fractalsync_models/models/controller_v1.onnx``.
"""

from __future__ import annotations

import time

import numpy as np
import pytest

from examples.julia.controller import AnalyticController
from examples.julia.controller_io import ContractInputs
from examples.julia.controller_onnx import DEFAULT_MODEL_PATH, OnnxController
from examples.julia.video_render import CausalStream
from fractalsync_models.training.song_generator import generate_song
from fractalsync_tracking.structure import StructureTracker

FPS = 60.0
BUDGET_US = 1e6 / FPS
TARGET_US = 50.0
SECONDS = 30.0
SEED = 1001


@pytest.fixture(scope="module")
def logged_inputs() -> list:
    """The ControlInputs of every frame of the first SECONDS of song SEED (module docstring)."""
    song = generate_song(SEED, sample_rate=44100)
    stream = CausalStream(song.audio[:, None].astype(np.float32), song.sample_rate,
                          structure=StructureTracker())
    out = []
    for k in range(int(SECONDS * FPS)):
        t = k / FPS
        stream.advance(t, timed=False)
        out.append(stream.inputs(t))
    return out


def percentiles(us: np.ndarray) -> tuple[float, float]:
    p50, p99 = np.percentile(us, [50, 99])
    return float(p50), float(p99)


@pytest.mark.skipif(not DEFAULT_MODEL_PATH.is_file(),
                    reason="the trained controller_v1.onnx has not landed in this checkout")
def test_controller_step_per_frame(benchmark, logged_inputs):
    analytic, onnx = AnalyticController(), OnnxController()
    convert = ContractInputs()
    session, binding = onnx._session, onnx._bindings[0]
    for x in logged_inputs[:300]:  # warm-up
        analytic.step(x)
        onnx.step(x)
        convert.convert(x)
        session.run_with_iobinding(binding)
    analytic.reset()
    onnx.reset()
    convert.reset()
    n = len(logged_inputs)
    times = {name: np.empty(n) for name in ("analytic", "onnx", "convert", "inference")}
    clock = time.perf_counter_ns
    for i, x in enumerate(logged_inputs):
        t0 = clock()
        analytic.step(x)
        t1 = clock()
        onnx.step(x)
        t2 = clock()
        convert.convert(x)
        t3 = clock()
        session.run_with_iobinding(binding)  # the bare call, on the last frame's inputs
        t4 = clock()
        for name, a, b in (("analytic", t0, t1), ("onnx", t1, t2), ("convert", t2, t3),
                           ("inference", t3, t4)):
            times[name][i] = (b - a) / 1e3
    assert onnx.nonfinite_frames == 0
    onnx.reset()
    benchmark(onnx.step, logged_inputs[0])
    stats = {name: percentiles(us) for name, us in times.items()}
    benchmark.extra_info.update({f"{name}_p{q}_us": v for name, (p50, p99) in stats.items()
                                 for q, v in ((50, p50), (99, p99))})
    lines = [f"\nController cost per render frame over {n} logged frames (seed {SEED}, "
             f"{SECONDS:.0f} s), interleaved; hop budget {BUDGET_US:.0f} us (60 fps):"]
    labels = {"analytic": "AnalyticController.step", "onnx": "OnnxController.step (whole)",
              "convert": "  of which ContractInputs", "inference": "  of which onnxruntime"}
    for name, (p50, p99) in stats.items():
        lines.append(f"  {labels[name]:30s} p50 {p50:6.1f} us, p99 {p99:6.1f} us = "
                     f"{100 * p99 / BUDGET_US:.2f} % of the frame")
    (a50, a99), (o50, o99) = stats["analytic"], stats["onnx"]
    lines.append(f"  onnx / analytic: p50 {o50 / a50:.2f}, p99 {o99 / a99:.2f}; inference p99 "
                 f"{stats['inference'][1]:.1f} us against the target {TARGET_US:.0f} us")
    print("\n".join(lines))
