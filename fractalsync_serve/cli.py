"""``fractalsync-serve``: stream the live beat, structure and levels to other apps.

Examples::

    fractalsync-serve --mic --ws 8765                          # browser page at http://127.0.0.1:8765/
    fractalsync-serve --audio song.mp3 --play --osc 127.0.0.1:7000 --osc-profile resolume
    fractalsync-serve --audio song.wav --osc 127.0.0.1:9000 --ws 8765 --latency-ms 40
    sox song.wav -t raw -e float -b 32 -c 1 -r 48000 - | \
        fractalsync-serve --stdin-pcm 48000 --ws 8765
    fractalsync-serve --audio song.wav --fast --osc 127.0.0.1:9000   # as fast as it analyses

It stops at the end of a file, or on Ctrl-C / SIGTERM (exit status 0, every socket closed).
Errors follow the project's convention (:mod:`fractalsync_models.cli_errors`): one
``fractalsync-serve: error: ...`` line, exit 1 (2 for bad arguments).
"""

from __future__ import annotations

import argparse
import importlib
import logging
import math
import signal
import sys
import threading

from fractalsync_models.cli_errors import add_debug_flag, cli_entry

from .osc_out import PROFILES, parse_target

PROG = "fractalsync-serve"
log = logging.getLogger("fractalsync_serve")


def _rate(text: str) -> int:
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"sample rate must be a whole number of Hz, "
                                         f"got {text!r}") from None
    if not 8000 <= v <= 384000:
        raise argparse.ArgumentTypeError(f"sample rate must be in 8000..384000 Hz, got {v}")
    return v


def _port(text: str) -> int:
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"port must be a number, got {text!r}") from None
    if not 0 <= v <= 65535:
        raise argparse.ArgumentTypeError(f"port must be in 0..65535 (0: any free), got {v}")
    return v


def _target(text: str) -> tuple[str, int]:
    try:
        return parse_target(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _ms(text: str) -> float:
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not math.isfinite(v) or not 0 <= v <= 2000:
        raise argparse.ArgumentTypeError(f"must be in 0..2000 ms, got {text!r}")
    return v


def _seconds(text: str) -> float:
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not math.isfinite(v) or v <= 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {text!r}")
    return v


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=PROG,
        description="Track beat, bar, tempo, song sections and levels of live audio and stream "
                    "them over OSC and WebSocket (with a browser page at / of the WebSocket "
                    "port).")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--mic", action="store_true", help="listen to an input device")
    src.add_argument("--audio", metavar="FILE", help="a song file, in real time (see --play, "
                                                     "--fast)")
    src.add_argument("--stdin-pcm", type=_rate, metavar="RATE",
                     help="raw float32 little-endian mono samples at RATE Hz on stdin")
    src.add_argument("--list-devices", action="store_true", help="list audio devices and exit")
    p.add_argument("--device", type=int, metavar="N",
                   help="audio device index for --mic or --play (see --list-devices)")
    p.add_argument("--play", action="store_true", help="--audio: also play it on the speakers")
    p.add_argument("--fast", action="store_true",
                   help="--audio: analyse as fast as possible instead of in real time (time "
                        "tags then carry the time of sending)")
    p.add_argument("--osc", type=_target, action="append", default=[], metavar="HOST:PORT",
                   help="send OSC (UDP) to HOST:PORT; repeatable")
    p.add_argument("--osc-profile", choices=PROFILES, default="fractalsync",
                   help="OSC address space: /fractalsync/... (default) or Resolume's tempo "
                        "controller")
    p.add_argument("--link", action="store_true",
                   help="join the Ableton Link session on the local network and steer its tempo "
                        "and bar phase to the tracked beat ([link] extra); --latency-ms makes "
                        "its beats lead the audio")
    p.add_argument("--midi-clock", metavar="PORT",
                   help="send MIDI clock (24 per beat, start on a downbeat, stop at exit) to the "
                        "output port PORT, or to a new virtual port of that name ([midi] extra)")
    p.add_argument("--ws", type=_port, metavar="PORT",
                   help="serve WebSocket clients and the page at http://HOST:PORT/ (0: any "
                        "free port, printed at start)")
    p.add_argument("--host", default="127.0.0.1",
                   help="address the WebSocket server binds (default 127.0.0.1: this machine "
                        "only; 0.0.0.0 for the network)")
    p.add_argument("--latency-ms", type=_ms, default=0.0, metavar="X",
                   help="output delay of the receivers (projector, network), 0..2000 ms: the "
                        "published phase is predicted X ms ahead and time tags carry +X ms")
    p.add_argument("--structure", choices=("model", "none"), default="model",
                   help="sections and boundary hazard: the shipped model, or none (neutral)")
    p.add_argument("--seconds", type=_seconds, metavar="N",
                   help="stop after N seconds of audio")
    p.add_argument("--quiet", action="store_true", help="log warnings and errors only")
    add_debug_flag(p)
    return p


def _check_args(p: argparse.ArgumentParser, args) -> None:
    if args.play and not args.audio:
        p.error("--play needs --audio FILE")
    if args.fast and not args.audio:
        p.error("--fast needs --audio FILE")
    if args.fast and args.play:
        p.error("--fast and --play exclude each other (playing is real time)")
    if args.device is not None and not (args.mic or args.play):
        p.error("--device needs --mic or --play")
    if (args.link or args.midi_clock is not None) and args.fast:
        p.error("--link and --midi-clock need real-time input (not --fast)")
    if not args.list_devices and not args.osc and args.ws is None and not args.link \
            and args.midi_clock is None:
        p.error("nothing to publish to: give --osc HOST:PORT, --ws PORT, --link and/or "
                "--midi-clock PORT")


def make_source(args):
    """The input source the arguments ask for (not started)."""
    from . import inputs

    if args.mic:
        return inputs.MicSource(device=args.device)
    if args.stdin_pcm is not None:
        return inputs.StdinSource(args.stdin_pcm, sys.stdin.fileno())
    audio, rate = inputs.load_file(args.audio)
    if args.fast:
        return inputs.FastFileSource(audio, rate, args.audio)
    return inputs.FileSource(audio, rate, args.audio, play=args.play, device=args.device)


def _require_extra(module: str, option: str) -> None:
    try:
        importlib.import_module(module)
    except ImportError:
        raise ImportError(f"{option} needs the [serve] extra ({module} is not installed): pip "
                          "install 'fractalsync-dsp[serve]'") from None


def _structure(args):
    if args.structure == "none":
        return None
    from fractalsync_tracking.structure import StructureTracker

    return StructureTracker()


def _setup_logging(quiet: bool) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter(f"{PROG}: %(message)s"))
    log.handlers[:] = [handler]
    log.setLevel(logging.WARNING if quiet else logging.INFO)
    log.propagate = False
    logging.getLogger("fractalsync_serve.websockets").setLevel(logging.ERROR)


@cli_entry(PROG, expected=(ImportError,))
def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    _check_args(parser, args)
    if args.list_devices:
        from fractalsync_dsp.live_audio import format_devices
        print(format_devices())
        return 0
    _setup_logging(args.quiet)

    from fractalsync_tracking.slow_clock import SlowClock

    from .engine import ServeEngine
    from .publisher import Publisher
    from .serve_clock import ServeClock

    stop = threading.Event()
    publisher = Publisher()
    closers = []
    try:
        engine_ref: list = []
        if args.ws is not None:
            _require_extra("websockets", "--ws")
            from .ws_process import WsProcess

            ws = WsProcess(args.host, args.ws, lambda cmd, t: engine_ref[0].submit(cmd, t),
                           quiet=args.quiet)
            ws.start()
            closers.append(ws.stop)
            publisher.add_sink("websocket", ws.sink)
        if args.osc:
            _require_extra("pythonosc", "--osc")
            from .osc_out import OscOut

            osc = OscOut(args.osc, args.osc_profile)
            closers.append(osc.close)
            publisher.add_sink("osc", osc.sink)
        if args.link:
            from .link_out import LinkOut

            link = LinkOut(args.latency_ms / 1e3)
            closers.append(link.close)
            publisher.add_sink("link", link.publish)
        if args.midi_clock is not None:
            from .midi_clock import MidiClockOut

            midi = MidiClockOut(args.midi_clock, args.latency_ms / 1e3)
            closers.append(midi.close)
            publisher.add_sink("midi-clock", midi.publish)
        source = make_source(args)
        closers.append(source.close)
        engine = ServeEngine(source, SlowClock(source.sample_rate, structure=_structure(args)),
                             publisher, ServeClock(args.latency_ms / 1e3))
        engine_ref.append(engine)
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, lambda *_: stop.set())
        outs = []
        if args.ws is not None:
            outs.append(f"WebSocket ws://{args.host}:{ws.port}/ (page http://{args.host}:"
                        f"{ws.port}/)")
        if args.osc:
            outs.append("OSC " + ", ".join(f"{h}:{p}" for h, p in args.osc)
                        + f" ({args.osc_profile})")
        if args.link:
            outs.append("Ableton Link")
        if args.midi_clock is not None:
            outs.append(f"MIDI clock to {args.midi_clock!r}")
        print(f"{PROG}: serving {source.description} -> {'; '.join(outs)}", flush=True)
        stats = engine.run(stop, args.seconds)
        print(f"{PROG}: stopped: {stats.line()}", flush=True)
    finally:
        for close in reversed(closers):
            close()
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
