"""Task functions for the dask hang-proofing tests (tests/test_prepare_dask.py).

They stand in for :func:`fractalsync_tracking.prepare._worker` on LocalCluster workers (which
import this module by name: pytest puts tests/ on ``sys.path`` and spawned workers inherit it).
Each takes the track name first, as ``_worker`` does, and returns an outcome dict.
"""

from __future__ import annotations

import os
import time
from pathlib import Path


def run(name: str, what: str, *args) -> dict:
    """The task the tests submit: ``what(name, *args)`` of this module."""
    return globals()[what](name, *args)


def finish(name: str) -> dict:
    """A track that works."""
    return {"arrays": name}


def block(name: str, release: str, started: str | None = None, limit_s: float = 600.0) -> dict:
    """A stuck track: creates the file ``started`` (if given), then waits until the file
    ``release`` exists (the test creates it when done, so the worker thread ends), at most
    ``limit_s`` seconds."""
    if started:
        Path(started).touch()
    end = time.monotonic() + limit_s
    while not Path(release).exists() and time.monotonic() < end:
        time.sleep(0.05)
    return {"arrays": name}


def die(name: str) -> dict:
    """Kills its worker process, every time it runs."""
    os._exit(3)


def die_once(name: str, marker: str) -> dict:
    """Kills its worker the first time (creating ``marker``), works when dask retries it."""
    path = Path(marker)
    if not path.exists():
        path.touch()
        os._exit(3)
    return {"arrays": name}
