"""Real ALSA devices for PortAudio tests on a machine without a sound card.

`write_alsa_config` writes a self-contained ALSA configuration (it replaces the system's
``alsa.conf`` through ``ALSA_CONFIG_PATH``, so no card and no user ``~/.asoundrc`` takes
part) with these PCMs, all built from alsa-lib's own ``null`` and ``file`` plugins:

- ``fsync_play``: playback; the ``file`` plugin writes every sample PortAudio plays, in the
  stream's own format (float32 little-endian, interleaved), to `AlsaConfig.played`;
- ``fsync_capture``: capture; a ``file`` plugin whose ``infile`` is `AlsaConfig.capture_in`
  (raw float32 little-endian, interleaved): PortAudio's paFloat32 stream reads it unchanged.
  Only the first ``len(capture_samples)`` samples are meaningful: after the file's end the
  plugin leaves the ALSA buffer as it was, so the last period(s) repeat;
- ``fsync_playonly``: an ``asym`` PCM with a playback side only (no input channels);
- ``default``: ``null`` both ways.

What does not work (PortAudio 19.6 on alsa-lib 1.2.8, measured when this was written): a
conversion plugin (``plug`` or ``linear`` to S16_LE) between PortAudio and the capture
``file`` plugin loses whole periods (PortAudio's mmap reads and the file plugin's ``infile``
reads fall out of step: 1024-sample blocks arrive from infile offsets 0, 1024, 2048, 4096,
5120, 7168 ...), so the capture device uses the stream's own format and no conversion.

The ``null`` plugin has no clock: PortAudio's ALSA thread finds it always ready, so these
streams run as fast as the callbacks return (tens of thousands of 1024-sample callbacks a
second), not at the nominal rate.

The configuration must define ``pcm.default`` (or ``pcm.dmix``): PortAudio 19.6's
``BuildDeviceList`` asserts ``devIdx < numDeviceNames`` after opening every other PCM, so a
configuration whose PCMs all open and none is ``default``/``dmix`` (an empty one included)
aborts the process. `write_no_device_config` writes a ``default`` that cannot be opened, so
PortAudio lists no device without aborting.

PortAudio reads the ALSA configuration once, when it is initialised, so every PortAudio part
of a test runs in a child Python (`run_portaudio`) with ``ALSA_CONFIG_PATH`` in its
environment; that also keeps a crash or a hang out of the test process.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

PLAY_DEVICE = "fsync_play"
CAPTURE_DEVICE = "fsync_capture"
PLAY_ONLY_DEVICE = "fsync_playonly"


@dataclass(frozen=True)
class AlsaConfig:
    """Paths of one written configuration: the config file and the two raw sample files."""

    path: Path
    played: Path
    capture_in: Path


def _quoted(path: Path) -> str:
    """A path as an ALSA configuration string."""
    return json.dumps(str(path))


def write_alsa_config(directory: Path, capture_samples: np.ndarray) -> AlsaConfig:
    """Write the PCMs of the module docstring into `directory`.

    Parameters
    ----------
    directory : Path
        An existing directory (e.g. pytest's tmp_path).
    capture_samples : np.ndarray, float32, shape (n,) or (n, channels)
        What ``fsync_capture`` delivers first, at any rate PortAudio asks for.
    """
    played = directory / "played.raw"
    capture_in = directory / "capture_in.raw"
    np.asarray(capture_samples, dtype="<f4").tofile(capture_in)
    text = f"""
pcm.!default {{ type null }}
pcm.{PLAY_DEVICE} {{
    type file
    slave.pcm {{ type null }}
    file {_quoted(played)}
    format "raw"
}}
pcm.{CAPTURE_DEVICE} {{
    type file
    slave.pcm {{ type null }}
    file "/dev/null"
    infile {_quoted(capture_in)}
    format "raw"
}}
pcm.{PLAY_ONLY_DEVICE} {{
    type asym
    playback.pcm {{ type null }}
}}
"""
    path = directory / "asound.conf"
    path.write_text(text)
    return AlsaConfig(path=path, played=played, capture_in=capture_in)


def write_no_device_config(directory: Path) -> Path:
    """Write a configuration under which PortAudio lists no device; its path."""
    path = directory / "no_device.conf"
    path.write_text("pcm.!default { type hw; card 31 }\nctl.!default { type hw; card 31 }\n")
    return path


def run_portaudio(script: str, config_path: Path, timeout: float = 60.0,
                  ) -> subprocess.CompletedProcess:
    """Run `script` in a child Python whose ALSA configuration is `config_path`.

    The child starts with ``ALSA_CONFIG_PATH`` set, before anything initialises PortAudio.
    Returns the finished process (text stdout/stderr); raises subprocess.TimeoutExpired after
    `timeout` seconds (the child is killed): a hang fails the test instead of stalling it.
    """
    env = dict(os.environ, ALSA_CONFIG_PATH=str(config_path))
    return subprocess.run([sys.executable, "-c", script], env=env, capture_output=True,
                          text=True, timeout=timeout, check=False)
