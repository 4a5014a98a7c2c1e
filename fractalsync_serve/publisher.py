"""One publication per analysed input block, fanned out to the outputs without ever waiting.

The analysis thread builds a :class:`Publication` after every ``SlowClock.push`` and calls
:meth:`Publisher.publish`. Each output registers a *sink*: a callable that must return at once
(the OSC sender puts the publication in its bounded queue; the WebSocket server hands it to
its event loop, which fans it out to per-client bounded queues). A sink that raises is
removed and logged; the analysis carries on. The publisher itself holds no lock and never
waits: the cost of a publication to the analysis is the sinks' hand-over calls only.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass

from fractalsync_tracking.beat_state import BeatEvent
from fractalsync_tracking.display_clock import BeatNow
from fractalsync_tracking.slow_state import SECTION_LABELS, SlowState

__all__ = ["Publication", "Publisher"]

log = logging.getLogger("fractalsync_serve")


@dataclass(frozen=True)
class Publication:
    """Everything the outputs send for one analysed block.

    Attributes
    ----------
    seq : int
        Publication number since start (0, 1, 2, ...).
    state : SlowState
        The slow clock's state after the push (its ``beat.t_sec`` lags ``stream_time``).
    events : tuple of BeatEvent
        The beats the tracker decided in this push (late by the filter's decision delay).
    stream_time : float
        Seconds of input analysed (samples consumed / rate): the newest audio described.
    wall_time : float
        Unix time (s) at which the audio at ``stream_time`` was captured or heard (for ``--fast``
        input: the time of the publication).
    latency_s : float
        The receivers' output delay the clock was predicted for.
    clock : BeatNow
        The published beat clock (the server's fast clock at ``stream_time + latency``).
    """

    seq: int
    state: SlowState
    events: tuple[BeatEvent, ...]
    stream_time: float
    wall_time: float
    latency_s: float
    clock: BeatNow

    @property
    def section_index(self) -> int:
        """Index of the most probable section label (contract order)."""
        return SECTION_LABELS.index(self.state.structure.label)

    def to_message(self) -> dict:
        """The WebSocket message: the SlowState's ``state_bus`` fields (``beat``, ``structure``,
        ``features``) plus ``type: "state"``, ``seq``, ``stream_time``, ``wall_time``,
        ``latency_ms``, ``section`` (label), ``clock`` (:meth:`BeatNow.to_dict`) and
        ``events`` (the tracker's beats decided in this push)."""
        msg = {"type": "state", "seq": self.seq, "stream_time": self.stream_time,
               "wall_time": self.wall_time, "latency_ms": self.latency_s * 1e3}
        msg.update(self.state.to_dict())
        msg["section"] = self.state.structure.label
        msg["clock"] = self.clock.to_dict()
        msg["events"] = [e.to_dict() for e in self.events]
        return msg

    def to_json(self) -> str:
        """:meth:`to_message` as JSON text."""
        return json.dumps(self.to_message())


Sink = Callable[[Publication], None]


class Publisher:
    """Fan-out of publications to non-blocking sinks (see the module docstring)."""

    def __init__(self) -> None:
        self._sinks: dict[str, Sink] = {}
        self.published = 0

    def add_sink(self, name: str, sink: Sink) -> None:
        """Register ``sink(publication)``; it must return without waiting. ValueError for a
        name already registered."""
        if name in self._sinks:
            raise ValueError(f"a sink named {name!r} is already registered")
        if not callable(sink):
            raise TypeError(f"sink must be callable, got {type(sink).__name__}")
        self._sinks = {**self._sinks, name: sink}

    def remove_sink(self, name: str) -> None:
        """Unregister a sink (no error if it is not registered)."""
        self._sinks = {k: v for k, v in self._sinks.items() if k != name}

    @property
    def sink_names(self) -> tuple[str, ...]:
        return tuple(self._sinks)

    def publish(self, pub: Publication) -> None:
        """Hand ``pub`` to every sink; a sink that raises is removed and logged."""
        for name, sink in self._sinks.items():
            try:
                sink(pub)
            except Exception as exc:  # an output's bug must not stop the analysis
                log.error("output %s failed and was removed: %s: %s", name,
                          type(exc).__name__, exc)
                self.remove_sink(name)
        self.published += 1
