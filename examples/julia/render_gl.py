"""Julia-set renderer in GLSL through moderngl: a fragment shader on a full-screen quad.

``GLRenderer(width, height)`` opens its own offscreen EGL context (Mesa's llvmpipe on a machine
without a GPU) and draws into a framebuffer whose row 0 is the image's top row, so that
:meth:`GLRenderer.read` hands the pixels over without reordering them. ``GLRenderer(width, height,
ctx=window_ctx)`` draws into ``ctx``'s default framebuffer (the window, bottom row first as GL
has it), which ``read`` flips row by row.

Precision: the shader computes in float32 (uniforms and iteration). Relative resolution is
``2**-24 ~ 6e-8``: the pixel spacing ``2 * VIEW_HALF_HEIGHT / (zoom * height)`` must stay well above
``6e-8 * max(|z|)`` (``|z| <= 2`` on the Julia set), so the picture degrades into blocks beyond
``zoom ~ 1e4`` at 540 rows. Deep zoom is not a goal. Near the set's boundary, where the orbit is
chaotic, single pixels differ from the float64 numba renderer (``tests/test_julia_render.py``
bounds how many).

The iteration cap is the uniform ``u_max_iter``; the loop's bound is the constant
``MAX_ITER_RANGE[1]``, left early with ``break``.

Speed on a software rasteriser: llvmpipe runs the shader on 8 pixels at a time and pays for every
trip round a loop (its lanes' masks), far more than for the arithmetic in it. The loop therefore
takes :data:`STEPS_PER_TRIP` (4) steps per trip and then picks the first step that escaped, so
the escape count ``n`` and ``|z_n|**2`` are exactly those of one step per trip (the steps after
an escape are computed and thrown away; the smooth colouring needs the exact ones). The last
``max_iter mod 4`` steps run one per trip. The periodicity check (palette docstring) compares
once per trip, after every 4th step, instead of after every step; the reference points are still
``z_0, z_8, z_16, z_32, ...``. That only changes when an interior point is recognised, never
whether it is drawn black, so the picture is the same. Measured at 960x540 against one step per
trip (``benchmarks/bench_render.py``'s animation, the same frames back to back): 0.55-0.6 x the
frame time, 0.4 x on an all-interior frame.
"""

from __future__ import annotations

import contextlib

import numpy as np

from examples.julia.palette import GLSL_PALETTE
from examples.julia.params import MAX_ITER_RANGE, JuliaParams
from examples.julia.renderers import check_out, check_size, view_basis

__all__ = ["GLRenderer", "GLUnavailableError", "FRAGMENT_SHADER", "STEPS_PER_TRIP",
           "VERTEX_SHADER"]

#: Iteration steps per trip round the shader's loop (module docstring); the shader is written
#: for 4.
STEPS_PER_TRIP = 4


class GLUnavailableError(RuntimeError):
    """OpenGL (moderngl, or an EGL/GL 3.3 context) cannot be used on this machine."""


VERTEX_SHADER = """
#version 330
in vec2 in_pos;
void main() {
    gl_Position = vec4(in_pos, 0.0, 1.0);
}
"""

FRAGMENT_SHADER = ("""
#version 330
uniform vec2 u_size;        // image width, height in pixels
uniform float u_scale;      // one sample per u_scale x u_scale block (its centre)
uniform bool u_top_down;    // framebuffer row 0 holds the image's top row
uniform vec2 u_c;
uniform vec2 u_center;
uniform vec2 u_basis;       // renderers.view_basis: (a, b)
uniform int u_max_iter;
uniform float u_hue;
uniform float u_saturation;
uniform float u_brightness;
out vec4 f_colour;
""" + GLSL_PALETTE + f"""
const int LOOP_BOUND = {MAX_ITER_RANGE[1]};

// z -> z**2 + c, in the order of operations of the numba kernel
vec2 julia_step(vec2 z) {{
    return vec2(z.x * z.x - z.y * z.y + u_c.x, 2.0 * z.x * z.y + u_c.y);
}}

void main() {{
    // pixel (block) centre, measured from the image's left edge and top edge
    float px = gl_FragCoord.x * u_scale;
    float py = u_top_down ? gl_FragCoord.y * u_scale : u_size.y - gl_FragCoord.y * u_scale;
    float u = (2.0 * px - u_size.x) / u_size.y;
    float v = (u_size.y - 2.0 * py) / u_size.y;
    vec2 z = vec2(u_center.x + u_basis.x * u - u_basis.y * v,
                  u_center.y + u_basis.y * u + u_basis.x * v);
    float r2 = z.x * z.x + z.y * z.y;
    int n = 0;
    vec2 ref = z;               // periodicity check (palette docstring), once per trip
    int next_ref = 8;
    bool cycle = false;
    // {STEPS_PER_TRIP} steps per trip while at least {STEPS_PER_TRIP} remain (module docstring)
    int trips_end = u_max_iter - {STEPS_PER_TRIP - 1};
    for (int k = 0; k < LOOP_BOUND; k += {STEPS_PER_TRIP}) {{
        if (n >= trips_end || !(r2 <= JULIA_BAILOUT2)) break;
        vec2 z1 = julia_step(z);
        float q1 = z1.x * z1.x + z1.y * z1.y;
        vec2 z2 = julia_step(z1);
        float q2 = z2.x * z2.x + z2.y * z2.y;
        vec2 z3 = julia_step(z2);
        float q3 = z3.x * z3.x + z3.y * z3.y;
        vec2 z4 = julia_step(z3);
        float q4 = z4.x * z4.x + z4.y * z4.y;
        bool e1 = !(q1 <= JULIA_BAILOUT2);   // NaN counts as escaped, as in the numba kernel
        bool e2 = !(q2 <= JULIA_BAILOUT2);
        bool e3 = !(q3 <= JULIA_BAILOUT2);
        z = e1 ? z1 : (e2 ? z2 : (e3 ? z3 : z4));
        r2 = e1 ? q1 : (e2 ? q2 : (e3 ? q3 : q4));
        n += e1 ? 1 : (e2 ? 2 : (e3 ? 3 : 4));
        vec2 d = z - ref;
        if (d.x * d.x + d.y * d.y < JULIA_CYCLE_EPS2) {{
            cycle = true;
            break;
        }}
        if (n == next_ref) {{
            ref = z;
            next_ref *= 2;
        }}
    }}
    for (int k = 0; k < {STEPS_PER_TRIP - 1}; ++k) {{  // the last max_iter mod 4 steps
        if (cycle || n >= u_max_iter || !(r2 <= JULIA_BAILOUT2)) break;
        z = julia_step(z);
        r2 = z.x * z.x + z.y * z.y;
        n += 1;
    }}
    if (cycle || r2 <= JULIA_BAILOUT2) {{
        f_colour = vec4(0.0, 0.0, 0.0, 1.0);
    }} else {{
        float mu = julia_smooth_count(n, r2);
        f_colour = vec4(julia_shade(mu, u_hue, u_saturation, u_brightness), 1.0);
    }}
}}
""")

#: Nearest-neighbour upscaling of the block image (scale > 1) to the output, pixel exact.
UPSCALE_SHADER = """
#version 330
uniform sampler2D u_blocks;  // one texel per block, row 0 = the top block row
uniform int u_scale;
uniform int u_height;        // output height in pixels
uniform bool u_top_down;     // output row 0 is the image's top row
out vec4 f_colour;
void main() {
    // pixel centres i + 0.5, counted from the top: (i + 0.5) / scale lies strictly between
    // floor(i / scale) and the next integer, so floor() gives the block exactly. (In float:
    // llvmpipe has no vector integer division and runs it lane by lane, 3x slower per frame.)
    vec2 p = vec2(gl_FragCoord.x, u_top_down ? gl_FragCoord.y : float(u_height) - gl_FragCoord.y);
    f_colour = texelFetch(u_blocks, ivec2(floor(p / float(u_scale))), 0);
}
"""

def _check_scale(scale, what: str) -> int:
    if isinstance(scale, bool) or not isinstance(scale, (int, np.integer)) or scale < 1:
        raise ValueError(f"{what}: scale must be an int >= 1, got {scale!r}")
    return int(scale)


_NO_GL = "run with --renderer numba (the CPU fallback) instead"


def _standalone_context():
    """A moderngl EGL standalone context (GL >= 3.3), or ``GLUnavailableError``."""
    try:
        import moderngl
    except ImportError as exc:
        raise GLUnavailableError(f"GL renderer: moderngl is not installed ({exc}); install the "
                                 f"[live] extra or {_NO_GL}") from exc
    try:
        ctx = moderngl.create_standalone_context(backend="egl", require=330)
    except Exception as exc:  # moderngl raises plain Exception for a missing EGL/GL
        raise GLUnavailableError(f"GL renderer: cannot open an EGL OpenGL 3.3 context ({exc}); "
                                 f"{_NO_GL}") from exc
    global egl_context_opened
    egl_context_opened = True
    return ctx


#: Whether this process has opened an offscreen EGL context. With Mesa, a GLX window opened
#: after that (even once the context is released) dies in glXMakeCurrent with an X BadAccess
#: error that ends the process, so :class:`~examples.julia.window.JuliaWindow` refuses instead.
egl_context_opened = False


class GLRenderer:
    """GLSL renderer of ``width`` x ``height`` pixels (module docstring).

    ``ctx=None``: an own offscreen EGL context and framebuffer (``GLUnavailableError`` naming
    ``--renderer numba`` if that fails). ``ctx`` given: draws into ``ctx.screen`` (the default
    framebuffer, e.g. a pygame window's) at viewport ``(0, 0, width, height)``; the context stays
    the caller's. ``scale`` > 1: one sample per ``scale`` x ``scale`` block at its centre, into a
    texture, then nearest-neighbour upscaled to the output (the numba renderer's ``scale``, same
    geometry). The shaders are compiled here, not on the first frame; :meth:`set_scale` changes
    ``scale`` between frames without compiling anything. An own context is made current for each
    call (and the previous one restored), so that several offscreen renderers in one process
    each draw in their own.
    """

    def __init__(self, width: int, height: int, ctx=None, scale: int = 1) -> None:
        self.width, self.height = check_size(width, height, "GLRenderer")
        self.scale = _check_scale(scale, "GLRenderer")
        self._owns_ctx = ctx is None
        self._vao = self._vbo = self._prog = self._fbo = None
        self._up_prog = self._up_vao = self._blocks = self._blocks_fbo = None
        self._scratch = None
        self.ctx = _standalone_context() if ctx is None else ctx
        try:
            self._init_gl()
        except Exception:
            self.release()
            raise

    def _current(self):
        """Context manager: the renderer's own context current inside (a caller's stays as is)."""
        return self.ctx if self._owns_ctx else contextlib.nullcontext()

    def _init_gl(self) -> None:
        with self._current():
            self._prog = self.ctx.program(vertex_shader=VERTEX_SHADER,
                                          fragment_shader=FRAGMENT_SHADER)
            quad = np.array([-1.0, -1.0, 1.0, -1.0, -1.0, 1.0, 1.0, 1.0], dtype="f4")
            self._vbo = self.ctx.buffer(quad.tobytes())
            self._vao = self.ctx.vertex_array(self._prog, [(self._vbo, "2f", "in_pos")])
            self._up_prog = self.ctx.program(vertex_shader=VERTEX_SHADER,
                                             fragment_shader=UPSCALE_SHADER)
            self._up_vao = self.ctx.vertex_array(self._up_prog, [(self._vbo, "2f", "in_pos")])
            self._up_prog["u_blocks"].value = 0
            self._allocate()

    def _block_size(self) -> tuple[int, int]:
        return -(-self.width // self.scale), -(-self.height // self.scale)

    def _allocate(self) -> None:
        """(Re)create what depends on the size: framebuffer or flip buffer, block texture."""
        self._release_sized()
        if self._owns_ctx:
            self._fbo = self.ctx.framebuffer(
                color_attachments=[self.ctx.renderbuffer((self.width, self.height), 4)])
        else:
            self._scratch = np.empty((self.height, self.width, 3), np.uint8)
        self._prog["u_size"].value = (float(self.width), float(self.height))
        self._up_prog["u_height"].value = self.height
        self._up_prog["u_top_down"].value = self._owns_ctx
        self._allocate_blocks()

    def _allocate_blocks(self) -> None:
        """(Re)create what depends on the scale: the block texture (none at scale 1)."""
        self._release_sized(("_blocks_fbo", "_blocks"))
        self._prog["u_scale"].value = float(self.scale)
        self._prog["u_top_down"].value = self._owns_ctx or self.scale > 1
        if self.scale > 1:
            self._blocks = self.ctx.texture(self._block_size(), 4)
            self._blocks_fbo = self.ctx.framebuffer(color_attachments=[self._blocks])
            self._up_prog["u_scale"].value = self.scale

    def _release_sized(self, names=("_fbo", "_blocks_fbo", "_blocks")) -> None:
        for name in names:
            obj = getattr(self, name)
            if obj is not None:
                if name == "_fbo":
                    for attachment in obj.color_attachments:
                        attachment.release()
                obj.release()
                setattr(self, name, None)

    def resize(self, width: int, height: int) -> None:
        """Draw at a new size from the next frame on (e.g. a window gone fullscreen)."""
        size = check_size(width, height, "GLRenderer.resize")
        if size != (self.width, self.height):
            self.width, self.height = size
            with self._current():
                self._allocate()

    def set_scale(self, scale: int) -> None:
        """Draw one sample per ``scale`` x ``scale`` block from the next frame on (an int >= 1):
        re-makes the block texture, compiles nothing. The picture is the one a renderer built
        with this ``scale`` draws."""
        scale = _check_scale(scale, "GLRenderer.set_scale")
        if self._vao is None:
            raise RuntimeError("GLRenderer: used after release()")
        if scale != self.scale:
            self.scale = scale
            with self._current():
                self._allocate_blocks()

    def render(self, params: JuliaParams) -> None:
        """Draw one frame of ``params`` (into the offscreen framebuffer, or ``ctx.screen``)."""
        if not isinstance(params, JuliaParams):
            raise TypeError(f"GLRenderer.render: params must be JuliaParams, "
                            f"got {type(params).__name__}")
        if self._vao is None:
            raise RuntimeError("GLRenderer: used after release()")
        with self._current():
            self._draw(params)

    def _draw(self, params: JuliaParams) -> None:
        prog = self._prog
        prog["u_c"].value = (params.c_re, params.c_im)
        prog["u_center"].value = (params.center_re, params.center_im)
        prog["u_basis"].value = view_basis(params)
        prog["u_max_iter"].value = params.max_iter
        prog["u_hue"].value = params.hue
        prog["u_saturation"].value = params.saturation
        prog["u_brightness"].value = params.brightness
        output = self._fbo if self._owns_ctx else self.ctx.screen
        if self.scale > 1:
            self._blocks_fbo.use()
            self.ctx.viewport = (0, 0, *self._block_size())
            self._vao.render(mode=self.ctx.TRIANGLE_STRIP)  # 4 vertices: one quad
            output.use()
            self.ctx.viewport = (0, 0, self.width, self.height)
            self._blocks.use(0)
            self._up_vao.render(mode=self.ctx.TRIANGLE_STRIP)
        else:
            output.use()
            self.ctx.viewport = (0, 0, self.width, self.height)
            self._vao.render(mode=self.ctx.TRIANGLE_STRIP)

    def read(self, out: np.ndarray | None = None) -> np.ndarray:
        """The last frame, (height, width, 3) uint8 RGB, top row first; into ``out`` when given
        (no allocation: offscreen, GL writes straight into it), else a new array. Waits for the
        GPU to finish the frame."""
        if self._vao is None:
            raise RuntimeError("GLRenderer: used after release()")
        if out is None:
            out = np.empty((self.height, self.width, 3), np.uint8)
        else:
            check_out(out, self.width, self.height, "GLRenderer.read")
        viewport = (0, 0, self.width, self.height)
        if self._owns_ctx:
            with self.ctx:
                self._fbo.read_into(out, viewport=viewport, components=3, alignment=1)
        else:
            self.ctx.screen.read_into(self._scratch, viewport=viewport, components=3,
                                      alignment=1)
            np.copyto(out, self._scratch[::-1])
        return out

    def release(self) -> None:
        """Free the GL objects (and the context if it is the renderer's own); idempotent."""
        if self.ctx is not None:
            with self._current():
                self._release_sized()
                for name in ("_up_vao", "_up_prog", "_vao", "_vbo", "_prog"):
                    obj = getattr(self, name)
                    if obj is not None:
                        obj.release()
                        setattr(self, name, None)
        if self._owns_ctx and self.ctx is not None:
            self.ctx.release()
            self.ctx = None

    def __enter__(self) -> GLRenderer:
        return self

    def __exit__(self, *exc) -> None:
        self.release()
