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

Printed: p50/p99 of each, in wall time and in the thread's CPU time (``time.thread_time_ns``:
on a shared machine a preempted step waits for whole scheduler slices, ~4 ms here, which lands
in the wall p99 of whichever step was running), against the frame budget, and the ratios
onnx / analytic. The ONNX model is the shipped ``fractalsync_models/models/controller_v1.onnx``.
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
    names = ("analytic", "onnx", "convert", "inference")
    wall = {name: np.empty(n) for name in names}
    cpu = {name: np.empty(n) for name in names}
    steps = {"analytic": analytic.step, "onnx": onnx.step, "convert": convert.convert,
             "inference": lambda _: session.run_with_iobinding(binding)}
    for i, x in enumerate(logged_inputs):
        for name in names:  # the bare inference runs on the last frame's inputs
            t0, c0 = time.perf_counter_ns(), time.thread_time_ns()
            steps[name](x)
            wall[name][i] = (time.perf_counter_ns() - t0) / 1e3
            cpu[name][i] = (time.thread_time_ns() - c0) / 1e3
    assert onnx.nonfinite_frames == 0
    onnx.reset()
    benchmark(onnx.step, logged_inputs[0])
    stats = {name: percentiles(wall[name]) + percentiles(cpu[name]) for name in names}
    benchmark.extra_info.update({f"{name}_{kind}_p{q}_us": v for name, row in stats.items()
                                 for (kind, q), v in zip((("wall", 50), ("wall", 99),
                                                          ("cpu", 50), ("cpu", 99)), row,
                                                         strict=True)})
    lines = [f"\nController cost per render frame over {n} logged frames (seed {SEED}, "
             f"{SECONDS:.0f} s), interleaved; hop budget {BUDGET_US:.0f} us (60 fps); wall "
             "time, and the thread's CPU time (without the waits while preempted):"]
    labels = {"analytic": "AnalyticController.step", "onnx": "OnnxController.step (whole)",
              "convert": "  of which ContractInputs", "inference": "  of which onnxruntime"}
    for name, (p50, p99, c50, c99) in stats.items():
        lines.append(f"  {labels[name]:30s} wall p50 {p50:6.1f} us, p99 {p99:6.1f} us "
                     f"({100 * p99 / BUDGET_US:.2f} % of the frame); CPU p50 {c50:6.1f} us, "
                     f"p99 {c99:6.1f} us")
    (a50, a99, ac50, ac99), (o50, o99, oc50, oc99) = stats["analytic"], stats["onnx"]
    lines.append(f"  onnx / analytic: wall p50 {o50 / a50:.2f}, p99 {o99 / a99:.2f}; CPU p50 "
                 f"{oc50 / ac50:.2f}, p99 {oc99 / ac99:.2f}; inference p99 wall "
                 f"{stats['inference'][1]:.1f} us, CPU {stats['inference'][3]:.1f} us against "
                 f"the target {TARGET_US:.0f} us")
    print("\n".join(lines))
