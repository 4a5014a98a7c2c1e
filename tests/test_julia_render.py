"""The Julia renderers: palette (numpy, numba, GLSL), the numba kernel against a plain numpy
reference, the GL renderer against the numba one, and the renderer API."""

from __future__ import annotations

import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

ROOT = Path(__file__).resolve().parents[1]

from examples.julia import palette  # noqa: E402
from examples.julia.params import MAX_ITER_RANGE, VIEW_HALF_HEIGHT, JuliaParams  # noqa: E402
from examples.julia.render_numba import NumbaRenderer, render_julia  # noqa: E402
from examples.julia.renderers import make_renderer  # noqa: E402

moderngl = pytest.importorskip("moderngl")  # the [live] extra

from examples.julia.render_gl import GLRenderer, GLUnavailableError  # noqa: E402

# --- plain numpy reference of the numba kernel ---------------------------------------------


def reference_counts(params: JuliaParams, width: int, height: int, scale: int = 1,
                     cycle_check: bool = True):
    """Escape count ``n`` (int array), ``|z_n|**2`` and ``escaped`` per block of ``scale`` pixels
    (shape (ceil(height / scale), ceil(width / scale))), by the geometry of params.py, float64,
    with the palette's periodicity check (or without: every point runs until escape or cap)."""
    xc = np.arange(-(-width // scale)) * scale + 0.5 * scale
    yc = np.arange(-(-height // scale)) * scale + 0.5 * scale
    u = ((2.0 * xc - width) / height)[None, :]
    v = ((height - 2.0 * yc) / height)[:, None]
    s = VIEW_HALF_HEIGHT / params.zoom
    a, b = s * math.cos(params.rotation), s * math.sin(params.rotation)
    with np.errstate(all="ignore"):
        x = params.center_re + a * u - b * v
        y = params.center_im + b * u + a * v
        r2 = x * x + y * y
        n = np.zeros(r2.shape, np.int64)
        ref_x, ref_y, next_ref = x, y, np.full(r2.shape, 8)
        cycle = np.zeros(r2.shape, bool)
        for _ in range(params.max_iter):
            active = (r2 <= palette.BAILOUT2) & ~cycle
            if not active.any():
                break
            xn = x * x - y * y + params.c_re
            yn = 2.0 * x * y + params.c_im
            x, y = np.where(active, xn, x), np.where(active, yn, y)
            r2 = np.where(active, x * x + y * y, r2)
            n += active
            dx, dy = x - ref_x, y - ref_y
            cycle |= active & (dx * dx + dy * dy < palette.CYCLE_EPS2) & cycle_check
            move = active & ~cycle & (n == next_ref)
            ref_x, ref_y = np.where(move, x, ref_x), np.where(move, y, ref_y)
            next_ref = np.where(move, 2 * next_ref, next_ref)
    return n, r2, ~(r2 <= palette.BAILOUT2) & ~cycle


def reference_image(params: JuliaParams, width: int, height: int, scale: int = 1) -> np.ndarray:
    """(height, width, 3) uint8: reference_counts coloured by palette.colour, nearest upscaled."""
    n, r2, escaped = reference_counts(params, width, height, scale)
    with np.errstate(all="ignore"):
        mu = np.where(escaped, palette.smooth_count(n, r2), 0.0)
    small = palette.to_uint8(palette.colour(mu, escaped, params))
    return np.repeat(np.repeat(small, scale, 0), scale, 1)[:height, :width]


# --- palette --------------------------------------------------------------------------------


def test_smooth_count_is_continuous_across_escape_bands():
    """Points just inside and just outside the bailout circle: the escape count differs by one,
    the smooth count by (almost) nothing."""
    c = complex(-0.3, 0.2)
    angles = np.linspace(0.0, 2 * np.pi, 17)
    for eps in (1e-6, 1e-9):
        outer = (palette.BAILOUT * (1 + eps)) * np.exp(1j * angles)
        inner = (palette.BAILOUT * (1 - eps)) * np.exp(1j * angles)
        mu_outer = palette.smooth_count(0, np.abs(outer) ** 2)  # escaped at n = 0
        mu_inner = palette.smooth_count(1, np.abs(inner**2 + c) ** 2)  # escapes at n = 1
        np.testing.assert_allclose(mu_outer, 0.0, atol=1e-5)
        np.testing.assert_allclose(mu_inner, mu_outer, atol=1e-4)
    # and it grows by one per band: z -> z**2 exactly doubles log|z|
    r2 = np.array([palette.BAILOUT2 * 4.0, palette.BAILOUT2**1.5])
    np.testing.assert_allclose(palette.smooth_count(5, r2) - palette.smooth_count(6, r2**2), 0.0,
                               atol=1e-12)


def test_smooth_count_is_finite_for_overflowing_orbits():
    mu = palette.smooth_count(np.array([0, 3, 7]), np.array([np.inf, np.nan, 1e300]))
    assert np.isfinite(mu).all() and (mu >= 0).all()


@given(mu=st.floats(0, 4096), hue=st.floats(-8, 8), sat=st.floats(0, 1),
       bright=st.floats(0, 2))
def test_shade_is_a_bounded_colour(mu, hue, sat, bright):
    rgb = np.array(palette.shade(mu, hue, sat, bright))
    assert rgb.shape == (3,) and np.isfinite(rgb).all()
    assert (rgb >= 0).all() and (rgb <= 1).all()
    if sat == 0:
        assert rgb[0] == rgb[1] == rgb[2]
    if bright == 0 or mu == 0:
        assert not rgb.any()
    # hue is in turns: a whole turn changes nothing
    np.testing.assert_allclose(palette.shade(mu, hue + 1.0, sat, bright), rgb, atol=1e-9)


def test_colour_interior_is_black_and_shapes_are_checked():
    params = JuliaParams(0.0, 0.0, brightness=2.0)
    nu = np.array([[5.0, 5.0], [30.0, 0.0]])
    escaped = np.array([[True, False], [True, False]])
    rgb = palette.colour(nu, escaped, params)
    assert rgb.shape == (2, 2, 3)
    assert not rgb[~escaped].any() and rgb[escaped].max() > 0
    with pytest.raises(ValueError, match="shape"):
        palette.colour(nu, escaped[0], params)


@pytest.fixture(scope="module")
def gl_ctx():
    ctx = moderngl.create_standalone_context(backend="egl", require=330)
    yield ctx
    ctx.release()


def test_glsl_palette_matches_numpy(gl_ctx):
    """The GLSL text of palette.py, run through a real shader, gives the numpy colours to one
    8-bit level: escape count n by row (0..63), |z_n|**2 from BAILOUT2 to past float32's range
    (inf -> R2_CAP) by column, for a few hue/saturation/brightness settings."""
    width, height = 128, 64
    frag = """
#version 330
uniform float u_hue; uniform float u_sat; uniform float u_bright;
out vec4 f_colour;
""" + palette.GLSL_PALETTE + """
void main() {
    int n = int(gl_FragCoord.y);
    float r2 = exp2(16.0001 + 1.3 * floor(gl_FragCoord.x));
    f_colour = vec4(julia_shade(julia_smooth_count(n, r2), u_hue, u_sat, u_bright), 1.0);
}
"""
    vert = "#version 330\nin vec2 p;\nvoid main() { gl_Position = vec4(p, 0.0, 1.0); }\n"
    prog = gl_ctx.program(vertex_shader=vert, fragment_shader=frag)
    vbo = gl_ctx.buffer(np.array([-1, -1, 1, -1, -1, 1, 1, 1], "f4").tobytes())
    vao = gl_ctx.vertex_array(prog, [(vbo, "2f", "p")])
    fbo = gl_ctx.simple_framebuffer((width, height), components=4)
    n = np.arange(height)[:, None]
    with np.errstate(over="ignore"):  # float32 overflows to inf, as in the shader
        r2 = np.exp2(16.0001 + 1.3 * np.arange(width))[None, :].astype(np.float32)
        mu = palette.smooth_count(n, r2.astype(np.float64))
    for hue, sat, bright in ((0.0, 1.0, 1.0), (0.37, 0.5, 1.7), (-2.2, 0.0, 0.6)):
        prog["u_hue"].value, prog["u_sat"].value, prog["u_bright"].value = hue, sat, bright
        fbo.use()
        gl_ctx.viewport = (0, 0, width, height)
        vao.render(moderngl.TRIANGLE_STRIP)
        got = np.frombuffer(fbo.read(components=3), np.uint8).reshape(height, width, 3)
        params = JuliaParams(0.0, 0.0, hue=hue, saturation=sat, brightness=bright)
        want = palette.to_uint8(palette.colour(mu, np.ones(mu.shape, bool), params))
        assert np.abs(got.astype(int) - want).max() <= 1
    for obj in (fbo, vao, vbo, prog):
        obj.release()


# --- numba kernel against the numpy reference ------------------------------------------------

# c on the main cardioid's boundary (the boundary of the Mandelbrot set): c = e^it/2 - e^2it/4
cardioid = st.floats(0, 2 * math.pi).map(
    lambda t: (0.5 * math.cos(t) - 0.25 * math.cos(2 * t),
               0.5 * math.sin(t) - 0.25 * math.sin(2 * t)))
c_values = st.one_of(st.tuples(st.floats(-2, 2), st.floats(-2, 2)), cardioid)
params_strategy = st.builds(
    lambda c, zoom, rotation, centre, hue, sat, bright, max_iter: JuliaParams(
        c[0], c[1], zoom=zoom, rotation=rotation, center_re=centre[0], center_im=centre[1],
        hue=hue, saturation=sat, brightness=bright, max_iter=max_iter),
    c_values,
    st.floats(-3, 12).map(lambda e: 10.0**e),
    st.floats(-10, 10),
    st.tuples(st.floats(-2, 2), st.floats(-2, 2)),
    st.floats(-5, 5), st.floats(0, 1), st.floats(0, 2),
    st.one_of(st.sampled_from(MAX_ITER_RANGE), st.integers(*MAX_ITER_RANGE)),
)


@settings(max_examples=60, deadline=None)
@given(params=params_strategy, width=st.integers(1, 23), height=st.integers(1, 17),
       scale=st.integers(1, 4))
@example(params=JuliaParams(-0.75, 0.0), width=1, height=1, scale=1)  # 1x1: the centre point
@example(params=JuliaParams(0.25, 0.0, max_iter=MAX_ITER_RANGE[1]), width=9, height=7, scale=1)
@example(params=JuliaParams(-0.12, 0.75, max_iter=MAX_ITER_RANGE[0]), width=8, height=5, scale=3)
@example(params=JuliaParams(0.3, 0.5, zoom=1e12), width=5, height=3, scale=1)  # one float64 ulp
@example(params=JuliaParams(0.3, 0.5, zoom=1e-300), width=4, height=4, scale=1)  # z0 overflows
@example(params=JuliaParams(1e200, -1e200), width=3, height=2, scale=1)  # z1 overflows
@example(params=JuliaParams(-0.4, 0.6, brightness=0.0), width=6, height=4, scale=2)
def test_kernel_matches_numpy_reference(params, width, height, scale):
    """Same escape counts (float64 with the same operation order), colours to one 8-bit level."""
    out = np.full((height, width, 3), 7, np.uint8)
    render_julia(params, out, scale)
    want = reference_image(params, width, height, scale)
    assert np.abs(out.astype(int) - want).max() <= 1


@pytest.mark.parametrize("c", [(-0.12, 0.75), (-1.0, 0.0), (0.25, 0.0), (-0.39054, -0.58679),
                               (0.4, 0.3)])
def test_periodicity_check_keeps_the_picture_and_saves_the_interior_work(c):
    """Rabbit, basilica, the parabolic c = 1/4, near a Siegel disk, dust: with and without the
    check, the same points escape, with the same counts (so the same colours); interior points
    drawn into an attracting cycle stop early."""
    params = JuliaParams(*c, max_iter=1024)
    n, r2, escaped = reference_counts(params, 120, 68)
    n0, r20, escaped0 = reference_counts(params, 120, 68, cycle_check=False)
    np.testing.assert_array_equal(escaped, escaped0)
    np.testing.assert_array_equal(n[escaped], n0[escaped])
    if c in ((-0.12, 0.75), (-1.0, 0.0)):
        assert (~escaped).mean() > 0.05 and np.median(n[~escaped]) < params.max_iter / 4


def test_render_julia_rejects_bad_input():
    p = JuliaParams(0.0, 0.0)
    with pytest.raises(ValueError, match="uint8"):
        render_julia(p, np.zeros((4, 4, 3), np.float32))
    with pytest.raises(ValueError, match="shape"):
        render_julia(p, np.zeros((4, 4), np.uint8))
    with pytest.raises(ValueError, match="C-contiguous"):
        render_julia(p, np.zeros((4, 8, 3), np.uint8)[:, ::2])
    with pytest.raises(ValueError, match="scale"):
        render_julia(p, np.zeros((4, 4, 3), np.uint8), scale=0)
    with pytest.raises(TypeError, match="JuliaParams"):
        render_julia({"c_re": 0.0}, np.zeros((4, 4, 3), np.uint8))
    with pytest.raises(ValueError, match="array"):
        render_julia(p, [[0, 0, 0]])
    empty = np.zeros((0, 5, 3), np.uint8)
    assert render_julia(p, empty, 2) is empty  # no rows: nothing to draw, no error


# --- GL against numba -------------------------------------------------------------------------

EQUIVALENCE_CASES = [
    JuliaParams(-0.8, 0.156),  # connected, thin ("dendrite-like" spirals)
    JuliaParams(-0.12, 0.75, hue=0.5),  # connected, fat interior (rabbit)
    JuliaParams(0.285, 0.01, zoom=2.5, rotation=0.9, hue=0.3),  # connected, zoomed and rotated
    JuliaParams(0.4, 0.3, zoom=1.5),  # outside the Mandelbrot set: dust
    JuliaParams(-0.4, 0.6, zoom=3.0, center_re=0.3, center_im=-0.2, saturation=0.4,
                brightness=1.5, max_iter=64),
    JuliaParams(-0.75, 0.11, zoom=1.2, rotation=-2.0, hue=-1.7, max_iter=1024),
]


def chaotic_mask(params: JuliaParams, width: int, height: int) -> np.ndarray:
    """Pixels next to (3x3) a pixel that is interior or escapes late (n >= 16) in float64: where
    the orbit depends sensitively on the starting point, so float32 may follow another one."""
    n, _, escaped = reference_counts(params, width, height)
    deep = ~escaped | (n >= 16)
    padded = np.pad(deep, 1)
    return np.any([padded[dy:dy + height, dx:dx + width] for dy in range(3) for dx in range(3)],
                  axis=0)


@pytest.mark.parametrize("params", EQUIVALENCE_CASES)
def test_gl_and_numba_draw_the_same_picture(params):
    """Bound: mean |difference| < 2 % of 255 and the 99th percentile <= 8 levels; every pixel
    off by more than 8 levels is a chaotic one (chaotic_mask), and those are < 2 % of the image.
    Away from the boundary both compute the same smooth count (float32 vs float64 rounding,
    a level or two); at the boundary one float32 rounding changes the orbit."""
    width, height = 240, 136
    with GLRenderer(width, height) as gl, NumbaRenderer(width, height) as cpu:
        gl.render(params)
        cpu.render(params)
        diff = np.abs(gl.read().astype(int) - cpu.read()).max(axis=-1)
    assert diff.mean() < 0.02 * 255
    assert np.percentile(diff, 99) <= 8
    big = diff > 8
    assert big.mean() < 0.02
    assert not (big & ~chaotic_mask(params, width, height)).any()


@pytest.mark.parametrize(("params", "size", "scale"), [
    (EQUIVALENCE_CASES[0], (240, 136), 2), (EQUIVALENCE_CASES[2], (241, 137), 3),
    (EQUIVALENCE_CASES[3], (97, 55), 4)])
def test_gl_and_numba_agree_when_scaled(params, size, scale):
    """scale > 1 (odd sizes too): the same blocks at the same centres, upscaled by nearest
    neighbour; the bound of the unscaled comparison."""
    with GLRenderer(*size, scale=scale) as gl, NumbaRenderer(*size, scale=scale) as cpu:
        gl.render(params)
        cpu.render(params)
        image = gl.read()
        diff = np.abs(image.astype(int) - cpu.read()).max(axis=-1)
    blocks = image[::scale, ::scale]
    np.testing.assert_array_equal(
        np.repeat(np.repeat(blocks, scale, 0), scale, 1)[:size[1], :size[0]], image)
    assert diff.mean() < 0.02 * 255
    assert np.percentile(diff, 99) <= 8
    assert np.mean(diff > 8) < 0.02


@pytest.mark.parametrize("kind", ["gl", "numba"])
def test_every_control_changes_the_picture(kind):
    base = JuliaParams(-0.12, 0.75, zoom=1.3, rotation=0.2, hue=0.1, saturation=0.8,
                       brightness=1.0, max_iter=64)
    changes = dict(c_re=-0.05, c_im=0.68, zoom=2.0, rotation=0.9, center_re=0.3, center_im=-0.25,
                   hue=0.45, saturation=0.2, brightness=1.6, max_iter=12)
    with make_renderer(kind, 96, 64) as renderer:
        renderer.render(base)
        before = renderer.read()
        for field, value in changes.items():
            renderer.render(JuliaParams(**{**base.__dict__, field: value}))
            mad = np.abs(renderer.read().astype(int) - before).mean()
            assert mad > 3.0, f"{kind}: changing {field} barely changes the picture ({mad:.2f})"
        renderer.render(base)
        np.testing.assert_array_equal(renderer.read(), before)  # and nothing else does


def test_disconnected_c_draws_no_interior():
    """c outside the Mandelbrot set: no black interior; inside (rabbit): a black interior."""
    with GLRenderer(160, 90) as gl:
        gl.render(JuliaParams(0.4, 0.3, max_iter=512))
        assert (gl.read().sum(-1) == 0).mean() < 0.001
        gl.render(JuliaParams(-0.12, 0.75, max_iter=512))
        assert (gl.read().sum(-1) == 0).mean() > 0.05


# --- renderer API -----------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["gl", "numba"])
def test_read_reuses_the_given_buffer(kind):
    with make_renderer(kind, 33, 17) as renderer:
        assert (renderer.width, renderer.height) == (33, 17)
        renderer.render(JuliaParams(-0.8, 0.156))
        out = np.zeros((17, 33, 3), np.uint8)
        assert renderer.read(out) is out
        fresh = renderer.read()
        assert fresh is not out and fresh.dtype == np.uint8 and fresh.shape == (17, 33, 3)
        np.testing.assert_array_equal(out, fresh)
        with pytest.raises(ValueError, match=r"\(17, 33, 3\)"):
            renderer.read(np.zeros((33, 17, 3), np.uint8))
    with pytest.raises(RuntimeError, match="release"):
        renderer.render(JuliaParams(0.0, 0.0))
    renderer.release()  # idempotent


def test_numba_scale_is_nearest_upscaling_of_the_smaller_image():
    p = JuliaParams(-0.8, 0.156, rotation=0.3)
    with NumbaRenderer(60, 34, scale=2) as big, NumbaRenderer(30, 17) as small:
        big.render(p)
        small.render(p)
        want = np.repeat(np.repeat(small.read(), 2, 0), 2, 1)
        np.testing.assert_array_equal(big.read(), want)


def test_gl_resize():
    p = JuliaParams(-0.8, 0.156)
    with GLRenderer(40, 30) as gl, GLRenderer(64, 36) as ref:
        gl.resize(64, 36)
        gl.render(p)
        ref.render(p)
        np.testing.assert_array_equal(gl.read(), ref.read())


def test_bad_sizes_and_kinds():
    for args in ((0, 10), (10, 0), (10.0, 5), (True, 5)):
        with pytest.raises(ValueError, match="width|height"):
            NumbaRenderer(*args)
        with pytest.raises(ValueError, match="width|height"):
            GLRenderer(*args)
    with pytest.raises(ValueError, match="scale"):
        NumbaRenderer(10, 10, scale=0)
    with pytest.raises(ValueError, match="scale"):
        GLRenderer(10, 10, scale=1.5)
    with pytest.raises(ValueError, match="'gl', 'numba'"):
        make_renderer("vulkan", 10, 10)


def test_gl_unavailable_names_the_numba_fallback():
    """A real EGL failure: glvnd pointed at no vendor library, so EGL finds no device."""
    env = {**os.environ, "__EGL_VENDOR_LIBRARY_FILENAMES": "/nonexistent/egl_vendor.json"}
    code = ("from examples.julia.renderers import make_renderer\n"
            "from examples.julia.render_gl import GLUnavailableError\n"
            "try:\n    make_renderer('gl', 8, 8)\n"
            "except GLUnavailableError as exc:\n    print('ERROR', exc)\n")
    run = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True,
                         text=True, timeout=60)
    assert run.returncode == 0, run.stderr
    assert run.stdout.startswith("ERROR GL renderer: cannot open an EGL"), run.stdout
    assert "--renderer numba" in run.stdout
    assert issubclass(GLUnavailableError, RuntimeError)


def test_software_gl_is_recognised_by_the_renderer_string():
    from examples.julia.window import software_gl

    class Ctx:
        def __init__(self, renderer):
            self.info = {"GL_RENDERER": renderer}

    assert software_gl(Ctx("llvmpipe (LLVM 15.0.6, 256 bits)"))
    assert software_gl(Ctx("softpipe"))
    assert not software_gl(Ctx("NVIDIA GeForce RTX 4090/PCIe/SSE2"))
    assert not software_gl(Ctx("AMD Radeon Pro 5500M OpenGL Engine"))


def test_auto_scale_is_governed_on_software_gl_only():
    """--scale auto: a quality governor with the frame budget on a software rasteriser, starting
    at 2x2 blocks; on a GPU none, so every frame is drawn at full quality."""
    from examples.julia.window import governor_for

    class Ctx:
        def __init__(self, renderer):
            self.info = {"GL_RENDERER": renderer}

    gov = governor_for(Ctx("llvmpipe (LLVM 15.0.6, 256 bits)"), 50.0)
    assert gov is not None and gov.budget_ms == 20.0
    assert (gov.current.scale, gov.current.iter_cap) == (2, None)  # 2x2 blocks, full detail
    assert governor_for(Ctx("NVIDIA GeForce RTX 4090/PCIe/SSE2"), 60.0) is None
    assert governor_for(Ctx("AMD Radeon Pro 5500M OpenGL Engine"), 144.0) is None


@pytest.mark.parametrize("size", [(96, 54), (97, 55)])
def test_gl_set_scale_draws_what_a_renderer_built_at_that_scale_draws(size):
    """Scale changed between frames (up and down, back to 1): pixel for pixel the picture of a
    renderer constructed with that scale, at even and odd sizes."""
    p = JuliaParams(-0.12, 0.75, zoom=1.3, rotation=0.4, hue=0.2, max_iter=200)
    with GLRenderer(*size) as gl:
        for scale in (3, 1, 2, 4, 2, 1):
            gl.set_scale(scale)
            assert gl.scale == scale
            gl.render(p)
            got = gl.read()
            with GLRenderer(*size, scale=scale) as fresh:
                fresh.render(p)
                np.testing.assert_array_equal(got, fresh.read())
        gl.set_scale(3)
        gl.resize(64, 36)  # a resize keeps the scale
        gl.render(p)
        with GLRenderer(64, 36, scale=3) as fresh:
            fresh.render(p)
            np.testing.assert_array_equal(gl.read(), fresh.read())
        for bad in (0, -1, 1.5, True, "2"):
            with pytest.raises(ValueError, match="scale"):
                gl.set_scale(bad)
        assert gl.scale == 3
    with pytest.raises(RuntimeError, match="release"):
        gl.set_scale(2)
