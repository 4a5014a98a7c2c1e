"""A real X server for the window tests: Xvfb on a free display number, screenshots by ffmpeg.

Xvfb and ffmpeg are system dependencies (scripts/sysdeps.sh installs them): without them the
tests fail rather than skip.
"""

from __future__ import annotations

import contextlib
import shutil
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest

#: Screen size of the test X server (pixels).
XVFB_SCREEN = (1280, 720)


def free_display() -> int:
    """An X display number in 90..399 that no server (socket or lock file) uses now."""
    for n in range(90, 400):
        if not Path(f"/tmp/.X11-unix/X{n}").exists() and not Path(f"/tmp/.X{n}-lock").exists():
            return n
    raise RuntimeError("no free X display number in 90..399")


@contextlib.contextmanager
def running_xvfb():
    """Start Xvfb (XVFB_SCREEN x 24 bit, no TCP), yield its display number, stop it."""
    if shutil.which("Xvfb") is None or shutil.which("ffmpeg") is None:
        pytest.fail("Xvfb and ffmpeg are required (Debian packages xvfb, ffmpeg: "
                    "scripts/sysdeps.sh installs them)")
    n = free_display()
    proc = subprocess.Popen(["Xvfb", f":{n}", "-screen", "0",
                             f"{XVFB_SCREEN[0]}x{XVFB_SCREEN[1]}x24", "-nolisten", "tcp"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 15
        while not Path(f"/tmp/.X11-unix/X{n}").exists():
            if proc.poll() is not None:
                raise RuntimeError(f"Xvfb :{n} exited: {proc.stderr.read().decode()[-500:]}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"Xvfb :{n}: no socket after 15 s")
            time.sleep(0.05)
        yield n
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def grab_screen(display: int) -> np.ndarray:
    """The whole X screen of ``display`` now, (H, W, 3) uint8 RGB, by ffmpeg's x11grab (without
    the mouse cursor)."""
    run = subprocess.run(["ffmpeg", "-nostdin", "-loglevel", "error", "-f", "x11grab",
                          "-draw_mouse", "0", "-video_size", f"{XVFB_SCREEN[0]}x{XVFB_SCREEN[1]}",
                          "-i", f":{display}+0,0", "-frames:v", "1", "-f", "rawvideo",
                          "-pix_fmt", "rgb24", "-"], capture_output=True, timeout=60)
    assert run.returncode == 0, run.stderr.decode()
    return np.frombuffer(run.stdout, np.uint8).reshape(XVFB_SCREEN[1], XVFB_SCREEN[0], 3)
