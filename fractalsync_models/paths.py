"""Where FractalSync keeps generated artefacts (converted models, downloaded wheels).

Everything lives under ``$FRACTALSYNC_HOME`` (default ``~/.cache/fractalsync``).
"""

from __future__ import annotations

import os
from pathlib import Path

HOME_ENV = "FRACTALSYNC_HOME"


def fractalsync_home() -> Path:
    """Root cache directory: ``$FRACTALSYNC_HOME`` or ``~/.cache/fractalsync``."""
    env = os.environ.get(HOME_ENV, "").strip()
    return Path(env).expanduser() if env else Path.home() / ".cache" / "fractalsync"


def models_dir() -> Path:
    """Directory of converted ONNX models: ``<home>/models`` (not created here)."""
    return fractalsync_home() / "models"


def wheels_dir() -> Path:
    """Directory of downloaded source wheels: ``<home>/wheels`` (not created here)."""
    return fractalsync_home() / "wheels"
