"""Controller cost per render frame: the trained ONNX controller against the analytic one.

Run: .venv/bin/python -m pytest benchmarks/bench_controller.py --benchmark-only
Target (issue 12): the trained controller's inference p99 <= 50 us per render frame; the hop
budget is one 60 Hz frame, 16 667 us (renderer and controller together).

The inputs are logged from the live path: a held-out generated song (seed 1001, first 30 s,
1800 frames at 60 fps) streamed causally through the slow clock with the structure model and
the fast clock's beat (``CausalStream``, what ``live_julia.py --out`` feeds the controller).
Over that sequence, interleaved frame by frame, it times:

* ``AnalyticController.step``;
* ``OnnxController.step`` on each engine (the whole step: ``ContractInputs.convert_into``, the
  model, the non-finite check, wrap and clip): ``engine="numba"`` (the default: the numba
  kernel of ``controller_kernel.py``) and ``engine="onnxruntime"`` (IO-bound session);
* and, of a step, the conversion alone and the model alone: the numba kernel
  (``ControllerKernel.step_into``) and the onnxruntime call (``run_with_iobinding``).

Printed: p50/p99 of each, in wall time and in the thread's CPU time (``time.thread_time_ns``:
on a shared machine a preempted step waits for whole scheduler slices, ~4 ms here, which lands
in the wall p99 of whichever step was running), against the frame budget, and the ratios
onnx / analytic. The ONNX model is the shipped ``fractalsync_models/models/controller_v1.onnx``.
"""

from __future__ import annotations

import os
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
    analytic = AnalyticController()
    numba_ctl, ort_ctl = OnnxController(), OnnxController(engine="onnxruntime")
    assert numba_ctl.engine == "numba", numba_ctl.engine_note
    convert = ContractInputs()
    views = tuple(np.zeros((1, n), np.float32) for n in (7, 5, 8, 5))
    session, binding = ort_ctl._session, ort_ctl._bindings[0]
    kernel = numba_ctl._kernel
    x, state_in, state_out = np.zeros(25, np.float32), np.zeros(64, np.float32), \
        np.zeros(64, np.float32)
    control = np.zeros(8, np.float32)
    steps = {
        "analytic": analytic.step, "numba": numba_ctl.step, "onnxruntime": ort_ctl.step,
        "convert": lambda inputs: convert.convert_into(inputs, *views),
        "kernel": lambda _: kernel.step_into(x, state_in, control, state_out),
        "inference": lambda _: session.run_with_iobinding(binding),
    }
    for inputs in logged_inputs[:300]:  # warm-up
        for step in steps.values():
            step(inputs)
    for ctl in (analytic, numba_ctl, ort_ctl, convert):
        ctl.reset()
    n = len(logged_inputs)
    wall = {name: np.empty(n) for name in steps}
    cpu = {name: np.empty(n) for name in steps}
    for i, inputs in enumerate(logged_inputs):
        for name, step in steps.items():  # the bare models run on the last frame's inputs
            t0, c0 = time.perf_counter_ns(), time.thread_time_ns()
            step(inputs)
            wall[name][i] = (time.perf_counter_ns() - t0) / 1e3
            cpu[name][i] = (time.thread_time_ns() - c0) / 1e3
        np.copyto(x, numba_ctl._x[0])
    assert numba_ctl.nonfinite_frames == ort_ctl.nonfinite_frames == 0
    numba_ctl.reset()
    benchmark(numba_ctl.step, logged_inputs[0])
    stats = {name: percentiles(wall[name]) + percentiles(cpu[name]) for name in steps}
    benchmark.extra_info.update({f"{name}_{kind}_p{q}_us": v for name, row in stats.items()
                                 for (kind, q), v in zip((("wall", 50), ("wall", 99),
                                                          ("cpu", 50), ("cpu", 99)), row,
                                                         strict=True)})
    load = os.getloadavg()[0]
    benchmark.extra_info["load_1min"] = load
    lines = [f"\nController cost per render frame over {n} logged frames (seed {SEED}, "
             f"{SECONDS:.0f} s), interleaved, load {load:.2f}; hop budget {BUDGET_US:.0f} us "
             "(60 fps); wall time, and the thread's CPU time (without the waits while "
             "preempted):"]
    labels = {"analytic": "AnalyticController.step",
              "numba": "OnnxController.step numba", "onnxruntime": "OnnxController.step ort",
              "convert": "  ContractInputs.convert_into", "kernel": "  numba kernel alone",
              "inference": "  onnxruntime alone"}
    for name, (p50, p99, c50, c99) in stats.items():
        lines.append(f"  {labels[name]:30s} wall p50 {p50:6.1f} us, p99 {p99:6.1f} us "
                     f"({100 * p99 / BUDGET_US:.2f} % of the frame); CPU p50 {c50:6.1f} us, "
                     f"p99 {c99:6.1f} us")
    a = stats["analytic"]
    for name in ("numba", "onnxruntime"):
        o = stats[name]
        lines.append(f"  {name} / analytic: wall p50 {o[0] / a[0]:.2f}, p99 {o[1] / a[1]:.2f}; "
                     f"CPU p50 {o[2] / a[2]:.2f}, p99 {o[3] / a[3]:.2f}")
    for name in ("kernel", "inference"):
        lines.append(f"  {labels[name].strip()}: p99 wall {stats[name][1]:.1f} us, CPU "
                     f"{stats[name][3]:.1f} us against the target {TARGET_US:.0f} us")
    print("\n".join(lines))
