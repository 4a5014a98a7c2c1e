"""``fractalsync-serve``: the live beat, structure and levels streamed to other apps.

Inputs (:mod:`.inputs`) feed the slow clock in :class:`~.engine.ServeEngine`; each analysed block
becomes a :class:`~.publisher.Publication` handed without waiting to the outputs: OSC
(:mod:`.osc_out`, python-osc) and WebSocket with a browser page (:mod:`.ws_server`,
websockets, run in a child process by :mod:`.ws_process`), both from the ``[serve]`` extra and
imported only when used; Ableton Link (:mod:`.link_out`, ``[link]``) and MIDI clock
(:mod:`.midi_clock`, ``[midi]``). The published beat comes from the server's fast clock
(:class:`~.serve_clock.ServeClock`: the library's
:class:`~fractalsync_tracking.display_clock.DisplayClock` with the commands' limits).
"""

import importlib

__all__ = ["Command", "CommandError", "EngineStats", "LEVEL_NAMES", "Publication",
           "Publisher", "ServeClock", "ServeEngine", "levels", "parse_command"]

_HOME = {"ServeClock": "serve_clock", "Command": "commands",
         "CommandError": "commands", "parse_command": "commands", "EngineStats": "engine",
         "ServeEngine": "engine", "LEVEL_NAMES": "levels", "levels": "levels",
         "Publication": "publisher", "Publisher": "publisher"}


def __getattr__(name: str):
    """The public names, imported on first use (``fractalsync-serve --help`` stays fast: the
    tracking package loads only when the analysis starts)."""
    if name not in _HOME:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f".{_HOME[name]}", __name__), name)
