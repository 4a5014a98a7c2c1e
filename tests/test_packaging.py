"""Package layout rules from MISSION.md: one-way dependencies, no optional extras at import."""

import subprocess
import sys

import numpy as np
import pytest

BLOCK_EXTRAS = """
import sys

class BlockExtras:
    # any import of an optional extra raises ImportError
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("pyaudio", "pygame", "torch", "dask", "distributed"):
            raise ImportError(f"optional extra {name} is blocked")

sys.meta_path.insert(0, BlockExtras())
"""


@pytest.mark.parametrize(
    "package,forbidden",
    [
        ("fractalsync_dsp", ("fractalsync_models", "fractalsync_tracking")),
        ("fractalsync_models", ("fractalsync_dsp", "fractalsync_tracking")),
        ("fractalsync_models.training.synth", ("fractalsync_dsp", "fractalsync_tracking")),
        ("fractalsync_tracking", ()),
    ],
)
def test_package_imports_alone_without_extras(package, forbidden):
    code = BLOCK_EXTRAS + (
        f"import {package}\n"
        f"bad = [m for m in {forbidden!r} if m in sys.modules]\n"
        "assert not bad, f'imported {bad}'\n"
    )
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr


def test_packaged_contract_is_the_repository_contract():
    import json
    from pathlib import Path

    from fractalsync_models import load_contract

    repo = json.loads((Path(__file__).parents[1] / "contracts" / "v1.json").read_text())
    assert load_contract() == repo and repo["version"] == 1


def test_top_level_beat_grid_api(beatnet_models_dir):
    import fractalsync_tracking

    sr = 22050
    t = np.arange(sr * 12) / sr
    clicks = np.zeros_like(t)
    clicks[(np.arange(0.5, 12, 0.5) * sr).astype(int)] = 1.0  # 120 BPM
    audio = np.convolve(clicks, np.hanning(64), mode="same").astype(np.float32)
    grid = fractalsync_tracking.beat_grid(audio, sr=sr)
    assert isinstance(grid, fractalsync_tracking.BeatGrid) and grid.mode == "offline"
    assert abs(grid.tempo - 120) < 2.4 or abs(grid.tempo - 60) < 1.2 or abs(grid.tempo - 240) < 5
