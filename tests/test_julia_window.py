"""The live visual's window on a real X server (Xvfb): what the screen shows (grabbed by ffmpeg's
x11grab) against the offscreen GL render of the same parameters; overlay, keys, fullscreen;
and the clear error without a display.

Mesa's GLX (llvmpipe) works under Xvfb as it is: no LIBGL_ALWAYS_SOFTWARE needed. The window runs
in a child process (pygame's display is process-global state) driven line by line over stdin.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from xdisplay import XVFB_SCREEN as SCREEN
from xdisplay import free_display, grab_screen

ROOT = Path(__file__).resolve().parents[1]

pytest.importorskip("pygame")  # the [live] extra
pytest.importorskip("moderngl")

from examples.julia.governor import Level  # noqa: E402
from examples.julia.params import JuliaParams  # noqa: E402
from examples.julia.render_gl import GLRenderer  # noqa: E402
from examples.julia.window import BAR_FILL_RGBA, JuliaWindow, NoDisplayError  # noqa: E402

WINDOW = (480, 270)
PARAMS = JuliaParams(-0.8, 0.156, zoom=1.3, rotation=0.4, center_re=0.2, center_im=0.1, hue=0.2)

CHILD = r"""
import json, sys
import pygame
from examples.julia.params import JuliaParams
from examples.julia.window import JuliaWindow

win = JuliaWindow(int(sys.argv[1]), int(sys.argv[2]), fullscreen=sys.argv[3] == "1",
                  title="test", scale=None if sys.argv[4] == "auto" else int(sys.argv[4]))
print(json.dumps({"size": win.size, "governed": win.governor is not None}), flush=True)
for line in sys.stdin:
    cmd = json.loads(line)
    reply = {}
    if cmd["do"] == "draw":
        if win.governor is not None:  # the level this frame is drawn at
            reply["level"] = [win.governor.current.scale, win.governor.current.iter_cap]
        win.draw(JuliaParams(**cmd["params"]))
        if "overlay" in cmd:
            layout = win.draw_overlay(cmd["overlay"]["lines"],
                                      [tuple(b) for b in cmd["overlay"]["bars"]])
            reply["layout"] = {"panel": layout.panel, "bars": layout.bars}
        win.present()
    elif cmd["do"] == "keys":
        for key in cmd["keys"]:
            pygame.event.post(pygame.event.Event(pygame.KEYDOWN, key=getattr(pygame, key), mod=0,
                                                 unicode="", scancode=0))
        pygame.event.post(pygame.event.Event(pygame.QUIT))
        reply["events"] = win.poll_events()
    elif cmd["do"] == "record":  # frame costs (ms) for the governor, as if frames took them
        for ms in cmd["ms"]:
            win.governor.record(ms)
        reply["level_index"] = win.governor.level
    elif cmd["do"] == "fullscreen":
        win.toggle_fullscreen()
    elif cmd["do"] == "close":
        win.close()
        break
    reply.update(size=win.size, fullscreen=win.fullscreen)
    print(json.dumps(reply), flush=True)
"""


def grab_until(display: int, ok, timeout: float = 10.0) -> np.ndarray:
    """Grab until ``ok(shot)`` (the X server shows a swapped frame a moment after the swap);
    returns the last grab either way, for the assertions to explain."""
    deadline = time.monotonic() + timeout
    while True:
        shot = grab_screen(display)
        if ok(shot) or time.monotonic() > deadline:
            return shot
        time.sleep(0.1)


def offscreen(params: JuliaParams, width: int, height: int, scale: int = 1) -> np.ndarray:
    with GLRenderer(width, height, scale=scale) as gl:
        gl.render(params)
        return gl.read()


def same_picture(a: np.ndarray, b: np.ndarray) -> bool:
    """Bound: the same driver (llvmpipe) runs the same shader behind GLX and EGL, so the pictures
    should be identical; allow one 8-bit level on 0.1 % of the pixels for driver rounding."""
    diff = np.abs(a.astype(int) - b)
    return a.shape == b.shape and np.mean(diff > 1) <= 0.001


class Window:
    """The child process holding a JuliaWindow on the Xvfb display."""

    def __init__(self, display: int, fullscreen: bool = False, scale: int | str = 1,
                 size: tuple[int, int] = WINDOW) -> None:
        env = {**os.environ, "DISPLAY": f":{display}", "SDL_VIDEO_WINDOW_POS": "0,0",
               "PYTHONPATH": str(ROOT)}
        env.pop("WAYLAND_DISPLAY", None)
        env.pop("SDL_VIDEODRIVER", None)
        self.display = display
        self.proc = subprocess.Popen([sys.executable, "-c", CHILD, *map(str, size),
                                      "1" if fullscreen else "0", str(scale)], cwd=ROOT,
                                     env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True)
        self.opened = self._reply()

    def _reply(self) -> dict:
        line = self.proc.stdout.readline()
        if not line:
            self.proc.wait(timeout=30)
            raise AssertionError(f"window process exited {self.proc.returncode}: "
                                 f"{self.proc.stderr.read()[-2000:]}")
        return json.loads(line)

    def send(self, **cmd) -> dict:
        self.proc.stdin.write(json.dumps(cmd) + "\n")
        self.proc.stdin.flush()
        return self._reply()

    def close(self) -> None:
        if self.proc.poll() is None:
            try:
                self.send(do="close")
            except (AssertionError, BrokenPipeError, ValueError):
                pass
            self.proc.stdin.close()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


@pytest.fixture(scope="module")
def window(xvfb):
    win = Window(xvfb)
    try:
        yield win
    finally:
        win.close()
    assert win.proc.returncode == 0, win.proc.stderr.read()[-2000:]


def test_window_shows_the_render(window):
    assert window.opened == {"size": list(WINDOW), "governed": False}  # a fixed scale
    reply = window.send(do="draw", params=PARAMS.__dict__)
    assert reply == {"size": list(WINDOW), "fullscreen": False}
    want = offscreen(PARAMS, *WINDOW)
    shot = grab_until(window.display, lambda s: same_picture(s[:WINDOW[1], :WINDOW[0]], want))
    assert same_picture(shot[:WINDOW[1], :WINDOW[0]], want)
    assert not shot[WINDOW[1]:].any() and not shot[:, WINDOW[0]:].any()  # the bare root window


def test_overlay_draws_text_and_bars_over_the_picture(window):
    values = [0.0, 0.25, 0.5, 0.75, 1.0]
    bars = [[f"{h} beats", v] for h, v in zip((1, 2, 4, 8, 16), values, strict=True)]
    lines = ["128.0 BPM", "beat 3/4", "chorus"]
    reply = window.send(do="draw", params=PARAMS.__dict__, overlay={"lines": lines, "bars": bars})
    px, py, pw, ph = reply["layout"]["panel"]
    picture = offscreen(PARAMS, *WINDOW)
    outside = np.ones(picture.shape[:2], bool)
    outside[py:py + ph, px:px + pw] = False

    def shows_overlay(shot):
        win = shot[:WINDOW[1], :WINDOW[0]]
        return same_picture(win[outside], picture[outside]) and not same_picture(win, picture)

    win = grab_until(window.display, shows_overlay)[:WINDOW[1], :WINDOW[0]]
    assert same_picture(win[outside], picture[outside])  # nothing drawn outside the panel
    fill = np.round(np.array(BAR_FILL_RGBA[:3]) * 255)
    for (x, y, w, h), value in zip(reply["layout"]["bars"], values, strict=True):
        row = win[y + h // 2, x:x + w].astype(int)
        is_fill = np.abs(row - fill).max(axis=-1) <= 2
        assert is_fill.sum() == round(w * value), (value, is_fill.sum())
        assert is_fill[:round(w * value)].all()  # filled from the left
    text_rows = win[py:reply["layout"]["bars"][0][1], px:px + pw]
    assert (text_rows.min(axis=-1) > 200).sum() > 100  # white text in the panel's upper part


def test_keys_become_plain_events(window):
    reply = window.send(do="keys", keys=["K_SPACE", "K_RIGHT", "K_LEFT", "K_f", "K_h",
                                         "K_a", "K_ESCAPE"])
    assert reply["events"] == ["tap", "nudge+", "nudge-", "fullscreen", "toggle_overlay",
                               "quit", "quit"]  # K_a is dropped; the last "quit" is the QUIT


def test_fullscreen_toggle_round_trip_keeps_drawing(window):
    """F twice: back to the window at its size, still drawing the right picture. (What the toggle
    shows in between is up to the window manager: SDL asks it through EWMH, and Xvfb runs none,
    so the X window keeps its size there; fullscreen from the start is checked below.)"""
    assert window.send(do="fullscreen")["fullscreen"]
    reply = window.send(do="fullscreen")
    assert not reply["fullscreen"] and reply["size"] == list(WINDOW)
    params = JuliaParams(-0.12, 0.75, zoom=1.1, hue=0.6)
    window.send(do="draw", params=params.__dict__)
    want = offscreen(params, *WINDOW)
    shot = grab_until(window.display, lambda s: same_picture(s[:WINDOW[1], :WINDOW[0]], want))
    assert same_picture(shot[:WINDOW[1], :WINDOW[0]], want)


def test_fullscreen_window_fills_the_screen(xvfb, window):
    """JuliaWindow(fullscreen=True): the picture covers the whole X screen at its size."""
    window.send(do="draw", params=JuliaParams(0.0, 0.0).__dict__)  # hide the windowed picture
    full = Window(xvfb, fullscreen=True)
    try:
        assert full.opened["size"] == list(SCREEN)
        reply = full.send(do="draw", params=PARAMS.__dict__)
        assert reply == {"size": list(SCREEN), "fullscreen": True}
        want = offscreen(PARAMS, *SCREEN)
        assert same_picture(grab_until(xvfb, lambda s: same_picture(s, want)), want)
    finally:
        full.close()
    assert full.proc.returncode == 0, full.proc.stderr.read()[-2000:]


def test_scaled_window_shows_the_scaled_render(xvfb, window):
    """JuliaWindow(scale=3) at an odd size: blocks upscaled into the window (bottom-up default
    framebuffer) as in the offscreen render (top-down)."""
    window.send(do="draw", params=JuliaParams(0.0, 0.0).__dict__)  # hide the windowed picture
    scaled = Window(xvfb, scale=3, size=(481, 271))
    try:
        scaled.send(do="draw", params=PARAMS.__dict__)
        want = offscreen(PARAMS, 481, 271, scale=3)
        assert (want[:270:3] == want[1:271:3]).all()  # blocks of three rows (not a 1x image)
        shot = grab_until(xvfb, lambda s: same_picture(s[:271, :481], want))
        assert same_picture(shot[:271, :481], want)
    finally:
        scaled.close()
    assert scaled.proc.returncode == 0, scaled.proc.stderr.read()[-2000:]


def test_governed_window_draws_at_the_governors_level(xvfb, window):
    """scale=None on Xvfb's software OpenGL: governed. Frame costs fed to the governor move it
    down and back up the ladder; each frame on the screen is the offscreen render at the level
    it was drawn at (its scale, max_iter clamped to its cap), the scale changing at run time in
    the window's bottom-up framebuffer."""
    window.send(do="draw", params=JuliaParams(0.0, 0.0).__dict__)  # hide the windowed picture
    governed = Window(xvfb, scale="auto", size=(481, 271))
    params = JuliaParams(-0.12, 0.75, zoom=1.4, rotation=0.3, hue=0.4, max_iter=400)
    try:
        assert governed.opened == {"size": [481, 271], "governed": True}
        seen = set()
        for ms in ([], [100.0] * 3, [100.0] * 2, [0.0] * 400):  # down 3, 2 more, back to the top
            if ms:
                governed.send(do="record", ms=ms)
            reply = governed.send(do="draw", params=params.__dict__)
            scale, cap = reply["level"]
            seen.add((scale, cap))
            level = Level(scale, cap)
            want = offscreen(level.apply(params), 481, 271, scale=scale)
            shot = grab_until(xvfb, lambda s, want=want: same_picture(s[:271, :481], want))
            assert same_picture(shot[:271, :481], want), (scale, cap)
        # real frames count too (their cost depends on the machine's load), so the levels after
        # the slow ones are at least 3 and 5 down, and the zero-cost ones bring it to the top
        assert reply["level"] == [1, None] and len({scale for scale, _ in seen}) >= 2, seen
    finally:
        governed.close()
    assert governed.proc.returncode == 0, governed.proc.stderr.read()[-2000:]


def test_window_after_an_offscreen_context_is_a_clear_error(xvfb):
    """Mesa: a GLX window after an EGL context (even released) dies in glXMakeCurrent with an X
    BadAccess that ends the process; JuliaWindow says why instead."""
    env = {**os.environ, "DISPLAY": f":{xvfb}", "PYTHONPATH": str(ROOT)}
    code = ("from examples.julia.render_gl import GLRenderer, GLUnavailableError\n"
            "from examples.julia.window import JuliaWindow\n"
            "GLRenderer(8, 8).release()\n"
            "try:\n    JuliaWindow(320, 200)\n"
            "except GLUnavailableError as exc:\n    print('ERROR', exc)\n")
    run = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True,
                         text=True, timeout=60)
    assert run.returncode == 0, run.stderr
    assert run.stdout.startswith("ERROR JuliaWindow: this process already opened an offscreen"), \
        run.stdout


def test_no_display_is_a_clear_error(monkeypatch):
    for name in ("DISPLAY", "WAYLAND_DISPLAY", "SDL_VIDEODRIVER"):
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(NoDisplayError, match="DISPLAY is not set.*--out"):
        JuliaWindow(320, 200)
    assert issubclass(NoDisplayError, RuntimeError)


def test_display_without_a_server_is_a_clear_error():
    """DISPLAY names a display nobody serves: SDL's failure becomes NoDisplayError."""
    n = free_display()
    env = {**os.environ, "DISPLAY": f":{n}", "PYTHONPATH": str(ROOT)}
    code = ("from examples.julia.window import JuliaWindow, NoDisplayError\n"
            "try:\n    JuliaWindow(320, 200)\n"
            "except NoDisplayError as exc:\n    print('ERROR', exc)\n")
    run = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True,
                         text=True, timeout=60)
    assert run.returncode == 0, run.stderr
    assert run.stdout.startswith(f"ERROR cannot open an OpenGL window on display ':{n}'"), \
        run.stdout
