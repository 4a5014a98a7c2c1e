"""Build the anticipator's training corpus from the structured-song generator.

:func:`build_corpus` renders songs ``generate_song(seed)`` (22050 Hz) into
``<work>/songs/song_<seed>.wav`` with their labels ``song_<seed>.csv``, then prepares them with
``fractalsync-prepare`` (the live beat tracker, targets on the 12.5 Hz slow grid) into
``<work>/corpus/song_<seed>.npz``. Both stages are resumable: a song whose WAV and CSV exist is
not rendered again, and ``fractalsync-prepare`` skips tracks it has done.

The preparation runs as a subprocess (``python -m fractalsync_tracking.cli_prepare``), the
command a user runs on their own audio: ``fractalsync_models`` imports no other FractalSync
package.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterable
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

from .song_generator import generate_song


def _render(seed: int, songs: Path) -> None:
    stem = f"song_{seed:06d}"
    if not ((songs / f"{stem}.wav").is_file() and (songs / f"{stem}.csv").is_file()):
        generate_song(seed).write(songs, stem)


def build_corpus(work: str | os.PathLike, seeds: Iterable[int], jobs: int = 2) -> Path:
    """Render the songs of ``seeds`` and prepare them; returns the corpus directory
    ``<work>/corpus``. Raises RuntimeError if the preparation fails for any track."""
    work = Path(work)
    songs = work / "songs"
    songs.mkdir(parents=True, exist_ok=True)
    seeds = list(seeds)
    with ProcessPoolExecutor(max_workers=max(1, jobs)) as pool:
        list(pool.map(_render, seeds, [songs] * len(seeds)))
    corpus = work / "corpus"
    cmd = [sys.executable, "-m", "fractalsync_tracking.cli_prepare", str(songs),
           "--labels", str(songs), "--out", str(corpus), "--jobs", str(max(1, jobs)), "--quiet"]
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(
            f"corpus preparation failed (exit {done.returncode}): {done.stderr.strip()[-2000:]}"
        )
    return corpus
