"""Measured sync and feel of the live Julia visual, on songs with exact beats and sections.

    .venv/bin/python benchmarks/measure_julia_sync.py [--seeds 1001 1002 ...] [--seconds 60]
        [--size 320x180] [--fps 60] [--structure model|none] [--demo]

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
* the p99 frame cost.

``--demo`` adds the demo song (``examples/julia/app.py`` DEMO_SEED). Targets (issue): >= 80 %
of beats, |median offset| <= 1 frame, chorus frames disconnected >= 0.9 once structure is in.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from examples.julia.app import DEMO_SEED, _size, make_structure  # noqa: E402
from examples.julia.controller import critical_orbit_escapes, to_params  # noqa: E402
from examples.julia.sync_measure import (  # noqa: E402
    detect_pulses,
    frame_change,
    pulse_sync,
    rms_jerk,
)
from examples.julia.video import find_ffmpeg  # noqa: E402
from examples.julia.video_render import render_video  # noqa: E402
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


def label_at(song, times: np.ndarray) -> np.ndarray:
    """The true section label of each time."""
    out = np.empty(len(times), object)
    for seg in song.sections:
        out[(times >= seg.start) & (times < seg.end)] = seg.label
    return out


def measure(song, name: str, args, structure_mode: str) -> dict:
    w, h = args.size
    seconds = min(args.seconds, len(song.audio) / song.sample_rate) if args.seconds else None
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "m.mp4"
        ns = argparse.Namespace(structure=structure_mode)
        stats = render_video(song.audio[:, None].astype(np.float32), song.sample_rate, out,
                             fps=args.fps, size=(w, h), renderer=args.renderer,
                             seconds=seconds, structure=make_structure(ns))
        change = frame_change(decoded_frames(out, w, h))
    n = stats.frames
    pulses = detect_pulses(change, args.fps)
    true_beats = song.beats[song.beats < n / args.fps]
    sync = pulse_sync(pulses, true_beats, args.fps)
    # The tracker's ceiling: true beats (after 5 s) with a reported beat within +-2 frames.
    late = true_beats[true_beats >= 5.0]
    tracked = stats.beat_times
    ceiling = float(np.mean([tracked.size > 0 and np.min(np.abs(tracked - b)) <= 2 / args.fps
                             for b in late])) if late.size else float("nan")
    jerk = rms_jerk(stats.controls, args.fps)
    times = np.arange(n) / args.fps
    labels = label_at(song, times)
    params = [to_params(c) for c in stats.controls]
    escapes = critical_orbit_escapes(np.array([complex(q.c_re, q.c_im) for q in params]))
    chorus, verse = labels == "chorus", labels == "verse"
    return {
        "song": name, "frames": n,
        "beats_hit": sync["hit_fraction"], "tracker_ceiling": ceiling,
        "median_offset_frames": sync["median_offset_frames"],
        "jerk_c": float(np.hypot(jerk["dc_re"], jerk["dc_im"])), "jerk_log_zoom": jerk["log_zoom"],
        "jerk_rotation": jerk["rotation"],
        "chorus_disconnected": float(escapes[chorus].mean()) if chorus.any() else float("nan"),
        "verse_connected": float((~escapes[verse]).mean()) if verse.any() else float("nan"),
        "frame_p99_ms": stats.frame_p99_ms, "render_p99_ms": stats.render_p99_ms,
    }


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seeds", type=int, nargs="*", default=[1001, 1002, 1003, 1004])
    p.add_argument("--seconds", type=float, default=60.0, help="span per song (0: whole song)")
    p.add_argument("--size", type=_size, default=(320, 180))
    p.add_argument("--fps", type=float, default=60.0)
    p.add_argument("--renderer", choices=("gl", "numba"), default="gl")
    p.add_argument("--structure", choices=("model", "none"), default="model")
    p.add_argument("--demo", action="store_true", help="also the demo song")
    args = p.parse_args(argv)
    songs = [(f"seed {s}", s) for s in args.seeds]
    if args.demo:
        songs.append((f"demo (seed {DEMO_SEED})", DEMO_SEED))
    cols = ("song", "frames", "beats_hit", "tracker_ceiling", "median_offset_frames", "jerk_c",
            "jerk_log_zoom", "jerk_rotation", "chorus_disconnected", "verse_connected",
            "frame_p99_ms")
    print(" | ".join(cols))
    rows = []
    for name, seed in songs:
        song = generate_song(seed, sample_rate=RATE)
        row = measure(song, name, args, args.structure)
        rows.append(row)
        print(" | ".join(f"{row[c]:.3g}" if isinstance(row[c], float) else str(row[c])
                         for c in cols), flush=True)
    for c in cols[2:]:
        vals = np.array([r[c] for r in rows], float)
        print(f"mean {c}: {np.nanmean(vals):.3g}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
