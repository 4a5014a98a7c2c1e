"""Julia-set renderer on the CPU: a numba ``parallel=True`` escape-time kernel (the fallback of
the GL renderer, ``--renderer numba``).

Arithmetic is float64 (the GL path is float32): at this cost (the iteration is the same number of
operations either way on the CPU) the numba picture is the more accurate one, and the GL image is
compared against it (``tests/test_julia_render.py``). Escape test, smooth count and palette are
those of :mod:`examples.julia.palette` (the kernel compiles :func:`~examples.julia.palette.shade`
and :func:`~examples.julia.palette.smooth_count` themselves, and takes the palette's numbers as an
argument, ``palette.NUMBA_CONSTANTS``). numba's on-disk cache is keyed on this file alone: after
editing those two *functions* in ``palette.py``, touch this file (or delete ``__pycache__``) so
that the kernel recompiles; ``tests/test_julia_render.py`` fails on a stale kernel.

``scale`` > 1 renders one sample per ``scale`` x ``scale`` block of the output, at the block's
centre, and fills the block with it (nearest-neighbour upscaling). When ``width`` and ``height``
are multiples of ``scale`` this is exactly the image at ``(width / scale, height / scale)``
upscaled by nearest neighbour; otherwise the last block row/column is cropped.
"""

from __future__ import annotations

import numba
import numpy as np

from examples.julia.palette import NUMBA_CONSTANTS, shade, smooth_count
from examples.julia.params import JuliaParams
from examples.julia.renderers import check_out, check_size, view_basis

__all__ = ["NumbaRenderer", "render_julia"]

_shade = numba.njit(cache=True)(shade)
_smooth_count = numba.njit(cache=True)(smooth_count)


@numba.njit(parallel=True, cache=True)
def _julia_kernel(out, scale, c_re, c_im, center_re, center_im, a, b, max_iter, hue, saturation,
                  brightness, constants):
    """Fill ``out`` (H, W, 3) uint8 with the Julia set; one sample per ``scale`` block.

    ``a, b``: the view basis (``renderers.view_basis``); ``constants``:
    ``palette.NUMBA_CONSTANTS``. Rows of blocks run in parallel.
    """
    bailout2, cycle_eps2, log2_bailout, r2_cap, turns_per_count, glow_count = constants
    height, width = out.shape[0], out.shape[1]
    blocks_y = (height + scale - 1) // scale
    blocks_x = (width + scale - 1) // scale
    half = 0.5 * scale
    for by in numba.prange(blocks_y):
        y0 = by * scale
        y1 = min(y0 + scale, height)
        v = (height - 2.0 * (y0 + half)) / height
        for bx in range(blocks_x):
            x0 = bx * scale
            x1 = min(x0 + scale, width)
            u = (2.0 * (x0 + half) - width) / height
            x = center_re + a * u - b * v
            y = center_im + b * u + a * v
            r2 = x * x + y * y
            n = 0
            ref_x, ref_y, next_ref = x, y, 8  # periodicity check (palette docstring)
            cycle = False
            while n < max_iter and r2 <= bailout2:
                x, y = x * x - y * y + c_re, 2.0 * x * y + c_im
                r2 = x * x + y * y
                n += 1
                dx, dy = x - ref_x, y - ref_y
                if dx * dx + dy * dy < cycle_eps2:
                    cycle = True
                    break
                if n == next_ref:
                    ref_x, ref_y, next_ref = x, y, 2 * next_ref
            if cycle or r2 <= bailout2:
                red = green = blue = 0
            else:
                mu = _smooth_count(n, r2, log2_bailout, r2_cap)
                r, g, bl = _shade(mu, hue, saturation, brightness, turns_per_count, glow_count)
                red = int(r * 255.0 + 0.5)
                green = int(g * 255.0 + 0.5)
                blue = int(bl * 255.0 + 0.5)
            for yy in range(y0, y1):
                for xx in range(x0, x1):
                    out[yy, xx, 0] = red
                    out[yy, xx, 1] = green
                    out[yy, xx, 2] = blue


def render_julia(params: JuliaParams, out: np.ndarray, scale: int = 1) -> np.ndarray:
    """Draw ``params`` into ``out`` ((H, W, 3) uint8, C-contiguous, top row first), one sample
    per ``scale`` x ``scale`` block (nearest upscaling); returns ``out``."""
    if not isinstance(params, JuliaParams):
        raise TypeError(f"render_julia: params must be JuliaParams, got {type(params).__name__}")
    if isinstance(scale, bool) or not isinstance(scale, (int, np.integer)) or scale < 1:
        raise ValueError(f"render_julia: scale must be an int >= 1, got {scale!r}")
    if not isinstance(out, np.ndarray) or out.ndim != 3:
        desc = f"shape {out.shape}" if isinstance(out, np.ndarray) else type(out).__name__
        raise ValueError(f"render_julia: out must be an (H, W, 3) uint8 array, got {desc}")
    check_out(out, out.shape[1], out.shape[0], "render_julia")
    a, b = view_basis(params)
    _julia_kernel(out, int(scale), params.c_re, params.c_im, params.center_re, params.center_im,
                  a, b, params.max_iter, params.hue, params.saturation, params.brightness,
                  NUMBA_CONSTANTS)
    return out


class NumbaRenderer:
    """CPU renderer: ``width`` x ``height`` output, computed at ``(width / scale, height /
    scale)`` and upscaled by nearest neighbour (module docstring).

    ``render(params)`` draws into an internal (height, width, 3) uint8 image; ``read(out)``
    copies it out. The first ``render`` of a process loads (or compiles) the kernel.
    """

    def __init__(self, width: int, height: int, scale: int = 1) -> None:
        self.width, self.height = check_size(width, height, "NumbaRenderer")
        if isinstance(scale, bool) or not isinstance(scale, (int, np.integer)) or scale < 1:
            raise ValueError(f"NumbaRenderer: scale must be an int >= 1, got {scale!r}")
        self.scale = int(scale)
        self._image: np.ndarray | None = np.zeros((self.height, self.width, 3), np.uint8)

    def render(self, params: JuliaParams) -> None:
        """Draw one frame of ``params``."""
        render_julia(params, self._live_image(), self.scale)

    def read(self, out: np.ndarray | None = None) -> np.ndarray:
        """The last frame, (height, width, 3) uint8, top row first: copied into ``out`` (no
        allocation) or, without ``out``, a new array."""
        image = self._live_image()
        if out is None:
            return image.copy()
        np.copyto(check_out(out, self.width, self.height, "NumbaRenderer.read"), image)
        return out

    def release(self) -> None:
        """Drop the image buffer; the renderer cannot be used afterwards (idempotent)."""
        self._image = None

    def _live_image(self) -> np.ndarray:
        if self._image is None:
            raise RuntimeError("NumbaRenderer: used after release()")
        return self._image

    def __enter__(self) -> NumbaRenderer:
        return self

    def __exit__(self, *exc) -> None:
        self.release()
