"""The fast (render) clock of the window mode.

:class:`LiveLoop` runs at ``fps`` on the main thread while the audio callback fills a
:class:`~fractalsync_dsp.block_ring.BlockRing` and an
:class:`~fractalsync_tracking.analysis_thread.AnalysisThread` analyses it. Each frame it

1. takes the window's key events (tap, nudge, fullscreen, overlay, quit);
2. reads the stream time being heard: ``FilePlayback.playback_time()`` for a file (the same
   sample clock that feeds the analysis), or a smoothed ``MicInput.stream_time`` for the
   microphone (:class:`StreamClock`);
3. drains the beat states the analysis thread published into the fast clock's predictor and
   reads its latest ``SlowState`` (a reference read: never waits for the analysis);
4. reads the micro features at that time (``SlowClock.features_at``: a pure read);
5. steps the controller and draws, with the overlay (BPM, beat in bar, section, hazard bars);
   a governed window (``JuliaWindow(scale=None)`` on software OpenGL) picks each frame's scale
   and iteration cap from the cost of the frames before it
   (:class:`~examples.julia.governor.QualityGovernor`).

Nothing here blocks on the analysis: a slow analysis shows as an older ``SlowState``, and the
ring drops audio (counted) rather than stalling the callback.
"""

from __future__ import annotations

import time

import numpy as np

from fractalsync_tracking.display_clock import DisplayClock
from fractalsync_tracking.slow_state import HORIZONS_BEATS

from .controller import AnalyticController, ControlInputs, to_params

__all__ = ["LiveLoop", "StreamClock"]

#: A stream clock further than this from the device's count (s) is re-anchored.
_REANCHOR_S = 0.05
#: Fraction of the remaining error corrected per frame otherwise.
_SLEW = 0.05
#: One nudge key press shifts the shown beat by this much (s), later or earlier.
NUDGE_S = 0.010


class StreamClock:
    """A smooth, monotone stream time from a counter that advances in whole blocks.

    ``now(device_time, wall)``: ``device_time`` is samples delivered / rate (steps of one block),
    ``wall`` a monotonic wall clock (s). The estimate advances with the wall clock and slews
    toward the device count; it jumps only when it is more than ``_REANCHOR_S`` off, and never
    goes backwards.
    """

    def __init__(self) -> None:
        self._est: float | None = None
        self._wall = 0.0

    def now(self, device_time: float, wall: float) -> float:
        if self._est is None:
            self._est, self._wall = device_time, wall
            return self._est
        est = self._est + max(0.0, wall - self._wall)
        err = device_time - est
        est = device_time if abs(err) > _REANCHOR_S else est + _SLEW * err
        self._est, self._wall = max(est, self._est), wall
        return self._est


class LiveLoop:
    """Window mode's render loop (see the module docstring).

    Parameters
    ----------
    window : JuliaWindow
    clock : SlowClock (pushed by ``thread``; only read here)
    thread : AnalysisThread
    source : FilePlayback or MicInput (started by :meth:`run`)
    ring : the BlockRing the source writes and the thread reads
    fps : target frames per second.
    latency_s : extra output delay added to beat queries (display/projector), >= 0.
    controller : ``step(ControlInputs) -> control (8,)``, e.g. an ``OnnxController``
        (default: a new ``AnalyticController``).
    """

    def __init__(self, window, clock, thread, source, ring, *, fps: float = 60.0,
                 latency_s: float = 0.0, controller=None) -> None:
        self.window, self.clock, self.thread, self.source = window, clock, thread, source
        self.ring = ring
        self.fps = float(fps)
        self.beat = DisplayClock(latency_s)
        self.controller = AnalyticController() if controller is None else controller
        self.overlay = True
        self._is_file = hasattr(source, "playback_time")
        self.keys = {"tap": 0, "nudge": 0, "fullscreen": 0, "overlay": 0}
        self._stream = StreamClock()

    def stream_time(self) -> float:
        """Stream time (s) of the audio being heard now."""
        if self._is_file:
            return self.source.playback_time()
        return self._stream.now(self.source.stream_time, time.monotonic())

    def _handle(self, events) -> bool:
        for name in events:
            if name == "quit":
                return False
            if name == "tap":
                self.beat.tap(self.stream_time())
                self.keys["tap"] += 1
            elif name in ("nudge+", "nudge-"):
                self.beat.nudge(NUDGE_S if name == "nudge+" else -NUDGE_S)
                self.keys["nudge"] += 1
            elif name == "fullscreen":
                self.window.toggle_fullscreen()
                self.keys["fullscreen"] += 1
            elif name == "toggle_overlay":
                self.overlay = not self.overlay
                self.keys["overlay"] += 1
        return True

    def overlay_content(self, now, structure) -> tuple[list[str], list[tuple[str, float]]]:
        """The overlay's text lines and hazard bars for one frame."""
        label = "no structure" if structure.hazard_probs == (0.0,) * 5 and \
            max(structure.section_probs) == min(structure.section_probs) else structure.label
        lines = [f"{now.bpm:5.1f} BPM  conf {now.conf:.2f}" if now.source != "none"
                 else "listening...",
                 f"beat {now.beat_in_bar}/{now.beats_per_bar}  ({now.source})",
                 f"section: {label}"]
        bars = [(f"{h} beat{'s' if h > 1 else ''}", float(p))
                for h, p in zip(HORIZONS_BEATS, structure.hazard_probs, strict=True)]
        return lines, bars

    def frame(self) -> bool:
        """Draw one frame; False when the user quit."""
        if not self._handle(self.window.poll_events()):
            return False
        self.thread.check()
        t = self.stream_time()
        for state in self.thread.drain_beat_states():
            self.beat.update(state)
        slow = self.thread.latest
        now = self.beat.at(t)
        inputs = ControlInputs.from_beat(t, now, slow.structure, self.clock.features_at(t))
        self.window.draw(to_params(self.controller.step(inputs)))
        if self.overlay:
            self.window.draw_overlay(*self.overlay_content(now, slow.structure))
        self.window.present()
        return True

    def run(self, seconds: float | None = None) -> str:
        """Start the audio and the analysis, render until the file ends, the user quits or
        ``seconds`` pass; stop everything. Returns a one-line summary with frame times (and,
        for a governed window, the share of frames at each quality level)."""
        period = 1.0 / self.fps
        times = []
        self.thread.start()
        self.source.start()
        t0 = time.monotonic()
        deadline = t0
        try:
            while True:
                f0 = time.perf_counter()
                if not self.frame():
                    break
                times.append((time.perf_counter() - f0) * 1e3)
                now = time.monotonic()
                if seconds is not None and now - t0 >= seconds:
                    break
                if self._is_file and self.source.finished:
                    break
                deadline = max(deadline + period, now - period)
                if deadline > now:
                    time.sleep(deadline - now)
        finally:
            self.source.stop()
            self.thread.stop(timeout=5.0)
        wall = time.monotonic() - t0
        ft = np.asarray(times) if times else np.zeros(1)
        dropped = self.ring.dropped_samples
        governor = self.window.governor
        quality = "" if governor is None else f"; {governor.summary()}"
        return (f"{len(times)} frames in {wall:.1f} s ({len(times) / max(wall, 1e-9):.1f} fps); "
                f"frame time p50 {np.percentile(ft, 50):.1f} ms, p99 "
                f"{np.percentile(ft, 99):.1f} ms; {dropped} input samples dropped; keys: "
                + ", ".join(f"{k} {v}" for k, v in self.keys.items()) + quality)
