"""``python examples/live_julia.py``: the live Julia-set visual (argument parsing and the modes).

Modes, chosen from the arguments and the machine:

* **window** (a display is available and no ``--out``): the song plays on the speakers (or
  ``--mic`` listens) while a window shows the Julia set. Slow clock: the PortAudio callback copies
  blocks into a lock-free ring; an analysis thread feeds them to the slow clock and publishes
  immutable ``SlowState`` s. Fast clock: the render loop (``--fps``) reads the latest state
  without waiting, advances the beat with the phase predictor, runs the controller, renders.
  For a file, playback and analysis share one sample clock: the picture is drawn for the
  stream time being heard (``FilePlayback.playback_time``) plus ``--latency-ms``.
* **video** (no display, or ``--out``): the file (or the demo song) is rendered causally to an
  MP4 with its audio (see :mod:`examples.julia.video_render`), then frame-time statistics are
  printed. ``--mic`` needs a window.

``--controller onnx`` (default: it measures better than the analytic one on every measure of
``benchmarks/measure_julia_sync.py --controller both``, see the README) runs the trained model
(:class:`~examples.julia.controller_onnx.OnnxController`: the shipped ``controller_v1.onnx`` or
``--controller-model FILE``) and ``--controller analytic`` runs
:class:`~examples.julia.controller.AnalyticController`, in both modes; a missing or invalid
model file is an error naming it, before anything starts.

The demo song is a generated structured song (``generate_song(DEMO_SEED)``, see
``fractalsync_models.training.song_generator``), made on the fly at 44.1 kHz.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import numpy as np

from fractalsync_models.cli_errors import add_debug_flag, cli_entry

from .render_gl import GLUnavailableError
from .video import VideoError
from .window import NoDisplayError

PROG = "live_julia.py"
DEMO_SEED = 2026  # 121.5 BPM, 4/4, 81 s: intro, verse, chorus, verse, inst, chorus, outro
DEMO_RATE = 44100
DEFAULT_OUT = Path("demo_output") / "live_julia.mp4"
#: The analysis ring holds this much audio (s): the callback drops, never blocks, when full.
RING_SECONDS = 4.0


def _size(text: str) -> tuple[int, int]:
    try:
        w, h = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"size must look like 960x540, got {text!r}") from None
    if not (16 <= w <= 7680 and 16 <= h <= 4320) or w % 2 or h % 2:
        raise argparse.ArgumentTypeError(f"size must be even, 16x16 .. 7680x4320, got {text!r}")
    return w, h


def _positive(kind):
    def parse(text: str):
        try:
            v = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
        if not v > 0 or not np.isfinite(v):
            raise argparse.ArgumentTypeError(f"must be > 0, got {text!r}")
        return v
    return parse


def _non_negative(text: str) -> float:
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not v >= 0 or not np.isfinite(v):
        raise argparse.ArgumentTypeError(f"must be >= 0, got {text!r}")
    return v


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=PROG,
        description="A Julia-set visual that follows the beat and the song's sections. With a "
                    "display it opens a window and plays the song; without one (or with --out) "
                    "it renders a video with the song's audio.")
    src = p.add_mutually_exclusive_group()
    src.add_argument("--audio", metavar="FILE", help="a song file (default: the demo song)")
    src.add_argument("--mic", action="store_true", help="listen to an input device (window)")
    src.add_argument("--list-devices", action="store_true", help="list audio devices and exit")
    p.add_argument("--device", type=int, metavar="N", help="audio device index (--list-devices)")
    p.add_argument("--out", metavar="FILE.mp4", help="render a video instead of a window")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --out file")
    p.add_argument("--seconds", type=_positive(float), metavar="N",
                   help="stop after N seconds (video: the span rendered)")
    p.add_argument("--start", type=_non_negative, default=0.0, metavar="S",
                   help="video: first second of the span rendered (default 0)")
    p.add_argument("--size", type=_size, default=(960, 540), metavar="WxH",
                   help="picture size (default 960x540)")
    p.add_argument("--fps", type=_positive(float), default=60.0, help="frames per second")
    p.add_argument("--renderer", choices=("gl", "numba"), default="gl",
                   help="GLSL through moderngl (default) or the numba CPU kernel")
    p.add_argument("--scale", choices=("auto", "1", "2", "3", "4"), default="auto",
                   help="compute one pixel per SCALE x SCALE block and upscale (fixed); auto "
                        "(default): every pixel in videos; in a window on software OpenGL the "
                        "scale and iteration cap follow the frame time (a quality governor), "
                        "every pixel on a GPU")
    p.add_argument("--latency-ms", type=_non_negative, default=None, metavar="X",
                   help="display path delay (projector, TV), so that a pulse is seen when the "
                        "beat is heard; the audio device's own latency is already accounted "
                        "for (default 0)")
    p.add_argument("--silent", action="store_true",
                   help="window: do not play the file, pace it in real time (no output device)")
    p.add_argument("--structure", choices=("model", "none"), default="model",
                   help="structure tracker: the shipped anticipator model, or none (neutral)")
    p.add_argument("--controller", choices=("analytic", "onnx"), default="onnx",
                   help="what turns beat, features and sections into the picture's controls: "
                        "the trained ONNX model (default) or the analytic controller")
    p.add_argument("--controller-model", metavar="FILE.onnx", default=None,
                   help="--controller onnx: the model file (default: the shipped "
                        "fractalsync_models/models/controller_v1.onnx)")
    add_debug_flag(p)
    return p


def display_available() -> bool:
    """True when a window can be opened (an X11 or Wayland display is set)."""
    return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))


def load_input(args) -> tuple[np.ndarray, int, str]:
    """The audio to show: ``--audio FILE`` decoded, or the demo song. Returns
    (audio (n, channels) float32, sample rate Hz, a name)."""
    if args.audio:
        from fractalsync_dsp.audio_io import load_audio
        audio, rate = load_audio(args.audio)
        audio = np.asarray(audio, np.float32)
        if audio.ndim == 1:
            audio = audio[:, None]
        if audio.shape[0] == 0:
            raise ValueError(f"{args.audio}: no audio samples")
        return audio, int(rate), args.audio
    from fractalsync_models.training.song_generator import generate_song
    song = generate_song(DEMO_SEED, sample_rate=DEMO_RATE)
    return song.audio[:, None].astype(np.float32), DEMO_RATE, f"demo song (seed {DEMO_SEED})"


def make_structure(args):
    """The structure tracker for the slow clock, or None for the neutral structure."""
    if args.structure == "none":
        return None
    try:
        from fractalsync_tracking.structure import StructureTracker
    except ImportError:  # the structure model has not landed in this checkout
        return None
    return StructureTracker()


def make_controller(args):
    """The controller ``--controller`` names: an AnalyticController, or an OnnxController of
    ``--controller-model`` (a missing or invalid file raises an error naming it)."""
    if args.controller == "analytic":
        if args.controller_model is not None:
            raise ValueError("--controller-model is for --controller onnx")
        from .controller import AnalyticController
        return AnalyticController()
    from .controller_onnx import OnnxController
    return OnnxController(args.controller_model)


def run_video(args, out: Path) -> int:
    from .video_render import render_video
    controller = make_controller(args)
    audio, rate, name = load_input(args)
    latency = 0.0 if args.latency_ms is None else args.latency_ms / 1e3
    print(f"{PROG}: rendering {name} to {out} ({args.size[0]}x{args.size[1]}, {args.fps:g} fps, "
          f"{args.renderer}, scale {1 if args.scale == 'auto' else args.scale}, "
          f"{args.controller} controller)", flush=True)
    stats = render_video(audio, rate, out, fps=args.fps, size=args.size, renderer=args.renderer,
                         scale=1 if args.scale == "auto" else int(args.scale),
                         seconds=args.seconds, start=args.start,
                         structure=make_structure(args), latency_s=latency,
                         overwrite=args.overwrite or out == DEFAULT_OUT, controller=controller)
    print(f"{PROG}: wrote {out}: {stats.line()}", flush=True)
    return 0


def run_window(args) -> int:
    from fractalsync_dsp.block_ring import BlockRing
    from fractalsync_dsp.live_audio import AudioDeviceError, FilePlayback, MicInput
    from fractalsync_tracking.analysis_thread import AnalysisThread
    from fractalsync_tracking.slow_clock import SlowClock

    from .live_loop import LiveLoop
    from .window import JuliaWindow

    if args.renderer != "gl":
        raise ValueError("the window draws with OpenGL; --renderer numba renders videos only "
                         "(add --out FILE.mp4)")
    controller = make_controller(args)
    window = JuliaWindow(*args.size, title="FractalSync live Julia",
                         scale=None if args.scale == "auto" else int(args.scale), fps=args.fps)
    try:
        if args.mic:
            channels = 1
            ring = BlockRing(int(RING_SECONDS * 48000) * 2, channels)
            source = MicInput(ring, device=args.device, channels=channels)
            rate = source.sample_rate
            name = f"microphone (device {args.device if args.device is not None else 'default'})"
        else:
            audio, rate, name = load_input(args)
            ring = BlockRing(int(RING_SECONDS * rate), audio.shape[1])
            try:
                source = FilePlayback(audio, rate, ring, device=args.device,
                                      play=not args.silent)
            except AudioDeviceError as exc:
                raise AudioDeviceError(f"{exc}; or pass --silent to show the file without "
                                       "playing it") from None
        clock = SlowClock(rate, structure=make_structure(args))
        thread = AnalysisThread(ring, clock)
        latency = 0.0 if args.latency_ms is None else args.latency_ms / 1e3
        loop = LiveLoop(window, clock, thread, source, ring, fps=args.fps, latency_s=latency,
                        controller=controller)
        print(f"{PROG}: {name} in a window ({args.size[0]}x{args.size[1]}, scale "
              f"{window.renderer.scale}, {args.controller} controller); space taps, arrows "
              "nudge, F fullscreen, H overlay, Esc quits", flush=True)
        stats = loop.run(seconds=args.seconds)
        print(f"{PROG}: {stats}", flush=True)
    finally:
        window.close()
    return 0


@cli_entry(PROG, expected=(NoDisplayError, GLUnavailableError, VideoError))
def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    if args.list_devices:
        from fractalsync_dsp.live_audio import format_devices
        print(format_devices())
        return 0
    if args.out is not None or not display_available():
        if args.mic:
            raise NoDisplayError("--mic needs a window, and no display is available (DISPLAY "
                                 "is not set); run it on a desktop, or render a file with "
                                 "--audio FILE --out FILE.mp4")
        out = Path(args.out) if args.out is not None else DEFAULT_OUT
        if out.suffix.lower() not in (".mp4", ".mkv", ".mov"):
            raise ValueError(f"--out {out}: use a .mp4 (or .mkv/.mov) file name")
        return run_video(args, out)
    return run_window(args)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
