"""Shared pytest fixtures. Keep them general: every test suite may add its own here."""

from __future__ import annotations

import os
from pathlib import Path

import pytest


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
