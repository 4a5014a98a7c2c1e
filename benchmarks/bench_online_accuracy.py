"""Online tracker accuracy, printed (the tests in tests/test_online_accuracy.py assert it).

Run: .venv/bin/python -m pytest benchmarks/bench_online_accuracy.py --benchmark-only -s

1. BeatNet's reference activations (act_m1) of both excerpts through our particle filter
   (seeds 0-4) and BeatNet's own particle filter output, both scored against BeatNet's offline
   DBN decoding (beat and downbeat F, +-70 ms, whole 30 s).
2. The synthetic set through the live path (44.1 kHz, 1024-sample pushes), each BeatNet model and
   the ensemble: beat F and downbeat F after the first 5 s per item, and the pooled beat-time error
   of matched beats.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from fractalsync_tracking.metrics import beat_f_measure, downbeat_f_measure, evaluate
from fractalsync_tracking.online_grid import online_grid_from_audio
from fractalsync_tracking.particle_filter import track_activations
from fractalsync_tracking.synth import synth_set

REF = Path(__file__).parent.parent / "tests" / "data" / "reference"
SR = 44100


def test_reference_excerpts(benchmark):
    lines = ["\nreference excerpts, scored against BeatNet's DBN (beat F / downbeat F):"]
    for clip in ("vibe_ace", "lets_go_fishin"):
        dbn = np.loadtxt(REF / clip / "beatnet_dbn.txt")
        pf = np.loadtxt(REF / clip / "beatnet_pf.txt")
        ref_b, ref_d = dbn[:, 0], dbn[dbn[:, 1] == 1, 0]
        act = np.load(REF / clip / "act_m1.npy")
        ours = []
        for seed in range(5):
            tracked = track_activations(act, seed=seed)
            ours.append((beat_f_measure(ref_b, tracked.times),
                         downbeat_f_measure(ref_d, tracked.times[tracked.is_downbeat])))
        ours = np.array(ours)
        theirs = (beat_f_measure(ref_b, pf[:, 0]), downbeat_f_measure(ref_d, pf[pf[:, 1] == 1, 0]))
        lines.append(
            f"  {clip:15s} ours (seeds 0-4) beat F {ours[:, 0].min():.3f}-{ours[:, 0].max():.3f},"
            f" downbeat F {ours[:, 1].min():.3f}-{ours[:, 1].max():.3f} | BeatNet PF beat F "
            f"{theirs[0]:.3f}, downbeat F {theirs[1]:.3f}"
        )
    benchmark.pedantic(track_activations, args=(act,), rounds=1, iterations=1)
    print("\n".join(lines))


def test_synthetic_set_online(benchmark):
    items = synth_set(sample_rate=SR)
    lines = ["\nsynthetic set through the live path (beat F / downbeat F after 5 s):"]
    for model in (1, 2, 3, "ensemble"):
        rows, errors = [], []
        for item in items:
            grid = online_grid_from_audio(item.audio, SR, model=model)
            m = evaluate(item.beats, np.array(grid.beats), item.downbeats,
                         np.array(grid.downbeats))
            rows.append((item.name, m["beat_f"], m["downbeat_f"]))
            errors.append(m["error_median_s"])
        beat_f = np.array([r[1] for r in rows])
        down_f = np.array([r[2] for r in rows])
        lines.append(
            f"  model {model!s:8s}: beat F >= 0.9 on {np.sum(beat_f >= 0.9)}/{len(rows)} "
            f"(mean {beat_f.mean():.3f}), downbeat F >= 0.8 on {np.sum(down_f >= 0.8)}/{len(rows)}"
            f" (mean {down_f.mean():.3f}), median beat error {np.nanmedian(errors) * 1e3:.1f} ms"
        )
        misses = [f"{n} ({b:.2f}/{d:.2f})" for n, b, d in rows if b < 0.9 or d < 0.8]
        lines.append("    below target: " + (", ".join(misses) or "none"))
    benchmark.pedantic(lambda: None, rounds=1, iterations=1)
    print("\n".join(lines))
