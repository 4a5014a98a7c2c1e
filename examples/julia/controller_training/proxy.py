"""Fast proxy evaluation on control logs (no rendering), the trained model against the analytic
controller on the SAME logged inputs.

* :func:`analytic_controls`: the analytic controller replayed on a corpus song's logged
  contract inputs (the beat phase from ``atan2(sin, cos)``, ``spb = exp(ln spb)``, the downbeat
  flag as a ``beat_in_bar`` that gives the same nearest-downbeat decision, the micro features
  and the anticipator's section and hazard probabilities, ``t = k / 60``).
* :func:`model_controls`: the torch model over the same inputs, state carried from zeros.
* :func:`proxy_metrics`: per song, the measures of the side by side (issue #12 item 5):
  ``pulse_hit`` (fraction of true beats after 5 s with a pulse of the visual change proxy
  within +-2 frames: ``losses.visual_change`` weights, ``sync_measure.detect_pulses`` and
  ``pulse_sync``), ``pulses_per_beat``, RMS jerk of c (complex), ln zoom and rotation
  (``sync_measure.rms_jerk``), ``chorus_disconnected`` / ``verse_connected`` (critical-orbit
  test, 1000 iterations, against the true labels), and ``contrast_c`` / ``contrast`` (mean
  over pairs of distinct true labels of the distance between the labels' mean c, and mean
  control vector ``(c_re, c_im, ln zoom, hue, saturation, brightness, detail)``; hue as a
  point on a circle of circumference 1).
* :func:`calibrate_change_weights`: the visual-change weights from numba renders.

CLI: ``python -m examples.julia.controller_training.proxy --calibrate --work DIR`` prints
the calibrated weights (frames of the first corpus song).
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import numpy as np

from examples.julia.controller import (
    CONTROL_NAMES,
    AnalyticController,
    ControlInputs,
    critical_orbit_escapes,
    to_params,
)
from examples.julia.sync_measure import detect_pulses, pulse_sync, rms_jerk

from .data import FPS, SongFrames, load_corpus

__all__ = ["analytic_controls", "calibrate_change_weights", "change_proxy", "model_controls",
           "proxy_metrics"]

_IDX = {n: i for i, n in enumerate(CONTROL_NAMES)}


def analytic_controls(song: SongFrames) -> np.ndarray:
    """(T,8) float32 controls of the analytic controller on the song's logged inputs."""
    ctl = AnalyticController()
    out = np.zeros((len(song), 8), np.float32)
    for k in range(len(song)):
        s, c, ln_spb, conf, down = (float(v) for v in song.beat[k])
        phase = (math.atan2(s, c) / (2 * math.pi)) % 1.0
        phase = min(phase, math.nextafter(1.0, 0.0))
        beat_in_bar = (1 if phase < 0.5 else 4) if down > 0.5 else 2
        out[k] = ctl.step(ControlInputs(
            k / FPS, phase, beat_in_bar, 4, math.exp(ln_spb), conf,
            tuple(float(v) for v in song.micro[k]), tuple(float(v) for v in song.sect_pred[k]),
            tuple(float(v) for v in song.haz_pred[k])))
    return out


def model_controls(model, song: SongFrames) -> np.ndarray:
    """(T,8) float32 controls of a :class:`.model.ControllerNet` on the song's logged inputs
    (the anticipator's predictions as conditioning), state from zeros."""
    import torch

    with torch.no_grad():
        out = model.sequence(*(torch.from_numpy(a)[None] for a in (
            song.micro, song.beat, song.sect_pred, song.haz_pred)))
    return out["control"][0].numpy()


def change_proxy(controls: np.ndarray, weights: dict | None = None) -> np.ndarray:
    """(T,) visual change proxy of a control log (``losses.visual_change`` in numpy; rotation
    and hue unwrapped)."""
    from .losses import CHANGE_WEIGHTS

    w = CHANGE_WEIGHTS if weights is None else weights
    x = np.asarray(controls, np.float64)
    d = {
        "brightness": np.diff(x[:, _IDX["brightness"]]),
        "log_zoom": np.diff(np.log(x[:, _IDX["zoom"]])),
        "c": np.hypot(np.diff(x[:, 0]), np.diff(x[:, 1])),
        "rotation": np.diff(np.unwrap(x[:, _IDX["rotation"]], period=2 * np.pi)),
        "hue": np.diff(np.unwrap(x[:, _IDX["hue"]], period=1.0)),
        "saturation": np.diff(x[:, _IDX["saturation"]]),
        "detail": np.diff(x[:, _IDX["detail"]]),
    }
    v = sum(w[k] * np.sqrt(d[k] ** 2 + 1e-8) for k in d)
    return np.concatenate([[0.0], v])


def _label_means(x: np.ndarray, label: np.ndarray) -> np.ndarray:
    present = [lab for lab in np.unique(label) if lab >= 0 and np.sum(label == lab) >= 60]
    return np.array([x[label == lab].mean(axis=0) for lab in present])


def _mean_pair_distance(means: np.ndarray) -> float:
    if len(means) < 2:
        return float("nan")
    d = [np.linalg.norm(means[i] - means[j]) for i in range(len(means))
         for j in range(i + 1, len(means))]
    return float(np.mean(d))


def proxy_metrics(controls: np.ndarray, song: SongFrames) -> dict:
    """The proxy measures of one control log (module docstring)."""
    x = np.asarray(controls, np.float64)
    n = x.shape[0]
    pulses = detect_pulses(change_proxy(x), FPS)
    beats = song.beats[song.beats < n / FPS]
    sync = pulse_sync(pulses, beats, FPS)
    jerk = rms_jerk(x, FPS)
    escapes = critical_orbit_escapes(x[:, 0] + 1j * x[:, 1])
    chorus, verse = song.label == 4, song.label == 2
    hue = 2 * np.pi * x[:, _IDX["hue"]]
    feats = np.column_stack([x[:, 0], x[:, 1], np.log(x[:, _IDX["zoom"]]),
                             np.cos(hue) / (2 * np.pi), np.sin(hue) / (2 * np.pi),
                             x[:, _IDX["saturation"]], x[:, _IDX["brightness"]],
                             x[:, _IDX["detail"]]])
    return {
        "pulse_hit": sync["hit_fraction"], "n_beats": sync["n_beats"],
        "pulses_per_beat": sync["pulses_per_beat"],
        "jerk_c": float(np.hypot(jerk["dc_re"], jerk["dc_im"])),
        "jerk_log_zoom": jerk["log_zoom"], "jerk_rotation": jerk["rotation"],
        "chorus_disconnected": float(escapes[chorus].mean()) if chorus.any() else float("nan"),
        "verse_connected": float((~escapes[verse]).mean()) if verse.any() else float("nan"),
        "contrast_c": _mean_pair_distance(_label_means(x[:, :2], song.label)),
        "contrast": _mean_pair_distance(_label_means(feats, song.label)),
    }


def pooled(rows: list[dict]) -> dict:
    """Pooled summary of per-song :func:`proxy_metrics`: pulse hits over all beats, the rest
    as means over the songs (NaN skipped)."""
    beats = np.array([r["n_beats"] for r in rows], float)
    out = {"pulse_hit": float(np.sum([r["pulse_hit"] * r["n_beats"] for r in rows])
                              / beats.sum())}
    for key in rows[0]:
        if key not in out and key != "n_beats":
            out[key] = float(np.nanmean([r[key] for r in rows]))
    return out


def calibrate_change_weights(controls: np.ndarray, size=(160, 90), frames: int = 24,
                             delta: float = 0.02) -> dict:
    """Rendered luma change per unit change of each control (the ``CHANGE_WEIGHTS``): for
    ``frames`` control vectors spread over ``controls`` (T,8), render (numba, ``size``) the
    vector and the vector with one control moved by ``delta`` (log-zoom: zoom x exp(delta);
    c: the mean of re and im moves; detail: 5 delta, since the iteration cap is rounded), and
    take the median of ``frame_change / step``."""
    from examples.julia.render_numba import render_julia
    from examples.julia.sync_measure import frame_change

    w, h = size
    img = np.zeros((h, w, 3), np.uint8)

    def luma_change(a, b):
        return frame_change([render_julia(to_params(a), img).copy(),
                             render_julia(to_params(b), img).copy()], downscale=2)[1]

    moves = {"brightness": [("brightness", 1)], "log_zoom": [("zoom", 1)],
             "c": [("dc_re", 1), ("dc_im", 1)], "rotation": [("rotation", 1)],
             "hue": [("hue", 1)], "saturation": [("saturation", 1)], "detail": [("detail", 1)]}
    picks = np.linspace(len(controls) // 10, len(controls) - 1, frames).astype(int)
    out = {}
    for key, names in moves.items():
        ratios = []
        for k in picks:
            base = np.asarray(controls[k], np.float64)
            for name, _ in names:
                moved = base.copy()
                i = _IDX[name]
                step = delta * (5 if name == "detail" else 1)
                if name in ("brightness", "saturation", "detail") and base[i] > 0.5:
                    step = -step
                moved[i] = base[i] * math.exp(step) if name == "zoom" else base[i] + step
                ratios.append(luma_change(base, moved) / abs(step))
        out[key] = round(float(np.median(ratios)), 4)
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m examples.julia.controller_training.proxy")
    p.add_argument("--work", type=Path, required=True, help="the training --work directory")
    p.add_argument("--calibrate", action="store_true", help="print the change weights")
    args = p.parse_args(argv)
    if args.calibrate:
        song = load_corpus(args.work)[0]
        print(song.name, calibrate_change_weights(analytic_controls(song)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
