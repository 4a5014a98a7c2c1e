"""``fractalsync-serve`` as a real subprocess for tests: start it, wait for its "serving" line,
find its WebSocket port, stop it with a signal, and a generated test song on disk."""

from __future__ import annotations

import os
import re
import selectors
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

_SERVING = re.compile(r"ws://[^:]+:(\d+)/")


def song_file(directory: Path, seed: int = 2026, rate: int = 44100,
              duration_s: float | None = None):
    """Write generated song ``seed`` as a float WAV in ``directory``; (path, Song)."""
    import soundfile as sf

    from fractalsync_models.training.song_generator import generate_song

    song = generate_song(seed, sample_rate=rate, duration_s=duration_s)
    path = directory / f"song_{seed}_{rate}.wav"
    sf.write(path, song.audio.astype(np.float32), rate, subtype="FLOAT")
    return path, song


@dataclass
class Served:
    proc: subprocess.Popen
    line: str  # the "serving ..." line
    ws_port: int | None

    def stop(self, sig=signal.SIGINT, timeout: float = 30.0) -> tuple[int, str, str]:
        """Send ``sig`` (None: send nothing), wait; (exit status, rest of stdout, stderr)."""
        if sig is not None and self.proc.poll() is None:
            self.proc.send_signal(sig)
        out, err = self.proc.communicate(timeout=timeout)
        return self.proc.returncode, out, err


def _default_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)  # background jobs inherit it ignored


def start(args: list[str], timeout: float = 120.0, **popen) -> Served:
    """Run ``python -m fractalsync_serve.cli ARGS`` and wait until it prints its serving line
    (TimeoutError after ``timeout`` s, RuntimeError if it exits first, with its stderr)."""
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    proc = subprocess.Popen([sys.executable, "-m", "fractalsync_serve.cli", *args],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=env, preexec_fn=_default_sigint, **popen)
    sel = selectors.DefaultSelector()
    sel.register(proc.stdout, selectors.EVENT_READ)
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            if sel.select(max(0.0, deadline - time.monotonic())):
                line = proc.stdout.readline()
                if not line:
                    break
                if "serving" in line:
                    m = _SERVING.search(line)
                    return Served(proc, line, int(m.group(1)) if m else None)
        else:
            proc.kill()
            raise TimeoutError(f"fractalsync-serve did not start in {timeout} s")
    finally:
        sel.close()
    out, err = proc.communicate(timeout=30)
    raise RuntimeError(f"fractalsync-serve exited with {proc.returncode}: {err}")


def run(args: list[str], timeout: float = 300.0, **kwargs) -> subprocess.CompletedProcess:
    """Run the CLI to its end (text output unless ``text=False``)."""
    kwargs.setdefault("text", True)
    return subprocess.run([sys.executable, "-m", "fractalsync_serve.cli", *args],
                          capture_output=True, timeout=timeout, preexec_fn=_default_sigint,
                          **kwargs)
