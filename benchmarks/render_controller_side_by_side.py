"""A side-by-side video of the two controllers: analytic on the left, the trained ONNX one on the
right, each labelled, with the song's audio.

    .venv/bin/python benchmarks/render_controller_side_by_side.py [--out FILE.mp4]
        [--audio FILE] [--seconds N] [--start S] [--size 480x270] [--fps 60]
        [--renderer gl|numba] [--structure model|none] [--controller-model FILE.onnx]
        [--overwrite]

Default: the demo song (``examples/live_julia.py``'s, seed 2026), whole, each panel 480x270 at
60 fps, to ``demo_output/controllers_side_by_side.mp4``. Both controllers see the same causal
inputs every frame (one slow clock, one fast clock: ``render_side_by_side``), exactly what
``live_julia.py --out`` feeds its one controller. Prints the frame statistics and each
controller's step cost (p99, us).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from examples.julia.app import (  # noqa: E402
    _non_negative,
    _positive,
    _size,
    load_input,
    make_structure,
)
from examples.julia.controller import AnalyticController  # noqa: E402
from examples.julia.controller_onnx import OnnxController  # noqa: E402
from examples.julia.render_gl import GLUnavailableError  # noqa: E402
from examples.julia.video import VideoError  # noqa: E402
from examples.julia.video_render import render_side_by_side  # noqa: E402
from fractalsync_models.cli_errors import add_debug_flag, cli_entry  # noqa: E402

PROG = "render_controller_side_by_side.py"
DEFAULT_OUT = Path("demo_output") / "controllers_side_by_side.mp4"


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=PROG, description=__doc__.splitlines()[0])
    p.add_argument("--out", metavar="FILE.mp4", default=str(DEFAULT_OUT))
    p.add_argument("--overwrite", action="store_true", help="replace an existing --out file")
    p.add_argument("--audio", metavar="FILE", help="a song file (default: the demo song)")
    p.add_argument("--seconds", type=_positive(float), metavar="N", help="span rendered")
    p.add_argument("--start", type=_non_negative, default=0.0, metavar="S", help="first second")
    p.add_argument("--size", type=_size, default=(480, 270), metavar="WxH",
                   help="size of each panel (default 480x270; the video is twice as wide)")
    p.add_argument("--fps", type=_positive(float), default=60.0)
    p.add_argument("--renderer", choices=("gl", "numba"), default="gl")
    p.add_argument("--structure", choices=("model", "none"), default="model")
    p.add_argument("--controller-model", metavar="FILE.onnx", default=None,
                   help="the ONNX controller (default: the shipped controller_v1.onnx)")
    add_debug_flag(p)
    return p


@cli_entry(PROG, expected=(GLUnavailableError, VideoError))
def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    out = Path(args.out)
    if out.suffix.lower() not in (".mp4", ".mkv", ".mov"):
        raise ValueError(f"--out {out}: use a .mp4 (or .mkv/.mov) file name")
    onnx = OnnxController(args.controller_model)
    panels = [("analytic", AnalyticController()), (f"onnx: {onnx.path.stem}", onnx)]
    audio, rate, name = load_input(args)
    print(f"{PROG}: rendering {name} to {out} (2 x {args.size[0]}x{args.size[1]}, "
          f"{args.fps:g} fps, {args.renderer})", flush=True)
    stats = render_side_by_side(audio, rate, out, panels, fps=args.fps, size=args.size,
                                renderer=args.renderer, seconds=args.seconds,
                                start=args.start, structure=make_structure(args),
                                overwrite=args.overwrite or out == DEFAULT_OUT)
    print(f"{PROG}: wrote {out}: {stats[0].line()}", flush=True)
    for (label, _), s in zip(panels, stats, strict=True):
        print(f"{PROG}: {label}: controller p99 {s.controller_p99_us:.0f} us per frame",
              flush=True)
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
