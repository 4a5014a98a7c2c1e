"""Benchmarks print their figures (hop budget, ratio to the reference) as they run.

Output capture is turned off around each benchmark so that these lines reach the terminal with a
plain ``pytest --benchmark-only`` from the repository root, without ``-s``.
"""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def _print_figures(capsys):
    with capsys.disabled():
        yield
