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

from fractalsync_models.training.synth import synth_set
from fractalsync_tracking.metrics import (
    beat_f_measure,
    beat_time_errors,
    downbeat_f_measure,
    evaluate,
    lock_index,
)
from fractalsync_tracking.online_grid import online_grid_from_audio
from fractalsync_tracking.particle_filter import track_activations

REF = Path(__file__).parent.parent / "tests" / "data" / "reference"
SR = 44100
CHANGE_ITEM, CHANGE_AT = "change_4-4_120-150bpm", 15.0


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
    lines = ["\nsynthetic set through the live path (beat F / downbeat F after 5 s; lock = first "
             "of 8 consecutive beats within 70 ms; errors pooled over matched beats after lock):"]
    for model in (1, 2, 3, "ensemble"):
        rows, errors, locks, recovery = [], [], [], None
        for item in items:
            grid = online_grid_from_audio(item.audio, SR, model=model)
            est = np.array(grid.beats)
            m = evaluate(item.beats, est, item.downbeats, np.array(grid.downbeats))
            i = lock_index(item.beats, est)
            locks.append(np.inf if i is None else item.beats[i] - item.beats[0])
            if i is not None:
                errors.append(beat_time_errors(item.beats[i:], est[est >= item.beats[i] - 0.07]))
            if item.name == CHANGE_ITEM:
                recovery = lock_index(item.beats, est, CHANGE_AT)
            rows.append((item.name, m["beat_f"], m["downbeat_f"]))
        beat_f = np.array([r[1] for r in rows])
        down_f = np.array([r[2] for r in rows])
        err = np.concatenate(errors) * 1e3
        n = len(rows)
        lines.append(
            f"  model {model!s:8s}: beat F >= 0.9 on {np.sum(beat_f >= 0.9)}/{n} "
            f"(mean {beat_f.mean():.3f}), downbeat F >= 0.8 on {np.sum(down_f >= 0.8)}/{n}"
            f" (mean {down_f.mean():.3f}), lock <= 4 s on {np.sum(np.array(locks) <= 4.0)}/{n}, "
            f"recovery after the 120->150 BPM step: "
            f"{'never' if recovery is None else f'{recovery} beats'}, beat error after lock: "
            f"median {np.median(err):.1f} ms, p95 {np.percentile(err, 95):.1f} ms"
        )
        misses = [f"{name} ({b:.2f}/{d:.2f})" for name, b, d in rows if b < 0.9 or d < 0.8]
        lines.append("    below target: " + (", ".join(misses) or "none"))
    benchmark.pedantic(lambda: None, rounds=1, iterations=1)
    print("\n".join(lines))
