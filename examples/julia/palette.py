"""The one colouring both Julia renderers use: smooth escape count and palette.

Escape time
-----------
Starting from the pixel's point ``z_0`` (geometry: :mod:`examples.julia.params`), iterate
``z_{k+1} = z_k**2 + c`` while ``|z_k| <= BAILOUT`` and ``k < max_iter``. The loop stops at the
escape count ``n`` (``0 <= n <= max_iter``); the point has *escaped* when ``|z_n| > BAILOUT``
(a NaN ``|z_n|``, which only an overflowing view can produce, counts as escaped). Points that
have not escaped by ``max_iter`` are the interior: pure black.

Periodicity check (Brent): the loop keeps a reference point, ``z_0`` at first and then
``z_8, z_16, z_32, ...``; after each step it stops as *interior* if ``|z_k - z_ref|**2 <
CYCLE_EPS2`` (tested before the reference moves on at ``k = 8, 16, ...``). An orbit drawn into an
attracting cycle comes back to within float32 rounding of a previous point, so interior points
stop after a few periods instead of running all ``max_iter`` steps: the frame's cost no longer
grows with the interior's area times ``max_iter``. An escaping orbit never returns that close.

Smooth count
------------
For an escaped point the continuous count is ::

    mu = max(0, n - log2( log2|z_n| / log2(BAILOUT) ))

which is the classic ``nu = n + 1 - log2(log2|z_n|)`` shifted by the constant
``log2(log2 BAILOUT) - 1`` (= 2 for ``BAILOUT = 2**8``), so that ``mu`` lies in ``(n - 1, n]``
whenever ``|z_{n-1}| <= BAILOUT``. It is continuous across the bands where ``n`` changes: a point
with ``|z_{n-1}|`` just above ``BAILOUT`` has ``mu ~ n - 1``, and one just below has
``|z_n| ~ BAILOUT**2`` and also ``mu ~ n - 1``. The large bailout radius keeps the error of the
``|z|**2`` approximation (the ``+ c``) below a hundredth of a band. ``|z_n|**2`` is capped at
``R2_CAP`` before the logarithm (so an overflowing orbit still gives a finite ``mu``), and the
clamp at 0 only acts on points with ``|z_0| > BAILOUT`` (views zoomed out below ~0.01).

Palette (all of ``hue``, ``saturation``, ``brightness`` from :class:`JuliaParams`)
-----------------------------------------------------------------------------------
::

    t     = hue + TURNS_PER_COUNT * mu                       (turns around the colour wheel)
    w_k   = 0.5 + 0.5 cos(2 pi (t - k / 3)),   k = 0, 1, 2  (R, G, B: a smooth hue wheel;
                                                 computed from cos and sin of 2 pi t)
    value = brightness * (1 - exp(-mu / GLOW_COUNT))         (dark far out, bright at the set)
    rgb_k = clip(value * (1 - saturation + saturation * w_k), 0, 1)

``saturation = 0`` gives a grey scale of ``value``; ``brightness`` is a gain (``rgb`` is clipped
to [0, 1], so values above 1 saturate). 8-bit output is ``floor(255 * rgb + 0.5)``.

One formula, three forms: :func:`smooth_count` and :func:`shade` are plain Python on numpy
arrays or scalars (the numba kernel compiles these very functions, and gets the constants at call
time from :data:`NUMBA_CONSTANTS`), and :data:`GLSL_PALETTE`
is the same formula as GLSL source that the GL renderer splices into its fragment shader.
``tests/test_julia_render.py`` evaluates the GLSL through a real GL context and checks it
against :func:`colour` to one 8-bit level.
"""

from __future__ import annotations

import math

import numpy as np

from examples.julia.params import JuliaParams

__all__ = ["BAILOUT", "BAILOUT2", "CYCLE_EPS2", "GLOW_COUNT", "GLSL_PALETTE", "LOG2_BAILOUT",
           "NUMBA_CONSTANTS", "R2_CAP", "TURNS_PER_COUNT", "colour", "shade", "smooth_count",
           "to_uint8"]

#: Escape radius ``|z| > BAILOUT`` (2**8: large, so the smooth count is smooth).
BAILOUT = 256.0
#: ``BAILOUT**2``, the bound on ``|z|**2`` the loops test.
BAILOUT2 = BAILOUT * BAILOUT
#: Squared distance at which an orbit counts as back at its reference point (periodicity check):
#: (1e-6)**2, above float32's rounding of points near the unit circle (6e-8).
CYCLE_EPS2 = 1.0e-12
#: ``log2(BAILOUT)``.
LOG2_BAILOUT = math.log2(BAILOUT)
#: Cap on ``|z_n|**2`` before the logarithm (finite in float32).
R2_CAP = 1.0e30
#: Colour-wheel turns per unit of smooth count: a full wheel over 16 escape bands, so the field
#: around the set shows several hues at once (1/32 gave one dark hue over most of the frame).
TURNS_PER_COUNT = 1.0 / 16.0
#: Smooth count over which the brightness ramps up (``1 - exp(-mu / GLOW_COUNT)``): 5 lights the
#: far field (mu ~ 2-4 there) to 30-55 % of the brightness gain instead of 15-30 % at 12.
GLOW_COUNT = 5.0

_TWO_PI = 2.0 * math.pi
_SIN_THIRD = math.sqrt(3.0) / 2.0  # sin(2 pi / 3)


def smooth_count(n, r2, log2_bailout=LOG2_BAILOUT, r2_cap=R2_CAP):
    """Continuous escape count ``mu`` of an escaped point (module docstring).

    ``n``: escape count (int or int array), ``r2``: ``|z_n|**2`` (float or float array, above
    ``BAILOUT2``, or inf/NaN from an overflowing view). Returns ``mu >= 0`` (float or array,
    ``mu < n``). Plain arithmetic only: numpy broadcasts it, numba compiles it for the kernel,
    which passes the constants as arguments (:data:`NUMBA_CONSTANTS`). ``fmin`` maps inf and
    NaN to ``r2_cap``, like the GLSL ternary.
    """
    r2c = np.fmin(r2, r2_cap)
    return np.fmax(n - np.log2(0.5 * np.log2(r2c) / log2_bailout), 0.0)


def shade(mu, hue, saturation, brightness, turns_per_count=TURNS_PER_COUNT,
          glow_count=GLOW_COUNT):
    """Palette colour of smooth count ``mu`` (float or array, any shape ``S``).

    Returns ``(r, g, b)``, each a float (array) of shape ``S`` in [0, 1]. Plain arithmetic on
    scalars or arrays: numpy broadcasts it, numba compiles it for the kernel (which passes the
    constants as arguments).
    """
    angle = _TWO_PI * (hue + turns_per_count * mu)
    cos_a, sin_a = np.cos(angle), np.sin(angle)  # cos(angle - 2 pi k / 3) from these two
    value = brightness * (1.0 - np.exp(-mu / glow_count))
    grey = 1.0 - saturation
    r = value * (grey + saturation * (0.5 + 0.5 * cos_a))
    g = value * (grey + saturation * (0.5 + 0.5 * (_SIN_THIRD * sin_a - 0.5 * cos_a)))
    b = value * (grey + saturation * (0.5 - 0.5 * (_SIN_THIRD * sin_a + 0.5 * cos_a)))
    return (np.fmin(np.fmax(r, 0.0), 1.0), np.fmin(np.fmax(g, 0.0), 1.0),
            np.fmin(np.fmax(b, 0.0), 1.0))


#: The palette's numbers in the order the numba kernel takes them: ``(BAILOUT2, CYCLE_EPS2,
#: LOG2_BAILOUT, R2_CAP, TURNS_PER_COUNT, GLOW_COUNT)``. Passed at call time rather than compiled
#: in, because numba's on-disk cache of the kernel (``cache=True``) is keyed on the kernel's own
#: file only and would keep stale constants after an edit here.
NUMBA_CONSTANTS = (BAILOUT2, CYCLE_EPS2, LOG2_BAILOUT, R2_CAP, TURNS_PER_COUNT, GLOW_COUNT)


def colour(nu: np.ndarray, escaped: np.ndarray, params: JuliaParams) -> np.ndarray:
    """Reference colouring: smooth counts ``nu`` (float array, shape ``S``, the ``mu`` of
    :func:`smooth_count`) and ``escaped`` (bool array, shape ``S``) -> RGB floats in [0, 1],
    shape ``S + (3,)``; points that have not escaped are black."""
    nu = np.asarray(nu, dtype=np.float64)
    escaped = np.asarray(escaped, dtype=bool)
    if nu.shape != escaped.shape:
        raise ValueError(f"colour: nu {nu.shape} and escaped {escaped.shape} differ in shape")
    rgb = np.stack(shade(nu, params.hue, params.saturation, params.brightness), axis=-1)
    return np.where(escaped[..., None], rgb, 0.0)


def to_uint8(rgb: np.ndarray) -> np.ndarray:
    """RGB floats (any shape) -> uint8 ``floor(255 * clip(rgb, 0, 1) + 0.5)``, same shape."""
    return np.floor(np.clip(rgb, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


#: The same smooth count and palette as GLSL (``#version 330`` and later): two functions,
#: ``julia_smooth_count(n, r2)`` and ``julia_shade(mu, hue, saturation, brightness)``.
GLSL_PALETTE = f"""
const float JULIA_BAILOUT2 = {BAILOUT2!r};
const float JULIA_CYCLE_EPS2 = {CYCLE_EPS2!r};
const float JULIA_R2_CAP = {R2_CAP!r};
const float JULIA_LOG2_BAILOUT = {LOG2_BAILOUT!r};
const float JULIA_TURNS_PER_COUNT = {TURNS_PER_COUNT!r};
const float JULIA_GLOW_COUNT = {GLOW_COUNT!r};
const float JULIA_TWO_PI = {_TWO_PI!r};
const float JULIA_SIN_THIRD = {_SIN_THIRD!r};

float julia_smooth_count(int n, float r2) {{
    float r2c = (r2 < JULIA_R2_CAP) ? r2 : JULIA_R2_CAP;
    return max(float(n) - log2(0.5 * log2(r2c) / JULIA_LOG2_BAILOUT), 0.0);
}}

vec3 julia_shade(float mu, float hue, float saturation, float brightness) {{
    float angle = JULIA_TWO_PI * (hue + JULIA_TURNS_PER_COUNT * mu);
    float cos_a = cos(angle);
    float sin_a = sin(angle);
    vec3 wheel = 0.5 + 0.5 * vec3(cos_a, JULIA_SIN_THIRD * sin_a - 0.5 * cos_a,
                                  -JULIA_SIN_THIRD * sin_a - 0.5 * cos_a);
    float value = brightness * (1.0 - exp(-mu / JULIA_GLOW_COUNT));
    return clamp(value * ((1.0 - saturation) + saturation * wheel), 0.0, 1.0);
}}
"""
