"""What the renderers draw: :class:`JuliaParams`, one frame's Julia-set parameters.

The controller turns its control vector (``contracts/v1.json`` ``models.controller.control_names``:
``dc_re, dc_im, zoom, rotation, hue, saturation, brightness, detail``) into these; both renderers
(GLSL and numba) draw exactly these, with the same palette mapping.

Geometry: pixel (x, y) of a W x H image (x to the right, y downwards, pixel centres at
``x + 0.5``) maps to the complex point
``z0 = (center_re + i center_im) + R(rotation) * (u + i v) * VIEW_HALF_HEIGHT / zoom`` with
``u = (2 (x + 0.5) - W) / H`` and ``v = (H - 2 (y + 0.5)) / H`` (so ``v`` runs from -1 at the
bottom to +1 at the top, and the aspect ratio is kept), ``R`` the rotation by ``rotation``
radians counter-clockwise.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

__all__ = ["MAX_ITER_RANGE", "VIEW_HALF_HEIGHT", "JuliaParams"]

#: Half the image height in the complex plane at zoom 1.
VIEW_HALF_HEIGHT = 1.5
#: Allowed iteration caps (inclusive).
MAX_ITER_RANGE = (8, 2048)


@dataclass(frozen=True)
class JuliaParams:
    """One frame of the Julia set z -> z**2 + c.

    Attributes
    ----------
    c_re, c_im : the parameter c.
    zoom : magnification (> 0); 1 shows ``VIEW_HALF_HEIGHT`` above and below the centre.
    rotation : view rotation in radians (counter-clockwise).
    center_re, center_im : the complex point at the image centre.
    hue : palette offset in turns, any real (taken mod 1).
    saturation : colour saturation in [0, 1] (0 = grey scale).
    brightness : overall gain in [0, 2] (1 = the palette as is).
    max_iter : iteration cap, an int in ``MAX_ITER_RANGE``; points that have not escaped by then
        are drawn as the interior (black scaled by nothing: pure black).
    """

    c_re: float
    c_im: float
    zoom: float = 1.0
    rotation: float = 0.0
    center_re: float = 0.0
    center_im: float = 0.0
    hue: float = 0.0
    saturation: float = 1.0
    brightness: float = 1.0
    max_iter: int = 256

    def __post_init__(self) -> None:
        for name in ("c_re", "c_im", "zoom", "rotation", "center_re", "center_im", "hue",
                     "saturation", "brightness"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
                raise ValueError(f"JuliaParams.{name} must be a finite number, got {v!r}")
            object.__setattr__(self, name, float(v))
        if self.zoom <= 0:
            raise ValueError(f"JuliaParams.zoom must be > 0, got {self.zoom!r}")
        if not 0.0 <= self.saturation <= 1.0:
            raise ValueError(f"JuliaParams.saturation must be in [0, 1], got {self.saturation!r}")
        if not 0.0 <= self.brightness <= 2.0:
            raise ValueError(f"JuliaParams.brightness must be in [0, 2], got {self.brightness!r}")
        lo, hi = MAX_ITER_RANGE
        if isinstance(self.max_iter, bool) or not isinstance(self.max_iter, int) \
                or not lo <= self.max_iter <= hi:
            raise ValueError(f"JuliaParams.max_iter must be an int in [{lo}, {hi}], "
                             f"got {self.max_iter!r}")
