"""The live visual's window: pygame with an OpenGL 3.3 context, drawn by :class:`GLRenderer`.

``JuliaWindow`` opens the window, hands its moderngl context to a
:class:`~examples.julia.render_gl.GLRenderer` that draws straight into the default framebuffer,
draws a small overlay (text and bars, in GL) on top, and turns pygame's input into plain event
names (:data:`KEY_EVENTS`), so that the app never touches pygame. ::

    with JuliaWindow(960, 540) as win:
        while "quit" not in (events := win.poll_events()):
            win.draw(params)
            win.draw_overlay(["128.0 BPM", "beat 3/4", "chorus"], [("1 beat", 0.1), ...])
            win.present()

``JuliaWindow(..., scale=None)`` (the app's ``--scale auto``) governs quality on a software
rasteriser: a :class:`~examples.julia.governor.QualityGovernor` times each frame from
:meth:`JuliaWindow.draw` to the end of :meth:`JuliaWindow.present` and picks the next frame's
scale and iteration cap (dynamic resolution and detail). On a GPU it draws every pixel at the
controller's detail, every frame.

Without a display (``DISPLAY`` unset on Linux, or SDL unable to open a window) the constructor
raises :class:`NoDisplayError`; without a usable OpenGL 3.3 context,
:class:`~examples.julia.render_gl.GLUnavailableError`.
"""

from __future__ import annotations

import math
import os
import sys
import time
from dataclasses import dataclass

import numpy as np

from examples.julia import render_gl
from examples.julia.governor import SOFTWARE_GL_START, QualityGovernor
from examples.julia.params import JuliaParams
from examples.julia.render_gl import GLRenderer, GLUnavailableError
from examples.julia.renderers import check_size

__all__ = ["KEY_EVENTS", "JuliaWindow", "NoDisplayError", "OverlayLayout", "governor_for",
           "software_gl"]

os.environ.setdefault("PYGAME_HIDE_SUPPORT_PROMPT", "1")  # pygame's banner would go to stdout


#: Substrings of GL_RENDERER that mark a software rasteriser (Mesa's llvmpipe, softpipe, swrast).
_SOFTWARE_GL = ("llvmpipe", "softpipe", "swrast", "software")


def software_gl(ctx) -> bool:
    """Whether the moderngl context ``ctx`` renders on the CPU (Mesa llvmpipe and friends)."""
    return any(word in str(ctx.info.get("GL_RENDERER", "")).lower() for word in _SOFTWARE_GL)


def governor_for(ctx, fps: float) -> QualityGovernor | None:
    """The quality governor of an auto-scaled window drawing with ``ctx`` at ``fps``: one with a
    budget of ``1000 / fps`` ms starting at ``SOFTWARE_GL_START`` on a software rasteriser, None
    (full quality) on a GPU."""
    return QualityGovernor(1000.0 / fps, start=SOFTWARE_GL_START) if software_gl(ctx) else None


class NoDisplayError(RuntimeError):
    """No display to open a window on (no ``DISPLAY``, or SDL cannot open a window there)."""


#: pygame key name -> event name returned by :meth:`JuliaWindow.poll_events`.
KEY_EVENTS = {"space": "tap", "right": "nudge+", "left": "nudge-", "f": "fullscreen",
              "h": "toggle_overlay", "escape": "quit"}

#: SDL video drivers that show nothing on any screen.
_HEADLESS_DRIVERS = ("offscreen", "dummy")
#: Overlay geometry in window pixels: margin, padding, bar size, text size.
OVERLAY_MARGIN = 12
OVERLAY_PADDING = 8
BAR_WIDTH = 160
BAR_GAP = 10
FONT_SIZE = 22
#: Overlay colours, RGBA in [0, 1].
PANEL_RGBA = (0.0, 0.0, 0.0, 0.55)
BAR_BACK_RGBA = (0.35, 0.35, 0.35, 1.0)
BAR_FILL_RGBA = (1.0, 0.6, 0.1, 1.0)

_OVERLAY_VERTEX = """
#version 330
uniform vec2 u_window;      // window width, height in pixels
in vec2 in_pos;             // pixels, origin top-left
in vec2 in_uv;
out vec2 v_uv;
void main() {
    gl_Position = vec4(2.0 * in_pos.x / u_window.x - 1.0, 1.0 - 2.0 * in_pos.y / u_window.y,
                       0.0, 1.0);
    v_uv = in_uv;
}
"""
_OVERLAY_FRAGMENT = """
#version 330
uniform sampler2D u_text;
uniform bool u_textured;
uniform vec4 u_colour;
in vec2 v_uv;
out vec4 f_colour;
void main() {
    f_colour = u_textured ? texture(u_text, v_uv) * u_colour : u_colour;
}
"""


@dataclass(frozen=True)
class OverlayLayout:
    """Where :meth:`JuliaWindow.draw_overlay` drew, in window pixels (x, y from the top-left,
    width, height): the dark ``panel`` behind it all, and each bar's full-length ``bars`` track
    (the fill covers its left ``value`` fraction, rounded to whole pixels)."""

    panel: tuple[int, int, int, int]
    bars: tuple[tuple[int, int, int, int], ...]


class _Overlay:
    """Text (pygame.font -> one texture, re-made only when the text changes) and bars (quads)."""

    def __init__(self, ctx) -> None:
        import pygame

        pygame.font.init()
        self.ctx = ctx
        self.font = pygame.font.Font(None, FONT_SIZE)
        self.prog = ctx.program(vertex_shader=_OVERLAY_VERTEX, fragment_shader=_OVERLAY_FRAGMENT)
        self.vbo = ctx.buffer(reserve=4 * 4 * 4, dynamic=True)
        self.vao = ctx.vertex_array(self.prog, [(self.vbo, "2f 2f", "in_pos", "in_uv")])
        self.text: tuple[str, ...] | None = None
        self.texture = None

    def _text_texture(self, text: tuple[str, ...]):
        """The texture holding ``text`` one row per string, white on transparent."""
        if text != self.text:
            import pygame

            rows = [self.font.render(t, True, (255, 255, 255)) for t in text]
            line = self.font.get_linesize()
            width = max([r.get_width() for r in rows] + [1])
            surface = pygame.Surface((width, max(line * len(rows), 1)), pygame.SRCALPHA)
            for i, row in enumerate(rows):
                surface.blit(row, (0, i * line))
            if self.texture is not None:
                self.texture.release()
            self.texture = self.ctx.texture(surface.get_size(), 4,
                                            pygame.image.tobytes(surface, "RGBA"))
            self.text = text
        return self.texture

    def _quad(self, x: float, y: float, w: float, h: float, rgba, textured: bool = False):
        self.vbo.write(np.array([x, y, 0, 0, x + w, y, 1, 0, x, y + h, 0, 1, x + w, y + h, 1, 1],
                                dtype="f4").tobytes())
        self.prog["u_colour"].value = rgba
        self.prog["u_textured"].value = textured
        self.vao.render(mode=self.ctx.TRIANGLE_STRIP)

    def draw(self, lines: list[str], bars: list[tuple[str, float]],
             window: tuple[int, int]) -> OverlayLayout:
        labels = tuple(lines) + tuple(label for label, _ in bars)
        texture = self._text_texture(labels)
        line = self.font.get_linesize()
        text_w, text_h = texture.size
        label_w = max([self.font.size(label)[0] for label, _ in bars] + [0])
        x0 = y0 = OVERLAY_MARGIN
        inner_w = max(text_w, label_w + BAR_GAP + BAR_WIDTH if bars else 0)
        panel = (x0, y0, inner_w + 2 * OVERLAY_PADDING, text_h + 2 * OVERLAY_PADDING)
        tracks = tuple((x0 + OVERLAY_PADDING + label_w + BAR_GAP,
                        y0 + OVERLAY_PADDING + (len(lines) + i) * line + 3, BAR_WIDTH, line - 6)
                       for i in range(len(bars)))
        self.ctx.screen.use()
        self.ctx.viewport = (0, 0, *window)
        self.prog["u_window"].value = tuple(float(v) for v in window)
        self.ctx.enable(self.ctx.BLEND)
        self.ctx.blend_func = self.ctx.SRC_ALPHA, self.ctx.ONE_MINUS_SRC_ALPHA
        try:
            self._quad(*panel, PANEL_RGBA)
            texture.use(0)
            self.prog["u_text"].value = 0
            self._quad(x0 + OVERLAY_PADDING, y0 + OVERLAY_PADDING, text_w, text_h,
                       (1.0, 1.0, 1.0, 1.0), textured=True)
            for (x, y, w, h), (_, value) in zip(tracks, bars, strict=True):
                self._quad(x, y, w, h, BAR_BACK_RGBA)
                fill = round(w * value)
                if fill > 0:
                    self._quad(x, y, fill, h, BAR_FILL_RGBA)
        finally:
            self.ctx.disable(self.ctx.BLEND)
        return OverlayLayout(panel=panel, bars=tracks)

    def release(self) -> None:
        for obj in (self.texture, self.vao, self.vbo, self.prog):
            if obj is not None:
                obj.release()
        self.texture = self.vao = self.vbo = self.prog = None


def _check_overlay(lines, bars) -> list[tuple[str, float]]:
    """The bars with values clipped to [0, 1] (NaN -> 0), after checking the types."""
    if not isinstance(lines, (list, tuple)) or not all(isinstance(t, str) for t in lines):
        raise TypeError(f"draw_overlay: lines must be a list of str, got {lines!r}")
    checked = []
    for bar in bars:
        if not (isinstance(bar, (list, tuple)) and len(bar) == 2 and isinstance(bar[0], str)
                and isinstance(bar[1], (int, float)) and not isinstance(bar[1], bool)):
            raise TypeError(f"draw_overlay: each bar must be (label: str, value: float), "
                            f"got {bar!r}")
        value = float(bar[1])
        checked.append((bar[0], 0.0 if math.isnan(value) else min(max(value, 0.0), 1.0)))
    return checked


class JuliaWindow:
    """A pygame OpenGL window showing the Julia set (module docstring).

    ``width`` x ``height``: the window size in pixels (ignored while fullscreen, which uses the
    desktop's size). ``fullscreen``: start fullscreen. ``scale``: the renderer's (one sample per
    ``scale`` x ``scale`` block, upscaled: cheaper on a software GL), fixed; None: governed on a
    software rasteriser (:func:`software_gl`; :attr:`governor` is a
    :class:`~examples.julia.governor.QualityGovernor` with a budget of ``1000 / fps`` ms), every
    pixel at full detail otherwise (:attr:`governor` None). Raises :class:`NoDisplayError` when
    no window can be opened and :class:`GLUnavailableError` when its context lacks OpenGL 3.3.
    """

    def __init__(self, width: int, height: int, fullscreen: bool = False,
                 title: str = "FractalSync - live Julia", scale: int | None = 1,
                 fps: float = 60.0) -> None:
        width, height = check_size(width, height, "JuliaWindow")
        if isinstance(fps, bool) or not isinstance(fps, (int, float)) or not math.isfinite(fps) \
                or fps <= 0:
            raise ValueError(f"JuliaWindow: fps must be a finite number > 0, got {fps!r}")
        if sys.platform.startswith("linux") and not os.environ.get("SDL_VIDEODRIVER") \
                and not os.environ.get("DISPLAY") and not os.environ.get("WAYLAND_DISPLAY"):
            raise NoDisplayError("no display: DISPLAY is not set, so no window can be opened; "
                                 "render to a video file instead (--out FILE.mp4)")
        if render_gl.egl_context_opened:
            raise GLUnavailableError(
                "JuliaWindow: this process already opened an offscreen EGL context (GLRenderer "
                "without ctx), after which Mesa's GLX window would abort the process; open the "
                "window first and read frames back with JuliaWindow.read()")
        try:
            import moderngl
            import pygame
        except ImportError as exc:
            raise GLUnavailableError(f"the window needs pygame and moderngl (the [live] extra): "
                                     f"{exc}") from exc
        self._pygame = pygame
        self.renderer: GLRenderer | None = None
        self._overlay: _Overlay | None = None
        #: The quality governor (``scale=None`` on a software rasteriser), else None.
        self.governor: QualityGovernor | None = None
        self._frame_start: float | None = None
        try:
            pygame.display.init()
            pygame.display.gl_set_attribute(pygame.GL_CONTEXT_MAJOR_VERSION, 3)
            pygame.display.gl_set_attribute(pygame.GL_CONTEXT_MINOR_VERSION, 3)
            pygame.display.gl_set_attribute(pygame.GL_CONTEXT_PROFILE_MASK,
                                            pygame.GL_CONTEXT_PROFILE_CORE)
            if pygame.display.get_driver() in _HEADLESS_DRIVERS:
                # SDL falls back to these when it reaches no display: a window nobody sees
                raise pygame.error(f"SDL reached no display, only its "
                                   f"{pygame.display.get_driver()!r} video driver")
            flags = pygame.OPENGL | pygame.DOUBLEBUF | (pygame.FULLSCREEN if fullscreen else 0)
            pygame.display.set_mode((0, 0) if fullscreen else (width, height), flags)
        except pygame.error as exc:
            pygame.display.quit()
            where = os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY") or "?"
            raise NoDisplayError(f"cannot open an OpenGL window on display {where!r}: {exc}; "
                                 f"render to a video file instead (--out FILE.mp4)") from exc
        try:
            pygame.display.set_caption(title)
            try:
                self.ctx = moderngl.create_context(require=330)
            except Exception as exc:  # moderngl raises plain Exception
                raise GLUnavailableError(f"the window's OpenGL context is unusable ({exc}); "
                                         f"run with --renderer numba and --out FILE.mp4") from exc
            if scale is None:  # auto: governed on a software rasteriser, every pixel otherwise
                self.governor = governor_for(self.ctx, fps)
                scale = self.governor.current.scale if self.governor is not None else 1
            self.renderer = GLRenderer(*self.size, ctx=self.ctx, scale=scale)
            self._overlay = _Overlay(self.ctx)
        except BaseException:
            self.close()
            raise

    @property
    def size(self) -> tuple[int, int]:
        """The window's current drawable size in pixels, (width, height)."""
        return self._pygame.display.get_window_size()

    @property
    def fullscreen(self) -> bool:
        """Whether the window is fullscreen now."""
        return bool(self._pygame.display.get_surface().get_flags() & self._pygame.FULLSCREEN)

    def _live(self) -> GLRenderer:
        if self.renderer is None:
            raise RuntimeError("JuliaWindow: used after close()")
        return self.renderer

    def draw(self, params: JuliaParams) -> None:
        """Draw ``params`` over the whole window (back buffer; shown by :meth:`present`). With a
        :attr:`governor`: at its current level (scale, and ``max_iter`` clamped to its cap), and
        the frame's cost is timed from here to the end of :meth:`present`."""
        renderer = self._live()
        self._frame_start = time.perf_counter()
        renderer.resize(*self.size)
        if self.governor is not None:
            level = self.governor.current
            renderer.set_scale(level.scale)
            params = level.apply(params)
        renderer.render(params)

    def draw_overlay(self, lines: list[str], bars: list[tuple[str, float]]) -> OverlayLayout:
        """Draw the overlay on top of the frame: ``lines`` of text, then one labelled bar per
        ``(label, value)`` with ``value`` in [0, 1] (clipped; NaN draws empty), in a translucent
        panel at the top-left. Returns where it went (:class:`OverlayLayout`)."""
        self._live()
        return self._overlay.draw(list(lines), _check_overlay(lines, bars), self.size)

    def read(self, out: np.ndarray | None = None) -> np.ndarray:
        """The back buffer (what :meth:`present` will show), (height, width, 3) uint8, top row
        first; into ``out`` when given."""
        return self._live().read(out)

    def present(self) -> None:
        """Show the drawn frame (swap buffers; waits for vsync where the driver does). With a
        :attr:`governor`, hands it the frame's cost (ms since :meth:`draw` began)."""
        self._live()
        self._pygame.display.flip()
        if self.governor is not None and self._frame_start is not None:
            self.governor.record((time.perf_counter() - self._frame_start) * 1e3)
        self._frame_start = None

    def poll_events(self) -> list[str]:
        """Events since the last call, oldest first: ``"quit"`` (window closed or Esc), ``"tap"``
        (space), ``"nudge+"`` / ``"nudge-"`` (right / left arrow), ``"fullscreen"`` (F),
        ``"toggle_overlay"`` (H). Everything else is dropped."""
        pygame = self._pygame
        names = []
        for event in pygame.event.get():
            if event.type == pygame.QUIT:
                names.append("quit")
            elif event.type == pygame.KEYDOWN:
                name = KEY_EVENTS.get(pygame.key.name(event.key))
                if name is not None:
                    names.append(name)
        return names

    def toggle_fullscreen(self) -> None:
        """Switch between the window and fullscreen (the next :meth:`draw` uses the new size)."""
        self._live()
        self._pygame.display.toggle_fullscreen()

    def close(self) -> None:
        """Release the GL objects and close the window (idempotent)."""
        if self._overlay is not None:
            self._overlay.release()
            self._overlay = None
        if self.renderer is not None:
            self.renderer.release()
            self.renderer = None
        self._pygame.display.quit()

    def __enter__(self) -> JuliaWindow:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
