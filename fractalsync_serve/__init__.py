"""``fractalsync-serve``: the live beat, structure and levels streamed to other apps.

Inputs (:mod:`.inputs`) feed the slow clock in :class:`~.engine.ServeEngine`; each analysed block
becomes a :class:`~.publisher.Publication` handed without waiting to the outputs: OSC
(:mod:`.osc_out`, python-osc) and WebSocket with a browser page (:mod:`.ws_server`,
websockets), both from the ``[serve]`` extra and imported only when used. The published beat
comes from the server's fast clock (:class:`~.serve_clock.ServeClock`: phase predictor, taps,
nudges, output latency).
"""

from .commands import Command, CommandError, parse_command
from .engine import EngineStats, ServeEngine
from .levels import LEVEL_NAMES, levels
from .publisher import Publication, Publisher
from .serve_clock import ClockNow, ServeClock

__all__ = ["ClockNow", "Command", "CommandError", "EngineStats", "LEVEL_NAMES", "Publication",
           "Publisher", "ServeClock", "ServeEngine", "levels", "parse_command"]
