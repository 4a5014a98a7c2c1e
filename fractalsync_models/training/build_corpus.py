"""Build the anticipator's training corpus from the structured-song generator.

:func:`build_corpus` renders every seed's plan in its training variant (``variety=True``: long
silences, fades and stops besides the generator's forms) twice, into ``<work>/songs``:

* ``song_<seed>.wav``: the numpy voices (:func:`.song_generator.generate_song`);
* ``song_<seed>_gm.wav``: the same plan through FluidSynth with General MIDI instruments,
  volumes and reverb sends drawn per seed (:func:`.timbre.random_gm_mix`);

each through a random mild EQ and level (:func:`.timbre.random_colour`), with its labels
``<stem>.csv``. Then ``fractalsync-prepare`` (the live beat tracker, targets on the 12.5 Hz
slow grid) writes ``<work>/corpus/<stem>.npz``. Both stages are resumable: a song whose WAV and
CSV exist is not rendered again, and ``fractalsync-prepare`` skips tracks it has done. A work
directory of another version of this builder is refused (:data:`BUILD_STAMP`).

Never used here, so held out by construction: the default plans (``variety=False``), the
default GM mix (:func:`.song_midi.default_mix`) and the TimGM6mb soundfont.

The preparation runs as a subprocess (``python -m fractalsync_tracking.cli_prepare``), the
command a user runs on their own audio: ``fractalsync_models`` imports no other FractalSync
package.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterable, Sequence
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

from ..atomic_write import write_atomic
from .song_generator import generate_song

__all__ = ["RENDITIONS", "build_corpus", "render_training_song"]

#: Training renditions and the suffix of their file stems (``song_000042`` + suffix).
RENDITIONS = {"numpy": "", "gm": "_gm"}
#: What ``<work>/songs`` holds, recorded in ``<work>/corpus_build.json``: a work
#: directory made by another version (other songs under the same names) is refused, not mixed.
BUILD_STAMP = {"songs": "training variant 2 (variety=True, timbre.random_colour, early cues)",
               "renditions": RENDITIONS}
_STAMP_FILE = "corpus_build.json"


def render_training_song(seed: int, rendition: str, sample_rate: int = 22050):
    """The training :class:`~.song_generator.Song` of ``seed`` in ``rendition`` ("numpy" or
    "gm"; module docstring). Deterministic per seed and rendition."""
    from .timbre import random_colour, random_gm_mix

    if rendition == "numpy":
        song = generate_song(seed, sample_rate=sample_rate, variety=True)
        colour = np.random.default_rng([int(seed), 20])
    elif rendition == "gm":
        from .song_midi import render_midi_song

        mix = random_gm_mix(np.random.default_rng([int(seed), 21]))
        song = render_midi_song(seed, sample_rate=sample_rate, variety=True, mix=mix)
        colour = np.random.default_rng([int(seed), 22])
    else:
        raise ValueError(f"rendition must be one of {sorted(RENDITIONS)}, got {rendition!r}")
    return random_colour(song, colour)


def _render(task: tuple[int, str, Path]) -> None:
    seed, rendition, songs = task
    stem = f"song_{seed:06d}{RENDITIONS[rendition]}"
    if not ((songs / f"{stem}.wav").is_file() and (songs / f"{stem}.csv").is_file()):
        render_training_song(seed, rendition).write(songs, stem)


def _check_stamp(songs: Path) -> None:
    """Write :data:`BUILD_STAMP` next to a fresh ``songs`` directory; ValueError if the
    directory holds songs of another build (no stamp, or a different one)."""
    stamp = songs.parent / _STAMP_FILE
    want = json.loads(json.dumps(BUILD_STAMP))
    if stamp.is_file():
        if json.loads(stamp.read_text()) != want:
            raise ValueError(f"{songs} was built by another version of the corpus builder "
                             f"({stamp.read_text().strip()}): use a new --work directory")
    elif any(songs.glob("*.wav")):
        raise ValueError(f"{songs} holds songs of an earlier corpus builder (no {_STAMP_FILE}):"
                         " use a new --work directory")
    else:
        write_atomic(stamp, json.dumps(want, indent=1) + "\n")


def build_corpus(work: str | os.PathLike, seeds: Iterable[int], jobs: int = 2,
                 renditions: Sequence[str] = tuple(RENDITIONS)) -> Path:
    """Render the songs of ``seeds`` in ``renditions`` and prepare them; returns the corpus
    directory ``<work>/corpus``. Raises RuntimeError if the preparation fails for any track."""
    work = Path(work)
    songs = work / "songs"
    songs.mkdir(parents=True, exist_ok=True)
    bad = [r for r in renditions if r not in RENDITIONS]
    if bad or not renditions:
        raise ValueError(f"renditions must be some of {sorted(RENDITIONS)}, got {renditions!r}")
    _check_stamp(songs)
    tasks = [(s, r, songs) for s in seeds for r in renditions]
    with ProcessPoolExecutor(max_workers=max(1, jobs)) as pool:
        list(pool.map(_render, tasks))
    corpus = work / "corpus"
    cmd = [sys.executable, "-m", "fractalsync_tracking.cli_prepare", str(songs),
           "--labels", str(songs), "--out", str(corpus), "--jobs", str(max(1, jobs)), "--quiet"]
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(
            f"corpus preparation failed (exit {done.returncode}): {done.stderr.strip()[-2000:]}"
        )
    return corpus
