"""The WebSocket command schema: what a client may send, validated strictly.

Every client message is one JSON object (a text frame, at most ``MAX_MESSAGE_BYTES``) with a
``"type"`` and exactly the fields listed:

==============================================  ===============================================
message                                         effect
==============================================  ===============================================
``{"type": "subscribe", "every": N}``           receive every N-th state message (N integer,
                                                1..1000; 1 = every publication, the default)
``{"type": "tap"}``                             a tap at the moment the server receives it
``{"type": "nudge", "ms": X}``                  shift the published beat X ms later (negative:
                                                earlier), X in -100..100; the total nudge is
                                                clipped to +-500 ms
``{"type": "latency", "ms": X}``                set the receivers' output delay to X ms, 0..2000
``{"type": "ping"}``                            ask for a ``{"type": "pong"}``
==============================================  ===============================================

The server answers each valid command with ``{"type": "ok", "cmd": <type>}`` (``pong`` for a
ping), and anything else with ``{"type": "error", "error": "<what is wrong>"}`` and no other
effect: a binary frame, text that is not JSON, JSON that is not an object, an unknown
``type``, a missing or extra field, a field of the wrong type (booleans are not numbers) or out
of range. Frames longer than ``MAX_MESSAGE_BYTES`` are refused by the WebSocket layer: the
connection is closed with code 1009 (message too big). A client sending more than
``RATE_PER_S`` messages a second (bursts up to ``RATE_BURST``) gets an error for each message
over the limit, which is not executed; one that keeps flooding (``FLOOD_CLOSE`` refused
messages, forgiven at ``RATE_PER_S`` a second) is disconnected with code 1008 (policy violation).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass

__all__ = ["FLOOD_CLOSE", "MAX_MESSAGE_BYTES", "RATE_BURST", "RATE_PER_S", "Command",
           "CommandError", "RateLimiter", "parse_command"]

MAX_MESSAGE_BYTES = 4096
RATE_PER_S = 20.0
RATE_BURST = 40.0
FLOOD_CLOSE = 200

# type -> {field: (kind, lo, hi)}
_SCHEMA: dict[str, dict[str, tuple[type, float, float]]] = {
    "subscribe": {"every": (int, 1, 1000)},
    "tap": {},
    "nudge": {"ms": (float, -100.0, 100.0)},
    "latency": {"ms": (float, 0.0, 2000.0)},
    "ping": {},
}


class CommandError(ValueError):
    """A client message that is not a valid command; the message says why."""


@dataclass(frozen=True)
class Command:
    """A validated command: ``type`` and its one numeric ``value`` (None for tap/ping)."""

    type: str
    value: float | int | None = None


def _number(name: str, value, kind: type, lo: float, hi: float):
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise CommandError(f"{name} must be a number, got {type(value).__name__}")
    if kind is int and not isinstance(value, int):
        raise CommandError(f"{name} must be an integer, got {value!r}")
    if not math.isfinite(value) or not lo <= value <= hi:
        raise CommandError(f"{name} must be in {lo:g}..{hi:g}, got {value!r}")
    return kind(value)


def parse_command(text) -> Command:
    """Validate one client message (see the module docstring).

    Parameters
    ----------
    text : str (a text frame) or bytes (a binary frame: always refused)

    Raises
    ------
    CommandError
        Naming what is wrong.
    """
    if not isinstance(text, str):
        raise CommandError("binary frames are not accepted; send JSON text")
    if len(text) > MAX_MESSAGE_BYTES:
        raise CommandError(f"message longer than {MAX_MESSAGE_BYTES} characters")
    try:
        data = json.loads(text, parse_constant=_refuse_constant)
    except (ValueError, RecursionError) as exc:  # JSONDecodeError, CommandError included
        raise CommandError(f"not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise CommandError(f"a command must be a JSON object, got {type(data).__name__}")
    kind = data.get("type")
    if not isinstance(kind, str) or kind not in _SCHEMA:
        raise CommandError(f"unknown command type {kind!r}; expected one of "
                           f"{', '.join(sorted(_SCHEMA))}")
    fields = _SCHEMA[kind]
    extra = sorted(set(data) - set(fields) - {"type"})
    if extra:
        raise CommandError(f"{kind}: unexpected field(s) {', '.join(extra)}")
    missing = sorted(set(fields) - set(data))
    if missing:
        raise CommandError(f"{kind}: missing field(s) {', '.join(missing)}")
    if not fields:
        return Command(kind)
    (name, (t, lo, hi)), = fields.items()
    return Command(kind, _number(f"{kind}.{name}", data[name], t, lo, hi))


def _refuse_constant(name: str):
    raise CommandError(f"{name} is not allowed")


class RateLimiter:
    """Token bucket: ``rate`` messages a second, bursts up to ``burst``; a leaky count of the
    refused ones.

    ``allow(now)`` (monotonic seconds) is True when a message may be executed. ``excess`` counts
    refused messages, draining at ``rate`` per second; :attr:`flooding` is True once it
    reaches ``FLOOD_CLOSE`` (e.g. 10 s at twice the rate, or 200 messages at once).
    """

    def __init__(self, rate: float = RATE_PER_S, burst: float = RATE_BURST) -> None:
        self.rate, self.burst = float(rate), float(burst)
        self._tokens = self.burst
        self._t: float | None = None
        self.excess = 0.0

    def allow(self, now: float) -> bool:
        if self._t is not None:
            dt = max(0.0, now - self._t)
            self._tokens = min(self.burst, self._tokens + dt * self.rate)
            self.excess = max(0.0, self.excess - dt * self.rate)
        self._t = now
        if self._tokens >= 1.0:
            self._tokens -= 1.0
            return True
        self.excess += 1.0
        return False

    @property
    def flooding(self) -> bool:
        return self.excess >= FLOOD_CLOSE
