"""Causal offline rendering: the live app's picture, frame by frame, written to a video.

Frame ``k`` shows what the live app would show at stream time ``t_k = start + k / fps``:

1. the slow clock has been pushed every input block that *ended* by ``t_k`` (blocks of
   ``BLOCK_SAMPLES`` at the file's own rate, exactly as a sound card delivers them; the stream
   starts at the beginning of the file, so with ``start > 0`` the tracker is as warm as in a
   live run that had played the file from its start);
2. every beat state those pushes produced went into the fast clock's phase predictor, which is
   queried at ``t_k`` (plus the output latency, 0 for a video: its audio and picture are muxed
   in sync);
3. the micro features are the newest analysis frame at or before ``t_k``
   (:meth:`SlowClock.features_at`), the structure the newest published;
4. the controller steps to ``t_k`` and the renderer draws its parameters.

No step reads audio after ``t_k``. The video carries the audio of ``[start, start + seconds)``.

:func:`render_video` draws one controller (the analytic one by default, or any object with
its ``step(ControlInputs)`` / ``reset()``, e.g.
:class:`~examples.julia.controller_onnx.OnnxController`).
:func:`render_side_by_side` draws several controllers fed the same inputs next to each other,
each panel labelled at its top left, into one video with the audio.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field

import numpy as np

from fractalsync_tracking.display_clock import DisplayClock
from fractalsync_tracking.slow_clock import SlowClock

from .controller import AnalyticController, ControlInputs, to_params
from .renderers import make_renderer
from .video import VideoWriter

__all__ = ["BLOCK_SAMPLES", "CausalStream", "RenderStats", "render_side_by_side", "render_video"]

#: Input block size (samples at the file's rate), as a sound card delivers audio.
BLOCK_SAMPLES = 1024


@dataclass(frozen=True)
class RenderStats:
    """What a video render measured (times in milliseconds of wall time per frame)."""

    frames: int
    fps: float
    seconds: float
    render_p50_ms: float
    render_p99_ms: float
    frame_p50_ms: float
    frame_p99_ms: float
    analysis_p99_ms: float
    wall_s: float
    controls: np.ndarray  # (frames, 8) the controller's outputs, for measurement
    beat_times: np.ndarray  # (B,) s, the beats the tracker reported up to the last frame
    #: (frames,) wall time of each controller step in microseconds.
    controller_us: np.ndarray = field(default_factory=lambda: np.zeros(0))

    @property
    def controller_p99_us(self) -> float:
        """p99 of the controller's step time (us; NaN when not measured)."""
        return float(np.percentile(self.controller_us, 99)) if self.controller_us.size \
            else float("nan")

    def line(self) -> str:
        """One line for the terminal."""
        return (f"{self.frames} frames ({self.seconds:.1f} s at {self.fps:g} fps): "
                f"render+readback p50 {self.render_p50_ms:.1f} ms, p99 "
                f"{self.render_p99_ms:.1f} ms; whole frame p50 {self.frame_p50_ms:.1f} ms, "
                f"p99 {self.frame_p99_ms:.1f} ms; controller p99 "
                f"{self.controller_p99_us:.0f} us; analysis p99 {self.analysis_p99_ms:.2f} ms "
                f"per {BLOCK_SAMPLES}-sample block; {self.wall_s:.1f} s wall "
                f"({self.seconds / max(self.wall_s, 1e-9):.2f}x real time)")


class CausalStream:
    """The live app's analysis side, driven by render times instead of a sound card.

    :meth:`advance` pushes the slow clock every ``BLOCK_SAMPLES`` block of ``audio`` that ends
    at or before a stream time (never more), and hands every beat state to the fast clock;
    :meth:`inputs` is what the controller sees at that time. Render times must not decrease.

    Parameters
    ----------
    audio : array (n,) or (n, channels), float32, at ``sample_rate`` Hz: the whole stream.
    structure : a structure tracker for the slow clock (None: neutral structure).
    latency_s : output-path delay added to every beat query (s, >= 0).
    """

    def __init__(self, audio: np.ndarray, sample_rate: int, structure=None,
                 latency_s: float = 0.0) -> None:
        self.audio, self.sample_rate = audio, sample_rate
        self.clock = SlowClock(sample_rate, structure=structure)
        self.beat = DisplayClock(latency_s)
        self.pos = 0  # samples pushed so far
        self.analysis_ms: list[float] = []
        self.beat_times: list[float] = []  # every beat the tracker reported (s)

    def advance(self, t: float, timed: bool = True) -> None:
        """Push every block that ended by stream time ``t`` (s)."""
        limit = int(np.floor(t * self.sample_rate))
        while self.pos + BLOCK_SAMPLES <= limit:
            b0 = time.perf_counter()
            self.clock.push(self.audio[self.pos:self.pos + BLOCK_SAMPLES])
            if timed:
                self.analysis_ms.append((time.perf_counter() - b0) * 1e3)
            for state in self.clock.beat_states_since_last_push:
                self.beat.update(state)
            self.beat_times.extend(e.t_sec for e in self.clock.beat_events_since_last_push)
            self.pos += BLOCK_SAMPLES

    def inputs(self, t: float) -> ControlInputs:
        """The controller's inputs at stream time ``t`` (after :meth:`advance` to ``t``)."""
        return ControlInputs.from_beat(t, self.beat.at(t), self.clock.latest.structure,
                                       self.clock.features_at(t))


def render_video(audio: np.ndarray, sample_rate: int, out, *, fps: float = 60.0,
                 size: tuple[int, int] = (960, 540), renderer: str = "gl", scale: int = 1,
                 seconds: float | None = None, start: float = 0.0, structure=None,
                 latency_s: float = 0.0, overwrite: bool = False, on_frame=None,
                 controller=None) -> RenderStats:
    """Render the live picture of ``audio`` to an MP4 (see the module docstring).

    Parameters
    ----------
    audio : array (n,) or (n, channels), float32
        The whole stream at ``sample_rate`` Hz.
    out : path of the ``.mp4``.
    fps : frames per second.
    size : (width, height) in pixels, even.
    renderer : "gl" or "numba".
    scale : compute one pixel per ``scale`` x ``scale`` block, upscaled (1: every pixel).
    seconds, start : the span rendered, in seconds of the stream (default: from ``start`` to
        the end).
    structure : a structure tracker for the slow clock (None: neutral structure).
    latency_s : output-path delay added to every beat query (0 for a video).
    overwrite : replace an existing ``out``.
    on_frame : optional callable ``(k, t, frame (h, w, 3) uint8)`` for tests and measurement.
    controller : the controller (``step(ControlInputs)``, ``reset()``; default a fresh
        :class:`AnalyticController`); it is reset before the first frame.
    """
    controller = AnalyticController() if controller is None else controller
    return _render(audio, sample_rate, out, [(None, controller)], fps=fps, size=size,
                   renderer=renderer, scale=scale, seconds=seconds, start=start,
                   structure=structure, latency_s=latency_s, overwrite=overwrite,
                   on_frame=on_frame)[0]


def render_side_by_side(audio: np.ndarray, sample_rate: int, out, panels, *, fps: float = 60.0,
                        size: tuple[int, int] = (480, 270), renderer: str = "gl",
                        scale: int = 1, seconds: float | None = None, start: float = 0.0,
                        structure=None, latency_s: float = 0.0, overwrite: bool = False,
                        on_frame=None) -> list[RenderStats]:
    """Several controllers on the same causal inputs, next to each other in one video.

    ``panels``: a sequence of ``(label, controller)``, drawn left to right, each ``size``
    (width, height) pixels with its label at the top left (white on a dark box); the video is
    ``len(panels) * width`` x ``height`` with the audio of the span. Every frame, the stream is
    advanced and its inputs (the same object) go to each controller in turn. The other
    parameters are :func:`render_video`'s (``on_frame`` sees the whole composite). Returns one
    :class:`RenderStats` per panel: its own ``controls`` and ``controller_us``; the timings of
    rendering and of whole frames cover all the panels.
    """
    panels = list(panels)
    if not panels or not all(isinstance(p, tuple) and len(p) == 2 and isinstance(p[0], str)
                             for p in panels):
        raise ValueError("panels must be a non-empty sequence of (label, controller)")
    return _render(audio, sample_rate, out, panels, fps=fps, size=size, renderer=renderer,
                   scale=scale, seconds=seconds, start=start, structure=structure,
                   latency_s=latency_s, overwrite=overwrite, on_frame=on_frame)


#: Label text height (pixels) per 100 pixels of panel height, and its limits.
_LABEL_PER_100, _LABEL_MIN, _LABEL_MAX = 9, 12, 40


def _label_mask(text: str, panel_height: int) -> np.ndarray:
    """Coverage (h, w) float32 in [0, 1] of ``text`` drawn with pygame's default font."""
    os.environ.setdefault("PYGAME_HIDE_SUPPORT_PROMPT", "1")  # the banner would go to stdout
    import pygame

    pygame.font.init()
    px = min(max(panel_height * _LABEL_PER_100 // 100, _LABEL_MIN), _LABEL_MAX)
    surface = pygame.font.Font(None, px).render(text, True, (255, 255, 255))
    return pygame.surfarray.array_alpha(surface).T.astype(np.float32) / 255.0


def _draw_label(panel: np.ndarray, mask: np.ndarray) -> None:
    """Draw a label mask into the top left of ``panel`` (h, w, 3) uint8, in place: a box
    darkened to 40 % under white text."""
    pad = max(2, mask.shape[0] // 4)
    h = min(mask.shape[0], panel.shape[0] - 2 * pad)
    w = min(mask.shape[1], panel.shape[1] - 2 * pad)
    if h <= 0 or w <= 0:
        return
    box = panel[:h + 2 * pad, :w + 2 * pad]
    box[:] = (box * 0.4).astype(np.uint8)
    region = panel[pad:pad + h, pad:pad + w].astype(np.float32)
    a = mask[:h, :w, None]
    panel[pad:pad + h, pad:pad + w] = (region * (1.0 - a) + 255.0 * a + 0.5).astype(np.uint8)


def _render(audio, sample_rate, out, panels, *, fps, size, renderer, scale, seconds, start,
            structure, latency_s, overwrite, on_frame) -> list[RenderStats]:
    """The render loop of :func:`render_video` (one unlabelled panel) and
    :func:`render_side_by_side`."""
    n = audio.shape[0]
    duration = n / sample_rate
    if not 0.0 <= start < duration:
        raise ValueError(f"--start {start} s is outside the audio (0 .. {duration:.2f} s)")
    span = duration - start if seconds is None else min(float(seconds), duration - start)
    if not span > 0:
        raise ValueError(f"--seconds must be > 0, got {seconds!r}")
    n_frames = int(np.floor(span * fps))
    if n_frames < 1:
        raise ValueError(f"{span:.3f} s at {fps:g} fps is less than one frame")
    width, height = size
    a0 = int(round(start * sample_rate))
    a1 = a0 + int(round(n_frames / fps * sample_rate))
    stream = CausalStream(audio, sample_rate, structure, latency_s)
    stream.advance(start, timed=False)  # the stream before the span: analysed, not drawn
    n_panels = len(panels)
    masks = [None if label is None else _label_mask(label, height) for label, _ in panels]
    for _, controller in panels:
        controller.reset()
    controls = np.zeros((n_panels, n_frames, 8), np.float32)
    controller_us = np.zeros((n_panels, n_frames))
    render_ms, frame_ms = [], []
    wall0 = time.perf_counter()
    with make_renderer(renderer, width, height, scale=scale) as gfx, \
            VideoWriter(out, n_panels * width, height, fps, audio[a0:a1], sample_rate,
                        overwrite=overwrite) as video:
        panel = np.empty((height, width, 3), np.uint8)
        image = panel if n_panels == 1 else np.empty((height, n_panels * width, 3), np.uint8)
        for k in range(n_frames):
            f0 = time.perf_counter()
            t = start + k / fps
            stream.advance(t)
            inputs = stream.inputs(t)
            r_ms = 0.0
            for i, (_, controller) in enumerate(panels):
                c0 = time.perf_counter_ns()
                control = controller.step(inputs)
                controller_us[i, k] = (time.perf_counter_ns() - c0) / 1e3
                controls[i, k] = control
                r0 = time.perf_counter()
                gfx.render(to_params(control))
                gfx.read(panel)
                r_ms += (time.perf_counter() - r0) * 1e3
                if masks[i] is not None:
                    _draw_label(panel, masks[i])
                if image is not panel:
                    image[:, i * width:(i + 1) * width] = panel
            render_ms.append(r_ms)
            video.write(image)
            if on_frame is not None:
                on_frame(k, t, image)
            frame_ms.append((time.perf_counter() - f0) * 1e3)
    wall = time.perf_counter() - wall0
    analysis_ms = stream.analysis_ms
    common = dict(
        frames=n_frames, fps=float(fps), seconds=n_frames / fps,
        render_p50_ms=float(np.percentile(render_ms, 50)),
        render_p99_ms=float(np.percentile(render_ms, 99)),
        frame_p50_ms=float(np.percentile(frame_ms, 50)),
        frame_p99_ms=float(np.percentile(frame_ms, 99)),
        analysis_p99_ms=float(np.percentile(analysis_ms, 99)) if analysis_ms else 0.0,
        wall_s=wall, beat_times=np.asarray(stream.beat_times))
    return [RenderStats(controls=controls[i], controller_us=controller_us[i], **common)
            for i in range(n_panels)]
