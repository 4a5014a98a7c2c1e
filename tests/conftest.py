"""Shared pytest fixtures. Keep them general: every test suite may add its own here."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import settings

# CI must not fail by chance: under CI=true every property test runs a fixed, derandomised set of
# examples. Locally the default profile explores new random examples on every run (pin one with
# --hypothesis-seed). Examples a run found failing are kept as @example in the tests.
settings.register_profile("ci", derandomize=True, print_blob=True)
settings.register_profile("dev", print_blob=True)
settings.load_profile("ci" if os.environ.get("CI", "").lower() in ("1", "true", "yes") else "dev")


@pytest.fixture(scope="session")
def fractalsync_home(tmp_path_factory):
    """The FRACTALSYNC_HOME of this test session.

    Reuses the user's cache when FRACTALSYNC_HOME is already set (the Makefile sets it, so CI
    does not download twice); otherwise points it at a fresh temporary directory.
    """
    env = os.environ.get("FRACTALSYNC_HOME", "").strip()
    if env:
        yield Path(env).expanduser()
        return
    home = tmp_path_factory.mktemp("fractalsync_home")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("FRACTALSYNC_HOME", str(home))
        yield home


@pytest.fixture(scope="session")
def beatnet_models_dir(fractalsync_home):
    """Directory holding beatnet_m{1,2,3}.onnx, made by the real converter (once per session)."""
    from fractalsync_models.export_beatnet import export_beatnet

    paths = export_beatnet(models="all")
    return paths[0].parent


def _free_display() -> int:
    for n in range(90, 400):
        if not Path(f"/tmp/.X11-unix/X{n}").exists() and not Path(f"/tmp/.X{n}-lock").exists():
            return n
    raise RuntimeError("no free X display number in 90..399")


#: Screen size of the test X server (pixels).
XVFB_SCREEN = (1280, 720)


@pytest.fixture(scope="module")
def xvfb():
    """A real Xvfb (XVFB_SCREEN x 24 bit, no TCP) on a free display number; yields the number.

    Xvfb and ffmpeg (for screenshots) are system dependencies installed by scripts/sysdeps.sh:
    their absence fails the test rather than skipping it.
    """
    import shutil
    import subprocess
    import time

    if shutil.which("Xvfb") is None or shutil.which("ffmpeg") is None:
        pytest.fail("Xvfb and ffmpeg are required (Debian packages xvfb, ffmpeg: "
                    "scripts/sysdeps.sh installs them)")
    n = _free_display()
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


def grab_screen(display: int):
    """The whole X screen of ``display`` now, (H, W, 3) uint8 RGB, by ffmpeg's x11grab."""
    import subprocess

    import numpy as np

    run = subprocess.run(["ffmpeg", "-nostdin", "-loglevel", "error", "-f", "x11grab",
                          "-draw_mouse", "0", "-video_size", f"{XVFB_SCREEN[0]}x{XVFB_SCREEN[1]}",
                          "-i", f":{display}+0,0", "-frames:v", "1", "-f", "rawvideo",
                          "-pix_fmt", "rgb24", "-"], capture_output=True, timeout=60)
    assert run.returncode == 0, run.stderr.decode()
    return np.frombuffer(run.stdout, np.uint8).reshape(XVFB_SCREEN[1], XVFB_SCREEN[0], 3)
