"""What the two Julia renderers share: the view basis, the common interface and the factory.

``make_renderer("gl" | "numba", width, height)`` returns a :class:`JuliaRenderer`: either
:class:`examples.julia.render_gl.GLRenderer` (GLSL through moderngl; the primary path) or
:class:`examples.julia.render_numba.NumbaRenderer` (numba ``parallel=True`` on the CPU; the
fallback). Both draw :class:`~examples.julia.params.JuliaParams` with the geometry of
``params.py`` and the colouring of ``palette.py``.
"""

from __future__ import annotations

import math
from typing import Protocol

import numpy as np

from examples.julia.params import VIEW_HALF_HEIGHT, JuliaParams

__all__ = ["RENDERER_KINDS", "JuliaRenderer", "make_renderer", "view_basis"]

#: The values ``make_renderer`` (and ``--renderer``) accepts.
RENDERER_KINDS = ("gl", "numba")


class JuliaRenderer(Protocol):
    """What ``examples/live_julia.py`` uses of a renderer."""

    width: int
    height: int

    def render(self, params: JuliaParams) -> None:
        """Draw one frame (replaces the previous one)."""

    def read(self, out: np.ndarray | None = None) -> np.ndarray:
        """The last frame, (height, width, 3) uint8 RGB, top row first; into ``out`` if given."""

    def release(self) -> None:
        """Free the renderer's resources (idempotent)."""


def view_basis(params: JuliaParams) -> tuple[float, float]:
    """``(a, b)`` with ``z0 = centre + (a u - b v) + i (b u + a v)`` for the normalised pixel
    coordinates ``u, v`` of ``params.py``: ``a = VIEW_HALF_HEIGHT / zoom * cos(rotation)``,
    ``b = VIEW_HALF_HEIGHT / zoom * sin(rotation)`` (complex-plane units per unit of ``u``)."""
    s = VIEW_HALF_HEIGHT / params.zoom
    return s * math.cos(params.rotation), s * math.sin(params.rotation)


def check_size(width: int, height: int, what: str) -> tuple[int, int]:
    """``(width, height)`` as ints after checking both are ints >= 1 (else ``ValueError``)."""
    for name, v in (("width", width), ("height", height)):
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
            raise ValueError(f"{what}: {name} must be an int >= 1, got {v!r}")
    return int(width), int(height)


def check_out(out: np.ndarray, width: int, height: int, what: str) -> np.ndarray:
    """``out`` after checking it is a writable C-contiguous (height, width, 3) uint8 array."""
    if not isinstance(out, np.ndarray) or out.dtype != np.uint8 \
            or out.shape != (height, width, 3) or not out.flags.c_contiguous \
            or not out.flags.writeable:
        desc = (f"{out.dtype} {out.shape}" if isinstance(out, np.ndarray)
                else type(out).__name__)
        raise ValueError(f"{what}: out must be a writable C-contiguous uint8 array of shape "
                         f"({height}, {width}, 3), got {desc}")
    return out


def make_renderer(kind: str, width: int, height: int, *, ctx=None,
                  scale: int = 1) -> JuliaRenderer:
    """A renderer of ``width`` x ``height`` pixels.

    ``kind``: ``"gl"`` -> :class:`GLRenderer` (``ctx``: a moderngl context to draw into, e.g. the
    window's; ``None`` opens an offscreen EGL context, and raises
    :class:`~examples.julia.render_gl.GLUnavailableError` naming ``--renderer numba`` when GL
    cannot start); ``"numba"`` -> :class:`NumbaRenderer`. ``scale``: both compute one sample per
    ``scale`` x ``scale`` block and upscale it (nearest). Any other ``kind`` is a ``ValueError``.
    """
    if kind == "gl":
        from examples.julia.render_gl import GLRenderer

        return GLRenderer(width, height, ctx=ctx, scale=scale)
    if kind == "numba":
        if ctx is not None:
            raise ValueError("make_renderer: ctx is for the GL renderer; numba draws into memory")
        from examples.julia.render_numba import NumbaRenderer

        return NumbaRenderer(width, height, scale=scale)
    raise ValueError(f"make_renderer: kind must be one of {RENDERER_KINDS}, got {kind!r}")
