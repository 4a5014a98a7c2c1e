"""The server's fast clock: the library's display clock with the limits of the clients'
commands (nudge total within +-``MAX_NUDGE_S``, latency 0..``MAX_LATENCY_S``)."""

from __future__ import annotations

from fractalsync_tracking.display_clock import DisplayClock

__all__ = ["MAX_LATENCY_S", "MAX_NUDGE_S", "ServeClock"]

MAX_NUDGE_S = 0.5
MAX_LATENCY_S = 2.0


class ServeClock(DisplayClock):
    """:class:`~fractalsync_tracking.display_clock.DisplayClock` with the command limits.

    Parameters
    ----------
    latency_s : float
        Output delay of the receivers in seconds, 0..MAX_LATENCY_S.
    """

    def __init__(self, latency_s: float = 0.0) -> None:
        super().__init__(latency_s, max_latency_s=MAX_LATENCY_S, max_nudge_s=MAX_NUDGE_S)
