"""Measured sync and feel of the live Julia visual, on songs with exact beats and sections.

    .venv/bin/python benchmarks/measure_julia_sync.py [--seeds 1001 1002 ...] [--seconds 60]
        [--size 320x180] [--fps 60] [--structure model|none] [--demo]
        [--controller analytic|onnx|both] [--controller-model FILE.onnx]

For each generated song (``generate_song(seed)``: exact beats, downbeats and sections; seeds
above 1000 are never used for training) it renders the live picture causally to an MP4
(``render_video``, exactly what ``examples/live_julia.py --out`` does), decodes the MP4 back
with ffmpeg, and measures on the decoded frames:

* the fraction of true beats (after the first 5 s) with a visual pulse within +-2 frames, and
  the median signed offset in frames (positive = picture late), with pulses detected from the
  frame-to-frame change (``examples.julia.sync_measure``); next to it the tracker's ceiling,
  the fraction of true beats with a beat the live tracker reported within +-2 frames;
* the RMS jerk of the controls (third difference x fps^3): of c (|dc| in the complex plane),
  of ln zoom, and of the rotation (rad);
* the fraction of chorus frames whose c gives a disconnected Julia set, and of verse frames
  whose c gives a connected one (critical-orbit test);
* the between-section contrast (``sync_measure.section_contrast``: the mean distance between
  the true sections' mean normalised control vectors);
* the p99 frame cost, and the p99 cost of the controller's step (us): ``controller_p99_us``
  (wall time) and ``controller_cpu_p99_us`` (the thread's CPU time: without the waits of a
  thread preempted by other processes) re-time the controller, alone, over the inputs the
  render fed it (after 100 warm-up steps; with ``both``, the two controllers interleaved frame
  by frame on the same inputs, after both renders of the song); ``controller_in_render_p99_us``
  is the step as timed inside the render loop (with the renderer, ffmpeg and the analysis
  competing for the two cores: mostly their noise);
* where the missed beats (true beats after 5 s without a pulse within +-2 frames) were lost:
  ``lost_tracker`` (no beat reported by the tracker within +-2 frames), ``lost_display`` (the
  tracker reported it, but no beat of the displayed clock, the fast clock's phase wraps, fell
  within +-2 frames), ``lost_pulse`` (the displayed beat was on time, no pulse was detected),
  of which ``lost_pulse_lowconf`` with a displayed confidence below 0.3 (the pulse scales with
  it). The displayed beats come from a second causal pass of the same beat path
  (``CausalStream`` without rendering; the beat path does not depend on the structure tracker),
  so they are the render's.

``--demo`` adds the demo song (``examples/julia/app.py`` DEMO_SEED). The summary gives per-song
means and the pooled fraction over all the songs' beats. Targets (issue): >= 80 %
of beats, |median offset| <= 1 frame, chorus frames disconnected >= 0.9 once structure is in.

``--controller`` picks the controller (``analytic``, the default; ``onnx``: the trained model,
``--controller-model`` or the shipped one). With ``both`` every song is rendered once with each
controller (the same causal inputs: the tracker is deterministic) and a side-by-side table
follows, one row per song and one per measure for all the songs: pooled over all the songs'
beats (pulses, pulses per beat), chorus and verse frames; the mean of the songs for jerk and
contrast; the p99 over all frames for the controller's cost. Its last row says which
controller is better on each measure (higher is better for the fractions and the contrast,
lower for jerk and cost; pulses per beat has no better direction: near 1 is a pulse a beat).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from examples.julia.app import DEMO_SEED, _size, make_controller, make_structure  # noqa: E402
from examples.julia.controller import critical_orbit_escapes, to_params  # noqa: E402
from examples.julia.sync_measure import (  # noqa: E402
    detect_pulses,
    frame_change,
    pulse_sync,
    rms_jerk,
    section_contrast,
)
from examples.julia.video import find_ffmpeg  # noqa: E402
from examples.julia.video_render import CausalStream, render_video  # noqa: E402
from fractalsync_models.training.song_generator import generate_song  # noqa: E402

RATE = 44100


def decoded_frames(path: Path, width: int, height: int):
    """Yield the MP4's frames as (height, width, 3) uint8, decoded by ffmpeg."""
    proc = subprocess.Popen([find_ffmpeg(), "-v", "error", "-i", str(path), "-f", "rawvideo",
                             "-pix_fmt", "rgb24", "pipe:1"], stdout=subprocess.PIPE)
    size = width * height * 3
    try:
        while True:
            buf = proc.stdout.read(size)
            if len(buf) < size:
                break
            yield np.frombuffer(buf, np.uint8).reshape(height, width, 3)
    finally:
        proc.stdout.close()
        proc.wait()


def displayed_beats(song, n_frames: int, fps: float) -> tuple[np.ndarray, np.ndarray]:
    """The beats the picture shows: the times (s) at which the fast clock's displayed beat
    falls (frames where its beat count steps, minus the phase already run), and the displayed
    confidence at each frame, from the live beat path run causally at the render's frame times."""
    stream = CausalStream(song.audio[:, None].astype(np.float32), song.sample_rate)
    count = np.zeros(n_frames, np.int64)
    late = np.zeros(n_frames)
    conf = np.zeros(n_frames)
    for k in range(n_frames):
        t = k / fps
        stream.advance(t, timed=False)
        now = stream.beat.at(t)
        count[k], late[k], conf[k] = now.beat_count, now.phase * now.spb, now.conf
    steps = np.flatnonzero(np.diff(count) > 0) + 1
    return steps / fps - late[steps], conf


def lost_beats(late: np.ndarray, pulses: np.ndarray, tracked: np.ndarray, shown: np.ndarray,
               conf: np.ndarray, fps: float, tol: int = 2) -> dict:
    """Where each missed true beat in ``late`` (s) was lost (see the module docstring)."""
    def near(times, b):
        return times.size > 0 and np.min(np.abs(times - b)) <= tol / fps

    out = {"lost_tracker": 0, "lost_display": 0, "lost_pulse": 0, "lost_pulse_lowconf": 0}
    for b in late:
        e = int(round(b * fps))
        if pulses.size and np.min(np.abs(pulses - e)) <= tol:
            continue
        if not near(tracked, b):
            out["lost_tracker"] += 1
        elif not near(shown, b):
            out["lost_display"] += 1
        else:
            out["lost_pulse"] += 1
            out["lost_pulse_lowconf"] += int(conf[min(e, conf.size - 1)] < 0.3)
    return out


def label_at(song, times: np.ndarray) -> np.ndarray:
    """The true section label of each time."""
    out = np.empty(len(times), object)
    for seg in song.sections:
        out[(times >= seg.start) & (times < seg.end)] = seg.label
    return out


class _Recorder:
    """A controller that logs the inputs it is given, then steps the wrapped one."""

    def __init__(self, controller) -> None:
        self.controller, self.inputs = controller, []

    def reset(self) -> None:
        self.inputs.clear()
        self.controller.reset()

    def step(self, inputs):
        self.inputs.append(inputs)
        return self.controller.step(inputs)


def step_cost_us(controllers: list, inputs: list, warmup: int = 100) -> list[np.ndarray]:
    """The cost (us) of each ``step`` of each controller over ``inputs``, alone (no render),
    the controllers interleaved frame by frame (so that both see the same machine load), after
    ``warmup`` steps and a reset: per controller an array (len(inputs), 2) of wall time and of
    the thread's CPU time (which leaves out the time the thread waited while preempted)."""
    for x in inputs[:warmup]:
        for c in controllers:
            c.step(x)
    for c in controllers:
        c.reset()
    out = [np.empty((len(inputs), 2)) for _ in controllers]
    for i, x in enumerate(inputs):
        for c, us in zip(controllers, out, strict=True):
            t0, c0 = time.perf_counter_ns(), time.thread_time_ns()
            c.step(x)
            us[i] = time.perf_counter_ns() - t0, time.thread_time_ns() - c0
    return [us / 1e3 for us in out]


def measure(song, name: str, args, structure_mode: str, controller: str = "analytic",
            shown=None) -> dict:
    """One song rendered with one controller (``"analytic"`` or ``"onnx"``), measured.
    ``shown``: :func:`displayed_beats` of the song at the render's frames (computed if None;
    it does not depend on the controller; the row returns it as ``"shown"``)."""
    w, h = args.size
    seconds = min(args.seconds, len(song.audio) / song.sample_rate) if args.seconds else None
    model = args.controller_model if controller == "onnx" else None
    ctl = _Recorder(make_controller(argparse.Namespace(controller=controller,
                                                       controller_model=model)))
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "m.mp4"
        ns = argparse.Namespace(structure=structure_mode)
        stats = render_video(song.audio[:, None].astype(np.float32), song.sample_rate, out,
                             fps=args.fps, size=(w, h), renderer=args.renderer,
                             seconds=seconds, structure=make_structure(ns), controller=ctl)
        change = frame_change(decoded_frames(out, w, h))
    cost_us = step_cost_us([ctl.controller], ctl.inputs)[0]
    n = stats.frames
    pulses = detect_pulses(change, args.fps)
    true_beats = song.beats[song.beats < n / args.fps]
    sync = pulse_sync(pulses, true_beats, args.fps)
    # The tracker's ceiling: true beats (after 5 s) with a reported beat within +-2 frames.
    late = true_beats[true_beats >= 5.0]
    tracked = stats.beat_times
    ceiling = float(np.mean([tracked.size > 0 and np.min(np.abs(tracked - b)) <= 2 / args.fps
                             for b in late])) if late.size else float("nan")
    shown, shown_conf = displayed_beats(song, n, args.fps) if shown is None else shown
    lost = lost_beats(late, pulses, tracked, shown, shown_conf, args.fps)
    missed = sync["n_beats"] - sync["n_hits"]
    if lost["lost_tracker"] + lost["lost_display"] + lost["lost_pulse"] != missed:
        raise RuntimeError(f"{name}: the breakdown {lost} does not add up to {missed} misses")
    jerk = rms_jerk(stats.controls, args.fps)
    times = np.arange(n) / args.fps
    labels = label_at(song, times)
    params = [to_params(c) for c in stats.controls]
    escapes = critical_orbit_escapes(np.array([complex(q.c_re, q.c_im) for q in params]))
    chorus, verse = labels == "chorus", labels == "verse"
    return {
        "song": name, "controller": controller, "frames": n,
        "beats_hit": sync["hit_fraction"], "pulses_per_beat": sync["pulses_per_beat"],
        "tracker_ceiling": ceiling,
        "median_offset_frames": sync["median_offset_frames"],
        "jerk_c": float(np.hypot(jerk["dc_re"], jerk["dc_im"])), "jerk_log_zoom": jerk["log_zoom"],
        "jerk_rotation": jerk["rotation"],
        "chorus_disconnected": float(escapes[chorus].mean()) if chorus.any() else float("nan"),
        "verse_connected": float((~escapes[verse]).mean()) if verse.any() else float("nan"),
        "section_contrast": section_contrast(stats.controls, labels)["contrast"],
        "controller_p99_us": float(np.percentile(cost_us[:, 0], 99)),
        "controller_cpu_p99_us": float(np.percentile(cost_us[:, 1], 99)),
        "controller_in_render_p99_us": stats.controller_p99_us,
        "frame_p99_ms": stats.frame_p99_ms, "render_p99_ms": stats.render_p99_ms,
        "n_beats": sync["n_beats"], "n_chorus": int(chorus.sum()), "n_verse": int(verse.sum()),
        "controller_us": cost_us, "shown": (shown, shown_conf), "inputs": ctl.inputs,
        "controller_object": ctl.controller, **lost,
    }


#: The side-by-side table's measures: (row key, heading, format, True when higher is better;
#: None: no better direction, e.g. pulses per beat, near 1 when the picture pulses once a beat,
#: above when it also pulses between beats, which makes hits easier).
SIDE_BY_SIDE = (
    ("beats_hit", "pulses within +-2 frames", "{:.3f}", True),
    ("pulses_per_beat", "pulses per beat", "{:.2f}", None),
    ("jerk_c", "RMS jerk c", "{:.0f}", False),
    ("jerk_log_zoom", "RMS jerk ln zoom", "{:.0f}", False),
    ("jerk_rotation", "RMS jerk rotation", "{:.2f}", False),
    ("chorus_disconnected", "chorus frames disconnected", "{:.3f}", True),
    ("verse_connected", "verse frames connected", "{:.3f}", True),
    ("section_contrast", "section contrast", "{:.3f}", True),
    ("controller_cpu_p99_us", "controller p99 CPU (us)", "{:.0f}", False),
    ("controller_p99_us", "controller p99 wall (us)", "{:.0f}", False),
)


def summary(rows: list[dict]) -> dict:
    """One controller's measures over all its songs (see the module docstring)."""
    def pooled(key, weight):
        w = np.array([r[weight] for r in rows], float)
        v = np.array([r[key] for r in rows], float)
        ok = w > 0
        return float(np.sum(v[ok] * w[ok]) / np.sum(w[ok])) if ok.any() else float("nan")

    out = {"beats_hit": pooled("beats_hit", "n_beats"),
           "pulses_per_beat": pooled("pulses_per_beat", "n_beats"),
           "chorus_disconnected": pooled("chorus_disconnected", "n_chorus"),
           "verse_connected": pooled("verse_connected", "n_verse"),
           **dict(zip(("controller_p99_us", "controller_cpu_p99_us"), np.percentile(
               np.concatenate([r["controller_us"] for r in rows]), 99, axis=0), strict=True))}
    for key in ("jerk_c", "jerk_log_zoom", "jerk_rotation", "section_contrast"):
        out[key] = float(np.nanmean([r[key] for r in rows]))
    return out


def side_by_side(rows: dict[str, list[dict]]) -> list[str]:
    """The markdown lines of the side-by-side table: ``rows[controller]`` per song."""
    names = list(rows)
    head = "| song | " + " | ".join(f"{h} ({' / '.join(names)})"
                                      for _, h, _, _ in SIDE_BY_SIDE) + " |"
    lines = [head, "|" + "---|" * (len(SIDE_BY_SIDE) + 1)]

    def cells(values: list[dict]) -> str:
        return " | ".join(" / ".join("-" if np.isnan(v[key]) else fmt.format(v[key])
                                     for v in values) for key, _, fmt, _ in SIDE_BY_SIDE)

    for i, row in enumerate(rows[names[0]]):
        lines.append(f"| {row['song']} | {cells([rows[n][i] for n in names])} |")
    totals = [summary(rows[n]) for n in names]
    lines.append(f"| all songs (pooled / mean / p99 of all frames) | {cells(totals)} |")
    if len(names) == 2:
        verdict = []
        for key, _, _, higher in SIDE_BY_SIDE:
            a, b = totals[0][key], totals[1][key]
            if higher is None:
                verdict.append("(no direction)")
                continue
            better = names[1] if (b > a) == higher else names[0]
            verdict.append("-" if np.isnan(a) or np.isnan(b) else "equal" if a == b
                           else f"{better} ({a:.4g} / {b:.4g}: {(b - a) / abs(a):+.2%})" if a
                           else better)
        lines.append(f"| better ({names[1]} vs {names[0]}) | " + " | ".join(verdict) + " |")
    return lines


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seeds", type=int, nargs="*", default=[1001, 1002, 1003, 1004])
    p.add_argument("--seconds", type=float, default=60.0, help="span per song (0: whole song)")
    p.add_argument("--size", type=_size, default=(320, 180))
    p.add_argument("--fps", type=float, default=60.0)
    p.add_argument("--renderer", choices=("gl", "numba"), default="gl")
    p.add_argument("--structure", choices=("model", "none"), default="model")
    p.add_argument("--demo", action="store_true", help="also the demo song")
    p.add_argument("--controller", choices=("analytic", "onnx", "both"), default="analytic")
    p.add_argument("--controller-model", metavar="FILE.onnx", default=None,
                   help="the ONNX controller (default: the shipped controller_v1.onnx)")
    args = p.parse_args(argv)
    controllers = ["analytic", "onnx"] if args.controller == "both" else [args.controller]
    if "onnx" in controllers:  # a missing or invalid model fails here, before any render
        make_controller(argparse.Namespace(controller="onnx",
                                           controller_model=args.controller_model))
    songs = [(f"seed {s}", s) for s in args.seeds]
    if args.demo:
        songs.append((f"demo (seed {DEMO_SEED})", DEMO_SEED))
    cols = ("song", "controller", "frames", "beats_hit", "pulses_per_beat", "tracker_ceiling",
            "median_offset_frames", "jerk_c", "jerk_log_zoom", "jerk_rotation",
            "chorus_disconnected", "verse_connected", "section_contrast", "controller_p99_us",
            "controller_cpu_p99_us", "controller_in_render_p99_us", "frame_p99_ms", "n_beats",
            "lost_tracker", "lost_display", "lost_pulse", "lost_pulse_lowconf")
    print(" | ".join(cols))
    rows: dict[str, list[dict]] = {c: [] for c in controllers}
    for name, seed in songs:
        song = generate_song(seed, sample_rate=RATE)
        shown = None
        for controller in controllers:
            row = measure(song, name, args, args.structure, controller, shown)
            shown = row["shown"]
            rows[controller].append(row)
        if len(controllers) > 1:  # the costs again, interleaved on the same inputs
            song_rows = [rows[c][-1] for c in controllers]
            costs = step_cost_us([r["controller_object"] for r in song_rows],
                                 song_rows[0]["inputs"])
            for r, us in zip(song_rows, costs, strict=True):
                r["controller_us"] = us
                r["controller_p99_us"], r["controller_cpu_p99_us"] = (
                    float(v) for v in np.percentile(us, 99, axis=0))
        for controller in controllers:
            row = rows[controller][-1]
            del row["inputs"], row["controller_object"]  # the memory of the next song
            print(" | ".join(f"{row[c]:.3g}" if isinstance(row[c], float) else str(row[c])
                             for c in cols), flush=True)
    for controller in controllers:
        done = rows[controller]
        print(f"-- {controller} controller")
        for c in cols[3:]:
            vals = np.array([r[c] for r in done], float)
            if c == "n_beats" or c.startswith("lost_"):
                print(f"total {c}: {int(vals.sum())}")
            else:
                print(f"mean {c}: {np.nanmean(vals):.3g}")
        n_beats = np.array([r["n_beats"] for r in done], float)
        for c in ("beats_hit", "tracker_ceiling"):  # over all the songs' beats together
            hits = np.round(np.array([r[c] for r in done], float) * n_beats)
            print(f"pooled {c}: {hits.sum() / n_beats.sum():.3f} ({int(hits.sum())} of "
                  f"{int(n_beats.sum())} beats)")
    if len(controllers) > 1:
        print()
        print("\n".join(side_by_side(rows)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
